//! Faults answered as faults: a database that goes away under load, or a disk that fills up, is
//! a 503 with Retry-After, never a 500, and nothing acknowledged is lost.

use crate::audit::{export_lines, verify_both};
use crate::cli::easm;
use crate::delivery::Setup;
use crate::helpers::*;
use crate::receiver::Receiver;
use crate::scanner::PRIVATE;
use crate::targets;
use easm::zone_server::{ZoneServer, Zones};
use easm_domain::Plan;
use easm_events::{Event, GroupCreated, GroupId};
use easm_store::{AppendRequest, Db, DbConfig, EventLog, StreamAppend};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;

/// What one client saw: the values acknowledged, and how many requests were refused as
/// unavailable.
struct Seen {
    created: Vec<String>,
    unavailable: usize,
}

/// Add assets one by one until `stop`; any answer but 201 or a well-formed 503 fails the test.
async fn add_assets(url: String, key: String, client: usize, stop: Arc<AtomicBool>) -> Seen {
    let http = reqwest::Client::new();
    let mut seen = Seen {
        created: vec![],
        unavailable: 0,
    };
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let value = format!("c{client}-{n}.faults.test");
        let res = http
            .post(&url)
            .header("X-API-Key", &key)
            .json(&json!({"value": value, "type": "subdomain"}))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let retry_after = res.headers().get("retry-after").cloned();
        let body: serde_json::Value = res.json().await.unwrap();
        match status {
            StatusCode::CREATED => seen.created.push(value),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(body["code"], "UNAVAILABLE", "{body}");
                let after = retry_after.expect("a 503 says when to retry");
                assert!(after.to_str().unwrap().parse::<u64>().unwrap() >= 1);
                seen.unavailable += 1;
            }
            other => panic!("{value}: {other} {body}"),
        }
    }
    seen
}

/// Terminate every connection to the store's PostgreSQL database every 50 ms for `during`, as
/// a database restart or a network cut does to easm.
async fn cut_connections(store: &TestStore, during: Duration) {
    let DbConfig::Postgres { url } = &store.config else {
        unreachable!("a PostgreSQL store")
    };
    let database = url.rsplit('/').next().unwrap().to_string();
    let mut admin = PgConnection::connect(&format!("{}/postgres", pg_base_url()))
        .await
        .unwrap();
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
    );
    let started = Instant::now();
    let mut terminated = 0;
    while started.elapsed() < during {
        terminated += admin.fetch_all(terminate.as_str()).await.unwrap().len();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(terminated > 0, "connections were terminated");
}

/// Every connection of easm to its database terminated again and again for two seconds while
/// four clients add assets: the requests caught in it answer 503 with Retry-After (never 500),
/// writes work again within a second of the database, and every acknowledged asset is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_connections_answer_503_and_lose_nothing() {
    let t = spawn_app(Backend::Postgres).await;
    let (_, key) = t.org(Plan::Enterprise).await;
    let group = t.group(&key, "faults").await;
    let url = t.url(&format!("/api/groups/{group}/assets"));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(add_assets(url.clone(), key.clone(), c, stop.clone())))
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    cut_connections(&t.store, Duration::from_secs(2)).await;

    // The first write after the database is back succeeds within a second.
    let back = Instant::now();
    loop {
        let a = t
            .post(
                &key,
                &format!("/api/groups/{group}/assets"),
                json!({"value": "back.faults.test", "type": "subdomain"}),
            )
            .await;
        if a.status == StatusCode::CREATED {
            break;
        }
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
        assert!(
            back.elapsed() < Duration::from_secs(1),
            "writes resume within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut created = BTreeSet::new();
    let mut unavailable = 0;
    for c in clients {
        let seen = c.await.unwrap();
        created.extend(seen.created);
        unavailable += seen.unavailable;
    }
    assert!(
        unavailable > 0,
        "some requests met a terminated connection and were told to retry"
    );
    let mut listed = BTreeSet::new();
    for page in 1.. {
        let a = t
            .get(&key, &format!("/api/assets?perPage=500&page={page}"))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let items = a.body["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        listed.extend(
            items
                .iter()
                .map(|i| i["value"].as_str().unwrap().to_string()),
        );
    }
    let lost: Vec<_> = created.difference(&listed).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    // A loaded machine writes less; what matters is that every client kept writing.
    assert!(
        created.len() >= 4 * CLIENTS,
        "the load went on: {} created",
        created.len()
    );
}

/// Unmounts the small file system a test filled, whatever became of the test (lazily: the
/// server may still hold its files open).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the file system of `dir` but for `spare` bytes, with a file that is returned.
fn fill(dir: &Path, spare: u64) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 1 << 16];
    while f.write_all(&chunk).is_ok() {}
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(spare)).unwrap();
    filler
}

/// The embedded default on a 16 MiB file system that fills up: writes answer 503
/// `STORAGE_FULL` with nothing half-applied, reads go on, and once space is back writes resume
/// over a store that is whole (SQLite's integrity check, the read models against the log, a
/// verified audit export).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_cleanly_and_they_resume() {
    let store = TestStore::new(Backend::Sqlite).await;
    let dir = store.dir.path().to_path_buf();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "the test mounts a tmpfs of its own: it runs as root, as CI does"
    );
    let _mounted = Mounted(dir.clone());
    let t = spawn_on(store).await;
    let (_, key) = t.org(Plan::Enterprise).await;
    let signing = t.get(&key, "/api/settings/audit-signing-key").await;
    let public = signing.body["publicKey"].as_str().unwrap().to_string();
    let group = t.group(&key, "full").await;
    let filler = fill(&dir, 1 << 20);

    let mut acknowledged = 0;
    let mut refused = None;
    for request in 0..500 {
        let assets: Vec<_> = (0..200)
            .map(|i| json!({"value": format!("r{request}-{i}.full.test"), "type": "subdomain"}))
            .collect();
        let a = t
            .post(
                &key,
                &format!("/api/groups/{group}/assets/bulk"),
                json!({ "assets": assets }),
            )
            .await;
        if a.status.is_success() {
            acknowledged += 200;
            continue;
        }
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
        assert_eq!(a.code(), "STORAGE_FULL", "{}", a.body);
        assert!(a.headers.contains_key("retry-after"));
        refused = Some(a);
        break;
    }
    assert!(refused.is_some(), "the disk filled up");
    let total = |a: &Answer| a.body["total"].as_u64().unwrap();
    let read = t.get(&key, "/api/assets?perPage=5").await;
    assert_eq!(read.status, StatusCode::OK, "reads go on: {}", read.body);
    assert_eq!(total(&read), acknowledged, "nothing half-applied");

    std::fs::remove_file(&filler).unwrap();
    // Writes resume (the helper asserts the 201).
    t.asset(&key, &group, "after.full.test", "subdomain").await;
    let read = t.get(&key, "/api/assets?perPage=5").await;
    assert_eq!(total(&read), acknowledged + 1);

    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(t.db.reader())
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    easm(&t.store, &["projections", "verify"]);
    let lines = export_lines(&t, &key).await;
    let (verified, report) = verify_both(&t.store, &lines, &public);
    assert!(verified, "{report}");
}

/// NATS stopped under load for two seconds and started again on its port with its JetStream
/// files: writes go on meanwhile (the outbox keeps their events), `/readyz` names NATS as down
/// and then ready again, deliveries flow within 5 s of NATS being back, and every acknowledged
/// asset is delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_restart_under_load_loses_nothing_and_deliveries_resume() {
    let receiver = Receiver::start().await;
    let mut s = Setup::start(Backend::Postgres, true, &[("EASM_WEBHOOK_RATE", "1000")]).await;
    s.webhook(&receiver.url, &["asset.added"]).await;
    let group = s.post("/api/groups", json!({"name": "nats"})).await.id();
    let server = s.server.as_ref().unwrap();
    let (url, ready) = (
        server.url(&format!("/api/groups/{group}/assets")),
        server.url("/readyz"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(add_assets(url.clone(), s.key.clone(), c, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (port, dir) = s.nats.take().unwrap().stop();
    let readiness = |expect: StatusCode| {
        let ready = ready.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let r = reqwest::get(&ready).await.unwrap();
                let status = r.status();
                let body: serde_json::Value = r.json().await.unwrap();
                if status == expect {
                    return body;
                }
                assert!(Instant::now() < deadline, "/readyz stayed {status}: {body}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let down = readiness(StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(down["code"], "UNAVAILABLE", "{down}");
    assert_eq!(down["error"], "nats unreachable", "{down}");
    assert_eq!(down["dependencies"]["database"], "ok", "{down}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    s.nats = Some(NatsServer::start_on(port, dir));
    let back = Instant::now();
    let up = readiness(StatusCode::OK).await;
    assert_eq!(up["dependencies"]["nats"], "ok", "{up}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut created = BTreeSet::new();
    for c in clients {
        created.extend(c.await.unwrap().created);
    }

    receiver
        .wait_for(created.len(), Duration::from_secs(60))
        .await;
    let first_after = receiver
        .arrivals()
        .into_iter()
        .find(|a| *a > back)
        .expect("deliveries after NATS came back");
    assert!(
        first_after - back < Duration::from_secs(5),
        "deliveries flowed {:?} after NATS was back",
        first_after - back
    );
    // Time for a duplicate to show, if any was sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    let delivered: BTreeSet<String> = received
        .iter()
        .map(|r| r.json()["data"]["value"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<_> = created.difference(&delivered).collect();
    assert!(
        lost.is_empty(),
        "acknowledged and never delivered: {lost:?}"
    );
    assert_eq!(received.len(), created.len(), "each delivered once");
}

/// On PostgreSQL (SQLite has no connections to cut): with the database queue, and with NATS.
mod every_background_loop_resumes_after_its_connections_are_cut {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        super::every_background_loop_resumes_after_its_connections_are_cut(false).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_nats() {
        super::every_background_loop_resumes_after_its_connections_are_cut(true).await
    }
}

/// The leases held, by name: (holder, expiry in microseconds).
async fn leases(db: &Db) -> BTreeMap<String, (String, i64)> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT name, holder, expires_at FROM leases")
            .fetch_all(db.reader())
            .await
            .unwrap();
    rows.into_iter().map(|(n, h, e)| (n, (h, e))).collect()
}

/// Wait for `what` to hold, at most `bound` from `since`; answers how long it took.
async fn within<F, Fut>(what: &str, since: Instant, bound: Duration, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    while !done().await {
        assert!(since.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    since.elapsed()
}

/// `easm serve` doing every kind of background work while all its database connections are cut
/// for a second and a half; after it, each loop works again well within its own lease: the
/// outbox (relay or fan-out) and the delivery worker deliver a new asset, the projection
/// catch-up shows what a tool appended to the bare log, the scan and discovery workers run new
/// jobs to completion, the scheduler runs a new scan schedule, and every lease is still held by
/// this process, renewed after the cut.
async fn every_background_loop_resumes_after_its_connections_are_cut(nats: bool) {
    let dns = ZoneServer::start(
        Zones::default()
            .zone("cut.test")
            .a("www.cut.test", [127, 0, 0, 1].into()),
    )
    .await
    .unwrap();
    let ct = targets::http(
        None,
        Arc::new(|_: &str| {
            let body = json!([{"name_value": "www.cut.test", "not_after": "2099-01-01T00:00:00"}]);
            (
                200,
                vec![("Content-Type", "application/json".into())],
                body.to_string(),
            )
        }),
    )
    .await;
    let web = targets::http(None, Arc::new(|_: &str| (200, vec![], "hello".into()))).await;
    let (resolver, ct_url) = (
        dns.addr.to_string(),
        format!("http://127.0.0.1:{}", ct.port),
    );
    let receiver = Receiver::start().await;
    let s = Setup::start(
        Backend::Postgres,
        nats,
        &[
            PRIVATE,
            ("EASM_SCAN_RESOLVER", &resolver),
            ("EASM_DISCOVERY_CT_URL", &ct_url),
            ("EASM_DISCOVERY_MODULES", "ct"),
            ("EASM_MONITOR_INTERVAL", "200ms"),
            ("EASM_SCAN_LEASE", "60s"),
        ],
    )
    .await;
    s.webhook(&receiver.url, &["asset.added"]).await;
    let group = s.post("/api/groups", json!({"name": "cut"})).await.id();
    let assets = format!("/api/groups/{group}/assets");
    let add = |value: &'static str| s.post(&assets, json!({"value": value, "type": "subdomain"}));
    assert_eq!(add("before.cut.test").await.status, StatusCode::CREATED);
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let db = Db::connect(&s.store.config).await.unwrap();
    let held = leases(&db).await;
    assert!(held.contains_key("outbox-relay"), "{held:?}");
    assert!(held.contains_key("monitor-scheduler"), "{held:?}");

    cut_connections(&s.store, Duration::from_millis(1500)).await;
    let cut_end = Instant::now();
    let cut_end_micros = chrono::Utc::now().timestamp_micros();

    // Relay (NATS) or fan-out (outbox), and the delivery worker.
    let write = within("a write", cut_end, Duration::from_secs(1), || async {
        add("after.cut.test").await.status == StatusCode::CREATED
    })
    .await;
    let delivered = within("its delivery", cut_end, Duration::from_secs(5), || async {
        receiver.received().len() == 2
    })
    .await;
    assert_eq!(
        receiver.received()[1].json()["data"]["value"],
        "after.cut.test"
    );

    // Projection catch-up of what a tool appended to the bare log.
    let appended: GroupId = easm_app::new_id();
    EventLog::new(db.clone())
        .append(AppendRequest {
            org_id: s.org.clone(),
            meta: system_meta(),
            streams: vec![StreamAppend {
                stream_id: easm_app::streams::group_stream(&appended),
                expected_version: 0,
                events: vec![Event::GroupCreated(GroupCreated {
                    group_id: appended.clone(),
                    name: "appended by a tool".into(),
                })],
            }],
            constraints: vec![],
        })
        .await
        .unwrap();
    let path = format!("/api/groups/{appended}");
    let caught_up = within("the catch-up", cut_end, Duration::from_secs(5), || async {
        s.get(&path).await.status == StatusCode::OK
    })
    .await;

    // The scan and discovery workers, and the scheduler: new work, done well within the scan
    // lease (60 s) and the scheduler's (10 s).
    let ip = crate::scanner::asset(&s, "127.0.0.1", "ip").await;
    let job = crate::scanner::scan(&s, &ip, "quick", &[web.port]).await;
    let discovery = s
        .post("/api/discovery/run", json!({"domains": ["cut.test"]}))
        .await;
    assert_eq!(discovery.status, StatusCode::ACCEPTED, "{}", discovery.body);
    let schedule = s
        .post(
            "/api/scan-schedules",
            json!({"scheduleType": "asset", "assetId": ip}),
        )
        .await;
    assert_eq!(schedule.status, StatusCode::CREATED, "{}", schedule.body);
    let (job_path, discovery_path, schedule_path) = (
        format!("/api/scan-jobs/{job}"),
        format!("/api/discovery/jobs/{}", discovery.id()),
        format!("/api/scan-schedules/{}", schedule.id()),
    );
    let scanned = within("the scan", cut_end, Duration::from_secs(15), || async {
        s.get(&job_path).await.body["status"] == "completed"
    })
    .await;
    let discovered = within(
        "the discovery",
        cut_end,
        Duration::from_secs(15),
        || async { s.get(&discovery_path).await.body["status"] == "completed" },
    )
    .await;
    let scheduled = within(
        "the schedule's run",
        cut_end,
        Duration::from_secs(8),
        || async { s.get(&schedule_path).await.body["runCount"] == 1 },
    )
    .await;

    // Renewed by the same holders after the cut: no lease had to lapse.
    let after = leases(&db).await;
    for (name, (holder, _)) in &held {
        let (now_holder, expires) = &after[name];
        assert_eq!(now_holder, holder, "{name} changed hands");
        assert!(
            *expires > cut_end_micros,
            "{name} was not renewed after the cut"
        );
    }
    db.close().await;
    eprintln!(
        "after the cut: write {write:?}, delivery {delivered:?}, catch-up {caught_up:?}, \
         scan {scanned:?}, discovery {discovered:?}, schedule {scheduled:?}"
    );
}
