//! Alerts: raised when a completed scan of a monitored asset sees it differ from the previous
//! completed scan of the same asset, profile and ports; acknowledged and resolved by people.

use crate::{Aggregate, DetectedBy, DomainError};
use easm_events::{
    AlertAcknowledged, AlertCreated, AlertId, AlertResolved, AssetId, Event, MonitorId, Observed,
    ServiceSeen,
};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

pub const MAX_NOTES_LEN: usize = 5000;
/// Services whose exposure is worse than a web server's: a new one is a high alert.
const DATASTORES: [&str; 4] = ["redis", "memcached", "mongodb", "elasticsearch"];

fn validate_notes(notes: Option<&str>) -> Result<Option<String>, DomainError> {
    match notes {
        Some(n) if n.chars().count() > MAX_NOTES_LEN => Err(DomainError::validation(
            "notes",
            format!("at most {MAX_NOTES_LEN} characters"),
        )),
        n => Ok(n.map(str::to_string)),
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
        by: &DetectedBy,
    ) -> Event {
        Event::AlertCreated(AlertCreated {
            alert_id: alert_id.into(),
            monitor_id: monitor_id.into(),
            asset_id: asset_id.into(),
            scan_job_id: by.scan(),
            discovery_job_id: by.discovery(),
            alert_type: self.alert_type.into(),
            severity: self.severity.into(),
            title: self.title,
            details: self.details,
        })
    }
}

/// A name under `domain` that no earlier discovery job of the organization found, seen by a
/// monitor's discovery run.
pub fn new_subdomain(domain: &str, name: &str, addresses: &[String], sources: &[String]) -> Change {
    Change {
        alert_type: "new_subdomain",
        severity: "medium",
        title: format!("New subdomain {name} of {domain}"),
        details: json!({"domain": domain, "name": name, "addresses": addresses, "sources": sources}),
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

    #[test]
    fn alerts_are_acknowledged_then_resolved_once() {
        let change = Change {
            alert_type: "new_port",
            severity: "medium",
            title: "t".into(),
            details: json!({}),
        };
        let mut events = vec![change.into_alert(
            &"al".into(),
            &"m".into(),
            &"a".into(),
            &DetectedBy::Scan("s".into()),
        )];
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
