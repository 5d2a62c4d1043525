//! The delivery worker: claims due deliveries from the shared queue, sends each (signed, with
//! per-endpoint concurrency and rate limits so one slow receiver holds up nobody else), then logs
//! the attempt and schedules the next one; finished attempts are written in batches, one
//! transaction each. Nothing waits in memory: a process that stops leaves every delivery in the
//! queue, due at its persisted time (an attempt whose outcome was not written yet is made again
//! once its claim expires: at least once).

use crate::sender::{Sender, Signed};
use crate::{classify, sign, RetrySchedule, Verdict};
use easm_app::{new_id, App};
use easm_events::{Actor, EventMeta, OrgId, WebhookId};
use easm_projections::ReadModels;
use easm_store::{
    now_micros, Attempt, Db, DeliveryQueue, DueDelivery, Finished, NextStep, StoreError,
    WebhookSecrets,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    pub schedule: RetrySchedule,
    /// Attempts in flight to one endpoint from this process.
    pub concurrency: usize,
    /// Attempts per second to one endpoint from this process.
    pub rate: f64,
    /// Attempts in flight from this process in all.
    pub max_in_flight: usize,
    /// An endpoint whose every attempt failed for this long is disabled.
    pub disable_after: Duration,
    /// `EASM_WEBHOOK_ALLOW_PRIVATE`.
    pub allow_private: bool,
    /// How often other processes' work is looked for when nothing woke us.
    pub poll: Duration,
    /// This process's name on its claims.
    pub holder: String,
}

impl DeliveryConfig {
    pub fn new(holder: impl Into<String>) -> Self {
        DeliveryConfig {
            schedule: RetrySchedule::default(),
            concurrency: 8,
            rate: 50.0,
            max_in_flight: 256,
            disable_after: Duration::from_secs(5 * 86400),
            allow_private: false,
            poll: Duration::from_millis(100),
            holder: holder.into(),
        }
    }
}

/// How long an endpoint's url, state and secrets are reused before they are read again: a
/// change (disabled, deleted, new secret) reaches deliveries within this time.
const ENDPOINT_TTL: Duration = Duration::from_secs(1);

/// Attempts written per transaction at most.
const FINISH_BATCH: usize = 512;

/// What an attempt needs to know about its endpoint.
struct Endpoint {
    url: String,
    enabled: bool,
    secrets: Vec<String>,
}

/// An endpoint as read at a time (None: deleted).
type CachedEndpoint = (Instant, Option<Arc<Endpoint>>);

/// A claim outlives the longest attempt (15 s) with room to spare; a process that dies
/// mid-attempt only delays that delivery by this much.
const CLAIM_TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Slots {
    in_flight: HashMap<WebhookId, usize>,
    /// Earliest time the next attempt to an endpoint may start (rate limit).
    next_start: HashMap<WebhookId, Instant>,
    total: usize,
    /// Due deliveries may wait in the queue for a slot here: a finished attempt claims again.
    backlog: bool,
}

/// Deliveries local fan-out queued already claimed for this worker, so it attempts them at once
/// instead of claiming them back from the queue.
#[derive(Clone)]
pub struct Handoff {
    pub holder: String,
    pub ttl: Duration,
    /// Attempts the worker runs at once: what a batch may claim for it.
    pub max: usize,
    pub deliveries: mpsc::UnboundedSender<Vec<DueDelivery>>,
}

pub struct Worker {
    config: DeliveryConfig,
    queue: DeliveryQueue,
    read: ReadModels,
    secrets: WebhookSecrets,
    sender: Sender,
    app: App,
    slots: Mutex<Slots>,
    /// Woken by local fan-out and by finished attempts.
    wake: Arc<Notify>,
    endpoints: Mutex<HashMap<WebhookId, CachedEndpoint>>,
    finished: mpsc::UnboundedSender<Finished>,
    recorder: Mutex<Option<mpsc::UnboundedReceiver<Finished>>>,
    handed: mpsc::UnboundedSender<Vec<DueDelivery>>,
    handed_in: Mutex<Option<mpsc::UnboundedReceiver<Vec<DueDelivery>>>>,
}

impl Worker {
    pub fn new(
        app: App,
        db: Db,
        config: DeliveryConfig,
        wake: Arc<Notify>,
    ) -> Result<Arc<Worker>, reqwest::Error> {
        let (finished, recorder) = mpsc::unbounded_channel();
        let (handed, handed_in) = mpsc::unbounded_channel();
        Ok(Arc::new(Worker {
            handed,
            handed_in: Mutex::new(Some(handed_in)),
            endpoints: Mutex::default(),
            finished,
            recorder: Mutex::new(Some(recorder)),
            sender: Sender::new(config.allow_private)?,
            queue: DeliveryQueue::new(db),
            read: app.read().clone(),
            secrets: app.secrets().clone(),
            config,
            app,
            slots: Mutex::default(),
            wake,
        }))
    }

    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let records = self
            .recorder
            .lock()
            .expect("recorder")
            .take()
            .expect("a worker runs once");
        let mut handed = self
            .handed_in
            .lock()
            .expect("handoff")
            .take()
            .expect("a worker runs once");
        let stopping = Arc::new(Notify::new());
        let recorder = tokio::spawn(self.clone().record(records, stopping.clone()));
        let mut claim = true;
        loop {
            if claim {
                let claimed = match self.round().await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "delivery: will retry");
                        0
                    }
                };
                if claimed > 0 {
                    continue;
                }
            }
            claim = true;
            tokio::select! {
                _ = &mut stop => break,
                Some(batch) = handed.recv() => {
                    if let Err(e) = self.start(batch).await {
                        tracing::warn!(error = %e, "delivery: handed deliveries wait for their claims to expire");
                    }
                    claim = false;
                }
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll) => {}
            }
        }
        // Attempts under way finish (bounded by the send timeout) so their outcome is recorded.
        while self.slots.lock().expect("slots").total > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stopping.notify_one();
        let _ = recorder.await;
    }

    /// Write finished attempts in batches until `stopping`, then what is left.
    async fn record(
        self: Arc<Self>,
        mut records: mpsc::UnboundedReceiver<Finished>,
        stopping: Arc<Notify>,
    ) {
        let mut stop = false;
        loop {
            let mut batch = Vec::new();
            if !stop {
                tokio::select! {
                    got = records.recv() => match got {
                        Some(f) => batch.push(f),
                        None => stop = true,
                    },
                    _ = stopping.notified() => stop = true,
                }
            }
            while batch.len() < FINISH_BATCH {
                match records.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
            if batch.is_empty() && stop {
                return;
            }
            match self.queue.finish(&batch).await {
                Ok(failing) => {
                    for (webhook_id, since) in failing {
                        if now_micros() - since >= self.config.disable_after.as_micros() as i64 {
                            let org = batch
                                .iter()
                                .find(|f| f.delivery.webhook_id == webhook_id)
                                .map(|f| f.delivery.org_id.clone())
                                .unwrap_or_default();
                            self.disable(&org, &webhook_id, since).await;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempts = batch.len(), "delivery outcomes not recorded; those deliveries are attempted again when their claims expire")
                }
            }
        }
    }

    /// Give up on an endpoint whose every attempt failed since `since` (epoch microseconds):
    /// `endpoint.disabled`, as the system actor `delivery`. On failure the next failing batch
    /// tries again.
    async fn disable(&self, org_id: &OrgId, webhook_id: &WebhookId, since: i64) {
        let since = easm_events::format_timestamp(&easm_events::from_micros(since));
        let meta = EventMeta::new(Actor::system_part("delivery"), new_id::<String>());
        let reason = "every delivery attempt failed for the configured period";
        if let Err(e) = self
            .app
            .disable_webhook(&meta, org_id, webhook_id, &since, reason)
            .await
        {
            tracing::warn!(error = %e, webhook = %webhook_id, "could not disable a failing endpoint");
        }
    }

    /// The endpoint as of at most [`ENDPOINT_TTL`] ago; None once it is deleted.
    async fn endpoint(
        &self,
        org_id: &OrgId,
        webhook_id: &WebhookId,
    ) -> Result<Option<Arc<Endpoint>>, StoreError> {
        if let Some((at, e)) = self.endpoints.lock().expect("endpoints").get(webhook_id) {
            if at.elapsed() < ENDPOINT_TTL {
                return Ok(e.clone());
            }
        }
        let e = match self.read.webhook(org_id, webhook_id).await? {
            None => None,
            Some(hook) => Some(Arc::new(Endpoint {
                url: hook.url,
                enabled: hook.enabled,
                secrets: self.secrets.active(webhook_id).await?,
            })),
        };
        let mut cache = self.endpoints.lock().expect("endpoints");
        cache.retain(|_, (at, _)| at.elapsed() < ENDPOINT_TTL);
        cache.insert(webhook_id.clone(), (Instant::now(), e.clone()));
        Ok(e)
    }

    /// Claim what fits and start it; returns how many attempts were started.
    async fn round(self: &Arc<Self>) -> Result<usize, StoreError> {
        let (busy, room) = {
            let s = self.slots.lock().expect("slots");
            let busy: Vec<WebhookId> = s
                .in_flight
                .iter()
                .filter(|(_, n)| **n >= self.config.concurrency)
                .map(|(k, _)| k.clone())
                .collect();
            (busy, self.config.max_in_flight.saturating_sub(s.total))
        };
        if room == 0 {
            return Ok(0);
        }
        let claimed = self
            .queue
            .claim(
                &self.config.holder,
                CLAIM_TTL,
                self.config.concurrency as i64,
                room as i64,
                &busy,
            )
            .await?;
        if !busy.is_empty() || claimed.len() >= room {
            self.slots.lock().expect("slots").backlog = true;
        }
        self.start(claimed).await
    }

    /// Start attempts of claimed deliveries as slots allow; hand the rest back to the queue.
    async fn start(self: &Arc<Self>, claimed: Vec<DueDelivery>) -> Result<usize, StoreError> {
        let mut extra = Vec::new();
        let mut started = 0;
        for d in claimed {
            let start_at = {
                let mut s = self.slots.lock().expect("slots");
                let full = s.total >= self.config.max_in_flight;
                let n = s.in_flight.entry(d.webhook_id.clone()).or_default();
                if full || *n >= self.config.concurrency {
                    None
                } else {
                    *n += 1;
                    s.total += 1;
                    let now = Instant::now();
                    let slot = s.next_start.entry(d.webhook_id.clone()).or_insert(now);
                    let at = (*slot).max(now);
                    *slot = at + Duration::from_secs_f64(1.0 / self.config.rate.max(0.001));
                    Some(at)
                }
            };
            match start_at {
                None => extra.push(d.delivery_id),
                Some(at) => {
                    started += 1;
                    let me = self.clone();
                    tokio::spawn(async move {
                        // A timer rounds up to the next millisecond tick: only a start in the
                        // future (the endpoint's rate) waits for one.
                        if at > Instant::now() {
                            tokio::time::sleep_until(at.into()).await;
                        }
                        let webhook = d.webhook_id.clone();
                        let id = d.delivery_id.clone();
                        if let Err(e) = me.attempt(d).await {
                            tracing::warn!(error = %e, delivery = %id, "delivery attempt not recorded; it will be retried when its claim expires");
                        }
                        me.release(&webhook);
                    });
                }
            }
        }
        if !extra.is_empty() {
            self.slots.lock().expect("slots").backlog = true;
            self.queue.unclaim(&self.config.holder, &extra).await?;
        }
        Ok(started)
    }

    /// For local fan-out: queue deliveries claimed for this worker and hand them over.
    pub fn handoff(&self) -> Handoff {
        Handoff {
            holder: self.config.holder.clone(),
            ttl: CLAIM_TTL,
            max: self.config.max_in_flight,
            deliveries: self.handed.clone(),
        }
    }

    fn release(&self, webhook_id: &WebhookId) {
        let mut s = self.slots.lock().expect("slots");
        s.total -= 1;
        if let Some(n) = s.in_flight.get_mut(webhook_id) {
            *n -= 1;
            if *n == 0 {
                s.in_flight.remove(webhook_id);
                if s.next_start
                    .get(webhook_id)
                    .is_some_and(|t| *t <= Instant::now())
                {
                    s.next_start.remove(webhook_id);
                }
            }
        }
        let backlog = std::mem::take(&mut s.backlog);
        drop(s);
        if backlog {
            self.wake.notify_one();
        }
    }

    async fn attempt(&self, d: DueDelivery) -> Result<(), StoreError> {
        let Some(hook) = self.endpoint(&d.org_id, &d.webhook_id).await? else {
            return self.queue.abandon(&d.delivery_id, "endpoint deleted").await;
        };
        if !hook.enabled {
            return self
                .queue
                .abandon(&d.delivery_id, "endpoint disabled")
                .await;
        }
        let secrets = &hook.secrets;
        let timestamp = chrono::Utc::now().timestamp();
        let signature = match sign(secrets, &d.delivery_id, timestamp, d.payload.as_bytes()) {
            Ok(s) if !secrets.is_empty() => s,
            _ => {
                return self
                    .queue
                    .abandon(&d.delivery_id, "endpoint has no valid signing secret")
                    .await
            }
        };
        let started_at = now_micros();
        let sent = self
            .sender
            .send(
                &hook.url,
                &Signed {
                    msg_id: &d.delivery_id,
                    timestamp,
                    signature: &signature,
                },
                &d.payload,
            )
            .await;
        let next = match classify(&sent.outcome) {
            Verdict::Delivered => NextStep::Succeeded,
            Verdict::GiveUp => NextStep::Failed,
            Verdict::Retry { at_least } => {
                let jitter = rand::random::<f64>() * 2.0 - 1.0;
                match self.config.schedule.delay(d.schedule_step, jitter) {
                    None => NextStep::Failed,
                    Some(delay) => NextStep::RetryAt {
                        at: now_micros()
                            + delay.max(at_least.unwrap_or_default()).as_micros() as i64,
                        schedule_step: d.schedule_step + 1,
                    },
                }
            }
        };
        let attempt = Attempt {
            started_at,
            duration_ms: sent.duration.as_millis() as i64,
            status_code: sent.status_code.map(i64::from),
            error: sent.error,
            response: sent.response,
        };
        // The recorder lives as long as the worker runs.
        let _ = self.finished.send(Finished {
            delivery: d,
            attempt,
            next,
        });
        Ok(())
    }
}
