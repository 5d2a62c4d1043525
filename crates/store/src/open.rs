//! What a batch of appends finds as it opens, under its organization's lock: the chain head, the
//! versions of the streams its decisions read, and the reservations and counts its constraints
//! are checked against (the SQL of each dialect is in `dialect/`).

use crate::db::Backend;
use crate::dialect::{postgres, sqlite};
use crate::error::{AppendError, StoreError};
use crate::sql::{placeholders, Query};
use easm_events::GENESIS_HASH;
use serde::de::DeserializeOwned;
use sqlx::AnyConnection;
use std::collections::BTreeMap;

/// The chain head of `$1` at the genesis hash `$2` if it has none; the conflict action follows.
pub(crate) const CREATE_HEAD: &str = "INSERT INTO chain_heads (org_id, last_seq, last_hash) \
     VALUES ($1, 0, $2) ON CONFLICT (org_id)";

/// The chain head as the append found it, locked for the rest of the transaction.
#[derive(Clone, sqlx::FromRow)]
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
    /// (scope, key) -> owner of the reservations looked up that are held.
    pub held: BTreeMap<(String, String), String>,
    /// Counts of the scopes looked up that have one.
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
/// hash, then the streams, the reservations (scope, key) and the scopes whose counts it reads.
pub(crate) struct Opening<'a> {
    pub org_id: &'a str,
    pub streams: &'a [&'a str],
    pub keys: &'a [(&'a str, &'a str)],
    pub scopes: &'a [&'a str],
}

impl Opening<'_> {
    /// The latest version of each of the streams that has events.
    pub fn versions_sql(&self) -> String {
        versions_sql(3, self.streams.len())
    }

    /// (scope, key, owner) of the reservations held.
    pub fn held_sql(&self) -> String {
        held_sql(3 + self.streams.len(), self.keys.len())
    }

    /// (scope, n) of the counted scopes.
    pub fn counts_sql(&self) -> String {
        counts_sql(
            3 + self.streams.len() + 2 * self.keys.len(),
            self.scopes.len(),
        )
    }

    pub fn bind<'q>(&'q self, mut q: Query<'q>) -> Query<'q> {
        q = q.bind(self.org_id).bind(GENESIS_HASH);
        for id in self.streams {
            q = q.bind(*id);
        }
        for (scope, key) in self.keys {
            q = q.bind(*scope).bind(*key);
        }
        for scope in self.scopes {
            q = q.bind(*scope);
        }
        q
    }
}

/// Open a batch of appends: the head, the versions of `streams`, which of the reservations
/// `keys` are held and by whom, and the counts of `scopes`: what its appends are checked
/// against. Nothing is reserved here: the organization's lock keeps its reservations as read
/// until the batch commits.
pub(crate) async fn open(
    conn: &mut AnyConnection,
    backend: Backend,
    org_id: &str,
    streams: &[&str],
    keys: &[(&str, &str)],
    scopes: &[&str],
) -> Result<(Head, Opened), StoreError> {
    let rows = backend.chunk_rows();
    let (first, rest) = streams.split_at(streams.len().min(rows));
    let (first_keys, rest_keys) = keys.split_at(keys.len().min(rows));
    let (first_scopes, rest_scopes) = scopes.split_at(scopes.len().min(rows));
    let opening = Opening {
        org_id,
        streams: first,
        keys: first_keys,
        scopes: first_scopes,
    };
    let (head, mut opened) = match backend {
        Backend::Postgres => postgres::open(conn, &opening).await?,
        Backend::Sqlite => sqlite::open(conn, &opening).await?,
    };
    stream_versions(conn, backend, rest, &mut opened.versions).await?;
    for chunk in rest_keys.chunks(rows) {
        let sql = held_sql(2, chunk.len());
        let mut q = sqlx::query_as::<_, (String, String, String)>(&sql).bind(org_id);
        for (scope, key) in chunk {
            q = q.bind(*scope).bind(*key);
        }
        for (scope, key, owner) in q.fetch_all(&mut *conn).await? {
            opened.held.insert((scope, key), owner);
        }
    }
    for chunk in rest_scopes.chunks(rows) {
        let sql = counts_sql(2, chunk.len());
        let mut q = sqlx::query_as::<_, (String, i64)>(&sql).bind(org_id);
        for scope in chunk {
            q = q.bind(*scope);
        }
        opened.counts.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok((head, opened))
}

/// (scope, key, owner) of the organization's (`$1`) reservations among `n` (scope, key) pairs
/// from `$first`. Joined to the pairs, so that each is looked up by the key's index: PostgreSQL
/// reads `(scope, key) IN (...)` as a filter over every reservation of the scope (100 ms for a
/// bulk add of 1,000 assets to an organization of 20,000).
fn held_sql(first: usize, n: usize) -> String {
    let pairs: Vec<String> = (0..n)
        .map(|i| format!("(${}, ${})", first + 2 * i, first + 2 * i + 1))
        .collect();
    format!(
        "SELECT held.scope, held.key, held.owner FROM reservations held \
         JOIN (VALUES {}) AS wanted \
         ON held.scope = wanted.column1 AND held.key = wanted.column2 WHERE held.org_id = $1",
        pairs.join(", ")
    )
}

/// (scope, n) of the organization's (`$1`) counters among `n` scopes from `$first`.
fn counts_sql(first: usize, n: usize) -> String {
    format!(
        "SELECT scope, n FROM reservation_counts WHERE org_id = $1 AND scope IN ({})",
        placeholders(first, n)
    )
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
