//! Discovery jobs as the workers run them: start, run the modules over the job's domains,
//! record names in batches and progress as they come, then complete with what else was found.

use crate::discovery::{discover, Discovered, DiscoveryConfig, Report};
use crate::worker::{scanner, Jobs, Kind, Outcome, PROGRESS_EVERY};
use easm_app::{App, CommandError};
use easm_events::{DiscoveryCompleted, DiscoveryJobId, OrgId};
use easm_store::StoreError;
use futures_util::future::BoxFuture;
use std::time::Instant;
use tokio::sync::mpsc;

pub struct DiscoveryJobs {
    pub app: App,
    pub config: DiscoveryConfig,
    /// This process, as `workerId`.
    pub holder: String,
}

impl Jobs for DiscoveryJobs {
    fn kind(&self) -> &'static Kind {
        &Kind {
            name: "discovery",
            requested: "discovery.requested",
            id_field: "discoveryJobId",
            consumer: "discovery",
        }
    }

    fn active(
        &self,
        before: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<(OrgId, String)>, StoreError>> {
        Box::pin(async move {
            let jobs = self.app.read().active_discovery_jobs(before, limit).await?;
            Ok(jobs
                .into_iter()
                .map(|(o, j)| (o, j.into_string()))
                .collect())
        })
    }

    fn run<'a>(&'a self, org: &'a OrgId, id: &'a str) -> BoxFuture<'a, Outcome> {
        Box::pin(self.discovery_job(org, DiscoveryJobId::new(id)))
    }
}

/// Whether the job still runs after recording a report.
enum Recorded {
    Running,
    Stopped,
    Failed(CommandError),
}

fn record(r: Result<bool, CommandError>) -> Recorded {
    match r {
        Ok(true) => Recorded::Running,
        Ok(false) => Recorded::Stopped,
        Err(e) => Recorded::Failed(e),
    }
}

impl DiscoveryJobs {
    async fn discovery_job(&self, org: &OrgId, id: DiscoveryJobId) -> Outcome {
        let id = &id;
        let job = match self
            .app
            .start_discovery(&scanner(), org, id, &self.holder)
            .await
        {
            Ok(Some(job)) => job,
            Ok(None) => return Outcome::Done,
            Err(e) => {
                tracing::warn!(error = %e, job = %id, "discovery job could not start; will retry");
                return Outcome::Busy;
            }
        };
        tracing::info!(job = %id, domains = ?job.domains, deep = job.deep, "discovery started");
        let (tx, mut rx) = mpsc::channel(16);
        let running = discover(&self.config, &job.domains, job.deep, tx);
        tokio::pin!(running);
        let mut last = (Instant::now(), "");
        let mut outcome = None;
        // Every report is recorded, those still queued when the modules end included.
        loop {
            let report = tokio::select! {
                found = &mut running, if outcome.is_none() => {
                    outcome = Some(found);
                    continue;
                }
                r = rx.recv() => r,
            };
            let Some(report) = report else { break };
            let recorded = match report {
                Report::Progress(percent, stage) => {
                    if stage == last.1 && last.0.elapsed() < PROGRESS_EVERY {
                        continue;
                    }
                    last = (Instant::now(), stage);
                    record(
                        self.app
                            .discovery_progress(&scanner(), org, id, percent, stage)
                            .await,
                    )
                }
                Report::Names(names) => {
                    record(self.app.discovery_found(&scanner(), org, id, &names).await)
                }
            };
            match recorded {
                Recorded::Running => {}
                Recorded::Stopped => {
                    tracing::info!(job = %id, "discovery job no longer runs; stopped");
                    return Outcome::Done;
                }
                Recorded::Failed(e) => {
                    tracing::warn!(error = %e, job = %id, "discovery report not recorded; will retry");
                    return Outcome::Busy;
                }
            }
        }
        let found = outcome.expect("the modules ended before their reports");
        match self.complete(org, id, found).await {
            Ok(()) => {
                tracing::info!(job = %id, "discovery completed");
                Outcome::Done
            }
            Err(e) => {
                tracing::warn!(error = %e, job = %id, "discovery results not recorded; will retry");
                Outcome::Busy
            }
        }
    }

    async fn complete(
        &self,
        org: &OrgId,
        id: &DiscoveryJobId,
        found: Discovered,
    ) -> Result<(), CommandError> {
        let summary = DiscoveryCompleted {
            discovery_job_id: id.clone(),
            domains: vec![],
            modules: found.modules,
            subdomains: 0,
            new_names: vec![],
            ips: found.ips,
            services: found.services,
            wildcard: found.wildcard,
        };
        self.app
            .complete_discovery(&scanner(), org, id, summary, &found.detections)
            .await
    }
}
