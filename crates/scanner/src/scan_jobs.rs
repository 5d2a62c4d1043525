//! Scan jobs as the workers run them: start, scan the asset's host with the job's profile and
//! ports, record progress as it goes, then complete with what was seen, or fail with why.

use crate::worker::{scanner, Jobs, Kind, Outcome, PROGRESS_EVERY};
use crate::{scan, Progress, Report, ScanConfig};
use easm_app::{App, CommandError};
use easm_events::{Observed, OrgId, ScanJobId};
use easm_store::StoreError;
use futures_util::future::BoxFuture;
use std::time::Instant;
use tokio::sync::watch;

pub struct ScanJobs {
    pub app: App,
    pub scan: ScanConfig,
    /// This process, as `workerId`.
    pub holder: String,
}

impl Jobs for ScanJobs {
    fn kind(&self) -> &'static Kind {
        &Kind {
            name: "scan",
            requested: "scan.requested",
            id_field: "scanJobId",
            consumer: "scans",
        }
    }

    fn active(
        &self,
        before: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<(OrgId, String)>, StoreError>> {
        Box::pin(async move {
            let jobs = self.app.read().active_scan_jobs(before, limit).await?;
            Ok(jobs
                .into_iter()
                .map(|(o, j)| (o, j.into_string()))
                .collect())
        })
    }

    fn run<'a>(&'a self, org: &'a OrgId, id: &'a str) -> BoxFuture<'a, Outcome> {
        Box::pin(self.scan_job(org, ScanJobId::new(id)))
    }
}

impl ScanJobs {
    async fn scan_job(&self, org: &OrgId, job: ScanJobId) -> Outcome {
        let job = &job;
        let started = self
            .app
            .start_scan(&scanner(), org, job, &self.holder)
            .await;
        let (spec, asset) = match started {
            Ok(Some(started)) => started,
            Ok(None) => return Outcome::Done,
            Err(e) => {
                tracing::warn!(error = %e, job = %job, "scan job could not start; will retry");
                return Outcome::Busy;
            }
        };
        let target = match easm_domain::scan_host(&asset.asset_type, &asset.value) {
            Ok(t) => t,
            Err(reason) => return self.fail(org, job, &reason).await,
        };
        let ports = spec
            .ports
            .clone()
            .unwrap_or_else(|| crate::ports::profile_ports(&spec.profile));
        tracing::info!(job = %job, target = %target, profile = %spec.profile, "scan started");
        let (tx, mut rx) = watch::channel(Progress::default());
        let scanning = scan(&target, &spec.profile, Some(&ports), &self.scan, &tx);
        tokio::pin!(scanning);
        let mut last = (Instant::now(), "");
        let result = loop {
            tokio::select! {
                r = &mut scanning => break r,
                changed = rx.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    let p = rx.borrow_and_update().clone();
                    if p.stage == last.1 && last.0.elapsed() < PROGRESS_EVERY {
                        continue;
                    }
                    last = (Instant::now(), p.stage);
                    match self.app.scan_progress(&scanner(), org, job, p.percent, p.stage).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::info!(job = %job, "scan job no longer runs; stopped");
                            return Outcome::Done;
                        }
                        Err(e) => tracing::warn!(error = %e, job = %job, "scan progress not recorded"),
                    }
                }
            }
        };
        match result {
            Ok(report) => match self.complete(org, job, report, &ports).await {
                Ok(()) => {
                    tracing::info!(job = %job, "scan completed");
                    Outcome::Done
                }
                Err(e) => {
                    tracing::warn!(error = %e, job = %job, "scan results not recorded; will retry");
                    Outcome::Busy
                }
            },
            Err(e) => self.fail(org, job, &e.to_string()).await,
        }
    }

    async fn complete(
        &self,
        org: &OrgId,
        job: &ScanJobId,
        report: Report,
        ports: &[u16],
    ) -> Result<(), CommandError> {
        let observed = Observed {
            addresses: report.addresses.iter().map(|a| a.to_string()).collect(),
            cnames: report.cnames,
            ports_scanned: Some(report.ports_scanned as u32),
            services: report.services,
        };
        self.app
            .complete_scan(&scanner(), org, job, &report.detections, observed, ports)
            .await
    }

    async fn fail(&self, org: &OrgId, job: &ScanJobId, reason: &str) -> Outcome {
        tracing::info!(job = %job, reason = %reason, "scan failed");
        match self.app.fail_scan(&scanner(), org, job, reason).await {
            Ok(()) => Outcome::Done,
            Err(e) => {
                tracing::warn!(error = %e, job = %job, "scan failure not recorded; will retry");
                Outcome::Busy
            }
        }
    }
}
