//! SQLite's SQL for the event log: an append's opening in one call (its head's write takes the
//! database's write lock first), positions after the log's last one (one writer commits in
//! order), statements sent as one call, JSON searched with `json_tree`, and the rebuild's read.

use crate::error::StoreError;
use crate::log_replay::{replay_event, ReplayEvent, BATCH, NARROW};
use crate::open::{Head, Opened, Opening, CREATE_HEAD};
use serde_json::value::RawValue;
use sqlx::{AnyConnection, Column, FromRow, Row};

/// sqlx binds SQLite parameters in time that grows with the statement: 20 to 50 rows is fastest.
pub(crate) const CHUNK_ROWS: usize = 50;

/// SQLite has one writer: a write takes the database's write lock until the transaction ends.
pub(crate) fn hold_appends() -> String {
    "UPDATE chain_heads SET projected_seq = projected_seq".into()
}

/// Open a batch of appends in one call of several statements (SQLite cannot modify data in a
/// CTE): the head's write first (created on the organization's first append), which takes the
/// database's write lock before anything is read; then the versions of the streams, the
/// reservations held and the counts. Each statement's rows are told apart by the name of their
/// columns and decode as their own type.
pub(crate) async fn open(
    conn: &mut AnyConnection,
    o: &Opening<'_>,
) -> Result<(Head, Opened), StoreError> {
    let mut parts = vec![format!(
        "{CREATE_HEAD} DO UPDATE SET last_seq = chain_heads.last_seq \
         RETURNING last_hash, last_seq, projected_seq, \
         (SELECT COALESCE(MAX(position), 0) + 1 FROM events) AS next_position"
    )];
    if !o.streams.is_empty() {
        parts.push(o.versions_sql());
    }
    if !o.keys.is_empty() {
        parts.push(o.held_sql());
    }
    if !o.scopes.is_empty() {
        parts.push(o.counts_sql());
    }
    let sql = fuse(parts);
    let rows = o.bind(sqlx::query(&sql)).fetch_all(&mut *conn).await?;
    let (mut head, mut opened) = (None, Opened::default());
    for row in rows {
        let named = |column: &str| row.columns().iter().any(|c| c.name() == column);
        if named("last_hash") {
            head = Some(Head::from_row(&row)?);
        } else if named("version") {
            opened
                .versions
                .insert(row.try_get("stream_id")?, row.try_get("version")?);
        } else if named("owner") {
            opened.held.insert(
                (row.try_get("scope")?, row.try_get("key")?),
                row.try_get("owner")?,
            );
        } else {
            opened
                .counts
                .insert(row.try_get("scope")?, row.try_get("n")?);
        }
    }
    Ok((head.ok_or(sqlx::Error::RowNotFound)?, opened))
}

/// Statements of one call (SQLite cannot modify data in a CTE).
pub(crate) fn fuse(parts: Vec<String>) -> String {
    parts.join("; ")
}

pub(crate) fn position_in(taken: &str) -> String {
    format!("position IN ({taken})")
}

pub(crate) fn in_json_list(column: &str, list: &str) -> String {
    format!("{column} IN (SELECT value FROM json_each({list}))")
}

/// Streams are `<kind>-<id>`.
pub(crate) fn stream_of(id: &str) -> String {
    format!("substr(stream_id, -(length({id}) + 1)) = '-' || {id}")
}

/// `id` as a string anywhere in the data, at any depth.
pub(crate) fn names_in_data(id: &str) -> String {
    format!("EXISTS (SELECT 1 FROM json_tree(events.data) WHERE type = 'text' AND value = {id})")
}

/// The rebuild's read: a batch packed into one JSON array (sqlx hands each SQLite row over
/// between threads, which costs more than reading it), the next batch read while this one is
/// decoded.
pub(crate) async fn each_event(
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
