//! The append transaction: lock the organization's chain head, check each append's expected
//! stream versions and reservations, insert the events (a trigger queues each in the outbox),
//! bring the read models along, advance the chain. Statements are batched so a batch of appends
//! costs the same handful of round trips whatever it holds.

use crate::db::Backend;
use crate::dialect::postgres;
use crate::error::{AppendError, StoreError};
use crate::log::{row_to_event, typed, AppendRequest, Constraint, EventLog, COLUMNS};
use crate::open::{check_versions, open, Head, Opened};
use crate::reservations::{named, Ledger};
use crate::sql::{anonymous_rows, Query, Sql, Write, BULK_VALUES};
use easm_events::{chain_hash, from_micros, Event, RecordedEvent, Role};
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use uuid::Uuid;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Read models updated in the transaction that appends the events they fold, so a committed event
/// is in the read models the moment it is visible, in every process. Appends of one organization
/// are serialized on its chain head, which is what makes folding them there safe.
pub trait InlineProjection: Send + Sync {
    /// Fold `recorded` (one organization's, in chain order), whose typed forms are `events`,
    /// into the read models, reading the rows they change on `conn`; the writes are returned
    /// for the append to send with its events (nothing in them reads the events table). The
    /// append hands over the typed events it holds: they are not decoded back from their JSON.
    fn project<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        recorded: &'a [RecordedEvent],
        events: &'a [Event],
    ) -> BoxFuture<'a, Result<Vec<Write>, StoreError>>;
}

/// Events the sweep folds per transaction, so a tool's bulk import is not one huge transaction.
/// (An append folds whatever backlog it finds: its caller reads its own write at once.)
const CATCH_UP_BATCH: i64 = 5_000;

/// The versions an append was decided on: of the streams it writes, and of those it only read.
fn expected(req: &AppendRequest) -> BTreeMap<&str, i64> {
    let mut expected: BTreeMap<&str, i64> = req
        .streams
        .iter()
        .map(|s| (s.stream_id.as_str(), s.expected_version))
        .collect();
    for c in &req.constraints {
        if let Constraint::StreamAt { stream_id, version } = c {
            expected.insert(stream_id, *version);
        }
    }
    expected
}

/// Each append's answer: its events, taken in order from `recorded`, or why it was refused.
fn answers(
    outcomes: Vec<Result<usize, AppendError>>,
    recorded: Vec<RecordedEvent>,
) -> Vec<Result<Vec<RecordedEvent>, AppendError>> {
    let mut recorded = recorded.into_iter();
    outcomes
        .into_iter()
        .map(|o| o.map(|n| recorded.by_ref().take(n).collect()))
        .collect()
}

/// The events of `req` as the log records them: positions from the head's next one, chain
/// sequences and hashes continuing the head's.
fn record(req: &AppendRequest, head: &Head, count: usize) -> Vec<RecordedEvent> {
    let occurred_at = from_micros(chrono::Utc::now().timestamp_micros());
    let (mut seq, mut prev_hash) = (head.last_seq, head.last_hash.clone());
    let mut recorded = Vec::with_capacity(count);
    for s in &req.streams {
        for (i, event) in s.events.iter().enumerate() {
            seq += 1;
            let mut e = RecordedEvent {
                event_id: Uuid::now_v7(),
                position: head.next_position + recorded.len() as i64,
                stream_id: s.stream_id.clone(),
                stream_version: s.expected_version + 1 + i as i64,
                event_type: event.event_type().into(),
                schema_version: event.schema_version(),
                occurred_at,
                org_id: req.org_id.clone(),
                actor: req.meta.actor.clone(),
                request_id: req.meta.request_id.clone(),
                correlation_id: req.meta.correlation_id.clone(),
                causation_id: req.meta.causation_id.clone(),
                data: event.data(),
                chain_seq: seq,
                prev_hash: prev_hash.clone(),
                hash: String::new(),
                trace_parent: req.meta.trace_parent.clone(),
            };
            e.hash = chain_hash(&prev_hash, &e);
            prev_hash = e.hash.clone();
            recorded.push(e);
        }
    }
    recorded
}

impl EventLog {
    /// A batch of the organization's appends in the transaction `conn` holds under its lock
    /// (see `group_commit`), in order: one opening reads what every append is checked against;
    /// each append is checked as the ones before it left the streams and reservations, and
    /// recorded after them on the chain; then the events, the reservations that moved, the read
    /// models and the head's advance are written together. Answers each append's outcome.
    pub(crate) async fn append_batch(
        &self,
        conn: &mut AnyConnection,
        org_id: &str,
        reqs: &[&AppendRequest],
    ) -> Result<Vec<Result<Vec<RecordedEvent>, AppendError>>, StoreError> {
        let backend = self.db.backend();
        let expected: Vec<BTreeMap<&str, i64>> = reqs.iter().map(|r| expected(r)).collect();
        let streams: BTreeSet<&str> = expected.iter().flat_map(|e| e.keys().copied()).collect();
        let streams: Vec<&str> = streams.into_iter().collect();
        let (keys, scopes) = named(reqs.iter().flat_map(|r| r.constraints.iter()));
        let (head, opened) = open(conn, backend, org_id, &streams, &keys, &scopes).await?;
        let Opened {
            mut versions,
            held,
            counts,
        } = opened;
        let mut ledger = Ledger::new(held, counts);

        let mut tip = head.clone();
        // Each admitted append's number of events, in `recorded`; or why it was refused.
        let mut outcomes: Vec<Result<usize, AppendError>> = Vec::with_capacity(reqs.len());
        let (mut recorded, mut events) = (vec![], vec![]);
        for (req, expected) in reqs.iter().zip(&expected) {
            let admitted =
                check_versions(expected, &versions).and_then(|()| ledger.admit(&req.constraints));
            if let Err(e) = admitted {
                outcomes.push(Err(e));
                continue;
            }
            for s in &req.streams {
                versions.insert(
                    s.stream_id.clone(),
                    s.expected_version + s.events.len() as i64,
                );
            }
            let count = req.streams.iter().map(|s| s.events.len()).sum();
            let these = record(req, &tip, count);
            if let Some(last) = these.last() {
                tip.last_seq = last.chain_seq;
                tip.last_hash = last.hash.clone();
                tip.next_position = last.position + 1;
            }
            if self.projection.is_some() {
                events.extend(req.streams.iter().flat_map(|s| s.events.iter().cloned()));
            }
            outcomes.push(Ok(these.len()));
            recorded.extend(these);
        }
        let mut writes = ledger.writes(org_id);
        if let Some(projection) = &self.projection {
            if !recorded.is_empty() {
                // Events appended earlier by a log without read models come first.
                let (mut earlier, mut typed_earlier) =
                    org_chain_after(conn, org_id, head.projected_seq, head.last_seq).await?;
                writes.extend(if earlier.is_empty() {
                    projection.project(conn, &recorded, &events).await?
                } else {
                    earlier.extend(recorded.iter().cloned());
                    typed_earlier.extend(events);
                    projection.project(conn, &earlier, &typed_earlier).await?
                });
            }
        }
        if recorded.is_empty() {
            for w in &writes {
                w.run(conn).await?;
            }
            return Ok(answers(outcomes, recorded));
        }
        // The read models, when this log keeps them, were folded above in this transaction.
        let advanced = Advance {
            org_id,
            seq: tip.last_seq,
            hash: &tip.last_hash,
            projected: if self.projection.is_some() {
                tip.last_seq
            } else {
                head.projected_seq
            },
        };
        insert_events(conn, backend, &recorded, &advanced, &writes).await?;
        Ok(answers(outcomes, recorded))
    }

    /// A write transaction holding the organization's append lock. On PostgreSQL the lock is
    /// taken in the statement that begins the transaction (one round trip), before the
    /// transaction writes anything, so its id (hence its positions) is assigned after the lock:
    /// chain order and position order agree within an organization. The shared lock lets a
    /// rebuild hold every append out before any of them locks a row. On SQLite the head's write
    /// in `open` takes the database's write lock.
    pub(crate) async fn begin_locked(
        &self,
        org_id: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.db.backend() {
            Backend::Postgres => {
                self.db
                    .writer()
                    .begin_with(postgres::begin_append(org_id))
                    .await?
            }
            Backend::Sqlite => self.db.writer().begin().await?,
        })
    }

    /// Per organization, the last chain sequence its read models include.
    pub async fn projected(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let rows = sqlx::query("SELECT org_id, projected_seq FROM chain_heads")
            .fetch_all(self.db.reader())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("org_id")?, r.try_get("projected_seq")?)))
            .collect()
    }

    /// Bring the read models of organizations whose events were appended by a log without them
    /// (tools, older processes) up to their chain heads. Returns how many organizations moved.
    pub async fn project_lagging(&self) -> Result<usize, StoreError> {
        let Some(projection) = &self.projection else {
            return Ok(0);
        };
        let backend = self.db.backend();
        let orgs: Vec<String> =
            sqlx::query_scalar("SELECT org_id FROM chain_heads WHERE projected_seq < last_seq")
                .fetch_all(self.db.reader())
                .await?;
        for org_id in &orgs {
            loop {
                let mut tx = self.begin_locked(org_id).await?;
                let (head, _) = open(&mut tx, backend, org_id, &[], &[], &[]).await?;
                let upto = head.last_seq.min(head.projected_seq + CATCH_UP_BATCH);
                if head.projected_seq < upto {
                    let (recorded, events) =
                        org_chain_after(&mut tx, org_id, head.projected_seq, upto).await?;
                    for write in projection.project(&mut tx, &recorded, &events).await? {
                        write.run(&mut tx).await?;
                    }
                    sqlx::query("UPDATE chain_heads SET projected_seq = $1 WHERE org_id = $2")
                        .bind(upto)
                        .bind(org_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                if upto >= head.last_seq {
                    break;
                }
            }
        }
        Ok(orgs.len())
    }
}

/// Where an append leaves the organization's chain head.
struct Advance<'a> {
    org_id: &'a str,
    seq: i64,
    hash: &'a str,
    projected: i64,
}

/// Values of an event row (the columns of [`COLUMNS`]).
const WIDTH: usize = 21;

const ADVANCE_HEAD: &str =
    "UPDATE chain_heads SET last_seq = $1, last_hash = $2, projected_seq = $3 WHERE org_id = $4";

impl<'a> Advance<'a> {
    /// `$1` to `$4` of [`ADVANCE_HEAD`].
    fn bind(&self, q: Query<'a>) -> Query<'a> {
        q.bind(self.seq)
            .bind(self.hash)
            .bind(self.projected)
            .bind(self.org_id)
    }
}

/// Insert the events and advance the chain head, and run the read models' `writes`, in as few
/// round trips as the dialect allows: the head's advance and, in order, the writes that fit go
/// with the last events (fused, each table once on PostgreSQL so that no row is changed twice
/// in the statement).
async fn insert_events(
    conn: &mut AnyConnection,
    backend: Backend,
    events: &[RecordedEvent],
    head: &Advance<'_>,
    writes: &[Write],
) -> Result<(), sqlx::Error> {
    if backend == Backend::Sqlite {
        return run_each(conn, events, head, writes).await;
    }
    let chunks: Vec<&[RecordedEvent]> = events.chunks(backend.chunk_rows()).collect();
    let Some((last, earlier)) = chunks.split_last() else {
        return Ok(());
    };
    for chunk in earlier {
        let sql = Sql::new(format!("INSERT INTO events ({COLUMNS}) VALUES "))
            .rows(chunk.len(), WIDTH, 0, &Sql::default())
            .render(0);
        bind_events(sqlx::query(&sql), chunk)
            .execute(&mut *conn)
            .await?;
    }
    // $1 to $4 the head's advance, then the last events, then the writes that fit.
    let mut parts = vec![Sql::new(format!("INSERT INTO events ({COLUMNS}) VALUES "))
        .rows(last.len(), WIDTH, 4, &Sql::default())
        .render(0)];
    let mut next = 5 + last.len() * WIDTH;
    let mut tables = BTreeSet::new();
    let mut fused = 0;
    for w in writes {
        let fits = next + w.values.len() <= BULK_VALUES
            && (backend == Backend::Sqlite || tables.insert(w.table));
        if !fits {
            break;
        }
        parts.push(w.sql.render(next - 1));
        next += w.values.len();
        fused += 1;
    }
    parts.push(ADVANCE_HEAD.to_string());
    let sql = backend.fuse(parts);
    // Not kept prepared: sqlx's `Any` driver types a NULL as an integer, so a statement first
    // prepared with a NULL (a finding without a CVSS score) refused the same text's next call
    // with a value there ("incorrect binary data format").
    let mut q = bind_events(head.bind(sqlx::query(&sql).persistent(false)), last);
    for w in &writes[..fused] {
        q = w.bind(q);
    }
    q.execute(&mut *conn).await?;
    for w in &writes[fused..] {
        w.run(conn).await?;
    }
    Ok(())
}

/// SQLite's [`insert_events`]: it runs in this process, so one statement at a time costs no
/// round trips, and each statement's values are bound by position (see
/// [`Sql::render_positional`]).
async fn run_each(
    conn: &mut AnyConnection,
    events: &[RecordedEvent],
    head: &Advance<'_>,
    writes: &[Write],
) -> Result<(), sqlx::Error> {
    for chunk in events.chunks(BULK_VALUES / WIDTH) {
        let sql = format!(
            "INSERT INTO events ({COLUMNS}) VALUES {}",
            anonymous_rows(chunk.len(), WIDTH)
        );
        bind_events(sqlx::query(&sql), chunk)
            .execute(&mut *conn)
            .await?;
    }
    head.bind(sqlx::query(ADVANCE_HEAD))
        .execute(&mut *conn)
        .await?;
    for w in writes {
        w.run(conn).await?;
    }
    Ok(())
}

fn bind_events<'q>(mut q: Query<'q>, events: &'q [RecordedEvent]) -> Query<'q> {
    for e in events {
        q = q
            .bind(e.position)
            .bind(e.event_id.to_string())
            .bind(&e.stream_id)
            .bind(e.stream_version)
            .bind(&e.event_type)
            .bind(e.schema_version as i64)
            .bind(e.occurred_at.timestamp_micros())
            .bind(e.org_id.as_str())
            .bind(e.actor.kind.as_str())
            .bind(&e.actor.id)
            .bind(e.actor.role.map(Role::as_str))
            .bind(&e.actor.source_ip)
            .bind(&e.request_id)
            .bind(&e.correlation_id)
            .bind(&e.causation_id)
            .bind(e.data.to_string())
            .bind(e.chain_seq)
            .bind(&e.prev_hash)
            .bind(&e.hash)
            .bind(&e.actor.user_agent)
            .bind(&e.trace_parent);
    }
    q
}

/// An organization's events with chain sequence in `(after, upto]`, in chain order. Read under
/// the organization's lock, so nothing in that range can still be uncommitted.
async fn org_chain_after(
    conn: &mut AnyConnection,
    org_id: &str,
    after: i64,
    upto: i64,
) -> Result<(Vec<RecordedEvent>, Vec<Event>), StoreError> {
    if after >= upto {
        return Ok((vec![], vec![]));
    }
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM events WHERE org_id = $1 AND chain_seq > $2 AND chain_seq <= $3 \
         ORDER BY chain_seq"
    ))
    .bind(org_id)
    .bind(after)
    .bind(upto)
    .fetch_all(&mut *conn)
    .await?;
    let recorded = rows
        .iter()
        .map(row_to_event)
        .collect::<Result<Vec<_>, _>>()?;
    let events = recorded.iter().map(typed).collect::<Result<_, _>>()?;
    Ok((recorded, events))
}
