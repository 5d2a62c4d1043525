//! PostgreSQL's SQL for the event log: the organization's append lock, an append's opening in one
//! statement, positions made from transaction ids and the horizon below which every transaction
//! has ended, statements fused as CTEs, JSON searched with jsonpath, and the rebuild's read.

use crate::error::StoreError;
use crate::log::POSITIONS_PER_TX;
use crate::log_replay::{replay_event, ReplayEvent, BATCH, NARROW};
use crate::open::{Head, Opened, Opening, CREATE_HEAD};
use futures_util::TryStreamExt;
use sqlx::{AnyConnection, FromRow, PgConnection, Row};

pub(crate) const CHUNK_ROWS: usize = 500;

/// Positions below this are final: every transaction that could still commit one has a larger id.
pub(crate) const HORIZON: &str =
    "position < pg_snapshot_xmin(pg_current_snapshot())::text::bigint * 65536";
const _: () = assert!(POSITIONS_PER_TX == 65536);

/// The statement that begins an append's transaction and takes, before it writes anything (so
/// its id, hence its positions, come after the lock), the organization's lock, and the shared
/// lock a rebuild takes exclusively. A simple query cannot take parameters: the id is quoted.
pub(crate) fn begin_append(org_id: &str) -> String {
    let org = org_id.replace('\'', "''");
    format!(
        "BEGIN; SELECT pg_advisory_xact_lock_shared({APPENDS_LOCK}), \
         pg_advisory_xact_lock(hashtextextended('{org}', 0))"
    )
}

/// The advisory lock every append holds shared from its first statement and a rebuild takes
/// exclusively.
pub const APPENDS_LOCK: i64 = 0x6561_736d_6170_7064;

pub(crate) fn hold_appends() -> String {
    format!("SELECT pg_advisory_xact_lock({APPENDS_LOCK})")
}

/// An opening as one row: the head, and as JSON the versions of the streams (an object), the
/// reservations held (an array of triples) and the counts (an object).
#[derive(sqlx::FromRow)]
struct OpenedRow {
    #[sqlx(flatten)]
    head: Head,
    versions: Option<String>,
    held: Option<String>,
    counts: Option<String>,
}

/// Open a batch of appends in one statement: the head (created on the organization's first
/// append), the versions of the streams, the reservations held and the counts. Held by the
/// lock, an existing head needs no row lock (nor a new row version). The select does not see
/// the CTE's row: exactly one of `h` and `chain_heads` answers.
pub(crate) async fn open(
    conn: &mut AnyConnection,
    o: &Opening<'_>,
) -> Result<(Head, Opened), StoreError> {
    let null = || "CAST(NULL AS TEXT)".to_string();
    let versions = match o.streams.len() {
        0 => null(),
        _ => format!(
            "(SELECT CAST(json_object_agg(stream_id, version) AS TEXT) FROM ({}) s)",
            o.versions_sql()
        ),
    };
    let held = match o.keys.len() {
        0 => null(),
        _ => format!(
            "(SELECT CAST(json_agg(json_build_array(scope, key, owner)) AS TEXT) FROM ({}) r)",
            o.held_sql()
        ),
    };
    let counts = match o.scopes.len() {
        0 => null(),
        _ => format!(
            "(SELECT CAST(json_object_agg(scope, n) AS TEXT) FROM ({}) c)",
            o.counts_sql()
        ),
    };
    let sql = format!(
        "WITH h AS ({CREATE_HEAD} DO NOTHING RETURNING last_hash, last_seq, projected_seq) \
         SELECT head.last_hash, head.last_seq, head.projected_seq, \
         pg_current_xact_id()::text::bigint * {POSITIONS_PER_TX} AS next_position, \
         {versions} AS versions, {held} AS held, {counts} AS counts FROM \
         (SELECT last_hash, last_seq, projected_seq FROM h UNION ALL \
         SELECT last_hash, last_seq, projected_seq FROM chain_heads WHERE org_id = $1) head"
    );
    let row = OpenedRow::from_row(&o.bind(sqlx::query(&sql)).fetch_one(conn).await?)?;
    let held: Vec<(String, String, String)> = Opened::json(o.org_id, "held", row.held)?;
    let opened = Opened {
        versions: Opened::json(o.org_id, "versions", row.versions)?,
        held: held
            .into_iter()
            .map(|(scope, key, owner)| ((scope, key), owner))
            .collect(),
        counts: Opened::json(o.org_id, "counts", row.counts)?,
    };
    Ok((row.head, opened))
}

/// Statements sent as one: the last is the main statement (whose rows come back) and the
/// others its CTEs, so no row may be changed by two of them.
pub(crate) fn fuse(mut parts: Vec<String>) -> String {
    let main = parts.pop().unwrap_or_default();
    if parts.is_empty() {
        return main;
    }
    let ctes: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(k, sql)| format!("w{k} AS ({sql})"))
        .collect();
    format!("WITH {} {main}", ctes.join(", "))
}

/// `position` among the positions `taken` selects: an array compares as one value, which keeps
/// the planner (misled by the outbox's churn) on the events' primary key.
pub(crate) fn position_in(taken: &str) -> String {
    format!("position = ANY(ARRAY({taken}))")
}

pub(crate) fn in_json_list(column: &str, list: &str) -> String {
    format!("{column} IN (SELECT jsonb_array_elements_text(CAST({list} AS jsonb)))")
}

/// Streams are `<kind>-<id>`.
pub(crate) fn stream_of(id: &str) -> String {
    format!("right(stream_id, length({id}) + 1) = '-' || {id}")
}

/// `id` as a string anywhere in the data, at any depth.
pub(crate) fn names_in_data(id: &str) -> String {
    format!(
        "jsonb_path_exists(CAST(data AS jsonb), '$.** ? (@ == $id)', \
         jsonb_build_object('id', CAST({id} AS TEXT)))"
    )
}

/// The rebuild's read: each batch's rows streamed and decoded as they arrive, on a connection
/// of its own (no conversion through sqlx's `Any` rows).
pub(crate) async fn each_event(
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
