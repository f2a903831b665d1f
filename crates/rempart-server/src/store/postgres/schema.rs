//! The PostgreSQL schema and its migrations, versioned in `schema_version`.
//!
//! The same tables as the SQLite backend, in PostgreSQL's types: identifiers,
//! keys and MLS bytes are `bytea`, counters `bigint`. Three differences come
//! from concurrent writers, which SQLite does not have:
//!
//! - an inbox id is numbered per device from a counter in its `devices` row,
//!   so ids commit in order and a cursor never skips an item whose
//!   transaction committed late (a shared sequence would allow that);
//! - the publisher removes exactly the `directory_pending` rows it read, by
//!   id, for the same reason;
//! - the trigger that deletes a Welcome with its last inbox row locks the
//!   Welcome first, so that two devices acknowledging it at once do not
//!   leave it behind.
//!
//! Migrations run at start, all pending steps in one transaction (PostgreSQL
//! DDL is transactional) under an advisory lock, so nodes starting together
//! migrate once and a failed step leaves the schema as it was.

use deadpool_postgres::Object;

use crate::store::StoreError;

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE accounts (
    user_name      text PRIMARY KEY,
    account_key    bytea NOT NULL,
    device_list    bytea NOT NULL,   -- the signed list's exact bytes
    list_signature bytea NOT NULL,
    version        bigint NOT NULL
);

CREATE TABLE devices (
    device_id     bytea PRIMARY KEY,
    user_name     text NOT NULL REFERENCES accounts (user_name) ON DELETE CASCADE,
    signature_key bytea NOT NULL,
    -- The id of the last item put in this device's inbox.
    inbox_last_id bigint NOT NULL DEFAULT 0
);
CREATE INDEX devices_by_user ON devices (user_name);

CREATE TABLE key_packages (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id bytea NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
    data      bytea NOT NULL
);
CREATE INDEX key_packages_by_device ON key_packages (device_id, id);

CREATE TABLE last_resort (
    device_id bytea PRIMARY KEY REFERENCES devices (device_id) ON DELETE CASCADE,
    data      bytea NOT NULL
);

CREATE TABLE groups (
    group_id bytea PRIMARY KEY,
    epoch    bigint NOT NULL,
    last_seq bigint NOT NULL
);

-- No reference to devices: a device removed from its account stays an MLS
-- member until a commit removes it.
CREATE TABLE group_members (
    group_id  bytea NOT NULL REFERENCES groups (group_id),
    device_id bytea NOT NULL,
    PRIMARY KEY (group_id, device_id)
);

CREATE TABLE log (
    group_id   bytea NOT NULL REFERENCES groups (group_id),
    seq        bigint NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('commit', 'application')),
    epoch      bigint NOT NULL,
    sender     bytea NOT NULL,
    message_id bytea NOT NULL,
    data       bytea NOT NULL,
    PRIMARY KEY (group_id, seq),
    UNIQUE (group_id, message_id)
);

-- Each Welcome is stored once; the inbox rows of its recipients refer to it,
-- and it is deleted with the last of them.
CREATE TABLE welcomes (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    data bytea NOT NULL
);

CREATE TABLE inbox (
    device_id  bytea NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
    id         bigint NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('welcome')),
    group_id   bytea NOT NULL,
    sender     bytea NOT NULL,
    welcome_id bigint NOT NULL REFERENCES welcomes (id),
    PRIMARY KEY (device_id, id)
);
CREATE INDEX inbox_by_welcome ON inbox (welcome_id);

-- Fires for acks and for rows deleted with their device alike. Transactions
-- deleting the last rows of one Welcome take turns on its row: each then
-- looks for the remaining rows in a fresh snapshot (a volatile function's
-- statement takes one), so the last to commit sees the others gone. Without
-- the lock, each would still see the other's row and the Welcome would stay.
CREATE FUNCTION inbox_releases_welcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM welcomes WHERE id = OLD.welcome_id FOR UPDATE;
    DELETE FROM welcomes
    WHERE id = OLD.welcome_id
      AND NOT EXISTS (SELECT 1 FROM inbox WHERE welcome_id = OLD.welcome_id);
    RETURN NULL;
END;
$$;
CREATE TRIGGER inbox_releases_welcome AFTER DELETE ON inbox
    FOR EACH ROW EXECUTE FUNCTION inbox_releases_welcome();

CREATE TABLE nonces (
    device_id bytea NOT NULL,
    nonce     text NOT NULL,
    ts        bigint NOT NULL,
    PRIMARY KEY (device_id, nonce)
);
CREATE INDEX nonces_by_ts ON nonces (ts);

-- A rendezvous between a device and the new device it links: the server
-- relays sealed bytes it cannot read. Alive for LINK_TTL_SECS after
-- created_at; pruned after that.
CREATE TABLE links (
    link_id        bytea PRIMARY KEY,
    creator_device bytea NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
    created_at     bigint NOT NULL,
    request        bytea,
    response       bytea
);
CREATE INDEX links_by_creator ON links (creator_device);
CREATE INDEX links_by_created_at ON links (created_at);

-- The key-transparency directory: akd's storage (crate::directory::storage),
-- keyed as akd keys its records. A node label is a bit length and 32 bytes.

-- akd's one Azks record: the latest published epoch and the tree's size.
CREATE TABLE akd_azks (
    azks_key     smallint PRIMARY KEY CHECK (azks_key BETWEEN 0 AND 255),
    latest_epoch bigint NOT NULL CHECK (latest_epoch >= 0),
    num_nodes    bigint NOT NULL CHECK (num_nodes >= 0)
);

-- A node of the tree, by label: its latest state and the state it replaced
-- (prev_*), which proofs for the previous epoch read while a publish is
-- being written. Children are absent (both columns NULL) on leaves.
CREATE TABLE akd_tree_nodes (
    label_len                 integer NOT NULL CHECK (label_len BETWEEN 0 AND 256),
    label_val                 bytea NOT NULL CHECK (length(label_val) = 32),
    last_epoch                bigint NOT NULL,
    min_descendant_epoch      bigint NOT NULL,
    parent_len                integer NOT NULL,
    parent_val                bytea NOT NULL CHECK (length(parent_val) = 32),
    node_type                 smallint NOT NULL CHECK (node_type BETWEEN 1 AND 3),
    left_len                  integer,
    left_val                  bytea CHECK (length(left_val) = 32),
    right_len                 integer,
    right_val                 bytea CHECK (length(right_val) = 32),
    hash                      bytea NOT NULL CHECK (length(hash) = 32),
    prev_last_epoch           bigint,
    prev_min_descendant_epoch bigint,
    prev_parent_len           integer,
    prev_parent_val           bytea CHECK (length(prev_parent_val) = 32),
    prev_node_type            smallint CHECK (prev_node_type BETWEEN 1 AND 3),
    prev_left_len             integer,
    prev_left_val             bytea CHECK (length(prev_left_val) = 32),
    prev_right_len            integer,
    prev_right_val            bytea CHECK (length(prev_right_val) = 32),
    prev_hash                 bytea CHECK (length(prev_hash) = 32),
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
);

-- A user's value as published at an epoch, by (user label, epoch); label_*
-- is the VRF-derived node label it was inserted under.
CREATE TABLE akd_values (
    username  bytea NOT NULL,
    epoch     bigint NOT NULL CHECK (epoch >= 0),
    version   bigint NOT NULL CHECK (version >= 0),
    label_len integer NOT NULL,
    label_val bytea NOT NULL CHECK (length(label_val) = 32),
    value     bytea NOT NULL,
    PRIMARY KEY (username, epoch)
);

-- Device-list changes not yet published in an epoch, written in the same
-- transaction as the change itself. The publisher takes the latest value per
-- user and deletes the rows it published, by id.
CREATE TABLE directory_pending (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_name text NOT NULL,
    value     bytea NOT NULL CHECK (length(value) = 32)
);
CREATE INDEX directory_pending_by_user ON directory_pending (user_name);

-- Every signed device list ever accepted, by its directory value, so lookups
-- and histories can serve the list a proven value stands for.
CREATE TABLE directory_device_lists (
    user_name      text NOT NULL,
    value          bytea NOT NULL CHECK (length(value) = 32),
    device_list    bytea NOT NULL,
    list_signature bytea NOT NULL,
    PRIMARY KEY (user_name, value)
);

-- The signed head of each published epoch.
CREATE TABLE directory_heads (
    epoch     bigint PRIMARY KEY CHECK (epoch > 0),
    head      bytea NOT NULL,
    signature bytea NOT NULL
);

-- The public keys of the directory (head signatures and akd's VRF), as the
-- first node to start recorded them: every node checks its own key files
-- against them, so that no node signs or proves with other keys.
CREATE TABLE directory_keys (
    one_row       boolean PRIMARY KEY DEFAULT true CHECK (one_row),
    directory_key bytea NOT NULL CHECK (length(directory_key) = 32),
    vrf_key       bytea NOT NULL
);

-- Witness cosignatures, one per witness key per epoch.
CREATE TABLE directory_cosignatures (
    epoch     bigint NOT NULL REFERENCES directory_heads (epoch),
    witness   bytea NOT NULL CHECK (length(witness) = 32),
    signature bytea NOT NULL,
    PRIMARY KEY (epoch, witness)
);
",
    // Version 2: a device's groups, to route its push notices.
    r"
CREATE INDEX group_members_by_device ON group_members (device_id, group_id);
",
    // Version 3: a device removed from a group may still read its log up
    // to the commit that removed it, so that it learns of its removal.
    r"
CREATE TABLE group_departures (
    group_id  bytea NOT NULL REFERENCES groups (group_id),
    device_id bytea NOT NULL,
    last_seq  bigint NOT NULL CHECK (last_seq > 0),
    epoch     bigint NOT NULL CHECK (epoch > 0),
    PRIMARY KEY (group_id, device_id)
);
",
    // Version 4: how many one-time KeyPackages of each device were claimed,
    // so that a device can tell claims from packages gone missing.
    r"
ALTER TABLE devices ADD COLUMN claimed_key_packages bigint NOT NULL DEFAULT 0
    CHECK (claimed_key_packages >= 0);
",
    // Version 5: the invitations spent, on a server that registers by
    // invitation only (a code's SHA-256, never the code).
    r"
CREATE TABLE invitations_used (
    code_hash bytea PRIMARY KEY CHECK (length(code_hash) = 32),
    user_name text NOT NULL,
    used_at   bigint NOT NULL
);
",
    // Version 6: mail addresses (each held by the account whose device
    // list first bound it) and the accounts' OpenPGP certificates.
    r"
CREATE TABLE mail_addresses (
    address   text PRIMARY KEY,
    user_name text NOT NULL REFERENCES accounts (user_name) ON DELETE CASCADE
);

CREATE TABLE mail_certificates (
    fingerprint text PRIMARY KEY,
    user_name   text NOT NULL REFERENCES accounts (user_name) ON DELETE CASCADE,
    certificate bytea NOT NULL
);
CREATE INDEX mail_certificates_by_user ON mail_certificates (user_name);
",
];

/// The schema version this server writes.
pub(super) const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock (the second key is the schema's) held while migrating.
const MIGRATION_LOCK: i32 = 0x5245_4d01;

/// Brings the schema of the connection's `search_path` up to the latest
/// version.
pub(super) async fn migrate(conn: &mut Object) -> Result<(), StoreError> {
    let tx = conn.transaction().await?;
    // Serialises nodes that start together; released at commit.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
        &[&MIGRATION_LOCK],
    )
    .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version bigint NOT NULL,
             one_row boolean PRIMARY KEY DEFAULT true CHECK (one_row)
         )",
    )
    .await?;
    let version: i64 = match tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await?
    {
        Some(row) => row.try_get(0)?,
        None => 0,
    };
    if version > LATEST_VERSION {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {version}, newer than this server's {LATEST_VERSION}"
        )));
    }
    // A negative version was not written by any server.
    let done = usize::try_from(version).map_err(|_| {
        StoreError::Corrupt(format!(
            "the database has schema version {version}, which no server writes"
        ))
    })?;
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.batch_execute(migration).await?;
        let to = from as i64 + 1;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)
             ON CONFLICT (one_row) DO UPDATE SET version = EXCLUDED.version",
            &[&to],
        )
        .await?;
        tracing::info!(version = to, "database schema migrated");
    }
    tx.commit().await?;
    Ok(())
}
