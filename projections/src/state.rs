//! The read models as plain rows, and the pure fold of events into them. The projector loads the
//! rows a batch of events touches, folds, and writes back what changed; a rebuild folds the whole
//! log from empty and bulk-inserts the result. One fold serves both, so they cannot disagree.

use easm_events::{Detection, Event, RecordedEvent, SeverityCounts};
use easm_store::ReplayEvent;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct OrgRow {
    pub name: String,
    pub plan: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct KeyRow {
    pub org_id: String,
    pub name: String,
    pub role: String,
    pub key_hash: String,
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub user_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UserRow {
    pub org_id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupRow {
    pub org_id: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AssetRow {
    pub org_id: String,
    pub group_id: String,
    pub value: String,
    pub asset_type: String,
    pub tags: Vec<String>,
    pub criticality: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WebhookRow {
    pub org_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub rotated_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScanJobRow {
    pub org_id: String,
    pub asset_id: String,
    pub profile: String,
    pub ports: Option<Vec<u16>>,
    pub status: String,
    pub progress: i64,
    pub stage: Option<String>,
    pub attempts: i64,
    pub error: Option<String>,
    pub counts: Option<SeverityCounts>,
    pub rerun_of: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FindingRow {
    pub org_id: String,
    pub asset_id: String,
    pub detection: Detection,
    pub status: String,
    pub assignee: Option<String>,
    pub notes: Option<String>,
    pub scan_job_ids: Vec<String>,
    pub detection_count: i64,
    pub first_detected: i64,
    pub last_detected: i64,
    pub updated_at: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MonitorRow {
    pub org_id: String,
    pub asset_id: Option<String>,
    pub group_id: Option<String>,
    pub frequency_hours: i64,
    pub profile: String,
    pub ports: Option<Vec<u16>>,
    pub enabled: bool,
    pub last_run_at: Option<i64>,
    pub next_run_at: Option<i64>,
    pub run_count: i64,
    pub last_scan_job_ids: Vec<String>,
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

#[derive(Clone, Debug, PartialEq)]
pub struct AlertRow {
    pub org_id: String,
    pub monitor_id: String,
    pub asset_id: String,
    pub scan_job_id: String,
    pub alert_type: String,
    pub severity: String,
    pub title: String,
    pub details: serde_json::Value,
    pub status: String,
    pub notes: Option<String>,
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<i64>,
    pub resolved_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Rows by primary key. `None` marks a row that a fold deleted, so the writer removes it.
#[derive(Debug, Default)]
pub struct ReadState {
    pub orgs: BTreeMap<String, Option<OrgRow>>,
    pub keys: BTreeMap<String, Option<KeyRow>>,
    pub users: BTreeMap<String, Option<UserRow>>,
    pub groups: BTreeMap<String, Option<GroupRow>>,
    pub assets: BTreeMap<String, Option<AssetRow>>,
    pub webhooks: BTreeMap<String, Option<WebhookRow>>,
    pub scan_jobs: BTreeMap<String, Option<ScanJobRow>>,
    pub findings: BTreeMap<String, Option<FindingRow>>,
    pub monitors: BTreeMap<String, Option<MonitorRow>>,
    pub alerts: BTreeMap<String, Option<AlertRow>>,
}

/// Which rows an event reads or writes, so the projector can load them first.
pub enum Touch<'a> {
    Org(&'a str),
    Key(&'a str),
    User(&'a str),
    Group(&'a str),
    Asset(&'a str),
    Webhook(&'a str),
    ScanJob(&'a str),
    Finding(&'a str),
    Monitor(&'a str),
    Alert(&'a str),
    /// No read model changes.
    Nothing,
}

pub fn touches(e: &Event) -> Touch<'_> {
    match e {
        Event::OrgCreated(o) => Touch::Org(&o.org_id),
        Event::ApiKeyCreated(k) => Touch::Key(&k.key_id),
        Event::ApiKeyRevoked(k) => Touch::Key(&k.key_id),
        Event::UserAdded(u) => Touch::User(&u.user_id),
        Event::UserRoleChanged(u) => Touch::User(&u.user_id),
        Event::UserRemoved(u) => Touch::User(&u.user_id),
        Event::GroupCreated(g) => Touch::Group(&g.group_id),
        Event::GroupRenamed(g) => Touch::Group(&g.group_id),
        Event::GroupDeleted(g) => Touch::Group(&g.group_id),
        Event::AssetAdded(a) => Touch::Asset(&a.asset_id),
        Event::AssetUpdated(a) => Touch::Asset(&a.asset_id),
        Event::AssetRemoved(a) => Touch::Asset(&a.asset_id),
        Event::WebhookCreated(w) => Touch::Webhook(&w.webhook_id),
        Event::WebhookUpdated(w) => Touch::Webhook(&w.webhook_id),
        Event::WebhookDeleted(w) => Touch::Webhook(&w.webhook_id),
        Event::WebhookSecretRotated(w) => Touch::Webhook(&w.webhook_id),
        Event::EndpointDisabled(w) => Touch::Webhook(&w.webhook_id),
        Event::ScanRequested(s) => Touch::ScanJob(&s.scan_job_id),
        Event::ScanStarted(s) => Touch::ScanJob(&s.scan_job_id),
        Event::ScanProgressed(s) => Touch::ScanJob(&s.scan_job_id),
        Event::ScanCompleted(s) => Touch::ScanJob(&s.scan_job_id),
        Event::ScanFailed(s) => Touch::ScanJob(&s.scan_job_id),
        Event::ScanCancelled(s) => Touch::ScanJob(&s.scan_job_id),
        Event::ScanDeleted(s) => Touch::ScanJob(&s.scan_job_id),
        Event::FindingNew(f) => Touch::Finding(&f.finding_id),
        Event::FindingRedetected(f) => Touch::Finding(&f.finding_id),
        Event::FindingReopened(f) => Touch::Finding(&f.finding_id),
        Event::FindingResolved(f) => Touch::Finding(&f.finding_id),
        Event::FindingStatusChanged(f) => Touch::Finding(&f.finding_id),
        Event::FindingUpdated(f) => Touch::Finding(&f.finding_id),
        Event::MonitorCreated(m) => Touch::Monitor(&m.monitor_id),
        Event::MonitorUpdated(m) => Touch::Monitor(&m.monitor_id),
        Event::MonitorDeleted(m) => Touch::Monitor(&m.monitor_id),
        Event::MonitorTriggered(m) => Touch::Monitor(&m.monitor_id),
        Event::AlertCreated(a) => Touch::Alert(&a.alert_id),
        Event::AlertAcknowledged(a) => Touch::Alert(&a.alert_id),
        Event::AlertResolved(a) => Touch::Alert(&a.alert_id),
        Event::AccessDenied(_) | Event::RiskChanged(_) => Touch::Nothing,
    }
}

/// What folding takes from an event's envelope: whose it is, when (epoch microseconds) and by
/// whom; read in full from the log when appending, narrowly by a rebuild.
#[derive(Clone, Copy)]
pub struct Origin<'a> {
    pub org_id: &'a str,
    pub at: i64,
    pub actor_id: &'a str,
}

impl<'a> From<&'a RecordedEvent> for Origin<'a> {
    fn from(r: &'a RecordedEvent) -> Self {
        Origin {
            org_id: &r.org_id,
            at: r.occurred_at.timestamp_micros(),
            actor_id: &r.actor.id,
        }
    }
}

impl<'a> From<&'a ReplayEvent> for Origin<'a> {
    fn from(r: &'a ReplayEvent) -> Self {
        Origin {
            org_id: &r.org_id,
            at: r.occurred_at,
            actor_id: &r.actor_id,
        }
    }
}

/// Insert unless a row (live or deleted) is already known: replaying a creation changes nothing.
fn create<T>(map: &mut BTreeMap<String, Option<T>>, id: &str, row: impl FnOnce() -> T) {
    map.entry(id.to_string()).or_insert_with(|| Some(row()));
}

fn live<'a, T>(map: &'a mut BTreeMap<String, Option<T>>, id: &str) -> Option<&'a mut T> {
    map.get_mut(id).and_then(Option::as_mut)
}

impl ReadState {
    fn finding_status(&mut self, id: &str, status: &str, notes: &Option<String>, at: i64) {
        if let Some(row) = live(&mut self.findings, id) {
            row.status = status.into();
            if notes.is_some() {
                row.notes = notes.clone();
            }
            row.updated_at = at;
        }
    }

    pub fn fold(&mut self, origin: Origin<'_>, event: &Event) {
        let at = origin.at;
        let org_id = origin.org_id;
        match event {
            Event::OrgCreated(o) => create(&mut self.orgs, &o.org_id, || OrgRow {
                name: o.name.clone(),
                plan: o.plan.clone(),
                created_at: at,
            }),
            Event::ApiKeyCreated(k) => create(&mut self.keys, &k.key_id, || KeyRow {
                org_id: org_id.to_string(),
                name: k.name.clone(),
                role: k.role.clone(),
                key_hash: k.key_hash.clone(),
                prefix: k.prefix.clone(),
                created_at: at,
                revoked_at: None,
                user_id: k.user_id.clone(),
            }),
            Event::ApiKeyRevoked(k) => {
                if let Some(row) = live(&mut self.keys, &k.key_id) {
                    row.revoked_at = Some(at);
                }
            }
            Event::UserAdded(u) => create(&mut self.users, &u.user_id, || UserRow {
                org_id: org_id.to_string(),
                email: u.email.clone(),
                name: u.name.clone(),
                role: u.role.clone(),
                created_at: at,
                updated_at: at,
            }),
            Event::UserRoleChanged(u) => {
                if let Some(row) = live(&mut self.users, &u.user_id) {
                    row.role = u.role.clone();
                    row.updated_at = at;
                }
            }
            Event::UserRemoved(u) => {
                self.users.insert(u.user_id.clone(), None);
            }
            Event::GroupCreated(g) => create(&mut self.groups, &g.group_id, || GroupRow {
                org_id: org_id.to_string(),
                name: g.name.clone(),
                created_at: at,
                updated_at: at,
            }),
            Event::GroupRenamed(g) => {
                if let Some(row) = live(&mut self.groups, &g.group_id) {
                    row.name = g.name.clone();
                    row.updated_at = at;
                }
            }
            Event::GroupDeleted(g) => {
                self.groups.insert(g.group_id.clone(), None);
            }
            Event::AssetAdded(a) => create(&mut self.assets, &a.asset_id, || AssetRow {
                org_id: org_id.to_string(),
                group_id: a.group_id.clone(),
                value: a.value.clone(),
                asset_type: a.asset_type.clone(),
                tags: a.tags.clone(),
                criticality: a.criticality.clone(),
                created_at: at,
                updated_at: at,
            }),
            Event::AssetUpdated(a) => {
                if let Some(row) = live(&mut self.assets, &a.asset_id) {
                    if let Some(g) = &a.group_id {
                        row.group_id = g.clone();
                    }
                    if let Some(t) = &a.tags {
                        row.tags = t.clone();
                    }
                    if let Some(c) = &a.criticality {
                        row.criticality = c.clone();
                    }
                    row.updated_at = at;
                }
            }
            Event::AssetRemoved(a) => {
                self.assets.insert(a.asset_id.clone(), None);
            }
            Event::WebhookCreated(w) => create(&mut self.webhooks, &w.webhook_id, || WebhookRow {
                org_id: org_id.to_string(),
                url: w.url.clone(),
                events: w.events.clone(),
                description: w.description.clone(),
                enabled: w.enabled,
                rotated_at: None,
                created_at: at,
                updated_at: at,
            }),
            Event::WebhookUpdated(w) => {
                if let Some(row) = live(&mut self.webhooks, &w.webhook_id) {
                    if let Some(u) = &w.url {
                        row.url = u.clone();
                    }
                    if let Some(e) = &w.events {
                        row.events = e.clone();
                    }
                    if let Some(d) = &w.description {
                        row.description = d.clone();
                    }
                    if let Some(en) = w.enabled {
                        row.enabled = en;
                    }
                    row.updated_at = at;
                }
            }
            Event::WebhookSecretRotated(w) => {
                if let Some(row) = live(&mut self.webhooks, &w.webhook_id) {
                    row.rotated_at = Some(at);
                    row.updated_at = at;
                }
            }
            Event::WebhookDeleted(w) => {
                self.webhooks.insert(w.webhook_id.clone(), None);
            }
            Event::EndpointDisabled(w) => {
                if let Some(row) = live(&mut self.webhooks, &w.webhook_id) {
                    row.enabled = false;
                    row.updated_at = at;
                }
            }
            Event::ScanRequested(s) => create(&mut self.scan_jobs, &s.scan_job_id, || ScanJobRow {
                org_id: org_id.to_string(),
                asset_id: s.asset_id.clone(),
                profile: s.profile.clone(),
                ports: s.ports.clone(),
                status: "queued".into(),
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
            }),
            Event::ScanStarted(s) => {
                if let Some(row) = live(&mut self.scan_jobs, &s.scan_job_id) {
                    row.status = "running".into();
                    row.attempts = i64::from(s.attempt);
                    row.started_at.get_or_insert(at);
                    row.updated_at = at;
                }
            }
            Event::ScanProgressed(s) => {
                if let Some(row) = live(&mut self.scan_jobs, &s.scan_job_id) {
                    row.progress = i64::from(s.progress);
                    row.stage = Some(s.stage.clone());
                    row.updated_at = at;
                }
            }
            Event::ScanCompleted(s) => {
                if let Some(row) = live(&mut self.scan_jobs, &s.scan_job_id) {
                    row.status = "completed".into();
                    row.progress = 100;
                    row.counts = Some(s.counts.clone());
                    row.finished_at = Some(at);
                    row.updated_at = at;
                }
            }
            Event::ScanFailed(s) => {
                if let Some(row) = live(&mut self.scan_jobs, &s.scan_job_id) {
                    row.status = "failed".into();
                    row.error = Some(s.reason.clone());
                    row.finished_at = Some(at);
                    row.updated_at = at;
                }
            }
            Event::ScanCancelled(s) => {
                if let Some(row) = live(&mut self.scan_jobs, &s.scan_job_id) {
                    row.status = "cancelled".into();
                    row.finished_at = Some(at);
                    row.updated_at = at;
                }
            }
            Event::ScanDeleted(s) => {
                self.scan_jobs.insert(s.scan_job_id.clone(), None);
                // Its findings leave with it: a finding no live job detected is hidden (it
                // keeps its row, so a later detection shows it again with its history).
                for row in self.findings.values_mut().flatten() {
                    if row.scan_job_ids.contains(&s.scan_job_id) {
                        row.scan_job_ids.retain(|j| j != &s.scan_job_id);
                        row.updated_at = at;
                    }
                }
            }
            Event::FindingNew(f) => create(&mut self.findings, &f.finding_id, || FindingRow {
                org_id: org_id.to_string(),
                asset_id: f.asset_id.clone(),
                detection: (*f.detection).clone(),
                status: "open".into(),
                assignee: None,
                notes: None,
                scan_job_ids: vec![f.scan_job_id.clone()],
                detection_count: 1,
                first_detected: at,
                last_detected: at,
                updated_at: at,
            }),
            Event::FindingRedetected(f) => {
                if let Some(row) = live(&mut self.findings, &f.finding_id) {
                    if !row.scan_job_ids.contains(&f.scan_job_id) {
                        row.scan_job_ids.push(f.scan_job_id.clone());
                    }
                    row.detection.evidence = f.evidence.clone();
                    row.detection_count += 1;
                    row.last_detected = at;
                    row.updated_at = at;
                }
            }
            Event::FindingReopened(f) => self.finding_status(&f.finding_id, "open", &f.notes, at),
            Event::FindingResolved(f) => {
                self.finding_status(&f.finding_id, "resolved", &f.notes, at)
            }
            Event::FindingStatusChanged(f) => {
                self.finding_status(&f.finding_id, &f.to, &f.notes, at)
            }
            Event::FindingUpdated(f) => {
                if let Some(row) = live(&mut self.findings, &f.finding_id) {
                    if let Some(a) = &f.assignee {
                        row.assignee = (!a.is_empty()).then(|| a.clone());
                    }
                    if f.notes.is_some() {
                        row.notes = f.notes.clone();
                    }
                    row.updated_at = at;
                }
            }
            Event::MonitorCreated(m) => create(&mut self.monitors, &m.monitor_id, || {
                let mut row = MonitorRow {
                    org_id: org_id.to_string(),
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
                if let Some(row) = live(&mut self.monitors, &m.monitor_id) {
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
                if let Some(row) = live(&mut self.monitors, &m.monitor_id) {
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
                self.monitors.insert(m.monitor_id.clone(), None);
            }
            Event::AlertCreated(a) => create(&mut self.alerts, &a.alert_id, || AlertRow {
                org_id: org_id.to_string(),
                monitor_id: a.monitor_id.clone(),
                asset_id: a.asset_id.clone(),
                scan_job_id: a.scan_job_id.clone(),
                alert_type: a.alert_type.clone(),
                severity: a.severity.clone(),
                title: a.title.clone(),
                details: a.details.clone(),
                status: "open".into(),
                notes: None,
                acknowledged_at: None,
                acknowledged_by: None,
                resolved_at: None,
                resolved_by: None,
                created_at: at,
                updated_at: at,
            }),
            Event::AlertAcknowledged(a) => {
                if let Some(row) = live(&mut self.alerts, &a.alert_id) {
                    row.status = "acknowledged".into();
                    row.acknowledged_at = Some(at);
                    row.acknowledged_by = Some(origin.actor_id.to_string());
                    if a.notes.is_some() {
                        row.notes = a.notes.clone();
                    }
                    row.updated_at = at;
                }
            }
            Event::AlertResolved(a) => {
                if let Some(row) = live(&mut self.alerts, &a.alert_id) {
                    row.status = "resolved".into();
                    row.resolved_at = Some(at);
                    row.resolved_by = Some(origin.actor_id.to_string());
                    if a.notes.is_some() {
                        row.notes = a.notes.clone();
                    }
                    row.updated_at = at;
                }
            }
            Event::AccessDenied(_) | Event::RiskChanged(_) => {}
        }
    }
}
