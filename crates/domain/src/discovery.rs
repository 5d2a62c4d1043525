//! Discovery jobs: requested over root domains, taken by a worker (again if one dies), finding
//! names in batches, ended exactly once; what they found can be promoted to assets.

use crate::{normalize_value, Aggregate, AssetType, DomainError, JobStatus};
use easm_events::{
    AssetId, DiscoveryCancelled, DiscoveryCompleted, DiscoveryFailed, DiscoveryJobId,
    DiscoveryNamesFound, DiscoveryProgressed, DiscoveryPromoted, DiscoveryRequested,
    DiscoveryStarted, Event, FoundName, GroupId, MonitorId,
};
use std::collections::{BTreeMap, BTreeSet};

/// Root domains one job may take.
pub const MAX_DOMAINS: usize = 20;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiscoveryJob {
    pub id: DiscoveryJobId,
    pub domains: Vec<String>,
    pub deep: bool,
    /// The monitor whose run requested it.
    pub monitor_id: Option<MonitorId>,
    pub status: JobStatus,
    pub progress: u8,
    pub attempts: u32,
    /// Names found so far, with their sources.
    pub names: BTreeMap<String, BTreeSet<String>>,
    /// Addresses the found names resolve to.
    pub addresses: BTreeSet<String>,
    /// Values promoted to assets already.
    pub promoted: BTreeSet<String>,
}

/// Root domains as domain assets take them: normalised, without repeats, 1 to [`MAX_DOMAINS`].
pub fn validate_domains(domains: &[String]) -> Result<Vec<String>, DomainError> {
    if domains.is_empty() || domains.len() > MAX_DOMAINS {
        return Err(DomainError::validation(
            "domains",
            format!("must hold 1 to {MAX_DOMAINS} domains"),
        ));
    }
    let mut out: Vec<String> = vec![];
    for (i, d) in domains.iter().enumerate() {
        let v = normalize_value(AssetType::Domain, d)
            .map_err(|e| DomainError::validation(format!("domains[{i}]"), e))?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

impl DiscoveryJob {
    pub fn require(&self) -> Result<(), DomainError> {
        if self.status == JobStatus::None {
            Err(DomainError::NotFound {
                resource: "discovery job",
            })
        } else {
            Ok(())
        }
    }

    fn ended(&self) -> DomainError {
        DomainError::Conflict {
            message: format!("the discovery job is already {}", self.status.as_str()),
            existing_id: None,
        }
    }

    pub fn request(
        id: &DiscoveryJobId,
        domains: &[String],
        deep: bool,
        monitor_id: Option<&MonitorId>,
    ) -> Result<Vec<Event>, DomainError> {
        Ok(vec![Event::DiscoveryRequested(DiscoveryRequested {
            discovery_job_id: id.clone(),
            domains: validate_domains(domains)?,
            deep,
            monitor_id: monitor_id.cloned(),
        })])
    }

    /// A worker takes the job: a queued one, or a running one whose worker died.
    pub fn start(&self, worker_id: &str) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        if !self.status.active() {
            return Err(self.ended());
        }
        Ok(vec![Event::DiscoveryStarted(DiscoveryStarted {
            discovery_job_id: self.id.clone(),
            worker_id: worker_id.into(),
            attempt: self.attempts + 1,
        })])
    }

    pub fn progress(&self, progress: u8, stage: &str) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        let progress = progress.min(100);
        if self.status != JobStatus::Running || progress <= self.progress {
            return Ok(vec![]);
        }
        Ok(vec![Event::DiscoveryProgressed(DiscoveryProgressed {
            discovery_job_id: self.id.clone(),
            progress,
            stage: stage.into(),
        })])
    }

    /// Names of a running job; only what is new to it (a name, or a source of a known name),
    /// so a worker that reports a batch again records nothing.
    pub fn found(&self, names: Vec<FoundName>) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        if self.status != JobStatus::Running {
            return Ok(vec![]);
        }
        let fresh: Vec<FoundName> = names
            .into_iter()
            .filter(|n| match self.names.get(&n.name) {
                None => true,
                Some(known) => n.sources.iter().any(|s| !known.contains(s)),
            })
            .collect();
        if fresh.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![Event::DiscoveryNamesFound(DiscoveryNamesFound {
            discovery_job_id: self.id.clone(),
            names: fresh,
        })])
    }

    /// Completes once: a second report (a retried worker) records nothing.
    pub fn complete(&self, summary: DiscoveryCompleted) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        match self.status {
            JobStatus::Running => Ok(vec![Event::DiscoveryCompleted(DiscoveryCompleted {
                discovery_job_id: self.id.clone(),
                domains: self.domains.clone(),
                subdomains: self.names.len() as u32,
                ..summary
            })]),
            JobStatus::Queued => Err(DomainError::Conflict {
                message: "the discovery job has not started".into(),
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
        Ok(vec![Event::DiscoveryFailed(DiscoveryFailed {
            discovery_job_id: self.id.clone(),
            reason: reason.into(),
        })])
    }

    pub fn cancel(&self) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        if !self.status.active() {
            return Err(self.ended());
        }
        Ok(vec![Event::DiscoveryCancelled(DiscoveryCancelled {
            discovery_job_id: self.id.clone(),
        })])
    }

    /// The asset a found value becomes, or why it cannot be promoted.
    pub fn promotable(&self, raw: &str) -> Result<(AssetType, String), String> {
        let asset = match raw.trim().parse::<std::net::IpAddr>() {
            Ok(ip) => (AssetType::Ip, ip.to_string()),
            Err(_) => {
                let v = normalize_value(AssetType::Subdomain, raw)?;
                (AssetType::Subdomain, v)
            }
        };
        let found = match asset.0 {
            AssetType::Ip => self.addresses.contains(&asset.1),
            _ => self.names.contains_key(&asset.1),
        };
        if !found {
            return Err(format!("{} was not found by this discovery job", asset.1));
        }
        Ok(asset)
    }

    /// The `asset.added` events of a promotion, each naming this job as the asset's origin (so
    /// the asset's own history shows where it came from).
    pub fn mark_promoted(&self, events: Vec<Event>) -> Vec<Event> {
        events
            .into_iter()
            .map(|e| match e {
                Event::AssetAdded(mut a) => {
                    a.discovery_job_id = Some(self.id.clone());
                    Event::AssetAdded(a)
                }
                e => e,
            })
            .collect()
    }

    pub fn promote(
        &self,
        group_id: &GroupId,
        added: Vec<(AssetId, String)>,
    ) -> Result<Vec<Event>, DomainError> {
        self.require()?;
        if added.is_empty() {
            return Ok(vec![]);
        }
        let (asset_ids, values) = added.into_iter().unzip();
        Ok(vec![Event::DiscoveryPromoted(DiscoveryPromoted {
            discovery_job_id: self.id.clone(),
            group_id: group_id.clone(),
            asset_ids,
            values,
        })])
    }
}

impl Aggregate for DiscoveryJob {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::DiscoveryRequested(e) => {
                self.id = e.discovery_job_id.clone();
                self.domains = e.domains.clone();
                self.deep = e.deep;
                self.monitor_id.clone_from(&e.monitor_id);
                self.status = JobStatus::Queued;
            }
            Event::DiscoveryStarted(e) => {
                self.status = JobStatus::Running;
                self.attempts = e.attempt;
            }
            Event::DiscoveryProgressed(e) => self.progress = e.progress,
            Event::DiscoveryNamesFound(e) => {
                for n in &e.names {
                    self.names
                        .entry(n.name.clone())
                        .or_default()
                        .extend(n.sources.iter().cloned());
                    self.addresses.extend(n.addresses.iter().cloned());
                }
            }
            Event::DiscoveryCompleted(e) => {
                self.status = JobStatus::Completed;
                self.progress = 100;
                self.addresses
                    .extend(e.ips.iter().map(|a| a.address.clone()));
            }
            Event::DiscoveryFailed(_) => self.status = JobStatus::Failed,
            Event::DiscoveryCancelled(_) => self.status = JobStatus::Cancelled,
            Event::DiscoveryPromoted(e) => self.promoted.extend(e.values.iter().cloned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(events: &[Event]) -> DiscoveryJob {
        DiscoveryJob::from_events(events)
    }

    fn name(n: &str, source: &str, addresses: &[&str]) -> FoundName {
        FoundName {
            name: n.into(),
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            sources: vec![source.into()],
            ..Default::default()
        }
    }

    fn running() -> Vec<Event> {
        let mut e =
            DiscoveryJob::request(&"d".into(), &["Example.COM.".into()], false, None).unwrap();
        e.extend(job(&e).start("w1").unwrap());
        e
    }

    #[test]
    fn domains_are_validated_normalised_and_bounded() {
        let Event::DiscoveryRequested(r) = &DiscoveryJob::request(
            &"d".into(),
            &["Example.com".into(), "example.com.".into(), "b.org".into()],
            true,
            None,
        )
        .unwrap()[0] else {
            panic!()
        };
        assert_eq!(r.domains, vec!["example.com", "b.org"]);
        assert!(DiscoveryJob::request(&"d".into(), &[], false, None).is_err());
        assert!(DiscoveryJob::request(&"d".into(), &["not a domain".into()], false, None).is_err());
        let many: Vec<String> = (0..21).map(|i| format!("d{i}.com")).collect();
        assert!(DiscoveryJob::request(&"d".into(), &many, false, None).is_err());
    }

    #[test]
    fn a_batch_reported_again_records_only_what_is_new() {
        let mut events = running();
        let batch = vec![
            name("api.example.com", "bruteforce", &["192.0.2.1"]),
            name("www.example.com", "bruteforce", &["192.0.2.2"]),
        ];
        events.extend(job(&events).found(batch.clone()).unwrap());
        assert!(job(&events).found(batch).unwrap().is_empty());
        let more = job(&events)
            .found(vec![
                name("api.example.com", "ct", &[]),
                name("api.example.com", "bruteforce", &[]),
            ])
            .unwrap();
        let Event::DiscoveryNamesFound(f) = &more[0] else {
            panic!()
        };
        assert_eq!(f.names.len(), 1);
        assert_eq!(f.names[0].sources, vec!["ct"]);
    }

    #[test]
    fn only_found_names_and_addresses_are_promotable() {
        let mut events = running();
        events.extend(
            job(&events)
                .found(vec![name("api.example.com", "ct", &["192.0.2.1"])])
                .unwrap(),
        );
        let j = job(&events);
        assert_eq!(
            j.promotable("API.example.com").unwrap(),
            (AssetType::Subdomain, "api.example.com".into())
        );
        assert_eq!(j.promotable("192.0.2.1").unwrap().0, AssetType::Ip);
        assert!(j
            .promotable("other.example.com")
            .unwrap_err()
            .contains("not found by this discovery job"));
        assert!(j.promotable("192.0.2.9").is_err());
    }

    #[test]
    fn a_job_ends_exactly_once() {
        let queued =
            DiscoveryJob::request(&"d".into(), &["example.com".into()], false, None).unwrap();
        assert!(job(&queued).complete(summary()).is_err());
        let mut events = running();
        events.extend(job(&events).progress(30, "ct").unwrap());
        assert!(job(&events).progress(20, "ct").unwrap().is_empty());
        events.extend(job(&events).complete(summary()).unwrap());
        let j = job(&events);
        assert_eq!((j.status, j.progress), (JobStatus::Completed, 100));
        assert!(j.complete(summary()).unwrap().is_empty());
        assert!(j.fail("late").unwrap().is_empty());
        assert!(j.cancel().is_err());
        assert!(j.start("w2").is_err());
        assert!(j
            .found(vec![name("x.example.com", "ct", &[])])
            .unwrap()
            .is_empty());
    }

    fn summary() -> DiscoveryCompleted {
        DiscoveryCompleted {
            discovery_job_id: "d".into(),
            domains: vec![],
            modules: vec![],
            subdomains: 0,
            new_names: vec![],
            ips: vec![],
            services: vec![],
            wildcard: vec![],
        }
    }
}
