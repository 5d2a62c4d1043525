//! `easm-bench discovery`: brute-force resolution as discovery runs it, against an
//! authoritative DNS server on 127.0.0.1 that this benchmark starts, holding `--real` names under
//! `bench.test` and a wildcard sub-zone `*.wild.bench.test`. Half the candidates are under the
//! zone (the real names among them), half under the wildcard zone (every one of which answers).
//! Reports names resolved per second, the real names found, and the wildcard reflections that
//! got through (the goal: all of the first, none of the second). See BENCHMARKS.md.

use anyhow::{ensure, Result};
use easm::zone_server::{ZoneServer, Zones};
use easm_scanner::discovery::{resolve_candidates, Wildcards};
use easm_scanner::dns::Dns;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Candidate names resolved.
    #[arg(long, default_value_t = 100_000)]
    candidates: usize,
    /// Real names in the zone, all among the candidates.
    #[arg(long, default_value_t = 1_000)]
    real: usize,
    /// Names resolved at once (`EASM_DISCOVERY_CONCURRENCY`).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
}

pub async fn run(args: Args) -> Result<()> {
    ensure!(
        args.real * 2 <= args.candidates,
        "--real must be at most half of --candidates"
    );
    let mut zones = Zones::default()
        .zone("bench.test")
        .a("*.wild.bench.test", [127, 0, 0, 9].into());
    let real: Vec<String> = (0..args.real)
        .map(|i| format!("host{i}.bench.test"))
        .collect();
    for (i, name) in real.iter().enumerate() {
        zones = zones.a(name, [127, 1, (i / 250) as u8, (i % 250) as u8 + 1].into());
    }
    let server = ZoneServer::start(zones).await?;
    let dns = Dns::new(&[server.addr], Duration::from_secs(2)).map_err(anyhow::Error::msg)?;
    let half = args.candidates / 2;
    let mut candidates: Vec<String> = (args.real..half)
        .map(|i| format!("host{i}.bench.test"))
        .chain(real.iter().cloned())
        .collect();
    candidates.extend((0..args.candidates - half).map(|i| format!("w{i}.wild.bench.test")));
    let n = candidates.len();
    let wildcards = Wildcards::default();
    let started = Instant::now();
    let found = resolve_candidates(&dns, &wildcards, candidates, args.concurrency).await;
    let secs = started.elapsed().as_secs_f64();
    let real_found = found.iter().filter(|(name, _)| real.contains(name)).count();
    let reflections = found
        .iter()
        .filter(|(name, _)| name.ends_with(".wild.bench.test"))
        .count();
    let report = wildcards.report().await;
    println!(
        "{}",
        serde_json::json!({
            "candidates": n,
            "seconds": (secs * 1000.0).round() / 1000.0,
            "namesPerSecond": (n as f64 / secs).round(),
            "concurrency": args.concurrency,
            "realNames": args.real,
            "realFound": real_found,
            "wildcardReflectionsReported": reflections,
            "wildcardZones": report.iter().map(|w| &w.zone).collect::<Vec<_>>(),
            "wildcardFiltered": report.iter().map(|w| w.filtered).sum::<u32>(),
        })
    );
    Ok(())
}
