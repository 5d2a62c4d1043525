//! Webhook delivery end to end: `easm serve` / `easm deliver` as processes, real receivers on
//! 127.0.0.1, in embedded mode (SQLite, PostgreSQL) and with NATS JetStream (PostgreSQL and a
//! nats-server of the test's own). Every test runs on all three.

use crate::helpers::*;
use crate::on_every_transport;
use crate::receiver::Receiver;
use easm_api::AppState;
use easm_domain::Plan;
use easm_events::OrgId;
use easm_store::Db;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

on_every_transport!(
    deliveries_are_signed_retried_and_logged,
    a_python_receiver_verifies_every_delivery,
    failed_deliveries_are_retried_by_hand_and_recovered,
    a_scheduled_retry_survives_a_restart,
    two_processes_deliver_each_message_once,
    a_slow_receiver_does_not_delay_a_fast_one,
    an_endpoint_failing_for_the_period_is_disabled,
    addresses_are_checked_again_at_connection,
    retry_after_and_the_endpoint_rate_limit_are_honoured,
    finding_events_reach_their_subscribers,
    risk_changes_reach_their_subscribers,
);

/// PostgreSQL only (SQLite's processes are not told): a commit in one process wakes the outbox's
/// drain in the process that holds it, with idle looks a minute apart.
mod a_commit_in_one_process_wakes_the_outbox_of_another {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        super::a_commit_in_one_process_wakes_the_outbox_of_another(false).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_nats() {
        super::a_commit_in_one_process_wakes_the_outbox_of_another(true).await
    }
}

async fn a_commit_in_one_process_wakes_the_outbox_of_another(nats: bool) {
    let s = Setup::start(Backend::Postgres, nats, &[("EASM_OUTBOX_POLL", "60s")]).await;
    let receiver = Receiver::start().await;
    // Written through the first process, which holds the outbox's lease (5 s) and renews it
    // as it drains this commit.
    s.webhook(&receiver.url, &["asset.added"]).await;
    let second = start_easm(
        &s.store,
        &["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"],
        &s.env,
    );
    let group = s.post("/api/groups", json!({"name": "told"})).await.id();
    let written = s
        .http
        .post(second.url(&format!("/api/groups/{group}/assets")))
        .header("X-API-Key", &s.key)
        .json(&json!({"value": "told.example.com", "type": "domain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), StatusCode::CREATED);
    // The first process looks again in a minute, and nothing wakes the second once its own
    // commit found the lease taken: only the notice brings the event over well inside it.
    let got = receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(got[0].json()["data"]["value"], "told.example.com");
}

/// JetStream only: NATS stops while events are committed and starts again; every one arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_outage_loses_nothing() {
    let mut s = Setup::start(Backend::Postgres, true, &[]).await;
    let receiver = Receiver::start().await;
    s.webhook(&receiver.url, &["asset.added"]).await;
    s.assets(2).await;
    receiver.wait_for(2, WAIT).await;
    let (port, dir) = s.nats.take().unwrap().stop();
    s.assets(3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        receiver.received().len(),
        2,
        "nothing can flow while NATS is down"
    );
    s.nats = Some(NatsServer::start_on(port, dir));
    let got = receiver.wait_for(5, WAIT).await;
    let mut unique = ids(&got);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5);
}

pub(crate) const WAIT: Duration = Duration::from_secs(30);

pub(crate) struct Setup {
    pub(crate) store: TestStore,
    pub(crate) nats: Option<NatsServer>,
    pub(crate) server: Option<EasmProcess>,
    pub(crate) org: OrgId,
    pub(crate) key: String,
    pub(crate) http: reqwest::Client,
    pub(crate) env: Vec<(&'static str, String)>,
}

impl Setup {
    /// A store with an organization, and `easm serve` on it with `env` added to the defaults
    /// (private targets allowed, retries after 1 s and 1 s).
    pub(crate) async fn start(b: Backend, nats: bool, env: &[(&'static str, &str)]) -> Setup {
        let store = TestStore::new(b).await;
        let db = Db::connect(&store.config).await.unwrap();
        let (org, key) = AppState::new(db.clone())
            .commands
            .create_org(&system_meta(), "Deliveries", Plan::Enterprise)
            .await
            .unwrap();
        db.close().await;
        let nats = nats.then(NatsServer::start);
        let mut all: Vec<(&'static str, String)> = vec![
            ("EASM_WEBHOOK_ALLOW_PRIVATE", "true".into()),
            ("EASM_WEBHOOK_RETRY_SCHEDULE", "1s,1s".into()),
        ];
        if let Some(n) = &nats {
            all.push(("EASM_NATS_URL", n.url()));
        }
        for (k, v) in env {
            all.retain(|(name, _)| name != k);
            all.push((k, v.to_string()));
        }
        let mut s = Setup {
            store,
            nats,
            server: None,
            org,
            key: key.secret,
            http: reqwest::Client::new(),
            env: all,
        };
        s.restart();
        s
    }

    /// Start `easm serve` (again).
    pub(crate) fn restart(&mut self) {
        self.server = Some(start_easm(
            &self.store,
            &["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"],
            &self.env,
        ));
    }

    pub(crate) fn deliver(&self) -> EasmProcess {
        start_easm(&self.store, &["deliver"], &self.env)
    }

    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let url = self.server.as_ref().expect("serve runs").url(path);
        let mut req = self
            .http
            .request(method, url)
            .header("X-API-Key", &self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await.unwrap()).await
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    /// A new endpoint; returns (id, secret).
    pub(crate) async fn webhook(&self, url: &str, events: &[&str]) -> (String, String) {
        let a = self
            .post("/api/webhooks", json!({"url": url, "events": events}))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        (a.id(), a.body["secret"].as_str().unwrap().to_string())
    }

    /// The asset `127.0.0.1` in a new group, a quick scan job of it, and `findings::NUCLEI`
    /// imported under that job; returns (asset, job).
    pub(crate) async fn nuclei_results(&self) -> (String, String) {
        let (asset, job) = self.scan_job("quick").await;
        let imported = self.import(&job, crate::findings::NUCLEI.to_string()).await;
        assert!(imported.status().is_success());
        (asset, job)
    }

    /// Results imported under `job`: the server's answer.
    pub(crate) async fn import(&self, job: &str, results: String) -> reqwest::Response {
        let url = self
            .server
            .as_ref()
            .unwrap()
            .url(&format!("/api/scan-jobs/{job}/results"));
        self.http
            .post(url)
            .header("X-API-Key", &self.key)
            .body(results)
            .send()
            .await
            .unwrap()
    }

    /// The asset `127.0.0.1` in a new group and a scan job of it with `profile`: (asset, job).
    pub(crate) async fn scan_job(&self, profile: &str) -> (String, String) {
        let g = self
            .post(
                "/api/groups",
                json!({"name": uuid::Uuid::new_v4().to_string()}),
            )
            .await
            .id();
        let asset = self
            .post(
                &format!("/api/groups/{g}/assets"),
                json!({"value": "127.0.0.1", "type": "ip"}),
            )
            .await
            .id();
        let job = self
            .post(
                "/api/scan-jobs",
                json!({"asset_id": asset, "profile": profile}),
            )
            .await
            .id();
        (asset, job)
    }

    /// `n` new assets in a new group: `n` asset.added events (and one group.created).
    pub(crate) async fn assets(&self, n: usize) -> Vec<String> {
        let g = self
            .post(
                "/api/groups",
                json!({"name": uuid::Uuid::new_v4().to_string()}),
            )
            .await;
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);
        let values: Vec<String> = (0..n)
            .map(|i| format!("h{i}-{}.example.com", uuid::Uuid::new_v4().simple()))
            .collect();
        let items: Vec<Value> = values
            .iter()
            .map(|v| json!({"value": v, "type": "domain"}))
            .collect();
        let a = self
            .post(
                &format!("/api/groups/{}/assets/bulk", g.id()),
                json!({"assets": items}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        values
    }

    /// The endpoint's deliveries once `done` holds for them (panics after a while).
    pub(crate) async fn deliveries_when(
        &self,
        hook: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let a = self
                .get(&format!("/api/webhooks/{hook}/deliveries?perPage=100"))
                .await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            let items = a.body["items"].as_array().unwrap().clone();
            if done(&items) {
                return items;
            }
            assert!(Instant::now() < deadline, "deliveries now: {items:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub(crate) fn all_status(items: &[Value], n: usize, status: &str) -> bool {
    items.len() == n && items.iter().all(|d| d["status"] == status)
}

fn ids(received: &[crate::receiver::Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.header("webhook-id").to_string())
        .collect()
}

async fn deliveries_are_signed_retried_and_logged(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[]).await;
    let receiver = Receiver::start().await;
    receiver.fail_first(2);
    let (hook, secret) = s.webhook(&receiver.url, &["asset.added"]).await;
    let values = s.assets(1).await;

    // Two failures, then success: the same message three times.
    let got = receiver.wait_for(3, WAIT).await;
    let first = &got[0];
    let id = first.header("webhook-id");
    assert!(id.starts_with("evt_"), "{id}");
    for r in &got {
        assert_eq!(r.header("webhook-id"), id);
        assert_eq!(r.header("idempotency-key"), id);
        assert!(r.header("user-agent").starts_with("easm-webhooks/"));
        assert_eq!(r.header("content-type"), "application/json");
        let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert!((ts - chrono::Utc::now().timestamp()).abs() < 60);
        assert_eq!(
            r.header("webhook-signature"),
            easm_delivery::sign(std::slice::from_ref(&secret), id, ts, r.body.as_bytes()).unwrap()
        );
        let body = r.json();
        assert_eq!(body["type"], "asset.added");
        assert_eq!(body["data"]["value"], values[0].as_str());
        assert_eq!(body["data"]["orgId"], s.org.as_str());
        assert_eq!(body["data"]["payloadVersion"], 1);
    }
    // Not subscribed: group.created was never sent.
    let items = s
        .deliveries_when(&hook, |d| all_status(d, 1, "succeeded"))
        .await;
    let d = &items[0];
    assert_eq!(d["id"], id);
    assert_eq!(d["eventType"], "asset.added");
    assert_eq!(d["attemptCount"], 3);
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| a["statusCode"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![503, 503, 200]
    );
    assert_eq!(attempts[0]["response"], "try later");
    assert_eq!(attempts[0]["error"], "HTTP 503");
    assert!(attempts
        .iter()
        .all(|a| a["durationMs"].as_i64().unwrap() >= 0));
    // The retries waited about the schedule (1 s with 20% jitter).
    let at = |i: usize| {
        chrono::DateTime::parse_from_rfc3339(attempts[i]["at"].as_str().unwrap()).unwrap()
    };
    let gap = (at(1) - at(0)).num_milliseconds();
    assert!((700..3000).contains(&gap), "{gap} ms between attempts");
    assert_eq!(receiver.received().len(), 3);

    let one = s
        .get(&format!("/api/webhooks/{hook}/deliveries/{id}"))
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["attemptCount"], 3);
    let failed = s
        .get(&format!("/api/webhooks/{hook}/deliveries?status=failed"))
        .await;
    assert_eq!(failed.body["total"], 0);
    let bad = s
        .get(&format!("/api/webhooks/{hook}/deliveries?status=lost"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["field"], "status");
    let missing = s.get("/api/webhooks/nope/deliveries").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// The receiver our users would write: Python with the `standardwebhooks` package. It verifies
/// an event, a test message, and a message signed during a secret rotation with the old secret.
async fn a_python_receiver_verifies_every_delivery(b: Backend, nats: bool) {
    use std::io::{BufRead, BufReader};
    let s = Setup::start(b, nats, &[]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (hook, secret) = s
        .webhook(&format!("http://127.0.0.1:{port}/"), &["asset.*"])
        .await;
    let mut python = std::process::Command::new("python3")
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/receiver.py"),
            &port.to_string(),
            &secret,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let stdout = python.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(serde_json::from_str(&line).unwrap());
        }
    });
    let next = || loop {
        let v = rx.recv_timeout(WAIT).expect("receiver output");
        if v.get("listening").is_none() {
            return v;
        }
    };
    s.assets(1).await;
    let first = next();
    let test = s
        .post(&format!("/api/webhooks/{hook}/test"), json!({}))
        .await;
    assert_eq!(test.status, StatusCode::OK, "{}", test.body);
    // The receiver's answer comes back with it.
    assert_eq!(test.body["attempts"][0]["statusCode"], 204, "{}", test.body);
    let second = next();
    // A new secret signs from now on; the old one still signs for 24 hours, so a receiver
    // that has not switched yet keeps verifying.
    let rotated = s
        .post(&format!("/api/webhooks/{hook}/rotate-secret"), json!({}))
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    s.assets(1).await;
    let third = next();
    let _ = python.kill();
    let _ = python.wait();
    for (line, ty) in [
        (&first, "asset.added"),
        (&second, "webhook.test"),
        (&third, "asset.added"),
    ] {
        assert_eq!(line["verified"], true, "{line}");
        assert_eq!(line["type"], ty);
        assert_eq!(line["idempotencyKey"], line["id"]);
        assert!(line["userAgent"]
            .as_str()
            .unwrap()
            .starts_with("easm-webhooks/"));
    }
    assert_eq!(second["id"], test.body["id"]);
    s.deliveries_when(&hook, |d| all_status(d, 3, "succeeded"))
        .await;
}

async fn failed_deliveries_are_retried_by_hand_and_recovered(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[]).await;
    let receiver = Receiver::start().await;
    receiver.fail_always(true);
    let (hook, _) = s.webhook(&receiver.url, &["asset.added"]).await;
    let before = chrono::Utc::now().to_rfc3339();
    s.assets(1).await;
    // First attempt and the two retries of the schedule, then a dead letter.
    let items = s
        .deliveries_when(&hook, |d| all_status(d, 1, "failed"))
        .await;
    let id = items[0]["id"].as_str().unwrap().to_string();
    assert_eq!(items[0]["attemptCount"], 3);
    assert_eq!(items[0]["lastStatusCode"], 503);
    assert!(items[0]["nextAttemptAt"].is_null());
    let failed = s
        .get(&format!("/api/webhooks/{hook}/deliveries?status=failed"))
        .await;
    assert_eq!(failed.body["total"], 1);

    receiver.fail_always(false);
    let retry = s
        .post(
            &format!("/api/webhooks/{hook}/deliveries/{id}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{}", retry.body);
    assert_eq!(retry.body["status"], "pending");
    let items = s
        .deliveries_when(&hook, |d| all_status(d, 1, "succeeded"))
        .await;
    assert_eq!(items[0]["attemptCount"], 4);
    assert_eq!(ids(&receiver.received()), vec![id.clone(); 4]);
    let unknown = s
        .post(
            &format!("/api/webhooks/{hook}/deliveries/nope/retry"),
            json!({}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // A failed period, recovered in one call: one attempt each, no schedule.
    receiver.fail_always(true);
    s.assets(2).await;
    s.deliveries_when(&hook, |d| {
        d.len() == 3 && d.iter().filter(|x| x["status"] == "failed").count() == 2
    })
    .await;
    receiver.fail_always(false);
    let no_since = s
        .post(&format!("/api/webhooks/{hook}/recover"), json!({}))
        .await;
    assert_eq!(no_since.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_since.body["field"], "since");
    let since = before.replace('+', "%2B");
    let rec = s
        .post(
            &format!("/api/webhooks/{hook}/recover?since={since}"),
            json!({}),
        )
        .await;
    assert_eq!(rec.status, StatusCode::ACCEPTED, "{}", rec.body);
    assert_eq!(rec.body["requeued"], 2);
    let items = s
        .deliveries_when(&hook, |d| all_status(d, 3, "succeeded"))
        .await;
    let recovered: Vec<_> = items.iter().filter(|d| d["id"] != id.as_str()).collect();
    assert!(recovered.iter().all(|d| d["attemptCount"] == 4));
}

async fn a_scheduled_retry_survives_a_restart(b: Backend, nats: bool) {
    let mut s = Setup::start(b, nats, &[("EASM_WEBHOOK_RETRY_SCHEDULE", "3s")]).await;
    let receiver = Receiver::start().await;
    receiver.fail_first(1);
    let (hook, _) = s.webhook(&receiver.url, &["asset.added"]).await;
    s.assets(1).await;
    let first = receiver.wait_for(1, WAIT).await;
    s.deliveries_when(&hook, |d| d.len() == 1 && d[0]["attemptCount"] == 1)
        .await;
    // The process dies while the retry waits: it exists only in the database.
    s.server.take().unwrap().kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.restart();
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(
        ids(&got),
        vec![first[0].header("webhook-id").to_string(); 2]
    );
    let items = s
        .deliveries_when(&hook, |d| all_status(d, 1, "succeeded"))
        .await;
    assert_eq!(items[0]["attemptCount"], 2);
}

async fn two_processes_deliver_each_message_once(b: Backend, nats: bool) {
    let mut s = Setup::start(b, nats, &[]).await;
    let deliver = s.deliver();
    let receiver = Receiver::start().await;
    s.webhook(&receiver.url, &["asset.added"]).await;
    s.assets(40).await;
    receiver.wait_for(40, WAIT).await;
    // Both processes took part; give any duplicate time to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = ids(&receiver.received());
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &got {
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(counts.len(), 40);
    assert!(counts.values().all(|n| *n == 1), "duplicates: {counts:?}");

    // With the API process gone, `easm deliver` alone carries events committed by others
    // (relay and fan-out leases move over to it).
    s.server.take().unwrap().kill();
    let db = Db::connect(&s.store.config).await.unwrap();
    let service = AppState::new(db.clone()).commands;
    let group = service
        .create_group(&system_meta(), &s.org, "written while only deliver runs")
        .await
        .unwrap();
    service
        .add_assets(
            &system_meta(),
            &s.org,
            Plan::Enterprise,
            &group,
            &[easm_domain::NewAsset {
                value: "late.example.com".into(),
                asset_type: "domain".into(),
                tags: None,
                criticality: None,
            }],
        )
        .await
        .unwrap();
    db.close().await;
    let got = receiver.wait_for(41, WAIT).await;
    assert_eq!(got[40].json()["data"]["value"], "late.example.com");
    drop(deliver);
}

async fn a_slow_receiver_does_not_delay_a_fast_one(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[]).await;
    let slow = Receiver::start().await;
    slow.answer_after(Duration::from_secs(3));
    let fast = Receiver::start().await;
    s.webhook(&slow.url, &["asset.added"]).await;
    s.webhook(&fast.url, &["asset.added"]).await;
    let started = Instant::now();
    s.assets(24).await;
    fast.wait_for(24, WAIT).await;
    // The slow endpoint takes 3 s per request, at most 8 at a time: 24 need 9 s or more.
    assert!(
        slow.received().len() < 24 || started.elapsed() > Duration::from_secs(9),
        "the fast endpoint waited for the slow one"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    slow.wait_for(24, WAIT).await;
}

async fn an_endpoint_failing_for_the_period_is_disabled(b: Backend, nats: bool) {
    let s = Setup::start(
        b,
        nats,
        &[
            ("EASM_WEBHOOK_RETRY_SCHEDULE", "1s,1s,1s,1s,1s,1s"),
            ("EASM_WEBHOOK_DISABLE_AFTER", "2s"),
        ],
    )
    .await;
    let broken = Receiver::start().await;
    broken.fail_always(true);
    let watcher = Receiver::start().await;
    let (hook, _) = s.webhook(&broken.url, &["asset.added"]).await;
    s.webhook(&watcher.url, &["endpoint.disabled"]).await;
    s.assets(1).await;
    let got = watcher.wait_for(1, WAIT).await;
    let body = got[0].json();
    assert_eq!(body["type"], "endpoint.disabled");
    assert_eq!(body["data"]["webhookId"], hook.as_str());
    assert!(body["data"]["failingSince"].as_str().is_some());
    let view = s.get(&format!("/api/webhooks/{hook}")).await;
    assert_eq!(view.body["enabled"], false);
    // Three or more failed attempts spanned the 2 s; nothing is sent while it is disabled.
    let n = broken.received().len();
    assert!(n >= 3, "{n} attempts");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(broken.received().len() <= n + 1);
}

/// An endpoint created while private targets were allowed, served by a process that does not
/// allow them: the name resolves to loopback, so the connection is refused, without retries.
async fn addresses_are_checked_again_at_connection(b: Backend, nats: bool) {
    let mut s = Setup::start(b, nats, &[]).await;
    let receiver = Receiver::start().await;
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook");
    let (hook, _) = s
        .webhook(&format!("https://localhost:{port}/hook"), &["asset.added"])
        .await;
    s.server.take().unwrap().kill();
    s.env.retain(|(k, _)| *k != "EASM_WEBHOOK_ALLOW_PRIVATE");
    s.restart();
    s.assets(1).await;
    let items = s
        .deliveries_when(&hook, |d| all_status(d, 1, "failed"))
        .await;
    assert_eq!(items[0]["attemptCount"], 1);
    let error = items[0]["lastError"].as_str().unwrap();
    assert!(error.contains("not public"), "{error}");
    assert!(receiver.received().is_empty());
}

async fn retry_after_and_the_endpoint_rate_limit_are_honoured(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[("EASM_WEBHOOK_RATE", "4")]).await;
    // 429 with Retry-After: 3 outlasts the 1 s of the schedule.
    let throttled = Receiver::start().await;
    throttled.fail_first(1);
    throttled.throttle_with("3");
    let (hook, _) = s.webhook(&throttled.url, &["asset.added"]).await;
    s.assets(1).await;
    throttled.wait_for(2, WAIT).await;
    let at = throttled.arrivals();
    let gap = at[1] - at[0];
    assert!(gap >= Duration::from_millis(2900), "retried after {gap:?}");
    let items = s
        .deliveries_when(&hook, |d| all_status(d, 1, "succeeded"))
        .await;
    assert_eq!(items[0]["attempts"][0]["statusCode"], 429);
    s.call(Method::DELETE, &format!("/api/webhooks/{hook}"), None)
        .await;

    // At most 4 attempts a second start for one endpoint: 9 messages need 2 s or more.
    let limited = Receiver::start().await;
    s.webhook(&limited.url, &["asset.added"]).await;
    s.assets(9).await;
    let got = limited.wait_for(9, WAIT).await;
    assert_eq!(got.len(), 9);
    let at = limited.arrivals();
    let span = at[8] - at[0];
    assert!(
        span >= Duration::from_millis(1900),
        "9 attempts within {span:?}"
    );
}

async fn finding_events_reach_their_subscribers(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[]).await;
    let receiver = Receiver::start().await;
    s.webhook(&receiver.url, &["finding.*"]).await;
    let (_, job) = s.nuclei_results().await;
    let got = receiver.wait_for(2, WAIT).await;
    let bodies: Vec<Value> = got.iter().map(|r| r.json()).collect();
    assert!(bodies.iter().all(|b| b["type"] == "finding.new"));
    let critical = bodies
        .iter()
        .find(|b| b["data"]["severity"] == "critical")
        .expect("the critical finding");
    assert_eq!(critical["data"]["templateId"], "CVE-2021-41773");
    assert_eq!(critical["data"]["scanJobId"], job.as_str());
    let id = critical["data"]["findingId"].as_str().unwrap();
    let resolved = s
        .call(
            Method::PATCH,
            &format!("/api/findings/{id}"),
            Some(json!({"status": "resolved"})),
        )
        .await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.body);
    let got = receiver.wait_for(3, WAIT).await;
    let last = got[2].json();
    assert_eq!(last["type"], "finding.resolved");
    assert_eq!(last["data"]["from"], "open");
}

async fn risk_changes_reach_their_subscribers(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[]).await;
    let receiver = Receiver::start().await;
    s.webhook(&receiver.url, &["risk.changed"]).await;
    let (asset, _) = s.nuclei_results().await;
    let got = receiver.wait_for(1, WAIT).await;
    let first = got[0].json();
    assert_eq!(first["type"], "risk.changed");
    assert_eq!(first["data"]["assetId"], asset.as_str());
    assert_eq!(first["data"]["score"], 40, "one critical finding: {first}");
    assert_eq!(first["data"]["grade"], "D");
    assert_eq!(first["data"]["previousGrade"], "A");
    assert_eq!(first["data"]["breakdown"]["critical"], 1);
    let risk = s.get(&format!("/api/assets/{asset}/risk")).await;
    assert_eq!(risk.body["score"], 40);

    let critical = s.get("/api/findings?severity=critical").await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resolved = s
        .call(
            Method::PATCH,
            &format!("/api/findings/{critical}"),
            Some(json!({"status": "resolved"})),
        )
        .await;
    assert_eq!(resolved.status, StatusCode::OK);
    // Notes alone move nothing.
    s.call(
        Method::PATCH,
        &format!("/api/findings/{critical}"),
        Some(json!({"notes": "fixed upstream"})),
    )
    .await;
    let got = receiver.wait_for(2, WAIT).await;
    let second = got[1].json();
    assert_eq!(second["data"]["score"], 0);
    assert_eq!(second["data"]["grade"], "A");
    assert_eq!(second["data"]["previousScore"], 40);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 2);
}
