//! Findings counted by severity and status, per organization and per asset, template and group
//! within it: kept by the projection on the append's transaction (the change of the rows it
//! writes) and refilled by a rebuild from the rows themselves, so a filtered total is a lookup of
//! at most 20 rows instead of a count over every finding. Only findings the API shows are
//! counted. A group's totals are the sum of its live assets' totals; the projection moves them in
//! SQL (it knows a finding's asset, not that asset's group), after the assets' rows are written.

use crate::models::assets::AssetRow;
use crate::models::findings::{FindingCounts, FindingFilter, FindingRow};
use crate::read::{zeros, ReadModels};
use crate::state::RowMap;
use crate::table::Rows;
use easm_events::{AssetId, FindingStatus, GroupId, OrgId, Severity, SeverityCounts};
use easm_store::{Sql, StoreError, Val, Write};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) const TOTALS: &str = "rm_finding_totals";
const COLUMNS: [&str; 6] = ["org_id", "scope", "scope_id", "severity", "status", "n"];

/// What a total counts the findings of.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scope {
    Org,
    Asset(String),
    Template(String),
    Group(String),
}

impl Scope {
    fn name(&self) -> &'static str {
        match self {
            Scope::Org => "org",
            Scope::Asset(_) => "asset",
            Scope::Template(_) => "template",
            Scope::Group(_) => "group",
        }
    }

    fn id(&self) -> &str {
        match self {
            Scope::Org => "",
            Scope::Asset(id) | Scope::Template(id) | Scope::Group(id) => id,
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
    /// `row` counted `by` times in its organization, asset and template, and in `group` (its
    /// asset's, if that asset is live).
    fn add(&mut self, row: &FindingRow, group: Option<&GroupId>, by: i64) {
        if !row.visible() {
            return;
        }
        let scopes = [
            Scope::Org,
            Scope::Asset(row.asset_id.to_string()),
            Scope::Template(row.detection.template_id.clone()),
        ];
        let group = group.map(|g| Scope::Group(g.to_string()));
        for scope in scopes.into_iter().chain(group) {
            let bucket = (
                row.org_id.to_string(),
                scope,
                row.detection.severity.clone(),
                row.status.as_str().to_string(),
            );
            *self.0.entry(bucket).or_default() += by;
        }
    }

    /// The totals of `findings` over the live `assets`: what a rebuild writes.
    pub fn of(findings: &RowMap<FindingRow>, assets: &RowMap<AssetRow>) -> Tally {
        let mut t = Tally::default();
        for row in findings.values().flatten() {
            let asset = assets.get(row.asset_id.as_str()).and_then(Option::as_ref);
            t.add(row, asset.map(|a| &a.group_id), 1);
        }
        t
    }

    /// How the organization, asset and template totals move when the rows `before` (as loaded)
    /// become `after` (as folded): rows absent from `before` are new.
    fn change(before: &RowMap<FindingRow>, after: &RowMap<FindingRow>) -> Tally {
        let mut t = Tally::default();
        for (key, row) in after {
            if let Some(old) = before.get(key).and_then(Option::as_ref) {
                if Some(old) == row.as_ref() {
                    continue;
                }
                t.add(old, None, -1);
            }
            if let Some(new) = row {
                t.add(new, None, 1);
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
    fn writes(&self, size: usize, out: &mut Vec<Write>) {
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
                .text(ADD),
                values: chunk.to_vec(),
            });
        }
        let emptied: Vec<Val> = values
            .chunks(width)
            .filter(|row| matches!(row[5], Val::Int(n) if n < 0))
            .flat_map(|row| row[..5].to_vec())
            .collect();
        remove_emptied(
            "(org_id, scope, scope_id, severity, status) IN (VALUES ",
            5,
            ")",
            &emptied,
            size,
            out,
        );
    }

    /// The asset buckets' changes, as `(organization, asset, severity, status, delta)` values.
    fn asset_values(&self) -> Vec<Val> {
        let mut out = vec![];
        for ((org, scope, severity, status), n) in &self.0 {
            if let Scope::Asset(asset) = scope {
                out.extend([
                    Val::Text(org.clone()),
                    Val::Text(asset.clone()),
                    Val::Text(severity.clone()),
                    Val::Text(status.clone()),
                    Val::Int(*n),
                ]);
            }
        }
        out
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

/// Moves a bucket by the `n` of the rows inserted into it.
const ADD: &str = " ON CONFLICT (org_id, scope, scope_id, severity, status) \
                   DO UPDATE SET n = rm_finding_totals.n + excluded.n";

/// `DELETE` the buckets left at zero among those `{head}` values of `width` `{tail}` select.
fn remove_emptied(
    head: &str,
    width: usize,
    tail: &str,
    values: &[Val],
    size: usize,
    out: &mut Vec<Write>,
) {
    for chunk in values.chunks(size * width) {
        out.push(Write {
            table: TOTALS,
            sql: Sql::new(format!("DELETE FROM {TOTALS} WHERE n = 0 AND {head}"))
                .rows(chunk.len() / width, width, 0, &Sql::default())
                .text(tail),
            values: chunk.to_vec(),
        });
    }
}

/// How a batch of events moves the totals: its findings' change and, for the groups, the
/// assets that left one (moved or removed).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Change {
    tally: Tally,
    /// `(organization, asset, group, sign)`: the asset's stored totals leave the group (-1) or
    /// join it (+1).
    moves: Vec<Val>,
    /// `(organization, group)` of the groups assets left.
    left: Vec<Val>,
}

impl Change {
    /// The change when the findings and assets `before` (as loaded) become `after` (folded).
    pub fn of(
        findings: (&RowMap<FindingRow>, &RowMap<FindingRow>),
        assets: (&RowMap<AssetRow>, &RowMap<AssetRow>),
    ) -> Change {
        let mut change = Change {
            tally: Tally::change(findings.0, findings.1),
            ..Change::default()
        };
        for (asset, after) in assets.1 {
            let Some(before) = assets.0.get(asset).and_then(Option::as_ref) else {
                continue;
            };
            let to = after.as_ref().map(|a| &a.group_id);
            if to == Some(&before.group_id) {
                continue;
            }
            let org = Val::Text(before.org_id.to_string());
            let moved = [Some((&before.group_id, -1)), to.map(|g| (g, 1))];
            for (group, sign) in moved.into_iter().flatten() {
                change.moves.extend([
                    org.clone(),
                    Val::Text(asset.clone()),
                    Val::Text(group.to_string()),
                    Val::Int(sign),
                ]);
            }
            change
                .left
                .extend([org, Val::Text(before.group_id.to_string())]);
        }
        change
    }

    /// The writes, run after the read models' rows: the moved assets' totals (as stored, before
    /// this change) taken from their old group and given to the new one, the change of each
    /// bucket, the asset buckets' change given to the assets' groups as now written, and the
    /// group buckets left at zero removed.
    pub fn writes(&self, size: usize, out: &mut Vec<Write>) {
        let columns = COLUMNS.join(", ");
        for chunk in self.moves.chunks(size * 4) {
            out.push(Write {
                table: TOTALS,
                sql: Sql::new(format!(
                    "INSERT INTO {TOTALS} ({columns}) SELECT t.org_id, 'group', m.column3, \
                     t.severity, t.status, CAST(SUM(t.n * m.column4) AS BIGINT) \
                     FROM {TOTALS} t JOIN (VALUES "
                ))
                .rows(chunk.len() / 4, 4, 0, &Sql::default())
                .text(format!(
                    ") AS m ON t.org_id = m.column1 AND t.scope = 'asset' \
                     AND t.scope_id = m.column2 WHERE true \
                     GROUP BY t.org_id, m.column3, t.severity, t.status{ADD}"
                )),
                values: chunk.to_vec(),
            });
        }
        self.tally.writes(size, out);
        let assets = self.tally.asset_values();
        for chunk in assets.chunks(size * 5) {
            out.push(Write {
                table: TOTALS,
                sql: Sql::new(format!(
                    "INSERT INTO {TOTALS} ({columns}) SELECT a.org_id, 'group', a.group_id, \
                     d.column3, d.column4, CAST(SUM(d.column5) AS BIGINT) FROM (VALUES "
                ))
                .rows(chunk.len() / 5, 5, 0, &Sql::default())
                .text(format!(
                    ") AS d JOIN rm_assets a ON a.asset_id = d.column2 AND a.org_id = d.column1 \
                     WHERE true GROUP BY a.org_id, a.group_id, d.column3, d.column4{ADD}"
                )),
                values: chunk.to_vec(),
            });
        }
        let decreased: BTreeSet<&str> = (self.tally.0.iter())
            .filter(|(_, n)| **n < 0)
            .filter_map(|((_, scope, _, _), _)| match scope {
                Scope::Asset(asset) => Some(asset.as_str()),
                _ => None,
            })
            .collect();
        let decreased: Vec<Val> = decreased.into_iter().map(|a| Val::Text(a.into())).collect();
        let groups_of = "scope = 'group' AND (org_id, scope_id) IN \
                         (SELECT org_id, group_id FROM rm_assets WHERE asset_id IN (";
        remove_emptied(groups_of, 1, "))", &decreased, size, out);
        let left = "scope = 'group' AND (org_id, scope_id) IN (VALUES ";
        remove_emptied(left, 2, ")", &self.left, size, out);
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

    /// The findings of a group's assets.
    pub(crate) async fn group_finding_counts(
        &self,
        org_id: &OrgId,
        group_id: &GroupId,
    ) -> Result<FindingCounts, StoreError> {
        let rows = self
            .scope_totals(org_id, &Scope::Group(group_id.to_string()))
            .await?;
        Ok(counts_of(rows, &FindingFilter::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::assets::tests::added;
    use crate::models::findings::tests::new_finding;
    use crate::state::given;
    use easm_events::{AssetRemoved, AssetUpdated, Event, FindingStatusChanged, ScanDeleted};

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
    fn change(given: Vec<Event>, then: Event) -> Change {
        let mut state = given::events(given.clone());
        let (findings, assets) = (state.findings.clone(), state.assets.clone());
        let origin_org = given::ORG.into();
        let origin = crate::state::Origin {
            org_id: &origin_org,
            at: given.len() as i64,
            actor_id: "key-1",
        };
        state.fold(origin, &then);
        Change::of((&findings, &state.findings), (&assets, &state.assets))
    }

    fn buckets(change: Change) -> Vec<(Bucket, i64)> {
        assert_eq!((change.moves, change.left), (vec![], vec![]));
        change.tally.0.into_iter().collect()
    }

    fn text(values: &[&str]) -> Vec<Val> {
        values.iter().map(|v| Val::Text(v.to_string())).collect()
    }

    #[test]
    fn a_new_finding_counts_once_in_each_scope() {
        let t = change(vec![added("a1")], new_finding("j1"));
        assert_eq!(buckets(t), moved("open", 1));
    }

    #[test]
    fn a_status_change_moves_a_finding_between_buckets() {
        let to = Event::FindingStatusChanged(FindingStatusChanged {
            finding_id: "f1".into(),
            from: FindingStatus::Open,
            to: FindingStatus::Ignored,
            notes: None,
        });
        let t = change(vec![added("a1"), new_finding("j1")], to);
        let mut expected = moved("ignored", 1);
        expected.extend(moved("open", -1));
        expected.sort();
        assert_eq!(buckets(t), expected);
    }

    #[test]
    fn a_finding_hidden_with_its_job_leaves_the_totals_and_an_unchanged_one_moves_nothing() {
        let deleted = Event::ScanDeleted(ScanDeleted {
            scan_job_id: "j1".into(),
        });
        let t = change(vec![new_finding("j1")], deleted);
        assert_eq!(buckets(t), moved("open", -1));
        let other = Event::ScanDeleted(ScanDeleted {
            scan_job_id: "j2".into(),
        });
        assert_eq!(change(vec![new_finding("j1")], other), Change::default());
    }

    #[test]
    fn an_asset_moved_to_another_group_takes_its_totals_from_the_old_to_the_new() {
        let to_g2 = Event::AssetUpdated(AssetUpdated {
            asset_id: "a1".into(),
            group_id: Some("g2".into()),
            tags: None,
            criticality: None,
        });
        let t = change(vec![added("a1"), new_finding("j1")], to_g2);
        assert_eq!(t.tally, Tally::default());
        let mut expected = text(&[given::ORG, "a1", "g1"]);
        expected.push(Val::Int(-1));
        expected.extend(text(&[given::ORG, "a1", "g2"]));
        expected.push(Val::Int(1));
        assert_eq!(t.moves, expected);
        assert_eq!(t.left, text(&[given::ORG, "g1"]));

        let same = Event::AssetUpdated(AssetUpdated {
            asset_id: "a1".into(),
            group_id: Some("g1".into()),
            tags: None,
            criticality: Some("high".into()),
        });
        assert_eq!(change(vec![added("a1")], same), Change::default());
    }

    #[test]
    fn a_removed_asset_takes_its_totals_from_its_group_only() {
        let removed = Event::AssetRemoved(AssetRemoved {
            asset_id: "a1".into(),
            value: "a1.example.com".into(),
            group_id: "g1".into(),
        });
        let t = change(vec![added("a1"), new_finding("j1")], removed);
        let mut expected = text(&[given::ORG, "a1", "g1"]);
        expected.push(Val::Int(-1));
        assert_eq!((t.moves, t.left), (expected, text(&[given::ORG, "g1"])));
    }

    #[test]
    fn a_rebuild_counts_what_the_changes_added_up_to_and_the_live_asset_s_group() {
        let state = given::events([added("a1"), new_finding("j1")]);
        let mut expected = moved("open", 1);
        expected.push((bucket(Scope::Group("g1".into()), "open"), 1));
        expected.sort();
        let rebuilt = Tally::of(&state.findings, &state.assets);
        assert_eq!(rebuilt.0.into_iter().collect::<Vec<_>>(), expected);

        let orphan = given::events([new_finding("j1")]);
        let rebuilt = Tally::of(&orphan.findings, &orphan.assets);
        assert_eq!(rebuilt.0.into_iter().collect::<Vec<_>>(), moved("open", 1));
    }
}
