//! Scan workers. Jobs reach them through the bus: a durable JetStream consumer shared by every
//! process (a work queue: each `scan.requested` goes to one of them) when NATS is configured,
//! and an in-process queue fed from the read model otherwise; with NATS that feed still runs as
//! a slow sweep for jobs the stream lost. A worker holds a lease per job while it scans, so one
//! worker runs a job at a time and another takes it over once the holder died and its lease
//! lapsed. Completion is decided by the job's aggregate: it happens once.

use crate::{scan, Progress, Report, ScanConfig};
use async_nats::jetstream::{self, AckKind};
use easm_app::{new_id, App, CommandError};
use easm_bus::{ensure_stream, jetstream as connect, nats, BusConfig, BusError};
use easm_events::{Actor, EventMeta, Observed, OrgId, RecordedEvent, ScanJobId};
use easm_projections::ReadModels;
use easm_store::{now_micros, Db, Lease};
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// This process, as lease holder and `workerId`.
    pub holder: String,
    pub scan: ScanConfig,
    /// Jobs this process runs at once.
    pub jobs: usize,
    /// A job's lease; a dead worker's job is taken over after it lapses.
    pub lease: Duration,
    pub poll: Duration,
}

enum Outcome {
    /// Ran to an end (or there was nothing to run).
    Done,
    /// Another worker holds the job.
    Busy,
}

pub struct ScanWorker {
    app: App,
    db: Db,
    read: ReadModels,
    config: WorkerConfig,
    running: Mutex<HashSet<ScanJobId>>,
    slots: Arc<Semaphore>,
}

impl ScanWorker {
    pub fn new(app: App, db: Db, config: WorkerConfig) -> Arc<Self> {
        Arc::new(ScanWorker {
            read: app.read().clone(),
            app,
            db,
            slots: Arc::new(Semaphore::new(config.jobs.max(1))),
            config,
            running: Mutex::default(),
        })
    }

    /// The in-process queue: jobs queued or running in the read model, requested at least
    /// `sweep_after` ago (zero without NATS; with NATS this is the sweep behind the stream).
    pub async fn run_queue(self: Arc<Self>, sweep_after: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(self.config.poll) => {}
            }
            let before = now_micros() - sweep_after.as_micros() as i64;
            let jobs = match self.read.active_scan_jobs(before, 50).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(error = %e, "scan queue: cannot read jobs");
                    continue;
                }
            };
            for (org, job) in jobs {
                if self.running.lock().expect("running").contains(&job) {
                    continue;
                }
                let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                    break;
                };
                tokio::spawn(self.clone().run_job(org, job, permit));
            }
        }
    }

    /// The JetStream work queue: the durable consumer `<stream>_scans` of `scan.requested`.
    /// A message is acknowledged when its job ended, and kept in progress while it runs, so a
    /// job whose process died is delivered again.
    pub async fn run_jetstream(self: Arc<Self>, bus: BusConfig, stop: impl Future<Output = ()>) {
        use futures_util::StreamExt;
        tokio::pin!(stop);
        let js = match connect(&bus).await {
            Ok(js) => js,
            Err(e) => {
                tracing::error!(error = %e, "scan workers: cannot reach NATS");
                return;
            }
        };
        loop {
            let opened = tokio::select! {
                _ = &mut stop => return,
                r = self.consume(&js, &bus) => r,
            };
            match opened {
                Err(e) => tracing::warn!(error = %e, "scan work queue: will retry"),
                Ok(mut messages) => loop {
                    let permit = tokio::select! {
                        _ = &mut stop => return,
                        p = self.slots.clone().acquire_owned() => p.expect("open semaphore"),
                    };
                    let next = tokio::select! {
                        _ = &mut stop => return,
                        m = messages.next() => m,
                    };
                    match next {
                        Some(Ok(m)) => {
                            tokio::spawn(self.clone().take_message(m, permit));
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "scan work queue: will retry");
                            break;
                        }
                        None => break,
                    }
                },
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    async fn consume(
        &self,
        js: &jetstream::Context,
        bus: &BusConfig,
    ) -> Result<jetstream::consumer::pull::Stream, BusError> {
        use jetstream::consumer::{pull, AckPolicy};
        let stream = ensure_stream(js, bus).await?;
        let name = format!("{}_scans", bus.stream);
        let consumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: format!("{}.*.scan.requested", bus.subject_prefix),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.ack_wait(),
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(nats)?;
        consumer
            .stream()
            .max_messages_per_batch(1)
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await
            .map_err(nats)
    }

    fn ack_wait(&self) -> Duration {
        self.config.lease * 2
    }

    async fn take_message(self: Arc<Self>, m: jetstream::Message, permit: OwnedSemaphorePermit) {
        let event = serde_json::from_slice::<RecordedEvent>(&m.payload).ok();
        let job = event.as_ref().and_then(|e| {
            let id = e.data.get("scanJobId")?.as_str()?;
            Some((e.org_id.clone(), ScanJobId::new(id)))
        });
        let Some((org, job)) = job else {
            tracing::error!(subject = %m.subject, "scan work queue: not a scan.requested event; dropped");
            let _ = m.ack().await;
            return;
        };
        let heartbeat = {
            let m = m.clone();
            let every = self.ack_wait() / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let _ = m.ack_with(AckKind::Progress).await;
                }
            })
        };
        let outcome = self.clone().run_job(org, job, permit).await;
        heartbeat.abort();
        let ack = match outcome {
            Outcome::Done => m.ack().await,
            Outcome::Busy => m.ack_with(AckKind::Nak(Some(self.config.lease))).await,
        };
        if let Err(e) = ack {
            tracing::warn!(error = %e, "scan work queue: acknowledgement lost; the job may be delivered again");
        }
    }

    /// Run one job under its lease.
    async fn run_job(
        self: Arc<Self>,
        org: OrgId,
        job: ScanJobId,
        _permit: OwnedSemaphorePermit,
    ) -> Outcome {
        if !self.running.lock().expect("running").insert(job.clone()) {
            return Outcome::Busy;
        }
        let lease = Lease::new(
            self.db.clone(),
            format!("scan-{job}"),
            self.config.holder.clone(),
            self.config.lease,
        );
        let outcome = match lease.acquire().await {
            Ok(true) => {
                let outcome = self.scan_job(&org, &job, &lease).await;
                if let Err(e) = lease.release().await {
                    tracing::warn!(error = %e, job = %job, "scan lease not released; it lapses");
                }
                outcome
            }
            Ok(false) => Outcome::Busy,
            Err(e) => {
                tracing::warn!(error = %e, job = %job, "scan lease unavailable");
                Outcome::Busy
            }
        };
        self.running.lock().expect("running").remove(&job);
        outcome
    }

    async fn scan_job(&self, org: &OrgId, job: &ScanJobId, lease: &Lease) -> Outcome {
        let started = self
            .app
            .start_scan(&scanner(), org, job, &self.config.holder)
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
        let cfg = &self.config.scan;
        let scanning = scan(&target, &spec.profile, Some(&ports), cfg, &tx);
        tokio::pin!(scanning);
        let mut renew = tokio::time::interval(self.config.lease / 3);
        renew.tick().await;
        let mut last = (Instant::now(), "");
        let result = loop {
            tokio::select! {
                r = &mut scanning => break r,
                _ = renew.tick() => {
                    if !matches!(lease.acquire().await, Ok(true)) {
                        tracing::warn!(job = %job, "scan lease lost; another worker takes the job");
                        return Outcome::Busy;
                    }
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    let p = rx.borrow_and_update().clone();
                    if p.stage == last.1 && last.0.elapsed() < Duration::from_secs(1) {
                        continue;
                    }
                    last = (Instant::now(), p.stage);
                    let meta = scanner();
                    match self.app.scan_progress(&meta, org, job, p.percent, p.stage).await {
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

/// Workers act on jobs as the system actor `scanner`.
fn scanner() -> EventMeta {
    EventMeta::new(Actor::system_part("scanner"), new_id::<String>())
}
