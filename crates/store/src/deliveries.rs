//! The webhook delivery queue: one row per (event, endpoint) with its persisted schedule, claimed
//! by delivery processes for a bounded time so that a process that dies mid-attempt only delays
//! the delivery, and every attempt with what the receiver answered.

use crate::db::{Backend, Db};
use crate::sql::{fuse, Sql, Val, Write};
use crate::{error::StoreError, now_micros};
use easm_events::{OrgId, WebhookId};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const PENDING: &str = "pending";
pub const SUCCEEDED: &str = "succeeded";
pub const FAILED: &str = "failed";
/// Not sent: the endpoint's filter (or its kind) leaves the message out; kept to be counted.
pub const FILTERED: &str = "filtered";

/// A schedule step past the end of any retry schedule: the delivery gets one attempt, no retries
/// (hand-made retries and test messages).
pub const ONE_ATTEMPT: i64 = 1 << 30;

/// A message to queue: the body is fixed here, so every retry sends the same bytes.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub delivery_id: String,
    pub org_id: OrgId,
    pub webhook_id: WebhookId,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    /// 0 to follow the whole retry schedule, [`ONE_ATTEMPT`] for a single attempt.
    pub schedule_step: i64,
    /// The event's log position (none for test messages): FIFO endpoints are sent in its order.
    pub position: Option<i64>,
    pub fifo: bool,
    /// Messages per request for endpoints that batch; 0 for one at a time.
    pub batch: i64,
    /// Why the message is not sent, when it is not.
    pub filtered: Option<String>,
    /// The event's `traceparent`: its attempts are spans of the trace that caused it.
    pub trace_parent: Option<String>,
}

/// A delivery this process has claimed and must attempt.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    pub delivery_id: String,
    pub org_id: OrgId,
    pub webhook_id: WebhookId,
    pub event_type: String,
    pub payload: String,
    pub attempts: i64,
    pub schedule_step: i64,
    pub fifo: bool,
    pub batch: i64,
    /// Set when the message goes to its sender before its row exists: the row is then written
    /// once, with what came of it (see [`DeliveryQueue::finish`]).
    pub unwritten: Option<Unwritten>,
    pub trace_parent: Option<String>,
}

/// What a message's row needs beyond its [`DueDelivery`] when the row is written only with the
/// message's outcome.
#[derive(Clone, Debug)]
pub struct Unwritten {
    pub event_id: String,
    /// The event's log position: its outbox row stays until every such message of it is written.
    pub position: i64,
}

/// What one attempt found.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub started_at: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub response: Option<String>,
    /// The request that carried several messages at once: its id and how many.
    pub batch: Option<(String, i64)>,
}

/// Where a message goes after an attempt, or without one, on its way to the queue.
#[derive(Clone, Debug)]
pub struct Finished {
    pub delivery: DueDelivery,
    /// None when the message was not sent: its endpoint could not be sent to, or (for an
    /// unwritten message) had no room for it.
    pub attempt: Option<Attempt>,
    pub next: NextStep,
}

enum FailureRun {
    /// The endpoint answered in this batch; failing since this attempt after it, if any.
    AfterSuccess(Option<i64>),
    /// Only failures in this batch, the first at this time.
    Continues(i64),
}

/// Per endpoint of a batch, what its attempts say about its run of failures.
fn failure_runs(batch: &[Finished]) -> Vec<(WebhookId, FailureRun)> {
    let mut by_endpoint: std::collections::BTreeMap<&WebhookId, Vec<(i64, bool)>> =
        Default::default();
    for f in batch {
        if let Some(a) = &f.attempt {
            by_endpoint
                .entry(&f.delivery.webhook_id)
                .or_default()
                .push((a.started_at, f.next == NextStep::Succeeded));
        }
    }
    by_endpoint
        .into_iter()
        .map(|(id, mut attempts)| {
            attempts.sort_unstable();
            let last_success = attempts.iter().rposition(|(_, ok)| *ok);
            let run = match last_success {
                Some(i) => FailureRun::AfterSuccess(attempts.get(i + 1).map(|(at, _)| *at)),
                None => FailureRun::Continues(attempts[0].0),
            };
            (id.clone(), run)
        })
        .collect()
}

/// Where a delivery goes after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    Succeeded,
    /// Try again at this time (epoch microseconds), having used this many schedule steps.
    RetryAt {
        at: i64,
        schedule_step: i64,
    },
    Failed,
    /// Ended without an attempt, for this reason (its endpoint was deleted or cannot be sent
    /// to); it can be retried by hand like any failed one.
    Abandoned(&'static str),
}

/// Rows per multi-row statement: statements of a few sizes stay prepared, and SQLite binds
/// numbered placeholders in time that grows with the square of their number.
const CHUNK: usize = 50;
/// PostgreSQL takes long runs of rows (batched deliveries) in statements this large.
const LARGE_CHUNK: usize = 1000;

/// `rows` in statements of few distinct sizes: on PostgreSQL runs of [`LARGE_CHUNK`] first, then
/// [`CHUNK`]s, then the rest.
fn chunked<T>(backend: Backend, rows: &[T]) -> Vec<&[T]> {
    let mut out = vec![];
    let mut rest = rows;
    if backend == Backend::Postgres {
        while rest.len() >= LARGE_CHUNK {
            let (head, tail) = rest.split_at(LARGE_CHUNK);
            out.push(head);
            rest = tail;
        }
    }
    out.extend(rest.chunks(CHUNK));
    out
}

/// Whether this process queued FIFO messages, or a probe found some pending.
static FIFO_QUEUED: AtomicBool = AtomicBool::new(false);
static FIFO_PROBED: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
/// How often a process that queued no FIFO message looks for another process's.
const FIFO_PROBE: Duration = Duration::from_secs(1);

const DUE_COLUMNS: &str =
    "delivery_id, org_id, webhook_id, event_type, payload, attempts, schedule_step, fifo, batch, \
     traceparent";

const REQUEUE: &str = "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, \
     schedule_step = $2, claimed_by = NULL, claimed_until = NULL, updated_at = $1";

/// Rows queued by this process after which PostgreSQL's statistics of the queue are refreshed.
const ANALYZE_EVERY: u64 = 10_000;

#[derive(Clone, Debug)]
pub struct DeliveryQueue {
    pub(crate) db: Db,
    queued: Arc<AtomicU64>,
}

/// Who claims deliveries as they are queued, for how long, and at most how many at a time.
pub struct QueueClaim<'a> {
    pub holder: &'a str,
    pub ttl: Duration,
    pub max: usize,
}

/// A row of the queue as it is inserted: queued (with its claim, if any), or written once with
/// the outcome of its first attempt.
struct NewRow<'a> {
    delivery_id: &'a str,
    org_id: &'a OrgId,
    webhook_id: &'a WebhookId,
    event_id: &'a str,
    event_type: &'a str,
    payload: &'a str,
    position: Option<i64>,
    fifo: bool,
    batch: i64,
    claim: Option<(&'a str, i64)>,
    trace_parent: Option<&'a str>,
    state: RowState,
}

impl<'a> NewRow<'a> {
    fn queued(q: &'a Queuing<'a>, now: i64) -> Self {
        let d = q.row;
        NewRow {
            delivery_id: &d.delivery_id,
            org_id: &d.org_id,
            webhook_id: &d.webhook_id,
            event_id: &d.event_id,
            event_type: &d.event_type,
            payload: &d.payload,
            position: d.position,
            fifo: d.fifo,
            batch: d.batch,
            claim: q.holder.zip(q.until),
            trace_parent: d.trace_parent.as_deref(),
            state: RowState {
                status: if d.filtered.is_some() {
                    FILTERED
                } else {
                    PENDING
                },
                attempts: 0,
                schedule_step: d.schedule_step,
                next_attempt_at: now,
                last_status: None,
                last_error: d.filtered.clone(),
                last_batch_id: None,
            },
        }
    }

    /// The row of an unwritten message, as its outcome leaves it.
    fn written(f: &'a Finished, u: &'a Unwritten, now: i64) -> Self {
        let d = &f.delivery;
        NewRow {
            delivery_id: &d.delivery_id,
            org_id: &d.org_id,
            webhook_id: &d.webhook_id,
            event_id: &u.event_id,
            event_type: &d.event_type,
            payload: &d.payload,
            position: Some(u.position),
            fifo: d.fifo,
            batch: d.batch,
            claim: None,
            trace_parent: d.trace_parent.as_deref(),
            state: RowState::after(f, now),
        }
    }
}

/// The columns of a row that its attempts move on.
struct RowState {
    status: &'static str,
    attempts: i64,
    schedule_step: i64,
    next_attempt_at: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    last_batch_id: Option<String>,
}

impl RowState {
    fn after(f: &Finished, now: i64) -> Self {
        let d = &f.delivery;
        let (status, next_attempt_at, schedule_step) = match f.next {
            NextStep::Succeeded => (SUCCEEDED, now, d.schedule_step),
            NextStep::RetryAt { at, schedule_step } => (PENDING, at, schedule_step),
            NextStep::Failed | NextStep::Abandoned(_) => (FAILED, now, d.schedule_step),
        };
        let a = f.attempt.as_ref();
        RowState {
            status,
            attempts: d.attempts + i64::from(a.is_some()),
            schedule_step,
            next_attempt_at,
            last_status: a.and_then(|a| a.status_code),
            last_error: match f.next {
                NextStep::Abandoned(reason) => Some(reason.to_string()),
                _ => a.and_then(|a| a.error.clone()),
            },
            last_batch_id: a
                .and_then(|a| a.batch.as_ref())
                .filter(|_| f.next == NextStep::Succeeded)
                .map(|(id, _)| id.clone()),
        }
    }

    fn values(&self) -> [Val; 7] {
        [
            Val::Text(self.status.into()),
            Val::Int(self.attempts),
            Val::Int(self.schedule_step),
            Val::Int(self.next_attempt_at),
            Val::OptInt(self.last_status),
            Val::OptText(self.last_error.clone()),
            Val::OptText(self.last_batch_id.clone()),
        ]
    }
}

/// Inserts rows of the queue, created and updated at `now`; one already there (same id) is left
/// as it is.
fn deliveries_write(rows: &[NewRow<'_>], now: i64) -> Write {
    let mut values = Vec::with_capacity(1 + rows.len() * 19);
    values.push(Val::Int(now));
    for r in rows {
        let (holder, until) = r.claim.unzip();
        values.extend([
            Val::Text(r.delivery_id.to_string()),
            Val::Text(r.org_id.to_string()),
            Val::Text(r.webhook_id.to_string()),
            Val::Text(r.event_id.to_string()),
            Val::Text(r.event_type.to_string()),
            Val::Text(r.payload.to_string()),
            Val::OptText(holder.map(str::to_string)),
            Val::OptInt(until),
            Val::OptInt(r.position),
            Val::Int(r.fifo as i64),
            Val::Int(r.batch),
            Val::OptText(r.trace_parent.map(str::to_string)),
        ]);
        values.extend(r.state.values());
    }
    let now_twice = Sql::new(", ").value(0).text(", ").value(0);
    Write {
        table: "deliveries",
        sql: Sql::new(
            "INSERT INTO deliveries (delivery_id, org_id, webhook_id, event_id, event_type, \
             payload, claimed_by, claimed_until, position, fifo, batch, traceparent, status, \
             attempts, schedule_step, next_attempt_at, last_status, last_error, last_batch_id, \
             created_at, updated_at) VALUES ",
        )
        .rows(rows.len(), 19, 1, &now_twice)
        .text(" ON CONFLICT (delivery_id) DO NOTHING"),
        values,
    }
}

/// Removes outbox rows by position.
fn clear_outbox(positions: &[i64]) -> Write {
    Write {
        table: "outbox",
        sql: Sql::new("DELETE FROM outbox WHERE position IN (")
            .values(0, positions.len())
            .text(")"),
        values: positions.iter().map(|p| Val::Int(*p)).collect(),
    }
}

/// A row on its way into the queue, with the claim it is queued with.
pub struct Queuing<'a> {
    row: &'a NewDelivery,
    holder: Option<&'a str>,
    until: Option<i64>,
}

impl<'a> Queuing<'a> {
    /// The rows to queue. With `claim`, the first `max` to send in any order (not filtered, not
    /// FIFO; messages that travel in batches hold no attempt slot each and do not count) are
    /// queued already claimed by `holder` for `ttl`, so that the holder attempts them without
    /// claiming them from the queue.
    pub fn plan(rows: &'a [NewDelivery], claim: Option<&QueueClaim<'a>>) -> Vec<Queuing<'a>> {
        let now = now_micros();
        let mut claimable = 0;
        rows.iter()
            .map(|row| match claim {
                Some(c)
                    if (claimable < c.max || row.batch > 0)
                        && !row.fifo
                        && row.filtered.is_none() =>
                {
                    claimable += usize::from(row.batch <= 0);
                    Queuing {
                        row,
                        holder: Some(c.holder),
                        until: Some(now + c.ttl.as_micros() as i64),
                    }
                }
                _ => Queuing {
                    row,
                    holder: None,
                    until: None,
                },
            })
            .collect()
    }

    /// The delivery its holder attempts, when it is queued claimed.
    pub fn claimed(&self) -> Option<DueDelivery> {
        let d = self.row;
        self.holder.map(|_| DueDelivery {
            delivery_id: d.delivery_id.clone(),
            org_id: d.org_id.clone(),
            webhook_id: d.webhook_id.clone(),
            event_type: d.event_type.clone(),
            payload: d.payload.clone(),
            attempts: 0,
            schedule_step: d.schedule_step,
            fifo: d.fifo,
            batch: d.batch,
            unwritten: None,
            trace_parent: d.trace_parent.clone(),
        })
    }

    pub fn row(&self) -> &NewDelivery {
        self.row
    }

    pub fn is_claimed(&self) -> bool {
        self.holder.is_some()
    }
}

impl DeliveryQueue {
    pub fn new(db: Db) -> Self {
        DeliveryQueue {
            db,
            queued: Arc::default(),
        }
    }

    /// A burst of fan-out can grow the queue from nothing to many thousands of rows in seconds,
    /// long before autovacuum notices; with stale statistics PostgreSQL sorts the whole queue on
    /// every claim instead of reading the pending index in order. Refresh them as we go, on the
    /// side: awaited here, the refresh held the fan-out (and every delivery behind it) for tens
    /// of milliseconds each time. A failure is only logged.
    fn refresh_statistics(&self, added: u64) {
        let before = self.queued.fetch_add(added, Ordering::Relaxed);
        if self.db.backend() == Backend::Postgres
            && before / ANALYZE_EVERY != (before + added) / ANALYZE_EVERY
        {
            let pool = self.db.writer().clone();
            tokio::spawn(async move {
                if let Err(e) = sqlx::query("ANALYZE deliveries").execute(&pool).await {
                    tracing::warn!(error = %e, "could not refresh the delivery queue's statistics");
                }
            });
        }
    }

    /// Queue deliveries due now; one already queued (same id) is left as it is. The outbox rows
    /// at `outbox_done` are removed in the same transaction, so an event leaves the outbox
    /// exactly when its deliveries exist. Returns the ids of the rows this inserted.
    pub async fn enqueue(
        &self,
        rows: &[Queuing<'_>],
        outbox_done: &[i64],
    ) -> Result<HashSet<String>, StoreError> {
        let now = now_micros();
        // The outbox rows first: on PostgreSQL the queue's insert is the statement whose rows
        // come back.
        let mut writes: Vec<Write> = outbox_done.chunks(500).map(clear_outbox).collect();
        let backend = self.db.backend();
        let new_rows: Vec<NewRow> = rows.iter().map(|q| NewRow::queued(q, now)).collect();
        writes.extend(chunked(backend, &new_rows).into_iter().map(|chunk| {
            let mut w = deliveries_write(chunk, now);
            w.sql = w.sql.text(" RETURNING delivery_id");
            w
        }));
        let together = rows.len() <= CHUNK && outbox_done.len() <= 500;
        let mut inserted = HashSet::new();
        for r in self.run(&writes, together).await? {
            inserted.insert(r.try_get::<String, _>("delivery_id")?);
        }
        self.refresh_statistics(rows.len() as u64);
        if rows.iter().any(|q| q.row.fifo && q.row.filtered.is_none()) {
            FIFO_QUEUED.store(true, Ordering::Relaxed);
        }
        Ok(inserted)
    }

    /// Whether FIFO lines may wait in the queue: known at once when this process queued some,
    /// looked for (one indexed probe) every [`FIFO_PROBE`], so claims of queues without FIFO
    /// endpoints pay nothing for them; another process's lines wait at most that long.
    async fn fifo_lines(&self) -> Result<bool, StoreError> {
        let due = {
            let mut last = FIFO_PROBED.lock().expect("fifo probe");
            let due = last.is_none_or(|t| t.elapsed() >= FIFO_PROBE);
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        if due {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM deliveries WHERE status = 'pending' AND fifo = 1 LIMIT 1",
            )
            .fetch_optional(self.db.reader())
            .await?;
            FIFO_QUEUED.store(found.is_some(), Ordering::Relaxed);
        }
        Ok(FIFO_QUEUED.load(Ordering::Relaxed))
    }

    /// Claim up to `limit` due deliveries for `ttl`, oldest due first: of an endpoint that takes
    /// messages in any order at most `per_endpoint` (times its batch size, if it batches) and
    /// none of the endpoints in `skip` (already busy here); of a FIFO endpoint with nothing in
    /// flight, its oldest pending messages in log order (one, or a batch), once the oldest is
    /// due. A claim that expires (its process died) makes the delivery due again.
    pub async fn claim(
        &self,
        holder: &str,
        ttl: Duration,
        per_endpoint: i64,
        limit: i64,
        skip: &[WebhookId],
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let now = now_micros();
        let skip_sql = if skip.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = (0..skip.len()).map(|i| format!("${}", i + 6)).collect();
            format!(" AND webhook_id NOT IN ({})", list.join(", "))
        };
        let free = "status = 'pending' AND next_attempt_at <= $3 \
                    AND (claimed_until IS NULL OR claimed_until < $3)";
        let size = "CASE WHEN batch > 1 THEN batch ELSE 1 END";
        // The outer condition is checked again on the row as another claimer left it (PostgreSQL
        // re-evaluates it after waiting for that claimer), so no delivery is claimed twice.
        // Only the oldest due candidates are ranked, so a long backlog costs an index range,
        // not a sort of the whole queue; busy endpoints are skipped before the range is cut.
        let sql = format!(
            "UPDATE deliveries SET claimed_by = $1, claimed_until = $2 WHERE delivery_id IN ( \
               SELECT delivery_id FROM ( \
                 SELECT delivery_id, next_attempt_at, batch, ROW_NUMBER() OVER \
                   (PARTITION BY webhook_id ORDER BY next_attempt_at, delivery_id) AS rn \
                 FROM (SELECT delivery_id, webhook_id, next_attempt_at, batch FROM deliveries \
                       WHERE {free} AND fifo = 0{skip_sql} ORDER BY next_attempt_at LIMIT $5 * 4) c) d \
               WHERE rn <= $4 * {size} ORDER BY next_attempt_at LIMIT $5) \
             AND {free} \
             RETURNING {DUE_COLUMNS}"
        );
        let mut q = sqlx::query(&sql)
            .bind(holder)
            .bind(now + ttl.as_micros() as i64)
            .bind(now)
            .bind(per_endpoint)
            .bind(limit);
        for s in skip {
            q = q.bind(s.as_str());
        }
        let mut rows = q.fetch_all(self.db.writer()).await?;
        if self.fifo_lines().await? {
            // FIFO lines: the head of each line, and what follows it up to a batch, when none
            // of the line is claimed and the head is due. Retries keep their place at the head.
            let fifo = format!(
                "UPDATE deliveries SET claimed_by = $1, claimed_until = $2 WHERE delivery_id IN ( \
                   SELECT delivery_id FROM ( \
                     SELECT delivery_id, next_attempt_at, batch, \
                       ROW_NUMBER() OVER (PARTITION BY webhook_id ORDER BY position, delivery_id) AS rn, \
                       FIRST_VALUE(next_attempt_at) OVER \
                         (PARTITION BY webhook_id ORDER BY position, delivery_id) AS head_due, \
                       MAX(CASE WHEN claimed_until >= $3 THEN 1 ELSE 0 END) OVER \
                         (PARTITION BY webhook_id) AS busy \
                     FROM deliveries WHERE status = 'pending' AND fifo = 1) l \
                   WHERE busy = 0 AND head_due <= $3 AND next_attempt_at <= $3 AND rn <= {size} \
                   LIMIT $4) \
                 AND {free} \
                 RETURNING {DUE_COLUMNS}"
            );
            rows.extend(
                sqlx::query(&fifo)
                    .bind(holder)
                    .bind(now + ttl.as_micros() as i64)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(self.db.writer())
                    .await?,
            );
        }
        rows.iter()
            .map(|r| {
                Ok(DueDelivery {
                    delivery_id: r.try_get("delivery_id")?,
                    org_id: OrgId::new(r.try_get::<String, _>("org_id")?),
                    webhook_id: WebhookId::new(r.try_get::<String, _>("webhook_id")?),
                    event_type: r.try_get("event_type")?,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                    schedule_step: r.try_get("schedule_step")?,
                    fifo: r.try_get::<i64, _>("fifo")? != 0,
                    batch: r.try_get("batch")?,
                    unwritten: None,
                    trace_parent: r.try_get("traceparent")?,
                })
            })
            .collect()
    }

    /// Run `writes` in one transaction and answer the rows they return; `together`: in one
    /// round trip (see `fuse`), when no row is changed by two of them.
    async fn run(&self, writes: &[Write], together: bool) -> Result<Vec<AnyRow>, StoreError> {
        if writes.is_empty() {
            return Ok(vec![]);
        }
        if together {
            let sql = fuse(self.db.backend(), writes);
            let mut q = sqlx::query(&sql);
            for w in writes {
                q = w.bind(q);
            }
            return Ok(match self.db.backend() {
                // One statement needs no transaction of its own.
                Backend::Postgres => q.fetch_all(self.db.writer()).await?,
                Backend::Sqlite => {
                    let mut tx = self.db.writer().begin().await?;
                    let rows = q.fetch_all(&mut *tx).await?;
                    tx.commit().await?;
                    rows
                }
            });
        }
        let mut tx = self.db.writer().begin().await?;
        let mut rows = vec![];
        for w in writes {
            let sql = w.sql.render(0);
            rows.extend(w.bind(sqlx::query(&sql)).fetch_all(&mut *tx).await?);
        }
        tx.commit().await?;
        Ok(rows)
    }

    /// Hand claimed deliveries back untouched (this process has no room for them now).
    pub async fn unclaim(&self, holder: &str, ids: &[String]) -> Result<(), StoreError> {
        for chunk in ids.chunks(CHUNK) {
            let list: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "UPDATE deliveries SET claimed_by = NULL, claimed_until = NULL \
                 WHERE claimed_by = $1 AND delivery_id IN ({})",
                list.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(holder);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(self.db.writer()).await?;
        }
        Ok(())
    }

    /// Log attempts and move their deliveries on (write the rows of unwritten ones), and remove
    /// the outbox rows at `outbox_done`, all in one transaction (one commit for a whole batch of
    /// attempts), and a batch of up to 50 in one round trip. Returns the endpoints whose every
    /// attempt failed since a time (epoch microseconds), as that run now stands.
    pub async fn finish(
        &self,
        batch: &[Finished],
        outbox_done: &[i64],
    ) -> Result<Vec<(WebhookId, i64)>, StoreError> {
        if batch.is_empty() {
            return Ok(vec![]);
        }
        let now = now_micros();
        let mut resets: Vec<(WebhookId, Option<i64>)> = vec![];
        let mut continues: Vec<(WebhookId, i64)> = vec![];
        for (webhook_id, run) in failure_runs(batch) {
            match run {
                FailureRun::AfterSuccess(since) => resets.push((webhook_id, since)),
                FailureRun::Continues(first) => continues.push((webhook_id, first)),
            }
        }
        let mut failing: Vec<(WebhookId, i64)> = resets
            .iter()
            .filter_map(|(id, since)| since.map(|s| (id.clone(), s)))
            .collect();
        let mut writes: Vec<Write> = outbox_done.chunks(500).map(clear_outbox).collect();
        // A batch is recorded once; what it delivered names it instead of an attempt row.
        let mut batches: Vec<(&Attempt, &WebhookId)> = vec![];
        let mut logged: Vec<(&Finished, &Attempt)> = vec![];
        for f in batch {
            let Some(a) = &f.attempt else { continue };
            if let Some((id, _)) = &a.batch {
                if !batches
                    .iter()
                    .any(|(b, _)| b.batch.as_ref().is_some_and(|(i, _)| i == id))
                {
                    batches.push((a, &f.delivery.webhook_id));
                }
            }
            if a.batch.is_none() || f.next != NextStep::Succeeded {
                logged.push((f, a));
            }
        }
        let backend = self.db.backend();
        writes.extend(batches.chunks(CHUNK).map(batches_write));
        writes.extend(chunked(backend, &logged).into_iter().map(attempts_write));
        let (unwritten, written): (Vec<&Finished>, Vec<&Finished>) =
            batch.iter().partition(|f| f.delivery.unwritten.is_some());
        let new_rows: Vec<NewRow> = unwritten
            .iter()
            .filter_map(|f| Some(NewRow::written(f, f.delivery.unwritten.as_ref()?, now)))
            .collect();
        writes.extend(
            chunked(backend, &new_rows)
                .into_iter()
                .map(|chunk| deliveries_write(chunk, now)),
        );
        for chunk in chunked(backend, &written) {
            writes.push(outcomes_write(chunk, now));
        }
        writes.extend(resets.chunks(CHUNK).map(resets_write));
        // Last, so that on PostgreSQL it is the statement whose rows come back.
        writes.extend(continues.chunks(CHUNK).map(continues_write));
        let together = batch.len() <= CHUNK && outbox_done.len() <= 500;
        for r in self.run(&writes, together).await? {
            failing.push((
                WebhookId::new(r.try_get::<String, _>("webhook_id")?),
                r.try_get("failing_since")?,
            ));
        }
        self.refresh_statistics(new_rows.len() as u64);
        Ok(failing)
    }

    /// Send one delivery again (one attempt), whether it failed or succeeded; false if it is
    /// still pending.
    pub async fn resend(
        &self,
        webhook_id: &WebhookId,
        delivery_id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "{REQUEUE} WHERE webhook_id = $3 AND delivery_id = $4 AND status <> 'pending'"
        ))
        .bind(now_micros())
        .bind(ONE_ATTEMPT)
        .bind(webhook_id.as_str())
        .bind(delivery_id)
        .execute(self.db.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Send every failed delivery of an endpoint created at or after `since` again (one attempt
    /// each); returns how many.
    pub async fn recover(&self, webhook_id: &WebhookId, since: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(&format!(
            "{REQUEUE} WHERE webhook_id = $3 AND status = 'failed' AND created_at >= $4"
        ))
        .bind(now_micros())
        .bind(ONE_ATTEMPT)
        .bind(webhook_id.as_str())
        .bind(since)
        .execute(self.db.writer())
        .await?;
        Ok(done.rows_affected())
    }
}

fn attempts_write(chunk: &[(&Finished, &Attempt)]) -> Write {
    let mut values = Vec::with_capacity(chunk.len() * 10);
    for (f, a) in chunk {
        let (batch_id, batch_size) = a.batch.clone().unzip();
        values.extend([
            Val::Text(f.delivery.delivery_id.clone()),
            Val::Int(f.delivery.attempts + 1),
            Val::Text(f.delivery.webhook_id.to_string()),
        ]);
        values.extend(attempt_values(a));
        values.extend([Val::OptText(batch_id), Val::OptInt(batch_size)]);
    }
    Write {
        table: "delivery_attempts",
        sql: Sql::new(
            "INSERT INTO delivery_attempts (delivery_id, attempt, webhook_id, started_at, \
             duration_ms, status_code, error, response, batch_id, batch_size) VALUES ",
        )
        .rows(chunk.len(), 10, 0, &Sql::default())
        .text(" ON CONFLICT (delivery_id, attempt) DO NOTHING"),
        values,
    }
}

/// When an attempt started, how long it took, and what it got.
fn attempt_values(a: &Attempt) -> [Val; 5] {
    [
        Val::Int(a.started_at),
        Val::Int(a.duration_ms),
        Val::OptInt(a.status_code),
        Val::OptText(a.error.clone()),
        Val::OptText(a.response.clone()),
    ]
}

/// One row per request that carried several messages.
fn batches_write(chunk: &[(&Attempt, &WebhookId)]) -> Write {
    let mut values = Vec::with_capacity(chunk.len() * 8);
    for (a, webhook_id) in chunk {
        let (id, size) = a.batch.clone().unwrap_or_default();
        values.extend([Val::Text(id), Val::Text(webhook_id.to_string())]);
        values.extend(attempt_values(a));
        values.push(Val::Int(size));
    }
    Write {
        table: "delivery_batches",
        sql: Sql::new(
            "INSERT INTO delivery_batches (batch_id, webhook_id, started_at, duration_ms, \
             status_code, error, response, size) VALUES ",
        )
        .rows(chunk.len(), 8, 0, &Sql::default())
        .text(" ON CONFLICT (batch_id) DO NOTHING"),
        values,
    }
}

/// Where each delivery of `chunk` goes next: a VALUES list joined to the queue (both dialects
/// name its columns column1, column2, ...).
fn outcomes_write(chunk: &[&Finished], now: i64) -> Write {
    let mut values = vec![Val::Int(now)];
    for f in chunk {
        values.push(Val::Text(f.delivery.delivery_id.clone()));
        values.extend(RowState::after(f, now).values());
    }
    Write {
        table: "deliveries",
        sql: Sql::new(
            "UPDATE deliveries SET status = v.column2, attempts = v.column3, \
             schedule_step = v.column4, next_attempt_at = v.column5, claimed_by = NULL, \
             claimed_until = NULL, last_status = v.column6, last_error = v.column7, \
             last_batch_id = v.column8, updated_at = ",
        )
        .value(0)
        .text(" FROM (VALUES ")
        .rows(chunk.len(), 8, 1, &Sql::default())
        .text(") AS v WHERE deliveries.delivery_id = v.column1"),
        values,
    }
}

/// Endpoints that answered: their run of failures now starts where given (none: no run).
/// Nothing is written when that is unchanged.
fn resets_write(chunk: &[(WebhookId, Option<i64>)]) -> Write {
    Write {
        table: "endpoint_health",
        sql: Sql::new("INSERT INTO endpoint_health (webhook_id, failing_since) VALUES ")
            .rows(chunk.len(), 2, 0, &Sql::default())
            .text(
                " ON CONFLICT (webhook_id) DO UPDATE SET failing_since = excluded.failing_since \
                 WHERE COALESCE(endpoint_health.failing_since, -1) \
                 <> COALESCE(excluded.failing_since, -1)",
            ),
        values: chunk
            .iter()
            .flat_map(|(id, since)| [Val::Text(id.to_string()), Val::OptInt(*since)])
            .collect(),
    }
}

/// Endpoints that only failed: an earlier start of their run is kept; answers the runs.
fn continues_write(chunk: &[(WebhookId, i64)]) -> Write {
    Write {
        table: "endpoint_health",
        sql: Sql::new("INSERT INTO endpoint_health (webhook_id, failing_since) VALUES ")
            .rows(chunk.len(), 2, 0, &Sql::default())
            .text(
                " ON CONFLICT (webhook_id) DO UPDATE SET failing_since = \
                 COALESCE(endpoint_health.failing_since, excluded.failing_since) \
                 RETURNING webhook_id, failing_since",
            ),
        values: chunk
            .iter()
            .flat_map(|(id, first)| [Val::Text(id.to_string()), Val::Int(*first)])
            .collect(),
    }
}
