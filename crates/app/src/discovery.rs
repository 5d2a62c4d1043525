//! Discovery jobs: requested within the month's quota, cancelled, and their findings promoted to
//! assets through the API; started, advanced, fed names and ended by the scan workers.

use crate::execute::{Decision, Quota};
use crate::streams::{
    alert_stream, discovery_stream, finding_stream, monitor_stream, month_discoveries, ASSET_VALUES,
};
use crate::{new_id, App, CommandError};
use easm_domain::{
    new_subdomain, DetectedBy, DiscoveryJob, DomainError, Finding, JobStatus, Limits, Monitor,
    NewAsset, Plan,
};
use easm_events::{
    AlertId, AssetId, Detection, DiscoveryCompleted, DiscoveryJobId, Event, EventMeta, FoundName,
    GroupId, MonitorId, OrgId,
};
use easm_projections::read::AssetView;
use easm_store::StreamAppend;
use std::sync::atomic::{AtomicBool, Ordering};

/// The profile of the findings discovery detects.
const DISCOVERY: &str = "discovery";

/// The templates a completed job can tell are gone: a dangling alias whenever it ran, an open
/// zone transfer only when the `axfr` module asked without failing.
fn resolvable_templates(summary: &DiscoveryCompleted) -> Vec<&'static str> {
    let mut out = vec!["dns.dangling-cname"];
    if summary
        .modules
        .iter()
        .any(|m| m.module == "axfr" && m.error.is_none())
    {
        out.push("dns.zone-transfer");
    }
    out
}

/// The group promoted items go to when the caller names none; created on first use.
pub const DISCOVERED_GROUP: &str = "Discovered";

/// What a promotion did.
#[derive(Debug, Default)]
pub struct Promoted {
    pub added: Vec<AssetView>,
    /// Values left out, with the reason.
    pub skipped: Vec<(String, String)>,
}

impl App {
    /// Queue a discovery job within the plan's discovery jobs per month (402).
    pub async fn request_discovery(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        plan: Plan,
        domains: &[String],
        deep: bool,
        monitor_id: Option<&MonitorId>,
    ) -> Result<DiscoveryJobId, CommandError> {
        let id = new_id();
        let events = DiscoveryJob::request(&id, domains, deep, monitor_id)?;
        let month = month_discoveries(chrono::Utc::now());
        let limit = Limits::of(plan).discovery_jobs_per_month;
        self.execute(org_id, meta, || async {
            let mut d = Decision::one(discovery_stream(&id), 0, events.clone());
            let quota = Quota {
                scope: &month,
                name: "discovery jobs per month",
                max: limit,
                plan,
            };
            self.within(org_id, &quota, id.as_str(), &mut d).await?;
            Ok(d)
        })
        .await?;
        Ok(id)
    }

    async fn on_discovery(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &DiscoveryJobId,
        decide: impl Fn(&DiscoveryJob) -> Result<Vec<Event>, DomainError>,
    ) -> Result<(), CommandError> {
        let stream = discovery_stream(id);
        self.execute(org_id, meta, || async {
            let (v, job) = self.load::<DiscoveryJob>(org_id, &stream).await?;
            Ok(Decision::one(stream.clone(), v, decide(&job)?))
        })
        .await?;
        Ok(())
    }

    pub async fn cancel_discovery(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &DiscoveryJobId,
    ) -> Result<(), CommandError> {
        self.on_discovery(meta, org_id, id, DiscoveryJob::cancel)
            .await
    }

    /// A worker takes a queued job, or a running one whose worker died; None when there is
    /// nothing to run.
    pub async fn start_discovery(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &DiscoveryJobId,
        worker_id: &str,
    ) -> Result<Option<DiscoveryJob>, CommandError> {
        let stream = discovery_stream(id);
        let (_, job) = self.load::<DiscoveryJob>(org_id, &stream).await?;
        if job.require().is_err() || !job.status.active() {
            return Ok(None);
        }
        match self
            .on_discovery(meta, org_id, id, |j| j.start(worker_id))
            .await
        {
            Err(CommandError::Domain(
                DomainError::Conflict { .. } | DomainError::NotFound { .. },
            )) => return Ok(None),
            r => r?,
        }
        let (_, job) = self.load::<DiscoveryJob>(org_id, &stream).await?;
        Ok(Some(job))
    }

    /// Record a change of a running job; false once it no longer runs (cancelled, ended), so
    /// the worker stops.
    async fn while_running(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &DiscoveryJobId,
        decide: impl Fn(&DiscoveryJob) -> Result<Vec<Event>, DomainError>,
    ) -> Result<bool, CommandError> {
        let running = AtomicBool::new(false);
        self.on_discovery(meta, org_id, id, |j| {
            running.store(j.status == JobStatus::Running, Ordering::Relaxed);
            decide(j)
        })
        .await?;
        Ok(running.load(Ordering::Relaxed))
    }

    pub async fn discovery_progress(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &DiscoveryJobId,
        progress: u8,
        stage: &str,
    ) -> Result<bool, CommandError> {
        self.while_running(meta, org_id, id, |j| j.progress(progress, stage))
            .await
    }

    /// A batch of names a running job found.
    pub async fn discovery_found(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &DiscoveryJobId,
        names: &[FoundName],
    ) -> Result<bool, CommandError> {
        self.while_running(meta, org_id, id, |j| j.found(names.to_vec()))
            .await
    }

    pub async fn fail_discovery(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &DiscoveryJobId,
        reason: &str,
    ) -> Result<(), CommandError> {
        self.on_discovery(meta, org_id, id, |j| j.fail(reason))
            .await
    }

    /// End a running job once, naming the names no earlier job of the organization found.
    /// What it detected (by root domain) becomes findings of the domains that are assets of
    /// the organization, under the scanner's rules: deduplicated, reopened when detected again,
    /// and resolved in the completing append when a module that ran cleanly no longer sees
    /// them.
    pub async fn complete_discovery(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &DiscoveryJobId,
        summary: DiscoveryCompleted,
        detections: &[(String, Detection)],
    ) -> Result<(), CommandError> {
        let stream = discovery_stream(id);
        let (_, job) = self.load::<DiscoveryJob>(org_id, &stream).await?;
        if job.require().is_err() || job.status != JobStatus::Running {
            return Ok(());
        }
        let by = DetectedBy::Discovery(id.clone());
        let assets: Vec<(String, AssetId)> = self
            .log
            .reservations(org_id, ASSET_VALUES, &job.domains)
            .await?
            .into_iter()
            .map(|(domain, owner)| (domain, AssetId::new(owner)))
            .collect();
        for (domain, asset) in &assets {
            let found: Vec<Detection> = detections
                .iter()
                .filter(|(d, _)| d == domain)
                .map(|(_, x)| x.clone())
                .collect();
            self.record_detections(meta, org_id, &by, asset, Some(DISCOVERY), &found)
                .await?;
        }
        let resolvable = resolvable_templates(&summary);
        let summary = DiscoveryCompleted {
            new_names: self.read.first_found_names(org_id, id).await?,
            ..summary
        };
        let alerts = self
            .new_subdomain_alerts(org_id, &job, &assets, &summary.new_names)
            .await?;
        self.execute(org_id, meta, || async {
            let (v, job) = self.load::<DiscoveryJob>(org_id, &stream).await?;
            let mut d = Decision::one(stream.clone(), v, job.complete(summary.clone())?);
            if d.is_empty() {
                return Ok(d);
            }
            for (_, asset) in &assets {
                for finding in self.read.unresolved_findings(org_id, asset).await? {
                    let fs = finding_stream(&finding);
                    let (fv, f) = self.load::<Finding>(org_id, &fs).await?;
                    if resolvable.contains(&f.template_id.as_str()) {
                        d.push(fs, fv, f.auto_resolve(&by, DISCOVERY, &[]));
                    }
                }
            }
            d.streams.extend(alerts.iter().cloned());
            Ok(d)
        })
        .await?;
        self.refresh_risk(meta, org_id, assets.into_iter().map(|(_, a)| a))
            .await;
        Ok(())
    }

    /// The `new_subdomain` alerts of a monitor's job: one per new name under each of its domains
    /// that is an asset and was discovered before (the first run is the baseline).
    async fn new_subdomain_alerts(
        &self,
        org_id: &OrgId,
        job: &DiscoveryJob,
        assets: &[(String, AssetId)],
        new_names: &[String],
    ) -> Result<Vec<StreamAppend>, CommandError> {
        let Some(monitor_id) = &job.monitor_id else {
            return Ok(vec![]);
        };
        let (_, monitor) = self
            .load::<Monitor>(org_id, &monitor_stream(monitor_id))
            .await?;
        if monitor.require().is_err() || new_names.is_empty() {
            return Ok(vec![]);
        }
        let Some(found) = self.read.discovery_job(org_id, &job.id).await? else {
            return Ok(vec![]);
        };
        let subdomains = found.subdomains.unwrap_or_default();
        let by = DetectedBy::Discovery(job.id.clone());
        let mut out = vec![];
        for (domain, asset) in assets {
            if !self.read.discovered_before(org_id, domain, &job.id).await? {
                continue;
            }
            let suffix = format!(".{domain}");
            for s in subdomains
                .iter()
                .filter(|s| s.name.ends_with(&suffix) && new_names.contains(&s.name))
            {
                let alert_id: AlertId = new_id();
                let change = new_subdomain(domain, &s.name, &s.addresses, &s.sources);
                out.push(StreamAppend {
                    stream_id: alert_stream(&alert_id),
                    expected_version: 0,
                    events: vec![change.into_alert(&alert_id, monitor_id, asset, &by)],
                });
            }
        }
        Ok(out)
    }

    /// Make assets of what a job found, all or nothing: subdomains and addresses into
    /// `group_id`, or the `Discovered` group (created on first use). Values the job did not
    /// find, or that are assets already, are skipped with the reason.
    pub async fn promote_discovered(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        plan: Plan,
        id: &DiscoveryJobId,
        values: &[String],
        group_id: Option<&GroupId>,
    ) -> Result<Promoted, CommandError> {
        let stream = discovery_stream(id);
        let (_, job) = self.load::<DiscoveryJob>(org_id, &stream).await?;
        job.require()?;
        let mut out = Promoted::default();
        let mut items: Vec<NewAsset> = vec![];
        for raw in values {
            match job.promotable(raw) {
                Ok((t, value)) if items.iter().all(|i| i.value != value) => items.push(NewAsset {
                    value,
                    asset_type: t.as_str().into(),
                    tags: Some(vec!["discovered".into()]),
                    criticality: None,
                }),
                Ok(_) => {}
                Err(reason) => out.skipped.push((raw.clone(), reason)),
            }
        }
        let wanted: Vec<String> = items.iter().map(|i| i.value.clone()).collect();
        let existing = self.log.reservations(org_id, ASSET_VALUES, &wanted).await?;
        items.retain(|i| {
            let held = existing.iter().find(|(v, _)| *v == i.value);
            if let Some((v, owner)) = held {
                out.skipped
                    .push((v.clone(), format!("{v} is already an asset ({owner})")));
            }
            held.is_none()
        });
        if items.is_empty() {
            return Ok(out);
        }
        let group = match group_id {
            Some(g) => g.clone(),
            None => match self.read.group_named(org_id, DISCOVERED_GROUP).await? {
                Some(g) => g,
                None => {
                    // A promotion the plan refuses creates no group either.
                    if let Some(max) = Limits::of(plan).assets {
                        let held = self.log.count_reservations(org_id, ASSET_VALUES).await?;
                        if held + items.len() as u64 > max {
                            return Err(DomainError::PlanLimit {
                                limit: "assets",
                                max,
                                plan: plan.as_str().into(),
                            }
                            .into());
                        }
                    }
                    self.create_group(meta, org_id, DISCOVERED_GROUP).await?
                }
            },
        };
        out.added = self
            .add_assets_with(meta, org_id, plan, &group, &items, |events| {
                *events = job.mark_promoted(std::mem::take(events));
                let added: Vec<(AssetId, String)> = events
                    .iter()
                    .filter_map(|e| match e {
                        Event::AssetAdded(a) => Some((a.asset_id.clone(), a.value.clone())),
                        _ => None,
                    })
                    .collect();
                let (stream, group) = (&stream, &group);
                async move {
                    let (v, job) = self.load::<DiscoveryJob>(org_id, stream).await?;
                    Ok(Decision::one(stream.clone(), v, job.promote(group, added)?))
                }
            })
            .await?;
        Ok(out)
    }
}
