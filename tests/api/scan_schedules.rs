//! Scan schedules through the API: created for an asset or a group, changed, run by hand (their
//! scans caused by the schedule), deleted with their jobs kept, kept apart from monitors, counted
//! with them against the plan; and, with two `easm serve` processes, a due schedule runs once.

use crate::delivery::Setup;
use crate::helpers::{Backend, Tenant};
use crate::{on_both_backends, on_sqlite_and_nats};
use easm_domain::Plan;
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

on_both_backends!(scan_schedules_are_kept_apart_from_monitors_and_counted_with_them);
on_sqlite_and_nats!(a_due_schedule_runs_once_across_two_processes);

async fn scan_schedules_are_kept_apart_from_monitors_and_counted_with_them(b: Backend) {
    let t = Tenant::new(b, Plan::Free, "Edge").await;
    let ip = t.asset("192.0.2.10", "ip").await;
    for bad in [
        json!({"scheduleType": "asset", "assetId": ip, "frequencyDays": 0}),
        json!({"scheduleType": "asset", "assetId": ip, "frequencyDays": 91}),
        json!({"scheduleType": "host", "assetId": ip}),
        json!({"scheduleType": "group", "assetId": ip}),
        json!({"scheduleType": "asset", "assetId": ip, "profile": "full"}),
        json!({"scheduleType": "asset", "assetId": ip, "frequencyHours": 24}),
    ] {
        let a = t.post("/api/scan-schedules", bad.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}: {}", a.body);
    }
    let missing = t
        .post(
            "/api/scan-schedules",
            json!({"scheduleType": "asset", "assetId": "nope"}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let created = t
        .post(
            "/api/scan-schedules",
            json!({"scheduleType": "asset", "assetId": ip, "profile": "standard", "frequencyDays": 7}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.id();
    assert_eq!(created.body["scheduleType"], "asset");
    assert_eq!(created.body["assetId"], ip.as_str());
    assert_eq!(created.body["frequencyDays"], 7);
    assert_eq!(created.body["profile"], "standard");
    assert_eq!(created.body["enabled"], true);
    assert!(created.body["nextRunAt"].is_string());
    // A schedule is not a monitor, and the reverse.
    assert_eq!(t.get("/api/monitors").await.body["total"], 0);
    assert_eq!(
        t.get(&format!("/api/monitors/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let wrong = t.post(&format!("/api/monitors/{id}/run"), json!({})).await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);
    let monitor = t.post("/api/monitors", json!({"assetId": ip})).await;
    assert_eq!(monitor.status, StatusCode::CREATED);
    let m = monitor.id();
    assert_eq!(
        t.get(&format!("/api/scan-schedules/{m}")).await.status,
        StatusCode::NOT_FOUND
    );
    let list = t.get("/api/scan-schedules").await;
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.items_field("id"), [id.as_str()]);
    // The free plan's two scheduled scans are a monitor and a schedule now.
    let third = t
        .post(
            "/api/scan-schedules",
            json!({"scheduleType": "asset", "assetId": ip}),
        )
        .await;
    assert_eq!(third.status, StatusCode::PAYMENT_REQUIRED, "{}", third.body);
    let path = format!("/api/scan-schedules/{id}");
    let changed = t
        .patch(
            &path,
            json!({"frequencyDays": 30, "profile": "quick", "enabled": false}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.body["frequencyDays"], 30);
    assert_eq!(changed.body["nextRunAt"], serde_json::Value::Null);
    assert_eq!(
        t.patch(&path, json!({"frequencyDays": 91})).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        t.patch(&path, json!({"assetId": ip})).await.status,
        StatusCode::BAD_REQUEST
    );
    let run = t.post(&format!("{path}/run-now"), json!({})).await;
    assert_eq!(run.status, StatusCode::ACCEPTED, "{}", run.body);
    let job = run.body["scanJobIds"][0].as_str().unwrap().to_string();
    let requested = t.get("/api/events?type=scan.requested").await;
    let event = requested.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["data"]["scanJobId"] == job.as_str())
        .unwrap()
        .clone();
    assert_eq!(event["causationId"], id.as_str(), "{event}");
    assert_eq!(t.get(&path).await.body["runCount"], 1);
    assert_eq!(t.delete(&path).await.status, StatusCode::NO_CONTENT);
    assert_eq!(t.get(&path).await.status, StatusCode::NOT_FOUND);
    let kept = t.get(&format!("/api/scan-jobs/{job}")).await;
    assert_eq!(kept.status, StatusCode::OK, "the schedule's scan jobs stay");
    // The slot is free again.
    let again = t
        .post(
            "/api/scan-schedules",
            json!({"scheduleType": "asset", "assetId": ip}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body["frequencyDays"], 7, "the default");
}

async fn a_due_schedule_runs_once_across_two_processes(b: Backend, nats: bool) {
    let s = Setup::start(
        b,
        nats,
        &[
            ("EASM_MONITOR_INTERVAL", "100ms"),
            ("EASM_SCAN_WORKERS", "0"),
        ],
    )
    .await;
    let _second = s.deliver();
    let g = s.post("/api/groups", json!({"name": "Edge"})).await.id();
    for v in ["192.0.2.20", "192.0.2.21"] {
        let a = s
            .post(
                &format!("/api/groups/{g}/assets"),
                json!({"value": v, "type": "ip"}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED);
    }
    let created = s
        .post(
            "/api/scan-schedules",
            json!({"scheduleType": "group", "groupId": g}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let path = format!("/api/scan-schedules/{}", created.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.get(&path).await.body["runCount"] == 0 {
        assert!(Instant::now() < deadline, "the schedule never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both processes check every 100 ms; give them time to run it twice if they could.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let shown = s.get(&path).await;
    assert_eq!(shown.body["runCount"], 1, "{}", shown.body);
    let triggered = s.get("/api/events?type=monitor.triggered").await;
    assert_eq!(triggered.body["items"].as_array().unwrap().len(), 1);
    let jobs = s.get("/api/scan-jobs").await;
    assert_eq!(
        jobs.body["total"], 2,
        "one scan per asset of the group, once"
    );
}
