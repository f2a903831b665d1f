//! Device-linking rendezvous: sealed bytes relayed between a device and the
//! new device it links, for [`LINK_TTL_SECS`] at most.
//!
//! A link is alive while `now < created_at + LINK_TTL_SECS`; past that every
//! operation treats it as absent, and [`prune`] deletes it.

use rempart_proto::limits::LINK_TTL_SECS;
use rempart_proto::{DeviceId, LinkId};
use rusqlite::{Connection, OptionalExtension as _, params};

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

pub(super) fn create(
    conn: &Connection,
    creator: DeviceId,
    link: LinkId,
    now: i64,
) -> Result<(), StoreError> {
    // An expired link that was not pruned yet no longer holds its id.
    conn.execute(
        "DELETE FROM links WHERE link_id = ?1 AND created_at < ?2",
        params![link.as_bytes(), oldest_alive(now)],
    )?;
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO links (link_id, creator_device, created_at) VALUES (?1, ?2, ?3)",
        params![link.as_bytes(), creator.as_bytes(), now],
    )?;
    if inserted == 0 {
        return Err(StoreError::LinkExists);
    }
    Ok(())
}

/// Stores the new device's sealed request; a link takes one request only.
pub(super) fn put_request(
    conn: &Connection,
    link: LinkId,
    sealed: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    let stored = live(conn, link, now)?;
    if stored.request.is_some() {
        return Err(StoreError::LinkUsed("request"));
    }
    conn.execute(
        "UPDATE links SET request = ?2 WHERE link_id = ?1",
        params![link.as_bytes(), sealed],
    )?;
    Ok(())
}

/// The sealed request, for the device that created the link.
pub(super) fn request(
    conn: &Connection,
    reader: DeviceId,
    link: LinkId,
    now: i64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let stored = live(conn, link, now)?;
    require_creator(&stored, reader)?;
    Ok(stored.request)
}

/// Stores the creating device's sealed response; a link takes one only.
pub(super) fn put_response(
    conn: &Connection,
    responder: DeviceId,
    link: LinkId,
    sealed: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    let stored = live(conn, link, now)?;
    require_creator(&stored, responder)?;
    if stored.response.is_some() {
        return Err(StoreError::LinkUsed("response"));
    }
    conn.execute(
        "UPDATE links SET response = ?2 WHERE link_id = ?1",
        params![link.as_bytes(), sealed],
    )?;
    Ok(())
}

/// The sealed response, if posted, without taking it.
pub(super) fn peek_response(
    conn: &Connection,
    link: LinkId,
    now: i64,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(live(conn, link, now)?.response)
}

/// Deletes the link and returns its response, if it has one; a link whose
/// response is not posted yet stays.
pub(super) fn take_response(
    conn: &Connection,
    link: LinkId,
    now: i64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let stored = live(conn, link, now)?;
    if stored.response.is_some() {
        conn.execute("DELETE FROM links WHERE link_id = ?1", [link.as_bytes()])?;
    }
    Ok(stored.response)
}

/// Deletes the links that expired by now.
pub(super) fn prune(conn: &Connection, now: i64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM links WHERE created_at < ?1",
        [oldest_alive(now)],
    )?)
}

/// The link if it exists and has not expired, else [`StoreError::UnknownLink`].
fn live(conn: &Connection, link: LinkId, now: i64) -> Result<Link, StoreError> {
    conn.query_row(
        "SELECT creator_device, request, response FROM links
         WHERE link_id = ?1 AND created_at >= ?2",
        params![link.as_bytes(), oldest_alive(now)],
        |row| {
            Ok(Link {
                creator: DeviceId::from_bytes(row.get(0)?),
                request: row.get(1)?,
                response: row.get(2)?,
            })
        },
    )
    .optional()?
    .ok_or(StoreError::UnknownLink)
}

fn require_creator(link: &Link, device: DeviceId) -> Result<(), StoreError> {
    if link.creator != device {
        return Err(StoreError::NotLinkCreator { device });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::sqlite::testing;

    fn database() -> (Connection, DeviceId) {
        let conn = testing::database();
        let device = testing::device(&conn, "alice");
        (conn, device)
    }

    fn count(conn: &Connection) -> i64 {
        testing::rows(conn, "links")
    }

    #[test]
    fn a_link_is_alive_for_its_ttl_then_absent_and_pruned() {
        let (conn, device) = database();
        let (link, created) = (LinkId::random(), 1_000_000);
        create(&conn, device, link, created).unwrap();
        let last_second = created + LINK_TTL_SECS - 1;
        put_request(&conn, link, b"sealed request", last_second).unwrap();
        assert_eq!(
            request(&conn, device, link, last_second).unwrap().unwrap(),
            b"sealed request"
        );
        assert_eq!(prune(&conn, last_second).unwrap(), 0);

        let expired = created + LINK_TTL_SECS;
        for result in [
            request(&conn, device, link, expired).map(drop),
            put_response(&conn, device, link, b"r", expired),
            peek_response(&conn, link, expired).map(drop),
            take_response(&conn, link, expired).map(drop),
        ] {
            assert!(matches!(result, Err(StoreError::UnknownLink)), "{result:?}");
        }
        let other = LinkId::random();
        create(&conn, device, other, expired).unwrap();
        assert_eq!(prune(&conn, expired).unwrap(), 1);
        assert_eq!(count(&conn), 1, "only the live link is left");
        assert!(request(&conn, device, other, expired).is_ok());
    }

    #[test]
    fn an_expired_id_may_be_opened_again_a_live_one_not() {
        let (conn, device) = database();
        let link = LinkId::random();
        create(&conn, device, link, 100).unwrap();
        assert!(matches!(
            create(&conn, device, link, 100 + LINK_TTL_SECS - 1),
            Err(StoreError::LinkExists)
        ));
        create(&conn, device, link, 100 + LINK_TTL_SECS).unwrap();
        assert_eq!(count(&conn), 1);
    }

    #[test]
    fn a_removed_device_takes_its_links_along() {
        let (conn, device) = database();
        create(&conn, device, LinkId::random(), 100).unwrap();
        conn.execute(
            "DELETE FROM devices WHERE device_id = ?1",
            [device.as_bytes()],
        )
        .unwrap();
        assert_eq!(count(&conn), 0);
    }
}
