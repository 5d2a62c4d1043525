//! `easm-bench soak`: `easm serve` run as a process of its own for a long time at a steady rate
//! of commands, every event delivered by webhook to a receiver here, sampled every minute: the
//! server's resident memory, file descriptors, database and other connections, the answers'
//! latency and the delivery latency. A leak shows as growth after warm-up; the figure kept is
//! the growth of RSS between minute 5 and the last minute.

use crate::{meta, ms};
use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::HeaderMap;
use easm::config::StoreArgs;
use easm_app::App;
use easm_domain::{Plan, WebhookSpec};
use easm_events::{GroupId, OrgId};
use easm_store::{Backend, Db};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// How long the load runs.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Commands per second (four asset adds for every removal).
    #[arg(long, default_value_t = 250)]
    rate: u64,
    /// Organizations the commands spread over, each with a webhook taking every event.
    #[arg(long, default_value_t = 8)]
    orgs: usize,
    /// Seconds between samples.
    #[arg(long, default_value_t = 60)]
    sample_seconds: u64,
    /// The `easm` binary to run (default: the one beside this binary).
    #[arg(long)]
    easm: Option<PathBuf>,
}

/// Requests in flight at most; a tick that finds them all busy is counted as late, not sent.
const IN_FLIGHT: usize = 256;

/// What happened since the last sample: answer and delivery latencies in microseconds.
#[derive(Default)]
struct Window {
    answers: Vec<i64>,
    errors: u64,
    late: u64,
    deliveries: Vec<i64>,
}

struct Shared {
    window: Mutex<Window>,
    /// Webhook ids received, to count each delivery once.
    seen: Mutex<HashSet<String>>,
}

async fn receive(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    let now = chrono::Utc::now();
    let body = serde_json::from_str::<Value>(&body).unwrap_or_default();
    let lag = chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap_or(""))
        .ok()
        .and_then(|t| (now - t.with_timezone(&chrono::Utc)).num_microseconds())
        .unwrap_or(0);
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if s.seen.lock().expect("seen").insert(id) {
        s.window.lock().expect("window").deliveries.push(lag.max(0));
    }
    axum::http::StatusCode::NO_CONTENT
}

/// A tenant of the load: its owner key, a group, and the assets added so far.
struct Tenant {
    org: OrgId,
    key: String,
    group: GroupId,
    assets: Mutex<Vec<String>>,
}

/// The server under test, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(args: &Args, store: &StoreArgs) -> Result<Server> {
    let easm = match &args.easm {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("bench binary's directory")?
            .join("easm"),
    };
    let mut cmd = Command::new(&easm);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("EASM_DATA_DIR", &store.data_dir)
        .env("EASM_WEBHOOK_ALLOW_PRIVATE", "true")
        .env("RUST_LOG", "warn,easm=info,easm::access=warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(url) = &store.database_url {
        cmd.env("EASM_DATABASE_URL", url);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", easm.display()))?;
    let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
    let mut addr = None;
    for line in lines.by_ref() {
        let line = line?;
        if let Some(i) = line.find("addr=") {
            if line.contains("easm listening") {
                addr = line[i + 5..].split_whitespace().next().map(str::to_string);
                break;
            }
        }
    }
    // The server's warnings stay visible; reading them keeps it from blocking on a full pipe.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| eprintln!("{l}")));
    let Some(addr) = addr else {
        let _ = child.kill();
        bail!("easm serve did not start");
    };
    Ok(Server {
        child,
        url: format!("http://{addr}"),
    })
}

/// A reading of the server process from /proc.
#[derive(Clone, Copy, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Reading {
    rss_mib: f64,
    fds: usize,
    /// Connections to the database: TCP to PostgreSQL's port, or open SQLite files.
    database: usize,
    /// Every other socket (HTTP in and out, NATS).
    sockets: usize,
}

fn read_process(pid: u32, backend: Backend, pg_port: u16) -> Result<Reading> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    let mut socket_inodes = HashSet::new();
    let (mut fds, mut sqlite_files) = (0, 0);
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        fds += 1;
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let target = target.to_string_lossy().to_string();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            socket_inodes.insert(inode.to_string());
        } else if target.ends_with(".db") {
            sqlite_files += 1;
        }
    }
    // A socket's remote port is in the net tables of the process's namespace.
    let mut to_postgres = 0;
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let (Some(remote), Some(inode)) = (cols.get(2), cols.get(9)) else {
                continue;
            };
            let port = remote
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if socket_inodes.contains(*inode) && port == Some(pg_port) {
                to_postgres += 1;
            }
        }
    }
    let database = match backend {
        Backend::Postgres => to_postgres,
        Backend::Sqlite => sqlite_files,
    };
    Ok(Reading {
        rss_mib: rss_kib / 1024.0,
        fds,
        database,
        sockets: socket_inodes.len() - to_postgres,
    })
}

async fn tenants(app: &App, n: usize, receiver: &str) -> Result<Vec<Arc<Tenant>>> {
    let mut out = vec![];
    for i in 0..n.max(1) {
        let (org, key) = app
            .create_org(&meta(), &format!("soak {i}"), Plan::Enterprise)
            .await?;
        let spec = WebhookSpec {
            url: Some(receiver.to_string()),
            events: Some(vec!["*".into()]),
            description: None,
            enabled: None,
            delivery: Default::default(),
        };
        app.create_webhook(&meta(), &org, &spec, true).await?;
        let group = app.create_group(&meta(), &org, "soak").await?;
        out.push(Arc::new(Tenant {
            org,
            key: key.secret,
            group,
            assets: Mutex::default(),
        }));
    }
    Ok(out)
}

/// Command `i` for `t`: the removal of an asset added before, one time in five; otherwise an
/// asset add. Both are events a webhook receives. Answers whether it succeeded.
async fn command(http: &reqwest::Client, url: &str, t: &Tenant, i: u64) -> bool {
    let earlier = match i % 5 {
        4 => t.assets.lock().expect("assets").pop(),
        _ => None,
    };
    let req = match &earlier {
        Some(id) => http.delete(format!("{url}/api/assets/{id}")),
        None => http
            .post(format!("{url}/api/groups/{}/assets", t.group))
            .json(&json!({"value": format!("s{i}-{}.soak.example", uuid::Uuid::now_v7().simple()), "type": "subdomain"})),
    };
    let Ok(res) = req.header("X-API-Key", &t.key).send().await else {
        return false;
    };
    if !res.status().is_success() {
        return false;
    }
    if earlier.is_none() {
        if let Ok(body) = res.json::<Value>().await {
            if let Some(id) = body["id"].as_str() {
                t.assets.lock().expect("assets").push(id.to_string());
            }
        }
    }
    true
}

/// The tenants' asset events after their setup, which the receiver must have received once each.
async fn events_since(db: &Db, orgs: &[OrgId], after: i64) -> Result<usize> {
    let mut n = 0;
    for org in orgs {
        let q = match db.backend() {
            Backend::Postgres => "SELECT COUNT(*) FROM events WHERE org_id = $1 AND position > $2 AND event_type IN ('asset.added', 'asset.removed')",
            Backend::Sqlite => "SELECT COUNT(*) FROM events WHERE org_id = ?1 AND position > ?2 AND event_type IN ('asset.added', 'asset.removed')",
        };
        let c: i64 = sqlx::query_scalar(q)
            .bind(org.to_string())
            .bind(after)
            .fetch_one(db.reader())
            .await?;
        n += c as usize;
    }
    Ok(n)
}

async fn last_position(db: &Db) -> Result<i64> {
    Ok(
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(position) FROM events")
            .fetch_one(db.reader())
            .await?
            .unwrap_or(0),
    )
}

pub async fn run(args: Args, db: Db, store: StoreArgs) -> Result<()> {
    // Sized for the whole run up front: growing a set of a few hundred thousand ids rehashes
    // it under the lock every delivery waits on, a stall of the bench's, not the server's.
    let shared = Arc::new(Shared {
        window: Mutex::default(),
        seen: Mutex::new(HashSet::with_capacity(
            (args.rate * args.minutes * 60 * 11 / 10) as usize,
        )),
    });
    let receiver_app = axum::Router::new()
        .fallback(axum::routing::post(receive))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, receiver_app).await });

    let app = App::new(db.clone());
    let tenants = tenants(&app, args.orgs, &receiver).await?;
    let orgs: Vec<OrgId> = tenants.iter().map(|t| t.org.clone()).collect();
    let after = last_position(&db).await?;
    let server = start_server(&args, &store)?;
    let pid = server.child.id();
    let pg_port = store
        .database_url
        .as_deref()
        .and_then(|u| reqwest::Url::parse(u).ok())
        .and_then(|u| u.port())
        .unwrap_or(5432);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()?;
    println!(
        "backend: {:?}, {} commands/s for {} min over {} organizations, server pid {pid}",
        db.backend(),
        args.rate,
        args.minutes,
        orgs.len()
    );
    println!("| sample | commands/s | p50 ms | p99 ms | errors | late | deliveries/s | delivery p50 ms | p99 ms | RSS MiB | fds | database | sockets |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");

    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let end = started + Duration::from_secs(args.minutes * 60);
    let every = Duration::from_secs(args.sample_seconds.max(1));
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let mut next_sample = started + every;
    let mut samples = vec![];
    let mut i: u64 = 0;
    while Instant::now() < end {
        let at = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at.into()).await;
        if Instant::now() >= next_sample {
            samples.push(sample(
                &shared,
                pid,
                db.backend(),
                pg_port,
                every,
                samples.len() + 1,
            )?);
            next_sample += every;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared.window.lock().expect("window").late += 1;
            i += 1;
            continue;
        };
        let (http, url, t, s) = (
            http.clone(),
            server.url.clone(),
            tenants[i as usize % tenants.len()].clone(),
            shared.clone(),
        );
        tokio::spawn(async move {
            let sent = Instant::now();
            let ok = command(&http, &url, &t, i).await;
            let mut w = s.window.lock().expect("window");
            match ok {
                true => w.answers.push(sent.elapsed().as_micros() as i64),
                false => w.errors += 1,
            }
            drop(permit);
        });
        i += 1;
    }
    let _ = slots.acquire_many(IN_FLIGHT as u32).await;

    // Every event of the tenants is delivered once, however long the tail takes (bounded).
    let expected = events_since(&db, &orgs, after).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while shared.seen.lock().expect("seen").len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delivered = shared.seen.lock().expect("seen").len();
    // The sample that ends at minute 5, or the first after it.
    let five = (300.0 / every.as_secs_f64()).ceil() as usize;
    let at_five = samples
        .get(five.saturating_sub(1))
        .map(|s| s.reading.rss_mib);
    let growth = match (at_five, samples.last()) {
        (Some(at_five), Some(last)) if samples.len() > five => {
            Some(100.0 * (last.reading.rss_mib - at_five) / at_five)
        }
        _ => None,
    };
    println!(
        "\nevents {expected}, delivered once {delivered}; RSS at minute 5 {:.1} MiB, at the end {:.1} MiB: growth {}",
        at_five.unwrap_or(0.0),
        samples.last().map_or(0.0, |s| s.reading.rss_mib),
        growth.map_or("-".into(), |g| format!("{g:.1}%"))
    );
    println!(
        "{}",
        json!({"backend": format!("{:?}", db.backend()), "rate": args.rate, "minutes": args.minutes,
            "events": expected, "delivered": delivered, "rssGrowthPercentFromMinute5": growth,
            "samples": samples})
    );
    drop(server);
    if delivered < expected {
        bail!(
            "{} of {expected} events were not delivered",
            expected - delivered
        );
    }
    Ok(())
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Sample {
    /// Its number: sample n ends n sampling periods after the load started.
    sample: usize,
    commands_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    late: u64,
    deliveries_per_second: f64,
    delivery_p50_ms: f64,
    delivery_p99_ms: f64,
    #[serde(flatten)]
    reading: Reading,
}

/// Take the window since the last sample, read the process, print the row.
fn sample(
    shared: &Shared,
    pid: u32,
    backend: Backend,
    pg_port: u16,
    every: Duration,
    n: usize,
) -> Result<Sample> {
    let mut w = std::mem::take(&mut *shared.window.lock().expect("window"));
    w.answers.sort_unstable();
    w.deliveries.sort_unstable();
    let secs = every.as_secs_f64();
    let s = Sample {
        sample: n,
        commands_per_second: w.answers.len() as f64 / secs,
        p50_ms: ms(&w.answers, 0.5),
        p99_ms: ms(&w.answers, 0.99),
        errors: w.errors,
        late: w.late,
        deliveries_per_second: w.deliveries.len() as f64 / secs,
        delivery_p50_ms: ms(&w.deliveries, 0.5),
        delivery_p99_ms: ms(&w.deliveries, 0.99),
        reading: read_process(pid, backend, pg_port)?,
    };
    println!(
        "| {} | {:.0} | {:.1} | {:.1} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
        s.sample,
        s.commands_per_second,
        s.p50_ms,
        s.p99_ms,
        s.errors,
        s.late,
        s.deliveries_per_second,
        s.delivery_p50_ms,
        s.delivery_p99_ms,
        s.reading.rss_mib,
        s.reading.fds,
        s.reading.database,
        s.reading.sockets
    );
    Ok(s)
}
