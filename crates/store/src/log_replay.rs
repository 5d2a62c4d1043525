//! Reading the whole log for a rebuild: in global order, in batches, only the columns folding
//! needs, each dialect the way it reads fastest (`dialect/postgres.rs`, `dialect/sqlite.rs`).

use crate::dialect::{postgres, sqlite};
use crate::error::StoreError;
use crate::log::EventLog;
use easm_events::{decode_str, Event, OrgId};
use sqlx::{AnyConnection, PgConnection};

/// Where [`EventLog::each_event`] reads: on PostgreSQL a plain connection (it is read while the
/// rebuild's own transaction holds appends out, so it sees the same log), on SQLite the
/// rebuild's own.
pub enum LogSource<'a> {
    Postgres(&'a mut PgConnection),
    Sqlite(&'a mut AnyConnection),
}

/// An event as a rebuild folds it: its place in the log and in its organization's chain, whose,
/// when and by whom, and the typed data; without hashes, ids or request metadata, which the read
/// models do not hold, so a rebuild moves less than half of each row.
pub struct ReplayEvent {
    pub position: i64,
    pub chain_seq: i64,
    pub org_id: OrgId,
    /// Epoch microseconds.
    pub occurred_at: i64,
    pub actor_id: String,
    pub event: Event,
}

/// A [`ReplayEvent`] from its columns: (position, chain sequence, organization, time), (actor,
/// type, schema version) and the stored data.
pub(crate) fn replay_event(
    (position, chain_seq, org_id, occurred_at): (i64, i64, String, i64),
    (actor_id, event_type, version): (String, String, i64),
    data: &str,
) -> Result<ReplayEvent, StoreError> {
    let event = decode_str(&event_type, version as i32, data).map_err(|e| StoreError::Corrupt {
        position,
        reason: e.to_string(),
    })?;
    Ok(ReplayEvent {
        position,
        chain_seq,
        org_id: OrgId::new(org_id),
        occurred_at,
        actor_id,
        event,
    })
}

pub(crate) const BATCH: i64 = 20_000;
pub(crate) const NARROW: &str = "SELECT position, chain_seq, org_id, occurred_at, actor_id, \
     event_type, schema_version, data FROM events WHERE position > $1 \
     ORDER BY position LIMIT $2";

impl EventLog {
    /// Hand `f` every event of the log in global order, for a caller whose transaction
    /// holds every append out (a rebuild); returns how many there were. Read in batches, only the
    /// columns folding needs. PostgreSQL streams each batch's rows, decoded as they arrive, on a
    /// connection of its own (no conversion through sqlx's `Any` rows); SQLite packs a batch
    /// into one JSON array (sqlx hands each SQLite row over between threads, which cost more than
    /// reading it), and reads the next batch while this one is decoded.
    pub async fn each_event(
        source: LogSource<'_>,
        mut f: impl FnMut(ReplayEvent) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        match source {
            LogSource::Postgres(conn) => postgres::each_event(conn, &mut f).await,
            LogSource::Sqlite(conn) => sqlite::each_event(conn, &mut f).await,
        }
    }
}
