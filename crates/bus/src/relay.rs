use async_nats::jetstream::{self, message::PublishMessage, stream};
use easm_events::RecordedEvent;
use easm_store::{Db, EventLog, Lease, StoreError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::Instrument;

/// Events published per round; their acknowledgements are awaited together.
const BATCH: i64 = 256;

/// The pause while committed events wait for the readable horizon (see `EventLog::outbox`).
const HORIZON_WAIT: Duration = Duration::from_millis(10);

/// The pause after a failed round (whatever the idle pause: that one may be long when commits
/// are told).
const RETRY: Duration = Duration::from_millis(500);

#[derive(Clone, Debug)]
pub struct BusConfig {
    pub url: String,
    /// JetStream stream holding the events.
    pub stream: String,
    /// Subjects are `<prefix>.<org id>.<event type>`.
    pub subject_prefix: String,
    /// This process's name in the relay lease.
    pub holder: String,
    /// How long a silent holder keeps the lease; another process takes over after it.
    pub lease_ttl: Duration,
    /// Pause between rounds when the outbox is empty or NATS is unreachable.
    pub idle: Duration,
}

impl BusConfig {
    pub fn new(url: impl Into<String>, holder: impl Into<String>) -> Self {
        BusConfig {
            url: url.into(),
            stream: "EASM_EVENTS".into(),
            subject_prefix: "easm.events".into(),
            holder: holder.into(),
            lease_ttl: Duration::from_secs(5),
            idle: Duration::from_millis(100),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn nats<E: std::fmt::Display>(e: E) -> BusError {
    BusError::Nats(e.to_string())
}

pub fn subject(prefix: &str, e: &RecordedEvent) -> String {
    format!("{prefix}.{}.{}", e.org_id, e.event_type)
}

/// A JetStream context on a connection that keeps retrying in the background if NATS is not up.
pub async fn jetstream(config: &BusConfig) -> Result<jetstream::Context, BusError> {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .connect(&config.url)
        .await
        .map_err(nats)?;
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_secs(5));
    Ok(js)
}

/// Whether NATS is reachable, told by a connection of its own that keeps reconnecting: what
/// `/readyz` reports for the bus.
#[derive(Clone)]
pub struct Reachability(async_nats::Client);

impl Reachability {
    pub async fn connect(config: &BusConfig) -> Result<Reachability, BusError> {
        Ok(Reachability(
            async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connection_timeout(Duration::from_secs(2))
                .name("easm readiness")
                .connect(&config.url)
                .await
                .map_err(nats)?,
        ))
    }

    pub fn is_up(&self) -> bool {
        self.0.connection_state() == async_nats::connection::State::Connected
    }
}

/// The events stream, created if missing (also after a NATS server restarted empty).
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: &BusConfig,
) -> Result<stream::Stream, BusError> {
    js.get_or_create_stream(stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(nats)
}

pub struct Relay {
    log: EventLog,
    lease: Lease,
    config: BusConfig,
    js: jetstream::Context,
    wake: Arc<Notify>,
    /// Whether this process holds the lease, for the commit notices (see `relay_commits`).
    drains_here: Arc<AtomicBool>,
}

impl Relay {
    /// Connect to NATS (retrying in the background if it is not up yet); the stream is created
    /// on the first round that reaches JetStream.
    pub async fn connect(db: Db, config: BusConfig) -> Result<Relay, BusError> {
        let js = jetstream(&config).await?;
        Ok(Relay {
            lease: Lease::new(
                db.clone(),
                "outbox-relay",
                config.holder.clone(),
                config.lease_ttl,
            ),
            log: EventLog::new(db),
            config,
            js,
            wake: Arc::default(),
            drains_here: Arc::default(),
        })
    }

    /// Start a round as soon as `wake` is notified (commits) instead of waiting out the idle
    /// pause; keep `drains_here` telling whether this process holds the lease.
    pub fn wake_on(mut self, wake: Arc<Notify>, drains_here: Arc<AtomicBool>) -> Self {
        self.wake = wake;
        self.drains_here = drains_here;
        self
    }

    /// Publish one batch from the outbox; returns how many events went out. Each event carries
    /// its `traceparent` in its JSON; the batch is a span (`relay batch`) of its own.
    pub async fn round(&self) -> Result<usize, BusError> {
        let events = self.log.outbox(BATCH).await?;
        if events.is_empty() {
            return Ok(0);
        }
        let span = tracing::info_span!("relay batch", events = events.len());
        self.publish(&events).instrument(span).await?;
        Ok(events.len())
    }

    async fn publish(&self, events: &[RecordedEvent]) -> Result<(), BusError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let payload = serde_json::to_vec(e).map_err(nats)?;
            let publish = PublishMessage::build()
                .message_id(e.event_id.to_string())
                .payload(bytes::Bytes::from(payload));
            acks.push(
                self.js
                    .send_publish(subject(&self.config.subject_prefix, e), publish)
                    .await
                    .map_err(nats)?,
            );
        }
        for ack in acks {
            ack.await.map_err(nats)?;
        }
        self.log.outbox_done(last.position).await?;
        Ok(())
    }

    /// One round; answers the pause before the next. `renewed`: when the lease was last taken
    /// or extended (see `Lease::keep`).
    async fn step(
        &self,
        stream_ready: &mut bool,
        renewed: &mut Option<Instant>,
    ) -> Result<Duration, BusError> {
        let held = self.lease.keep(renewed).await?;
        self.drains_here.store(held, Ordering::Relaxed);
        if !held {
            return Ok(self.config.idle);
        }
        if !*stream_ready {
            ensure_stream(&self.js, &self.config).await?;
            *stream_ready = true;
        }
        if self.round().await? > 0 {
            return Ok(Duration::ZERO);
        }
        // Committed events wait for an older transaction of the cluster to end: no notice will
        // tell when it has.
        Ok(if self.log.outbox_waits().await? {
            HORIZON_WAIT
        } else {
            self.config.idle
        })
    }

    /// Relay until `stop` resolves: while holding the lease, publish; otherwise wait and retry.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut stream_ready = false;
        let mut renewed = None;
        loop {
            let pause = match self.step(&mut stream_ready, &mut renewed).await {
                Ok(pause) => pause,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay: will retry");
                    // A NATS server that restarted empty has lost the stream: check it again.
                    stream_ready = false;
                    renewed = None;
                    RETRY
                }
            };
            tokio::select! {
                _ = &mut stop => break,
                _ = self.wake.notified(), if pause == self.config.idle => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        if let Err(e) = self.lease.release().await {
            tracing::warn!(error = %e, "outbox relay: could not release the lease");
        }
    }
}
