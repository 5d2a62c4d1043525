//! `easm-bench writes`: write throughput and latency of a running server over HTTP at several
//! concurrencies, the raw single-row INSERT ceiling of the same PostgreSQL (pgbench), the lag from
//! a commit by another process to the server's read models, and rebuild speed.

use crate::{meta, percentile};
use anyhow::{bail, Context, Result};
use easm_app::App;
use easm_domain::{NewAsset, Plan, Role};
use easm_events::{Event, GroupCreated, GroupId, OrgId};
use easm_store::{AppendRequest, Backend, Db, EventLog, StreamAppend};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Base URL of the running server (which must use the same store as this command).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent clients, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    clients: Vec<usize>,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Organizations the clients spread over (each has its own hash chain).
    #[arg(long, default_value_t = 8)]
    orgs: usize,
    /// Samples for the commit-to-read-model lag.
    #[arg(long, default_value_t = 50)]
    lag_samples: usize,
    /// Before measuring the rebuild, add this many assets (in bulk commands of 1,000) so the log
    /// is large enough to measure.
    #[arg(long, default_value_t = 0)]
    seed_assets: usize,
    /// Skip the pgbench ceiling (PostgreSQL only).
    #[arg(long)]
    no_pgbench: bool,
}

/// Requests per key before a client takes a new one (enterprise keys allow 6,000 a minute).
const KEY_REQUESTS: u64 = 2_000;

pub async fn run(args: Args, db: Db) -> Result<()> {
    let app = App::new(db.clone());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let mut orgs = vec![];
    for i in 0..args.orgs.max(1) {
        let (org, key) = app
            .create_org(&meta(), &format!("bench {i}"), Plan::Enterprise)
            .await?;
        orgs.push(Client {
            org,
            key: key.secret,
        });
    }
    let ready = http.get(format!("{}/readyz", args.url)).send().await;
    if !ready.map(|r| r.status().is_success()).unwrap_or(false) {
        bail!("no easm server answers at {}", args.url);
    }
    println!("backend: {:?}, server {}", db.backend(), args.url);
    println!("| clients | writes/s | p50 ms | p99 ms | errors | pgbench tps | ratio |");
    println!("|---|---|---|---|---|---|---|");
    let mut results = vec![];
    for &clients in &args.clients {
        results.push(writes_at(&app, &db, &http, &args, &orgs, clients).await?);
    }

    // Another easm process folds its read models as it commits; a tool writing through a bare
    // log leaves them to the server's sweep. The probe polls every millisecond with a key of its
    // own: one the write runs used may be past its rate limit (429) for the rest of the minute.
    let probe = app
        .create_key(
            &meta(),
            &orgs[0].org,
            easm_app::KeyOrder::rest(Some(Role::Owner), "lag probe", None),
        )
        .await?;
    let key = &probe.secret;
    let lag = commit_to_read_model_lag(app.log(), &args, &http, key).await?;
    let tool_lag = commit_to_read_model_lag(&EventLog::new(db), &args, &http, key).await?;
    for (who, lag) in [
        ("another easm process", &lag),
        ("a tool's bare log", &tool_lag),
    ] {
        println!(
            "commit ({who}) -> visible through the API: p50 {:.1} ms, p99 {:.1} ms over {} samples",
            percentile(lag, 0.5),
            percentile(lag, 0.99),
            lag.len()
        );
    }

    seed(&app, args.seed_assets).await?;
    let started = Instant::now();
    let n = app.projector().rebuild().await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "rebuild: {n} events in {secs:.2} s = {:.0} events/s",
        n as f64 / secs
    );
    println!(
        "{}",
        json!({"runs": results, "lagP50Ms": percentile(&lag, 0.5), "lagP99Ms": percentile(&lag, 0.99),
            "toolLagP50Ms": percentile(&tool_lag, 0.5), "toolLagP99Ms": percentile(&tool_lag, 0.99),
            "rebuildEvents": n, "rebuildEventsPerSecond": n as f64 / secs})
    );
    Ok(())
}

/// An organization the clients write to, and a key of it.
#[derive(Clone)]
struct Client {
    org: OrgId,
    key: String,
}

/// One run: `clients` clients adding assets for `args.seconds`, then (PostgreSQL) pgbench at
/// the same concurrency; prints the row and answers it as JSON.
async fn writes_at(
    app: &App,
    db: &Db,
    http: &reqwest::Client,
    args: &Args,
    orgs: &[Client],
    clients: usize,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, url, app) = (http.clone(), args.url.clone(), app.clone());
            tokio::spawn(add_assets_until(
                app,
                http,
                url,
                orgs[c % orgs.len()].clone(),
                c,
                deadline,
            ))
        })
        .collect();
    let started = Instant::now();
    let mut lat = vec![];
    let mut failed: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        let (l, e) = t.await??;
        lat.extend(l);
        for (status, n) in e {
            *failed.entry(status).or_default() += n;
        }
    }
    let errors: u64 = failed.values().sum();
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort();
    let rate = lat.len() as f64 / elapsed;
    let ceiling = if db.backend() == Backend::Postgres && !args.no_pgbench {
        Some(pgbench(db, clients, args.seconds).await?)
    } else {
        None
    };
    let ratio = ceiling
        .map(|c| format!("{:.0}%", 100.0 * rate / c))
        .unwrap_or("-".into());
    let shown = match errors {
        0 => "0".to_string(),
        n => format!("{n} {failed:?}"),
    };
    println!(
        "| {clients} | {rate:.0} | {:.1} | {:.1} | {shown} | {} | {ratio} |",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        ceiling.map(|c| format!("{c:.0}")).unwrap_or("-".into()),
    );
    Ok(
        json!({"clients": clients, "writesPerSecond": rate, "p50Ms": percentile(&lat, 0.5),
        "p99Ms": percentile(&lat, 0.99), "errors": errors, "errorsBy": failed,
        "pgbenchTps": ceiling}),
    )
}

/// Client `c`: a group of its own, then one asset per request until `deadline`; answers the
/// latencies of the adds that succeeded and how many failed.
async fn add_assets_until(
    app: App,
    http: reqwest::Client,
    url: String,
    client: Client,
    c: usize,
    deadline: Instant,
) -> Result<(Vec<Duration>, BTreeMap<String, u64>)> {
    let mut key = client.key;
    let g: serde_json::Value = http
        .post(format!("{url}/api/groups"))
        .header("X-API-Key", &key)
        .json(&json!({"name": format!("bench client {c}")}))
        .send()
        .await?
        .json()
        .await?;
    let gid = g["id"].as_str().context("group id")?.to_string();
    let mut lat = vec![];
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut i = 0u64;
    while Instant::now() < deadline {
        i += 1;
        // A fresh key now and then: the per-key rate limit is a protection, not the ceiling
        // being measured.
        if i.is_multiple_of(KEY_REQUESTS) {
            let fresh = app
                .create_key(
                    &meta(),
                    &client.org,
                    easm_app::KeyOrder::rest(Some(Role::Owner), "bench", None),
                )
                .await?;
            key = fresh.secret;
        }
        let started = Instant::now();
        let value = format!("h{i}.c{c}.{}.bench.example", uuid::Uuid::now_v7().simple());
        let r = http
            .post(format!("{url}/api/groups/{gid}/assets"))
            .header("X-API-Key", &key)
            .json(&json!({"value": value, "type": "subdomain"}))
            .send()
            .await;
        // A failure is counted by its status, or by the kind of transport error.
        let failure = match r {
            Ok(r) if r.status().as_u16() == 201 => {
                lat.push(started.elapsed());
                continue;
            }
            Ok(r) => r.status().as_u16().to_string(),
            Err(e) if e.is_timeout() => "timeout".to_string(),
            Err(e) if e.is_connect() => "connect".to_string(),
            Err(_) => "transport".to_string(),
        };
        *errors.entry(failure).or_default() += 1;
    }
    Ok((lat, errors))
}

async fn seed(app: &App, assets: usize) -> Result<()> {
    if assets == 0 {
        return Ok(());
    }
    let started = Instant::now();
    let (org, _) = app
        .create_org(&meta(), "bench seed", Plan::Enterprise)
        .await?;
    let group = app.create_group(&meta(), &org, "seed").await?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    for chunk in 0..assets.div_ceil(1000) {
        let items: Vec<NewAsset> = (0..1000.min(assets - chunk * 1000))
            .map(|i| NewAsset {
                value: format!("s{i}.c{chunk}.{run}.seed.example"),
                asset_type: "subdomain".into(),
                tags: Some(vec!["seed".into()]),
                criticality: None,
            })
            .collect();
        app.add_assets(&meta(), &org, Plan::Enterprise, &group, &items)
            .await?;
    }
    println!(
        "seeded {assets} assets in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Append a group through `log`, outside the server, and time until the server's API shows it.
async fn commit_to_read_model_lag(
    log: &EventLog,
    args: &Args,
    http: &reqwest::Client,
    key: &str,
) -> Result<Vec<Duration>> {
    let org: serde_json::Value = http
        .get(format!("{}/api/org", args.url))
        .header("X-API-Key", key)
        .send()
        .await?
        .json()
        .await?;
    let org_id = OrgId::new(org["id"].as_str().context("org id")?);
    let mut lags = vec![];
    for _ in 0..args.lag_samples {
        let id: GroupId = easm_app::new_id();
        log.append(AppendRequest {
            org_id: org_id.clone(),
            meta: meta(),
            streams: vec![StreamAppend {
                stream_id: easm_app::streams::group_stream(&id),
                expected_version: 0,
                events: vec![Event::GroupCreated(GroupCreated {
                    group_id: id.clone(),
                    name: "lag probe".into(),
                })],
            }],
            constraints: vec![],
        })
        .await?;
        let committed = Instant::now();
        loop {
            let r = http
                .get(format!("{}/api/groups/{id}", args.url))
                .header("X-API-Key", key)
                .send()
                .await?;
            if r.status().is_success() {
                lags.push(committed.elapsed());
                break;
            }
            if committed.elapsed() > Duration::from_secs(10) {
                bail!("group {id} never became visible");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    lags.sort();
    Ok(lags)
}

/// Transactions per second of one single-row INSERT per transaction, at `clients` concurrency,
/// measured by pgbench against the same database.
async fn pgbench(db: &Db, clients: usize, seconds: u64) -> Result<f64> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_raw_insert (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)",
    )
    .execute(db.writer())
    .await?;
    let url = std::env::var("EASM_DATABASE_URL").context("pgbench needs EASM_DATABASE_URL")?;
    let script = std::env::temp_dir().join(format!("easm-pgbench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        "INSERT INTO bench_raw_insert (v) VALUES (md5(random()::text));\n",
    )?;
    let out = tokio::process::Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(2).to_string(),
        ])
        .args(["-T", &seconds.to_string(), "-f"])
        .arg(&script)
        .arg(&url)
        .output()
        .await
        .context("running pgbench (apt-get install postgresql-client)")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l["tps = ".len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| {
            format!(
                "pgbench said: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}
