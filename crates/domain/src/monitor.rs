//! Monitors request scans of an asset or a group on a fixed cadence; an alert is raised when a
//! completed scan of a monitored asset sees it differ from the previous completed scan of the
//! same asset, profile and ports. Alerts are acknowledged and resolved by people.

use crate::{validate_ports, validate_profile, Aggregate, DomainError};
use chrono::{DateTime, Duration, Utc};
use easm_events::{
    AlertAcknowledged, AlertCreated, AlertResolved, Event, MonitorCreated, MonitorDeleted,
    MonitorTriggered, MonitorUpdated, Observed, ServiceSeen, SkippedAsset,
};
use easm_events::{AlertId, AssetId, GroupId, MonitorId, ScanJobId};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

pub const MAX_FREQUENCY_HOURS: i64 = 720;
pub const DEFAULT_FREQUENCY_HOURS: i64 = 24;
pub const MAX_NOTES_LEN: usize = 5000;
/// Services whose exposure is worse than a web server's: a new one is a high alert.
const DATASTORES: [&str; 4] = ["redis", "memcached", "mongodb", "elasticsearch"];

/// What a monitor watches: one asset, or every asset of one group at the time it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum MonitorScope {
    Asset(AssetId),
    Group(GroupId),
}

/// Requested attributes; on update, `None` leaves one as it is.
#[derive(Clone, Debug, Default)]
pub struct MonitorSpec<'a> {
    pub frequency_hours: Option<i64>,
    pub profile: Option<&'a str>,
    pub ports: Option<&'a [i64]>,
    pub enabled: Option<bool>,
}

fn validate_frequency(hours: i64) -> Result<u32, DomainError> {
    if (1..=MAX_FREQUENCY_HOURS).contains(&hours) {
        Ok(hours as u32)
    } else {
        Err(DomainError::validation(
            "frequencyHours",
            format!("must be 1 to {MAX_FREQUENCY_HOURS}"),
        ))
    }
}

fn validate_notes(notes: Option<&str>) -> Result<Option<String>, DomainError> {
    match notes {
        Some(n) if n.chars().count() > MAX_NOTES_LEN => Err(DomainError::validation(
            "notes",
            format!("at most {MAX_NOTES_LEN} characters"),
        )),
        n => Ok(n.map(str::to_string)),
    }
}

/// A monitor (stream `monitor-<id>`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Monitor {
    pub id: MonitorId,
    pub scope: Option<MonitorScope>,
    pub frequency_hours: u32,
    pub profile: String,
    pub ports: Option<Vec<u16>>,
    pub enabled: bool,
    pub last_run: Option<DateTime<Utc>>,
    pub deleted: bool,
}

impl Monitor {
    pub fn create(
        id: &MonitorId,
        scope: MonitorScope,
        spec: &MonitorSpec<'_>,
    ) -> Result<Vec<Event>, DomainError> {
        let (asset_id, group_id) = match scope {
            MonitorScope::Asset(a) => (Some(a), None),
            MonitorScope::Group(g) => (None, Some(g)),
        };
        Ok(vec![Event::MonitorCreated(MonitorCreated {
            monitor_id: id.into(),
            asset_id,
            group_id,
            frequency_hours: validate_frequency(
                spec.frequency_hours.unwrap_or(DEFAULT_FREQUENCY_HOURS),
            )?,
            profile: validate_profile(spec.profile.unwrap_or("quick"))?,
            ports: spec.ports.map(validate_ports).transpose()?,
            enabled: spec.enabled.unwrap_or(true),
        })])
    }

    pub fn require(&self) -> Result<(), DomainError> {
        if self.scope.is_none() || self.deleted {
            Err(DomainError::NotFound {
                resource: "monitor",
            })
        } else {
            Ok(())
        }
    }

    /// Only what changes is recorded; ports and scope are fixed at creation (they define which
    /// scans are compared with each other).
    pub fn update(&self, spec: &MonitorSpec<'_>) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        if spec.ports.is_some() {
            return Err(DomainError::validation(
                "ports",
                "cannot change; create another monitor",
            ));
        }
        let frequency = spec.frequency_hours.map(validate_frequency).transpose()?;
        let profile = spec.profile.map(validate_profile).transpose()?;
        let change = MonitorUpdated {
            monitor_id: self.id.clone(),
            frequency_hours: frequency.filter(|f| *f != self.frequency_hours),
            profile: profile.filter(|p| *p != self.profile),
            enabled: spec.enabled.filter(|e| *e != self.enabled),
        };
        let nothing = change.frequency_hours.is_none()
            && change.profile.is_none()
            && change.enabled.is_none();
        Ok(if nothing {
            vec![]
        } else {
            vec![Event::MonitorUpdated(change)]
        })
    }

    pub fn delete(&self) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        Ok(vec![Event::MonitorDeleted(MonitorDeleted {
            monitor_id: self.id.clone(),
        })])
    }

    /// When the schedule runs it next: at once if it never ran, else `frequencyHours` after the
    /// last run (a manual run counts). None while disabled.
    pub fn next_run(&self) -> Option<DateTime<Utc>> {
        if !self.enabled || self.require().is_err() {
            return None;
        }
        Some(match self.last_run {
            None => DateTime::<Utc>::MIN_UTC,
            Some(at) => at + Duration::hours(i64::from(self.frequency_hours)),
        })
    }

    pub fn due(&self, now: DateTime<Utc>) -> bool {
        self.next_run().is_some_and(|at| at <= now)
    }

    /// Record a run that requested `scan_job_ids`. A scheduled run that is not (or no longer)
    /// due records nothing; a manual one runs whenever the monitor exists.
    pub fn trigger(
        &self,
        now: DateTime<Utc>,
        manual: bool,
        scan_job_ids: Vec<ScanJobId>,
        skipped: Vec<SkippedAsset>,
    ) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        if !manual && !self.due(now) {
            return Ok(vec![]);
        }
        Ok(vec![Event::MonitorTriggered(MonitorTriggered {
            monitor_id: self.id.clone(),
            ran_at: easm_events::format_timestamp(&now),
            manual,
            scan_job_ids,
            skipped,
        })])
    }
}

impl Aggregate for Monitor {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::MonitorCreated(e) => {
                *self = Monitor {
                    id: e.monitor_id.clone(),
                    scope: Some(match (&e.asset_id, &e.group_id) {
                        (Some(a), _) => MonitorScope::Asset(a.clone()),
                        (None, g) => MonitorScope::Group(g.clone().unwrap_or_default()),
                    }),
                    frequency_hours: e.frequency_hours,
                    profile: e.profile.clone(),
                    ports: e.ports.clone(),
                    enabled: e.enabled,
                    last_run: None,
                    deleted: false,
                }
            }
            Event::MonitorUpdated(e) => {
                if let Some(f) = e.frequency_hours {
                    self.frequency_hours = f;
                }
                if let Some(p) = &e.profile {
                    self.profile = p.clone();
                }
                if let Some(en) = e.enabled {
                    self.enabled = en;
                }
            }
            Event::MonitorTriggered(e) => {
                if let Ok(at) = DateTime::parse_from_rfc3339(&e.ran_at) {
                    self.last_run = Some(at.with_timezone(&Utc));
                }
            }
            Event::MonitorDeleted(_) => self.deleted = true,
            _ => {}
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AlertStatus {
    #[default]
    None,
    Open,
    Acknowledged,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::None => "none",
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
        }
    }
}

impl AlertStatus {
    /// A stored status; `none` (an alert not raised yet) is never stored.
    pub fn parse(s: &str) -> Option<AlertStatus> {
        [
            AlertStatus::Open,
            AlertStatus::Acknowledged,
            AlertStatus::Resolved,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

pub const ALERT_STATUSES: [&str; 3] = ["open", "acknowledged", "resolved"];

/// An alert (stream `alert-<id>`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Alert {
    pub id: AlertId,
    pub status: AlertStatus,
}

impl Alert {
    fn require(&self) -> Result<(), DomainError> {
        if self.status == AlertStatus::None {
            Err(DomainError::NotFound { resource: "alert" })
        } else {
            Ok(())
        }
    }

    fn already(&self) -> DomainError {
        DomainError::Conflict {
            message: format!("the alert is already {}", self.status.as_str()),
            existing_id: None,
        }
    }

    pub fn acknowledge(&self, notes: Option<&str>) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        if self.status != AlertStatus::Open {
            return Err(self.already());
        }
        Ok(vec![Event::AlertAcknowledged(AlertAcknowledged {
            alert_id: self.id.clone(),
            notes: validate_notes(notes)?,
        })])
    }

    pub fn resolve(&self, notes: Option<&str>) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        if self.status == AlertStatus::Resolved {
            return Err(self.already());
        }
        Ok(vec![Event::AlertResolved(AlertResolved {
            alert_id: self.id.clone(),
            from: self.status.as_str().into(),
            notes: validate_notes(notes)?,
        })])
    }
}

impl Aggregate for Alert {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::AlertCreated(e) => {
                *self = Alert {
                    id: e.alert_id.clone(),
                    status: AlertStatus::Open,
                }
            }
            Event::AlertAcknowledged(_) => self.status = AlertStatus::Acknowledged,
            Event::AlertResolved(_) => self.status = AlertStatus::Resolved,
            _ => {}
        }
    }
}

/// One difference between two observations of an asset, before it becomes an alert.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub alert_type: &'static str,
    pub severity: &'static str,
    pub title: String,
    pub details: serde_json::Value,
}

impl Change {
    pub fn into_alert(
        self,
        alert_id: &AlertId,
        monitor_id: &MonitorId,
        asset_id: &AssetId,
        scan_job_id: &ScanJobId,
    ) -> Event {
        Event::AlertCreated(AlertCreated {
            alert_id: alert_id.into(),
            monitor_id: monitor_id.into(),
            asset_id: asset_id.into(),
            scan_job_id: scan_job_id.into(),
            alert_type: self.alert_type.into(),
            severity: self.severity.into(),
            title: self.title,
            details: self.details,
        })
    }
}

/// The certificate subject the scanner noted for a TLS service (`...; certificate <subject>`).
fn certificate(s: &ServiceSeen) -> Option<&str> {
    let detail = s.detail.as_deref()?;
    detail
        .rfind("certificate ")
        .map(|i| &detail[i + "certificate ".len()..])
}

fn sorted(v: &[String]) -> BTreeSet<&str> {
    v.iter().map(String::as_str).collect()
}

/// What changed from `before` to `after`, two observations of `asset` by scans that tried the
/// same ports: ports opened and closed, services and certificates replaced, DNS answers moved.
pub fn changes(asset: &str, before: &Observed, after: &Observed) -> Vec<Change> {
    let by_port = |o: &Observed| -> BTreeMap<u16, ServiceSeen> {
        o.services.iter().map(|s| (s.port, s.clone())).collect()
    };
    let (old, new) = (by_port(before), by_port(after));
    let mut out = vec![];
    for (port, s) in &new {
        let Some(was) = old.get(port) else {
            out.push(Change {
                alert_type: "new_port",
                severity: if DATASTORES.contains(&s.service.as_str()) {
                    "high"
                } else {
                    "medium"
                },
                title: format!("New open port {port} ({}) on {asset}", s.service),
                details: json!({"port": port, "service": s.service, "tls": s.tls, "detail": s.detail}),
            });
            continue;
        };
        if (was.service.as_str(), was.tls) != (s.service.as_str(), s.tls) {
            out.push(Change {
                alert_type: "service_changed",
                severity: "low",
                title: format!(
                    "Port {port} on {asset} now answers as {} (was {})",
                    s.service, was.service
                ),
                details: json!({"port": port, "before": was.service, "after": s.service, "tlsBefore": was.tls, "tlsAfter": s.tls}),
            });
        } else if let (Some(a), Some(b)) = (certificate(was), certificate(s)) {
            if a != b {
                out.push(Change {
                    alert_type: "certificate_changed",
                    severity: "medium",
                    title: format!("TLS certificate on {asset}:{port} changed"),
                    details: json!({"port": port, "before": a, "after": b}),
                });
            }
        }
    }
    for (port, was) in &old {
        if !new.contains_key(port) {
            out.push(Change {
                alert_type: "port_closed",
                severity: "low",
                title: format!("Port {port} ({}) on {asset} no longer open", was.service),
                details: json!({"port": port, "service": was.service}),
            });
        }
    }
    if sorted(&before.addresses) != sorted(&after.addresses)
        || sorted(&before.cnames) != sorted(&after.cnames)
    {
        out.push(Change {
            alert_type: "dns_changed",
            severity: "low",
            title: format!("DNS answers for {asset} changed"),
            details: json!({
                "addressesBefore": sorted(&before.addresses),
                "addressesAfter": sorted(&after.addresses),
                "cnamesBefore": sorted(&before.cnames),
                "cnamesAfter": sorted(&after.cnames),
            }),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(spec: &MonitorSpec<'_>) -> Monitor {
        Monitor::from_events(
            &Monitor::create(&"m".into(), MonitorScope::Asset("a".into()), spec).unwrap(),
        )
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn creation_is_validated_and_defaults_apply() {
        let m = created(&MonitorSpec::default());
        assert_eq!((m.frequency_hours, m.profile.as_str()), (24, "quick"));
        assert!(m.enabled);
        for hours in [0, -1, 721] {
            let spec = MonitorSpec {
                frequency_hours: Some(hours),
                ..Default::default()
            };
            assert!(Monitor::create(&"m".into(), MonitorScope::Group("g".into()), &spec).is_err());
        }
        let bad = MonitorSpec {
            profile: Some("full"),
            ..Default::default()
        };
        assert!(Monitor::create(&"m".into(), MonitorScope::Group("g".into()), &bad).is_err());
        let ports = MonitorSpec {
            ports: Some(&[443, 80]),
            ..Default::default()
        };
        assert_eq!(created(&ports).ports, Some(vec![80, 443]));
    }

    #[test]
    fn runs_are_due_on_creation_then_after_the_frequency() {
        let mut events = Monitor::create(
            &"m".into(),
            MonitorScope::Asset("a".into()),
            &MonitorSpec::default(),
        )
        .unwrap();
        let m = Monitor::from_events(&events);
        let t0 = at("2026-11-30T10:00:00Z");
        assert!(m.due(t0));
        events.extend(m.trigger(t0, false, vec!["s".into()], vec![]).unwrap());
        let m = Monitor::from_events(&events);
        assert!(!m.due(t0 + Duration::hours(23)));
        assert!(m
            .trigger(t0 + Duration::hours(1), false, vec![], vec![])
            .unwrap()
            .is_empty());
        assert_eq!(
            m.trigger(t0 + Duration::hours(1), true, vec![], vec![])
                .unwrap()
                .len(),
            1
        );
        assert!(m.due(t0 + Duration::hours(24)));
        let off = MonitorSpec {
            enabled: Some(false),
            frequency_hours: Some(24),
            ..Default::default()
        };
        let update = m.update(&off).unwrap();
        let Event::MonitorUpdated(u) = &update[0] else {
            panic!()
        };
        assert_eq!((u.enabled, u.frequency_hours), (Some(false), None));
        events.extend(update);
        let m = Monitor::from_events(&events);
        assert!(!m.due(t0 + Duration::hours(48)));
        assert!(m.update(&off).unwrap().is_empty());
        let ports = MonitorSpec {
            ports: Some(&[1]),
            ..Default::default()
        };
        assert!(m.update(&ports).is_err());
        events.extend(m.delete().unwrap());
        let m = Monitor::from_events(&events);
        assert!(matches!(m.delete(), Err(DomainError::NotFound { .. })));
        assert!(m.trigger(t0, true, vec![], vec![]).is_err());
    }

    #[test]
    fn alerts_are_acknowledged_then_resolved_once() {
        let change = Change {
            alert_type: "new_port",
            severity: "medium",
            title: "t".into(),
            details: json!({}),
        };
        let mut events =
            vec![change.into_alert(&"al".into(), &"m".into(), &"a".into(), &"s".into())];
        let a = Alert::from_events(&events);
        events.extend(a.acknowledge(Some("seen")).unwrap());
        let a = Alert::from_events(&events);
        assert!(matches!(
            a.acknowledge(None),
            Err(DomainError::Conflict { .. })
        ));
        let resolved = a.resolve(None).unwrap();
        let Event::AlertResolved(r) = &resolved[0] else {
            panic!()
        };
        assert_eq!(r.from, "acknowledged");
        events.extend(resolved);
        let a = Alert::from_events(&events);
        assert!(a.resolve(None).is_err());
        assert!(a.acknowledge(None).is_err());
        assert!(matches!(
            Alert::default().resolve(None),
            Err(DomainError::NotFound { .. })
        ));
        let long = "x".repeat(MAX_NOTES_LEN + 1);
        let open = Alert::from_events(&events[..1]);
        assert!(open.acknowledge(Some(&long)).is_err());
    }

    fn svc(port: u16, service: &str, detail: Option<&str>) -> ServiceSeen {
        ServiceSeen {
            port,
            service: service.into(),
            tls: service == "https",
            detail: detail.map(str::to_string),
        }
    }

    #[test]
    fn changes_between_two_observations() {
        let before = Observed {
            addresses: vec!["192.0.2.1".into()],
            cnames: vec![],
            ports_scanned: Some(3),
            services: vec![
                svc(22, "ssh", Some("OpenSSH_9.6")),
                svc(443, "https", Some("HTTP 200; certificate CN=a.example.com")),
                svc(8080, "http", None),
            ],
        };
        assert!(changes("example.com", &before, &before).is_empty());
        let after = Observed {
            addresses: vec!["192.0.2.2".into()],
            cnames: vec![],
            ports_scanned: Some(3),
            services: vec![
                svc(22, "ssh", Some("OpenSSH_9.7")),
                svc(443, "https", Some("HTTP 200; certificate CN=b.example.com")),
                svc(6379, "redis", None),
                svc(8080, "https", None),
            ],
        };
        let found: Vec<(&str, &str)> = changes("example.com", &before, &after)
            .iter()
            .map(|c| (c.alert_type, c.severity))
            .collect();
        assert_eq!(
            found,
            vec![
                ("certificate_changed", "medium"),
                ("new_port", "high"),
                ("service_changed", "low"),
                ("dns_changed", "low"),
            ]
        );
        let closed = changes("example.com", &after, &Observed::default());
        assert_eq!(
            closed
                .iter()
                .filter(|c| c.alert_type == "port_closed")
                .count(),
            4
        );
        assert_eq!(closed[0].details["port"], 22);
    }
}
