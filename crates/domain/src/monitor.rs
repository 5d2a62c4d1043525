//! Monitors request scans of an asset or a group on a fixed cadence (what their scans raise is in
//! `alert.rs`).

use crate::{validate_ports, validate_profile, Aggregate, DomainError};
use chrono::{DateTime, Duration, Utc};
use easm_events::{
    AssetId, DiscoveryJobId, Event, GroupId, MonitorCreated, MonitorDeleted, MonitorId,
    MonitorKind, MonitorTriggered, MonitorUpdated, ScanJobId, SkippedAsset,
};

pub const MAX_FREQUENCY_HOURS: i64 = 720;
pub const DEFAULT_FREQUENCY_HOURS: i64 = 24;
/// Scan schedules run every 1 to this many days.
pub const MAX_FREQUENCY_DAYS: i64 = 90;

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

/// Monitors run every 1 to 720 hours; scan schedules every 1 to 90 days (given in hours).
fn validate_frequency(kind: MonitorKind, hours: i64) -> Result<u32, DomainError> {
    match kind {
        MonitorKind::Monitor if (1..=MAX_FREQUENCY_HOURS).contains(&hours) => Ok(hours as u32),
        MonitorKind::Monitor => Err(DomainError::validation(
            "frequencyHours",
            format!("must be 1 to {MAX_FREQUENCY_HOURS}"),
        )),
        MonitorKind::Schedule
            if hours % 24 == 0 && (1..=MAX_FREQUENCY_DAYS).contains(&(hours / 24)) =>
        {
            Ok(hours as u32)
        }
        MonitorKind::Schedule => Err(DomainError::validation(
            "frequencyDays",
            format!("must be 1 to {MAX_FREQUENCY_DAYS}"),
        )),
    }
}

/// A monitor (stream `monitor-<id>`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Monitor {
    pub id: MonitorId,
    pub kind: MonitorKind,
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
        kind: MonitorKind,
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
                kind,
                spec.frequency_hours.unwrap_or(DEFAULT_FREQUENCY_HOURS),
            )?,
            profile: validate_profile(spec.profile.unwrap_or("quick"))?,
            ports: spec.ports.map(validate_ports).transpose()?,
            enabled: spec.enabled.unwrap_or(true),
            kind,
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

    /// Exists and is of `kind`: a monitor is not found among scan schedules, nor the reverse.
    pub fn require_kind(&self, kind: MonitorKind) -> Result<(), DomainError> {
        self.require()?;
        if self.kind != kind {
            return Err(DomainError::NotFound {
                resource: match kind {
                    MonitorKind::Monitor => "monitor",
                    MonitorKind::Schedule => "scan schedule",
                },
            });
        }
        Ok(())
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
        let frequency = spec
            .frequency_hours
            .map(|h| validate_frequency(self.kind, h))
            .transpose()?;
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
        discovery_job_ids: Vec<DiscoveryJobId>,
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
            discovery_job_ids,
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
                    kind: e.kind,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn created(spec: &MonitorSpec<'_>) -> Monitor {
        Monitor::from_events(
            &Monitor::create(
                &"m".into(),
                MonitorScope::Asset("a".into()),
                MonitorKind::Monitor,
                spec,
            )
            .unwrap(),
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
            assert!(Monitor::create(
                &"m".into(),
                MonitorScope::Group("g".into()),
                MonitorKind::Monitor,
                &spec
            )
            .is_err());
        }
        let bad = MonitorSpec {
            profile: Some("full"),
            ..Default::default()
        };
        let group = || MonitorScope::Group("g".into());
        assert!(Monitor::create(&"m".into(), group(), MonitorKind::Monitor, &bad).is_err());
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
            MonitorKind::Monitor,
            &MonitorSpec::default(),
        )
        .unwrap();
        let m = Monitor::from_events(&events);
        let t0 = at("2026-11-30T10:00:00Z");
        assert!(m.due(t0));
        events.extend(
            m.trigger(t0, false, vec!["s".into()], vec![], vec![])
                .unwrap(),
        );
        let m = Monitor::from_events(&events);
        assert!(!m.due(t0 + Duration::hours(23)));
        assert!(m
            .trigger(t0 + Duration::hours(1), false, vec![], vec![], vec![])
            .unwrap()
            .is_empty());
        assert_eq!(
            m.trigger(t0 + Duration::hours(1), true, vec![], vec![], vec![])
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
        assert!(m.trigger(t0, true, vec![], vec![], vec![]).is_err());
    }

    #[test]
    fn schedules_run_every_1_to_90_days() {
        let days = |d: i64| MonitorSpec {
            frequency_hours: Some(d * 24),
            ..Default::default()
        };
        let asset = || MonitorScope::Asset("a".into());
        let events =
            Monitor::create(&"s".into(), asset(), MonitorKind::Schedule, &days(90)).unwrap();
        let s = Monitor::from_events(&events);
        assert_eq!((s.kind, s.frequency_hours), (MonitorKind::Schedule, 2160));
        for bad in [
            days(0),
            days(91),
            MonitorSpec {
                frequency_hours: Some(25),
                ..Default::default()
            },
        ] {
            let e = Monitor::create(&"s".into(), asset(), MonitorKind::Schedule, &bad).unwrap_err();
            assert!(e.to_string().contains("frequencyDays"), "{e}");
        }
        assert!(s.update(&days(91)).is_err());
        assert_eq!(s.update(&days(7)).unwrap().len(), 1);
        // A monitor keeps its limit of 720 hours.
        assert!(Monitor::create(&"m".into(), asset(), MonitorKind::Monitor, &days(31)).is_err());
    }
}
