//! The `easm` binary: the server, the admin commands and the benchmark client.

mod audit;
mod background;
mod bench;
mod bench_audit;
mod bench_delivery;
mod replay;
mod scanning;

use anyhow::{bail, Context, Result};
use background::{Background, DeliveryArgs};
use clap::{Parser, Subcommand};
use easm_api::{service::Service, AppState};
use easm_domain::{Plan, Role};
use easm_events::{Actor, EventMeta};
use easm_store::{Db, DbConfig};
use scanning::ScanArgs;
use serde_json::json;
use std::path::PathBuf;

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
    /// Run the HTTP API, the outbox relay (with NATS), delivery and scan workers.
    Serve {
        #[arg(long, env = "EASM_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Do not create the `default` organization on an empty store.
        #[arg(long)]
        no_bootstrap: bool,
        #[command(flatten)]
        delivery: DeliveryArgs,
        #[command(flatten)]
        scan: ScanArgs,
    },
    /// Run only the background side (relay, fan-out, delivery and scan workers), to scale it
    /// apart from the API.
    Deliver {
        #[command(flatten)]
        delivery: DeliveryArgs,
        #[command(flatten)]
        scan: ScanArgs,
    },
    /// Organizations and API keys.
    Admin {
        #[command(subcommand)]
        command: Admin,
    },
    /// The verifiable audit export: export, verify, public-key.
    Audit {
        #[command(subcommand)]
        command: audit::Audit,
    },
    /// Replay one organization's log up to a moment into a SQLite snapshot of its read models.
    Replay(replay::ReplayArgs),
    /// Read models.
    Projections {
        #[command(subcommand)]
        command: Projections,
    },
    /// Load a running server over HTTP and report throughput, latency, lag and rebuild speed
    /// (see BENCHMARKS.md). Reads the same store settings as the server.
    Bench(bench::BenchArgs),
    /// Webhook delivery in one process (API, relay, fan-out, delivery and a local receiver):
    /// deliveries per second and commit-to-receipt latency (see BENCHMARKS.md).
    BenchDelivery(bench_delivery::BenchDeliveryArgs),
    /// The audit side at scale: write N events, then time the export, its verification and a
    /// replay of them (see BENCHMARKS.md).
    BenchAudit(bench_audit::BenchAuditArgs),
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
    /// Create an API key; prints {"keyId","key"}. With --user the key is the member's: it acts
    /// with at most the member's current role (their role when --role is left out).
    CreateKey {
        #[arg(long)]
        org: String,
        #[arg(long, value_parser = ["viewer", "analyst", "admin", "owner"], required_unless_present = "user")]
        role: Option<String>,
        #[arg(long, default_value = "cli key")]
        name: String,
        /// The member (user id) the key belongs to.
        #[arg(long)]
        user: Option<String>,
    },
    /// Add a member to an organization; prints {"userId","email","role"}.
    AddUser {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["viewer", "analyst", "admin", "owner"])]
        role: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Change a member's role (their keys follow); prints {"userId","role"}.
    SetRole {
        #[arg(long)]
        user_id: String,
        #[arg(long, value_parser = ["viewer", "analyst", "admin", "owner"])]
        role: String,
    },
    /// Remove a member and revoke their keys; prints {"userId","removed","revokedKeys"}.
    RemoveUser {
        #[arg(long)]
        user_id: String,
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
    /// Replay the log into a shadow database and compare it row by row with the read models;
    /// prints the differences and exits 1 on any.
    Verify,
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
    if let Command::Audit {
        command: audit::Audit::Verify { file, public_key },
    } = &cli.command
    {
        // Offline: no database is opened.
        let intact = audit::verify(file, public_key.as_deref())?;
        std::process::exit(if intact { 0 } else { 1 });
    }
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
            scan,
        } => {
            if !no_bootstrap {
                bootstrap(&service, &listen).await?;
            }
            // Made on the first start, so the public key can be published before any export.
            easm_store::audit_signing_secret(&db).await?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let mut state = state;
            state.webhook_allow_private = delivery.webhook_allow_private;
            let background = Background::start(&state, &delivery, &scan).await?;
            tracing::info!(addr = %listener.local_addr()?, backend = ?db.backend(), nats = delivery.nats_url.is_some(), "easm listening");
            easm_api::serve(listener, state, shutdown_signal()).await?;
            background.stop().await;
        }
        Command::Deliver { delivery, scan } => {
            let projector = easm_api::spawn_projector(&state);
            let background = Background::start(&state, &delivery, &scan).await?;
            tracing::info!(backend = ?db.backend(), nats = delivery.nats_url.is_some(), "easm delivering");
            shutdown_signal().await;
            background.stop().await;
            projector.abort();
        }
        Command::Admin { command } => admin(&service, command).await?,
        Command::Audit { command } => audit::run(&db, command).await?,
        Command::Replay(args) => replay::replay(&service, args).await?,
        Command::Projections {
            command: Projections::Verify,
        } => {
            let agree = replay::verify(&service).await?;
            db.close().await;
            if !agree {
                std::process::exit(1);
            }
            return Ok(());
        }
        Command::Bench(args) => bench::run(args, db.clone()).await?,
        Command::BenchDelivery(args) => bench_delivery::run(args, db.clone()).await?,
        Command::BenchAudit(args) => bench_audit::run(args, db.clone()).await?,
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

async fn member_org(service: &Service, user_id: &str) -> Result<String> {
    service
        .read()
        .user_org(user_id)
        .await?
        .with_context(|| format!("no member with id {user_id}"))
}

async fn admin(service: &Service, command: Admin) -> Result<()> {
    match command {
        Admin::CreateOrg { name, plan } => {
            let plan = Plan::parse(&plan).context("unknown plan")?;
            let (org_id, key) = service.create_org(&cli_meta(), &name, plan).await?;
            println!("{}", json!({"orgId": org_id, "ownerKey": key.secret}));
        }
        Admin::CreateKey {
            org,
            role,
            name,
            user,
        } => {
            let role = role
                .map(|r| Role::parse(&r).context("unknown role"))
                .transpose()?;
            let key = service
                .create_key(&cli_meta(), &org, role, &name, user.as_deref())
                .await?;
            println!("{}", json!({"keyId": key.key_id, "key": key.secret}));
        }
        Admin::AddUser {
            org,
            email,
            role,
            name,
        } => {
            let role = Role::parse(&role).context("unknown role")?;
            let (user_id, email) = service
                .add_user(&cli_meta(), &org, &email, &name, role)
                .await?;
            println!(
                "{}",
                json!({"userId": user_id, "email": email, "role": role.as_str()})
            );
        }
        Admin::SetRole { user_id, role } => {
            let role = Role::parse(&role).context("unknown role")?;
            let org = member_org(service, &user_id).await?;
            service
                .change_role(&cli_meta(), &org, &user_id, role)
                .await?;
            println!("{}", json!({"userId": user_id, "role": role.as_str()}));
        }
        Admin::RemoveUser { user_id } => {
            let org = member_org(service, &user_id).await?;
            let revoked = service.remove_user(&cli_meta(), &org, &user_id).await?;
            println!(
                "{}",
                json!({"userId": user_id, "removed": true, "revokedKeys": revoked})
            );
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
