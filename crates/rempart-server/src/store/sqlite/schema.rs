//! The SQLite schema and its migrations, versioned by `PRAGMA user_version`.
//!
//! Identifiers and keys are stored as raw bytes; MLS messages and KeyPackages
//! as the opaque bytes clients sent. Nothing here is secret: the server holds
//! public keys, signatures and ciphertext only.

use rusqlite::Connection;

use crate::store::StoreError;

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE accounts (
    user_name      TEXT PRIMARY KEY,
    account_key    BLOB NOT NULL,
    device_list    BLOB NOT NULL,   -- the signed list's exact bytes
    list_signature BLOB NOT NULL,
    version        INTEGER NOT NULL
) STRICT;

CREATE TABLE devices (
    device_id     BLOB PRIMARY KEY,
    user_name     TEXT NOT NULL REFERENCES accounts (user_name) ON DELETE CASCADE,
    signature_key BLOB NOT NULL
) STRICT;
CREATE INDEX devices_by_user ON devices (user_name);

CREATE TABLE key_packages (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id BLOB NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
    data      BLOB NOT NULL
) STRICT;
CREATE INDEX key_packages_by_device ON key_packages (device_id, id);

CREATE TABLE last_resort (
    device_id BLOB PRIMARY KEY REFERENCES devices (device_id) ON DELETE CASCADE,
    data      BLOB NOT NULL
) STRICT;

CREATE TABLE groups (
    group_id BLOB PRIMARY KEY,
    epoch    INTEGER NOT NULL,
    last_seq INTEGER NOT NULL
) STRICT;

-- No reference to devices: a device removed from its account stays an MLS
-- member until a commit removes it.
CREATE TABLE group_members (
    group_id  BLOB NOT NULL REFERENCES groups (group_id),
    device_id BLOB NOT NULL,
    PRIMARY KEY (group_id, device_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE log (
    group_id   BLOB NOT NULL REFERENCES groups (group_id),
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('commit', 'application')),
    epoch      INTEGER NOT NULL,
    sender     BLOB NOT NULL,
    message_id BLOB NOT NULL,
    data       BLOB NOT NULL,
    PRIMARY KEY (group_id, seq),
    UNIQUE (group_id, message_id)
) STRICT;

CREATE TABLE inbox (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id BLOB NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
    kind      TEXT NOT NULL CHECK (kind IN ('welcome')),
    group_id  BLOB NOT NULL,
    sender    BLOB NOT NULL,
    data      BLOB NOT NULL
) STRICT;
CREATE INDEX inbox_by_device ON inbox (device_id, id);

CREATE TABLE nonces (
    device_id BLOB NOT NULL,
    nonce     TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    PRIMARY KEY (device_id, nonce)
) STRICT, WITHOUT ROWID;
CREATE INDEX nonces_by_ts ON nonces (ts);
",
    r"
-- Version 2: each Welcome is stored once and the inbox rows of its recipients
-- refer to it; it is deleted with the last of them. Device-linking rendezvous.

CREATE TABLE welcomes (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    data BLOB NOT NULL
) STRICT;

CREATE TABLE inbox_v2 (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id  BLOB NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('welcome')),
    group_id   BLOB NOT NULL,
    sender     BLOB NOT NULL,
    welcome_id INTEGER NOT NULL REFERENCES welcomes (id)
) STRICT;

-- Inbox ids are cursors: new items must keep numbering after every id ever
-- handed out, even when the old inbox is empty now. (Set before any insert,
-- so that inserts can only raise it.)
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'inbox_v2', seq FROM sqlite_sequence WHERE name = 'inbox';

-- Version 1 copied a Welcome into the row of every device it added: keep one
-- copy per group, sender and bytes, under the id of its first row.
INSERT INTO welcomes (id, data)
    SELECT id, data FROM (
        SELECT id, data, min(id) OVER (PARTITION BY group_id, sender, data) AS first
        FROM inbox
    ) WHERE id = first;
INSERT INTO inbox_v2 (id, device_id, kind, group_id, sender, welcome_id)
    SELECT id, device_id, kind, group_id, sender,
           min(id) OVER (PARTITION BY group_id, sender, data)
    FROM inbox;

DROP TABLE inbox;
ALTER TABLE inbox_v2 RENAME TO inbox;
CREATE INDEX inbox_by_device ON inbox (device_id, id);
CREATE INDEX inbox_by_welcome ON inbox (welcome_id);

-- Fires for acks and for rows deleted with their device alike.
CREATE TRIGGER inbox_releases_welcome AFTER DELETE ON inbox
BEGIN
    DELETE FROM welcomes
    WHERE id = OLD.welcome_id
      AND NOT EXISTS (SELECT 1 FROM inbox WHERE welcome_id = OLD.welcome_id);
END;

-- A rendezvous between a device and the new device it links: the server
-- relays sealed bytes it cannot read. Alive for LINK_TTL_SECS after
-- created_at; the writer prunes it after that.
CREATE TABLE links (
    link_id        BLOB PRIMARY KEY,
    creator_device BLOB NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
    created_at     INTEGER NOT NULL,
    request        BLOB,
    response       BLOB
) STRICT;
CREATE INDEX links_by_creator ON links (creator_device);
CREATE INDEX links_by_created_at ON links (created_at);
",
    r"
-- Version 3: the key-transparency directory (akd's storage, see
-- crate::directory::storage). Records are keyed as akd keys them. A node
-- label is a bit length and 32 bytes; digests are 32 bytes. Labels of users
-- and their values are stored as akd hands them over (user names and hashes
-- of signed device lists, which the server holds anyway).

-- akd's one Azks record: the latest published epoch and the tree's size.
CREATE TABLE akd_azks (
    azks_key     INTEGER PRIMARY KEY CHECK (azks_key BETWEEN 0 AND 255),
    latest_epoch INTEGER NOT NULL CHECK (latest_epoch >= 0),
    num_nodes    INTEGER NOT NULL CHECK (num_nodes >= 0)
) STRICT;

-- A node of the tree, by label: its latest state and the state it replaced
-- (prev_*), which proofs for the previous epoch read while a publish is
-- being written. Children are absent (both columns NULL) on leaves.
CREATE TABLE akd_tree_nodes (
    label_len                 INTEGER NOT NULL CHECK (label_len BETWEEN 0 AND 256),
    label_val                 BLOB NOT NULL CHECK (length(label_val) = 32),
    last_epoch                INTEGER NOT NULL,
    min_descendant_epoch      INTEGER NOT NULL,
    parent_len                INTEGER NOT NULL,
    parent_val                BLOB NOT NULL CHECK (length(parent_val) = 32),
    node_type                 INTEGER NOT NULL CHECK (node_type IN (1, 2, 3)),
    left_len                  INTEGER,
    left_val                  BLOB CHECK (length(left_val) = 32),
    right_len                 INTEGER,
    right_val                 BLOB CHECK (length(right_val) = 32),
    hash                      BLOB NOT NULL CHECK (length(hash) = 32),
    prev_last_epoch           INTEGER,
    prev_min_descendant_epoch INTEGER,
    prev_parent_len           INTEGER,
    prev_parent_val           BLOB CHECK (length(prev_parent_val) = 32),
    prev_node_type            INTEGER CHECK (prev_node_type IN (1, 2, 3)),
    prev_left_len             INTEGER,
    prev_left_val             BLOB CHECK (length(prev_left_val) = 32),
    prev_right_len            INTEGER,
    prev_right_val            BLOB CHECK (length(prev_right_val) = 32),
    prev_hash                 BLOB CHECK (length(prev_hash) = 32),
    PRIMARY KEY (label_len, label_val),
    CHECK ((left_len IS NULL) = (left_val IS NULL)),
    CHECK ((right_len IS NULL) = (right_val IS NULL)),
    CHECK ((prev_left_len IS NULL) = (prev_left_val IS NULL)),
    CHECK ((prev_right_len IS NULL) = (prev_right_val IS NULL)),
    -- The previous state is there whole or not at all.
    CHECK (
        (prev_last_epoch IS NULL) = (prev_min_descendant_epoch IS NULL)
        AND (prev_last_epoch IS NULL) = (prev_parent_len IS NULL)
        AND (prev_last_epoch IS NULL) = (prev_parent_val IS NULL)
        AND (prev_last_epoch IS NULL) = (prev_node_type IS NULL)
        AND (prev_last_epoch IS NULL) = (prev_hash IS NULL)
        AND (prev_last_epoch IS NOT NULL OR prev_left_len IS NULL)
        AND (prev_last_epoch IS NOT NULL OR prev_right_len IS NULL)
    )
) STRICT;

-- A user's value as published at an epoch, by (user label, epoch); label_*
-- is the VRF-derived node label it was inserted under.
CREATE TABLE akd_values (
    username  BLOB NOT NULL,
    epoch     INTEGER NOT NULL CHECK (epoch >= 0),
    version   INTEGER NOT NULL CHECK (version >= 0),
    label_len INTEGER NOT NULL,
    label_val BLOB NOT NULL CHECK (length(label_val) = 32),
    value     BLOB NOT NULL,
    PRIMARY KEY (username, epoch)
) STRICT;
",
    r"
-- Version 4: the directory's publisher (crate::directory).

-- Device-list changes not yet published in an epoch, written in the same
-- transaction as the change itself. The publisher takes the latest value per
-- user and deletes the rows it published.
CREATE TABLE directory_pending (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    user_name TEXT NOT NULL,
    value     BLOB NOT NULL CHECK (length(value) = 32)
) STRICT;

-- Every signed device list ever accepted, by its directory value, so lookups
-- and histories can serve the list a proven value stands for.
CREATE TABLE directory_device_lists (
    user_name      TEXT NOT NULL,
    value          BLOB NOT NULL CHECK (length(value) = 32),
    device_list    BLOB NOT NULL,
    list_signature BLOB NOT NULL,
    PRIMARY KEY (user_name, value)
) STRICT;

-- The signed head of each published epoch.
CREATE TABLE directory_heads (
    epoch     INTEGER PRIMARY KEY CHECK (epoch > 0),
    head      BLOB NOT NULL,
    signature BLOB NOT NULL
) STRICT;

-- Witness cosignatures, one per witness key per epoch.
CREATE TABLE directory_cosignatures (
    epoch     INTEGER NOT NULL REFERENCES directory_heads (epoch),
    witness   BLOB NOT NULL CHECK (length(witness) = 32),
    signature BLOB NOT NULL,
    PRIMARY KEY (epoch, witness)
) STRICT;
",
    r"
-- Version 5: the directory's two large tables without rowids. Their rows are
-- only ever found by their primary keys, which are scattered VRF outputs, so a
-- rowid only adds a second B-tree to write; and a node type is checked with
-- BETWEEN, which needs no temporary B-tree per row as IN (...) does.
CREATE TABLE akd_tree_nodes_v5 (
    label_len                 INTEGER NOT NULL CHECK (label_len BETWEEN 0 AND 256),
    label_val                 BLOB NOT NULL CHECK (length(label_val) = 32),
    last_epoch                INTEGER NOT NULL,
    min_descendant_epoch      INTEGER NOT NULL,
    parent_len                INTEGER NOT NULL,
    parent_val                BLOB NOT NULL CHECK (length(parent_val) = 32),
    node_type                 INTEGER NOT NULL CHECK (node_type BETWEEN 1 AND 3),
    left_len                  INTEGER,
    left_val                  BLOB CHECK (length(left_val) = 32),
    right_len                 INTEGER,
    right_val                 BLOB CHECK (length(right_val) = 32),
    hash                      BLOB NOT NULL CHECK (length(hash) = 32),
    prev_last_epoch           INTEGER,
    prev_min_descendant_epoch INTEGER,
    prev_parent_len           INTEGER,
    prev_parent_val           BLOB CHECK (length(prev_parent_val) = 32),
    prev_node_type            INTEGER CHECK (prev_node_type BETWEEN 1 AND 3),
    prev_left_len             INTEGER,
    prev_left_val             BLOB CHECK (length(prev_left_val) = 32),
    prev_right_len            INTEGER,
    prev_right_val            BLOB CHECK (length(prev_right_val) = 32),
    prev_hash                 BLOB CHECK (length(prev_hash) = 32),
    PRIMARY KEY (label_len, label_val),
    CHECK ((left_len IS NULL) = (left_val IS NULL)),
    CHECK ((right_len IS NULL) = (right_val IS NULL)),
    CHECK ((prev_left_len IS NULL) = (prev_left_val IS NULL)),
    CHECK ((prev_right_len IS NULL) = (prev_right_val IS NULL)),
    -- The previous state is there whole or not at all.
    CHECK (
        (prev_last_epoch IS NULL) = (prev_min_descendant_epoch IS NULL)
        AND (prev_last_epoch IS NULL) = (prev_parent_len IS NULL)
        AND (prev_last_epoch IS NULL) = (prev_parent_val IS NULL)
        AND (prev_last_epoch IS NULL) = (prev_node_type IS NULL)
        AND (prev_last_epoch IS NULL) = (prev_hash IS NULL)
        AND (prev_last_epoch IS NOT NULL OR prev_left_len IS NULL)
        AND (prev_last_epoch IS NOT NULL OR prev_right_len IS NULL)
    )
) STRICT, WITHOUT ROWID;
INSERT INTO akd_tree_nodes_v5 SELECT * FROM akd_tree_nodes;
DROP TABLE akd_tree_nodes;
ALTER TABLE akd_tree_nodes_v5 RENAME TO akd_tree_nodes;

CREATE TABLE akd_values_v5 (
    username  BLOB NOT NULL,
    epoch     INTEGER NOT NULL CHECK (epoch >= 0),
    version   INTEGER NOT NULL CHECK (version >= 0),
    label_len INTEGER NOT NULL,
    label_val BLOB NOT NULL CHECK (length(label_val) = 32),
    value     BLOB NOT NULL,
    PRIMARY KEY (username, epoch)
) STRICT, WITHOUT ROWID;
INSERT INTO akd_values_v5 SELECT * FROM akd_values;
DROP TABLE akd_values;
ALTER TABLE akd_values_v5 RENAME TO akd_values;
",
    // Version 6: a device's groups, to route its push notices.
    r"
CREATE INDEX group_members_by_device ON group_members (device_id, group_id);
",
    // Version 7: a device removed from a group may still read its log up
    // to the commit that removed it, so that it learns of its removal.
    r"
CREATE TABLE group_departures (
    group_id  BLOB NOT NULL REFERENCES groups (group_id),
    device_id BLOB NOT NULL,
    last_seq  INTEGER NOT NULL CHECK (last_seq > 0),
    epoch     INTEGER NOT NULL CHECK (epoch > 0),
    PRIMARY KEY (group_id, device_id)
) STRICT, WITHOUT ROWID;
",
    // Version 8: how many one-time KeyPackages of each device were claimed,
    // so that a device can tell claims from packages gone missing.
    r"
ALTER TABLE devices ADD COLUMN claimed_key_packages INTEGER NOT NULL DEFAULT 0
    CHECK (claimed_key_packages >= 0);
",
    // Version 9: the invitations spent, on a server that registers by
    // invitation only (a code's SHA-256, never the code).
    r"
CREATE TABLE invitations_used (
    code_hash BLOB PRIMARY KEY CHECK (length(code_hash) = 32),
    user_name TEXT NOT NULL,
    used_at   INTEGER NOT NULL
) STRICT;
",
    // Version 10: mail addresses (each held by the account whose device
    // list first bound it) and the accounts' OpenPGP certificates.
    r"
CREATE TABLE mail_addresses (
    address   TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES accounts (user_name) ON DELETE CASCADE
) STRICT;

CREATE TABLE mail_certificates (
    fingerprint TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL REFERENCES accounts (user_name) ON DELETE CASCADE,
    certificate BLOB NOT NULL
) STRICT;
CREATE INDEX mail_certificates_by_user ON mail_certificates (user_name);
",
];

/// The schema version this server writes.
pub(super) const LATEST_VERSION: usize = MIGRATIONS.len();

/// Brings the schema up to the latest version, one transaction per step.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, LATEST_VERSION)
}

/// Brings the schema up to `target` (tests build older versions with it).
pub(super) fn migrate_to(conn: &mut Connection, target: usize) -> Result<(), StoreError> {
    let stored: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    // A negative version was not written by any server.
    let version = usize::try_from(stored).map_err(|_| {
        StoreError::Corrupt(format!(
            "the database has schema version {stored}, which no server writes"
        ))
    })?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {version}, newer than this server's {}",
            MIGRATIONS.len()
        )));
    }
    for (from, migration) in MIGRATIONS.iter().enumerate().take(target).skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", from + 1)?;
        tx.commit()?;
        tracing::info!(version = from + 1, "database schema migrated");
    }
    Ok(())
}
