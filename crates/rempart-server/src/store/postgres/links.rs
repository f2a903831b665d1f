//! Device-linking rendezvous: sealed bytes relayed between a device and the
//! new device it links, for [`LINK_TTL_SECS`] at most.
//!
//! A link is alive while `now < created_at + LINK_TTL_SECS`; past that every
//! operation treats it as absent, and [`prune`] deletes it. Writes lock the
//! link's row, so that each part is stored once however many requests race.

use deadpool_postgres::{Client, Transaction};
use rempart_proto::limits::LINK_TTL_SECS;
use rempart_proto::{DeviceId, LinkId};
use tokio_postgres::Row;

use super::transaction::fixed;
use crate::store::StoreError;

/// A live link's stored state.
struct Link {
    creator: DeviceId,
    request: Option<Vec<u8>>,
    response: Option<Vec<u8>>,
}

/// Oldest `created_at` of a link still alive at `now`.
fn oldest_alive(now: i64) -> i64 {
    now.saturating_sub(LINK_TTL_SECS).saturating_add(1)
}

/// Opens a link, taking over the id of an expired one that was not pruned
/// yet; [`StoreError::LinkExists`] while a live link has the id.
pub(super) async fn create(
    conn: &Client,
    creator: DeviceId,
    link: LinkId,
    now: i64,
) -> Result<(), StoreError> {
    let upsert = conn
        .prepare_cached(
            "INSERT INTO links (link_id, creator_device, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (link_id) DO UPDATE
             SET creator_device = EXCLUDED.creator_device, created_at = EXCLUDED.created_at,
                 request = NULL, response = NULL
             WHERE links.created_at < $4",
        )
        .await?;
    let written = conn
        .execute(
            &upsert,
            &[
                &link.as_bytes().as_slice(),
                &creator.as_bytes().as_slice(),
                &now,
                &oldest_alive(now),
            ],
        )
        .await?;
    if written == 0 {
        return Err(StoreError::LinkExists);
    }
    Ok(())
}

/// Stores the new device's sealed request; a link takes one request only.
pub(super) async fn put_request(
    tx: &Transaction<'_>,
    link: LinkId,
    sealed: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    let stored = lock_live(tx, link, now).await?;
    if stored.request.is_some() {
        return Err(StoreError::LinkUsed("request"));
    }
    let update = tx
        .prepare_cached("UPDATE links SET request = $2 WHERE link_id = $1")
        .await?;
    tx.execute(&update, &[&link.as_bytes().as_slice(), &sealed])
        .await?;
    Ok(())
}

/// The sealed request, for the device that created the link.
pub(super) async fn request(
    conn: &Client,
    reader: DeviceId,
    link: LinkId,
    now: i64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let query = conn
        .prepare_cached(
            "SELECT creator_device, request, response FROM links
             WHERE link_id = $1 AND created_at >= $2",
        )
        .await?;
    let row = conn
        .query_opt(&query, &[&link.as_bytes().as_slice(), &oldest_alive(now)])
        .await?
        .ok_or(StoreError::UnknownLink)?;
    let stored = parse(&row)?;
    require_creator(&stored, reader)?;
    Ok(stored.request)
}

/// Stores the creating device's sealed response; a link takes one only.
pub(super) async fn put_response(
    tx: &Transaction<'_>,
    responder: DeviceId,
    link: LinkId,
    sealed: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    let stored = lock_live(tx, link, now).await?;
    require_creator(&stored, responder)?;
    if stored.response.is_some() {
        return Err(StoreError::LinkUsed("response"));
    }
    let update = tx
        .prepare_cached("UPDATE links SET response = $2 WHERE link_id = $1")
        .await?;
    tx.execute(&update, &[&link.as_bytes().as_slice(), &sealed])
        .await?;
    Ok(())
}

/// Deletes the link and returns its response, if it has one; a link whose
/// response is not posted yet stays. One statement, so that of concurrent
/// takers one gets the response and the others find the link gone.
pub(super) async fn take_response(
    conn: &Client,
    link: LinkId,
    now: i64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let take = conn
        .prepare_cached(
            "WITH live AS (
                 SELECT response IS NOT NULL AS ready FROM links
                 WHERE link_id = $1 AND created_at >= $2
             ),
             taken AS (
                 DELETE FROM links
                 WHERE link_id = $1 AND created_at >= $2 AND response IS NOT NULL
                 RETURNING response
             )
             SELECT live.ready, taken.response FROM live LEFT JOIN taken ON true",
        )
        .await?;
    let row = conn
        .query_opt(&take, &[&link.as_bytes().as_slice(), &oldest_alive(now)])
        .await?
        .ok_or(StoreError::UnknownLink)?;
    let ready: bool = row.try_get(0)?;
    match row.try_get::<_, Option<Vec<u8>>>(1)? {
        Some(response) => Ok(Some(response)),
        None if ready => Err(StoreError::UnknownLink), // taken concurrently
        None => Ok(None),
    }
}

/// Deletes the links that expired by now.
pub(super) async fn prune(tx: &Transaction<'_>, now: i64) -> Result<u64, StoreError> {
    let delete = tx
        .prepare_cached("DELETE FROM links WHERE created_at < $1")
        .await?;
    Ok(tx.execute(&delete, &[&oldest_alive(now)]).await?)
}

/// The link, locked until the transaction ends, if it exists and has not
/// expired; else [`StoreError::UnknownLink`].
async fn lock_live(tx: &Transaction<'_>, link: LinkId, now: i64) -> Result<Link, StoreError> {
    let query = tx
        .prepare_cached(
            "SELECT creator_device, request, response FROM links
             WHERE link_id = $1 AND created_at >= $2
             FOR NO KEY UPDATE",
        )
        .await?;
    let row = tx
        .query_opt(&query, &[&link.as_bytes().as_slice(), &oldest_alive(now)])
        .await?
        .ok_or(StoreError::UnknownLink)?;
    parse(&row)
}

/// A link from a row of `creator_device, request, response`.
fn parse(row: &Row) -> Result<Link, StoreError> {
    Ok(Link {
        creator: DeviceId::from_bytes(fixed(row, 0, "link creator")?),
        request: row.try_get(1)?,
        response: row.try_get(2)?,
    })
}

/// [`StoreError::NotLinkCreator`] unless `device` opened the link.
fn require_creator(link: &Link, device: DeviceId) -> Result<(), StoreError> {
    if link.creator != device {
        return Err(StoreError::NotLinkCreator { device });
    }
    Ok(())
}
