//! The organization at a glance: counts across the read models (assets, findings, scan jobs,
//! discovery jobs, monitors, alerts), for `GET /api/dashboard` and the MCP tool
//! `get_dashboard_stats`.

use crate::models::findings::{FindingCounts, FindingFilter};
use crate::read::{iso, zeros, ReadModels};
use easm_domain::{JobStatus, ALERT_STATUSES};
use easm_events::{FindingStatus, OrgId};
use easm_store::StoreError;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// How far back the dashboard counts scan and discovery jobs.
pub const DASHBOARD_DAYS: i64 = 30;

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DashboardStats {
    pub assets: AssetCounts,
    /// Every finding shown by the API, per severity and per status.
    pub findings: FindingCounts,
    /// Unresolved (open or acknowledged) findings per severity: what needs work.
    pub unresolved_by_severity: BTreeMap<String, i64>,
    /// Scan jobs created in the last `days` days, per status.
    pub scan_jobs: RecentJobs,
    /// Discovery jobs created in the last `days` days, per status.
    pub discovery_jobs: RecentJobs,
    pub monitors: MonitorCounts,
    /// Alerts per status (open, acknowledged, resolved).
    pub alerts: BTreeMap<String, i64>,
    /// When the last scan job completed.
    pub last_scan_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AssetCounts {
    pub total: i64,
    /// Per type, every type present.
    pub by_type: BTreeMap<String, i64>,
    /// Per criticality, every level present.
    pub by_criticality: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecentJobs {
    pub days: i64,
    pub total: i64,
    pub by_status: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MonitorCounts {
    /// Monitors (scan schedules not included).
    pub total: i64,
    pub enabled: i64,
    pub scan_schedules: i64,
}

impl ReadModels {
    pub async fn dashboard(&self, org_id: &OrgId) -> Result<DashboardStats, StoreError> {
        let (by_type, by_criticality) = self.asset_breakdown("org_id", org_id.as_str()).await?;
        let findings = self
            .finding_counts(org_id, &FindingFilter::default())
            .await?;
        let mut unresolved_by_severity = zeros(easm_events::Severity::NAMES.iter().copied());
        for status in [FindingStatus::Open, FindingStatus::Acknowledged] {
            let f = FindingFilter {
                status: Some(status.as_str().into()),
                ..FindingFilter::default()
            };
            for (severity, n) in self.finding_counts(org_id, &f).await?.by_severity {
                *unresolved_by_severity.entry(severity).or_default() += n;
            }
        }
        let since = easm_store::now_micros() - DASHBOARD_DAYS * 86_400_000_000;
        let scan_jobs = self.recent_jobs("rm_scan_jobs", org_id, since).await?;
        let discovery_jobs = self.recent_jobs("rm_discovery_jobs", org_id, since).await?;
        let kinds = self
            .grouped(
                "SELECT kind, COUNT(*) FROM rm_monitors WHERE org_id = $1 GROUP BY kind",
                org_id.as_str(),
            )
            .await?;
        let enabled: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM rm_monitors WHERE org_id = $1 AND kind = 'monitor' AND enabled <> 0",
        )
        .bind(org_id.as_str())
        .fetch_one(self.db.reader())
        .await?;
        let mut alerts = zeros(ALERT_STATUSES);
        alerts.extend(
            self.grouped(
                "SELECT status, COUNT(*) FROM rm_alerts WHERE org_id = $1 GROUP BY status",
                org_id.as_str(),
            )
            .await?,
        );
        let last_scan_at: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(finished_at) FROM rm_scan_jobs WHERE org_id = $1 AND status = $2",
        )
        .bind(org_id.as_str())
        .bind(JobStatus::Completed.as_str())
        .fetch_one(self.db.reader())
        .await?;
        Ok(DashboardStats {
            assets: AssetCounts {
                total: by_type.values().sum(),
                by_type,
                by_criticality,
            },
            findings,
            unresolved_by_severity,
            scan_jobs,
            discovery_jobs,
            monitors: MonitorCounts {
                total: kinds.get("monitor").copied().unwrap_or(0),
                enabled,
                scan_schedules: kinds.get("schedule").copied().unwrap_or(0),
            },
            alerts,
            last_scan_at: last_scan_at.map(iso),
        })
    }

    /// Jobs of `table` created since `since`, per status (every stored status present).
    async fn recent_jobs(
        &self,
        table: &str,
        org_id: &OrgId,
        since: i64,
    ) -> Result<RecentJobs, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT status, COUNT(*) FROM {table} WHERE org_id = $1 AND created_at >= $2 \
             GROUP BY status"
        ))
        .bind(org_id.as_str())
        .bind(since)
        .fetch_all(self.db.reader())
        .await?;
        let mut by_status = zeros(JobStatus::STORED.iter().map(|s| s.as_str()));
        by_status.extend(rows);
        Ok(RecentJobs {
            days: DASHBOARD_DAYS,
            total: by_status.values().sum(),
            by_status,
        })
    }
}
