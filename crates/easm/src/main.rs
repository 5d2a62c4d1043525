//! The `easm` binary: the server, the admin commands and the benchmark client.

mod bench;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use easm_api::{service::Service, AppState};
use easm_bus::{BusConfig, Relay};
use easm_delivery::{DeliveryConfig, DisableEndpoint, Fanout, RetrySchedule, Worker};
use easm_domain::{Plan, Role};
use easm_events::{Actor, EventMeta};
use easm_store::{Db, DbConfig};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "easm",
    version,
    about = "External Attack Surface Management backend"
)]
struct Cli {
    /// Directory of the embedded SQLite database.
    #[arg(long, global = true, env = "EASM_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// PostgreSQL URL (postgres://...). When set, it is used instead of the embedded SQLite file.
    #[arg(long, global = true, env = "EASM_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API, the outbox relay (with NATS) and delivery workers.
    Serve {
        #[arg(long, env = "EASM_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Do not create the `default` organization on an empty store.
        #[arg(long)]
        no_bootstrap: bool,
        #[command(flatten)]
        delivery: DeliveryArgs,
    },
    /// Run only the delivery side (relay, fan-out and delivery workers), to scale delivery apart
    /// from the API.
    Deliver {
        #[command(flatten)]
        delivery: DeliveryArgs,
    },
    /// Organizations and API keys.
    Admin {
        #[command(subcommand)]
        command: Admin,
    },
    /// Read models.
    Projections {
        #[command(subcommand)]
        command: Projections,
    },
    /// Load a running server over HTTP and report throughput, latency, lag and rebuild speed
    /// (see BENCHMARKS.md). Reads the same store settings as the server.
    Bench(bench::BenchArgs),
}

#[derive(clap::Args, Clone)]
struct DeliveryArgs {
    /// Allow http and private, loopback or link-local addresses as webhook targets (tests,
    /// receivers on the same network). Off by default: a tenant must not reach our network.
    #[arg(long, env = "EASM_WEBHOOK_ALLOW_PRIVATE")]
    webhook_allow_private: bool,
    /// Delays of the retries after the first attempt, comma-separated (units ms, s, m, h, d).
    #[arg(long, env = "EASM_WEBHOOK_RETRY_SCHEDULE", default_value = easm_delivery::DEFAULT_SCHEDULE)]
    webhook_retry_schedule: String,
    /// Attempts in flight to one endpoint, per process.
    #[arg(long, env = "EASM_WEBHOOK_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    webhook_concurrency: u32,
    /// Attempts per second to one endpoint, per process.
    #[arg(long, env = "EASM_WEBHOOK_RATE", default_value_t = 50.0)]
    webhook_rate: f64,
    /// An endpoint whose every attempt failed for this long is disabled (`endpoint.disabled`).
    #[arg(long, env = "EASM_WEBHOOK_DISABLE_AFTER", default_value = "5d")]
    webhook_disable_after: String,
    /// NATS server with JetStream; when set, committed events travel through it.
    #[arg(long, env = "EASM_NATS_URL")]
    nats_url: Option<String>,
    /// JetStream stream of the events.
    #[arg(long, env = "EASM_NATS_STREAM", default_value = "EASM_EVENTS")]
    nats_stream: String,
    /// Subjects are `<prefix>.<org id>.<event type>`.
    #[arg(long, env = "EASM_NATS_SUBJECT_PREFIX", default_value = "easm.events")]
    nats_subject_prefix: String,
}

#[derive(Subcommand)]
enum Admin {
    /// Create an organization and its owner key; prints {"orgId","ownerKey"}.
    CreateOrg {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "free", value_parser = ["free", "pro", "enterprise"])]
        plan: String,
    },
    /// Create an API key; prints {"keyId","key"}.
    CreateKey {
        #[arg(long)]
        org: String,
        #[arg(long, value_parser = ["viewer", "analyst", "admin", "owner"])]
        role: String,
        #[arg(long, default_value = "cli key")]
        name: String,
    },
    /// Revoke an API key.
    RevokeKey {
        #[arg(long)]
        key_id: String,
    },
}

#[derive(Subcommand)]
enum Projections {
    /// Drop the read models and rebuild them from the event log.
    Rebuild,
}

fn cli_meta() -> EventMeta {
    EventMeta::new(Actor::system_part("cli"), easm_api::service::new_id())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = DbConfig::from_settings(cli.database_url.as_deref(), &cli.data_dir);
    let db = Db::connect(&config).await.context("opening the database")?;
    let state = AppState::new(db.clone());
    let service = state.service.clone();
    service.projector().catch_up().await?;
    match cli.command {
        Command::Serve {
            listen,
            no_bootstrap,
            delivery,
        } => {
            if !no_bootstrap {
                bootstrap(&service, &listen).await?;
            }
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let mut state = state;
            state.webhook_allow_private = delivery.webhook_allow_private;
            let background = Background::start(&state, &delivery).await?;
            tracing::info!(addr = %listener.local_addr()?, backend = ?db.backend(), nats = delivery.nats_url.is_some(), "easm listening");
            easm_api::serve(listener, state, shutdown_signal()).await?;
            background.stop().await;
        }
        Command::Deliver { delivery } => {
            let projector = easm_api::spawn_projector(&state);
            let background = Background::start(&state, &delivery).await?;
            tracing::info!(backend = ?db.backend(), nats = delivery.nats_url.is_some(), "easm delivering");
            shutdown_signal().await;
            background.stop().await;
            projector.abort();
        }
        Command::Admin { command } => admin(&service, command).await?,
        Command::Bench(args) => bench::run(args, db.clone()).await?,
        Command::Projections {
            command: Projections::Rebuild,
        } => {
            let started = std::time::Instant::now();
            let n = service.projector().rebuild().await?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({"rebuilt": true, "events": n, "seconds": secs, "eventsPerSecond": (n as f64 / secs.max(1e-9)).round()})
            );
        }
    }
    db.close().await;
    Ok(())
}

/// The work beside the API: the outbox relay (NATS mode; leased, so one process relays), fan-out
/// of events into the delivery queue, and the delivery worker.
struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    async fn start(state: &AppState, args: &DeliveryArgs) -> Result<Background> {
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
            state.delivery_wake.clone(),
        );
        let mut tasks = vec![tokio::spawn(worker.run(until_stop()))];
        match args.nats_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => {
                let mut bus = BusConfig::new(url, holder.clone());
                bus.stream = args.nats_stream.clone();
                bus.subject_prefix = args.nats_subject_prefix.clone();
                let relay = Relay::connect(db.clone(), bus.clone()).await?;
                tasks.push(tokio::spawn(relay.run(until_stop())));
                tasks.push(tokio::spawn(fanout.run_jetstream(bus, until_stop())));
            }
            None => tasks.push(tokio::spawn(fanout.run_outbox(
                db,
                holder,
                state.service.committed().clone(),
                until_stop(),
            ))),
        }
        Ok(Background { stop, tasks })
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// On an empty store, create organization `default` and print its owner key once.
async fn bootstrap(service: &Service, listen: &str) -> Result<()> {
    if service.read().org_count().await? > 0 {
        return Ok(());
    }
    let (org_id, key) = service
        .create_org(&cli_meta(), "default", Plan::Enterprise)
        .await?;
    println!(
        "Created organization \"default\" ({org_id}). Its owner API key is shown only this once:"
    );
    println!("  {}", key.secret);
    println!("Try it:");
    println!(
        "  curl -H \"X-API-Key: {}\" http://{listen}/api/assets",
        key.secret
    );
    Ok(())
}

async fn admin(service: &Service, command: Admin) -> Result<()> {
    match command {
        Admin::CreateOrg { name, plan } => {
            let plan = Plan::parse(&plan).context("unknown plan")?;
            let (org_id, key) = service.create_org(&cli_meta(), &name, plan).await?;
            println!("{}", json!({"orgId": org_id, "ownerKey": key.secret}));
        }
        Admin::CreateKey { org, role, name } => {
            let role = Role::parse(&role).context("unknown role")?;
            let key = service.create_key(&cli_meta(), &org, role, &name).await?;
            println!("{}", json!({"keyId": key.key_id, "key": key.secret}));
        }
        Admin::RevokeKey { key_id } => {
            let Some(org) = service.read().key_org(&key_id).await? else {
                bail!("no API key with id {key_id}");
            };
            service.revoke_key(&cli_meta(), &org, &key_id).await?;
            println!("{}", json!({"keyId": key_id, "revoked": true}));
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
