//! The delivery worker: claims due deliveries from the shared queue, sends each (signed, with
//! per-endpoint concurrency and rate limits so one slow receiver holds up nobody else; for the
//! kinds that batch, gathered into requests of up to the endpoint's batch size or window), then
//! logs the attempt and schedules the next one; finished attempts are written in batches, one
//! transaction each. Nothing waits in memory: a process that stops leaves every delivery in the
//! queue, due at its persisted time (an attempt whose outcome was not written yet is made again
//! once its claim expires: at least once).

use crate::attempt::{Senders, Unsendable};
use crate::endpoints::Endpoints;
use crate::native::syslog::Syslog;
use crate::outstanding::Outstanding;
use crate::sender::Sender;
use crate::RetrySchedule;
use easm_app::{new_id, App};
use easm_domain::batching;
use easm_events::{Actor, EventMeta, OrgId, WebhookId};
use easm_store::{now_micros, Db, DeliveryQueue, DueDelivery, Finished, NextStep, StoreError};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};

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
    /// `EASM_WEBHOOK_PROXY`: the proxy requests go through when their endpoint names none.
    pub proxy: Option<String>,
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
            proxy: None,
            poll: Duration::from_millis(100),
            holder: holder.into(),
        }
    }
}

/// Attempts written per transaction at most.
const FINISH_BATCH: usize = 2048;

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

/// Deliveries local fan-out queues already claimed for this worker, so it attempts them at once
/// instead of claiming them back from the queue.
#[derive(Clone)]
pub struct Handoff {
    pub holder: String,
    pub ttl: Duration,
    /// Attempts the worker runs at once: what a batch may claim for it.
    pub max: usize,
    pub deliveries: mpsc::UnboundedSender<Handed>,
    /// Wakes the worker to claim what was queued unclaimed (FIFO lines).
    pub wake: Arc<Notify>,
    /// The events of messages handed before their rows exist.
    pub outstanding: Arc<Outstanding>,
}

/// Claimed deliveries handed to the worker: with `queued`, before the transaction that queues
/// their rows has committed; those marked `unwritten` have no row until their outcome is
/// recorded.
pub struct Handed {
    pub deliveries: Vec<DueDelivery>,
    pub queued: Option<Queued>,
}

/// What the transaction queueing handed deliveries inserted, once it ended: their ids, or
/// nothing when it failed (the sender is dropped then).
pub type QueuedIds = watch::Sender<Option<Arc<HashSet<String>>>>;

/// Messages are sent while their rows commit (the send does not wait for the queue's write), but
/// an attempt's outcome is recorded, and a message without a slot handed back, only once the
/// rows are known to be queued, and only for the rows that transaction inserted. A message
/// whose row was not queued was sent once more than needed: its transaction failed, so its
/// event stays in the outbox and fans out again (at least once, with the same `webhook-id`), or
/// it had been queued before.
#[derive(Clone)]
pub struct Queued(watch::Receiver<Option<Arc<HashSet<String>>>>);

impl Queued {
    pub fn pending() -> (QueuedIds, Queued) {
        let (tx, rx) = watch::channel(None);
        (tx, Queued(rx))
    }

    /// Those of `items` whose rows were queued.
    async fn keep<T>(&self, items: Vec<T>, id: impl Fn(&T) -> &str) -> Vec<T> {
        let mut rx = self.0.clone();
        let inserted = match rx.wait_for(Option::is_some).await {
            Ok(ids) => ids.clone().unwrap_or_default(),
            Err(_) => return vec![],
        };
        items
            .into_iter()
            .filter(|i| inserted.contains(id(i)))
            .collect()
    }
}

pub struct Worker {
    config: DeliveryConfig,
    queue: DeliveryQueue,
    senders: Senders,
    app: App,
    slots: Mutex<Slots>,
    /// Woken by local fan-out and by finished attempts.
    wake: Arc<Notify>,
    endpoints: Endpoints,
    /// Claimed messages of endpoints that batch, waiting for their batch to fill or its window
    /// to pass.
    gathering: Mutex<HashMap<WebhookId, Vec<DueDelivery>>>,
    finished: mpsc::UnboundedSender<Finished>,
    recorder: Mutex<Option<mpsc::UnboundedReceiver<Finished>>>,
    handed: mpsc::UnboundedSender<Handed>,
    handed_in: Mutex<Option<mpsc::UnboundedReceiver<Handed>>>,
    outstanding: Arc<Outstanding>,
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
            outstanding: Arc::default(),
            handed,
            handed_in: Mutex::new(Some(handed_in)),
            endpoints: Endpoints::default(),
            gathering: Mutex::default(),
            finished,
            recorder: Mutex::new(Some(recorder)),
            senders: Senders {
                http: Sender::new(config.allow_private, config.proxy.clone())?,
                syslog: Syslog::new(config.allow_private),
                schedule: config.schedule.clone(),
            },
            queue: DeliveryQueue::new(db),
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
                Some(h) = handed.recv() => {
                    if let Err(e) = self.start(h.deliveries, h.queued).await {
                        tracing::warn!(error = %e, "delivery: handed deliveries wait for their claims to expire");
                    }
                    claim = false;
                }
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll) => {}
            }
        }
        // What was gathered goes now; attempts under way finish (bounded by the send timeout)
        // so their outcome is recorded.
        let gathered: Vec<Vec<DueDelivery>> = self
            .gathering
            .lock()
            .expect("gathering")
            .drain()
            .map(|(_, job)| job)
            .collect();
        for job in gathered {
            self.launch_or_return(job).await;
        }
        while self.slots.lock().expect("slots").total > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stopping.notify_one();
        let _ = recorder.await;
    }

    /// Write finished attempts in batches until `stopping`, then what is left. The rows of
    /// unwritten messages whose transaction failed go in the next one (their events' outbox rows
    /// wait for them); other outcomes not recorded are attempted again when their claims expire.
    async fn record(
        self: Arc<Self>,
        mut records: mpsc::UnboundedReceiver<Finished>,
        stopping: Arc<Notify>,
    ) {
        let mut stop = false;
        let mut again: Vec<Finished> = vec![];
        loop {
            let mut batch = std::mem::take(&mut again);
            if !stop && batch.is_empty() {
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
            let written: Vec<i64> = batch
                .iter()
                .filter_map(|f| Some(f.delivery.unwritten.as_ref()?.position))
                .collect();
            let outbox_done = self.outstanding.completed_by(&written);
            match self.queue.finish(&batch, &outbox_done).await {
                Ok(failing) => {
                    self.outstanding.release(&written);
                    for (webhook_id, since) in failing {
                        if now_micros() - since >= self.config.disable_after.as_micros() as i64 {
                            let org = batch
                                .iter()
                                .find(|f| f.delivery.webhook_id == webhook_id)
                                .map(|f| f.delivery.org_id.clone())
                                .unwrap_or_default();
                            let reason = "every delivery attempt failed for the configured period";
                            self.disable(&org, &webhook_id, since, reason).await;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempts = batch.len(), "delivery outcomes not recorded; written again, or attempted again when their claims expire");
                    if stop {
                        // Their events stay in the outbox and fan out again on the next start.
                        return;
                    }
                    again = batch
                        .into_iter()
                        .filter(|f| f.delivery.unwritten.is_some())
                        .collect();
                    if !again.is_empty() {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
    }

    /// Give up on an endpoint whose every attempt failed since `since` (epoch microseconds), or
    /// whose destination refuses its configuration: `endpoint.disabled`, as the system actor
    /// `delivery`. On failure the next failing attempt tries again.
    async fn disable(&self, org_id: &OrgId, webhook_id: &WebhookId, since: i64, reason: &str) {
        let since = easm_events::format_timestamp(&easm_events::from_micros(since));
        let meta = EventMeta::new(Actor::system_part("delivery"), new_id::<String>());
        if let Err(e) = self
            .app
            .disable_webhook(&meta, org_id, webhook_id, &since, reason)
            .await
        {
            tracing::warn!(error = %e, webhook = %webhook_id, "could not disable a failing endpoint");
        } else {
            metrics::counter!("easm_webhook_endpoints_disabled_total").increment(1);
        }
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
        self.start(claimed, None).await
    }

    /// Start attempts of claimed deliveries as slots allow (hand the rest back to the queue);
    /// messages of endpoints that batch join their endpoint's gathering, which goes when full.
    /// Returns how many attempts were started.
    async fn start(
        self: &Arc<Self>,
        claimed: Vec<DueDelivery>,
        queued: Option<Queued>,
    ) -> Result<usize, StoreError> {
        let mut jobs: Vec<Vec<DueDelivery>> = vec![];
        let mut lines: HashMap<WebhookId, Vec<DueDelivery>> = HashMap::new();
        for d in claimed {
            if d.batch <= 0 {
                jobs.push(vec![d]);
            } else if d.fifo {
                // A FIFO line is claimed only when none of it is in flight: what came is its
                // batch.
                lines.entry(d.webhook_id.clone()).or_default().push(d);
            } else if let Some(full) = self.gather(d) {
                jobs.push(full);
            }
        }
        jobs.extend(lines.into_values());
        let mut started = 0;
        let mut extra = vec![];
        for job in jobs {
            match self.launch(job, queued.clone()) {
                None => started += 1,
                Some(back) => extra.extend(self.keep_unwritten(back)),
            }
        }
        if extra.is_empty() {
            return Ok(started);
        }
        self.slots.lock().expect("slots").backlog = true;
        let extra: Vec<String> = extra.into_iter().map(|d| d.delivery_id).collect();
        match queued {
            None => self.queue.unclaim(&self.config.holder, &extra).await?,
            Some(queued) => {
                // Not in the worker's loop: the rows are still being written.
                let me = self.clone();
                tokio::spawn(async move {
                    let extra = queued.keep(extra, String::as_str).await;
                    me.unclaim(&extra).await;
                    me.wake.notify_one();
                });
            }
        }
        Ok(started)
    }

    /// Of messages without a slot, those that have a row to hand back to: the unwritten ones are
    /// written, due now, for a claim to take them.
    fn keep_unwritten(&self, back: Vec<DueDelivery>) -> Vec<DueDelivery> {
        let (unwritten, queued): (Vec<_>, Vec<_>) =
            back.into_iter().partition(|d| d.unwritten.is_some());
        for d in unwritten {
            let next = NextStep::RetryAt {
                at: now_micros(),
                schedule_step: d.schedule_step,
            };
            self.record_unsent(d, next);
        }
        queued
    }

    /// Hand the recorder a message that was not sent.
    fn record_unsent(&self, delivery: DueDelivery, next: NextStep) {
        // The recorder lives as long as the worker runs.
        let _ = self.finished.send(Finished {
            delivery,
            attempt: None,
            next,
        });
    }

    /// [`Self::launch`] outside a claim round (a gathering whose window passed, or stopping):
    /// a job without a slot goes back to the queue at once.
    async fn launch_or_return(self: &Arc<Self>, job: Vec<DueDelivery>) {
        if let Some(back) = self.launch(job, None) {
            self.slots.lock().expect("slots").backlog = true;
            let ids: Vec<String> = self
                .keep_unwritten(back)
                .into_iter()
                .map(|d| d.delivery_id)
                .collect();
            self.unclaim(&ids).await;
        }
    }

    /// Hand messages without a slot back to the queue outside a claim round.
    async fn unclaim(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        if let Err(e) = self.queue.unclaim(&self.config.holder, ids).await {
            tracing::warn!(error = %e, "delivery: messages without a slot wait for their claims to expire");
        }
    }

    /// Add a message to its endpoint's gathering: the batch when it is full, else a timer sends
    /// what gathered once the endpoint's window passed.
    fn gather(self: &Arc<Self>, d: DueDelivery) -> Option<Vec<DueDelivery>> {
        let size = d.batch as usize;
        let (org, id) = (d.org_id.clone(), d.webhook_id.clone());
        let mut g = self.gathering.lock().expect("gathering");
        let line = g.entry(id.clone()).or_default();
        line.push(d);
        if line.len() >= size {
            return Some(line.drain(..size).collect());
        }
        if line.len() == 1 {
            let me = self.clone();
            tokio::spawn(async move {
                let window = match me.endpoints.get(&me.app, &org, &id).await {
                    Ok(Some(t)) => batching(&t.options).map_or(0, |(_, w)| w),
                    _ => 0,
                };
                tokio::time::sleep(Duration::from_millis(u64::from(window))).await;
                let job = me.gathering.lock().expect("gathering").remove(&id);
                if let Some(job) = job.filter(|j| !j.is_empty()) {
                    me.launch_or_return(job).await;
                }
            });
        }
        None
    }

    /// Start one job (a message, or a batch) in a slot of its endpoint, when the endpoint and
    /// the process have one; otherwise give the job back, to be returned to the queue.
    fn launch(
        self: &Arc<Self>,
        job: Vec<DueDelivery>,
        queued: Option<Queued>,
    ) -> Option<Vec<DueDelivery>> {
        let webhook = job[0].webhook_id.clone();
        let start_at = {
            let mut s = self.slots.lock().expect("slots");
            let full = s.total >= self.config.max_in_flight;
            let n = s.in_flight.entry(webhook.clone()).or_default();
            if full || *n >= self.config.concurrency {
                None
            } else {
                *n += 1;
                s.total += 1;
                let now = Instant::now();
                let slot = s.next_start.entry(webhook.clone()).or_insert(now);
                let at = (*slot).max(now);
                *slot = at + Duration::from_secs_f64(1.0 / self.config.rate.max(0.001));
                Some(at)
            }
        };
        let Some(at) = start_at else {
            return Some(job);
        };
        let me = self.clone();
        tokio::spawn(async move {
            // A timer rounds up to the next millisecond tick: only a start in the future (the
            // endpoint's rate) waits for one.
            if at > Instant::now() {
                tokio::time::sleep_until(at.into()).await;
            }
            let first = job[0].delivery_id.clone();
            if let Err(e) = me.attempt(job, queued).await {
                tracing::warn!(error = %e, delivery = %first, "delivery attempt not recorded; it will be retried when its claim expires");
            }
            me.release(&webhook);
        });
        None
    }

    /// For local fan-out: queue deliveries claimed for this worker and hand them over.
    pub fn handoff(&self) -> Handoff {
        Handoff {
            holder: self.config.holder.clone(),
            ttl: CLAIM_TTL,
            max: self.config.max_in_flight,
            deliveries: self.handed.clone(),
            wake: self.wake.clone(),
            outstanding: self.outstanding.clone(),
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

    async fn attempt(
        &self,
        job: Vec<DueDelivery>,
        queued: Option<Queued>,
    ) -> Result<(), StoreError> {
        let (org, webhook) = (job[0].org_id.clone(), job[0].webhook_id.clone());
        let target = self.endpoints.get(&self.app, &org, &webhook).await?;
        let ready = match target.as_deref() {
            None => Err(Unsendable("endpoint deleted")),
            Some(t) if !t.enabled => Err(Unsendable("endpoint disabled")),
            Some(t) => Senders::via(t).map(|via| (t, via)),
        };
        let (target, via) = match ready {
            Ok(ready) => ready,
            Err(Unsendable(reason)) => {
                self.senders.syslog.close(&webhook);
                let job = match &queued {
                    Some(q) => q.keep(job, |d| d.delivery_id.as_str()).await,
                    None => job,
                };
                for d in job {
                    self.record_unsent(d, NextStep::Abandoned(reason));
                }
                return Ok(());
            }
        };
        let kind = target.options.kind.as_str();
        let done = self.senders.attempt(target, via, &webhook, job).await;
        for f in &done.finished {
            let outcome = match f.next {
                NextStep::Succeeded => "delivered",
                NextStep::RetryAt { .. } => "retry",
                NextStep::Failed | NextStep::Abandoned(_) => "failed",
            };
            metrics::counter!("easm_delivery_attempts_total", "kind" => kind, "outcome" => outcome)
                .increment(1);
        }
        if let Some(reason) = &done.disable {
            self.disable(&org, &webhook, now_micros(), reason).await;
        }
        let finished = match &queued {
            Some(q) => {
                q.keep(done.finished, |f| f.delivery.delivery_id.as_str())
                    .await
            }
            None => done.finished,
        };
        for f in finished {
            // The recorder lives as long as the worker runs.
            let _ = self.finished.send(f);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outcomes_wait_for_the_rows_and_keep_only_those_inserted() {
        let (ids, queued) = Queued::pending();
        let waiting = tokio::spawn({
            let queued = queued.clone();
            async move { queued.keep(vec!["a", "b", "c"], |s| s).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "nothing is kept before the rows are written"
        );
        let inserted: HashSet<String> = ["a".to_string(), "c".to_string()].into();
        ids.send(Some(Arc::new(inserted))).unwrap();
        assert_eq!(waiting.await.unwrap(), vec!["a", "c"]);
    }

    #[tokio::test]
    async fn a_failed_queue_write_keeps_nothing() {
        let (ids, queued) = Queued::pending();
        drop(ids);
        assert!(queued.keep(vec!["a"], |s| s).await.is_empty());
    }
}
