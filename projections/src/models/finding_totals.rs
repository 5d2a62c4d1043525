//! Findings counted by severity and status, per organization and per asset and template within
//! it: kept by the projection on the append's transaction (the change of the rows it writes) and
//! refilled by a rebuild from the rows themselves, so a filtered total is a lookup of at most 20
//! rows instead of a count over every finding. Only findings the API shows are counted.

use crate::models::findings::{FindingCounts, FindingFilter, FindingRow};
use crate::read::{zeros, ReadModels};
use crate::state::RowMap;
use crate::table::Rows;
use easm_events::{AssetId, FindingStatus, GroupId, OrgId, Severity, SeverityCounts};
use easm_store::{Sql, StoreError, Val, Write};
use std::collections::BTreeMap;

pub(crate) const TOTALS: &str = "rm_finding_totals";
const COLUMNS: [&str; 6] = ["org_id", "scope", "scope_id", "severity", "status", "n"];

/// What a total counts the findings of.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scope {
    Org,
    Asset(String),
    Template(String),
}

impl Scope {
    fn name(&self) -> &'static str {
        match self {
            Scope::Org => "org",
            Scope::Asset(_) => "asset",
            Scope::Template(_) => "template",
        }
    }

    fn id(&self) -> &str {
        match self {
            Scope::Org => "",
            Scope::Asset(id) | Scope::Template(id) => id,
        }
    }

    /// The one scope whose totals answer `f` exactly, if one does: filters on severity and
    /// status within an organization, an asset or a template.
    fn of(f: &FindingFilter) -> Option<Scope> {
        let uncounted = [&f.scan_job_id, &f.q].iter().any(|v| v.is_some());
        if uncounted || f.since.is_some() || f.until.is_some() {
            return None;
        }
        match (&f.asset_id, &f.template_id) {
            (None, None) => Some(Scope::Org),
            (Some(a), None) => Some(Scope::Asset(a.clone())),
            (None, Some(t)) => Some(Scope::Template(t.clone())),
            (Some(_), Some(_)) => None,
        }
    }
}

/// A bucket: organization, scope, severity, status.
type Bucket = (String, Scope, String, String);

/// Findings per bucket (or a change of them).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Tally(BTreeMap<Bucket, i64>);

impl Tally {
    fn add(&mut self, row: &FindingRow, by: i64) {
        if !row.visible() {
            return;
        }
        let scopes = [
            Scope::Org,
            Scope::Asset(row.asset_id.to_string()),
            Scope::Template(row.detection.template_id.clone()),
        ];
        for scope in scopes {
            let bucket = (
                row.org_id.to_string(),
                scope,
                row.detection.severity.clone(),
                row.status.as_str().to_string(),
            );
            *self.0.entry(bucket).or_default() += by;
        }
    }

    /// The totals of `rows`: what a rebuild writes.
    pub fn of(rows: &RowMap<FindingRow>) -> Tally {
        let mut t = Tally::default();
        for row in rows.values().flatten() {
            t.add(row, 1);
        }
        t
    }

    /// How the totals move when the rows `before` (as loaded) become `after` (as folded): rows
    /// absent from `before` are new.
    pub fn change(before: &RowMap<FindingRow>, after: &RowMap<FindingRow>) -> Tally {
        let mut t = Tally::default();
        for (key, row) in after {
            if let Some(old) = before.get(key).and_then(Option::as_ref) {
                if Some(old) == row.as_ref() {
                    continue;
                }
                t.add(old, -1);
            }
            if let Some(new) = row {
                t.add(new, 1);
            }
        }
        t.0.retain(|_, n| *n != 0);
        t
    }

    fn values(&self) -> Vec<Val> {
        let mut out = Vec::with_capacity(self.0.len() * COLUMNS.len());
        for ((org, scope, severity, status), n) in &self.0 {
            out.extend([
                Val::Text(org.clone()),
                Val::Text(scope.name().into()),
                Val::Text(scope.id().into()),
                Val::Text(severity.clone()),
                Val::Text(status.clone()),
                Val::Int(*n),
            ]);
        }
        out
    }

    /// The change applied: each bucket's count moved by its delta, then the buckets a decrease
    /// emptied removed, so the table holds what a rebuild would write.
    pub fn writes(&self, size: usize, out: &mut Vec<Write>) {
        let width = COLUMNS.len();
        let values = self.values();
        for chunk in values.chunks(size * width) {
            out.push(Write {
                table: TOTALS,
                sql: Sql::new(format!(
                    "INSERT INTO {TOTALS} ({}) VALUES ",
                    COLUMNS.join(", ")
                ))
                .rows(chunk.len() / width, width, 0, &Sql::default())
                .text(format!(
                    " ON CONFLICT (org_id, scope, scope_id, severity, status) \
                         DO UPDATE SET n = {TOTALS}.n + excluded.n"
                )),
                values: chunk.to_vec(),
            });
        }
        let emptied: Vec<Val> = values
            .chunks(width)
            .filter(|row| matches!(row[5], Val::Int(n) if n < 0))
            .flat_map(|row| row[..5].to_vec())
            .collect();
        for chunk in emptied.chunks(size * 5) {
            out.push(Write {
                table: TOTALS,
                sql: Sql::new(format!(
                    "DELETE FROM {TOTALS} WHERE n = 0 AND \
                     (org_id, scope, scope_id, severity, status) IN (VALUES "
                ))
                .rows(chunk.len() / 5, 5, 0, &Sql::default())
                .text(")"),
                values: chunk.to_vec(),
            });
        }
    }

    /// The rows of a table refilled from empty.
    pub fn rows(&self) -> Rows {
        Rows {
            table: TOTALS,
            columns: COLUMNS.join(", "),
            values: self.values(),
        }
    }
}

/// Counts with every severity and status present, each zero.
fn empty_counts() -> FindingCounts {
    FindingCounts {
        total: 0,
        by_severity: zeros(Severity::NAMES.iter().copied()),
        by_status: zeros(FindingStatus::NAMES.iter().copied()),
    }
}

/// `(severity, status, n)` rows summed into counts, those `f` leaves out skipped.
pub(crate) fn counts_of(rows: Vec<(String, String, i64)>, f: &FindingFilter) -> FindingCounts {
    let mut counts = empty_counts();
    for (severity, status, n) in rows {
        let severity_wanted = f.severities.is_empty() || f.severities.contains(&severity);
        if !severity_wanted || f.status.as_ref().is_some_and(|s| s != &status) {
            continue;
        }
        counts.total += n;
        *counts.by_severity.entry(severity).or_default() += n;
        *counts.by_status.entry(status).or_default() += n;
    }
    counts
}

impl ReadModels {
    /// The `(severity, status, n)` totals of one scope.
    async fn scope_totals(
        &self,
        org_id: &OrgId,
        scope: &Scope,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT severity, status, n FROM {TOTALS} \
             WHERE org_id = $1 AND scope = $2 AND scope_id = $3"
        ))
        .bind(org_id.as_str())
        .bind(scope.name())
        .bind(scope.id())
        .fetch_all(self.db.reader())
        .await?)
    }

    /// The counts of the findings `f` selects, from the totals, if they answer `f`.
    pub(crate) async fn kept_finding_counts(
        &self,
        org_id: &OrgId,
        f: &FindingFilter,
    ) -> Result<Option<FindingCounts>, StoreError> {
        let Some(scope) = Scope::of(f) else {
            return Ok(None);
        };
        let rows = self.scope_totals(org_id, &scope).await?;
        Ok(Some(counts_of(rows, f)))
    }

    /// Unresolved (open or acknowledged) findings of an asset per severity.
    pub async fn unresolved_by_severity(
        &self,
        org_id: &OrgId,
        asset_id: &AssetId,
    ) -> Result<SeverityCounts, StoreError> {
        let scope = Scope::Asset(asset_id.to_string());
        let mut c = SeverityCounts::default();
        for (severity, status, n) in self.scope_totals(org_id, &scope).await? {
            let unresolved = [FindingStatus::Open, FindingStatus::Acknowledged]
                .iter()
                .any(|s| s.as_str() == status);
            if unresolved {
                c.add(&severity, n as u32);
            }
        }
        Ok(c)
    }

    /// The findings of a group's assets, from their totals.
    pub(crate) async fn group_finding_counts(
        &self,
        group_id: &GroupId,
    ) -> Result<FindingCounts, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(&format!(
            "SELECT t.severity, t.status, CAST(SUM(t.n) AS BIGINT) FROM rm_assets a JOIN {TOTALS} t \
             ON t.org_id = a.org_id AND t.scope = 'asset' AND t.scope_id = a.asset_id \
             WHERE a.group_id = $1 GROUP BY t.severity, t.status"
        ))
        .bind(group_id.as_str())
        .fetch_all(self.db.reader())
        .await?;
        Ok(counts_of(rows, &FindingFilter::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::findings::tests::new_finding;
    use crate::state::given;
    use easm_events::{Event, FindingStatusChanged, ScanDeleted};

    fn bucket(scope: Scope, status: &str) -> Bucket {
        (given::ORG.into(), scope, "high".into(), status.into())
    }

    /// The three buckets of `f1` in `status`, each moved by `n`.
    fn moved(status: &str, n: i64) -> Vec<(Bucket, i64)> {
        [
            Scope::Org,
            Scope::Asset("a1".into()),
            Scope::Template("tls.expired-cert".into()),
        ]
        .into_iter()
        .map(|s| (bucket(s, status), n))
        .collect()
    }

    /// The change of the totals when `then` follows `given`.
    fn change(given: Vec<Event>, then: Event) -> Tally {
        let mut state = given::events(given.clone());
        let before = state.findings.clone();
        let origin_org = given::ORG.into();
        let origin = crate::state::Origin {
            org_id: &origin_org,
            at: given.len() as i64,
            actor_id: "key-1",
        };
        state.fold(origin, &then);
        Tally::change(&before, &state.findings)
    }

    #[test]
    fn a_new_finding_counts_once_in_each_scope() {
        let t = change(vec![], new_finding("j1"));
        assert_eq!(t.0.into_iter().collect::<Vec<_>>(), moved("open", 1));
    }

    #[test]
    fn a_status_change_moves_a_finding_between_buckets() {
        let to = Event::FindingStatusChanged(FindingStatusChanged {
            finding_id: "f1".into(),
            from: FindingStatus::Open,
            to: FindingStatus::Ignored,
            notes: None,
        });
        let t = change(vec![new_finding("j1")], to);
        let mut expected = moved("ignored", 1);
        expected.extend(moved("open", -1));
        expected.sort();
        assert_eq!(t.0.into_iter().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn a_finding_hidden_with_its_job_leaves_the_totals_and_an_unchanged_one_moves_nothing() {
        let deleted = Event::ScanDeleted(ScanDeleted {
            scan_job_id: "j1".into(),
        });
        let t = change(vec![new_finding("j1")], deleted);
        assert_eq!(t.0.into_iter().collect::<Vec<_>>(), moved("open", -1));
        let other = Event::ScanDeleted(ScanDeleted {
            scan_job_id: "j2".into(),
        });
        assert_eq!(change(vec![new_finding("j1")], other), Tally::default());
    }

    #[test]
    fn a_rebuild_counts_what_the_changes_added_up_to() {
        let state = given::events([new_finding("j1")]);
        assert_eq!(
            Tally::of(&state.findings),
            change(vec![], new_finding("j1"))
        );
    }
}
