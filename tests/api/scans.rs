//! Scan jobs through the API: one active job per asset and profile, the monthly quota,
//! cancel, re-run and delete.

use crate::helpers::*;
use crate::on_both_backends;
use easm_domain::{Plan, Role};
use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(
    scan_jobs_are_queued_once_per_asset_and_profile,
    scans_per_month_follow_the_plan
);

async fn scan_jobs_are_queued_once_per_asset_and_profile(b: Backend) {
    let app = spawn_app(b).await;
    let (org, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "Scanned").await;
    let asset = app.asset(&key, &g, "127.0.0.1", "ip").await;
    let other = app.asset(&key, &g, "scan.example.com", "domain").await;

    let first = app
        .post(
            &key,
            "/api/scan-jobs",
            json!({"asset_id": asset, "profile": "quick"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["status"], "queued");
    assert_eq!(first.body["asset_id"], asset.as_str());
    assert_eq!(first.body["assetId"], asset.as_str());
    assert_eq!(first.body["profile"], "quick");
    assert!(first.body["createdAt"].as_str().is_some());
    let first_id = first.id();

    let again = app
        .post(
            &key,
            "/api/scan-jobs",
            json!({"asset_id": asset, "profile": "quick"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.body["existingId"], first_id.as_str());

    let deep = app
        .post(
            &key,
            "/api/scan-jobs",
            json!({"assetId": asset, "profile": "deep", "ports": [8443, 8080, 8443]}),
        )
        .await;
    assert_eq!(deep.status, StatusCode::CREATED, "{}", deep.body);
    assert_eq!(deep.body["ports"], json!([8080, 8443]));
    let on_other = app
        .post(
            &key,
            "/api/scan-jobs",
            json!({"asset_id": other, "profile": "quick"}),
        )
        .await;
    assert_eq!(on_other.status, StatusCode::CREATED);

    for (body, field) in [
        (json!({"asset_id": asset, "profile": "full"}), "profile"),
        (
            json!({"asset_id": asset, "profile": "quick", "ports": [70000]}),
            "ports",
        ),
        (
            json!({"asset_id": asset, "profile": "quick", "ports": []}),
            "ports",
        ),
        (json!({"profile": "quick"}), "asset_id"),
        (json!({"asset_id": asset}), "profile"),
    ] {
        let a = app.post(&key, "/api/scan-jobs", body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
        assert_eq!(a.body["field"], field, "{}", a.body);
    }
    let unknown = app
        .post(
            &key,
            "/api/scan-jobs",
            json!({"asset_id": "nope", "profile": "quick"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let viewer = app.key(&org, Role::Viewer).await;
    let denied = app
        .post(
            &viewer,
            "/api/scan-jobs",
            json!({"asset_id": asset, "profile": "standard"}),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get(&viewer, "/api/scan-jobs").await.body["total"], 3);

    let quick = app.get(&key, "/api/scan-jobs?profile=quick").await;
    assert_eq!(quick.body["total"], 2);
    let mine = app
        .get(
            &key,
            &format!("/api/scan-jobs?asset_id={asset}&status=queued"),
        )
        .await;
    assert_eq!(mine.body["total"], 2);

    // Cancelling frees the slot; a re-run takes it with a new job.
    let cancelled = app
        .post(
            &key,
            &format!("/api/scan-jobs/{first_id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert!(cancelled.body["finishedAt"].as_str().is_some());
    let twice = app
        .post(
            &key,
            &format!("/api/scan-jobs/{first_id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    let rerun = app
        .post(&key, &format!("/api/scan-jobs/{first_id}/run"), json!({}))
        .await;
    assert_eq!(rerun.status, StatusCode::CREATED, "{}", rerun.body);
    assert_eq!(rerun.body["rerunOf"], first_id.as_str());
    assert_eq!(rerun.body["status"], "queued");
    let busy = app
        .post(
            &key,
            "/api/scan-jobs",
            json!({"asset_id": asset, "profile": "quick"}),
        )
        .await;
    assert_eq!(busy.body["existingId"], rerun.id().as_str());

    // Deleting leaves the API (and frees the slot of a job still queued).
    let gone = app
        .delete(&key, &format!("/api/scan-jobs/{}", rerun.id()))
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&key, &format!("/api/scan-jobs/{}", rerun.id()))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let free = app
        .post(
            &key,
            "/api/scan-jobs",
            json!({"asset_id": asset, "profile": "quick"}),
        )
        .await;
    assert_eq!(free.status, StatusCode::CREATED);
    let (_, stranger) = app.org(Plan::Pro).await;
    assert_eq!(
        app.get(&stranger, &format!("/api/scan-jobs/{}", free.id()))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn scans_per_month_follow_the_plan(b: Backend) {
    let app = spawn_app(b).await;
    let (org, key) = app.org(Plan::Free).await;
    let g = app.group(&key, "Quota").await;
    let asset = app.asset(&key, &g, "quota.example.com", "domain").await;
    // Free: 100 scans a month, cancelled ones too. Several keys: each may make 120 requests a
    // minute on this plan.
    let mut keys = vec![];
    for _ in 0..4 {
        keys.push(app.key(&org, Role::Analyst).await);
    }
    let scan = json!({"asset_id": asset, "profile": "quick"});
    for i in 0..100 {
        let key = &keys[i % keys.len()];
        let a = app.post(key, "/api/scan-jobs", scan.clone()).await;
        assert_eq!(a.status, StatusCode::CREATED, "scan {i}: {}", a.body);
        let path = format!("/api/scan-jobs/{}/cancel", a.id());
        app.post(key, &path, json!({})).await;
    }
    let over = app.post(&keys[0], "/api/scan-jobs", scan).await;
    assert_eq!(over.status, StatusCode::PAYMENT_REQUIRED, "{}", over.body);
    assert_eq!(over.body["code"], "PLAN_LIMIT");
}
