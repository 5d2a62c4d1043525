//! Job workers, for every kind of background job (scans, discovery). Jobs reach them through
//! the bus: a durable JetStream consumer per kind shared by every process (a work queue: each
//! requested job goes to one of them) when NATS is configured, and an in-process queue fed from
//! the read model otherwise; with NATS that feed still runs as a slow sweep for jobs the stream
//! lost. A worker holds a lease per job while it runs, renewed as it goes, so one worker runs a
//! job at a time and another takes it over once the holder died and its lease lapsed. Each kind
//! runs up to its own number of jobs at once. Completion is decided by the job's aggregate: it
//! happens once.

use async_nats::jetstream::{self, AckKind};
use easm_bus::{ensure_stream, jetstream as connect, nats, BusConfig, BusError};
use easm_events::{OrgId, RecordedEvent};
use easm_store::{now_micros, Db, Lease, StoreError};
use futures_util::future::BoxFuture;
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// This process, as lease holder and `workerId`.
    pub holder: String,
    /// A job's lease; a dead worker's job is taken over after it lapses.
    pub lease: Duration,
    pub poll: Duration,
}

pub enum Outcome {
    /// Ran to an end (or there was nothing to run).
    Done,
    /// Another worker holds the job, or it could not be recorded: try again later.
    Busy,
}

/// The names of a kind of job.
pub struct Kind {
    /// `scan` or `discovery`: names the leases (`<name>-<id>`) and the logs.
    pub name: &'static str,
    /// The event type that requests a job, and the field of its data holding the job's id.
    pub requested: &'static str,
    pub id_field: &'static str,
    /// The durable consumer's name after the stream's.
    pub consumer: &'static str,
}

/// One kind of job: where its work comes from and how one job runs.
pub trait Jobs: Send + Sync + 'static {
    fn kind(&self) -> &'static Kind;
    /// Queued or running jobs requested at or before `before` (micros), oldest first.
    fn active(
        &self,
        before: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<Vec<(OrgId, String)>, StoreError>>;
    /// Run one job to its end; the worker holds its lease meanwhile.
    fn run<'a>(&'a self, org: &'a OrgId, id: &'a str) -> BoxFuture<'a, Outcome>;
}

pub struct Worker {
    jobs: Arc<dyn Jobs>,
    db: Db,
    config: WorkerConfig,
    running: Mutex<HashSet<String>>,
    slots: Arc<Semaphore>,
}

impl Worker {
    /// A worker running up to `slots` jobs of `jobs` at once.
    pub fn new(jobs: Arc<dyn Jobs>, db: Db, config: WorkerConfig, slots: usize) -> Arc<Self> {
        Arc::new(Worker {
            jobs,
            db,
            config,
            running: Mutex::default(),
            slots: Arc::new(Semaphore::new(slots.max(1))),
        })
    }

    /// The in-process queue: jobs queued or running in the read model, requested at least
    /// `sweep_after` ago (zero without NATS; with NATS this is the sweep behind the stream).
    pub async fn run_queue(self: Arc<Self>, sweep_after: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let kind = self.jobs.kind().name;
        loop {
            tokio::select! {
                _ = &mut stop => return self.wait_running().await,
                _ = tokio::time::sleep(self.config.poll) => {}
            }
            let before = now_micros() - sweep_after.as_micros() as i64;
            let jobs = match self.jobs.active(before, 50).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(error = %e, kind, "job queue: cannot read jobs");
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

    /// On stop: jobs under way run on (a stopping process is given `EASM_SHUTDOWN_TIMEOUT` for
    /// them; one it cuts short lapses its lease and is resumed by another process).
    async fn wait_running(&self) {
        while !self.running.lock().expect("running").is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The JetStream work queue: the kind's durable consumer of its requests. A message is
    /// acknowledged when its job ended, and kept in progress while it runs, so a job whose
    /// process died is delivered again.
    pub async fn run_jetstream(self: Arc<Self>, bus: BusConfig, stop: impl Future<Output = ()>) {
        use futures_util::StreamExt;
        tokio::pin!(stop);
        let kind = self.jobs.kind().name;
        let js = match connect(&bus).await {
            Ok(js) => js,
            Err(e) => {
                tracing::error!(error = %e, kind, "workers: cannot reach NATS");
                return;
            }
        };
        loop {
            let opened = tokio::select! {
                _ = &mut stop => return self.wait_running().await,
                r = self.consume(&js, &bus) => r,
            };
            match opened {
                Err(e) => tracing::warn!(error = %e, kind, "work queue: will retry"),
                Ok(mut messages) => loop {
                    let permit = tokio::select! {
                        _ = &mut stop => return self.wait_running().await,
                        p = self.slots.clone().acquire_owned() => p.expect("open semaphore"),
                    };
                    let next = tokio::select! {
                        _ = &mut stop => return self.wait_running().await,
                        m = messages.next() => m,
                    };
                    match next {
                        Some(Ok(m)) => {
                            tokio::spawn(self.clone().take_message(m, permit));
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, kind, "work queue: will retry");
                            break;
                        }
                        None => break,
                    }
                },
            }
            tokio::select! {
                _ = &mut stop => return self.wait_running().await,
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
        let kind = self.jobs.kind();
        let name = format!("{}_{}", bus.stream, kind.consumer);
        let requested = kind.requested;
        let consumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: format!("{}.*.{requested}", bus.subject_prefix),
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
        let Kind {
            requested,
            id_field: field,
            ..
        } = self.jobs.kind();
        let event = serde_json::from_slice::<RecordedEvent>(&m.payload).ok();
        let job = event.as_ref().and_then(|e| {
            let id = e.data.get(field)?.as_str()?;
            Some((e.org_id.clone(), id.to_string()))
        });
        let Some((org, job)) = job else {
            tracing::error!(subject = %m.subject, "work queue: not a {requested} event; dropped");
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
            tracing::warn!(error = %e, "work queue: acknowledgement lost; the job may be delivered again");
        }
    }

    /// Run one job under its lease, renewed while it runs; a lost lease stops it.
    async fn run_job(
        self: Arc<Self>,
        org: OrgId,
        job: String,
        _permit: OwnedSemaphorePermit,
    ) -> Outcome {
        if !self.running.lock().expect("running").insert(job.clone()) {
            return Outcome::Busy;
        }
        let kind = self.jobs.kind().name;
        let lease = Lease::new(
            self.db.clone(),
            format!("{kind}-{job}"),
            self.config.holder.clone(),
            self.config.lease,
        );
        let outcome = match lease.acquire().await {
            Ok(true) => {
                let outcome = self.renewing(&lease, self.jobs.run(&org, &job)).await;
                if let Err(e) = lease.release().await {
                    tracing::warn!(error = %e, kind, job = %job, "lease not released; it lapses");
                }
                outcome
            }
            Ok(false) => Outcome::Busy,
            Err(e) => {
                tracing::warn!(error = %e, kind, job = %job, "lease unavailable");
                Outcome::Busy
            }
        };
        self.running.lock().expect("running").remove(&job);
        outcome
    }

    async fn renewing(&self, lease: &Lease, run: BoxFuture<'_, Outcome>) -> Outcome {
        tokio::pin!(run);
        let mut renew = tokio::time::interval(self.config.lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                outcome = &mut run => return outcome,
                _ = renew.tick() => {
                    if !matches!(lease.acquire().await, Ok(true)) {
                        tracing::warn!(kind = self.jobs.kind().name, "lease lost; another worker takes the job");
                        return Outcome::Busy;
                    }
                }
            }
        }
    }
}

/// Workers act on jobs as the system actor `scanner`.
pub fn scanner() -> easm_events::EventMeta {
    easm_events::EventMeta::new(
        easm_events::Actor::system_part("scanner"),
        easm_app::new_id::<String>(),
    )
}

/// How often a running job's progress is recorded at most, unless its stage changes.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(1);
