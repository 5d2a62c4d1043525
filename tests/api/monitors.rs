//! Monitors and alerts: the API's validation, roles, plan limit and manual runs on both
//! backends; and end to end through `easm serve`, a monitor's scheduled and manual scans of real
//! servers on 127.0.0.1 raising alerts that are delivered as signed `alert.created` webhooks and
//! acknowledged and resolved.

use crate::delivery::{Setup, WAIT};
use crate::helpers::{Answer, Backend, Tenant};
use crate::receiver::Receiver;
use crate::targets;
use crate::{on_both_backends, on_sqlite_and_nats};
use easm_domain::{Plan, Role};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

on_both_backends!(
    monitor_requests_are_validated_and_need_write_access,
    each_monitor_takes_one_of_the_plans_scheduled_scans,
    a_monitors_schedule_changes_but_its_scope_and_ports_do_not,
    a_run_by_hand_scans_what_it_can_and_says_why_it_skipped,
    a_monitor_of_a_removed_asset_runs_and_says_so,
    alerts_start_empty_and_monitors_rebuild_from_the_log,
);
on_sqlite_and_nats!(a_monitor_scans_on_schedule_and_alerts_on_change);

/// A free organization with the group `Edge` holding an IP and a CIDR range.
struct Edge {
    t: Tenant,
    ip: String,
}

impl Edge {
    async fn new(b: Backend) -> Edge {
        let t = Tenant::new(b, Plan::Free, "Edge").await;
        let ip = t.asset("192.0.2.10", "ip").await;
        t.asset("198.51.100.0/24", "cidr").await;
        Edge { t, ip }
    }

    async fn create(&self, body: Value) -> Answer {
        self.t.post("/api/monitors", body).await
    }

    async fn run(&self, monitor: &str) -> Answer {
        self.t
            .post(&format!("/api/monitors/{monitor}/run"), json!({}))
            .await
    }
}

async fn monitor_requests_are_validated_and_need_write_access(b: Backend) {
    let s = Edge::new(b).await;
    let (ip, group) = (&s.ip, &s.t.group);
    for (body, field) in [
        (json!({}), "assetId"),
        (json!({"assetId": ip, "groupId": group}), "assetId"),
        (
            json!({"assetId": ip, "frequencyHours": 0}),
            "frequencyHours",
        ),
        (
            json!({"assetId": ip, "frequencyHours": 721}),
            "frequencyHours",
        ),
        (json!({"assetId": ip, "profile": "full"}), "profile"),
        (json!({"assetId": ip, "ports": [0]}), "ports"),
    ] {
        let a = s.create(body.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.body);
        assert!(
            a.body["error"].as_str().unwrap().contains(field),
            "{}",
            a.body
        );
    }
    let missing = s.create(json!({"assetId": "nope"})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let own_viewer = s.t.key_of(Role::Viewer).await;
    let denied =
        s.t.app
            .post(&own_viewer, "/api/monitors", json!({"assetId": ip}))
            .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
}

/// Free allows 2 scheduled scans; deleting a monitor frees its slot.
async fn each_monitor_takes_one_of_the_plans_scheduled_scans(b: Backend) {
    let s = Edge::new(b).await;
    let m = s
        .create(json!({"assetId": s.ip, "frequencyHours": 6, "ports": [443, 80]}))
        .await;
    assert_eq!(m.status, StatusCode::CREATED, "{}", m.body);
    assert_eq!(m.body["scope"], "asset");
    assert_eq!(m.body["ports"], json!([80, 443]));
    assert_eq!(m.body["profile"], "quick");
    assert_eq!(m.body["runCount"], 0);
    assert_eq!(m.body["nextRunAt"], m.body["createdAt"], "due at once");
    let monitor = m.id();
    let g = s.create(json!({"groupId": s.t.group})).await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);
    assert_eq!(
        (g.body["scope"].as_str(), g.body["frequencyHours"].as_i64()),
        (Some("group"), Some(24))
    );
    let third = s.create(json!({"assetId": s.ip})).await;
    assert_eq!(third.status, StatusCode::PAYMENT_REQUIRED, "{}", third.body);
    let path = format!("/api/monitors/{monitor}");
    assert_eq!(s.t.delete(&path).await.status, StatusCode::NO_CONTENT);
    assert_eq!(s.t.get(&path).await.status, StatusCode::NOT_FOUND);
    let again = s.create(json!({"assetId": s.ip})).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    let list = s.t.get("/api/monitors").await;
    assert_eq!(list.body["total"], 2);
    let own_viewer = s.t.key_of(Role::Viewer).await;
    assert_eq!(
        s.t.app.get(&own_viewer, "/api/monitors").await.body["total"],
        2
    );
    let stranger = s.t.app.org(Plan::Free).await.0;
    let viewer = s.t.app.key(&stranger, Role::Viewer).await;
    assert_eq!(
        s.t.app
            .get(&viewer, &format!("/api/monitors/{}", g.id()))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

/// Changes: what differs is recorded; scope and ports are fixed.
async fn a_monitors_schedule_changes_but_its_scope_and_ports_do_not(b: Backend) {
    let s = Edge::new(b).await;
    let path = format!(
        "/api/monitors/{}",
        s.create(json!({"assetId": s.ip})).await.id()
    );
    let off =
        s.t.patch(&path, json!({"enabled": false, "frequencyHours": 12}))
            .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert_eq!(
        (
            off.body["enabled"].as_bool(),
            off.body["nextRunAt"].as_str()
        ),
        (Some(false), None)
    );
    assert_eq!(off.body["frequencyHours"], 12);
    for body in [
        json!({"ports": [22]}),
        json!({"groupId": s.t.group}),
        json!({"profile": "huge"}),
    ] {
        let a = s.t.patch(&path, body.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.body);
    }
}

/// A run by hand scans the group's IP and skips its CIDR range, with the reason; no worker runs
/// here, so the first job is still queued when a second run skips the asset.
async fn a_run_by_hand_scans_what_it_can_and_says_why_it_skipped(b: Backend) {
    let s = Edge::new(b).await;
    let g = s.create(json!({"groupId": s.t.group})).await.id();
    let run = s.run(&g).await;
    assert_eq!(run.status, StatusCode::ACCEPTED, "{}", run.body);
    assert_eq!(run.body["scanJobIds"].as_array().unwrap().len(), 1);
    let skipped = run.body["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0]["reason"].as_str().unwrap().contains("CIDR"));
    let job = run.body["scanJobIds"][0].as_str().unwrap();
    let scan = s.t.get(&format!("/api/scan-jobs/{job}")).await;
    assert_eq!(
        (scan.body["assetId"].as_str(), scan.body["profile"].as_str()),
        (Some(s.ip.as_str()), Some("quick"))
    );
    let after = s.t.get(&format!("/api/monitors/{g}")).await.body;
    assert_eq!(after["runCount"], 1);
    assert_eq!(after["lastScanJobIds"], json!([job]));
    let last = chrono::DateTime::parse_from_rfc3339(after["lastRunAt"].as_str().unwrap()).unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(after["nextRunAt"].as_str().unwrap()).unwrap();
    assert_eq!(next - last, chrono::Duration::hours(24));
    let second = s.run(&g).await;
    assert_eq!(second.body["scanJobIds"], json!([]));
    assert!(second.body["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("already queued"));
}

async fn a_monitor_of_a_removed_asset_runs_and_says_so(b: Backend) {
    let s = Edge::new(b).await;
    s.create(json!({"assetId": s.ip})).await;
    let g = s.create(json!({"groupId": s.t.group})).await.id();
    let lone = s.t.asset("192.0.2.11", "ip").await;
    let gone = s.create(json!({"assetId": lone})).await;
    assert_eq!(gone.status, StatusCode::PAYMENT_REQUIRED, "free holds 2");
    s.t.delete(&format!("/api/monitors/{g}")).await;
    let gone = s.create(json!({"assetId": lone})).await.id();
    s.t.delete(&format!("/api/assets/{lone}")).await;
    let run = s.run(&gone).await;
    assert_eq!(run.body["skipped"][0]["reason"], "the asset was removed");
}

/// Alerts: empty, filters checked, unknown ones not found; and the read models of monitors
/// rebuild from the log to the same rows.
async fn alerts_start_empty_and_monitors_rebuild_from_the_log(b: Backend) {
    let s = Edge::new(b).await;
    let alerts = s.t.get("/api/monitors/alerts").await;
    assert_eq!(
        (alerts.status, alerts.body["total"].as_i64()),
        (StatusCode::OK, Some(0))
    );
    let bad = s.t.get("/api/monitors/alerts?status=closed").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let ack =
        s.t.post("/api/monitors/alerts/nope/acknowledge", json!({}))
            .await;
    assert_eq!(ack.status, StatusCode::NOT_FOUND);

    let g = s.create(json!({"groupId": s.t.group})).await.id();
    s.run(&g).await;
    let rows = s.t.app.state.read().dump().await.unwrap();
    assert!(rows.iter().any(|r| r.starts_with("rm_monitors|")));
    s.t.app.state.commands.projector().rebuild().await.unwrap();
    assert_eq!(s.t.app.state.read().dump().await.unwrap(), rows);
}

/// The monitor's record once `done` holds of it.
async fn monitor_when(s: &Setup, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = s.get(&format!("/api/monitors/{id}")).await;
        assert_eq!(m.status, StatusCode::OK, "{}", m.body);
        if done(&m.body) {
            return m.body;
        }
        assert!(
            Instant::now() < deadline,
            "monitor never got there: {}",
            m.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn completed(s: &Setup, job: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let j = s.get(&format!("/api/scan-jobs/{job}")).await;
        match j.body["status"].as_str() {
            Some("completed") => return,
            Some("queued" | "running") => {}
            other => panic!("job ended {other:?}: {}", j.body),
        }
        assert!(Instant::now() < deadline, "job never completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A port free now, for a server started later.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn a_monitor_scans_on_schedule_and_alerts_on_change(b: Backend, nats: bool) {
    let s = Setup::start(
        b,
        nats,
        &[
            ("EASM_SCAN_ALLOW_PRIVATE", "true"),
            ("EASM_MONITOR_INTERVAL", "200ms"),
        ],
    )
    .await;
    let receiver = Receiver::start().await;
    s.webhook(&receiver.url, &["alert.created"]).await;
    let web = targets::http(
        None,
        Arc::new(|_| (200, vec![], "<title>Shop</title>".to_string())),
    )
    .await;
    let (open, later) = (web.port, free_port());
    let g = s.post("/api/groups", json!({"name": "Edge"})).await;
    let asset = s
        .post(
            &format!("/api/groups/{}/assets", g.id()),
            json!({"value": "127.0.0.1", "type": "ip"}),
        )
        .await
        .id();
    let m = s
        .post(
            "/api/monitors",
            json!({"assetId": asset, "frequencyHours": 1, "ports": [open, later]}),
        )
        .await;
    assert_eq!(m.status, StatusCode::CREATED, "{}", m.body);
    let id = m.id();

    // The scheduler runs it at once, then not again within the hour.
    let ran = monitor_when(&s, &id, |m| m["runCount"] == 1).await;
    let first = ran["lastScanJobIds"][0].as_str().unwrap().to_string();
    completed(&s, &first).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        s.get(&format!("/api/monitors/{id}")).await.body["runCount"],
        1
    );
    // A first observation has nothing to compare with.
    assert_eq!(s.get("/api/monitors/alerts").await.body["total"], 0);

    // The web server goes away and an SSH-like service opens on the other port.
    drop(web);
    let ssh = tokio::net::TcpListener::bind(("127.0.0.1", later))
        .await
        .unwrap();
    let banner = tokio::spawn(async move {
        while let Ok((mut c, _)) = ssh.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = c.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
        }
    });
    let run = s.post(&format!("/api/monitors/{id}/run"), json!({})).await;
    assert_eq!(run.status, StatusCode::ACCEPTED, "{}", run.body);
    let second = run.body["scanJobIds"][0].as_str().unwrap().to_string();
    completed(&s, &second).await;
    banner.abort();

    let alerts = s.get(&format!("/api/monitors/alerts?monitorId={id}")).await;
    assert_eq!(alerts.body["total"], 2, "{}", alerts.body);
    let by_type = |t: &str| -> Value {
        alerts.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == t)
            .unwrap_or_else(|| panic!("no {t}: {}", alerts.body))
            .clone()
    };
    let new_port = by_type("new_port");
    assert_eq!(new_port["details"]["port"], later);
    assert_eq!(new_port["details"]["service"], "ssh");
    assert_eq!(new_port["severity"], "medium");
    assert_eq!(new_port["scanJobId"], second.as_str());
    assert_eq!(new_port["assetId"], asset.as_str());
    assert_eq!(new_port["status"], "open");
    let closed = by_type("port_closed");
    assert_eq!(closed["details"]["port"], open);
    assert_eq!(closed["severity"], "low");

    // Both reach the receiver, signed, as alert.created.
    let got = receiver.wait_for(2, WAIT).await;
    let mut delivered: Vec<String> = got
        .iter()
        .map(|r| {
            assert!(r.header("webhook-signature").starts_with("v1,"));
            let body = r.json();
            assert_eq!(body["type"], "alert.created");
            body["data"]["alertId"].as_str().unwrap().to_string()
        })
        .collect();
    delivered.sort();
    let mut ids = vec![
        new_port["id"].as_str().unwrap().to_string(),
        closed["id"].as_str().unwrap().to_string(),
    ];
    ids.sort();
    assert_eq!(delivered, ids);

    // Acknowledged (who and when recorded), then resolved, each once.
    let ack_path = format!(
        "/api/monitors/alerts/{}/acknowledge",
        new_port["id"].as_str().unwrap()
    );
    let ack = s.post(&ack_path, json!({"notes": "planned SSH"})).await;
    assert_eq!(ack.status, StatusCode::OK, "{}", ack.body);
    assert_eq!(ack.body["status"], "acknowledged");
    assert_eq!(ack.body["notes"], "planned SSH");
    assert!(ack.body["acknowledgedAt"].is_string() && ack.body["acknowledgedBy"].is_string());
    assert_eq!(
        s.post(&ack_path, json!({})).await.status,
        StatusCode::CONFLICT
    );
    let resolve = |a: &Value| format!("/api/monitors/alerts/{}/resolve", a["id"].as_str().unwrap());
    let done = s.post(&resolve(&new_port), json!({})).await;
    assert_eq!(
        (done.status, done.body["status"].as_str()),
        (StatusCode::OK, Some("resolved"))
    );
    assert_eq!(
        s.post(&resolve(&new_port), json!({})).await.status,
        StatusCode::CONFLICT
    );
    // Without a body too, from open.
    let closed_done = s.call(Method::POST, &resolve(&closed), None).await;
    assert_eq!(closed_done.status, StatusCode::OK, "{}", closed_done.body);
    assert_eq!(
        s.get("/api/monitors/alerts?status=open").await.body["total"],
        0
    );
    assert_eq!(
        s.get("/api/monitors/alerts?status=resolved").await.body["total"],
        2
    );
    assert_eq!(
        s.get("/api/monitors/alerts?type=port_closed").await.body["total"],
        1
    );
    assert_eq!(
        s.get("/api/monitors/alerts?severity=medium&status=resolved")
            .await
            .body["total"],
        1
    );
    let audit = s.get("/api/audit-log?action=alert.acknowledged").await;
    assert_eq!(audit.body["total"], 1, "{}", audit.body);
    assert_eq!(
        audit.body["items"][0]["resource"],
        json!({"type": "alert", "id": new_port["id"]})
    );
}
