//! The `easm` binary: the server, the background side alone, and the tools over the store.

use anyhow::{Context, Result};
use clap::Parser;
use easm::background::Background;
use easm::config::{Cli, Command, Projections};
use easm::progress::Progress;
use easm::{admin, audit, replay, Shutdown};
use easm_api::AppState;
use serde_json::json;
use std::sync::Arc;

fn main() {
    // Before the runtime: the span exporter has a blocking client of its own.
    let telemetry = easm::telemetry::init().unwrap_or_else(|e| fail(&e));
    let runtime = tokio::runtime::Runtime::new()
        .context("starting the runtime")
        .unwrap_or_else(|e| fail(&e));
    let done = runtime.block_on(run());
    telemetry.flush();
    if let Err(e) = done {
        fail(&e);
    }
}

/// The one line a failed command prints, and its exit status.
fn fail(e: &anyhow::Error) -> ! {
    eprintln!("easm: {}", easm::error_line(e));
    // Only when asked for: anyhow captures one under RUST_BACKTRACE or RUST_LIB_BACKTRACE.
    if e.backtrace().status() == std::backtrace::BacktraceStatus::Captured {
        eprintln!("{}", e.backtrace());
    }
    std::process::exit(1);
}

async fn run() -> Result<()> {
    let cli = Cli::parse();
    if let Command::Audit {
        command: audit::Audit::Verify { file, public_key },
    } = &cli.command
    {
        // Offline: no database is opened.
        let intact = audit::verify(file, public_key.as_deref())?;
        std::process::exit(if intact { 0 } else { 1 });
    }
    // Neither opens a database: the bridge only forwards, the catalogue is the binary's own.
    match &cli.command {
        Command::Mcp { url, key } => return easm::mcp_bridge::run(url, key).await,
        Command::McpToolsDoc => {
            print!("{}", easm_api::tools_markdown());
            return Ok(());
        }
        _ => {}
    }
    let db = cli.store.open().await?;
    let state = AppState::new(db.clone());
    let app = state.commands.clone();
    app.projector().catch_up().await?;
    match cli.command {
        Command::Serve {
            listen,
            mcp_listen,
            no_bootstrap,
            trusted_proxies,
            metrics,
            delivery,
            scan,
            stopping,
        } => {
            let stop = Shutdown::listen(stopping.shutdown_timeout);
            if !no_bootstrap {
                admin::bootstrap(&app, &listen).await?;
            }
            // Made on the first start, so the public key can be published before any export.
            easm_store::audit_signing_secret(&db).await?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let mcp_listener = match &mcp_listen {
                Some(addr) => Some(
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("binding {addr} (EASM_MCP_LISTEN)"))?,
                ),
                None => None,
            };
            let mut state = state;
            state.webhook_allow_private = delivery.webhook_allow_private;
            state.trusted_proxies = trusted_proxies;
            if metrics {
                state.metrics = Some(easm_api::metrics::install().map_err(anyhow::Error::msg)?);
            }
            state.rendering = delivery.rendering();
            if let Some(bus) = delivery.bus("readiness") {
                let nats = easm_bus::Reachability::connect(&bus).await?;
                state.dependencies.push(easm_api::Dependency {
                    name: "nats",
                    up: Arc::new(move || nats.is_up()),
                });
            }
            let background = Background::start(&state, &delivery, &scan).await?;
            tracing::info!(addr = %listener.local_addr()?, backend = ?db.backend(), nats = delivery.nats_url.is_some(), "easm listening");
            if let Some(l) = &mcp_listener {
                tracing::info!(addr = %l.local_addr()?, "MCP server listening");
            }
            let served = easm_api::serve(listener, mcp_listener, state, stop.asked());
            if let Some(served) = stop.bounded("requests under way", served).await {
                served?;
            }
            stop.bounded("background work under way", background.stop())
                .await;
            stop.bounded("closing the database", db.close()).await;
            tracing::info!("stopped");
            return Ok(());
        }
        Command::Deliver {
            delivery,
            scan,
            stopping,
        } => {
            let stop = Shutdown::listen(stopping.shutdown_timeout);
            let projector = easm_api::spawn_projector(&state);
            let background = Background::start(&state, &delivery, &scan).await?;
            tracing::info!(backend = ?db.backend(), nats = delivery.nats_url.is_some(), "easm delivering");
            stop.asked().await;
            stop.bounded("background work under way", background.stop())
                .await;
            projector.abort();
            stop.bounded("closing the database", db.close()).await;
            tracing::info!("stopped");
            return Ok(());
        }
        // Answered before the store was opened.
        Command::Mcp { .. } | Command::McpToolsDoc => {}
        Command::Admin { command } => admin::run(&app, command).await?,
        Command::Audit { command } => audit::run(&db, command).await?,
        Command::Replay(args) => {
            let progress = Progress::working("replaying the log");
            replay::replay(&app, args).await?;
            progress.finish();
        }
        Command::Projections {
            command: Projections::Verify,
        } => {
            let progress = Progress::working("comparing the read models with a replay of the log");
            let agree = replay::verify(&app).await?;
            progress.finish();
            db.close().await;
            if !agree {
                std::process::exit(1);
            }
            return Ok(());
        }
        Command::Projections {
            command: Projections::Rebuild,
        } => {
            let started = std::time::Instant::now();
            let progress = Progress::working("rebuilding the read models from the log");
            let n = app.projector().rebuild().await?;
            progress.finish();
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
