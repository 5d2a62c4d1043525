//! What runs beside the API in `serve`, and alone in `deliver`: the outbox relay, fan-out, the
//! delivery worker, the scan workers and the monitor scheduler, with their settings.

use crate::scanning::{run_monitors, ScanArgs, ServiceJobs};
use anyhow::{bail, Result};
use easm_api::AppState;
use easm_bus::{BusConfig, Relay};
use easm_delivery::{DeliveryConfig, DisableEndpoint, Fanout, RetrySchedule, Worker};
use easm_events::{Actor, EventMeta};
use easm_scanner::worker::{ScanWorker, WorkerConfig};
use easm_store::Lease;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Clone)]
pub struct DeliveryArgs {
    /// Allow http and private, loopback or link-local addresses as webhook targets (tests,
    /// receivers on the same network). Off by default: a tenant must not reach our network.
    #[arg(long, env = "EASM_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Delays of the retries after the first attempt, comma-separated (units ms, s, m, h, d).
    #[arg(long, env = "EASM_WEBHOOK_RETRY_SCHEDULE", default_value = easm_delivery::DEFAULT_SCHEDULE)]
    pub webhook_retry_schedule: String,
    /// Attempts in flight to one endpoint, per process.
    #[arg(long, env = "EASM_WEBHOOK_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub webhook_concurrency: u32,
    /// Attempts per second to one endpoint, per process.
    #[arg(long, env = "EASM_WEBHOOK_RATE", default_value_t = 50.0)]
    pub webhook_rate: f64,
    /// An endpoint whose every attempt failed for this long is disabled (`endpoint.disabled`).
    #[arg(long, env = "EASM_WEBHOOK_DISABLE_AFTER", default_value = "5d")]
    pub webhook_disable_after: String,
    /// NATS server with JetStream; when set, committed events travel through it.
    #[arg(long, env = "EASM_NATS_URL")]
    pub nats_url: Option<String>,
    /// JetStream stream of the events.
    #[arg(long, env = "EASM_NATS_STREAM", default_value = "EASM_EVENTS")]
    pub nats_stream: String,
    /// Subjects are `<prefix>.<org id>.<event type>`.
    #[arg(long, env = "EASM_NATS_SUBJECT_PREFIX", default_value = "easm.events")]
    pub nats_subject_prefix: String,
}

/// The work beside the API: the outbox relay (NATS mode; leased, so one process relays), fan-out
/// of events into the delivery queue, the delivery worker, and the scan workers.
pub struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    pub async fn start(
        state: &AppState,
        args: &DeliveryArgs,
        scan: &ScanArgs,
    ) -> Result<Background> {
        let (scan_config, lease) = scan.config()?;
        let db = state.db.clone();
        let holder = format!(
            "easm-{}-{}",
            std::process::id(),
            easm_api::service::new_id()
        );
        let mut config = DeliveryConfig::new(holder.clone());
        config.schedule = RetrySchedule::parse(&args.webhook_retry_schedule)
            .map_err(|e| anyhow::anyhow!("EASM_WEBHOOK_RETRY_SCHEDULE: {e}"))?;
        config.concurrency = args.webhook_concurrency as usize;
        if !args.webhook_rate.is_finite() || args.webhook_rate <= 0.0 {
            bail!("EASM_WEBHOOK_RATE must be above 0");
        }
        config.rate = args.webhook_rate;
        config.disable_after = easm_delivery::parse_duration(&args.webhook_disable_after)
            .map_err(|e| anyhow::anyhow!("EASM_WEBHOOK_DISABLE_AFTER: {e}"))?;
        config.allow_private = args.webhook_allow_private;

        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let until_stop = || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let service = state.service.clone();
        let disable: DisableEndpoint = Arc::new(move |org, webhook, since| {
            let service = service.clone();
            Box::pin(async move {
                let since = easm_events::format_timestamp(&easm_events::from_micros(since));
                let meta =
                    EventMeta::new(Actor::system_part("delivery"), easm_api::service::new_id());
                let reason = "every delivery attempt failed for the configured period";
                if let Err(e) = service
                    .disable_webhook(&meta, &org, &webhook, &since, reason)
                    .await
                {
                    tracing::warn!(error = %e, webhook = %webhook, "could not disable a failing endpoint");
                }
            })
        });
        let worker = Worker::new(db.clone(), config, state.delivery_wake.clone(), disable)?;
        let fanout = Fanout::new(
            db.clone(),
            state.service.projector().clone(),
            worker.handoff(),
        );
        let every = scan.monitor_interval()?;
        let scheduler = Lease::new(
            db.clone(),
            "monitor-scheduler",
            holder.clone(),
            (every * 3).max(Duration::from_secs(10)),
        );
        let mut tasks = vec![
            tokio::spawn(worker.run(until_stop())),
            tokio::spawn(run_monitors(
                state.service.clone(),
                scheduler,
                every,
                until_stop(),
            )),
        ];
        let scanners = (scan.scan_workers > 0).then(|| {
            let config = WorkerConfig {
                holder: holder.clone(),
                scan: scan_config,
                jobs: scan.scan_workers,
                lease,
                poll: Duration::from_millis(500),
            };
            ScanWorker::new(
                Arc::new(ServiceJobs(state.service.clone())),
                db.clone(),
                config,
            )
        });
        match args.nats_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => {
                let mut bus = BusConfig::new(url, holder.clone());
                bus.stream = args.nats_stream.clone();
                bus.subject_prefix = args.nats_subject_prefix.clone();
                let relay = Relay::connect(db.clone(), bus.clone())
                    .await?
                    .wake_on(state.service.committed().clone());
                tasks.push(tokio::spawn(relay.run(until_stop())));
                if let Some(s) = scanners {
                    // The sweep only takes what the work queue left longer than a lease.
                    tasks.push(tokio::spawn(s.clone().run_queue(lease * 4, until_stop())));
                    tasks.push(tokio::spawn(s.run_jetstream(bus.clone(), until_stop())));
                }
                tasks.push(tokio::spawn(fanout.run_jetstream(bus, until_stop())));
            }
            None => {
                if let Some(s) = scanners {
                    tasks.push(tokio::spawn(s.run_queue(Duration::ZERO, until_stop())));
                }
                tasks.push(tokio::spawn(fanout.run_outbox(
                    db,
                    holder,
                    state.service.committed().clone(),
                    until_stop(),
                )));
            }
        }
        Ok(Background { stop, tasks })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
