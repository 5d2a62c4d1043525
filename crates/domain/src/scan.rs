//! Scan jobs: requested, taken by a worker (again if one dies), progressing, and ended exactly
//! once (completed, failed or cancelled).

use crate::{Aggregate, DomainError, JobStatus};
use easm_events::{AssetId, ScanJobId};
use easm_events::{
    Event, Observed, ScanCancelled, ScanCompleted, ScanDeleted, ScanFailed, ScanProgressed,
    ScanRequested, ScanStarted, SeverityCounts,
};

pub const PROFILES: [&str; 3] = ["quick", "standard", "deep"];
/// Ports one job may name explicitly.
pub const MAX_PORTS: usize = 1000;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanJob {
    pub id: ScanJobId,
    pub asset_id: AssetId,
    pub profile: String,
    pub ports: Option<Vec<u16>>,
    pub status: JobStatus,
    pub progress: u8,
    /// Workers that took the job so far.
    pub attempts: u32,
    pub deleted: bool,
}

/// Reservation key of an active job: one per asset and profile at a time.
pub fn active_scan_key(asset_id: &AssetId, profile: &str) -> String {
    format!("{asset_id}/{profile}")
}

pub fn validate_profile(profile: &str) -> Result<String, DomainError> {
    let p = profile.trim().to_ascii_lowercase();
    if PROFILES.contains(&p.as_str()) {
        Ok(p)
    } else {
        Err(DomainError::validation(
            "profile",
            "must be quick, standard or deep",
        ))
    }
}

/// Explicit ports: 1 to 65535, at most [`MAX_PORTS`], sorted without repeats.
pub fn validate_ports(ports: &[i64]) -> Result<Vec<u16>, DomainError> {
    if ports.is_empty() || ports.len() > MAX_PORTS {
        return Err(DomainError::validation(
            "ports",
            format!("must hold 1 to {MAX_PORTS} ports"),
        ));
    }
    let mut out = Vec::with_capacity(ports.len());
    for &p in ports {
        let port = u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
            DomainError::validation("ports", format!("{p} is not a port (1 to 65535)"))
        })?;
        out.push(port);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The host the built-in scanner probes for an asset: the name or address itself, or a URL's
/// host. A CIDR range is not one host.
pub fn scan_host(asset_type: &str, value: &str) -> Result<String, String> {
    match asset_type {
        "cidr" => Err(format!(
            "{value} is a CIDR range; the built-in scanner probes one host, so add the addresses to scan as ip assets"
        )),
        "url" => url::Url::parse(value)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .ok_or_else(|| format!("{value} has no host to scan")),
        _ => Ok(value.to_string()),
    }
}

impl ScanJob {
    /// The job exists and was not deleted.
    pub fn require(&self) -> Result<(), DomainError> {
        if self.status == JobStatus::None || self.deleted {
            Err(DomainError::NotFound {
                resource: "scan job",
            })
        } else {
            Ok(())
        }
    }

    fn finished(&self) -> DomainError {
        DomainError::Conflict {
            message: format!("the scan job is already {}", self.status.as_str()),
            existing_id: None,
        }
    }

    /// A new job for a live asset (the caller checks the asset, the active slot and the quota).
    pub fn request(
        id: &ScanJobId,
        asset_id: &AssetId,
        profile: &str,
        ports: Option<&[i64]>,
        rerun_of: Option<&ScanJobId>,
    ) -> Result<Vec<Event>, DomainError> {
        Ok(vec![Event::ScanRequested(ScanRequested {
            scan_job_id: id.into(),
            asset_id: asset_id.into(),
            profile: validate_profile(profile)?,
            ports: ports.map(validate_ports).transpose()?,
            rerun_of: rerun_of.cloned(),
        })])
    }

    /// A worker takes the job: a queued one, or a running one whose worker died.
    pub fn start(&self, worker_id: &str) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        if !self.status.active() {
            return Err(self.finished());
        }
        Ok(vec![Event::ScanStarted(ScanStarted {
            scan_job_id: self.id.clone(),
            worker_id: worker_id.into(),
            attempt: self.attempts + 1,
        })])
    }

    /// Progress of a running job; nothing once it ended or when nothing moved.
    pub fn progress(&self, progress: u8, stage: &str) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        let progress = progress.min(100);
        if self.status != JobStatus::Running || progress <= self.progress {
            return Ok(vec![]);
        }
        Ok(vec![Event::ScanProgressed(ScanProgressed {
            scan_job_id: self.id.clone(),
            progress,
            stage: stage.into(),
        })])
    }

    /// Completes once: a second report (a retried worker) records nothing.
    pub fn complete(
        &self,
        counts: SeverityCounts,
        observed: Observed,
    ) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        match self.status {
            JobStatus::Running => Ok(vec![Event::ScanCompleted(ScanCompleted {
                scan_job_id: self.id.clone(),
                asset_id: self.asset_id.clone(),
                profile: self.profile.clone(),
                counts,
                observed,
            })]),
            JobStatus::Queued => Err(DomainError::Conflict {
                message: "the scan job has not started".into(),
                existing_id: None,
            }),
            _ => Ok(vec![]),
        }
    }

    pub fn fail(&self, reason: &str) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        if !self.status.active() {
            return Ok(vec![]);
        }
        Ok(vec![Event::ScanFailed(ScanFailed {
            scan_job_id: self.id.clone(),
            asset_id: self.asset_id.clone(),
            reason: reason.into(),
        })])
    }

    pub fn cancel(&self) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        if !self.status.active() {
            return Err(self.finished());
        }
        Ok(vec![Event::ScanCancelled(ScanCancelled {
            scan_job_id: self.id.clone(),
        })])
    }

    /// Delete, cancelling first if it still runs.
    pub fn delete(&self) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        let mut events = if self.status.active() {
            self.cancel()?
        } else {
            vec![]
        };
        events.push(Event::ScanDeleted(ScanDeleted {
            scan_job_id: self.id.clone(),
        }));
        Ok(events)
    }
}

impl Aggregate for ScanJob {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::ScanRequested(e) => {
                *self = ScanJob {
                    id: e.scan_job_id.clone(),
                    asset_id: e.asset_id.clone(),
                    profile: e.profile.clone(),
                    ports: e.ports.clone(),
                    status: JobStatus::Queued,
                    ..ScanJob::default()
                }
            }
            Event::ScanStarted(e) => {
                self.status = JobStatus::Running;
                self.attempts = e.attempt;
            }
            Event::ScanProgressed(e) => self.progress = e.progress,
            Event::ScanCompleted(_) => {
                self.status = JobStatus::Completed;
                self.progress = 100;
            }
            Event::ScanFailed(_) => self.status = JobStatus::Failed,
            Event::ScanCancelled(_) => self.status = JobStatus::Cancelled,
            Event::ScanDeleted(_) => self.deleted = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(events: &[Event]) -> ScanJob {
        ScanJob::from_events(events)
    }

    fn requested() -> Vec<Event> {
        ScanJob::request(
            &"s".into(),
            &"a".into(),
            "Quick",
            Some(&[443, 80, 443]),
            None,
        )
        .unwrap()
    }

    #[test]
    fn requests_are_validated() {
        let Event::ScanRequested(r) = &requested()[0] else {
            panic!()
        };
        assert_eq!(r.profile, "quick");
        assert_eq!(r.ports, Some(vec![80, 443]));
        assert!(ScanJob::request(&"s".into(), &"a".into(), "full", None, None).is_err());
        for bad in [vec![0], vec![65536], vec![-1], vec![]] {
            assert!(ScanJob::request(&"s".into(), &"a".into(), "deep", Some(&bad), None).is_err());
        }
        let many: Vec<i64> = (1..=1001).collect();
        assert!(ScanJob::request(&"s".into(), &"a".into(), "deep", Some(&many), None).is_err());
        assert_eq!(active_scan_key(&"a".into(), "quick"), "a/quick");
        assert_eq!(scan_host("ip", "127.0.0.1").unwrap(), "127.0.0.1");
        assert_eq!(
            scan_host("url", "https://app.example.com:8443/x").unwrap(),
            "app.example.com"
        );
        assert!(scan_host("cidr", "10.0.0.0/24")
            .unwrap_err()
            .contains("CIDR"));
    }

    #[test]
    fn a_job_runs_and_completes_exactly_once() {
        let mut events = requested();
        let j = job(&events);
        assert_eq!(j.status, JobStatus::Queued);
        assert!(j
            .complete(SeverityCounts::default(), Observed::default())
            .is_err());
        events.extend(j.start("w1").unwrap());
        let j = job(&events);
        assert_eq!((j.status, j.attempts), (JobStatus::Running, 1));
        // The worker died; another takes the job over.
        events.extend(j.start("w2").unwrap());
        let j = job(&events);
        assert_eq!(j.attempts, 2);
        events.extend(j.progress(40, "ports").unwrap());
        let j = job(&events);
        assert!(j.progress(30, "ports").unwrap().is_empty());
        events.extend(
            j.complete(SeverityCounts::default(), Observed::default())
                .unwrap(),
        );
        let j = job(&events);
        assert_eq!((j.status, j.progress), (JobStatus::Completed, 100));
        assert!(j
            .complete(SeverityCounts::default(), Observed::default())
            .unwrap()
            .is_empty());
        assert!(j.fail("late").unwrap().is_empty());
        assert!(j.start("w3").is_err());
        assert!(j.cancel().is_err());
    }

    #[test]
    fn cancel_and_delete() {
        let mut events = requested();
        events.extend(job(&events).cancel().unwrap());
        let j = job(&events);
        assert_eq!(j.status, JobStatus::Cancelled);
        assert!(j.start("w").is_err());
        let running = {
            let mut e = requested();
            e.extend(job(&e).start("w").unwrap());
            e
        };
        let deleted = job(&running).delete().unwrap();
        assert!(matches!(deleted[0], Event::ScanCancelled(_)));
        assert!(matches!(deleted[1], Event::ScanDeleted(_)));
        let mut all = running.clone();
        all.extend(deleted);
        assert!(matches!(
            job(&all).cancel(),
            Err(DomainError::NotFound { .. })
        ));
        assert!(matches!(
            ScanJob::default().start("w"),
            Err(DomainError::NotFound { .. })
        ));
    }
}
