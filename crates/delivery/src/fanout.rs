//! Fan-out: each committed event becomes one queued delivery per subscribed endpoint, and one
//! more per endpoint subscribed to its audit form (`audit.<type>`, which every event has). Two
//! sources feed it with the same guarantees: the outbox itself (embedded mode, the outbox row
//! leaves in the transaction that queues the deliveries) and a durable JetStream consumer (NATS
//! mode, acknowledged only after the deliveries are queued). Queuing is idempotent per
//! (event, endpoint), so a redelivered event queues and sends nothing twice. From the outbox,
//! messages sent one by one go out while their rows are written, and messages that travel in
//! batches before their rows exist (see [`crate::outstanding`]): an event fanned out again after
//! a crash is sent again (with the same `webhook-id`), as any message whose outcome was not
//! recorded is.

use crate::worker::{Handed, Queued};
use crate::Handoff;
use easm_app::{trace_context, CommitFeed};
use easm_bus::{ensure_stream, jetstream, nats, BusConfig, BusError};
use easm_domain::{batching, subscribed};
use easm_events::formats::{filtered_out, needs_subject, queued_body, Context, Message, Subject};
use easm_events::{
    audit_message_id, audit_payload, message_id, payload, DeliveryOrdering, RecordedEvent,
    SUBSCRIBABLE,
};
use easm_projections::read::Endpoint;
use easm_projections::{Projector, ReadModels};
use easm_store::{
    Db, DeliveryQueue, DueDelivery, EventLog, Lease, NewDelivery, QueueClaim, Queuing, StoreError,
    Unwritten,
};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::Instrument;

/// What tells the outbox's drain in embedded mode that there is work, and what it tells back.
pub struct OutboxWakes {
    /// This process's commits.
    pub feed: Arc<CommitFeed>,
    /// Woken when another process tells of a commit.
    pub told: Arc<Notify>,
    /// Kept telling whether this process holds the outbox's lease.
    pub drains_here: Arc<AtomicBool>,
}

/// Events taken per round from either source.
const BATCH: usize = 1024;

/// What the outbox's drain keeps from one round to the next.
struct Draining {
    renewed: Option<Instant>,
    read_outbox: bool,
    /// Where the read of the outbox goes on: past the rows of events whose messages are still
    /// being sent. 0 starts a read from the oldest row.
    after: i64,
    read_back: ReadBack,
}

/// Positions lately fanned out from a read of the outbox. An event of this process read there
/// between its commit and its arrival in the feed would otherwise be fanned out twice, and its
/// messages sent twice (they are sent before their rows are known to be new).
#[derive(Default)]
struct ReadBack {
    positions: HashSet<i64>,
    order: VecDeque<i64>,
}

impl ReadBack {
    /// Far more than can commit between a read of the outbox and the feed's next take.
    const KEEP: usize = 8 * BATCH;

    fn note(&mut self, events: &[RecordedEvent]) {
        for e in events {
            if self.positions.insert(e.position) {
                self.order.push_back(e.position);
            }
        }
        while self.order.len() > Self::KEEP {
            if let Some(p) = self.order.pop_front() {
                self.positions.remove(&p);
            }
        }
    }

    /// `events` from the feed without those already read back.
    fn unseen(&mut self, mut events: Vec<RecordedEvent>) -> Vec<RecordedEvent> {
        if !self.positions.is_empty() {
            events.retain(|e| !self.positions.contains(&e.position));
        }
        events
    }
}

#[derive(Clone)]
pub struct Fanout {
    read: ReadModels,
    projector: Arc<Projector>,
    queue: DeliveryQueue,
    /// The worker of this process, given what is queued here already claimed for it.
    handoff: Handoff,
    /// What rendering for native destinations and chat needs of this server.
    context: Arc<Context>,
}

impl Fanout {
    /// Deliveries are queued claimed for `worker`, the worker of this process, and handed to it.
    pub fn new(db: Db, projector: Arc<Projector>, worker: Handoff, context: Context) -> Self {
        Fanout {
            read: ReadModels::new(db.clone()),
            queue: DeliveryQueue::new(db),
            projector,
            handoff: worker,
            context: Arc::new(context),
        }
    }

    /// The deliveries of a batch of events, matched against the endpoints as the read models
    /// know them once they include the batch.
    pub async fn deliveries(
        &self,
        events: &[RecordedEvent],
    ) -> Result<Vec<NewDelivery>, StoreError> {
        if events.is_empty() {
            return Ok(vec![]);
        }
        // Appends fold their read models as they commit; the catch-up covers events a tool
        // appended without them. The endpoints are read meanwhile, and again only if it moved
        // anything.
        let orgs: BTreeSet<&str> = events.iter().map(|e| e.org_id.as_str()).collect();
        let orgs: Vec<&str> = orgs.into_iter().collect();
        let (caught_up, mut endpoints) =
            tokio::try_join!(self.projector.catch_up(), self.read.enabled_webhooks(&orgs))?;
        if caught_up > 0 {
            endpoints = self.read.enabled_webhooks(&orgs).await?;
        }
        // Formats, chat and filters read what the read models know of each event's subject;
        // Standard Webhooks bodies (in any envelope) need nothing more than the event.
        let enriched = endpoints
            .values()
            .flatten()
            .any(|h| needs_subject(&h.options));
        let subjects = if enriched {
            self.read.subjects(events).await?
        } else {
            Default::default()
        };
        let none = Subject::default();
        let mut out = Vec::new();
        for e in events {
            let Some(hooks) = endpoints.get(e.org_id.as_str()) else {
                continue;
            };
            let own = SUBSCRIBABLE.contains(&e.event_type.as_str());
            let audit_type = format!("audit.{}", e.event_type);
            let subject = subjects.get(&e.position).unwrap_or(&none);
            for hook in hooks {
                if own && subscribed(&hook.events, &e.event_type) {
                    let id = message_id(e, hook.id.as_str());
                    out.push(self.delivery(e, hook, id, &e.event_type, payload(e), subject));
                }
                if subscribed(&hook.events, &audit_type) {
                    let id = audit_message_id(e, hook.id.as_str());
                    out.push(self.delivery(e, hook, id, &audit_type, audit_payload(e), subject));
                }
            }
        }
        Ok(out)
    }

    /// One message of `e` to `hook`: rendered for its kind and format, or filtered out.
    fn delivery(
        &self,
        e: &RecordedEvent,
        hook: &Endpoint,
        delivery_id: String,
        event_type: &str,
        body: Value,
        subject: &Subject,
    ) -> NewDelivery {
        let o = &hook.options;
        let (payload, filtered) = if o.is_plain() {
            (body.to_string(), None)
        } else {
            let m = Message {
                id: &delivery_id,
                body: &body,
                subject,
            };
            match filtered_out(o.filter.as_ref(), &m)
                .map_or_else(|| queued_body(o, &m, &self.context), Err)
            {
                Ok(p) => (p, None),
                Err(reason) => (body.to_string(), Some(reason)),
            }
        };
        NewDelivery {
            org_id: e.org_id.clone(),
            webhook_id: hook.id.clone(),
            event_id: e.event_id.to_string(),
            event_type: event_type.to_string(),
            payload,
            schedule_step: 0,
            position: Some(e.position),
            fifo: o.ordering == DeliveryOrdering::Fifo,
            batch: batching(o).map_or(0, |(size, _)| i64::from(size)),
            filtered,
            delivery_id,
            trace_parent: e.trace_parent.clone(),
        }
    }

    /// Queue the deliveries of `events` (removing the outbox rows at `outbox_done` with them) and
    /// hand the worker what is queued claimed for it. From the outbox, messages sent one by one
    /// are handed before their rows commit, so that the send does not wait for the write (see
    /// [`Queued`]), and messages that travel in batches go unwritten, their events' outbox rows
    /// kept until they are (see [`crate::outstanding`]); an event comes from there once but for
    /// a crash. JetStream redelivers whatever it is unsure was acknowledged (around an outage,
    /// say), and the queue's idempotence keeps such copies from being sent only if nothing is
    /// sent before it: its messages are handed once queued.
    /// A batch is a span (`fan-out`) linked to the trace of each of its events.
    async fn queue(&self, events: &[RecordedEvent], outbox_done: &[i64]) -> Result<(), StoreError> {
        let span = tracing::info_span!("fan-out", events = events.len());
        trace_context::link_to(&span, events.iter().map(|e| e.trace_parent.as_deref()));
        self.queue_traced(events, outbox_done)
            .instrument(span)
            .await
    }

    async fn queue_traced(
        &self,
        events: &[RecordedEvent],
        outbox_done: &[i64],
    ) -> Result<(), StoreError> {
        let rows = self.deliveries(events).await?;
        let h = &self.handoff;
        let claim = QueueClaim {
            holder: &h.holder,
            ttl: h.ttl,
            max: h.max,
        };
        let from_outbox = !outbox_done.is_empty();
        let (unwritten, planned): (Vec<Queuing>, Vec<Queuing>) = Queuing::plan(&rows, Some(&claim))
            .into_iter()
            .partition(|q| {
                let r = q.row();
                from_outbox && q.is_claimed() && r.batch > 0 && r.position.is_some()
            });
        let unwritten: Vec<DueDelivery> = unwritten
            .iter()
            .filter_map(|q| {
                let mut d = q.claimed()?;
                d.unwritten = Some(Unwritten {
                    event_id: q.row().event_id.clone(),
                    position: q.row().position?,
                });
                Some(d)
            })
            .collect();
        let held: Vec<i64> = unwritten
            .iter()
            .filter_map(|d| Some(d.unwritten.as_ref()?.position))
            .collect();
        let kept: HashSet<i64> = held.iter().copied().collect();
        let outbox_done: Vec<i64> = outbox_done
            .iter()
            .copied()
            .filter(|p| !kept.contains(p))
            .collect();
        let (later, now): (Vec<DueDelivery>, Vec<DueDelivery>) = planned
            .iter()
            .filter_map(Queuing::claimed)
            .partition(|d| d.batch > 0 || !from_outbox);
        let (queued_ids, queued) = Queued::pending();
        self.hand(now, Some(queued));
        let inserted = Arc::new(self.queue.enqueue(&planned, &outbox_done).await?);
        let _ = queued_ids.send(Some(inserted.clone()));
        // FIFO lines are claimed from the queue, head first.
        if rows.iter().any(|r| r.fifo && r.filtered.is_none()) {
            h.wake.notify_one();
        }
        let later = later
            .into_iter()
            .filter(|d| inserted.contains(&d.delivery_id))
            .collect();
        self.hand(later, None);
        h.outstanding.hold(held);
        self.hand(unwritten, None);
        Ok(())
    }

    /// A stopped worker's claims expire, and any worker takes them then.
    fn hand(&self, deliveries: Vec<DueDelivery>, queued: Option<Queued>) {
        if !deliveries.is_empty()
            && self
                .handoff
                .deliveries
                .send(Handed { deliveries, queued })
                .is_err()
        {
            tracing::warn!("fan-out: no local worker to hand deliveries to");
        }
    }

    /// Embedded mode: drain the outbox into the queue while holding the outbox lease (the same
    /// one the NATS relay takes, so only one of them ever drains it). This process's commits come
    /// from its feed as they commit; the outbox itself is read at the start, when another
    /// process tells of a commit (`told`), after `idle` without one, and whenever the feed
    /// dropped events or a round failed. Committed rows are taken as they are, without waiting
    /// for older transactions, and exactly those rows leave.
    pub async fn run_outbox(
        self,
        db: Db,
        holder: String,
        wakes: OutboxWakes,
        idle: Duration,
        stop: impl Future<Output = ()>,
    ) {
        let OutboxWakes {
            feed,
            told,
            drains_here,
        } = wakes;
        tokio::pin!(stop);
        let log = EventLog::new(db.clone());
        let lease = Lease::new(db, "outbox-relay", holder, Duration::from_secs(5));
        let mut state = Draining {
            renewed: None,
            read_outbox: true,
            after: 0,
            read_back: ReadBack::default(),
        };
        let freed = self.handoff.outstanding.clone();
        loop {
            let pause = match self
                .drain(&log, &lease, &feed, &drains_here, &mut state)
                .await
            {
                Ok(true) => continue,
                Ok(false) => idle,
                Err(e) => {
                    tracing::warn!(error = %e, "fan-out: will retry");
                    state.renewed = None;
                    state.read_outbox = true;
                    state.after = 0;
                    Duration::from_millis(500)
                }
            };
            tokio::select! {
                _ = &mut stop => break,
                _ = feed.arrived().notified() => {}
                _ = freed.freed().notified() => {}
                _ = told.notified() => state.read_outbox = true,
                _ = tokio::time::sleep(pause) => state.read_outbox = true,
            }
        }
        if let Err(e) = lease.release().await {
            tracing::warn!(error = %e, "fan-out: could not release the lease");
        }
    }

    /// One round of [`Self::run_outbox`]: true when more is waiting.
    async fn drain(
        &self,
        log: &EventLog,
        lease: &Lease,
        feed: &CommitFeed,
        drains_here: &AtomicBool,
        state: &mut Draining,
    ) -> Result<bool, StoreError> {
        let held = lease.keep(&mut state.renewed).await?;
        drains_here.store(held, Ordering::Relaxed);
        if !held {
            // The holder hears of this process's commits and reads them from the outbox.
            feed.clear();
            return Ok(false);
        }
        if self.handoff.outstanding.full() {
            // Woken when batches were answered and written.
            return Ok(false);
        }
        let (handed, dropped) = feed.take(BATCH);
        state.read_outbox |= dropped;
        let full = handed.len() == BATCH;
        self.queue_outbox_rows(&state.read_back.unseen(handed))
            .await?;
        if full {
            return Ok(true);
        }
        if std::mem::take(&mut state.read_outbox) {
            let events = log.outbox_committed(state.after, BATCH as i64).await?;
            let more = events.len() == BATCH;
            state.after = if more {
                events.last().map_or(0, |e| e.position)
            } else {
                0
            };
            let outstanding = &self.handoff.outstanding;
            let events: Vec<RecordedEvent> = events
                .into_iter()
                .filter(|e| !outstanding.holds(e.position))
                .collect();
            self.queue_outbox_rows(&events).await?;
            state.read_back.note(&events);
            state.read_outbox = more;
        }
        Ok(state.read_outbox)
    }

    /// Queue the deliveries of `events` and remove their outbox rows with them.
    async fn queue_outbox_rows(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let taken: Vec<i64> = events.iter().map(|e| e.position).collect();
        self.queue(events, &taken).await
    }

    /// NATS mode: consume the events stream through one durable consumer shared by every
    /// delivery process; a message is acknowledged once its deliveries are queued, so one that
    /// was taken by a process that died is redelivered to another.
    pub async fn run_jetstream(self, config: BusConfig, stop: impl Future<Output = ()>) {
        use futures_util::{FutureExt, StreamExt};
        tokio::pin!(stop);
        let js = match jetstream(&config).await {
            Ok(js) => js,
            Err(e) => {
                tracing::error!(error = %e, "fan-out: cannot reach NATS");
                return;
            }
        };
        loop {
            let opened = tokio::select! {
                _ = &mut stop => return,
                r = consume(&js, &config) => r,
            };
            match opened {
                Err(e) => tracing::warn!(error = %e, "fan-out from JetStream: will retry"),
                Ok(mut messages) => loop {
                    let first = tokio::select! {
                        _ = &mut stop => return,
                        m = messages.next() => m,
                    };
                    let Some(first) = first else { break };
                    // Whatever else has arrived goes in the same batch.
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match messages.next().now_or_never() {
                            Some(Some(m)) => batch.push(m),
                            _ => break,
                        }
                    }
                    if let Err(e) = self.take(batch).await {
                        tracing::warn!(error = %e, "fan-out from JetStream: will retry");
                        break;
                    }
                },
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Queue the deliveries of a batch of stream messages, then acknowledge them.
    async fn take(
        &self,
        batch: Vec<
            Result<
                async_nats::jetstream::Message,
                async_nats::jetstream::consumer::pull::MessagesError,
            >,
        >,
    ) -> Result<(), BusError> {
        let mut messages = Vec::with_capacity(batch.len());
        let mut events = Vec::with_capacity(batch.len());
        for m in batch {
            let m = m.map_err(nats)?;
            match serde_json::from_slice::<RecordedEvent>(&m.payload) {
                Ok(e) => events.push(e),
                Err(e) => {
                    tracing::error!(error = %e, subject = %m.subject, "fan-out: not an event; dropped")
                }
            }
            messages.push(m);
        }
        // Positions are in log order within the stream; the newest one bounds the wait.
        events.sort_by_key(|e| e.position);
        self.queue(&events, &[]).await?;
        for m in messages {
            m.ack().await.map_err(nats)?;
        }
        Ok(())
    }
}

/// The shared durable consumer of the events stream (created with the stream if missing, as
/// after a NATS server restarted empty), as a stream of messages.
async fn consume(
    js: &async_nats::jetstream::Context,
    config: &BusConfig,
) -> Result<async_nats::jetstream::consumer::pull::Stream, BusError> {
    use async_nats::jetstream::consumer::{pull, AckPolicy};
    let stream = ensure_stream(js, config).await?;
    let name = format!("{}_delivery", config.stream);
    let consumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 10_000,
                ..Default::default()
            },
        )
        .await
        .map_err(nats)?;
    consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .map_err(nats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use easm_events::{Actor, OrgId};

    fn at(position: i64) -> RecordedEvent {
        RecordedEvent {
            event_id: uuid::Uuid::new_v4(),
            position,
            stream_id: "asset-1".into(),
            stream_version: 1,
            event_type: "asset.added".into(),
            schema_version: 1,
            occurred_at: chrono::Utc::now(),
            org_id: OrgId::new("org"),
            actor: Actor::system_part("test"),
            request_id: String::new(),
            correlation_id: String::new(),
            causation_id: None,
            data: serde_json::json!({}),
            chain_seq: position,
            prev_hash: String::new(),
            hash: String::new(),
            trace_parent: None,
        }
    }

    fn positions(events: &[RecordedEvent]) -> Vec<i64> {
        events.iter().map(|e| e.position).collect()
    }

    #[test]
    fn the_feed_gives_no_event_the_outbox_read_gave_already() {
        let mut read_back = ReadBack::default();
        read_back.note(&[at(3), at(4)]);
        let from_feed = read_back.unseen(vec![at(2), at(3), at(4), at(5)]);
        assert_eq!(positions(&from_feed), vec![2, 5]);
    }

    #[test]
    fn what_was_read_back_is_forgotten_past_its_bound() {
        let mut read_back = ReadBack::default();
        let read: Vec<RecordedEvent> = (0..ReadBack::KEEP as i64 + 10).map(at).collect();
        read_back.note(&read);
        assert_eq!(read_back.order.len(), ReadBack::KEEP);
        assert_eq!(read_back.positions.len(), ReadBack::KEEP);
        let from_feed = read_back.unseen(vec![at(0), at(9), at(10)]);
        assert_eq!(positions(&from_feed), vec![0, 9]);
    }
}
