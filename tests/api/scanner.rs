//! The built-in scanner end to end: `easm serve` processes scan real servers on 127.0.0.1 that
//! the tests start (and the machine's Redis), findings carry evidence, reach webhooks, are
//! auto-resolved and reopened by later scans; jobs survive a killed worker, can be cancelled,
//! and private targets are refused unless allowed. On SQLite, and on PostgreSQL with NATS.

use crate::delivery::{Setup, WAIT};
use crate::helpers::Backend;
use crate::on_sqlite_and_nats;
use crate::receiver::Receiver;
use crate::targets::{self, cert, Page};
use easm::zone_server::{ZoneServer, Zones};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const REDIS: u16 = 6379;
pub(crate) const PRIVATE: (&str, &str) = ("EASM_SCAN_ALLOW_PRIVATE", "true");

on_sqlite_and_nats!(
    a_worker_killed_mid_scan_is_replaced_and_the_job_completes_once,
    two_processes_share_the_scans,
);

/// An asset in a new group.
pub(crate) async fn asset(s: &Setup, value: &str, ty: &str) -> String {
    let g = s
        .post(
            "/api/groups",
            json!({"name": uuid::Uuid::new_v4().to_string()}),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);
    let a = s
        .post(
            &format!("/api/groups/{}/assets", g.id()),
            json!({"value": value, "type": ty}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    a.id()
}

pub(crate) async fn scan(s: &Setup, asset: &str, profile: &str, ports: &[u16]) -> String {
    let a = s
        .post(
            "/api/scan-jobs",
            json!({"asset_id": asset, "profile": profile, "ports": ports}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["status"], "queued");
    a.id()
}

/// The job once its status is `status` (panics after a while, or if it ends otherwise).
pub(crate) async fn job_when(s: &Setup, job: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = s.get(&format!("/api/scan-jobs/{job}")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        if a.body["status"] == status {
            return a.body;
        }
        let ended =
            ["completed", "failed", "cancelled"].contains(&a.body["status"].as_str().unwrap());
        assert!(!ended, "the job ended otherwise: {}", a.body);
        assert!(
            Instant::now() < deadline,
            "the job never got {status}: {}",
            a.body
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub(crate) async fn findings_of(s: &Setup, job: &str) -> Vec<Value> {
    let a = s
        .get(&format!("/api/scan-jobs/{job}/findings?perPage=100"))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["items"].as_array().unwrap().clone()
}

pub(crate) fn page(status: u16, headers: &[(&'static str, &str)], body: &str) -> Page {
    (
        status,
        headers.iter().map(|(n, v)| (*n, v.to_string())).collect(),
        body.to_string(),
    )
}

pub(crate) fn by_key(findings: &[Value]) -> HashMap<(String, String), Value> {
    findings
        .iter()
        .map(|f| {
            let key = (
                f["templateId"].as_str().unwrap().to_string(),
                f["matchedAt"].as_str().unwrap().to_string(),
            );
            (key, f.clone())
        })
        .collect()
}

async fn a_worker_killed_mid_scan_is_replaced_and_the_job_completes_once(b: Backend, nats: bool) {
    let mut s = Setup::start(b, nats, &[PRIVATE, ("EASM_SCAN_LEASE", "2s")]).await;
    let receiver = Receiver::start().await;
    s.webhook(&receiver.url, &["scan.completed", "finding.new"])
        .await;
    let slow = targets::slow(Duration::from_secs(5)).await;
    let web = targets::http(None, Arc::new(|_| page(200, &[], "hello"))).await;
    let asset = asset(&s, "127.0.0.1", "ip").await;
    let job = scan(&s, &asset, "quick", &[slow.port, web.port]).await;
    job_when(&s, &job, "running").await;
    s.server.take().unwrap().kill();
    s.restart();
    let done = job_when(&s, &job, "completed").await;
    assert_eq!(done["attempts"], 2, "{done}");
    let findings = findings_of(&s, &job).await;
    assert!(!findings.is_empty());
    assert!(findings.iter().all(|f| f["detectionCount"] == 1));
    let got = receiver.wait_for(findings.len() + 1, WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got_later = receiver.received();
    assert_eq!(got_later.len(), got.len(), "nothing more arrives");
    let completed = got_later
        .iter()
        .filter(|r| r.json()["type"] == "scan.completed")
        .count();
    assert_eq!(completed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn private_targets_are_refused_unless_allowed() {
    let s = Setup::start(Backend::Sqlite, false, &[]).await;
    let web = targets::http(None, Arc::new(|_| page(200, &[], "hello"))).await;
    let local = asset(&s, "127.0.0.1", "ip").await;
    let job = scan(&s, &local, "quick", &[web.port]).await;
    let failed = job_when(&s, &job, "failed").await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("127.0.0.1") && error.contains("loopback"),
        "{error}"
    );
    assert!(findings_of(&s, &job).await.is_empty());
    let range = asset(&s, "10.0.0.0/24", "cidr").await;
    let job = scan(&s, &range, "quick", &[80]).await;
    let failed = job_when(&s, &job, "failed").await;
    assert!(
        failed["error"].as_str().unwrap().contains("CIDR"),
        "{failed}"
    );
    let health = s.get(&format!("/api/assets/{local}/health")).await;
    assert_eq!(health.body["status"], "unknown");
    assert!(health.body["lastError"]
        .as_str()
        .unwrap()
        .contains("loopback"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_resolve_through_the_configured_resolver() {
    let zones = Zones::default()
        .zone("scan.test")
        .cname("app.scan.test", "edge.scan.test")
        .a("edge.scan.test", [127, 0, 0, 1].into());
    let dns = ZoneServer::start(zones).await.unwrap();
    // The first upstream never answers: the resolver goes on to the next.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolver = format!("{},{}", silent.local_addr().unwrap(), dns.addr);
    let s = Setup::start(
        Backend::Sqlite,
        false,
        &[PRIVATE, ("EASM_SCAN_RESOLVER", &resolver)],
    )
    .await;
    let web = targets::http(
        None,
        Arc::new(|_| page(200, &[("Server", "Apache/2.4.1")], "")),
    )
    .await;
    let named = asset(&s, "app.scan.test", "domain").await;
    let job = scan(&s, &named, "quick", &[web.port]).await;
    job_when(&s, &job, "completed").await;
    let health = s.get(&format!("/api/assets/{named}/health")).await;
    assert_eq!(
        health.body["addresses"],
        json!(["127.0.0.1"]),
        "{}",
        health.body
    );
    assert_eq!(health.body["cnames"], json!(["edge.scan.test"]));
    assert_eq!(health.body["services"][0]["service"], "http");
    let found = by_key(&findings_of(&s, &job).await);
    let root = format!("http://app.scan.test:{}/", web.port);
    assert!(found.contains_key(&("http.server-version-disclosure".into(), root)));
    let unknown = asset(&s, "nope.scan.test", "domain").await;
    let job = scan(&s, &unknown, "quick", &[web.port]).await;
    let failed = job_when(&s, &job, "failed").await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("nope.scan.test does not exist (NXDOMAIN)"),
        "{failed}"
    );
}

/// openssl's test server, which still speaks TLS 1.0 and 1.1 when told to.
struct OpensslServer {
    child: std::process::Child,
    port: u16,
    _files: tempfile::TempDir,
}

impl OpensslServer {
    /// `versions`: openssl's protocol options, e.g. `-min_protocol TLSv1` or `-tls1`.
    fn start(versions: &[&str]) -> OpensslServer {
        let dir = tempfile::tempdir().unwrap();
        let c = cert(&["localhost"], (2024, 1, 1), (2099, 1, 1));
        std::fs::write(dir.path().join("cert.pem"), &c.pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &c.key_pem).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-cert", "cert.pem", "-key", "key.pem"])
            .args(versions)
            .args(["-cipher", "DEFAULT@SECLEVEL=0"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl must be installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        OpensslServer {
            child,
            port,
            _files: dir,
        }
    }
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deprecated_tls_versions_are_reported_and_quick_scans_skip_them() {
    let server = OpensslServer::start(&["-min_protocol", "TLSv1"]);
    let old_only = OpensslServer::start(&["-tls1"]);
    let s = Setup::start(Backend::Sqlite, false, &[PRIVATE]).await;
    let local = asset(&s, "127.0.0.1", "ip").await;
    let job = scan(&s, &local, "standard", &[server.port]).await;
    job_when(&s, &job, "completed").await;
    let findings = findings_of(&s, &job).await;
    let deprecated: Vec<&str> = findings
        .iter()
        .filter(|f| f["templateId"] == "tls.deprecated-protocol")
        .map(|f| f["matcherName"].as_str().unwrap())
        .collect();
    assert!(deprecated.contains(&"tls1.0"), "{findings:#?}");
    assert!(deprecated.contains(&"tls1.1"), "{findings:#?}");
    assert!(findings
        .iter()
        .any(|f| f["templateId"] == "tls.self-signed-cert"));
    assert!(!findings
        .iter()
        .any(|f| f["templateId"] == "tls.expired-cert"));
    // A server that speaks nothing newer fails a modern handshake but is still found.
    let job = scan(&s, &local, "deep", &[old_only.port]).await;
    job_when(&s, &job, "completed").await;
    let findings = findings_of(&s, &job).await;
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["matcherName"], "tls1.0");
    let health = s.get(&format!("/api/assets/{local}/health")).await;
    assert_eq!(
        health.body["services"][0]["service"], "tls",
        "{}",
        health.body
    );
    let quick = scan(&s, &local, "quick", &[server.port]).await;
    job_when(&s, &quick, "completed").await;
    assert!(!findings_of(&s, &quick)
        .await
        .iter()
        .any(|f| f["templateId"] == "tls.deprecated-protocol"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_scan_stops_and_never_completes() {
    let s = Setup::start(Backend::Sqlite, false, &[PRIVATE]).await;
    let slow = targets::slow(Duration::from_secs(2)).await;
    let local = asset(&s, "127.0.0.1", "ip").await;
    let job = scan(&s, &local, "quick", &[slow.port]).await;
    job_when(&s, &job, "running").await;
    let c = s
        .post(&format!("/api/scan-jobs/{job}/cancel"), json!({}))
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = s.get(&format!("/api/scan-jobs/{job}")).await;
    assert_eq!(after.body["status"], "cancelled", "{}", after.body);
    assert!(after.body["counts"].is_null());
    // The slot is free again.
    let next = scan(&s, &local, "quick", &[slow.port]).await;
    assert_ne!(next, job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificate_chains_and_expiry_are_judged() {
    use chrono::Datelike;
    let soon = chrono::Utc::now() + chrono::Duration::days(10);
    let until = (soon.year(), soon.month() as u8, soon.day() as u8);
    // Issued by an unknown CA to this very address, expiring in ten days.
    let issued = targets::issued_cert(&["127.0.0.1"], until);
    let https = targets::http(
        Some(&issued),
        Arc::new(|_| {
            page(
                200,
                &[
                    ("Strict-Transport-Security", "max-age=31536000"),
                    ("Content-Security-Policy", "default-src 'self'"),
                    ("X-Frame-Options", "DENY"),
                    ("X-Content-Type-Options", "nosniff"),
                ],
                "ok",
            )
        }),
    )
    .await;
    let s = Setup::start(Backend::Sqlite, false, &[PRIVATE]).await;
    let local = asset(&s, "127.0.0.1", "ip").await;
    let job = scan(&s, &local, "quick", &[https.port]).await;
    job_when(&s, &job, "completed").await;
    let mut templates: Vec<String> = findings_of(&s, &job)
        .await
        .iter()
        .map(|f| f["templateId"].as_str().unwrap().to_string())
        .collect();
    templates.sort();
    assert_eq!(templates, vec!["tls.expiring-cert", "tls.untrusted-chain"]);
    let health = s.get(&format!("/api/assets/{local}/health")).await;
    let detail = health.body["services"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("HTTP 200") && detail.contains("TLSv1_3"),
        "{detail}"
    );
}

async fn two_processes_share_the_scans(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[PRIVATE, ("EASM_SCAN_WORKERS", "1")]).await;
    let _second = s.deliver();
    let slow = targets::slow(Duration::from_secs(5)).await;
    let ip = asset(&s, "127.0.0.1", "ip").await;
    let url = asset(&s, &format!("http://127.0.0.1:{}/", slow.port), "url").await;
    let mut jobs = vec![];
    for a in [&ip, &url] {
        for profile in ["quick", "standard"] {
            jobs.push(scan(&s, a, profile, &[slow.port]).await);
        }
    }
    for job in &jobs {
        let done = job_when(&s, job, "completed").await;
        assert_eq!(done["attempts"], 1, "{done}");
    }
    let started = s.get("/api/events?type=scan.started&limit=100").await;
    let workers: std::collections::HashSet<String> = started.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["workerId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(started.body["items"].as_array().unwrap().len(), 4);
    assert_eq!(workers.len(), 2, "both processes scanned: {workers:?}");
}
