//! The event log: its types, and every read of it (appends live in `append.rs`).
//!
//! Global order. On SQLite the single writer makes `MAX(position) + 1` commit order. On PostgreSQL
//! concurrent transactions commit in any order, so a plain sequence would let a tailing reader pass
//! a position that a slower transaction later commits below. Instead `position` is the
//! appending transaction's 64-bit id shifted left by 16 bits plus the event's index, and readers
//! only take positions below `xmin(current snapshot) << 16`: every transaction with a smaller id
//! has then ended, and every later one gets a larger id, so nothing can appear behind a reader.
//! Readers of one organization need no horizon: its appends are serialized (see `org_after`).

use crate::append::InlineProjection;
use crate::db::Db;
use crate::error::StoreError;
use crate::group_commit::Commits;
use crate::reservations::count_scope;
use crate::sql::{placeholders, Filter};
use easm_events::{
    decode, from_micros, Actor, ActorKind, Event, EventMeta, OrgId, RecordedEvent, Role,
    EVENT_TYPES,
};
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Events one append may hold (the low 16 bits of a PostgreSQL position).
pub const POSITIONS_PER_TX: i64 = 1 << 16;

#[derive(Clone, Debug)]
pub struct StreamAppend {
    pub stream_id: String,
    /// The version the decision was based on: 0 for a new stream.
    pub expected_version: i64,
    pub events: Vec<Event>,
}

/// Conditions over an organization's reservations (named sets kept in step with the log, with
/// their sizes) that must hold when the append commits. They enforce invariants that span streams,
/// such as unique asset values, plan limits and empty groups, without serializing those streams.
#[derive(Clone, Debug)]
pub enum Constraint {
    /// Add `key` to `scope` for `owner`; fails if someone holds it already.
    Claim {
        scope: String,
        key: String,
        owner: String,
    },
    Release {
        scope: String,
        key: String,
    },
    /// After this append's claims and releases, `scope` holds at most `max` keys.
    AtMost {
        scope: String,
        max: u64,
    },
    /// `scope` holds no key.
    Empty {
        scope: String,
    },
    /// A stream this decision read, but does not write, is still at `version`.
    StreamAt {
        stream_id: String,
        version: i64,
    },
}

/// What an organization's audit trail is narrowed to; times are epoch microseconds (`until`
/// included).
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// The actor's id (a key id, `cli`, `scanner`, ...).
    pub actor: Option<String>,
    /// Event types.
    pub actions: Vec<String>,
    /// A resource type: the family of the event type (`asset`, `finding`, `access`, ...).
    pub resource: Option<String>,
    /// A resource id, matched exactly: the resource of the event's stream, or a string anywhere
    /// in its data.
    pub resource_id: Option<String>,
    /// `api` (keys and users), `cli`, or `system` (easm on its own).
    pub category: Option<String>,
    /// `success` (accepted commands) or `denied` (refused requests).
    pub outcome: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// What an organization's event feed is narrowed to; times are epoch microseconds, `until`
/// excluded.
#[derive(Clone, Debug, Default)]
pub struct FeedFilter {
    pub types: Vec<String>,
    pub stream_id: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// The last position included.
    pub until_position: Option<i64>,
    /// Follow the organization's hash chain: order by `chainSeq` and read the cursor as one
    /// (exports, which must list the chain without gaps).
    pub chain_order: bool,
}

pub struct AppendRequest {
    pub org_id: OrgId,
    pub meta: EventMeta,
    pub streams: Vec<StreamAppend>,
    pub constraints: Vec<Constraint>,
}

pub(crate) const COLUMNS: &str =
    "position, event_id, stream_id, stream_version, event_type, schema_version, \
     occurred_at, org_id, actor_kind, actor_id, actor_role, actor_ip, request_id, correlation_id, \
     causation_id, data, chain_seq, prev_hash, hash, actor_agent, traceparent";

#[derive(Clone)]
pub struct EventLog {
    pub(crate) db: Db,
    /// Read models folded in every append; without them, `project_lagging` catches up later.
    pub(crate) projection: Option<Arc<dyn InlineProjection>>,
    /// This process's appends waiting to be committed together.
    pub(crate) commits: Arc<Commits>,
}

/// A row of the `events` table, as [`COLUMNS`] selects it.
#[derive(sqlx::FromRow)]
struct EventRow {
    position: i64,
    event_id: String,
    stream_id: String,
    stream_version: i64,
    event_type: String,
    schema_version: i64,
    occurred_at: i64,
    org_id: String,
    actor_kind: String,
    actor_id: String,
    actor_role: Option<String>,
    actor_ip: Option<String>,
    request_id: String,
    correlation_id: String,
    causation_id: Option<String>,
    data: String,
    chain_seq: i64,
    prev_hash: String,
    hash: String,
    actor_agent: Option<String>,
    traceparent: Option<String>,
}

pub(crate) fn row_to_event(r: &AnyRow) -> Result<RecordedEvent, StoreError> {
    let r = EventRow::from_row(r)?;
    let position = r.position;
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let kind = r.actor_kind;
    Ok(RecordedEvent {
        event_id: Uuid::parse_str(&r.event_id).map_err(|e| corrupt(e.to_string()))?,
        position,
        stream_id: r.stream_id,
        stream_version: r.stream_version,
        event_type: r.event_type,
        schema_version: r.schema_version as i32,
        occurred_at: from_micros(r.occurred_at),
        org_id: OrgId::new(r.org_id),
        actor: Actor {
            kind: ActorKind::parse(&kind).ok_or_else(|| corrupt(format!("actor kind {kind}")))?,
            id: r.actor_id,
            role: r
                .actor_role
                .map(|role| Role::parse(&role).ok_or_else(|| corrupt(format!("actor role {role}"))))
                .transpose()?,
            source_ip: r.actor_ip,
            user_agent: r.actor_agent,
        },
        request_id: r.request_id,
        correlation_id: r.correlation_id,
        causation_id: r.causation_id,
        data: serde_json::from_str(&r.data).map_err(|e| corrupt(e.to_string()))?,
        chain_seq: r.chain_seq,
        prev_hash: r.prev_hash,
        hash: r.hash,
        trace_parent: r.traceparent,
    })
}

/// Decode a recorded event into its current typed form (upcasting old schema versions).
pub fn typed(e: &RecordedEvent) -> Result<Event, StoreError> {
    decode(&e.event_type, e.schema_version, &e.data).map_err(|err| StoreError::Corrupt {
        position: e.position,
        reason: err.to_string(),
    })
}

/// Streams read per query by [`EventLog::load_many`]: well within both backends' limit on a
/// statement's values.
const LOAD_MANY: usize = 1000;

impl EventLog {
    /// A log for reading, or for tools whose appends the server's read models pick up later.
    pub fn new(db: Db) -> Self {
        EventLog {
            db,
            projection: None,
            commits: Arc::default(),
        }
    }

    /// A log whose appends update `projection` in the same transaction.
    pub fn with_projection(db: Db, projection: Arc<dyn InlineProjection>) -> Self {
        EventLog {
            db,
            projection: Some(projection),
            commits: Arc::default(),
        }
    }

    /// The stream's current version and its events, decoded to current types. A stream of
    /// another organization reads as empty.
    pub async fn load(
        &self,
        org_id: &OrgId,
        stream_id: &str,
    ) -> Result<(i64, Vec<Event>), StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND org_id = $2 ORDER BY stream_version"
        ))
        .bind(stream_id)
        .bind(org_id.as_str())
        .fetch_all(self.db.reader())
        .await?;
        let mut events = Vec::with_capacity(rows.len());
        let mut version = 0;
        for r in &rows {
            let e = row_to_event(r)?;
            version = e.stream_version;
            events.push(typed(&e)?);
        }
        Ok((version, events))
    }

    /// [`EventLog::load`] of many streams in few round trips (a bulk import decides thousands
    /// at once): their versions and events by stream, a stream with no events left out.
    pub async fn load_many(
        &self,
        org_id: &OrgId,
        stream_ids: &[&str],
    ) -> Result<HashMap<String, (i64, Vec<Event>)>, StoreError> {
        let mut out: HashMap<String, (i64, Vec<Event>)> = HashMap::new();
        for chunk in stream_ids.chunks(LOAD_MANY) {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE org_id = $1 AND stream_id IN ({}) \
                 ORDER BY stream_id, stream_version",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(org_id.as_str());
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(self.db.reader()).await? {
                let e = row_to_event(&r)?;
                let typed = typed(&e)?;
                let (version, events) = out.entry(e.stream_id).or_default();
                *version = e.stream_version;
                events.push(typed);
            }
        }
        Ok(out)
    }

    /// One page of a stream's events within an organization, oldest first, and the total.
    pub async fn stream_page(
        &self,
        org_id: &OrgId,
        stream_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<RecordedEvent>, i64), StoreError> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE stream_id = $1 AND org_id = $2")
                .bind(stream_id)
                .bind(org_id.as_str())
                .fetch_one(self.db.reader())
                .await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND org_id = $2 \
             ORDER BY stream_version LIMIT $3 OFFSET $4"
        ))
        .bind(stream_id)
        .bind(org_id.as_str())
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.reader())
        .await?;
        let events = rows.iter().map(row_to_event).collect::<Result<_, _>>()?;
        Ok((events, total))
    }

    /// One page of the events of `streams` within an organization, newest first, leaving out
    /// the types in `skip`, and the total.
    pub async fn streams_page(
        &self,
        org_id: &OrgId,
        streams: &[String],
        skip: &[&str],
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<RecordedEvent>, i64), StoreError> {
        let mut w = Filter::by("org_id", org_id.as_str());
        let list = w.bind(serde_json::json!(streams).to_string());
        w.push(self.db.backend().in_json_list("stream_id", &list));
        for t in skip {
            let p = w.bind(*t);
            w.push(format!("event_type <> {p}"));
        }
        self.newest_first(&w, offset, limit).await
    }

    /// The position up to which every event is readable now.
    pub async fn readable_head(&self) -> Result<i64, StoreError> {
        let horizon = match self.db.backend().horizon() {
            Some(h) => format!("WHERE {h}"),
            None => String::new(),
        };
        let sql = format!("SELECT COALESCE(MAX(position), 0) FROM events {horizon}");
        Ok(sqlx::query_scalar(&sql).fetch_one(self.db.reader()).await?)
    }

    /// Whether an event of one of `types` committed after `after`, and the position up to which
    /// every event is readable now (the next `after`): how a process follows what other
    /// processes changed without reading the events themselves. An event is seen as soon as it
    /// is visible, before every older transaction of the cluster has ended (it is seen again
    /// until then).
    pub async fn seen_after(&self, after: i64, types: &[&str]) -> Result<(i64, bool), StoreError> {
        let readable = self.db.backend().horizon().unwrap_or("1 = 1");
        let sql = format!(
            "SELECT COALESCE(MAX(CASE WHEN {readable} THEN position END), $1) AS upto, \
             COUNT(CASE WHEN event_type IN ({}) THEN 1 END) AS seen \
             FROM events WHERE position > $1",
            placeholders(2, types.len())
        );
        let mut q = sqlx::query(&sql).bind(after);
        for t in types {
            q = q.bind(*t);
        }
        let row = q.fetch_one(self.db.reader()).await?;
        Ok((row.try_get("upto")?, row.try_get::<i64, _>("seen")? > 0))
    }

    /// Up to `limit` events after `position` in global order, never past the point below which
    /// every transaction has ended (on SQLite, with its one writer, every committed event).
    pub async fn read_all_after(
        &self,
        position: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let horizon = match self.db.backend().horizon() {
            Some(h) => format!("AND {h}"),
            None => String::new(),
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE position > $1 {horizon} ORDER BY position LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(position)
            .bind(limit)
            .fetch_all(self.db.reader())
            .await?;
        rows.iter().map(row_to_event).collect()
    }

    /// The oldest events still waiting in the outbox, in global order and never past the readable
    /// horizon, so they are published in log order (the relay clears everything up to the last
    /// one it published).
    pub async fn outbox(&self, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        let horizon = match self.db.backend().horizon() {
            Some(h) => format!(" AND o.{h}"),
            None => String::new(),
        };
        self.outbox_rows(i64::MIN, &horizon, limit).await
    }

    /// Whether committed events wait in the outbox that [`Self::outbox`] does not give yet,
    /// beyond the readable horizon (never on SQLite, which has none).
    pub async fn outbox_waits(&self) -> Result<bool, StoreError> {
        let Some(horizon) = self.db.backend().horizon() else {
            return Ok(false);
        };
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM outbox o WHERE NOT (o.{horizon}) LIMIT 1) w"
        );
        let n: i64 = sqlx::query_scalar(&sql).fetch_one(self.db.reader()).await?;
        Ok(n > 0)
    }

    /// The oldest committed events waiting in the outbox after position `after`, without
    /// waiting for the horizon: an event that commits later with a smaller position is found by
    /// a later call. For a reader that removes exactly the rows it took (fan-out), so nothing
    /// waits on an older transaction; `after` lets it page past rows it still holds.
    pub async fn outbox_committed(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.outbox_rows(after, "", limit).await
    }

    /// The events of the first `limit` outbox rows after position `after` passing `filter`.
    /// Looked up by position from the rows taken: a join of the two tables lets PostgreSQL's
    /// planner (misled by the outbox's churn) walk the whole events index to find a few rows.
    async fn outbox_rows(
        &self,
        after: i64,
        filter: &str,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let taken = format!(
            "SELECT o.position FROM outbox o WHERE o.position > $2{filter} \
             ORDER BY o.position LIMIT $1"
        );
        let wanted = self.db.backend().position_in(&taken);
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM events WHERE {wanted} ORDER BY position"
        ))
        .bind(limit)
        .bind(after)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter().map(row_to_event).collect()
    }

    /// Mark everything up to `position` as published.
    pub async fn outbox_done(&self, position: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM outbox WHERE position <= $1")
            .bind(position)
            .execute(self.db.writer())
            .await?;
        Ok(())
    }

    /// An organization's events after `position` in global order: a reader following the
    /// positions sees each event once and in order, also while others commit, and sees its own
    /// writes at once. The event feed and audit exports read this.
    pub async fn org_after(
        &self,
        org_id: &OrgId,
        after: i64,
        limit: i64,
        filter: &FeedFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let (sql, binds) = self.feed_sql(filter, COLUMNS);
        let mut q = sqlx::query(&sql)
            .bind(org_id.as_str())
            .bind(after)
            .bind(limit);
        for b in &binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(self.db.reader()).await?;
        rows.iter().map(row_to_event).collect()
    }

    /// How many events [`Self::org_after`] would give from the start (for progress).
    pub async fn org_count(&self, org_id: &OrgId, filter: &FeedFilter) -> Result<i64, StoreError> {
        let (inner, binds) = self.feed_sql(filter, "1");
        let sql = format!("SELECT COUNT(*) FROM ({inner}) AS feed");
        let mut q = sqlx::query_scalar(&sql)
            .bind(org_id.as_str())
            .bind(0i64)
            .bind(i64::MAX);
        for b in &binds {
            q = q.bind(b);
        }
        Ok(q.fetch_one(self.db.reader()).await?)
    }

    /// The feed's query: `$1` the organization, `$2` the cursor, `$3` the limit, then `binds`.
    fn feed_sql(&self, filter: &FeedFilter, select: &str) -> (String, Vec<String>) {
        let cursor = if filter.chain_order {
            "chain_seq"
        } else {
            "position"
        };
        let mut f = Filter::numbered_from(4);
        f.push("org_id = $1");
        f.push(format!("{cursor} > $2"));
        f.any("event_type", &filter.types);
        f.eq("stream_id", filter.stream_id.as_deref());
        f.compare("occurred_at", ">=", filter.since);
        f.compare("occurred_at", "<", filter.until);
        f.compare("position", "<=", filter.until_position);
        // No visibility horizon: one organization's appends take its lock before their
        // transaction id, so they get positions, and commit, in lock order; an event of the
        // organization that is not visible yet can only land after every one that is.
        let sql = format!(
            "SELECT {select} FROM events WHERE {} ORDER BY {cursor} LIMIT $3",
            f.sql()
        );
        (sql, f.binds().to_vec())
    }

    /// One page of an organization's audit trail, newest first, and the total.
    pub async fn audit_page(
        &self,
        org_id: &OrgId,
        f: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<RecordedEvent>, i64), StoreError> {
        let mut w = Filter::by("org_id", org_id.as_str());
        w.eq("actor_id", f.actor.as_deref());
        w.any("event_type", &f.actions);
        if let Some(r) = &f.resource {
            let family: Vec<String> = EVENT_TYPES
                .iter()
                .filter(|(t, _)| t.split_once('.').is_some_and(|(family, _)| family == r))
                .map(|(t, _)| t.to_string())
                .collect();
            match family.is_empty() {
                true => w.push("1 = 0"),
                false => w.any("event_type", &family),
            }
        }
        if let Some(id) = &f.resource_id {
            let id = w.bind(id.as_str());
            w.push(format!(
                "({} OR {})",
                self.db.backend().stream_of(&id),
                self.db.backend().names_in_data(&id)
            ));
        }
        match f.category.as_deref() {
            Some("api") => w.push("actor_kind IN ('api_key', 'user')"),
            Some("cli") => w.push("actor_kind = 'system' AND actor_id = 'cli'"),
            Some("system") => w.push("actor_kind = 'system' AND actor_id <> 'cli'"),
            Some("mcp") => w.push("actor_kind = 'mcp_key'"),
            Some(_) => w.push("1 = 0"),
            None => {}
        }
        match f.outcome.as_deref() {
            Some("denied") => w.push("event_type = 'access.denied'"),
            Some(_) => w.push("event_type <> 'access.denied'"),
            None => {}
        }
        w.compare("occurred_at", ">=", f.since);
        w.compare("occurred_at", "<=", f.until);
        self.newest_first(&w, offset, limit).await
    }

    /// One page of the events `filter` selects, newest first, and how many it selects.
    async fn newest_first(
        &self,
        filter: &Filter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<RecordedEvent>, i64), StoreError> {
        let condition = filter.sql();
        let count = format!("SELECT COUNT(*) FROM events WHERE {condition}");
        let mut q = sqlx::query_scalar::<_, i64>(&count);
        for b in filter.binds() {
            q = q.bind(b);
        }
        let total = q.fetch_one(self.db.reader()).await?;
        let page = format!(
            "SELECT {COLUMNS} FROM events WHERE {condition} ORDER BY position DESC \
             LIMIT {limit} OFFSET {offset}"
        );
        let mut q = sqlx::query(&page);
        for b in filter.binds() {
            q = q.bind(b);
        }
        let rows = q.fetch_all(self.db.reader()).await?;
        let events = rows.iter().map(row_to_event).collect::<Result<_, _>>()?;
        Ok((events, total))
    }

    /// Which of `keys` are reserved in an organization's `scope`, with their owners.
    pub async fn reservations(
        &self,
        org_id: &OrgId,
        scope: &str,
        keys: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        for chunk in keys.chunks(self.db.backend().chunk_rows()) {
            let sql = format!(
                "SELECT key, owner FROM reservations WHERE org_id = $1 AND scope = $2 AND key IN ({})",
                placeholders(3, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(org_id.as_str()).bind(scope);
            for key in chunk {
                q = q.bind(key);
            }
            for row in q.fetch_all(self.db.reader()).await? {
                out.push((row.try_get("key")?, row.try_get("owner")?));
            }
        }
        Ok(out)
    }

    /// How many keys an organization's `scope` holds.
    pub async fn count_reservations(&self, org_id: &OrgId, scope: &str) -> Result<u64, StoreError> {
        let mut conn = self.db.reader().acquire().await?;
        Ok(count_scope(&mut conn, org_id.as_str(), scope).await?.max(0) as u64)
    }
}
