//! Findings: one per deduplication key, with their detection, triage status and the live scan
//! jobs that detected them (a finding no live job detected is hidden, keeping its row so a later
//! detection shows it again with its history).

use crate::models::finding_totals::counts_of;
use crate::read::{iso, like_pattern, Page, PageRequest, ReadModels};
use crate::state::{create, live, Origin, RowMap};
use crate::table::{id, to_json, ChildTable, ReadModel, Table};
use easm_events::{
    AssetId, Detection, DiscoveryJobId, Event, FindingId, FindingStatus, OrgId, ScanJobId, Severity,
};
use easm_store::{AnyConnection, AnyRow, Filter, Row, StoreError, Val};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq)]
pub struct FindingRow {
    pub org_id: OrgId,
    pub asset_id: AssetId,
    pub detection: Detection,
    pub status: FindingStatus,
    pub assignee: Option<String>,
    pub notes: Option<String>,
    pub scan_job_ids: Vec<ScanJobId>,
    /// Discovery jobs that detected it (DNS findings).
    pub discovery_job_ids: Vec<DiscoveryJobId>,
    pub detection_count: i64,
    pub first_detected: i64,
    pub last_detected: i64,
    pub updated_at: i64,
}

impl FindingRow {
    /// Some live scan job or a discovery job detected it: the API shows it. Kept as a column
    /// of its own (`visible`), which every query filters on and the indexes lead with.
    pub fn visible(&self) -> bool {
        !self.scan_job_ids.is_empty() || !self.discovery_job_ids.is_empty()
    }
}

pub(crate) struct Findings;

impl ReadModel for Findings {
    type Row = FindingRow;
    const TABLE: Table = Table {
        name: "rm_findings",
        pk: "finding_id",
        columns: &[
            "org_id",
            "asset_id",
            "template_id",
            "title",
            "severity",
            "category",
            "description",
            "evidence",
            "remediation",
            "refs",
            "cve",
            "cwe",
            "cvss_score",
            "matched_at",
            "matcher_name",
            "source",
            "status",
            "assignee",
            "notes",
            "scan_job_ids",
            "detection_count",
            "first_detected",
            "last_detected",
            "updated_at",
            "discovery_job_ids",
            "visible",
            "severity_rank",
        ],
    };

    fn key(event: &Event) -> Option<&str> {
        match event {
            Event::FindingNew(f) => Some(f.finding_id.as_str()),
            Event::FindingRedetected(f) => Some(f.finding_id.as_str()),
            Event::FindingReopened(f) => Some(f.finding_id.as_str()),
            Event::FindingResolved(f) => Some(f.finding_id.as_str()),
            Event::FindingStatusChanged(f) => Some(f.finding_id.as_str()),
            Event::FindingUpdated(f) => Some(f.finding_id.as_str()),
            _ => None,
        }
    }

    fn fold(rows: &mut RowMap<FindingRow>, origin: Origin<'_>, event: &Event) {
        let at = origin.at;
        match event {
            Event::FindingNew(f) => create(rows, &f.finding_id, || FindingRow {
                org_id: origin.org_id.clone(),
                asset_id: f.asset_id.clone(),
                detection: (*f.detection).clone(),
                status: FindingStatus::Open,
                assignee: None,
                notes: None,
                scan_job_ids: f.scan_job_id.iter().cloned().collect(),
                discovery_job_ids: f.discovery_job_id.iter().cloned().collect(),
                detection_count: 1,
                first_detected: at,
                last_detected: at,
                updated_at: at,
            }),
            Event::FindingRedetected(f) => {
                if let Some(row) = live(rows, &f.finding_id) {
                    if let Some(j) = f
                        .scan_job_id
                        .as_ref()
                        .filter(|j| !row.scan_job_ids.contains(j))
                    {
                        row.scan_job_ids.push(j.clone());
                    }
                    if let Some(j) = f
                        .discovery_job_id
                        .as_ref()
                        .filter(|j| !row.discovery_job_ids.contains(j))
                    {
                        row.discovery_job_ids.push(j.clone());
                    }
                    row.detection.evidence = f.evidence.clone();
                    row.detection_count += 1;
                    row.last_detected = at;
                    row.updated_at = at;
                }
            }
            Event::FindingReopened(f) => {
                set_status(rows, &f.finding_id, FindingStatus::Open, &f.notes, at)
            }
            Event::FindingResolved(f) => {
                set_status(rows, &f.finding_id, FindingStatus::Resolved, &f.notes, at)
            }
            Event::FindingStatusChanged(f) => set_status(rows, &f.finding_id, f.to, &f.notes, at),
            Event::FindingUpdated(f) => {
                if let Some(row) = live(rows, &f.finding_id) {
                    if let Some(a) = &f.assignee {
                        row.assignee = (!a.is_empty()).then(|| a.clone());
                    }
                    if f.notes.is_some() {
                        row.notes = f.notes.clone();
                    }
                    row.updated_at = at;
                }
            }
            // Its findings leave with a deleted job.
            Event::ScanDeleted(s) => {
                for row in rows.values_mut().flatten() {
                    if row.scan_job_ids.contains(&s.scan_job_id) {
                        row.scan_job_ids.retain(|j| j != &s.scan_job_id);
                        row.updated_at = at;
                    }
                }
            }
            _ => {}
        }
    }

    fn vals(row: &FindingRow) -> Vec<Val> {
        let d = &row.detection;
        vec![
            Val::Text(row.org_id.to_string()),
            Val::Text(row.asset_id.to_string()),
            Val::Text(d.template_id.clone()),
            Val::Text(d.title.clone()),
            Val::Text(d.severity.clone()),
            Val::Text(d.category.clone()),
            Val::Text(d.description.clone()),
            Val::Text(d.evidence.clone()),
            Val::Text(d.remediation.clone()),
            Val::Text(to_json(&d.references)),
            Val::OptText(d.cve.clone()),
            Val::OptText(d.cwe.clone()),
            Val::OptFloat(d.cvss_score),
            Val::Text(d.matched_at.clone()),
            Val::Text(d.matcher_name.clone()),
            Val::Text(d.source.clone()),
            Val::Text(row.status.as_str().into()),
            Val::OptText(row.assignee.clone()),
            Val::OptText(row.notes.clone()),
            Val::Text(to_json(&row.scan_job_ids)),
            Val::Int(row.detection_count),
            Val::Int(row.first_detected),
            Val::Int(row.last_detected),
            Val::Int(row.updated_at),
            Val::Text(to_json(&row.discovery_job_ids)),
            Val::Int(row.visible().into()),
            Val::Int(severity_rank(&d.severity)),
        ]
    }

    fn parse(r: &AnyRow) -> Result<FindingRow, StoreError> {
        Ok(FindingRow {
            org_id: id(r, "org_id")?,
            asset_id: id(r, "asset_id")?,
            detection: Detection {
                template_id: r.try_get("template_id")?,
                title: r.try_get("title")?,
                severity: r.try_get("severity")?,
                category: r.try_get("category")?,
                description: r.try_get("description")?,
                evidence: r.try_get("evidence")?,
                remediation: r.try_get("remediation")?,
                references: Self::TABLE.json(r, "refs")?,
                cve: r.try_get("cve")?,
                cwe: r.try_get("cwe")?,
                cvss_score: r.try_get("cvss_score")?,
                matched_at: r.try_get("matched_at")?,
                matcher_name: r.try_get("matcher_name")?,
                source: r.try_get("source")?,
            },
            status: Self::TABLE.named(r, "status", FindingStatus::parse)?,
            assignee: r.try_get("assignee")?,
            notes: r.try_get("notes")?,
            scan_job_ids: Self::TABLE.json(r, "scan_job_ids")?,
            discovery_job_ids: Self::TABLE.json(r, "discovery_job_ids")?,
            detection_count: r.try_get("detection_count")?,
            first_detected: r.try_get("first_detected")?,
            last_detected: r.try_get("last_detected")?,
            updated_at: r.try_get("updated_at")?,
        })
    }

    /// A deleted job changes every finding it detected.
    async fn related(
        conn: &mut AnyConnection,
        events: &[Event],
    ) -> Result<Vec<String>, StoreError> {
        let mut keys = vec![];
        for e in events {
            if let Event::ScanDeleted(d) = e {
                let sql = format!("SELECT finding_id FROM {JOBS} WHERE scan_job_id = $1");
                let detected: Vec<String> = sqlx::query_scalar(&sql)
                    .bind(d.scan_job_id.as_str())
                    .fetch_all(&mut *conn)
                    .await?;
                keys.extend(detected);
            }
        }
        Ok(keys)
    }

    const CHILD: Option<ChildTable> = Some(ChildTable {
        name: JOBS,
        columns: &["finding_id", "scan_job_id", "org_id"],
    });

    fn child_values(rows: &RowMap<FindingRow>) -> Vec<Val> {
        job_rows(rows)
    }
}

/// The scan jobs that detected each finding, a row each.
const JOBS: &str = "rm_finding_jobs";

/// The values of the job rows of the live findings (finding, job, organization).
fn job_rows(rows: &RowMap<FindingRow>) -> Vec<Val> {
    rows.iter()
        .filter_map(|(id, f)| f.as_ref().map(|f| (id, f)))
        .flat_map(|(id, f)| f.scan_job_ids.iter().map(move |j| (id, j, &f.org_id)))
        .flat_map(|(id, job, org)| {
            [id.as_str(), job.as_str(), org.as_str()].map(|v| Val::Text(v.into()))
        })
        .collect()
}

fn set_status(
    rows: &mut RowMap<FindingRow>,
    id: &FindingId,
    status: FindingStatus,
    notes: &Option<String>,
    at: i64,
) {
    if let Some(row) = live(rows, id) {
        row.status = status;
        if notes.is_some() {
            row.notes = notes.clone();
        }
        row.updated_at = at;
    }
}

/// Findings some live scan job or a discovery job detected; the others left with their deleted
/// scan jobs.
const DETECTED: &str = "f.visible = 1";

/// A severity as a number that sorts worst highest (`severity_rank`), so that sorting by
/// severity descends one index like the other sorts; an unknown severity ranks with info.
fn severity_rank(severity: &str) -> i64 {
    let worst_first = Severity::ALL.iter().position(|s| s.as_str() == severity);
    (Severity::ALL.len() - 1 - worst_first.unwrap_or(Severity::ALL.len() - 1)) as i64
}

/// How a list of findings is ordered: every key descending and the finding's id breaking ties,
/// so that one index serves the first page, a numbered page and a cursor alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FindingSort {
    #[default]
    LastDetected,
    FirstDetected,
    Severity,
}

impl FindingSort {
    pub const NAMES: [&'static str; 3] = ["lastDetected", "firstDetected", "severity"];
    const ALL: [FindingSort; 3] = [
        FindingSort::LastDetected,
        FindingSort::FirstDetected,
        FindingSort::Severity,
    ];

    pub fn parse(name: &str) -> Option<FindingSort> {
        let at = Self::NAMES.iter().position(|n| *n == name)?;
        Some(Self::ALL[at])
    }

    fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The columns ordered by, before the finding's id.
    fn keys(self) -> &'static [&'static str] {
        match self {
            FindingSort::LastDetected => &["last_detected"],
            FindingSort::FirstDetected => &["first_detected"],
            FindingSort::Severity => &["severity_rank", "last_detected"],
        }
    }

    fn order(self) -> String {
        let mut by: Vec<String> = self.keys().iter().map(|k| format!("f.{k} DESC")).collect();
        by.push("f.finding_id DESC".into());
        by.join(", ")
    }
}

/// Where the page after another starts: the sort keys and the id of that page's last finding.
/// Opaque to clients (the hex of `sort:keys:id`); rows inserted before it never move it, so
/// cursor pages return every finding once at a constant cost whatever their depth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindingCursor {
    sort: FindingSort,
    keys: Vec<i64>,
    id: String,
}

impl FindingCursor {
    pub fn encode(&self) -> String {
        let mut text = self.sort.as_str().to_string();
        for k in &self.keys {
            text.push_str(&format!(":{k}"));
        }
        text.push(':');
        text.push_str(&self.id);
        text.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// A cursor [`FindingCursor::encode`] made, or nothing.
    pub fn parse(hex: &str) -> Option<FindingCursor> {
        if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect();
        let text = String::from_utf8(bytes?).ok()?;
        let mut parts = text.splitn(2, ':');
        let sort = FindingSort::parse(parts.next()?)?;
        let mut rest = parts.next()?;
        let mut keys = vec![];
        for _ in sort.keys() {
            let (key, tail) = rest.split_once(':')?;
            keys.push(key.parse().ok()?);
            rest = tail;
        }
        (!rest.is_empty()).then(|| FindingCursor {
            sort,
            keys,
            id: rest.to_string(),
        })
    }

    pub fn sort(&self) -> FindingSort {
        self.sort
    }

    /// The cursor after the finding of `r` (a row of [`FINDING_COLUMNS`]).
    fn after(sort: FindingSort, r: &AnyRow) -> Result<FindingCursor, StoreError> {
        let keys = sort
            .keys()
            .iter()
            .map(|k| r.try_get::<i64, _>(*k))
            .collect::<Result<_, _>>()?;
        Ok(FindingCursor {
            sort,
            keys,
            id: r.try_get("finding_id")?,
        })
    }

    /// Rows after this cursor in its order.
    fn condition(&self, w: &mut Filter) {
        let mut columns: Vec<String> = self.sort.keys().iter().map(|k| format!("f.{k}")).collect();
        columns.push("f.finding_id".into());
        let mut values: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("CAST({} AS BIGINT)", w.bind(k.to_string())))
            .collect();
        values.push(w.bind(self.id.as_str()));
        w.push(format!(
            "({}) < ({})",
            columns.join(", "),
            values.join(", ")
        ));
    }
}

/// How far a list's total is counted when no kept total answers its filters; beyond it the
/// total says `totalCapped` and clients page with cursors.
pub const TOTAL_CAP: i64 = 10_000;

#[derive(Clone, Debug, Default)]
pub struct FindingFilter {
    /// Any of these severities.
    pub severities: Vec<String>,
    pub status: Option<String>,
    pub asset_id: Option<String>,
    pub scan_job_id: Option<String>,
    pub template_id: Option<String>,
    /// Last detected at or after / at or before (epoch microseconds).
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Case-insensitive substring of title, templateId or matchedAt.
    pub q: Option<String>,
    pub sort: FindingSort,
}

/// Findings counted under filters.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FindingCounts {
    pub total: i64,
    /// critical, high, medium, low, info: each present.
    pub by_severity: BTreeMap<String, i64>,
    /// open, acknowledged, resolved, ignored: each present.
    pub by_status: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FindingView {
    pub id: String,
    pub asset_id: String,
    pub template_id: String,
    pub title: String,
    pub severity: String,
    pub category: String,
    pub description: String,
    pub evidence: String,
    pub remediation: String,
    pub references: Vec<String>,
    pub cve: Option<String>,
    pub cwe: Option<String>,
    pub cvss_score: Option<f64>,
    pub matched_at: String,
    pub matcher_name: String,
    /// `easm`, `nuclei` or `discovery`.
    pub source: String,
    /// open, acknowledged, resolved or ignored.
    pub status: String,
    pub assignee: Option<String>,
    pub notes: Option<String>,
    pub scan_job_ids: Vec<String>,
    /// The discovery jobs that detected it (`dns.zone-transfer`, `dns.dangling-cname`).
    pub discovery_job_ids: Vec<String>,
    pub detection_count: i64,
    pub first_detected: String,
    pub last_detected: String,
    pub updated_at: String,
}

const FINDING_COLUMNS: &str =
    "f.finding_id, f.org_id, f.asset_id, f.template_id, f.title, f.severity, \
     f.category, f.description, f.evidence, f.remediation, f.refs, f.cve, f.cwe, f.cvss_score, \
     f.matched_at, f.matcher_name, f.source, f.status, f.assignee, f.notes, f.scan_job_ids, \
     f.detection_count, f.first_detected, f.last_detected, f.updated_at, f.discovery_job_ids, \
     f.severity_rank";

fn finding(r: &AnyRow) -> Result<FindingView, StoreError> {
    let row = Findings::parse(r)?;
    let d = row.detection;
    Ok(FindingView {
        id: r.try_get("finding_id")?,
        asset_id: row.asset_id.into_string(),
        template_id: d.template_id,
        title: d.title,
        severity: d.severity,
        category: d.category,
        description: d.description,
        evidence: d.evidence,
        remediation: d.remediation,
        references: d.references,
        cve: d.cve,
        cwe: d.cwe,
        cvss_score: d.cvss_score,
        matched_at: d.matched_at,
        matcher_name: d.matcher_name,
        source: d.source,
        status: row.status.as_str().into(),
        assignee: row.assignee,
        notes: row.notes,
        scan_job_ids: row.scan_job_ids.into_iter().map(String::from).collect(),
        discovery_job_ids: row
            .discovery_job_ids
            .into_iter()
            .map(String::from)
            .collect(),
        detection_count: row.detection_count,
        first_detected: iso(row.first_detected),
        last_detected: iso(row.last_detected),
        updated_at: iso(row.updated_at),
    })
}

/// The conditions of `f`.
fn finding_filter(org_id: &OrgId, f: &FindingFilter) -> Filter {
    let mut w = Filter::by("f.org_id", org_id.as_str());
    w.push(DETECTED);
    w.any("f.severity", &f.severities);
    w.eq("f.status", f.status.as_deref());
    w.eq("f.asset_id", f.asset_id.as_deref());
    w.eq("f.template_id", f.template_id.as_deref());
    if let Some(job) = &f.scan_job_id {
        let p = w.bind(job.as_str());
        w.push(format!(
            "EXISTS (SELECT 1 FROM {JOBS} j WHERE j.finding_id = f.finding_id \
             AND j.scan_job_id = {p})"
        ));
    }
    if let Some(q) = &f.q {
        let p = w.bind(like_pattern(q));
        w.push(format!(
            "(LOWER(f.title) LIKE {p} ESCAPE '\\' OR LOWER(f.template_id) LIKE {p} ESCAPE '\\' \
             OR LOWER(f.matched_at) LIKE {p} ESCAPE '\\')"
        ));
    }
    w.compare("f.last_detected", ">=", f.since);
    w.compare("f.last_detected", "<=", f.until);
    w
}

impl ReadModels {
    /// A page of the findings `f` selects: numbered (`p`), or the one after `after`.
    pub async fn findings(
        &self,
        org_id: &OrgId,
        f: &FindingFilter,
        p: PageRequest,
        after: Option<&FindingCursor>,
    ) -> Result<Page<FindingView>, StoreError> {
        let (total, capped) = self.findings_total(org_id, f).await?;
        let offset = if after.is_some() { 0 } else { p.offset() };
        let (items, next) = self
            .finding_run(org_id, f, after, offset, p.per_page)
            .await?;
        let mut page = p.wrap(items, total);
        page.page = after.is_none().then_some(p.page);
        page.next_cursor = next.map(|c| c.encode());
        page.total_capped = capped;
        Ok(page)
    }

    /// Up to `limit` findings `f` selects in its order, from `offset` or after `after`; with the
    /// cursor after the last of them when more follow.
    pub async fn finding_run(
        &self,
        org_id: &OrgId,
        f: &FindingFilter,
        after: Option<&FindingCursor>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<FindingView>, Option<FindingCursor>), StoreError> {
        let mut w = finding_filter(org_id, f);
        if let Some(cursor) = after {
            cursor.condition(&mut w);
        }
        let n = w.next();
        let sql = format!(
            "SELECT {FINDING_COLUMNS} FROM rm_findings f WHERE {} ORDER BY {} \
             LIMIT ${n} OFFSET ${}",
            w.sql(),
            f.sort.order(),
            n + 1
        );
        let mut q = sqlx::query(&sql);
        for b in w.binds() {
            q = q.bind(b);
        }
        // One row more than asked tells whether another follows.
        let rows = q
            .bind(limit + 1)
            .bind(offset)
            .fetch_all(self.db.reader())
            .await?;
        let shown = rows.len().min(limit as usize);
        let next = match rows.len() > shown {
            true => Some(FindingCursor::after(f.sort, &rows[shown - 1])?),
            false => None,
        };
        let items = rows[..shown]
            .iter()
            .map(finding)
            .collect::<Result<_, _>>()?;
        Ok((items, next))
    }

    /// How many findings `f` selects, from the kept totals where they answer it, otherwise
    /// counted up to [`TOTAL_CAP`] (true when the count stopped there).
    async fn findings_total(
        &self,
        org_id: &OrgId,
        f: &FindingFilter,
    ) -> Result<(i64, bool), StoreError> {
        if let Some(kept) = self.kept_finding_counts(org_id, f).await? {
            return Ok((kept.total, false));
        }
        let w = finding_filter(org_id, f);
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM rm_findings f WHERE {} LIMIT {}) AS selected",
            w.sql(),
            TOTAL_CAP + 1
        );
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for b in w.binds() {
            q = q.bind(b);
        }
        let n = q.fetch_one(self.db.reader()).await?;
        Ok((n.min(TOTAL_CAP), n > TOTAL_CAP))
    }

    pub async fn finding(
        &self,
        org_id: &OrgId,
        id: &FindingId,
    ) -> Result<Option<FindingView>, StoreError> {
        let found = self
            .org_row(
                FINDING_COLUMNS,
                "rm_findings f",
                "f",
                "finding_id",
                org_id,
                id,
                finding,
            )
            .await?;
        Ok(found.filter(|f| !f.scan_job_ids.is_empty() || !f.discovery_job_ids.is_empty()))
    }

    /// How many findings the filters select, in all, per severity and per status (every
    /// severity and status present, zero where none).
    pub async fn finding_counts(
        &self,
        org_id: &OrgId,
        f: &FindingFilter,
    ) -> Result<FindingCounts, StoreError> {
        if let Some(kept) = self.kept_finding_counts(org_id, f).await? {
            return Ok(kept);
        }
        let w = finding_filter(org_id, f);
        let sql = format!(
            "SELECT f.severity, f.status, COUNT(*) FROM rm_findings f WHERE {} \
             GROUP BY f.severity, f.status",
            w.sql()
        );
        let mut q = sqlx::query_as::<_, (String, String, i64)>(&sql);
        for b in w.binds() {
            q = q.bind(b);
        }
        // The query applied the filters: the rows are summed as they are.
        let rows = q.fetch_all(self.db.reader()).await?;
        Ok(counts_of(rows, &FindingFilter::default()))
    }

    /// Open or acknowledged findings of an asset: those a completed scan may auto-resolve.
    pub async fn unresolved_findings(
        &self,
        org_id: &OrgId,
        asset_id: &AssetId,
    ) -> Result<Vec<FindingId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT finding_id FROM rm_findings f WHERE org_id = $1 AND asset_id = $2 \
                 AND status IN ('open', 'acknowledged') AND {DETECTED} ORDER BY finding_id"
        ))
        .bind(org_id.as_str())
        .bind(asset_id.as_str())
        .fetch_all(self.db.reader())
        .await?;
        Ok(ids.into_iter().map(FindingId::new).collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::state::given;
    use easm_events::{FindingRedetected, FindingResolved, ScanDeleted};

    /// A high finding `f1` of asset `a1` (template `tls.expired-cert`) detected by `job`.
    pub(crate) fn new_finding(job: &str) -> Event {
        Event::FindingNew(easm_events::FindingNew {
            finding_id: "f1".into(),
            asset_id: "a1".into(),
            scan_job_id: Some(job.into()),
            discovery_job_id: None,
            profile: None,
            detection: Box::new(Detection {
                template_id: "tls.expired-cert".into(),
                severity: "high".into(),
                ..Detection::default()
            }),
        })
    }

    fn redetected(job: &str) -> Event {
        Event::FindingRedetected(FindingRedetected {
            finding_id: "f1".into(),
            scan_job_id: Some(job.into()),
            discovery_job_id: None,
            evidence: "again".into(),
            profile: None,
        })
    }

    #[test]
    fn cursors_read_back_what_they_wrote_and_nothing_else() {
        let c = FindingCursor {
            sort: FindingSort::Severity,
            keys: vec![4, 1_700_000_000_000_000],
            id: "f:1".into(),
        };
        assert_eq!(FindingCursor::parse(&c.encode()), Some(c.clone()));
        let hex = |t: &str| t.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        for bad in [
            "",
            "zz",
            "abc",
            &hex("severity:4:f1"),
            &hex("lastDetected:x:f1"),
        ] {
            assert_eq!(FindingCursor::parse(bad), None, "{bad}");
        }
        assert_eq!(
            FindingCursor::parse(&hex("lastDetected:5:f1")).map(|c| c.sort()),
            Some(FindingSort::LastDetected)
        );
    }

    #[test]
    fn severities_rank_worst_highest() {
        let ranks: Vec<i64> = ["critical", "high", "medium", "low", "info", "unknown"]
            .iter()
            .map(|s| severity_rank(s))
            .collect();
        assert_eq!(ranks, vec![4, 3, 2, 1, 0, 0]);
    }

    #[test]
    fn a_detection_again_counts_and_remembers_its_job() {
        let state = given::events([new_finding("j1"), redetected("j2"), redetected("j2")]);
        let row = state.findings["f1"].clone().expect("live");
        assert_eq!(row.detection_count, 3);
        assert_eq!(row.scan_job_ids, vec!["j1", "j2"]);
        assert_eq!((row.first_detected, row.last_detected), (0, 2));
        assert_eq!(row.detection.evidence, "again");
        let jobs = job_rows(&state.findings);
        assert_eq!(jobs.len(), 6, "a row (finding, job, organization) per job");
        assert_eq!(jobs[4], Val::Text("j2".into()));
    }

    #[test]
    fn deleting_its_only_job_hides_a_finding_but_keeps_its_history() {
        let state = given::events([
            new_finding("j1"),
            Event::FindingResolved(FindingResolved {
                finding_id: "f1".into(),
                from: FindingStatus::Open,
                notes: Some("fixed".into()),
                scan_job_id: None,
                discovery_job_id: None,
            }),
            Event::ScanDeleted(ScanDeleted {
                scan_job_id: "j1".into(),
            }),
        ]);
        let row = state.findings["f1"].clone().expect("the row stays");
        assert!(row.scan_job_ids.is_empty());
        assert_eq!(
            (row.status, row.notes.as_deref()),
            (FindingStatus::Resolved, Some("fixed"))
        );
    }
}
