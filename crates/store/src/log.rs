//! The event log. Appends are one transaction each: lock the organization's chain head, check
//! expected stream versions and reservations, insert events and outbox rows, advance the chain.
//!
//! Global order. On SQLite the single writer makes `MAX(position) + 1` commit order. On PostgreSQL
//! concurrent transactions commit in any order, so a plain sequence would let a tailing reader pass
//! a position that a slower transaction later commits below. Instead `position` is the
//! appending transaction's 64-bit id shifted left by 16 bits plus the event's index, and readers
//! only take positions below `xmin(current snapshot) << 16`: every transaction with a smaller id
//! has then ended, and every later one gets a larger id, so nothing can appear behind a reader.

use crate::db::{Backend, Db};
use crate::error::{AppendError, StoreError};
use chrono::{DateTime, Utc};
use easm_events::{
    chain_hash, decode, from_micros, Actor, ActorKind, Event, EventMeta, RecordedEvent,
    GENESIS_HASH,
};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

/// Events one append may hold (the low 16 bits of a PostgreSQL position).
pub const POSITIONS_PER_TX: i64 = 1 << 16;

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
    /// A resource id: the event's stream or a value in its data.
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
    pub org_id: String,
    pub meta: EventMeta,
    pub streams: Vec<StreamAppend>,
    pub constraints: Vec<Constraint>,
}

const COLUMNS: &str = "position, event_id, stream_id, stream_version, event_type, schema_version, \
     occurred_at, org_id, actor_kind, actor_id, actor_role, actor_ip, request_id, correlation_id, \
     causation_id, data, chain_seq, prev_hash, hash, actor_agent";

#[derive(Clone, Debug)]
pub struct EventLog {
    db: Db,
}

fn row_to_event(r: &AnyRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = r.try_get("position")?;
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let event_id: String = r.try_get("event_id")?;
    let kind: String = r.try_get("actor_kind")?;
    let data: String = r.try_get("data")?;
    Ok(RecordedEvent {
        event_id: Uuid::parse_str(&event_id).map_err(|e| corrupt(e.to_string()))?,
        position,
        stream_id: r.try_get("stream_id")?,
        stream_version: r.try_get("stream_version")?,
        event_type: r.try_get("event_type")?,
        schema_version: r.try_get::<i64, _>("schema_version")? as i32,
        occurred_at: from_micros(r.try_get("occurred_at")?),
        org_id: r.try_get("org_id")?,
        actor: Actor {
            kind: ActorKind::parse(&kind).ok_or_else(|| corrupt(format!("actor kind {kind}")))?,
            id: r.try_get("actor_id")?,
            role: r.try_get("actor_role")?,
            source_ip: r.try_get("actor_ip")?,
            user_agent: r.try_get("actor_agent")?,
        },
        request_id: r.try_get("request_id")?,
        correlation_id: r.try_get("correlation_id")?,
        causation_id: r.try_get("causation_id")?,
        data: serde_json::from_str(&data).map_err(|e| corrupt(e.to_string()))?,
        chain_seq: r.try_get("chain_seq")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

/// Decode a recorded event into its current typed form (upcasting old schema versions).
pub fn typed(e: &RecordedEvent) -> Result<Event, StoreError> {
    decode(&e.event_type, e.schema_version, &e.data).map_err(|err| StoreError::Corrupt {
        position: e.position,
        reason: err.to_string(),
    })
}

impl EventLog {
    pub fn new(db: Db) -> Self {
        EventLog { db }
    }

    pub async fn append(&self, req: AppendRequest) -> Result<Vec<RecordedEvent>, AppendError> {
        let count: usize = req.streams.iter().map(|s| s.events.len()).sum();
        if count as i64 >= POSITIONS_PER_TX {
            return Err(AppendError::TooLarge(count));
        }
        let mut tx = self.db.writer().begin().await?;
        let conn: &mut AnyConnection = &mut tx;
        if self.db.backend() == Backend::Postgres {
            // Taken before the transaction writes anything, so its id (hence its positions) is
            // assigned after the lock: chain order and position order agree within an org.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(&req.org_id)
                .execute(&mut *conn)
                .await?;
        }
        // On SQLite this write comes first so the transaction takes the write lock before it
        // reads anything; on PostgreSQL it assigns the transaction id.
        let head = sqlx::query(
            "INSERT INTO chain_heads (org_id, last_seq, last_hash) VALUES ($1, 0, $2) \
             ON CONFLICT (org_id) DO UPDATE SET last_seq = chain_heads.last_seq \
             RETURNING last_seq, last_hash",
        )
        .bind(&req.org_id)
        .bind(GENESIS_HASH)
        .fetch_one(&mut *conn)
        .await?;
        let mut seq: i64 = head.try_get("last_seq")?;
        let mut prev_hash: String = head.try_get("last_hash")?;

        for s in &req.streams {
            let actual = stream_version(conn, &s.stream_id).await?;
            if actual != s.expected_version {
                return Err(AppendError::Conflict {
                    stream_id: s.stream_id.clone(),
                    expected: s.expected_version,
                    actual,
                });
            }
        }
        check_constraints(conn, &req.org_id, &req.constraints).await?;

        let first_position = match self.db.backend() {
            Backend::Postgres => {
                let xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
                    .fetch_one(&mut *conn)
                    .await?;
                xid * POSITIONS_PER_TX
            }
            Backend::Sqlite => {
                let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
                    .fetch_one(&mut *conn)
                    .await?;
                max + 1
            }
        };

        let occurred_at: DateTime<Utc> = from_micros(Utc::now().timestamp_micros());
        let mut recorded = Vec::with_capacity(count);
        for s in &req.streams {
            for (i, event) in s.events.iter().enumerate() {
                seq += 1;
                let mut e = RecordedEvent {
                    event_id: Uuid::now_v7(),
                    position: first_position + recorded.len() as i64,
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
                };
                e.hash = chain_hash(&prev_hash, &e);
                prev_hash = e.hash.clone();
                insert_event(conn, &e).await?;
                recorded.push(e);
            }
        }
        if !recorded.is_empty() {
            sqlx::query("UPDATE chain_heads SET last_seq = $1, last_hash = $2 WHERE org_id = $3")
                .bind(seq)
                .bind(&prev_hash)
                .bind(&req.org_id)
                .execute(&mut *conn)
                .await?;
        }
        tx.commit().await?;
        Ok(recorded)
    }

    /// The stream's current version and its events, decoded to current types. A stream of
    /// another organization reads as empty.
    pub async fn load(
        &self,
        org_id: &str,
        stream_id: &str,
    ) -> Result<(i64, Vec<Event>), StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND org_id = $2 ORDER BY stream_version"
        ))
        .bind(stream_id)
        .bind(org_id)
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

    /// One page of a stream's events within an organization, oldest first, and the total.
    pub async fn stream_page(
        &self,
        org_id: &str,
        stream_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<RecordedEvent>, i64), StoreError> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE stream_id = $1 AND org_id = $2")
                .bind(stream_id)
                .bind(org_id)
                .fetch_one(self.db.reader())
                .await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND org_id = $2 \
             ORDER BY stream_version LIMIT $3 OFFSET $4"
        ))
        .bind(stream_id)
        .bind(org_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.reader())
        .await?;
        let events = rows.iter().map(row_to_event).collect::<Result<_, _>>()?;
        Ok((events, total))
    }

    /// Up to `limit` events after `position` in global order, never past the point below which
    /// every transaction has ended. Runs on the caller's connection so projectors can read and
    /// apply in one transaction.
    pub async fn read_after(
        backend: Backend,
        conn: &mut AnyConnection,
        position: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = match backend {
            Backend::Sqlite => format!(
                "SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
            ),
            Backend::Postgres => format!(
                "SELECT {COLUMNS} FROM events WHERE position > $1 \
                 AND position < pg_snapshot_xmin(pg_current_snapshot())::text::bigint * {POSITIONS_PER_TX} \
                 ORDER BY position LIMIT $2"
            ),
        };
        let rows = sqlx::query(&sql)
            .bind(position)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(row_to_event).collect()
    }

    /// The oldest events still waiting in the outbox, in global order and never past the readable
    /// horizon, so they are published in log order.
    pub async fn outbox(&self, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        let columns = COLUMNS
            .split(", ")
            .map(|c| format!("e.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let horizon = match self.db.backend() {
            Backend::Sqlite => String::new(),
            Backend::Postgres => format!(
                "WHERE o.position < pg_snapshot_xmin(pg_current_snapshot())::text::bigint * {POSITIONS_PER_TX}"
            ),
        };
        let rows = sqlx::query(&format!(
            "SELECT {columns} FROM outbox o JOIN events e ON e.position = o.position {horizon} \
             ORDER BY o.position LIMIT $1"
        ))
        .bind(limit)
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

    /// An organization's events after `position` in global order, never past the point below
    /// which every transaction has ended: a reader following the positions sees each event once
    /// and in order, also while others commit. The event feed and audit exports read this.
    pub async fn org_after(
        &self,
        org_id: &str,
        after: i64,
        limit: i64,
        filter: &FeedFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let (sql, binds) = self.feed_sql(filter, COLUMNS);
        let mut q = sqlx::query(&sql).bind(org_id).bind(after).bind(limit);
        for b in &binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(self.db.reader()).await?;
        rows.iter().map(row_to_event).collect()
    }

    /// How many events [`Self::org_after`] would give from the start (for progress).
    pub async fn org_count(&self, org_id: &str, filter: &FeedFilter) -> Result<i64, StoreError> {
        let (inner, binds) = self.feed_sql(filter, "1");
        let sql = format!("SELECT COUNT(*) FROM ({inner}) AS feed");
        let mut q = sqlx::query_scalar(&sql)
            .bind(org_id)
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
        let mut clauses = vec!["org_id = $1".to_string(), format!("{cursor} > $2")];
        let mut binds: Vec<String> = vec![];
        let next = |v: String, binds: &mut Vec<String>| {
            binds.push(v);
            format!("${}", binds.len() + 3)
        };
        if !filter.types.is_empty() {
            let list: Vec<String> = filter
                .types
                .iter()
                .map(|t| next(t.clone(), &mut binds))
                .collect();
            clauses.push(format!("event_type IN ({})", list.join(", ")));
        }
        if let Some(stream) = &filter.stream_id {
            clauses.push(format!("stream_id = {}", next(stream.clone(), &mut binds)));
        }
        for (op, at) in [(">=", filter.since), ("<", filter.until)] {
            if let Some(at) = at {
                clauses.push(format!(
                    "occurred_at {op} CAST({} AS BIGINT)",
                    next(at.to_string(), &mut binds)
                ));
            }
        }
        if let Some(p) = filter.until_position {
            clauses.push(format!(
                "position <= CAST({} AS BIGINT)",
                next(p.to_string(), &mut binds)
            ));
        }
        if self.db.backend() == Backend::Postgres {
            clauses.push(format!(
                "position < pg_snapshot_xmin(pg_current_snapshot())::text::bigint * {POSITIONS_PER_TX}"
            ));
        }
        let sql = format!(
            "SELECT {select} FROM events WHERE {} ORDER BY {cursor} LIMIT $3",
            clauses.join(" AND ")
        );
        (sql, binds)
    }

    /// One page of an organization's audit trail, newest first, and the total.
    pub async fn audit_page(
        &self,
        org_id: &str,
        f: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<RecordedEvent>, i64), StoreError> {
        let mut clauses = vec!["org_id = $1".to_string()];
        let mut binds = vec![org_id.to_string()];
        let mut bind = |v: String| {
            binds.push(v);
            format!("${}", binds.len())
        };
        if let Some(a) = &f.actor {
            clauses.push(format!("actor_id = {}", bind(a.clone())));
        }
        if !f.actions.is_empty() {
            let list: Vec<String> = f.actions.iter().map(|a| bind(a.clone())).collect();
            clauses.push(format!("event_type IN ({})", list.join(", ")));
        }
        if let Some(r) = &f.resource {
            clauses.push(format!("event_type LIKE {}", bind(format!("{r}.%"))));
        }
        if let Some(id) = &f.resource_id {
            let (stream, data) = (bind(format!("%-{id}")), bind(format!("%\"{id}\"%")));
            clauses.push(format!("(stream_id LIKE {stream} OR data LIKE {data})"));
        }
        match f.category.as_deref() {
            Some("api") => clauses.push("actor_kind IN ('api_key', 'user')".into()),
            Some("cli") => clauses.push("actor_kind = 'system' AND actor_id = 'cli'".into()),
            Some("system") => clauses.push("actor_kind = 'system' AND actor_id <> 'cli'".into()),
            Some(_) => clauses.push("1 = 0".into()),
            None => {}
        }
        match f.outcome.as_deref() {
            Some("denied") => clauses.push("event_type = 'access.denied'".into()),
            Some(_) => clauses.push("event_type <> 'access.denied'".into()),
            None => {}
        }
        for (op, at) in [(">=", f.since), ("<=", f.until)] {
            if let Some(at) = at {
                clauses.push(format!(
                    "occurred_at {op} CAST({} AS BIGINT)",
                    bind(at.to_string())
                ));
            }
        }
        let filter = clauses.join(" AND ");
        let count = format!("SELECT COUNT(*) FROM events WHERE {filter}");
        let mut q = sqlx::query_scalar::<_, i64>(&count);
        for b in &binds {
            q = q.bind(b);
        }
        let total = q.fetch_one(self.db.reader()).await?;
        let page = format!(
            "SELECT {COLUMNS} FROM events WHERE {filter} ORDER BY position DESC LIMIT {limit} OFFSET {offset}"
        );
        let mut q = sqlx::query(&page);
        for b in &binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(self.db.reader()).await?;
        let events = rows.iter().map(row_to_event).collect::<Result<_, _>>()?;
        Ok((events, total))
    }

    /// [`Self::read_after`] on a pooled connection.
    pub async fn read_all_after(
        &self,
        position: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut conn = self.db.reader().acquire().await?;
        Self::read_after(self.db.backend(), &mut conn, position, limit).await
    }

    /// Which of `keys` are reserved in an organization's `scope`, with their owners.
    pub async fn reservations(
        &self,
        org_id: &str,
        scope: &str,
        keys: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        // 50 keys a statement: SQLite binds parameters slower as statements grow.
        for chunk in keys.chunks(50) {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
            let sql = format!(
                "SELECT key, owner FROM reservations WHERE org_id = $1 AND scope = $2 AND key IN ({})",
                list.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(org_id).bind(scope);
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
    pub async fn count_reservations(&self, org_id: &str, scope: &str) -> Result<u64, StoreError> {
        let mut conn = self.db.reader().acquire().await?;
        count_scope(&mut conn, org_id, scope).await
    }
}

async fn stream_version(conn: &mut AnyConnection, stream_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = $1")
        .bind(stream_id)
        .fetch_one(conn)
        .await
}

async fn count_scope(
    conn: &mut AnyConnection,
    org_id: &str,
    scope: &str,
) -> Result<u64, StoreError> {
    let n: Option<i64> =
        sqlx::query_scalar("SELECT n FROM reservation_counts WHERE org_id = $1 AND scope = $2")
            .bind(org_id)
            .bind(scope)
            .fetch_optional(conn)
            .await?;
    Ok(n.unwrap_or(0).max(0) as u64)
}

async fn add_to_count(
    conn: &mut AnyConnection,
    org_id: &str,
    scope: &str,
    delta: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reservation_counts (org_id, scope, n) VALUES ($1, $2, $3) \
         ON CONFLICT (org_id, scope) DO UPDATE SET n = reservation_counts.n + excluded.n",
    )
    .bind(org_id)
    .bind(scope)
    .bind(delta)
    .execute(conn)
    .await?;
    Ok(())
}

async fn check_constraints(
    conn: &mut AnyConnection,
    org_id: &str,
    constraints: &[Constraint],
) -> Result<(), AppendError> {
    // Claims and releases first, so the counting constraints see this append's effect. Their
    // counts change once per scope: a thousand updates of one counter row in one transaction
    // would leave PostgreSQL a thousand row versions to walk.
    let mut deltas: std::collections::BTreeMap<&str, i64> = Default::default();
    for c in constraints {
        match c {
            Constraint::Claim { scope, key, owner } => {
                let done = sqlx::query(
                    "INSERT INTO reservations (org_id, scope, key, owner) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (org_id, scope, key) DO NOTHING",
                )
                .bind(org_id)
                .bind(scope)
                .bind(key)
                .bind(owner)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(AppendError::Constraint(format!("{scope}/{key} is taken")));
                }
                *deltas.entry(scope).or_default() += 1;
            }
            Constraint::Release { scope, key } => {
                let done = sqlx::query(
                    "DELETE FROM reservations WHERE org_id = $1 AND scope = $2 AND key = $3",
                )
                .bind(org_id)
                .bind(scope)
                .bind(key)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() > 0 {
                    *deltas.entry(scope).or_default() -= 1;
                }
            }
            _ => {}
        }
    }
    for (scope, delta) in deltas {
        if delta != 0 {
            add_to_count(conn, org_id, scope, delta).await?;
        }
    }
    for c in constraints {
        match c {
            Constraint::AtMost { scope, max } => {
                if count_scope(conn, org_id, scope).await? > *max {
                    return Err(AppendError::Constraint(format!(
                        "{scope} holds more than {max}"
                    )));
                }
            }
            Constraint::Empty { scope } => {
                if count_scope(conn, org_id, scope).await? > 0 {
                    return Err(AppendError::Constraint(format!("{scope} is not empty")));
                }
            }
            Constraint::StreamAt { stream_id, version } => {
                let actual = stream_version(conn, stream_id).await?;
                if actual != *version {
                    return Err(AppendError::Conflict {
                        stream_id: stream_id.clone(),
                        expected: *version,
                        actual,
                    });
                }
            }
            Constraint::Claim { .. } | Constraint::Release { .. } => {}
        }
    }
    Ok(())
}

async fn insert_event(conn: &mut AnyConnection, e: &RecordedEvent) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO events ({COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
    ))
    .bind(e.position)
    .bind(e.event_id.to_string())
    .bind(&e.stream_id)
    .bind(e.stream_version)
    .bind(&e.event_type)
    .bind(e.schema_version as i64)
    .bind(e.occurred_at.timestamp_micros())
    .bind(&e.org_id)
    .bind(e.actor.kind.as_str())
    .bind(&e.actor.id)
    .bind(&e.actor.role)
    .bind(&e.actor.source_ip)
    .bind(&e.request_id)
    .bind(&e.correlation_id)
    .bind(&e.causation_id)
    .bind(e.data.to_string())
    .bind(e.chain_seq)
    .bind(&e.prev_hash)
    .bind(&e.hash)
    .bind(&e.actor.user_agent)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO outbox (position, event_id, org_id, event_type, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(e.position)
    .bind(e.event_id.to_string())
    .bind(&e.org_id)
    .bind(&e.event_type)
    .bind(e.occurred_at.timestamp_micros())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
