//! Commands that replay the log into a fresh SQLite database: `easm replay` (one organization at
//! a moment, for auditors) and `easm projections verify` (everything, compared row by row with
//! the live read models).

use anyhow::{bail, Context, Result};
use easm_api::snapshot::{replay_into, replay_org, Until, PAGE};
use easm_app::App;
use easm_events::{OrgId, RecordedEvent};
use easm_projections::ReadModels;
use easm_store::Db;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct ReplayArgs {
    #[arg(long)]
    org: OrgId,
    /// RFC 3339: replay the events that occurred before this moment.
    #[arg(
        long,
        conflicts_with = "until_position",
        required_unless_present = "until_position"
    )]
    until: Option<String>,
    /// Replay the events up to this position (included).
    #[arg(long)]
    until_position: Option<i64>,
    /// The snapshot file to write (replaced if it exists).
    #[arg(long)]
    out: PathBuf,
}

pub async fn replay(app: &App, args: ReplayArgs) -> Result<()> {
    let until = match (&args.until, args.until_position) {
        (Some(t), _) => Until::Time(
            easm_events::parse_timestamp(t)
                .with_context(|| format!("--until: not an RFC 3339 time or a date: {t}"))?
                .timestamp_micros(),
        ),
        (None, Some(p)) => Until::Position(p),
        (None, None) => bail!("--until or --until-position is required"),
    };
    let tty = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let (db, events) = replay_org(app.log(), &args.org, until, &args.out, |n, total| {
        if tty {
            let done = (n * 40).checked_div(total).unwrap_or(40) as usize;
            let bar = format!("{}{}", "#".repeat(done), ".".repeat(40 - done.min(40)));
            eprint!("\r[{bar}] {n}/{total} events");
            let _ = std::io::stderr().flush();
        }
    })
    .await?;
    if tty {
        eprintln!();
    }
    db.close().await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"out": args.out, "orgId": args.org, "events": events, "seconds": secs,
               "eventsPerSecond": (events as f64 / secs.max(1e-9)).round()})
    );
    Ok(())
}

/// The events the live read models include (per organization, its chain up to `heads`),
/// replayed into a shadow database at `path`; with the number of events replayed.
async fn shadow(app: &App, heads: &BTreeMap<String, i64>, path: &Path) -> Result<(Db, u64)> {
    let log = app.log();
    let pages = move |after| async move { log.read_all_after(after, PAGE).await };
    let included = |e: &RecordedEvent| {
        heads
            .get(e.org_id.as_str())
            .is_some_and(|h| e.chain_seq <= *h)
    };
    Ok(replay_into(path, pages, included, |_| {}).await?)
}

/// How often, and how far apart, `verify` tries for a moment when the read models hold still.
const VERIFY_ATTEMPTS: u32 = 50;
const VERIFY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Compare the live read models with a replay of the log; true when they agree.
pub async fn verify(app: &App) -> Result<bool> {
    let path = std::env::temp_dir().join(format!("easm-verify-{}.db", std::process::id()));
    // The live models may move on while we read: compare at chain heads that held still, once
    // the replay has reached all of them (PostgreSQL reads stop at the oldest transaction still
    // open in the whole cluster, which may be another database's): so try again a while.
    for attempt in 0..VERIFY_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(VERIFY_PAUSE).await;
        }
        let heads = app.log().projected().await?;
        let live = app.read().dump().await?;
        if app.log().projected().await? != heads {
            continue;
        }
        let (db, replayed) = shadow(app, &heads, &path).await?;
        if replayed != heads.values().sum::<i64>() as u64 {
            db.close().await;
            continue;
        }
        let replayed = ReadModels::new(db.clone()).dump().await?;
        db.close().await;
        let _ = std::fs::remove_file(&path);
        let (live, replayed): (BTreeSet<_>, BTreeSet<_>) =
            (live.into_iter().collect(), replayed.into_iter().collect());
        let mut differences = vec![];
        for row in live.difference(&replayed) {
            differences.push(json!({"only": "live", "row": row}));
        }
        for row in replayed.difference(&live) {
            differences.push(json!({"only": "log", "row": row}));
        }
        let ok = differences.is_empty();
        println!(
            "{}",
            json!({"verified": ok, "events": replayed, "rows": live.len(), "differences": differences})
        );
        return Ok(ok);
    }
    bail!("the read models kept moving for five seconds; run it again")
}
