//! Findings: one per (organization, asset, templateId, matchedAt, matcher name), whatever scan
//! or import detects it again; triage statuses, reopening on re-detection, and auto-resolution
//! when a completed scan of a profile that detected it no longer does.

use crate::{Aggregate, DetectedBy, DomainError};
use easm_events::{AssetId, FindingId, OrgId};
use easm_events::{
    Detection, Event, FindingNew, FindingRedetected, FindingReopened, FindingResolved,
    FindingStatus, FindingStatusChanged, FindingUpdated, Severity,
};
use sha2::{Digest, Sha256};

const MAX_TEXT: usize = 16 * 1024;
const MAX_SHORT: usize = 512;
const MAX_NOTES: usize = 4096;

/// The finding's id follows from what makes it the same finding, so a detection finds its
/// stream without a look-up and two workers reporting it at once meet on one stream.
pub fn finding_id(
    org_id: &OrgId,
    asset_id: &AssetId,
    template_id: &str,
    matched_at: &str,
    matcher_name: &str,
) -> FindingId {
    let mut h = Sha256::new();
    for part in [
        org_id.as_str(),
        asset_id.as_str(),
        template_id,
        matched_at,
        matcher_name,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let hex = hex_lower(&h.finalize()[..16]);
    FindingId::new(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn bounded(field: &str, value: &str, max: usize, required: bool) -> Result<String, DomainError> {
    let v = value.trim();
    if required && v.is_empty() {
        return Err(DomainError::validation(field, "is required"));
    }
    if v.chars().count() > max {
        return Err(DomainError::validation(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(v.to_string())
}

/// A detection as a scanner or an import reports it, checked and trimmed.
pub fn validate_detection(d: &Detection) -> Result<Detection, DomainError> {
    let severity = d.severity.trim().to_ascii_lowercase();
    if Severity::parse(&severity).is_none() {
        return Err(DomainError::validation(
            "severity",
            "must be critical, high, medium, low or info",
        ));
    }
    if let Some(score) = d.cvss_score {
        if !(0.0..=10.0).contains(&score) {
            return Err(DomainError::validation(
                "cvssScore",
                "must be between 0 and 10",
            ));
        }
    }
    if !["easm", "nuclei", "discovery"].contains(&d.source.as_str()) {
        return Err(DomainError::validation(
            "source",
            "must be easm, nuclei or discovery",
        ));
    }
    Ok(Detection {
        template_id: bounded("templateId", &d.template_id, MAX_SHORT, true)?,
        title: bounded("title", &d.title, MAX_SHORT, true)?,
        severity,
        category: bounded("category", &d.category, MAX_SHORT, false)?,
        description: bounded("description", &d.description, MAX_TEXT, false)?,
        evidence: bounded("evidence", &d.evidence, MAX_TEXT, false)?,
        remediation: bounded("remediation", &d.remediation, MAX_TEXT, false)?,
        references: d
            .references
            .iter()
            .map(|r| bounded("references", r, MAX_SHORT, true))
            .collect::<Result<_, _>>()?,
        cve: d
            .cve
            .as_deref()
            .map(|c| bounded("cve", c, 64, true))
            .transpose()?,
        cwe: d
            .cwe
            .as_deref()
            .map(|c| bounded("cwe", c, 64, true))
            .transpose()?,
        cvss_score: d.cvss_score,
        matched_at: bounded("matchedAt", &d.matched_at, MAX_SHORT, true)?,
        matcher_name: bounded("matcherName", &d.matcher_name, MAX_SHORT, false)?,
        source: d.source.clone(),
    })
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Finding {
    pub id: FindingId,
    pub asset_id: AssetId,
    pub status: FindingStatus,
    /// The jobs (scans, imports, discovery) that detected it.
    pub detected_by: Vec<DetectedBy>,
    /// Profiles of the scans that detected it (auto-resolution only follows those).
    pub profiles: Vec<String>,
    pub source: String,
    pub template_id: String,
    pub matched_at: String,
}

/// The port of a `host:port` or URL `matchedAt`, None when it names no port.
pub fn matched_port(matched_at: &str) -> Option<u16> {
    if let Ok(u) = url::Url::parse(matched_at) {
        if u.has_host() {
            return u.port_or_known_default();
        }
    }
    let (_, port) = matched_at.rsplit_once(':')?;
    port.parse().ok()
}

impl Finding {
    pub fn exists(&self) -> bool {
        !self.id.is_empty()
    }

    /// A detection by `by` (of `profile`: the scan's, `discovery`, or None for imports). The
    /// same job reporting again (a retried worker) records nothing.
    pub fn detect(
        &self,
        id: &FindingId,
        asset_id: &AssetId,
        by: &DetectedBy,
        profile: Option<&str>,
        detection: &Detection,
    ) -> Result<Vec<Event>, DomainError> {
        let detection = validate_detection(detection)?;
        if !self.exists() {
            return Ok(vec![Event::FindingNew(FindingNew {
                finding_id: id.into(),
                asset_id: asset_id.into(),
                scan_job_id: by.scan(),
                discovery_job_id: by.discovery(),
                profile: profile.map(str::to_string),
                detection: Box::new(detection),
            })]);
        }
        if self.detected_by.contains(by) {
            return Ok(vec![]);
        }
        let mut events = vec![];
        if self.status == FindingStatus::Resolved {
            events.push(Event::FindingReopened(FindingReopened {
                finding_id: self.id.clone(),
                scan_job_id: by.scan(),
                discovery_job_id: by.discovery(),
                notes: None,
            }));
        }
        events.push(Event::FindingRedetected(FindingRedetected {
            finding_id: self.id.clone(),
            scan_job_id: by.scan(),
            discovery_job_id: by.discovery(),
            profile: profile.map(str::to_string),
            evidence: detection.evidence,
        }));
        Ok(events)
    }

    fn require(&self) -> Result<(), DomainError> {
        if self.exists() {
            Ok(())
        } else {
            Err(DomainError::NotFound {
                resource: "finding",
            })
        }
    }

    /// Triage: one event per change, named after where it goes (`finding.resolved`,
    /// `finding.reopened` from resolved to open, `finding.status_changed` otherwise).
    pub fn change_status(&self, to: &str, notes: Option<&str>) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        let Some(to) = FindingStatus::parse(&to.trim().to_ascii_lowercase()) else {
            return Err(DomainError::validation(
                "status",
                "must be open, acknowledged, resolved or ignored",
            ));
        };
        let notes = notes
            .map(|n| bounded("notes", n, MAX_NOTES, false))
            .transpose()?
            .filter(|n| !n.is_empty());
        if to == self.status {
            return Ok(vec![]);
        }
        let from = self.status;
        let id = self.id.clone();
        Ok(vec![match (from, to) {
            (_, FindingStatus::Resolved) => Event::FindingResolved(FindingResolved {
                finding_id: id,
                from,
                scan_job_id: None,
                discovery_job_id: None,
                notes,
            }),
            (FindingStatus::Resolved, FindingStatus::Open) => {
                Event::FindingReopened(FindingReopened {
                    finding_id: id,
                    scan_job_id: None,
                    discovery_job_id: None,
                    notes,
                })
            }
            _ => Event::FindingStatusChanged(FindingStatusChanged {
                finding_id: id,
                from,
                to,
                notes,
            }),
        }])
    }

    /// A completed job of `profile` (`discovery` for discovery jobs) over `ports` did not
    /// detect it: resolve it if that profile ever did, the job tried its port, and it is open or
    /// acknowledged (ignored findings stay ignored).
    pub fn auto_resolve(&self, by: &DetectedBy, profile: &str, ports: &[u16]) -> Vec<Event> {
        let covered = matched_port(&self.matched_at).is_none_or(|p| ports.contains(&p));
        let eligible = self.status.unresolved()
            && covered
            && self.profiles.iter().any(|p| p == profile)
            && !self.detected_by.contains(by);
        if !eligible {
            return vec![];
        }
        let what = match by {
            DetectedBy::Scan(id) => format!("the completed {profile} scan {id}"),
            DetectedBy::Discovery(id) => format!("the completed discovery job {id}"),
        };
        vec![Event::FindingResolved(FindingResolved {
            finding_id: self.id.clone(),
            from: self.status,
            scan_job_id: by.scan(),
            discovery_job_id: by.discovery(),
            notes: Some(format!("not detected by {what}")),
        })]
    }

    /// Assignee and notes; an empty assignee clears it.
    pub fn update(
        &self,
        assignee: Option<&str>,
        notes: Option<&str>,
    ) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        let assignee = assignee
            .map(|a| bounded("assignee", a, MAX_SHORT, false))
            .transpose()?;
        let notes = notes
            .map(|n| bounded("notes", n, MAX_NOTES, false))
            .transpose()?;
        if assignee.is_none() && notes.is_none() {
            return Ok(vec![]);
        }
        Ok(vec![Event::FindingUpdated(FindingUpdated {
            finding_id: self.id.clone(),
            assignee,
            notes,
        })])
    }
}

impl Aggregate for Finding {
    fn apply(&mut self, event: &Event) {
        let mut detected = |job: Option<DetectedBy>, profile: &Option<String>| {
            if let Some(job) = job.filter(|j| !self.detected_by.contains(j)) {
                self.detected_by.push(job);
            }
            if let Some(p) = profile {
                if !self.profiles.contains(p) {
                    self.profiles.push(p.clone());
                }
            }
        };
        match event {
            Event::FindingNew(e) => {
                detected(
                    DetectedBy::of(&e.scan_job_id, &e.discovery_job_id),
                    &e.profile,
                );
                self.id = e.finding_id.clone();
                self.asset_id = e.asset_id.clone();
                self.status = FindingStatus::Open;
                self.source = e.detection.source.clone();
                self.template_id = e.detection.template_id.clone();
                self.matched_at = e.detection.matched_at.clone();
            }
            Event::FindingRedetected(e) => detected(
                DetectedBy::of(&e.scan_job_id, &e.discovery_job_id),
                &e.profile,
            ),
            Event::FindingReopened(_) => self.status = FindingStatus::Open,
            Event::FindingResolved(_) => self.status = FindingStatus::Resolved,
            Event::FindingStatusChanged(e) => self.status = e.to,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(id: &str) -> DetectedBy {
        DetectedBy::Scan(id.into())
    }

    fn detection() -> Detection {
        Detection {
            template_id: "tls.expired-cert".into(),
            title: "Expired TLS certificate".into(),
            severity: "HIGH".into(),
            matched_at: "127.0.0.1:8443".into(),
            source: "easm".into(),
            ..Default::default()
        }
    }

    /// `d` detected on the asset `a` as the finding `f` by the scan `job`.
    fn detect(
        f: &Finding,
        job: &str,
        profile: Option<&str>,
        d: &Detection,
    ) -> Result<Vec<Event>, DomainError> {
        f.detect(&"f".into(), &"a".into(), &scan(job), profile, d)
    }

    fn fold(events: &[Event]) -> Finding {
        Finding::from_events(events)
    }

    #[test]
    fn ids_follow_the_deduplication_key() {
        let a = finding_id(&"o".into(), &"a".into(), "t", "h:1", "");
        assert_eq!(a, finding_id(&"o".into(), &"a".into(), "t", "h:1", ""));
        assert_ne!(a, finding_id(&"o".into(), &"a".into(), "t", "h:2", ""));
        assert_ne!(a, finding_id(&"o".into(), &"a".into(), "t", "h:1", "m"));
        // Parts cannot run into each other.
        assert_ne!(
            finding_id(&"o".into(), &"ab".into(), "c", "", ""),
            finding_id(&"o".into(), &"a".into(), "bc", "", "")
        );
        assert_eq!(a.as_str().len(), 36);
    }

    #[test]
    fn detections_create_then_count_then_reopen() {
        let f = Finding::default();
        let mut events = detect(&f, "s1", Some("quick"), &detection()).unwrap();
        let Event::FindingNew(n) = &events[0] else {
            panic!()
        };
        assert_eq!(n.detection.severity, "high");
        let f = fold(&events);
        assert_eq!(f.status, FindingStatus::Open);
        // The same job reporting twice records it once.
        assert!(detect(&f, "s1", Some("quick"), &detection())
            .unwrap()
            .is_empty());
        events.extend(detect(&f, "s2", Some("deep"), &detection()).unwrap());
        let f = fold(&events);
        assert_eq!(f.detected_by, vec![scan("s1"), scan("s2")]);
        assert_eq!(f.profiles, vec!["quick", "deep"]);
        events.extend(f.change_status("resolved", Some("fixed")).unwrap());
        let f = fold(&events);
        let again = detect(&f, "s3", Some("quick"), &detection()).unwrap();
        assert!(matches!(again[0], Event::FindingReopened(_)));
        assert!(matches!(again[1], Event::FindingRedetected(_)));
        events.extend(again);
        assert_eq!(fold(&events).status, FindingStatus::Open);
    }

    #[test]
    fn detections_are_validated() {
        let mut d = detection();
        d.severity = "severe".into();
        assert!(detect(&Finding::default(), "s", None, &d).is_err());
        let mut d = detection();
        d.cvss_score = Some(11.0);
        assert!(detect(&Finding::default(), "s", None, &d).is_err());
        let mut d = detection();
        d.title = "  ".into();
        assert!(detect(&Finding::default(), "s", None, &d).is_err());
    }

    #[test]
    fn status_changes_are_named_after_their_target() {
        let events = detect(&Finding::default(), "s1", Some("quick"), &detection()).unwrap();
        let f = fold(&events);
        assert!(f.change_status("open", None).unwrap().is_empty());
        assert!(f.change_status("closed", None).is_err());
        let ack = f.change_status("acknowledged", Some("on it")).unwrap();
        assert!(
            matches!(&ack[0], Event::FindingStatusChanged(c) if c.from == FindingStatus::Open && c.to == FindingStatus::Acknowledged)
        );
        let resolved = f.change_status("resolved", None).unwrap();
        assert!(matches!(&resolved[0], Event::FindingResolved(r) if r.from == FindingStatus::Open));
        let mut all = events.clone();
        all.extend(resolved);
        let reopened = fold(&all).change_status("open", None).unwrap();
        assert!(matches!(reopened[0], Event::FindingReopened(_)));
        assert!(matches!(
            Finding::default().change_status("open", None),
            Err(DomainError::NotFound { .. })
        ));
    }

    #[test]
    fn auto_resolution_follows_the_profiles_that_detected_it() {
        let events = detect(&Finding::default(), "s1", Some("deep"), &detection()).unwrap();
        let f = fold(&events);
        assert!(
            f.auto_resolve(&scan("s2"), "quick", &[8443]).is_empty(),
            "quick never saw it"
        );
        assert!(
            f.auto_resolve(&scan("s1"), "deep", &[8443]).is_empty(),
            "the detecting job itself"
        );
        assert!(
            f.auto_resolve(&scan("s2"), "deep", &[80]).is_empty(),
            "the scan did not try its port"
        );
        let r = f.auto_resolve(&scan("s2"), "deep", &[80, 8443]);
        assert!(matches!(&r[0], Event::FindingResolved(x) if x.scan_job_id == Some("s2".into())));
        let mut ignored = events.clone();
        ignored.extend(f.change_status("ignored", None).unwrap());
        assert!(fold(&ignored)
            .auto_resolve(&scan("s2"), "deep", &[8443])
            .is_empty());
    }

    #[test]
    fn ports_of_matched_at() {
        assert_eq!(matched_port("127.0.0.1:8443"), Some(8443));
        assert_eq!(matched_port("[::1]:22"), Some(22));
        assert_eq!(matched_port("https://a.example.com/.git/HEAD"), Some(443));
        assert_eq!(matched_port("http://a.example.com:8080/"), Some(8080));
        assert_eq!(matched_port("a.example.com"), None);
    }

    #[test]
    fn triage_fields() {
        let events = detect(&Finding::default(), "s1", None, &detection()).unwrap();
        let f = fold(&events);
        assert!(f.update(None, None).unwrap().is_empty());
        let u = f.update(Some("alice"), Some("see ticket 42")).unwrap();
        assert!(
            matches!(&u[0], Event::FindingUpdated(x) if x.assignee.as_deref() == Some("alice"))
        );
        assert!(f.update(Some(&"x".repeat(600)), None).is_err());
    }

    #[test]
    fn a_discovery_job_detects_and_auto_resolves_its_own_findings() {
        let mut d = detection();
        d.template_id = "dns.zone-transfer".into();
        d.matched_at = "example.com@ns.example.com".into();
        d.source = "discovery".into();
        let by = DetectedBy::Discovery("d1".into());
        let new = Finding::default()
            .detect(&"f".into(), &"a".into(), &by, Some("discovery"), &d)
            .unwrap();
        let Event::FindingNew(n) = &new[0] else {
            panic!()
        };
        assert_eq!(
            (n.scan_job_id.clone(), n.discovery_job_id.clone()),
            (None, Some("d1".into()))
        );
        let f = Finding::from_events(&new);
        assert!(f
            .detect(&"f".into(), &"a".into(), &by, Some("discovery"), &d)
            .unwrap()
            .is_empty());
        let later = DetectedBy::Discovery("d2".into());
        assert!(
            f.auto_resolve(&scan("s9"), "quick", &[]).is_empty(),
            "a scan never resolves it"
        );
        let r = f.auto_resolve(&later, "discovery", &[]);
        let Event::FindingResolved(x) = &r[0] else {
            panic!()
        };
        assert_eq!(x.discovery_job_id, Some("d2".into()));
        assert!(x.notes.as_deref().unwrap().contains("discovery job d2"));
    }
}
