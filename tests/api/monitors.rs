//! Monitors and alerts through the API, on both backends: validation, roles, the plan's limit,
//! manual runs, rebuilds (the alerts a monitor's scans raise are in `monitor_alerts.rs`).

use crate::helpers::{Answer, Backend, Tenant};
use crate::on_both_backends;
use easm_domain::{Plan, Role};
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(
    monitor_requests_are_validated_and_need_write_access,
    each_monitor_takes_one_of_the_plans_scheduled_scans,
    a_monitors_schedule_changes_but_its_scope_and_ports_do_not,
    a_run_by_hand_scans_what_it_can_and_says_why_it_skipped,
    a_monitor_of_a_removed_asset_runs_and_says_so,
    alerts_start_empty_and_monitors_rebuild_from_the_log,
);

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
