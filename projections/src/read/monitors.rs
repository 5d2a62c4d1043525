//! Queries over monitors and alerts.

use super::{iso, Page, PageRequest, ReadModels};
use crate::state::{AlertRow, MonitorRow};
use easm_store::{AnyRow, Row, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MonitorView {
    pub id: String,
    /// `asset` or `group`.
    pub scope: String,
    pub asset_id: Option<String>,
    pub group_id: Option<String>,
    pub frequency_hours: i64,
    pub profile: String,
    /// Explicit ports of its scans, when given at creation.
    pub ports: Option<Vec<u16>>,
    pub enabled: bool,
    pub last_run_at: Option<String>,
    /// When the schedule runs it next; null while disabled.
    pub next_run_at: Option<String>,
    pub run_count: i64,
    /// The scan jobs of the last run.
    pub last_scan_job_ids: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

const MONITOR_COLUMNS: &str = "m.monitor_id, m.org_id, m.asset_id, m.group_id, \
     m.frequency_hours, m.profile, m.ports, m.enabled, m.last_run_at, m.next_run_at, m.run_count, \
     m.last_scan_job_ids, m.created_at, m.updated_at";

fn monitor(r: &AnyRow) -> Result<MonitorView, StoreError> {
    let row = MonitorRow::parse(r)?;
    Ok(MonitorView {
        id: r.try_get("monitor_id")?,
        scope: if row.asset_id.is_some() {
            "asset"
        } else {
            "group"
        }
        .into(),
        asset_id: row.asset_id,
        group_id: row.group_id,
        frequency_hours: row.frequency_hours,
        profile: row.profile,
        ports: row.ports,
        enabled: row.enabled,
        last_run_at: row.last_run_at.map(iso),
        next_run_at: row.next_run_at.map(iso),
        run_count: row.run_count,
        last_scan_job_ids: row.last_scan_job_ids,
        created_at: iso(row.created_at),
        updated_at: iso(row.updated_at),
    })
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    pub id: String,
    pub monitor_id: String,
    pub asset_id: String,
    /// The scan that saw the change.
    pub scan_job_id: String,
    /// `new_port`, `port_closed`, `service_changed`, `certificate_changed` or `dns_changed`.
    #[serde(rename = "type")]
    pub alert_type: String,
    pub severity: String,
    pub title: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// open, acknowledged or resolved.
    pub status: String,
    pub notes: Option<String>,
    pub acknowledged_at: Option<String>,
    /// The actor (API key id, `cli`, ...) that acknowledged it.
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const ALERT_COLUMNS: &str = "l.alert_id, l.org_id, l.monitor_id, l.asset_id, l.scan_job_id, \
     l.alert_type, l.severity, l.title, l.details, l.status, l.notes, l.acknowledged_at, \
     l.acknowledged_by, l.resolved_at, l.resolved_by, l.created_at, l.updated_at";

fn alert(r: &AnyRow) -> Result<AlertView, StoreError> {
    let row = AlertRow::parse(r)?;
    Ok(AlertView {
        id: r.try_get("alert_id")?,
        monitor_id: row.monitor_id,
        asset_id: row.asset_id,
        scan_job_id: row.scan_job_id,
        alert_type: row.alert_type,
        severity: row.severity,
        title: row.title,
        details: row.details,
        status: row.status,
        notes: row.notes,
        acknowledged_at: row.acknowledged_at.map(iso),
        acknowledged_by: row.acknowledged_by,
        resolved_at: row.resolved_at.map(iso),
        resolved_by: row.resolved_by,
        created_at: iso(row.created_at),
        updated_at: iso(row.updated_at),
    })
}

#[derive(Clone, Debug, Default)]
pub struct AlertFilter {
    pub status: Option<String>,
    pub severity: Option<String>,
    pub monitor_id: Option<String>,
    pub asset_id: Option<String>,
    pub alert_type: Option<String>,
}

/// A monitor whose next run is due: (organization, plan, monitor).
pub struct DueMonitor {
    pub org_id: String,
    pub plan: String,
    pub monitor_id: String,
}

impl ReadModels {
    pub async fn monitors(
        &self,
        org_id: &str,
        p: PageRequest,
    ) -> Result<Page<MonitorView>, StoreError> {
        self.org_page(
            MONITOR_COLUMNS,
            "rm_monitors m",
            "m",
            "m.created_at, m.monitor_id",
            org_id,
            p,
            monitor,
        )
        .await
    }

    pub async fn monitor(&self, org_id: &str, id: &str) -> Result<Option<MonitorView>, StoreError> {
        self.org_row(
            MONITOR_COLUMNS,
            "rm_monitors m",
            "m",
            "monitor_id",
            org_id,
            id,
            monitor,
        )
        .await
    }

    /// Enabled monitors of the asset or of its group, the asset's own first.
    pub async fn monitors_watching(
        &self,
        org_id: &str,
        asset_id: &str,
        group_id: &str,
    ) -> Result<Vec<MonitorView>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {MONITOR_COLUMNS} FROM rm_monitors m WHERE m.org_id = $1 AND m.enabled = 1 \
             AND (m.asset_id = $2 OR m.group_id = $3) \
             ORDER BY CASE WHEN m.asset_id IS NULL THEN 1 ELSE 0 END, m.created_at, m.monitor_id"
        ))
        .bind(org_id)
        .bind(asset_id)
        .bind(group_id)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter().map(monitor).collect()
    }

    /// Monitors whose next run is at or before `now` (micros), most overdue first.
    pub async fn due_monitors(&self, now: i64, limit: i64) -> Result<Vec<DueMonitor>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.org_id, o.plan, m.monitor_id FROM rm_monitors m \
             JOIN rm_orgs o ON o.org_id = m.org_id \
             WHERE m.next_run_at <= $1 ORDER BY m.next_run_at, m.monitor_id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueMonitor {
                    org_id: r.try_get("org_id")?,
                    plan: r.try_get("plan")?,
                    monitor_id: r.try_get("monitor_id")?,
                })
            })
            .collect()
    }

    pub async fn alerts(
        &self,
        org_id: &str,
        f: &AlertFilter,
        p: PageRequest,
    ) -> Result<Page<AlertView>, StoreError> {
        let mut clauses = vec!["l.org_id = $1".to_string()];
        let mut binds = vec![org_id.to_string()];
        for (column, value) in [
            ("status", &f.status),
            ("severity", &f.severity),
            ("monitor_id", &f.monitor_id),
            ("asset_id", &f.asset_id),
            ("alert_type", &f.alert_type),
        ] {
            if let Some(v) = value {
                binds.push(v.clone());
                clauses.push(format!("l.{column} = ${}", binds.len()));
            }
        }
        self.filtered_page(
            ALERT_COLUMNS,
            "rm_alerts l",
            "l.created_at DESC, l.alert_id DESC",
            (&clauses, &binds),
            p,
            alert,
        )
        .await
    }

    pub async fn alert(&self, org_id: &str, id: &str) -> Result<Option<AlertView>, StoreError> {
        self.org_row(
            ALERT_COLUMNS,
            "rm_alerts l",
            "l",
            "alert_id",
            org_id,
            id,
            alert,
        )
        .await
    }
}
