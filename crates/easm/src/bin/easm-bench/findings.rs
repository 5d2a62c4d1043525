//! `easm-bench findings`: findings at scale, through the API of a server in this process. Seeds
//! N findings over M assets (one scan job per asset, its nuclei JSONL imported in one request)
//! with a spread of severities, templates and triage statuses, then times the reads integrations
//! make all day: filtered pages, deep pages, counts, risk, group summary and a full export.
//! See BENCHMARKS.md.

use crate::{meta, percentile};
use anyhow::{bail, Context, Result};
use easm_api::AppState;
use easm_app::App;
use easm_domain::Plan;
use easm_store::Db;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Findings to import.
    #[arg(long, default_value_t = 200_000)]
    findings: usize,
    /// Assets they are spread over (one scan job and one import each).
    #[arg(long, default_value_t = 2_000)]
    assets: usize,
    /// Requests timed per query.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// Lines of a single results file imported first, in one streamed request, to one more
    /// asset: its rate and the process's peak memory are printed on their own.
    #[arg(long, default_value_t = 0)]
    one_file: usize,
}

/// The nuclei JSONL line of the `i`th finding, of asset number `a` (its `k`th).
fn line(i: usize, a: usize, k: usize) -> String {
    let t = (i * 31) % TEMPLATES;
    let mut l = json!({
        "template-id": format!("bench-template-{t}"),
        "info": {"name": format!("Bench template {t}"), "severity": severity(i)},
        "matched-at": format!("https://10.0.0.{}/{a}/{k}", a % 256),
    })
    .to_string();
    l.push('\n');
    l
}

/// This process's resident memory now and at its peak (MiB), from /proc.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Severities, worst first, and how many findings in a hundred have each.
const SEVERITIES: [(&str, usize); 5] = [
    ("critical", 3),
    ("high", 12),
    ("medium", 20),
    ("low", 25),
    ("info", 40),
];

/// Distinct templates the findings come from.
const TEMPLATES: usize = 300;

struct Bench {
    http: reqwest::Client,
    api: String,
    key: String,
}

impl Bench {
    /// Sends `req`; a request over the plan's rate limit waits as `Retry-After` says and goes
    /// again (many small imports are faster than the limit), so that time counts in its rate.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        let mut req = req.header("X-API-Key", &self.key);
        let res = loop {
            let again = req.try_clone();
            let res = req.send().await?;
            match again {
                Some(again) if res.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                    let wait = (res.headers().get(reqwest::header::RETRY_AFTER))
                        .and_then(|v| v.to_str().ok()?.parse().ok())
                        .unwrap_or(1);
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                    req = again;
                }
                _ => break res,
            }
        };
        let status = res.status();
        let text = res.text().await?;
        if !status.is_success() {
            bail!("{status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.api)))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.api)).json(&body))
            .await
    }

    /// A quick scan job of `asset`: its id.
    async fn new_job(&self, asset: &str) -> Result<String> {
        let job = json!({"asset_id": asset, "profile": "quick"});
        let created = self.post("/api/scan-jobs", job).await?;
        Ok(created["id"].as_str().context("a job id")?.to_string())
    }
}

/// The severity of the `i`th finding, in the proportions of [`SEVERITIES`].
fn severity(i: usize) -> &'static str {
    let mut n = (i * 7919) % 100;
    for (s, share) in SEVERITIES {
        if n < share {
            return s;
        }
        n -= share;
    }
    "info"
}

/// One scan job of a new asset, `lines` results imported to it in one request whose body is
/// made as it is sent: the import's rate and the memory it took.
async fn one_file(b: &Bench, group: &str, lines: usize) -> Result<()> {
    let added = b
        .post(
            &format!("/api/groups/{group}/assets/bulk"),
            json!({"assets": [{"value": "10.255.255.254", "type": "ip"}]}),
        )
        .await?;
    let asset = added["items"][0]["id"].as_str().context("an asset id")?;
    let job = b.new_job(asset).await?;
    let before = memory();
    let chunks = futures_util::stream::iter((0..lines).step_by(1000).map(move |start| {
        let text: String = (start..(start + 1000).min(lines))
            .map(|i| line(i, 65_535, i))
            .collect();
        Ok::<_, std::io::Error>(text)
    }));
    let started = Instant::now();
    let report = b
        .send(
            b.http
                .post(format!("{}/api/scan-jobs/{job}/results", b.api))
                .header("content-type", "application/x-ndjson")
                .body(reqwest::Body::wrap_stream(chunks)),
        )
        .await?;
    let secs = started.elapsed().as_secs_f64();
    let new = report["new"].as_u64().context("an import report")?;
    let after = memory();
    println!(
        "one file: {new} of {lines} lines new in {secs:.1} s = {:.0} findings/s; \
         RSS {} MiB before, {} MiB after, peak {} MiB (was {} MiB)",
        new as f64 / secs.max(1e-9),
        before.0,
        after.0,
        after.1,
        before.1
    );
    Ok(())
}

pub async fn run(args: Args, db: Db) -> Result<()> {
    let state = AppState::new(db.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(easm_api::serve(listener, None, state.clone(), async {
        let _ = stopped.await;
    }));
    let app: &App = &state.commands;
    let (_, owner) = app
        .create_org(&meta(), "bench-findings", Plan::Enterprise)
        .await?;
    let b = Bench {
        http: reqwest::Client::new(),
        api,
        key: owner.secret,
    };
    println!(
        "backend: {:?}; {} findings over {} assets",
        db.backend(),
        args.findings,
        args.assets
    );
    let group = b.post("/api/groups", json!({"name": "bench"})).await?["id"]
        .as_str()
        .context("a group id")?
        .to_string();
    let mut assets = Vec::with_capacity(args.assets);
    let started = Instant::now();
    for start in (0..args.assets).step_by(1000) {
        let batch: Vec<Value> = (start..(start + 1000).min(args.assets))
            .map(|i| json!({"value": format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256), "type": "ip"}))
            .collect();
        let added = b
            .post(
                &format!("/api/groups/{group}/assets/bulk"),
                json!({"assets": batch}),
            )
            .await?;
        for a in added["items"].as_array().context("added assets")? {
            assets.push(a["id"].as_str().context("an asset id")?.to_string());
        }
    }

    let secs = started.elapsed().as_secs_f64();
    println!(
        "assets: {} added in bulk (1,000 a request) in {secs:.1} s = {:.0} assets/s",
        assets.len(),
        assets.len() as f64 / secs.max(1e-9)
    );
    if args.one_file > 0 {
        one_file(&b, &group, args.one_file).await?;
    }

    let per_asset = args.findings.div_ceil(args.assets.max(1));
    let import_start = chrono::Utc::now();
    let started = Instant::now();
    let mut imported = 0usize;
    for (a, asset) in assets.iter().enumerate() {
        let job = b.new_job(asset).await?;
        let body: String = (0..per_asset.min(args.findings - imported))
            .map(|k| line(imported + k, a, k))
            .collect();
        if body.is_empty() {
            break;
        }
        let report = b
            .send(
                b.http
                    .post(format!("{}/api/scan-jobs/{job}/results", b.api))
                    .header("content-type", "application/x-ndjson")
                    .body(body),
            )
            .await?;
        imported += report["new"].as_u64().context("an import report")? as usize;
        if imported >= args.findings {
            break;
        }
    }
    let import_secs = started.elapsed().as_secs_f64();
    println!(
        "import: {imported} findings in {import_secs:.1} s = {:.0} findings/s",
        imported as f64 / import_secs.max(1e-9)
    );

    // Triage a spread: every 5th acknowledged, every 10th resolved, every 20th ignored.
    let started = Instant::now();
    let mut page = 1;
    let mut triaged = 0;
    loop {
        let listed = b
            .get(&format!(
                "/api/findings?perPage=100&page={page}&sort=firstDetected"
            ))
            .await?;
        let ids: Vec<String> = listed["items"]
            .as_array()
            .context("a page")?
            .iter()
            .filter_map(|f| f["id"].as_str().map(str::to_string))
            .collect();
        if ids.is_empty() || page * 100 >= args.findings / 4 {
            break;
        }
        for (status, every) in [("acknowledged", 5), ("resolved", 10), ("ignored", 20)] {
            let chosen: Vec<&String> = ids.iter().step_by(every).collect();
            b.post(
                "/api/findings/bulk-status",
                json!({"ids": chosen, "status": status}),
            )
            .await?;
            triaged += chosen.len();
        }
        page += 1;
    }
    println!(
        "triage: {triaged} status changes in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Half of the findings were last detected after this.
    let since = easm_events::format_timestamp(
        &(import_start + chrono::Duration::milliseconds((import_secs * 500.0) as i64)),
    );
    let asset = &assets[assets.len() / 2];
    // Where the middle page of the default order ends: a cursor as deep as pages go.
    let total = b.get("/api/findings/count").await?["total"]
        .as_u64()
        .context("a count")?;
    let middle = (total / 200).max(1);
    let deep = b
        .get(&format!("/api/findings?perPage=100&page={middle}"))
        .await?["nextCursor"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let queries = [
        "/api/findings?perPage=50".to_string(),
        "/api/findings?severity=high&status=open".to_string(),
        "/api/findings?severity=critical&page=50".to_string(),
        format!("/api/findings?asset_id={asset}&severity=low"),
        format!("/api/findings?status=open&since={since}&perPage=100"),
        "/api/findings?sort=severity&perPage=50".to_string(),
        "/api/findings?templateId=bench-template-7".to_string(),
        "/api/findings?page=1000&perPage=100".to_string(),
        format!("/api/findings?perPage=100&after={deep}"),
        "/api/findings/count?status=open".to_string(),
        "/api/dashboard".to_string(),
        format!("/api/assets/{asset}/risk"),
        format!("/api/groups/{group}/summary"),
    ];
    println!("| query | p50 ms | p99 ms |");
    println!("|---|---|---|");
    for q in &queries {
        let mut took = Vec::with_capacity(args.samples);
        for _ in 0..args.samples {
            let t = Instant::now();
            b.get(q).await?;
            took.push(t.elapsed());
        }
        took.sort_unstable();
        let shown = q
            .replace(asset.as_str(), "{asset}")
            .replace(&group, "{group}");
        let shown = shown.replace(&since, "{since}");
        let shown = match deep.is_empty() {
            true => shown,
            false => shown.replace(&deep, &format!("{{cursor after page {middle}}}")),
        };
        println!(
            "| `{shown}` | {:.1} | {:.1} |",
            percentile(&took, 0.5),
            percentile(&took, 0.99)
        );
    }

    let started = Instant::now();
    let res = b
        .http
        .get(format!("{}/api/findings/export?format=csv", b.api))
        .header("X-API-Key", &b.key)
        .send()
        .await?;
    let csv = res.bytes().await?;
    println!(
        "export: {} CSV lines ({} MB) in {:.1} s",
        csv.iter().filter(|c| **c == b'\n').count() - 1,
        csv.len() / 1_000_000,
        started.elapsed().as_secs_f64()
    );
    let _ = stop.send(());
    let _ = server.await;
    Ok(())
}
