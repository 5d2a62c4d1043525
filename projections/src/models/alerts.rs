//! Alerts raised by monitors: type, severity, details, and who acknowledged and resolved them.

use crate::read::{iso, Page, PageRequest, ReadModels};
use crate::state::{create, live, Origin, RowMap};
use crate::table::{id, opt_id, ReadModel, Table};
use easm_domain::AlertStatus;
use easm_events::{AlertId, AssetId, DiscoveryJobId, Event, MonitorId, OrgId, ScanJobId};
use easm_store::{AnyRow, Filter, Row, StoreError, Val};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq)]
pub struct AlertRow {
    pub org_id: OrgId,
    pub monitor_id: MonitorId,
    pub asset_id: AssetId,
    pub scan_job_id: Option<ScanJobId>,
    pub discovery_job_id: Option<DiscoveryJobId>,
    pub alert_type: String,
    pub severity: String,
    pub title: String,
    pub details: serde_json::Value,
    pub status: AlertStatus,
    pub notes: Option<String>,
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<i64>,
    pub resolved_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub(crate) struct Alerts;

impl ReadModel for Alerts {
    type Row = AlertRow;
    const TABLE: Table = Table {
        name: "rm_alerts",
        pk: "alert_id",
        columns: &[
            "org_id",
            "monitor_id",
            "asset_id",
            "scan_job_id",
            "alert_type",
            "severity",
            "title",
            "details",
            "status",
            "notes",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "resolved_by",
            "created_at",
            "updated_at",
            "discovery_job_id",
        ],
    };

    fn key(event: &Event) -> Option<&str> {
        match event {
            Event::AlertCreated(a) => Some(a.alert_id.as_str()),
            Event::AlertAcknowledged(a) => Some(a.alert_id.as_str()),
            Event::AlertResolved(a) => Some(a.alert_id.as_str()),
            _ => None,
        }
    }

    fn fold(rows: &mut RowMap<AlertRow>, origin: Origin<'_>, event: &Event) {
        let at = origin.at;
        let by = || Some(origin.actor_id.to_string());
        match event {
            Event::AlertCreated(a) => create(rows, &a.alert_id, || AlertRow {
                org_id: origin.org_id.clone(),
                monitor_id: a.monitor_id.clone(),
                asset_id: a.asset_id.clone(),
                scan_job_id: a.scan_job_id.clone(),
                discovery_job_id: a.discovery_job_id.clone(),
                alert_type: a.alert_type.clone(),
                severity: a.severity.clone(),
                title: a.title.clone(),
                details: a.details.clone(),
                status: AlertStatus::Open,
                notes: None,
                acknowledged_at: None,
                acknowledged_by: None,
                resolved_at: None,
                resolved_by: None,
                created_at: at,
                updated_at: at,
            }),
            Event::AlertAcknowledged(a) => {
                if let Some(row) = live(rows, &a.alert_id) {
                    row.status = AlertStatus::Acknowledged;
                    row.acknowledged_at = Some(at);
                    row.acknowledged_by = by();
                    if a.notes.is_some() {
                        row.notes = a.notes.clone();
                    }
                    row.updated_at = at;
                }
            }
            Event::AlertResolved(a) => {
                if let Some(row) = live(rows, &a.alert_id) {
                    row.status = AlertStatus::Resolved;
                    row.resolved_at = Some(at);
                    row.resolved_by = by();
                    if a.notes.is_some() {
                        row.notes = a.notes.clone();
                    }
                    row.updated_at = at;
                }
            }
            _ => {}
        }
    }

    fn vals(row: &AlertRow) -> Vec<Val> {
        vec![
            Val::Text(row.org_id.to_string()),
            Val::Text(row.monitor_id.to_string()),
            Val::Text(row.asset_id.to_string()),
            Val::OptText(row.scan_job_id.as_ref().map(ToString::to_string)),
            Val::Text(row.alert_type.clone()),
            Val::Text(row.severity.clone()),
            Val::Text(row.title.clone()),
            Val::Text(row.details.to_string()),
            Val::Text(row.status.as_str().into()),
            Val::OptText(row.notes.clone()),
            Val::OptInt(row.acknowledged_at),
            Val::OptText(row.acknowledged_by.clone()),
            Val::OptInt(row.resolved_at),
            Val::OptText(row.resolved_by.clone()),
            Val::Int(row.created_at),
            Val::Int(row.updated_at),
            Val::OptText(row.discovery_job_id.as_ref().map(ToString::to_string)),
        ]
    }

    fn parse(r: &AnyRow) -> Result<AlertRow, StoreError> {
        Ok(AlertRow {
            org_id: id(r, "org_id")?,
            monitor_id: id(r, "monitor_id")?,
            asset_id: id(r, "asset_id")?,
            scan_job_id: opt_id(r, "scan_job_id")?,
            discovery_job_id: opt_id(r, "discovery_job_id")?,
            alert_type: r.try_get("alert_type")?,
            severity: r.try_get("severity")?,
            title: r.try_get("title")?,
            details: Self::TABLE.json(r, "details")?,
            status: Self::TABLE.named(r, "status", AlertStatus::parse)?,
            notes: r.try_get("notes")?,
            acknowledged_at: r.try_get("acknowledged_at")?,
            acknowledged_by: r.try_get("acknowledged_by")?,
            resolved_at: r.try_get("resolved_at")?,
            resolved_by: r.try_get("resolved_by")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    pub id: String,
    pub monitor_id: String,
    pub asset_id: String,
    /// The scan that saw the change (absent for `new_subdomain`).
    pub scan_job_id: Option<String>,
    /// The discovery job that found the name of a `new_subdomain` alert.
    pub discovery_job_id: Option<String>,
    /// `new_port`, `port_closed`, `service_changed`, `certificate_changed`, `dns_changed` or
    /// `new_subdomain`.
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
     l.acknowledged_by, l.resolved_at, l.resolved_by, l.created_at, l.updated_at, \
     l.discovery_job_id";

fn alert(r: &AnyRow) -> Result<AlertView, StoreError> {
    let row = Alerts::parse(r)?;
    Ok(AlertView {
        id: r.try_get("alert_id")?,
        monitor_id: row.monitor_id.into_string(),
        asset_id: row.asset_id.into_string(),
        scan_job_id: row.scan_job_id.map(String::from),
        discovery_job_id: row.discovery_job_id.map(String::from),
        alert_type: row.alert_type,
        severity: row.severity,
        title: row.title,
        details: row.details,
        status: row.status.as_str().into(),
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

impl ReadModels {
    pub async fn alerts(
        &self,
        org_id: &OrgId,
        f: &AlertFilter,
        p: PageRequest,
    ) -> Result<Page<AlertView>, StoreError> {
        let mut w = Filter::by("l.org_id", org_id.as_str());
        w.eq("l.status", f.status.as_deref());
        w.eq("l.severity", f.severity.as_deref());
        w.eq("l.monitor_id", f.monitor_id.as_deref());
        w.eq("l.asset_id", f.asset_id.as_deref());
        w.eq("l.alert_type", f.alert_type.as_deref());
        self.filtered_page(
            ALERT_COLUMNS,
            "rm_alerts l",
            "l.created_at DESC, l.alert_id DESC",
            &w,
            p,
            alert,
        )
        .await
    }

    pub async fn alert(
        &self,
        org_id: &OrgId,
        id: &AlertId,
    ) -> Result<Option<AlertView>, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::given;
    use easm_events::{AlertAcknowledged, AlertCreated, AlertResolved};

    #[test]
    fn acknowledging_then_resolving_records_who_when_and_the_last_notes() {
        let state = given::events([
            Event::AlertCreated(AlertCreated {
                alert_id: "l1".into(),
                monitor_id: "m1".into(),
                asset_id: "a1".into(),
                scan_job_id: Some("j1".into()),
                discovery_job_id: None,
                alert_type: "new_port".into(),
                severity: "high".into(),
                title: "port 6379 opened".into(),
                details: serde_json::json!({"port": 6379}),
            }),
            Event::AlertAcknowledged(AlertAcknowledged {
                alert_id: "l1".into(),
                notes: Some("looking".into()),
            }),
            Event::AlertResolved(AlertResolved {
                alert_id: "l1".into(),
                from: "acknowledged".into(),
                notes: None,
            }),
        ]);
        let row = state.alerts["l1"].clone().unwrap();
        assert_eq!(row.status, AlertStatus::Resolved);
        assert_eq!(
            (row.acknowledged_at, row.acknowledged_by.as_deref()),
            (Some(1), Some("key-1"))
        );
        assert_eq!(
            (row.resolved_at, row.resolved_by.as_deref()),
            (Some(2), Some("key-1"))
        );
        assert_eq!(row.notes.as_deref(), Some("looking"));
        assert_eq!(row.details["port"], 6379);
    }
}
