//! Monitors: what they watch, how often, when they run next (None while disabled), and the jobs
//! of their last run.

use crate::read::{iso, Page, PageRequest, ReadModels};
use crate::state::{create, live, Origin, RowMap};
use crate::table::{id, opt_id, to_json, ReadModel, Table};
use easm_domain::Plan;
use easm_events::{AssetId, Event, GroupId, MonitorId, MonitorKind, OrgId, ScanJobId};
use easm_store::{AnyRow, Filter, Row, StoreError, Val};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq)]
pub struct MonitorRow {
    pub org_id: OrgId,
    pub kind: MonitorKind,
    pub asset_id: Option<AssetId>,
    pub group_id: Option<GroupId>,
    pub frequency_hours: i64,
    pub profile: String,
    pub ports: Option<Vec<u16>>,
    pub enabled: bool,
    pub last_run_at: Option<i64>,
    pub next_run_at: Option<i64>,
    pub run_count: i64,
    pub last_scan_job_ids: Vec<ScanJobId>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl MonitorRow {
    /// At once if it never ran, else `frequency_hours` after the last run; None while disabled.
    fn schedule(&mut self) {
        self.next_run_at = self.enabled.then(|| {
            self.last_run_at.map_or(self.created_at, |t| {
                t + self.frequency_hours * 3_600_000_000
            })
        });
    }
}

pub(crate) struct Monitors;

impl ReadModel for Monitors {
    type Row = MonitorRow;
    const TABLE: Table = Table {
        name: "rm_monitors",
        pk: "monitor_id",
        columns: &[
            "org_id",
            "asset_id",
            "group_id",
            "frequency_hours",
            "profile",
            "ports",
            "enabled",
            "last_run_at",
            "next_run_at",
            "run_count",
            "last_scan_job_ids",
            "created_at",
            "updated_at",
            "kind",
        ],
    };

    fn key(event: &Event) -> Option<&str> {
        match event {
            Event::MonitorCreated(m) => Some(m.monitor_id.as_str()),
            Event::MonitorUpdated(m) => Some(m.monitor_id.as_str()),
            Event::MonitorDeleted(m) => Some(m.monitor_id.as_str()),
            Event::MonitorTriggered(m) => Some(m.monitor_id.as_str()),
            _ => None,
        }
    }

    fn fold(rows: &mut RowMap<MonitorRow>, origin: Origin<'_>, event: &Event) {
        let at = origin.at;
        match event {
            Event::MonitorCreated(m) => create(rows, &m.monitor_id, || {
                let mut row = MonitorRow {
                    org_id: origin.org_id.clone(),
                    kind: m.kind,
                    asset_id: m.asset_id.clone(),
                    group_id: m.group_id.clone(),
                    frequency_hours: i64::from(m.frequency_hours),
                    profile: m.profile.clone(),
                    ports: m.ports.clone(),
                    enabled: m.enabled,
                    last_run_at: None,
                    next_run_at: None,
                    run_count: 0,
                    last_scan_job_ids: vec![],
                    created_at: at,
                    updated_at: at,
                };
                row.schedule();
                row
            }),
            Event::MonitorUpdated(m) => {
                if let Some(row) = live(rows, &m.monitor_id) {
                    if let Some(f) = m.frequency_hours {
                        row.frequency_hours = i64::from(f);
                    }
                    if let Some(p) = &m.profile {
                        row.profile = p.clone();
                    }
                    if let Some(e) = m.enabled {
                        row.enabled = e;
                    }
                    row.schedule();
                    row.updated_at = at;
                }
            }
            Event::MonitorTriggered(m) => {
                if let Some(row) = live(rows, &m.monitor_id) {
                    let ran = chrono::DateTime::parse_from_rfc3339(&m.ran_at)
                        .map_or(at, |t| t.timestamp_micros());
                    row.last_run_at = Some(ran);
                    row.run_count += 1;
                    row.last_scan_job_ids = m.scan_job_ids.clone();
                    row.schedule();
                    row.updated_at = at;
                }
            }
            Event::MonitorDeleted(m) => {
                rows.insert(m.monitor_id.to_string(), None);
            }
            _ => {}
        }
    }

    fn vals(row: &MonitorRow) -> Vec<Val> {
        vec![
            Val::Text(row.org_id.to_string()),
            Val::OptText(row.asset_id.as_ref().map(ToString::to_string)),
            Val::OptText(row.group_id.as_ref().map(ToString::to_string)),
            Val::Int(row.frequency_hours),
            Val::Text(row.profile.clone()),
            Val::OptText(row.ports.as_ref().map(to_json)),
            Val::Int(row.enabled as i64),
            Val::OptInt(row.last_run_at),
            Val::OptInt(row.next_run_at),
            Val::Int(row.run_count),
            Val::Text(to_json(&row.last_scan_job_ids)),
            Val::Int(row.created_at),
            Val::Int(row.updated_at),
            Val::Text(row.kind.as_str().into()),
        ]
    }

    fn parse(r: &AnyRow) -> Result<MonitorRow, StoreError> {
        Ok(MonitorRow {
            org_id: id(r, "org_id")?,
            kind: Self::TABLE.named(r, "kind", MonitorKind::parse)?,
            asset_id: opt_id(r, "asset_id")?,
            group_id: opt_id(r, "group_id")?,
            frequency_hours: r.try_get("frequency_hours")?,
            profile: r.try_get("profile")?,
            ports: Self::TABLE.opt_json(r, "ports")?,
            enabled: r.try_get::<i64, _>("enabled")? != 0,
            last_run_at: r.try_get("last_run_at")?,
            next_run_at: r.try_get("next_run_at")?,
            run_count: r.try_get("run_count")?,
            last_scan_job_ids: Self::TABLE.json(r, "last_scan_job_ids")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

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
     m.last_scan_job_ids, m.created_at, m.updated_at, m.kind";

fn monitor(r: &AnyRow) -> Result<MonitorView, StoreError> {
    let row = Monitors::parse(r)?;
    Ok(MonitorView {
        id: r.try_get("monitor_id")?,
        scope: if row.asset_id.is_some() {
            "asset"
        } else {
            "group"
        }
        .into(),
        asset_id: row.asset_id.map(String::from),
        group_id: row.group_id.map(String::from),
        frequency_hours: row.frequency_hours,
        profile: row.profile,
        ports: row.ports,
        enabled: row.enabled,
        last_run_at: row.last_run_at.map(iso),
        next_run_at: row.next_run_at.map(iso),
        run_count: row.run_count,
        last_scan_job_ids: row
            .last_scan_job_ids
            .into_iter()
            .map(String::from)
            .collect(),
        created_at: iso(row.created_at),
        updated_at: iso(row.updated_at),
    })
}

/// A scan schedule as `/api/scan-schedules` shows it.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScanScheduleView {
    pub id: String,
    /// `asset` or `group`.
    pub schedule_type: String,
    pub asset_id: Option<String>,
    pub group_id: Option<String>,
    /// quick, standard or deep.
    pub profile: String,
    /// Days between runs, 1 to 90.
    pub frequency_days: i64,
    pub enabled: bool,
    pub last_run_at: Option<String>,
    /// When it runs next; null while disabled.
    pub next_run_at: Option<String>,
    pub run_count: i64,
    /// The scan jobs of the last run.
    pub last_scan_job_ids: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn schedule(r: &AnyRow) -> Result<ScanScheduleView, StoreError> {
    let m = monitor(r)?;
    Ok(ScanScheduleView {
        id: m.id,
        schedule_type: m.scope,
        asset_id: m.asset_id,
        group_id: m.group_id,
        profile: m.profile,
        frequency_days: m.frequency_hours / 24,
        enabled: m.enabled,
        last_run_at: m.last_run_at,
        next_run_at: m.next_run_at,
        run_count: m.run_count,
        last_scan_job_ids: m.last_scan_job_ids,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

/// A monitor whose next run is due: (organization, plan, monitor).
pub struct DueMonitor {
    pub org_id: OrgId,
    pub plan: Plan,
    pub monitor_id: MonitorId,
}

impl ReadModels {
    pub async fn monitors(
        &self,
        org_id: &OrgId,
        p: PageRequest,
    ) -> Result<Page<MonitorView>, StoreError> {
        self.monitors_of(org_id, MonitorKind::Monitor, p, monitor)
            .await
    }

    pub async fn monitor(
        &self,
        org_id: &OrgId,
        id: &MonitorId,
    ) -> Result<Option<MonitorView>, StoreError> {
        self.monitor_of(org_id, id, MonitorKind::Monitor, monitor)
            .await
    }

    pub async fn scan_schedules(
        &self,
        org_id: &OrgId,
        p: PageRequest,
    ) -> Result<Page<ScanScheduleView>, StoreError> {
        self.monitors_of(org_id, MonitorKind::Schedule, p, schedule)
            .await
    }

    pub async fn scan_schedule(
        &self,
        org_id: &OrgId,
        id: &MonitorId,
    ) -> Result<Option<ScanScheduleView>, StoreError> {
        self.monitor_of(org_id, id, MonitorKind::Schedule, schedule)
            .await
    }

    async fn monitors_of<T>(
        &self,
        org_id: &OrgId,
        kind: MonitorKind,
        p: PageRequest,
        parse: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let mut w = Filter::by("m.org_id", org_id.as_str());
        w.eq("m.kind", Some(kind.as_str()));
        self.filtered_page(
            MONITOR_COLUMNS,
            "rm_monitors m",
            "m.created_at, m.monitor_id",
            &w,
            p,
            parse,
        )
        .await
    }

    async fn monitor_of<T>(
        &self,
        org_id: &OrgId,
        id: &MonitorId,
        kind: MonitorKind,
        parse: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {MONITOR_COLUMNS} FROM rm_monitors m \
             WHERE m.org_id = $1 AND m.monitor_id = $2 AND m.kind = $3"
        ))
        .bind(org_id.as_str())
        .bind(id.as_str())
        .bind(kind.as_str())
        .fetch_optional(self.db.reader())
        .await?;
        row.as_ref().map(parse).transpose()
    }

    /// Enabled monitors (not scan schedules) of the asset or of its group, the asset's own
    /// first.
    pub async fn monitors_watching(
        &self,
        org_id: &OrgId,
        asset_id: &AssetId,
        group_id: &GroupId,
    ) -> Result<Vec<MonitorView>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {MONITOR_COLUMNS} FROM rm_monitors m WHERE m.org_id = $1 AND m.enabled = 1 \
             AND m.kind = 'monitor' AND (m.asset_id = $2 OR m.group_id = $3) \
             ORDER BY CASE WHEN m.asset_id IS NULL THEN 1 ELSE 0 END, m.created_at, m.monitor_id"
        ))
        .bind(org_id.as_str())
        .bind(asset_id.as_str())
        .bind(group_id.as_str())
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
                    org_id: id(r, "org_id")?,
                    plan: Monitors::TABLE.named(r, "plan", Plan::parse)?,
                    monitor_id: id(r, "monitor_id")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::given;
    use easm_events::{MonitorCreated, MonitorTriggered, MonitorUpdated};

    const HOUR: i64 = 3_600_000_000;

    fn created(enabled: bool) -> Event {
        Event::MonitorCreated(MonitorCreated {
            monitor_id: "m1".into(),
            asset_id: Some("a1".into()),
            group_id: None,
            frequency_hours: 24,
            profile: "quick".into(),
            ports: None,
            enabled,
            kind: MonitorKind::Monitor,
        })
    }

    #[test]
    fn a_new_monitor_is_due_at_once_then_a_frequency_after_each_run() {
        let state = given::events([created(true)]);
        assert_eq!(state.monitors["m1"].as_ref().unwrap().next_run_at, Some(0));
        let state = given::events([
            created(true),
            Event::MonitorTriggered(MonitorTriggered {
                monitor_id: "m1".into(),
                ran_at: "1970-01-01T00:00:00.000005Z".into(),
                manual: false,
                scan_job_ids: vec!["j1".into()],
                discovery_job_ids: vec![],
                skipped: vec![],
            }),
        ]);
        let row = state.monitors["m1"].clone().unwrap();
        assert_eq!(row.last_run_at, Some(5));
        assert_eq!(row.next_run_at, Some(5 + 24 * HOUR));
        assert_eq!(
            (row.run_count, row.last_scan_job_ids),
            (1, vec!["j1".into()])
        );
    }

    #[test]
    fn a_disabled_monitor_has_no_next_run_until_enabled() {
        let state = given::events([created(false)]);
        assert_eq!(state.monitors["m1"].as_ref().unwrap().next_run_at, None);
        let state = given::events([
            created(false),
            Event::MonitorUpdated(MonitorUpdated {
                monitor_id: "m1".into(),
                frequency_hours: Some(2),
                profile: None,
                enabled: Some(true),
            }),
        ]);
        let row = state.monitors["m1"].clone().unwrap();
        assert_eq!((row.frequency_hours, row.next_run_at), (2, Some(0)));
    }
}
