//! Scan jobs: requested (one active per asset and profile, within the month's quota), re-run,
//! cancelled and deleted through the API; started, advanced, completed and failed by workers.

use crate::execute::{Decision, Quota};
use crate::streams::{asset_stream, finding_stream, month_scans, scan_stream, ACTIVE_SCANS};
use crate::{new_id, App, CommandError};
use easm_domain::{
    active_scan_key, Aggregate, Asset, DetectedBy, DomainError, Finding, JobStatus, Limits, Plan,
    ScanJob,
};
use easm_events::{
    AssetId, Detection, Event, EventMeta, Observed, OrgId, ScanJobId, SeverityCounts,
};
use easm_store::Constraint;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a scan is asked for.
pub struct ScanRequest<'a> {
    pub asset_id: &'a AssetId,
    pub profile: &'a str,
    pub ports: Option<&'a [i64]>,
    pub rerun_of: Option<&'a ScanJobId>,
}

impl App {
    /// Queue a scan of a live asset: one active job per asset and profile (409 with the active
    /// job's id), and the plan's scans per month (402).
    pub async fn request_scan(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        plan: Plan,
        req: &ScanRequest<'_>,
    ) -> Result<ScanJobId, CommandError> {
        let id = new_id();
        let asset_id = req.asset_id;
        let events = ScanJob::request(&id, asset_id, req.profile, req.ports, req.rerun_of)?;
        let Some(Event::ScanRequested(requested)) = events.first() else {
            unreachable!("a request is one scan.requested")
        };
        let slot = active_scan_key(asset_id, &requested.profile);
        let month = month_scans(chrono::Utc::now());
        let limit = Limits::of(plan).scans_per_month;
        let asset = asset_stream(asset_id);
        self.execute(org_id, meta, || async {
            let (asset_version, a) = self.load::<Asset>(org_id, &asset).await?;
            if !a.live() {
                return Err(DomainError::NotFound { resource: "asset" }.into());
            }
            if let Some((_, owner)) = self
                .log
                .reservations(org_id, ACTIVE_SCANS, std::slice::from_ref(&slot))
                .await?
                .pop()
            {
                return Err(DomainError::Conflict {
                    message: format!(
                        "a {} scan of this asset is already queued or running",
                        requested.profile
                    ),
                    existing_id: Some(owner),
                }
                .into());
            }
            let mut d = Decision::one(scan_stream(&id), 0, events.clone());
            let quota = Quota {
                scope: &month,
                name: "scans per month",
                max: limit,
                plan,
            };
            self.within(org_id, &quota, id.as_str(), &mut d).await?;
            d.constraints.extend([
                Constraint::Claim {
                    scope: ACTIVE_SCANS.into(),
                    key: slot.clone(),
                    owner: id.to_string(),
                },
                Constraint::StreamAt {
                    stream_id: asset.clone(),
                    version: asset_version,
                },
            ]);
            Ok(d)
        })
        .await?;
        Ok(id)
    }

    /// Run a job again: a new job with the same asset, profile and ports.
    pub async fn rerun_scan(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        plan: Plan,
        id: &ScanJobId,
    ) -> Result<ScanJobId, CommandError> {
        let (_, job) = self.load::<ScanJob>(org_id, &scan_stream(id)).await?;
        job.require()?;
        let ports: Option<Vec<i64>> = job
            .ports
            .as_ref()
            .map(|p| p.iter().map(|&p| i64::from(p)).collect());
        let req = ScanRequest {
            asset_id: &job.asset_id,
            profile: &job.profile,
            ports: ports.as_deref(),
            rerun_of: Some(id),
        };
        self.request_scan(meta, org_id, plan, &req).await
    }

    /// A change to a job; ending it frees its (asset, profile) slot in the same append.
    async fn on_scan(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &ScanJobId,
        decide: impl Fn(&ScanJob) -> Result<Vec<Event>, DomainError>,
    ) -> Result<(), CommandError> {
        let stream = scan_stream(id);
        self.execute(org_id, meta, || async {
            let (v, job) = self.load::<ScanJob>(org_id, &stream).await?;
            let events = decide(&job)?;
            let mut after = job.clone();
            for e in &events {
                after.apply(e);
            }
            let mut d = Decision::one(stream.clone(), v, events);
            if job.status.active() && !after.status.active() {
                d.constraints.push(Constraint::Release {
                    scope: ACTIVE_SCANS.into(),
                    key: active_scan_key(&job.asset_id, &job.profile),
                });
            }
            Ok(d)
        })
        .await?;
        Ok(())
    }

    pub async fn cancel_scan(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &ScanJobId,
    ) -> Result<(), CommandError> {
        self.on_scan(meta, org_id, id, ScanJob::cancel).await
    }

    /// The job and its findings leave the read models (the log keeps them).
    pub async fn delete_scan(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &ScanJobId,
    ) -> Result<(), CommandError> {
        self.on_scan(meta, org_id, id, ScanJob::delete).await?;
        let (_, job) = self.load::<ScanJob>(org_id, &scan_stream(id)).await?;
        self.refresh_risk(meta, org_id, [job.asset_id]).await;
        Ok(())
    }

    /// A worker takes a queued job, or a running one whose worker died: the job and its asset,
    /// or None when there is nothing to run. A job whose asset was removed fails.
    pub async fn start_scan(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &ScanJobId,
        worker_id: &str,
    ) -> Result<Option<(ScanJob, Asset)>, CommandError> {
        let stream = scan_stream(id);
        let (_, job) = self.load::<ScanJob>(org_id, &stream).await?;
        if job.require().is_err() || !job.status.active() {
            return Ok(None);
        }
        let (_, asset) = self
            .load::<Asset>(org_id, &asset_stream(&job.asset_id))
            .await?;
        if !asset.live() {
            self.fail_scan(meta, org_id, id, "the asset was removed")
                .await?;
            return Ok(None);
        }
        match self.on_scan(meta, org_id, id, |j| j.start(worker_id)).await {
            Err(CommandError::Domain(
                DomainError::Conflict { .. } | DomainError::NotFound { .. },
            )) => return Ok(None),
            r => r?,
        }
        let (_, job) = self.load::<ScanJob>(org_id, &stream).await?;
        Ok(Some((job, asset)))
    }

    /// Progress of a running job; false once it no longer runs (cancelled, deleted, ended), so
    /// the worker stops.
    pub async fn scan_progress(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &ScanJobId,
        progress: u8,
        stage: &str,
    ) -> Result<bool, CommandError> {
        let running = AtomicBool::new(false);
        let recorded = self
            .on_scan(meta, org_id, id, |j| {
                running.store(j.status == JobStatus::Running, Ordering::Relaxed);
                j.progress(progress, stage)
            })
            .await;
        match recorded {
            Err(CommandError::Domain(DomainError::NotFound { .. })) => Ok(false),
            r => r.map(|()| running.load(Ordering::Relaxed)),
        }
    }

    pub async fn fail_scan(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &ScanJobId,
        reason: &str,
    ) -> Result<(), CommandError> {
        self.on_scan(meta, org_id, id, |j| j.fail(reason)).await
    }

    /// The scanner finished: record its detections, then complete the job exactly once, in the
    /// same append resolving the findings its profile detected before on the ports it tried
    /// and did not detect now, and raising the alerts of the asset's monitor. A second report
    /// (a retried worker) records nothing.
    pub async fn complete_scan(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &ScanJobId,
        detections: &[Detection],
        observed: Observed,
        ports: &[u16],
    ) -> Result<(), CommandError> {
        let stream = scan_stream(id);
        let (_, job) = self.load::<ScanJob>(org_id, &stream).await?;
        if job.require().is_err() || job.status != JobStatus::Running {
            return Ok(());
        }
        let by = DetectedBy::Scan(id.clone());
        self.record_detections(
            meta,
            org_id,
            &by,
            &job.asset_id,
            Some(&job.profile),
            detections,
        )
        .await?;
        let counts = count_severities(detections);
        self.execute(org_id, meta, || async {
            let (v, job) = self.load::<ScanJob>(org_id, &stream).await?;
            let events = job.complete(counts.clone(), observed.clone())?;
            let mut d = Decision::one(stream.clone(), v, events);
            if d.is_empty() {
                return Ok(d);
            }
            d.constraints.push(Constraint::Release {
                scope: ACTIVE_SCANS.into(),
                key: active_scan_key(&job.asset_id, &job.profile),
            });
            for finding in self.read.unresolved_findings(org_id, &job.asset_id).await? {
                let fs = finding_stream(&finding);
                let (fv, f) = self.load::<Finding>(org_id, &fs).await?;
                d.push(fs, fv, f.auto_resolve(&by, &job.profile, ports));
            }
            d.streams
                .extend(self.alerts_for(org_id, &job, &observed).await?);
            Ok(d)
        })
        .await?;
        self.refresh_risk(meta, org_id, [job.asset_id]).await;
        Ok(())
    }
}

/// Findings per severity of what a scan reported (one per finding).
fn count_severities(detections: &[Detection]) -> SeverityCounts {
    let mut c = SeverityCounts::default();
    let mut seen = HashSet::new();
    for d in detections {
        if seen.insert((&d.template_id, &d.matched_at, &d.matcher_name)) {
            c.add(&d.severity, 1);
        }
    }
    c
}
