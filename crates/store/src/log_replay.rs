//! Reading the whole log for a rebuild: in global order, in batches, only the columns folding
//! needs, each dialect the way it reads fastest.

use crate::error::StoreError;
use crate::log::EventLog;
use easm_events::{decode_str, Event, OrgId};
use futures_util::TryStreamExt;
use serde_json::value::RawValue;
use sqlx::{AnyConnection, PgConnection, Row};

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
fn replay_event(
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

const BATCH: i64 = 20_000;
const NARROW: &str = "SELECT position, chain_seq, org_id, occurred_at, actor_id, \
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
            LogSource::Postgres(conn) => postgres_events(conn, &mut f).await,
            LogSource::Sqlite(conn) => sqlite_events(conn, &mut f).await,
        }
    }
}

/// PostgreSQL streams each batch's rows, decoded as they arrive.
async fn postgres_events(
    conn: &mut PgConnection,
    f: &mut impl FnMut(ReplayEvent) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut n = 0;
    let mut after = 0;
    loop {
        let mut rows = sqlx::query(NARROW)
            .bind(after)
            .bind(BATCH)
            .fetch(&mut *conn);
        let mut in_batch = 0;
        while let Some(r) = rows.try_next().await? {
            let data: String = r.try_get(7)?;
            let e = replay_event(
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?),
                (r.try_get(4)?, r.try_get(5)?, r.try_get(6)?),
                &data,
            )?;
            after = e.position;
            f(e)?;
            in_batch += 1;
        }
        n += in_batch;
        if in_batch < BATCH as u64 {
            break;
        }
    }
    Ok(n)
}

/// SQLite packs a batch into one JSON array and reads the next while this one is decoded.
async fn sqlite_events(
    conn: &mut AnyConnection,
    f: &mut impl FnMut(ReplayEvent) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut n = 0;
    let packed = format!(
        "SELECT json_group_array(json_array(position, chain_seq, org_id, occurred_at, \
         actor_id, event_type, schema_version, json(data)) ORDER BY position), \
         MAX(position), COUNT(*) FROM ({NARROW})"
    );
    async fn batch(
        conn: &mut AnyConnection,
        sql: &str,
        after: i64,
    ) -> Result<(String, Option<i64>, i64), sqlx::Error> {
        sqlx::query_as(sql)
            .bind(after)
            .bind(BATCH)
            .fetch_one(conn)
            .await
    }
    let mut this = batch(&mut *conn, &packed, 0).await?;
    loop {
        let (json, last, count) = this;
        let next = async {
            match last {
                Some(last) if count == BATCH => Some(batch(&mut *conn, &packed, last).await),
                _ => None,
            }
        };
        let decode = async {
            // Let the next batch's query go out first.
            tokio::task::yield_now().await;
            type Packed<'a> = (i64, i64, String, i64, String, String, i64, &'a RawValue);
            let rows: Vec<Packed> =
                serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
                    position: last.unwrap_or_default(),
                    reason: format!("in the {count} events up to here: {e}"),
                })?;
            for (p, seq, org, at, actor, kind, version, data) in rows {
                f(replay_event(
                    (p, seq, org, at),
                    (actor, kind, version),
                    data.get(),
                )?)?;
            }
            Ok::<_, StoreError>(())
        };
        let (next, decoded) = tokio::join!(next, decode);
        decoded?;
        n += count as u64;
        match next {
            Some(next) => this = next?,
            None => break,
        }
    }
    Ok(n)
}
