//! Reservations: the invariants that span streams (unique asset values, plan limits, empty
//! groups) as keys claimed and released in a scope, and counters per scope. A batch of appends
//! reads the ones its constraints name once, under the organization's lock (nothing else
//! changes them until it commits), checks each append against them as the appends before it
//! left them, and writes what changed with its events.

use crate::error::{AppendError, StoreError};
use crate::log::Constraint;
use crate::sql::{Sql, Val, Write};
use sqlx::AnyConnection;
use std::collections::{BTreeMap, BTreeSet};

/// The (scope, key) pairs and the scopes that `constraints` name: what a batch reads.
pub(crate) fn named<'a>(
    constraints: impl Iterator<Item = &'a Constraint>,
) -> (Vec<(&'a str, &'a str)>, Vec<&'a str>) {
    let (mut keys, mut scopes) = (BTreeSet::new(), BTreeSet::new());
    for c in constraints {
        match c {
            Constraint::Claim { scope, key, .. } | Constraint::Release { scope, key } => {
                keys.insert((scope.as_str(), key.as_str()));
                scopes.insert(scope.as_str());
            }
            Constraint::AtMost { scope, .. } | Constraint::Empty { scope } => {
                scopes.insert(scope.as_str());
            }
            Constraint::StreamAt { .. } => {}
        }
    }
    (keys.into_iter().collect(), scopes.into_iter().collect())
}

/// The reservations a batch read, as its admitted appends leave them.
pub(crate) struct Ledger {
    read: BTreeMap<(String, String), String>,
    held: BTreeMap<(String, String), String>,
    read_counts: BTreeMap<String, i64>,
    counts: BTreeMap<String, i64>,
}

impl Ledger {
    /// `held` (scope, key) -> owner and `counts` as the batch's opening read them.
    pub fn new(held: BTreeMap<(String, String), String>, counts: BTreeMap<String, i64>) -> Self {
        Ledger {
            read: held.clone(),
            held,
            read_counts: counts.clone(),
            counts,
        }
    }

    /// Apply one append's claims, then its releases, and check its counting constraints
    /// against the sizes they leave; all or nothing. A key claimed twice in one append is
    /// claimed once.
    pub fn admit(&mut self, constraints: &[Constraint]) -> Result<(), AppendError> {
        let mut claimed: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut released: BTreeSet<(String, String)> = BTreeSet::new();
        let mut deltas: BTreeMap<&str, i64> = BTreeMap::new();
        for c in constraints {
            if let Constraint::Claim { scope, key, owner } = c {
                let k = (scope.clone(), key.clone());
                if self.held.contains_key(&k) {
                    return Err(AppendError::Constraint(format!("{scope}/{key} is taken")));
                }
                if let std::collections::btree_map::Entry::Vacant(free) = claimed.entry(k) {
                    free.insert(owner.clone());
                    *deltas.entry(scope).or_default() += 1;
                }
            }
        }
        for c in constraints {
            if let Constraint::Release { scope, key } = c {
                let k = (scope.clone(), key.clone());
                let held = claimed.remove(&k).is_some()
                    || (self.held.contains_key(&k) && released.insert(k));
                if held {
                    *deltas.entry(scope).or_default() -= 1;
                }
            }
        }
        let count = |scope: &str| {
            self.counts.get(scope).copied().unwrap_or(0) + deltas.get(scope).copied().unwrap_or(0)
        };
        for c in constraints {
            let (scope, max) = match c {
                Constraint::AtMost { scope, max } => (scope, *max),
                Constraint::Empty { scope } => (scope, 0),
                _ => continue,
            };
            if count(scope).max(0) as u64 > max {
                return Err(AppendError::Constraint(match c {
                    Constraint::Empty { .. } => format!("{scope} is not empty"),
                    _ => format!("{scope} holds more than {max}"),
                }));
            }
        }
        for (scope, delta) in deltas {
            *self.counts.entry(scope.to_string()).or_default() += delta;
        }
        for k in released {
            self.held.remove(&k);
        }
        self.held.extend(claimed);
        Ok(())
    }

    /// The writes that bring the organization's reservations from what was read to what the
    /// admitted appends left: releases first, then claims, then the counters that moved.
    pub fn writes(&self, org_id: &str) -> Vec<Write> {
        let changed = |from: &BTreeMap<(String, String), String>,
                       to: &BTreeMap<(String, String), String>| {
            from.iter()
                .filter(|(k, owner)| to.get(*k) != Some(*owner))
                .map(|(k, owner)| (k.clone(), owner.clone()))
                .collect::<Vec<_>>()
        };
        let mut writes = vec![];
        for chunk in changed(&self.read, &self.held).chunks(WRITE_ROWS) {
            let mut values = vec![Val::Text(org_id.into())];
            for ((scope, key), _) in chunk {
                values.push(Val::Text(scope.clone()));
                values.push(Val::Text(key.clone()));
            }
            let pairs = Sql::new("DELETE FROM reservations WHERE org_id = ")
                .value(0)
                .text(" AND (scope, key) IN (")
                .rows(chunk.len(), 2, 1, &Sql::default())
                .text(")");
            writes.push(Write {
                table: "reservations",
                sql: pairs,
                values,
            });
        }
        for chunk in changed(&self.held, &self.read).chunks(WRITE_ROWS) {
            let mut values = vec![Val::Text(org_id.into())];
            for ((scope, key), owner) in chunk {
                values.push(Val::Text(scope.clone()));
                values.push(Val::Text(key.clone()));
                values.push(Val::Text(owner.clone()));
            }
            writes.push(Write {
                table: "reservations",
                sql: Sql::new("INSERT INTO reservations (scope, key, owner, org_id) VALUES ").rows(
                    chunk.len(),
                    3,
                    1,
                    &Sql::new(", ").value(0),
                ),
                values,
            });
        }
        let moved: Vec<(&String, &i64)> = self
            .counts
            .iter()
            .filter(|(scope, n)| self.read_counts.get(*scope) != Some(*n))
            .collect();
        for chunk in moved.chunks(WRITE_ROWS) {
            let mut values = vec![Val::Text(org_id.into())];
            for (scope, n) in chunk {
                values.push(Val::Text((*scope).clone()));
                values.push(Val::Int(**n));
            }
            writes.push(Write {
                table: "reservation_counts",
                sql: Sql::new("INSERT INTO reservation_counts (scope, n, org_id) VALUES ")
                    .rows(chunk.len(), 2, 1, &Sql::new(", ").value(0))
                    .text(" ON CONFLICT (org_id, scope) DO UPDATE SET n = excluded.n"),
                values,
            });
        }
        writes
    }
}

/// Rows per reservation write: within SQLite's fastest binding size.
const WRITE_ROWS: usize = 50;

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
