//! `easm-bench delivery`: webhook delivery measured end to end in one process: the API, relay,
//! fan-out and delivery worker exactly as `easm serve` runs them, load clients writing over HTTP,
//! and a receiver on 127.0.0.1 that records when each message arrives. Reports deliveries per
//! second and the latency from commit to receipt, for API writes and for the fan-out of already
//! committed events to many endpoints.

use crate::{meta, ms};
use anyhow::{bail, Result};
use axum::extract::State;
use easm::background::Background;
use easm::config::{DeliveryArgs, ScanArgs};
use easm_api::AppState;
use easm_domain::{NewAsset, Plan, Role, WebhookSpec};
use easm_events::{GroupId, OrgId};
use easm_store::Db;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Concurrent HTTP clients of the throughput run.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of writing in the throughput and the paced runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Organizations the writers spread over, one endpoint each (each organization's writes are
    /// serialized by its hash chain).
    #[arg(long, default_value_t = 8)]
    orgs: usize,
    /// Writes per second of the paced latency run.
    #[arg(long, default_value_t = 250)]
    rate: u64,
    /// Events committed before delivery starts, for the fan-out run.
    #[arg(long, default_value_t = 2_000)]
    fanout_events: usize,
    /// Endpoints each of those events goes to.
    #[arg(long, default_value_t = 10)]
    fanout_endpoints: usize,
    #[command(flatten)]
    delivery: DeliveryArgs,
}

/// Arrival times and commit-to-receipt latencies, in microseconds; and send-to-receipt ones,
/// from when the bench sent the write of an asset value to when its event arrived.
#[derive(Default)]
struct Arrivals {
    latencies: Vec<i64>,
    end_to_end: Vec<i64>,
    /// When the write of each asset value not yet received was sent.
    sent: HashMap<String, Instant>,
    last: Option<Instant>,
}

async fn receive(State(a): State<Arc<Mutex<Arrivals>>>, body: String) -> axum::http::StatusCode {
    let (now, arrived) = (chrono::Utc::now(), Instant::now());
    let body = serde_json::from_str::<Value>(&body).unwrap_or_default();
    let committed = chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap_or(""))
        .ok()
        .map(|t| {
            (now - t.with_timezone(&chrono::Utc))
                .num_microseconds()
                .unwrap_or(0)
        });
    let mut a = a.lock().expect("arrivals");
    a.latencies.push(committed.unwrap_or(0));
    if let Some(sent) = body["data"]["value"]
        .as_str()
        .and_then(|v| a.sent.remove(v))
    {
        a.end_to_end
            .push(arrived.duration_since(sent).as_micros() as i64);
    }
    a.last = Some(arrived);
    axum::http::StatusCode::NO_CONTENT
}

struct Bench {
    state: AppState,
    args: DeliveryArgs,
    arrivals: Arc<Mutex<Arrivals>>,
    /// How long each API write took to answer, in microseconds.
    answers: Mutex<Vec<i64>>,
    /// CPU milliseconds per delivered message of the full-speed run: (this process, the
    /// machine's PostgreSQL processes).
    cpu: Mutex<Option<(f64, f64)>>,
    /// Appends per transaction of the full-speed run (group commit).
    batching: Mutex<Option<f64>>,
    receiver: String,
    api: String,
    http: reqwest::Client,
}

impl Bench {
    fn reset(&self) {
        *self.arrivals.lock().expect("arrivals") = Arrivals::default();
        self.answers.lock().expect("answers").clear();
    }

    /// The API's answer times since the last reset, sorted.
    fn answer_times(&self) -> Vec<i64> {
        let mut a = self.answers.lock().expect("answers").clone();
        a.sort_unstable();
        a
    }

    fn received(&self) -> usize {
        self.arrivals.lock().expect("arrivals").latencies.len()
    }

    /// An organization with `endpoints` endpoints on the receiver; returns its owner key and a group.
    async fn org(&self, endpoints: usize) -> Result<(OrgId, String, GroupId)> {
        let app = &self.state.commands;
        let (org, key) = app.create_org(&meta(), "bench", Plan::Enterprise).await?;
        for _ in 0..endpoints {
            let spec = WebhookSpec {
                url: Some(self.receiver.clone()),
                events: Some(vec!["asset.added".into()]),
                description: None,
                enabled: None,
                delivery: Default::default(),
            };
            app.create_webhook(&meta(), &org, &spec, true).await?;
        }
        let group = app.create_group(&meta(), &org, "bench").await?;
        Ok((org, key.secret, group))
    }

    async fn write(&self, key: &str, group: &GroupId, n: usize) -> bool {
        let value = format!("a{n}-{}.example.com", uuid::Uuid::now_v7().simple());
        let sent = Instant::now();
        self.arrivals
            .lock()
            .expect("arrivals")
            .sent
            .insert(value.clone(), sent);
        let res = self
            .http
            .post(format!("{}/api/groups/{group}/assets", self.api))
            .header("X-API-Key", key)
            .json(&json!({"value": value, "type": "domain"}))
            .send()
            .await;
        let ok = matches!(res, Ok(r) if r.status().is_success());
        if ok {
            let took = sent.elapsed().as_micros() as i64;
            self.answers.lock().expect("answers").push(took);
        }
        ok
    }

    /// Wait until `expected` messages arrived (or 120 s); returns (deliveries/s since `started`,
    /// sorted commit-to-receipt and send-to-receipt latencies).
    async fn collect(&self, expected: usize, started: Instant) -> Result<(f64, Latencies)> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.received() < expected {
            if Instant::now() > deadline {
                bail!("only {} of {expected} deliveries arrived", self.received());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let a = self.arrivals.lock().expect("arrivals");
        let secs = a
            .last
            .map_or(0.0, |l| l.duration_since(started).as_secs_f64());
        let mut lat = a.latencies.clone();
        lat.sort_unstable();
        let mut end_to_end = a.end_to_end.clone();
        end_to_end.sort_unstable();
        Ok((
            expected as f64 / secs.max(1e-9),
            Latencies {
                committed: lat,
                sent: end_to_end,
            },
        ))
    }
}

pub async fn run(args: Args, db: Db) -> Result<()> {
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let app = axum::Router::new()
        .fallback(axum::routing::post(receive))
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut state = AppState::new(db.clone());
    state.webhook_allow_private = true;
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", api_listener.local_addr()?);
    let (stop_api, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(easm_api::serve(api_listener, None, state.clone(), async {
        let _ = stopped.await;
    }));
    let mut delivery = args.delivery.clone();
    delivery.webhook_allow_private = true;
    let b = Arc::new(Bench {
        state,
        args: delivery,
        arrivals,
        answers: Mutex::default(),
        cpu: Mutex::default(),
        batching: Mutex::default(),
        receiver,
        api,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?,
    });
    println!(
        "backend: {:?}, bus: {}, per-endpoint concurrency {}, rate {}/s",
        db.backend(),
        if b.args.nats_url.is_some() {
            "NATS JetStream"
        } else {
            "database"
        },
        b.args.webhook_concurrency,
        b.args.webhook_rate
    );
    println!(
        "| run | deliveries | deliveries/s | send to receipt p50 ms | p99 ms | commit to receipt p50 ms | p99 ms | API answer p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");

    let background = Background::start(&b.state, &b.args, &ScanArgs::disabled()).await?;
    let mut orgs = vec![];
    for _ in 0..args.orgs.max(1) {
        orgs.push(b.org(1).await?);
    }
    // Each client writes with a key of its own (the organization's owner key for the first):
    // the plan's per-key request limit (6,000 a minute on enterprise) would otherwise cap the
    // clients of one organization, not easm.
    let mut clients = vec![];
    for c in 0..args.clients.max(1) {
        let (org, owner, group) = &orgs[c % orgs.len()];
        let key = if c < orgs.len() {
            owner.clone()
        } else {
            let name = format!("bench-client-{c}");
            let issued = b
                .state
                .commands
                .create_key(
                    &meta(),
                    org,
                    easm_app::KeyOrder::rest(Some(Role::Analyst), &name, None),
                )
                .await?;
            issued.secret
        };
        clients.push((key, group.clone()));
    }
    b.flat_out(&args, &clients).await?;
    b.steady(&args, &clients).await?;
    background.stop().await;
    b.fanout(&args).await?;
    if let Some((easm, postgres)) = *b.cpu.lock().expect("cpu") {
        println!(
            "\nCPU per delivered message at full speed: easm {easm:.2} ms, PostgreSQL {postgres:.2} ms \
             (PostgreSQL: every postgres process of the machine)"
        );
    }
    if let Some(batch) = *b.batching.lock().expect("batching") {
        println!("Appends per transaction at full speed (group commit): {batch:.1}");
    }
    let _ = stop_api.send(());
    let _ = server.await;
    Ok(())
}

/// Sorted latencies in microseconds: from the event's commit and from the write's sending.
struct Latencies {
    committed: Vec<i64>,
    sent: Vec<i64>,
}

impl Latencies {
    /// The table's latency cells: send and commit to receipt, then the API's answer `api`,
    /// p50 and p99 of each.
    fn cells(&self, api: &[i64]) -> String {
        [&self.sent[..], &self.committed[..], api]
            .iter()
            .flat_map(|l| [ms(l, 0.5), ms(l, 0.99)])
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

/// (API key, group) a client writes with.
type Target = (String, GroupId);

impl Bench {
    /// End to end, as fast as the clients go.
    async fn flat_out(self: &Arc<Self>, args: &Args, clients: &[Target]) -> Result<()> {
        self.reset();
        let cpu_before = cpu_ticks();
        let commits_before = self.state.commands.log().commit_counts();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(args.seconds);
        let mut tasks = vec![];
        for c in 0..args.clients {
            let (key, group) = clients[c % clients.len()].clone();
            let b = self.clone();
            tasks.push(tokio::spawn(async move {
                let mut ok = 0usize;
                let mut n = c * 1_000_000;
                while Instant::now() < deadline {
                    n += 1;
                    ok += usize::from(b.write(&key, &group, n).await);
                }
                ok
            }));
        }
        let mut written = 0;
        for t in tasks {
            written += t.await?;
        }
        let (rate, lat) = self.collect(written, started).await?;
        let commits = self.state.commands.log().commit_counts();
        *self.batching.lock().expect("batching") = Some(
            (commits.appends - commits_before.appends) as f64
                / (commits.transactions - commits_before.transactions).max(1) as f64,
        );
        if let (Some(before), Some(after)) = (cpu_before, cpu_ticks()) {
            *self.cpu.lock().expect("cpu") = Some((
                per_message(after.0 - before.0, written),
                per_message(after.1 - before.1, written),
            ));
        }
        let api = self.answer_times();
        println!(
            "| end to end, {} clients over {} organizations | {written} | {rate:.0} | {} |",
            args.clients,
            args.orgs.max(1),
            lat.cells(&api)
        );
        Ok(())
    }

    /// Latency at a steady rate.
    async fn steady(self: &Arc<Self>, args: &Args, clients: &[Target]) -> Result<()> {
        self.reset();
        let started = Instant::now();
        let total = (args.rate * args.seconds) as usize;
        let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
        let mut tasks = vec![];
        for i in 0..total {
            tokio::time::sleep_until((started + interval * i as u32).into()).await;
            let (key, group) = clients[i % clients.len()].clone();
            let b = self.clone();
            tasks.push(tokio::spawn(async move {
                b.write(&key, &group, 9_000_000 + i).await
            }));
        }
        let mut written = 0;
        for t in tasks {
            written += usize::from(t.await?);
        }
        let (_, lat) = self.collect(written, started).await?;
        let api = self.answer_times();
        println!(
            "| end to end at {}/s | {written} | {} | {} |",
            args.rate,
            args.rate,
            lat.cells(&api)
        );
        Ok(())
    }

    /// Fan-out of events committed while no delivery ran.
    async fn fanout(&self, args: &Args) -> Result<()> {
        let (org, _, group) = self.org(args.fanout_endpoints).await?;
        let items: Vec<NewAsset> = (0..args.fanout_events)
            .map(|i| NewAsset {
                value: format!("f{i}-{}.example.com", uuid::Uuid::now_v7().simple()),
                asset_type: "domain".into(),
                tags: None,
                criticality: None,
            })
            .collect();
        for chunk in items.chunks(1_000) {
            self.state
                .commands
                .add_assets(&meta(), &org, Plan::Enterprise, &group, chunk)
                .await?;
        }
        self.reset();
        let started = Instant::now();
        let background = Background::start(&self.state, &self.args, &ScanArgs::disabled()).await?;
        let expected = args.fanout_events * args.fanout_endpoints;
        let (rate, _) = self.collect(expected, started).await?;
        println!(
            "| fan-out of {} committed events to {} endpoints | {expected} | {rate:.0} | | | | | | |",
            args.fanout_events, args.fanout_endpoints
        );
        background.stop().await;
        Ok(())
    }
}

/// CPU time so far, in clock ticks (1/100 s on Linux): (this process, every `postgres` process
/// of the machine). None where /proc cannot tell.
fn cpu_ticks() -> Option<(u64, u64)> {
    /// utime + stime of a /proc/<pid>/stat, and its command name.
    fn ticks(stat: &str) -> Option<(String, u64)> {
        let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((name.to_string(), utime + stime))
    }
    let own = ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?.1;
    let mut postgres = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((name, t)) = ticks(&stat) {
            if name == "postgres" {
                postgres += t;
            }
        }
    }
    Some((own, postgres))
}

/// Milliseconds of CPU per message from clock ticks of 10 ms.
fn per_message(ticks: u64, messages: usize) -> f64 {
    ticks as f64 * 10.0 / messages.max(1) as f64
}
