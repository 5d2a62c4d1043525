//! `easm-bench audit`: the audit side at scale. Seeds an organization with N events (assets added,
//! appended to the log in batches), then times the verifiable export, its offline verification and
//! a point-in-time replay of the whole organization. See BENCHMARKS.md.

use crate::meta;
use anyhow::Result;
use easm_api::audit_export::{export_lines, Range};
use easm_api::snapshot::{replay_org, Until};
use easm_app::App;
use easm_domain::Plan;
use easm_events::{AssetAdded, AssetId, Event, GroupId, OrgId};
use easm_store::{audit_signing_secret, AppendRequest, Db, StreamAppend};
use futures_util::StreamExt;
use serde_json::json;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Events in the organization.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Events per append.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
}

fn rate(n: usize, secs: f64) -> f64 {
    (n as f64 / secs.max(1e-9)).round()
}

pub async fn run(args: Args, db: Db) -> Result<()> {
    let app = App::new(db.clone());
    let (org, _) = app
        .create_org(&meta(), "bench-audit", Plan::Enterprise)
        .await?;
    let group = app.create_group(&meta(), &org, "bench").await?;
    let started = Instant::now();
    let written = seed(&app, &org, &group, &args).await?;
    let write_secs = started.elapsed().as_secs_f64();
    let total = written + 3; // org.created, api_key.created, group.created

    let dir = std::env::temp_dir().join(format!("easm-bench-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("export.ndjson");
    let secret = audit_signing_secret(&db).await?;
    let started = Instant::now();
    export(&app, &org, secret, &file).await?;
    let export_secs = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&file)?.len();

    let started = Instant::now();
    let reader = std::io::BufReader::new(std::fs::File::open(&file)?);
    let verified = easm_events::verify(reader.lines().map_while(|l| l.ok()), None)
        .map_err(|t| anyhow::anyhow!("line {}: {}", t.line, t.reason))?;
    let verify_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let snapshot = dir.join("snapshot.db");
    let (snap, replayed) = replay_org(
        app.log(),
        &org,
        Until::Position(i64::MAX),
        &snapshot,
        |_, _| {},
    )
    .await?;
    snap.close().await;
    let replay_secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "{}",
        json!({
            "backend": format!("{:?}", db.backend()),
            "events": total,
            "seed": {"seconds": write_secs, "eventsPerSecond": rate(written, write_secs)},
            "export": {"seconds": export_secs, "eventsPerSecond": rate(total, export_secs), "bytes": bytes},
            "verify": {"seconds": verify_secs, "eventsPerSecond": rate(verified.count as usize, verify_secs)},
            "replay": {"seconds": replay_secs, "eventsPerSecond": rate(replayed as usize, replay_secs)},
        })
    );
    Ok(())
}

/// `args.events` valid `asset.added` events appended straight to the log in batches, hash-chained
/// like any append: what is measured is reading the log back, not the command path.
async fn seed(app: &App, org: &OrgId, group: &GroupId, args: &Args) -> Result<usize> {
    let mut written = 0;
    while written < args.events {
        let n = args.batch.min(args.events - written);
        let streams = (written..written + n)
            .map(|i| {
                let asset_id: AssetId = easm_app::new_id();
                StreamAppend {
                    stream_id: easm_app::streams::asset_stream(&asset_id),
                    expected_version: 0,
                    events: vec![Event::AssetAdded(AssetAdded {
                        asset_id,
                        group_id: group.clone(),
                        value: format!("h{i}.bench-audit.example.com"),
                        asset_type: "domain".into(),
                        tags: vec![],
                        criticality: "medium".into(),
                        discovery_job_id: None,
                    })],
                }
            })
            .collect();
        app.log()
            .append(AppendRequest {
                org_id: org.clone(),
                meta: meta(),
                streams,
                constraints: vec![],
            })
            .await
            .map_err(|e| anyhow::anyhow!("seeding: {e:?}"))?;
        written += n;
        eprint!("\rwritten {written} events");
    }
    eprintln!();
    Ok(written)
}

/// The organization's verifiable export, written to `file`.
async fn export(app: &App, org: &OrgId, secret: [u8; 32], file: &Path) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    let lines = export_lines(app.log().clone(), org.clone(), Range::default(), secret);
    let mut lines = std::pin::pin!(lines);
    while let Some(chunk) = lines.next().await {
        out.write_all(chunk?.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}
