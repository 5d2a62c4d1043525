//! Scan jobs through the API: one active job per asset and profile, the monthly quota,
//! cancel, re-run and delete.

use crate::helpers::*;
use crate::on_both_backends;
use easm_domain::{Plan, Role};
use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(
    one_job_is_active_per_asset_and_profile,
    scan_requests_are_validated_and_need_write_access,
    a_cancelled_job_frees_its_slot_for_a_rerun,
    a_deleted_job_leaves_the_api_and_frees_its_slot,
    scans_per_month_follow_the_plan
);

/// A pro organization with the assets `127.0.0.1` and `scan.example.com`.
struct Scanned {
    t: Tenant,
    asset: String,
    other: String,
}

impl Scanned {
    async fn new(b: Backend) -> Scanned {
        let t = Tenant::new(b, Plan::Pro, "Scanned").await;
        let asset = t.asset("127.0.0.1", "ip").await;
        let other = t.asset("scan.example.com", "domain").await;
        Scanned { t, asset, other }
    }

    async fn request(&self, body: serde_json::Value) -> Answer {
        self.t.post("/api/scan-jobs", body).await
    }

    /// A quick scan of `127.0.0.1`.
    async fn quick(&self) -> Answer {
        self.request(json!({"asset_id": self.asset, "profile": "quick"}))
            .await
    }

    async fn on_job(&self, id: &str, action: &str) -> Answer {
        self.t
            .post(&format!("/api/scan-jobs/{id}/{action}"), json!({}))
            .await
    }
}

async fn one_job_is_active_per_asset_and_profile(b: Backend) {
    let s = Scanned::new(b).await;
    let first = s.quick().await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["status"], "queued");
    assert_eq!(first.body["asset_id"], s.asset.as_str());
    assert_eq!(first.body["assetId"], s.asset.as_str());
    assert_eq!(first.body["profile"], "quick");
    assert!(first.body["createdAt"].as_str().is_some());
    let again = s.quick().await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.body["existingId"], first.id().as_str());

    let deep = s
        .request(json!({"assetId": s.asset, "profile": "deep", "ports": [8443, 8080, 8443]}))
        .await;
    assert_eq!(deep.status, StatusCode::CREATED, "{}", deep.body);
    assert_eq!(deep.body["ports"], json!([8080, 8443]));
    let on_other = s
        .request(json!({"asset_id": s.other, "profile": "quick"}))
        .await;
    assert_eq!(on_other.status, StatusCode::CREATED);

    let viewer = s.t.key_of(Role::Viewer).await;
    assert_eq!(
        s.t.app.get(&viewer, "/api/scan-jobs").await.body["total"],
        3
    );
    let quick = s.t.get("/api/scan-jobs?profile=quick").await;
    assert_eq!(quick.body["total"], 2);
    let mine =
        s.t.get(&format!(
            "/api/scan-jobs?asset_id={}&status=queued",
            s.asset
        ))
        .await;
    assert_eq!(mine.body["total"], 2);
}

async fn scan_requests_are_validated_and_need_write_access(b: Backend) {
    let s = Scanned::new(b).await;
    let asset = &s.asset;
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
        let a = s.request(body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
        assert_eq!(a.body["field"], field, "{}", a.body);
    }
    let unknown = s
        .request(json!({"asset_id": "nope", "profile": "quick"}))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let viewer = s.t.key_of(Role::Viewer).await;
    let denied =
        s.t.app
            .post(
                &viewer,
                "/api/scan-jobs",
                json!({"asset_id": asset, "profile": "standard"}),
            )
            .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
}

/// Cancelling frees the slot; a re-run takes it with a new job.
async fn a_cancelled_job_frees_its_slot_for_a_rerun(b: Backend) {
    let s = Scanned::new(b).await;
    let first_id = s.quick().await.id();
    let cancelled = s.on_job(&first_id, "cancel").await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert!(cancelled.body["finishedAt"].as_str().is_some());
    let twice = s.on_job(&first_id, "cancel").await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    let rerun = s.on_job(&first_id, "run").await;
    assert_eq!(rerun.status, StatusCode::CREATED, "{}", rerun.body);
    assert_eq!(rerun.body["rerunOf"], first_id.as_str());
    assert_eq!(rerun.body["status"], "queued");
    let busy = s.quick().await;
    assert_eq!(busy.body["existingId"], rerun.id().as_str());
}

/// Deleting leaves the API (and frees the slot of a job still queued).
async fn a_deleted_job_leaves_the_api_and_frees_its_slot(b: Backend) {
    let s = Scanned::new(b).await;
    let queued = s.quick().await.id();
    let gone = s.t.delete(&format!("/api/scan-jobs/{queued}")).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.t.get(&format!("/api/scan-jobs/{queued}")).await.status,
        StatusCode::NOT_FOUND
    );
    let free = s.quick().await;
    assert_eq!(free.status, StatusCode::CREATED);
    let (_, stranger) = s.t.app.org(Plan::Pro).await;
    assert_eq!(
        s.t.app
            .get(&stranger, &format!("/api/scan-jobs/{}", free.id()))
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
