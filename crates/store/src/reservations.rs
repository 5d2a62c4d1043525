//! Reservations: the invariants that span streams (unique asset values, plan limits, empty
//! groups) as keys claimed and released in a scope, and counters per scope, checked in the
//! append's transaction.

use crate::db::Backend;
use crate::error::{AppendError, StoreError};
use crate::log::Constraint;
use crate::open::Opened;
use crate::sql::{placeholders, Sql};
use sqlx::AnyConnection;
use std::collections::{BTreeMap, BTreeSet};

/// The claims and releases an append's constraints make.
pub(crate) struct Reservations<'a> {
    /// (scope, key, owner)
    pub claims: Vec<(&'a str, &'a str, &'a str)>,
    pub releases: BTreeMap<&'a str, Vec<&'a str>>,
}

impl<'a> Reservations<'a> {
    pub fn of(constraints: &'a [Constraint]) -> Self {
        let mut r = Reservations {
            claims: vec![],
            releases: BTreeMap::new(),
        };
        for c in constraints {
            match c {
                Constraint::Claim { scope, key, owner } => r.claims.push((scope, key, owner)),
                Constraint::Release { scope, key } => {
                    r.releases.entry(scope).or_default().push(key)
                }
                _ => {}
            }
        }
        r
    }

    /// Claims alone, few enough to go with the head's read. The counters then assume every
    /// claim succeeds; if one does not, the append fails and its transaction rolls back.
    pub fn with_head(&self, backend: Backend) -> bool {
        self.releases.is_empty()
            && !self.claims.is_empty()
            && self.claims.len() <= backend.chunk_rows()
    }

    /// Claims per scope.
    pub fn by_scope(&self) -> BTreeMap<&'a str, i64> {
        let mut n = BTreeMap::new();
        for (scope, _, _) in &self.claims {
            *n.entry(*scope).or_default() += 1;
        }
        n
    }
}

/// Apply claims and releases the append's opening did not, then check the counting constraints
/// against the sizes they leave. Each scope's count changes once per append: a thousand
/// updates of one counter row in one transaction would leave PostgreSQL a thousand row
/// versions to walk.
pub(crate) async fn reserve(
    conn: &mut AnyConnection,
    backend: Backend,
    org_id: &str,
    constraints: &[Constraint],
    plan: &Reservations<'_>,
    mut opened: Opened,
) -> Result<(), AppendError> {
    if plan.with_head(backend) {
        require_claimed(&plan.claims, &opened.claimed)?;
        return check_counts(conn, org_id, constraints, &opened.counts).await;
    }
    let mut deltas: BTreeMap<&str, i64> = BTreeMap::new();
    for chunk in plan.claims.chunks(backend.chunk_rows()) {
        let sql = claims_sql(chunk.len(), 2);
        let mut q = sqlx::query_as::<_, (String, String)>(&sql).bind(org_id);
        for (scope, key, owner) in chunk {
            q = q.bind(*scope).bind(*key).bind(*owner);
        }
        opened.claimed.extend(q.fetch_all(&mut *conn).await?);
    }
    require_claimed(&plan.claims, &opened.claimed)?;
    for (scope, n) in plan.by_scope() {
        *deltas.entry(scope).or_default() += n;
    }
    for (scope, keys) in &plan.releases {
        for chunk in keys.chunks(backend.chunk_rows()) {
            let sql = format!(
                "DELETE FROM reservations WHERE org_id = $1 AND scope = $2 AND key IN ({})",
                placeholders(3, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(org_id).bind(*scope);
            for key in chunk {
                q = q.bind(*key);
            }
            *deltas.entry(scope).or_default() -=
                q.execute(&mut *conn).await?.rows_affected() as i64;
        }
    }
    deltas.retain(|_, d| *d != 0);
    if !deltas.is_empty() {
        let sql = counts_sql(deltas.len(), 2);
        let mut q = sqlx::query_as::<_, (String, i64)>(&sql).bind(org_id);
        for (scope, delta) in &deltas {
            q = q.bind(*scope).bind(*delta);
        }
        opened.counts.extend(q.fetch_all(&mut *conn).await?);
    }
    check_counts(conn, org_id, constraints, &opened.counts).await
}

/// Claims of `n` (scope, key, owner) from `$first` by the organization in `$1`; answers the
/// (scope, key) of those taken.
pub(crate) fn claims_sql(n: usize, first: usize) -> String {
    Sql::new("INSERT INTO reservations (scope, key, owner, org_id) VALUES ")
        .rows(n, 3, first - 1, &Sql::new(", ").value(0))
        .text(" ON CONFLICT (org_id, scope, key) DO NOTHING RETURNING scope, key")
        .render(0)
}

/// `n` (scope, change) pairs from `$first` added to the counters of the organization in `$1`;
/// answers the (scope, count) they leave.
pub(crate) fn counts_sql(n: usize, first: usize) -> String {
    Sql::new("INSERT INTO reservation_counts (scope, n, org_id) VALUES ")
        .rows(n, 2, first - 1, &Sql::new(", ").value(0))
        .text(
            " ON CONFLICT (org_id, scope) DO UPDATE SET n = reservation_counts.n + excluded.n \
             RETURNING scope, n",
        )
        .render(0)
}

fn require_claimed(
    claims: &[(&str, &str, &str)],
    claimed: &BTreeSet<(String, String)>,
) -> Result<(), AppendError> {
    match claims
        .iter()
        .find(|(scope, key, _)| !claimed.contains(&(scope.to_string(), key.to_string())))
    {
        Some((scope, key, _)) => Err(AppendError::Constraint(format!("{scope}/{key} is taken"))),
        None => Ok(()),
    }
}

/// The counting constraints hold against `counts`, the sizes this append left (a scope it did
/// not change is read).
async fn check_counts(
    conn: &mut AnyConnection,
    org_id: &str,
    constraints: &[Constraint],
    counts: &BTreeMap<String, i64>,
) -> Result<(), AppendError> {
    for c in constraints {
        let (scope, max) = match c {
            Constraint::AtMost { scope, max } => (scope, *max),
            Constraint::Empty { scope } => (scope, 0),
            _ => continue,
        };
        let n = match counts.get(scope) {
            Some(n) => *n,
            None => count_scope(&mut *conn, org_id, scope).await?,
        };
        if n.max(0) as u64 > max {
            return Err(AppendError::Constraint(match c {
                Constraint::Empty { .. } => format!("{scope} is not empty"),
                _ => format!("{scope} holds more than {max}"),
            }));
        }
    }
    Ok(())
}

pub(crate) async fn count_scope(
    conn: &mut AnyConnection,
    org_id: &str,
    scope: &str,
) -> Result<i64, StoreError> {
    let n: Option<i64> =
        sqlx::query_scalar("SELECT n FROM reservation_counts WHERE org_id = $1 AND scope = $2")
            .bind(org_id)
            .bind(scope)
            .fetch_optional(conn)
            .await?;
    Ok(n.unwrap_or(0))
}
