//! Faults answered as faults: a database that goes away under load, or a disk that fills up, is
//! a 503 with Retry-After, never a 500, and nothing acknowledged is lost.

use crate::audit::{export_lines, verify_both};
use crate::cli::easm;
use crate::helpers::*;
use easm_domain::Plan;
use easm_store::DbConfig;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};
use std::collections::BTreeSet;
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

/// Every connection of easm to its database terminated again and again for two seconds while
/// four clients add assets: the requests caught in it answer 503 with Retry-After (never 500),
/// writes work again within a second of the database, and every acknowledged asset is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_connections_answer_503_and_lose_nothing() {
    let t = spawn_app(Backend::Postgres).await;
    let DbConfig::Postgres { url } = &t.store.config else {
        unreachable!("a PostgreSQL store")
    };
    let database = url.rsplit('/').next().unwrap().to_string();
    let (_, key) = t.org(Plan::Enterprise).await;
    let group = t.group(&key, "faults").await;
    let url = t.url(&format!("/api/groups/{group}/assets"));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(add_assets(url.clone(), key.clone(), c, stop.clone())))
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut admin = PgConnection::connect(&format!("{}/postgres", pg_base_url()))
        .await
        .unwrap();
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
    );
    let started = Instant::now();
    let mut terminated = 0;
    while started.elapsed() < Duration::from_secs(2) {
        terminated += admin.fetch_all(terminate.as_str()).await.unwrap().len();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(terminated > 0, "connections were terminated");

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
    assert!(
        created.len() > 100,
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
