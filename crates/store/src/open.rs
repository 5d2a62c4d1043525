//! What an append finds as it opens, under its organization's lock: the chain head, the versions
//! of the streams its decision read, and the claims it takes (the SQL of each dialect is in
//! `dialect/`).

use crate::db::Backend;
use crate::dialect::{postgres, sqlite};
use crate::error::{AppendError, StoreError};
use crate::reservations::{claims_sql, counts_sql, Reservations};
use crate::sql::{placeholders, Query};
use easm_events::GENESIS_HASH;
use serde::de::DeserializeOwned;
use sqlx::AnyConnection;
use std::collections::{BTreeMap, BTreeSet};

/// The chain head of `$1` at the genesis hash `$2` if it has none; the conflict action follows.
pub(crate) const CREATE_HEAD: &str = "INSERT INTO chain_heads (org_id, last_seq, last_hash) \
     VALUES ($1, 0, $2) ON CONFLICT (org_id)";

/// The chain head as the append found it, locked for the rest of the transaction.
#[derive(sqlx::FromRow)]
pub(crate) struct Head {
    pub last_seq: i64,
    pub last_hash: String,
    /// The last chain sequence the read models include.
    pub projected_seq: i64,
    /// Where this append's positions start: on PostgreSQL made from the transaction id, on
    /// SQLite (one writer) after the log's last position.
    pub next_position: i64,
}

/// What the opening read besides the head.
#[derive(Default)]
pub(crate) struct Opened {
    pub versions: BTreeMap<String, i64>,
    /// (scope, key) claims taken.
    pub claimed: BTreeSet<(String, String)>,
    /// Counts of the scopes changed, as they now stand.
    pub counts: BTreeMap<String, i64>,
}

impl Opened {
    /// A column sent back as JSON (none: empty).
    pub(crate) fn json<T: DeserializeOwned + Default>(
        org_id: &str,
        column: &'static str,
        text: Option<String>,
    ) -> Result<T, StoreError> {
        let Some(text) = text else {
            return Ok(T::default());
        };
        serde_json::from_str(&text).map_err(|e| StoreError::CorruptRow {
            table: "chain_heads",
            key: org_id.to_string(),
            column,
            reason: e.to_string(),
        })
    }
}

/// What an opening asks for, and the values it binds: `$1` the organization, `$2` the genesis
/// hash, then the streams, the claims (scope, key, owner) and the counts (scope, change).
pub(crate) struct Opening<'a> {
    pub org_id: &'a str,
    pub streams: &'a [&'a str],
    pub claims: &'a [(&'a str, &'a str, &'a str)],
    pub by_scope: BTreeMap<&'a str, i64>,
}

impl Opening<'_> {
    /// The latest version of each of the streams that has events.
    pub fn versions_sql(&self) -> String {
        versions_sql(3, self.streams.len())
    }

    /// The claims, answering (scope, key) of those taken.
    pub fn claims_sql(&self) -> String {
        claims_sql(self.claims.len(), 3 + self.streams.len())
    }

    /// The counters the claims move, answering (scope, count).
    pub fn counts_sql(&self) -> String {
        counts_sql(
            self.by_scope.len(),
            3 + self.streams.len() + self.claims.len() * 3,
        )
    }

    pub fn bind<'q>(&'q self, mut q: Query<'q>) -> Query<'q> {
        q = q.bind(self.org_id).bind(GENESIS_HASH);
        for id in self.streams {
            q = q.bind(*id);
        }
        for (scope, key, owner) in self.claims {
            q = q.bind(*scope).bind(*key).bind(*owner);
        }
        for (scope, n) in &self.by_scope {
            q = q.bind(*scope).bind(*n);
        }
        q
    }
}

/// Open an append: the head, the versions of `streams`, and, when `reserve` goes with the head,
/// its claims and the counters they move.
pub(crate) async fn open(
    conn: &mut AnyConnection,
    backend: Backend,
    org_id: &str,
    streams: &[&str],
    reserve: Option<&Reservations<'_>>,
) -> Result<(Head, Opened), StoreError> {
    let (first, rest) = streams.split_at(streams.len().min(backend.chunk_rows()));
    let opening = Opening {
        org_id,
        streams: first,
        claims: reserve.map(|r| r.claims.as_slice()).unwrap_or_default(),
        by_scope: reserve.map(|r| r.by_scope()).unwrap_or_default(),
    };
    let (head, mut opened) = match backend {
        Backend::Postgres => postgres::open(conn, &opening).await?,
        Backend::Sqlite => sqlite::open(conn, &opening).await?,
    };
    stream_versions(conn, backend, rest, &mut opened.versions).await?;
    Ok((head, opened))
}

/// (stream_id, version) of each of `n` streams from `$first` that has events.
fn versions_sql(first: usize, n: usize) -> String {
    format!(
        "SELECT stream_id, MAX(stream_version) AS version FROM events \
         WHERE stream_id IN ({}) GROUP BY stream_id",
        placeholders(first, n)
    )
}

/// The latest version of each of `ids` that has events.
async fn stream_versions(
    conn: &mut AnyConnection,
    backend: Backend,
    ids: &[&str],
    into: &mut BTreeMap<String, i64>,
) -> Result<(), StoreError> {
    for chunk in ids.chunks(backend.chunk_rows()) {
        let sql = versions_sql(1, chunk.len());
        let mut q = sqlx::query_as::<_, (String, i64)>(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        into.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(())
}

/// Every stream the decision wrote or read is still at the version it was decided on.
pub(crate) fn check_versions(
    expected: &BTreeMap<&str, i64>,
    actual: &BTreeMap<String, i64>,
) -> Result<(), AppendError> {
    for (stream_id, &version) in expected {
        let found = actual.get(*stream_id).copied().unwrap_or(0);
        if found != version {
            return Err(AppendError::Conflict {
                stream_id: stream_id.to_string(),
                expected: version,
                actual: found,
            });
        }
    }
    Ok(())
}
