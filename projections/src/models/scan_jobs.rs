//! Scan jobs: status, progress, attempts, the error of a failure, findings per severity once
//! completed.

use crate::read::{iso, Page, PageRequest, ReadModels};
use crate::state::{create, live, Origin, RowMap};
use crate::table::{id, opt_id, to_json, ReadModel, Table};
use easm_domain::JobStatus;
use easm_events::{AssetId, Event, OrgId, ScanJobId, SeverityCounts};
use easm_store::{AnyRow, Filter, Row, StoreError, Val};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq)]
pub struct ScanJobRow {
    pub org_id: OrgId,
    pub asset_id: AssetId,
    pub profile: String,
    pub ports: Option<Vec<u16>>,
    pub status: JobStatus,
    pub progress: i64,
    pub stage: Option<String>,
    pub attempts: i64,
    pub error: Option<String>,
    pub counts: Option<SeverityCounts>,
    pub rerun_of: Option<ScanJobId>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
}

pub(crate) struct ScanJobs;

impl ReadModel for ScanJobs {
    type Row = ScanJobRow;
    const TABLE: Table = Table {
        name: "rm_scan_jobs",
        pk: "scan_job_id",
        columns: &[
            "org_id",
            "asset_id",
            "profile",
            "ports",
            "status",
            "progress",
            "stage",
            "attempts",
            "error",
            "counts",
            "rerun_of",
            "created_at",
            "started_at",
            "finished_at",
            "updated_at",
        ],
    };

    fn key(event: &Event) -> Option<&str> {
        match event {
            Event::ScanRequested(s) => Some(s.scan_job_id.as_str()),
            Event::ScanStarted(s) => Some(s.scan_job_id.as_str()),
            Event::ScanProgressed(s) => Some(s.scan_job_id.as_str()),
            Event::ScanCompleted(s) => Some(s.scan_job_id.as_str()),
            Event::ScanFailed(s) => Some(s.scan_job_id.as_str()),
            Event::ScanCancelled(s) => Some(s.scan_job_id.as_str()),
            Event::ScanDeleted(s) => Some(s.scan_job_id.as_str()),
            _ => None,
        }
    }

    fn fold(rows: &mut RowMap<ScanJobRow>, origin: Origin<'_>, event: &Event) {
        let at = origin.at;
        if let Event::ScanRequested(s) = event {
            return create(rows, &s.scan_job_id, || ScanJobRow {
                org_id: origin.org_id.clone(),
                asset_id: s.asset_id.clone(),
                profile: s.profile.clone(),
                ports: s.ports.clone(),
                status: JobStatus::Queued,
                progress: 0,
                stage: None,
                attempts: 0,
                error: None,
                counts: None,
                rerun_of: s.rerun_of.clone(),
                created_at: at,
                started_at: None,
                finished_at: None,
                updated_at: at,
            });
        }
        if let Event::ScanDeleted(s) = event {
            rows.insert(s.scan_job_id.to_string(), None);
            return;
        }
        let Some(row) = Self::key(event).and_then(|id| live(rows, id)) else {
            return;
        };
        match event {
            Event::ScanStarted(s) => {
                row.status = JobStatus::Running;
                row.attempts = i64::from(s.attempt);
                row.started_at.get_or_insert(at);
            }
            Event::ScanProgressed(s) => {
                row.progress = i64::from(s.progress);
                row.stage = Some(s.stage.clone());
            }
            Event::ScanCompleted(s) => {
                row.status = JobStatus::Completed;
                row.progress = 100;
                row.counts = Some(s.counts.clone());
                row.finished_at = Some(at);
            }
            Event::ScanFailed(s) => {
                row.status = JobStatus::Failed;
                row.error = Some(s.reason.clone());
                row.finished_at = Some(at);
            }
            Event::ScanCancelled(_) => {
                row.status = JobStatus::Cancelled;
                row.finished_at = Some(at);
            }
            _ => return,
        }
        row.updated_at = at;
    }

    fn vals(row: &ScanJobRow) -> Vec<Val> {
        vec![
            Val::Text(row.org_id.to_string()),
            Val::Text(row.asset_id.to_string()),
            Val::Text(row.profile.clone()),
            Val::OptText(row.ports.as_ref().map(to_json)),
            Val::Text(row.status.as_str().into()),
            Val::Int(row.progress),
            Val::OptText(row.stage.clone()),
            Val::Int(row.attempts),
            Val::OptText(row.error.clone()),
            Val::OptText(row.counts.as_ref().map(to_json)),
            Val::OptText(row.rerun_of.as_ref().map(ToString::to_string)),
            Val::Int(row.created_at),
            Val::OptInt(row.started_at),
            Val::OptInt(row.finished_at),
            Val::Int(row.updated_at),
        ]
    }

    fn parse(r: &AnyRow) -> Result<ScanJobRow, StoreError> {
        Ok(ScanJobRow {
            org_id: id(r, "org_id")?,
            asset_id: id(r, "asset_id")?,
            profile: r.try_get("profile")?,
            ports: Self::TABLE.opt_json(r, "ports")?,
            status: Self::TABLE.named(r, "status", JobStatus::parse)?,
            progress: r.try_get("progress")?,
            stage: r.try_get("stage")?,
            attempts: r.try_get("attempts")?,
            error: r.try_get("error")?,
            counts: Self::TABLE.opt_json(r, "counts")?,
            rerun_of: opt_id(r, "rerun_of")?,
            created_at: r.try_get("created_at")?,
            started_at: r.try_get("started_at")?,
            finished_at: r.try_get("finished_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

#[derive(Debug, Default)]
pub struct ScanJobFilter {
    pub status: Option<String>,
    pub asset_id: Option<String>,
    pub profile: Option<String>,
}

/// A scan job as the API shows it. `asset_id` is the reference API's spelling; `assetId` is the
/// same value in this API's own.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScanJobView {
    pub id: String,
    /// queued, running, completed, failed or cancelled.
    pub status: String,
    #[serde(rename = "asset_id")]
    pub asset_id_ref: String,
    pub asset_id: String,
    pub profile: String,
    /// Explicit ports, when given at creation.
    pub ports: Option<Vec<u16>>,
    /// 0 to 100.
    pub progress: i64,
    pub stage: Option<String>,
    /// Workers that took the job.
    pub attempts: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// Findings per severity, once completed.
    #[schema(value_type = Option<Object>)]
    pub counts: Option<SeverityCounts>,
    pub rerun_of: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub updated_at: String,
}

const SCAN_JOB_COLUMNS: &str =
    "s.scan_job_id, s.org_id, s.asset_id, s.profile, s.ports, s.status, \
     s.progress, s.stage, s.attempts, s.error, s.counts, s.rerun_of, s.created_at, s.started_at, \
     s.finished_at, s.updated_at";

fn scan_job(r: &AnyRow) -> Result<ScanJobView, StoreError> {
    let row = ScanJobs::parse(r)?;
    Ok(ScanJobView {
        id: r.try_get("scan_job_id")?,
        status: row.status.as_str().into(),
        asset_id_ref: row.asset_id.to_string(),
        asset_id: row.asset_id.into_string(),
        profile: row.profile,
        ports: row.ports,
        progress: row.progress,
        stage: row.stage,
        attempts: row.attempts,
        error: row.error,
        counts: row.counts,
        rerun_of: row.rerun_of.map(String::from),
        created_at: iso(row.created_at),
        started_at: row.started_at.map(iso),
        finished_at: row.finished_at.map(iso),
        updated_at: iso(row.updated_at),
    })
}

impl ReadModels {
    pub async fn scan_jobs(
        &self,
        org_id: &OrgId,
        f: &ScanJobFilter,
        p: PageRequest,
    ) -> Result<Page<ScanJobView>, StoreError> {
        let mut w = Filter::by("s.org_id", org_id.as_str());
        w.eq("s.status", f.status.as_deref());
        w.eq("s.asset_id", f.asset_id.as_deref());
        w.eq("s.profile", f.profile.as_deref());
        self.filtered_page(
            SCAN_JOB_COLUMNS,
            "rm_scan_jobs s",
            "s.created_at DESC, s.scan_job_id DESC",
            &w,
            p,
            scan_job,
        )
        .await
    }

    /// Jobs for the workers: queued or running, requested at or before `before` (micros),
    /// oldest first, as (organization, job).
    pub async fn active_scan_jobs(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(OrgId, ScanJobId)>, StoreError> {
        let rows = sqlx::query(
            "SELECT org_id, scan_job_id FROM rm_scan_jobs WHERE status IN ('queued', 'running') \
             AND created_at <= $1 ORDER BY created_at LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|r| Ok((id(r, "org_id")?, id(r, "scan_job_id")?)))
            .collect()
    }

    /// Every scan job of an asset, newest first.
    pub async fn asset_scan_jobs(
        &self,
        org_id: &OrgId,
        asset_id: &AssetId,
    ) -> Result<Vec<ScanJobView>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SCAN_JOB_COLUMNS} FROM rm_scan_jobs s WHERE s.org_id = $1 AND s.asset_id = $2 \
             ORDER BY s.created_at DESC, s.scan_job_id DESC"
        ))
        .bind(org_id.as_str())
        .bind(asset_id.as_str())
        .fetch_all(self.db.reader())
        .await?;
        rows.iter().map(scan_job).collect()
    }

    pub async fn scan_job(
        &self,
        org_id: &OrgId,
        id: &ScanJobId,
    ) -> Result<Option<ScanJobView>, StoreError> {
        self.org_row(
            SCAN_JOB_COLUMNS,
            "rm_scan_jobs s",
            "s",
            "scan_job_id",
            org_id,
            id,
            scan_job,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::given;
    use easm_events::{ScanCompleted, ScanProgressed, ScanRequested, ScanStarted};

    fn requested() -> Event {
        Event::ScanRequested(ScanRequested {
            scan_job_id: "j1".into(),
            asset_id: "a1".into(),
            profile: "quick".into(),
            ports: Some(vec![443]),
            rerun_of: None,
        })
    }

    fn started(attempt: u32) -> Event {
        Event::ScanStarted(ScanStarted {
            scan_job_id: "j1".into(),
            worker_id: format!("w{attempt}"),
            attempt,
        })
    }

    #[test]
    fn a_job_runs_through_its_lifecycle_keeping_its_first_start() {
        let mut counts = SeverityCounts::default();
        counts.add("high", 2);
        let state = given::events([
            requested(),
            started(1),
            Event::ScanProgressed(ScanProgressed {
                scan_job_id: "j1".into(),
                progress: 40,
                stage: "ports".into(),
            }),
            started(2),
            Event::ScanCompleted(ScanCompleted {
                scan_job_id: "j1".into(),
                asset_id: "a1".into(),
                profile: "quick".into(),
                counts: counts.clone(),
                observed: Default::default(),
            }),
        ]);
        let row = state.scan_jobs["j1"].clone().unwrap();
        assert_eq!(
            (row.status, row.progress, row.attempts),
            (JobStatus::Completed, 100, 2)
        );
        assert_eq!((row.started_at, row.finished_at), (Some(1), Some(4)));
        assert_eq!(row.stage.as_deref(), Some("ports"));
        assert_eq!(row.counts, Some(counts));
        assert_eq!(row.ports, Some(vec![443]));
    }
}
