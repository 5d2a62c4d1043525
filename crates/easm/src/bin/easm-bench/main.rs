//! `easm-bench`: the measurements of BENCHMARKS.md, kept out of the server binary. Each reads
//! the same store settings as the server (`EASM_DATA_DIR` / `EASM_DATABASE_URL`).

mod audit;
mod delivery;
mod discovery;
mod findings;
mod siem;
mod soak;
mod writes;

use anyhow::Result;
use clap::Parser;
use easm::config::StoreArgs;
use easm_events::{Actor, EventMeta};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "easm-bench",
    version,
    about = "easm's benchmarks (see BENCHMARKS.md)"
)]
struct Cli {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: Bench,
}

#[derive(clap::Subcommand)]
enum Bench {
    /// Load a running server over HTTP and report write throughput, latency, the commit-to-read
    /// model lag and the rebuild speed.
    Writes(writes::Args),
    /// Webhook delivery in one process (API, relay, fan-out, delivery and a local receiver):
    /// deliveries per second and commit-to-receipt latency.
    Delivery(delivery::Args),
    /// The audit side at scale: write N events, then time the export, its verification and a
    /// replay of them.
    Audit(audit::Args),
    /// Discovery's brute force against a local authoritative DNS server with a wildcard
    /// sub-zone: names resolved per second, real names found, reflections filtered.
    Discovery(discovery::Args),
    /// Findings at scale: N findings imported over M assets, then filtered pages, deep pages,
    /// counts, risk, group summary and a full export timed (p50/p99).
    Findings(findings::Args),
    /// Batched delivery of committed events to a Splunk HTTP Event Collector on 127.0.0.1:
    /// events per second from committed outbox to receiver.
    Siem(siem::Args),
    /// `easm serve` as a process of its own under a steady command rate with webhook
    /// deliveries for a long time, sampled every minute: RSS, descriptors, connections, p99.
    Soak(soak::Args),
}

/// What the benchmarks command carries: a system actor of their own, a request id per command.
fn meta() -> EventMeta {
    EventMeta::new(Actor::system_part("bench"), easm_app::new_id::<String>())
}

/// The `p` quantile of sorted microseconds, in milliseconds.
fn ms(sorted: &[i64], p: f64) -> f64 {
    let i = ((sorted.len().max(1) as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |&us| us as f64 / 1000.0)
}

/// The `p` quantile of sorted durations, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len().max(1) as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let _logs = easm::telemetry::init()?;
    let cli = Cli::parse();
    let db = cli.store.open().await?;
    match cli.command {
        Bench::Writes(args) => writes::run(args, db.clone()).await?,
        Bench::Delivery(args) => delivery::run(args, db.clone()).await?,
        Bench::Audit(args) => audit::run(args, db.clone()).await?,
        Bench::Discovery(args) => discovery::run(args).await?,
        Bench::Siem(args) => siem::run(args, db.clone()).await?,
        Bench::Findings(args) => findings::run(args, db.clone()).await?,
        Bench::Soak(args) => soak::run(args, db.clone(), cli.store.clone()).await?,
    }
    db.close().await;
    Ok(())
}
