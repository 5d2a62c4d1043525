use crate::helpers::*;
use crate::on_both_backends;
use easm_domain::Plan;
use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(
    assets_are_normalized_and_filtered,
    an_asset_moves_and_is_retagged_at_once,
    a_removed_asset_frees_its_value,
    duplicate_value_answers_409_with_existing_id,
    bulk_add_is_all_or_nothing,
    plan_asset_limit_answers_402,
    timeline_reads_the_log_newest_first,
    a_timeline_holds_the_scans_findings_and_alerts_of_its_asset,
    parallel_patches_lose_no_update,
);

/// A pro organization whose group `Production` holds seven assets, one of each type, tagged
/// `web`, and an empty group `Staging`.
struct Inventory {
    t: Tenant,
    staging: String,
    ids: Vec<String>,
}

impl Inventory {
    async fn new(b: Backend) -> Inventory {
        let t = Tenant::new(b, Plan::Pro, "Production").await;
        let staging = t.app.group(&t.key, "Staging").await;
        let cases = [
            ("Example.COM.", "domain", "example.com"),
            ("API.example.com", "subdomain", "api.example.com"),
            ("bücher.de", "domain", "xn--bcher-kva.de"),
            ("2001:DB8::0:1", "ip", "2001:db8::1"),
            ("192.0.2.77/24", "cidr", "192.0.2.0/24"),
            (
                "HTTPS://Shop.Example.com:443/x",
                "url",
                "https://shop.example.com/x",
            ),
            (
                "arn:aws:s3:::bucket",
                "cloud_resource",
                "arn:aws:s3:::bucket",
            ),
        ];
        let mut ids = vec![];
        for (raw, ty, want) in cases {
            let a = t
                .post(
                    &format!("/api/groups/{}/assets", t.group),
                    json!({"value": raw, "type": ty, "tags": ["web"]}),
                )
                .await;
            assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
            assert_eq!(a.body["value"], want);
            assert_eq!(a.body["type"], ty);
            assert_eq!(a.body["groupId"], t.group.as_str());
            assert_eq!(a.body["criticality"], "medium");
            assert!(a.body["createdAt"].as_str().unwrap().ends_with('Z'));
            ids.push(a.id());
        }
        Inventory { t, staging, ids }
    }

    async fn total(&self, query: &str) -> serde_json::Value {
        self.t.get(&format!("/api/assets{query}")).await.body["total"].clone()
    }

    /// The first asset moved to `Staging`, re-tagged and made critical.
    async fn move_first(&self) -> Answer {
        self.t
            .patch(
                &format!("/api/assets/{}", self.ids[0]),
                json!({"groupId": self.staging, "tags": ["prod", "pci"], "criticality": "critical"}),
            )
            .await
    }
}

/// Values are normalized as they are added (checked for each type by the fixture) and filtered
/// by type, text and tag.
async fn assets_are_normalized_and_filtered(b: Backend) {
    let s = Inventory::new(b).await;
    let all = s.t.get("/api/assets").await;
    assert_eq!(all.body["total"], 7);
    assert_eq!(all.body["page"], 1);
    assert_eq!(s.total("?type=domain").await, 2);
    assert_eq!(s.total("?q=EXAMPLE").await, 3);
    assert_eq!(s.total("?q=%25").await, 0);
    assert_eq!(
        s.t.get("/api/assets?tag=web&perPage=2").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

async fn an_asset_moves_and_is_retagged_at_once(b: Backend) {
    let s = Inventory::new(b).await;
    let patched = s.move_first().await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["groupId"], s.staging.as_str());
    assert_eq!(patched.body["tags"], json!(["prod", "pci"]));
    let got = s.t.get(&format!("/api/assets/{}", s.ids[0])).await;
    assert_eq!(
        got.body, patched.body,
        "a GET right after PATCH shows the change"
    );
    assert_eq!(s.total("?criticality=critical").await, 1);
    assert_eq!(s.total("?tag=pci").await, 1);
    assert_eq!(s.total("?tag=web").await, 6);
    assert_eq!(s.total(&format!("?groupId={}", s.staging)).await, 1);
    assert_eq!(
        s.t.get(&format!("/api/groups/{}/assets", s.staging))
            .await
            .body["items"][0]["id"],
        s.ids[0].as_str()
    );
    let bad_group =
        s.t.patch(&format!("/api/assets/{}", s.ids[0]), json!({"groupId": 42}))
            .await;
    assert_eq!(
        bad_group.status,
        StatusCode::NOT_FOUND,
        "{}",
        bad_group.body
    );
    assert_eq!(bad_group.body["error"], "group not found");
}

/// A removed asset is gone, once; its value is free again.
async fn a_removed_asset_frees_its_value(b: Backend) {
    let s = Inventory::new(b).await;
    s.move_first().await;
    let path = format!("/api/assets/{}", s.ids[0]);
    assert_eq!(s.t.delete(&path).await.status, StatusCode::NO_CONTENT);
    assert_eq!(s.t.get(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.t.delete(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.total("").await, 6);
    s.t.asset("example.com", "domain").await;
}

async fn duplicate_value_answers_409_with_existing_id(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "G").await;
    let first = app.asset(&key, &g, "dup.example.com", "subdomain").await;
    let again = app
        .post(
            &key,
            &format!("/api/groups/{g}/assets"),
            json!({"value": "DUP.example.com.", "type": "subdomain"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "ASSET_EXISTS");
    assert_eq!(again.body["existingId"], first.as_str());

    // Another organization may hold the same value.
    let (_, other) = app.org(Plan::Pro).await;
    let og = app.group(&other, "G").await;
    app.asset(&other, &og, "dup.example.com", "subdomain").await;
}

async fn bulk_add_is_all_or_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "G").await;
    app.asset(&key, &g, "taken.com", "domain").await;
    let events_before = app.event_count().await;
    let bad = app
        .post(
            &key,
            &format!("/api/groups/{g}/assets/bulk"),
            json!({"assets": [
                {"value": "ok.com", "type": "domain"},
                {"value": "not valid", "type": "domain"},
                {"value": "taken.com", "type": "domain"},
                {"value": "x.com", "type": "planet"},
                {"value": "OK.com", "type": "domain"}
            ]}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    let failed: Vec<(u64, String)> = bad.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["index"].as_u64().unwrap(),
                i["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        vec![
            (1, "VALIDATION_ERROR".to_string()),
            (2, "ASSET_EXISTS".to_string()),
            (3, "VALIDATION_ERROR".to_string()),
            (4, "DUPLICATE_IN_REQUEST".to_string())
        ]
    );
    assert_eq!(app.event_count().await, events_before, "nothing appended");
    assert_eq!(app.get(&key, "/api/assets").await.body["total"], 1);

    let dup_only = app
        .post(
            &key,
            &format!("/api/groups/{g}/assets/bulk"),
            json!({"assets": [{"value": "taken.com", "type": "domain"}]}),
        )
        .await;
    assert_eq!(dup_only.status, StatusCode::CONFLICT);

    let good = app
        .post(
            &key,
            &format!("/api/groups/{g}/assets/bulk"),
            json!({"assets": [{"value": "a.com", "type": "domain"}, {"value": "10.0.0.1", "type": "ip", "criticality": "high"}]}),
        )
        .await;
    assert_eq!(good.status, StatusCode::CREATED, "{}", good.body);
    assert_eq!(good.body["added"], 2);
    assert_eq!(app.get(&key, "/api/assets").await.body["total"], 3);
    let empty = app
        .post(
            &key,
            &format!("/api/groups/{g}/assets/bulk"),
            json!({"assets": []}),
        )
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let missing_group = app
        .post(
            &key,
            "/api/groups/nope/assets/bulk",
            json!({"assets": [{"value": "b.com", "type": "domain"}]}),
        )
        .await;
    assert_eq!(missing_group.status, StatusCode::NOT_FOUND);
}

async fn plan_asset_limit_answers_402(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Free).await;
    let g = app.group(&key, "G").await;
    let items: Vec<_> = (0..24)
        .map(|i| json!({"value": format!("h{i}.example.com"), "type": "subdomain"}))
        .collect();
    let a = app
        .post(
            &key,
            &format!("/api/groups/{g}/assets/bulk"),
            json!({ "assets": items }),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let over = app
        .post(
            &key,
            &format!("/api/groups/{g}/assets/bulk"),
            json!({"assets": [{"value": "y1.com", "type": "domain"}, {"value": "y2.com", "type": "domain"}]}),
        )
        .await;
    assert_eq!(over.status, StatusCode::PAYMENT_REQUIRED, "{}", over.body);
    assert_eq!(over.code(), "PLAN_LIMIT");
    assert_eq!(
        app.get(&key, "/api/assets").await.body["total"],
        24,
        "nothing added"
    );
    app.asset(&key, &g, "y1.com", "domain").await;
    let one_more = app
        .post(
            &key,
            &format!("/api/groups/{g}/assets"),
            json!({"value": "y2.com", "type": "domain"}),
        )
        .await;
    assert_eq!(one_more.status, StatusCode::PAYMENT_REQUIRED);
    let org = app.get(&key, "/api/org").await;
    assert_eq!(org.body["usage"]["assets"], 25);
    assert_eq!(org.body["limits"]["assets"], 25);

    // Concurrent adds cannot overshoot the limit.
    let (_, key2) = app.org(Plan::Free).await;
    let g2 = app.group(&key2, "G").await;
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (client, url, key2) = (
                app.client.clone(),
                app.url(&format!("/api/groups/{g2}/assets")),
                key2.clone(),
            );
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("X-API-Key", key2)
                    .json(&json!({"value": format!("c{i}.com"), "type": "domain"}))
                    .send()
                    .await
                    .unwrap();
                r.status()
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        let s = t.await.unwrap();
        assert!(
            s == StatusCode::CREATED
                || s == StatusCode::PAYMENT_REQUIRED
                || s == StatusCode::CONFLICT,
            "{s}"
        );
        created += (s == StatusCode::CREATED) as i32;
    }
    assert_eq!(app.get(&key2, "/api/assets").await.body["total"], created);
    assert!(created <= 25);
}

async fn timeline_reads_the_log_newest_first(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "G").await;
    let id = app.asset(&key, &g, "t.example.com", "subdomain").await;
    app.patch(
        &key,
        &format!("/api/assets/{id}"),
        json!({"criticality": "high"}),
    )
    .await;
    app.patch(&key, &format!("/api/assets/{id}"), json!({"tags": ["a"]}))
        .await;
    app.delete(&key, &format!("/api/assets/{id}")).await;
    let t = app.get(&key, &format!("/api/assets/{id}/timeline")).await;
    assert_eq!(t.status, StatusCode::OK);
    let types = t.items_field("type");
    assert_eq!(
        types,
        [
            "asset.removed",
            "asset.updated",
            "asset.updated",
            "asset.added"
        ]
    );
    assert_eq!(t.body["items"][2]["data"]["criticality"], "high");
    assert_eq!(t.body["items"][3]["actor"]["kind"], "api_key");
    assert_eq!(t.body["items"][3]["actor"]["role"], "owner");
    let p2 = app
        .get(&key, &format!("/api/assets/{id}/timeline?page=2&perPage=3"))
        .await;
    assert_eq!(p2.body["total"], 4);
    assert_eq!(p2.body["items"][0]["type"], "asset.added");
    let (_, other) = app.org(Plan::Pro).await;
    assert_eq!(
        app.get(&other, &format!("/api/assets/{id}/timeline"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn parallel_patches_lose_no_update(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Enterprise).await;
    let g = app.group(&key, "G").await;
    let other = app.group(&key, "H").await;
    let id = app.asset(&key, &g, "race.example.com", "subdomain").await;
    let bodies: Vec<_> = (0..16)
        .map(|i| match i % 4 {
            0 => json!({"tags": [format!("t{i}")]}),
            1 => json!({ "criticality": (["low", "high", "critical"][i % 3]) }),
            2 => json!({"groupId": if i % 8 == 2 { &other } else { &g }}),
            _ => json!({"tags": [format!("t{i}"), "x"], "criticality": "low"}),
        })
        .collect();
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (client, url, key) = (
                app.client.clone(),
                app.url(&format!("/api/assets/{id}")),
                key.clone(),
            );
            tokio::spawn(async move {
                let r = client
                    .patch(url)
                    .header("X-API-Key", key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (r.status(), body)
            })
        })
        .collect();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "{status} for {body}"
        );
    }
    // Replaying the log gives exactly the read model: no update was lost between them.
    let timeline = app
        .get(&key, &format!("/api/assets/{id}/timeline?perPage=100"))
        .await;
    let mut tags = json!([]);
    let mut crit = json!("medium");
    let mut group = json!(g);
    for e in timeline.body["items"].as_array().unwrap().iter().rev() {
        let d = &e["data"];
        if !d["tags"].is_null() {
            tags = d["tags"].clone();
        }
        if !d["criticality"].is_null() {
            crit = d["criticality"].clone();
        }
        if !d["groupId"].is_null() {
            group = d["groupId"].clone();
        }
    }
    let now = app.get(&key, &format!("/api/assets/{id}")).await;
    assert_eq!(now.body["tags"], tags);
    assert_eq!(now.body["criticality"], crit);
    assert_eq!(now.body["groupId"], group);
    let versions: Vec<i64> = sqlx::query_scalar(
        "SELECT stream_version FROM events WHERE stream_id = $1 ORDER BY stream_version",
    )
    .bind(format!("asset-{id}"))
    .fetch_all(app.db.reader())
    .await
    .unwrap();
    assert_eq!(
        versions,
        (1..=versions.len() as i64).collect::<Vec<_>>(),
        "no gaps, no duplicates"
    );
}

/// Beside its own events, an asset's timeline holds the scans of it (without their progress),
/// the findings on it as they are triaged, and the alerts raised on it; newest first.
async fn a_timeline_holds_the_scans_findings_and_alerts_of_its_asset(b: Backend) {
    let app = spawn_app(b).await;
    let (org, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "G").await;
    let id = app.asset(&key, &g, "t.example.com", "subdomain").await;
    let other = app.asset(&key, &g, "u.example.com", "subdomain").await;
    let monitor = app
        .post(
            &key,
            "/api/monitors",
            json!({"assetId": id, "ports": [443], "enabled": true}),
        )
        .await;
    assert_eq!(monitor.status, StatusCode::CREATED, "{}", monitor.body);
    let https = easm_events::ServiceSeen {
        port: 443,
        service: "https".into(),
        tls: true,
        detail: None,
    };
    let finding = easm_events::Detection {
        template_id: "tls.expired-cert".into(),
        title: "Expired certificate".into(),
        severity: "high".into(),
        matched_at: "t.example.com:443".into(),
        source: "easm".into(),
        ..Default::default()
    };
    // Two scans of the asset: 443 answers, then it does not (an alert); one of another asset.
    for (asset, services) in [(&id, vec![https]), (&id, vec![]), (&other, vec![])] {
        scanned(&app, &org, &key, asset, services, &finding).await;
    }
    let found = app.get(&key, &format!("/api/findings?asset_id={id}")).await;
    let finding_id = found.body["items"][0]["id"].as_str().unwrap().to_string();
    let ack = app
        .patch(
            &key,
            &format!("/api/findings/{finding_id}"),
            json!({"status": "acknowledged"}),
        )
        .await;
    assert_eq!(ack.status, StatusCode::OK, "{}", ack.body);

    let t = app
        .get(&key, &format!("/api/assets/{id}/timeline?perPage=100"))
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let types = t.items_field("type");
    assert_eq!(types.first(), Some(&"finding.status_changed"), "{types:?}");
    assert_eq!(types.last(), Some(&"asset.added"), "{types:?}");
    for kind in [
        "scan.requested",
        "scan.started",
        "scan.completed",
        "finding.new",
        "finding.redetected",
        "alert.created",
        "risk.changed",
    ] {
        assert!(types.contains(&kind), "{kind} in {types:?}");
    }
    assert!(!types.contains(&"scan.progressed"), "{types:?}");
    assert_eq!(types.iter().filter(|t| **t == "scan.completed").count(), 2);
    assert_eq!(t.body["total"], types.len());
    let positions: Vec<i64> = t.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] > w[1]), "newest first");
}

/// A scan of `asset` on 443 run to completion through the command side, seeing `services` and
/// detecting `finding`.
async fn scanned(
    app: &TestApp,
    org: &easm_events::OrgId,
    key: &str,
    asset: &str,
    services: Vec<easm_events::ServiceSeen>,
    finding: &easm_events::Detection,
) {
    let j = app
        .post(
            key,
            "/api/scan-jobs",
            json!({"asset_id": asset, "profile": "quick", "ports": [443]}),
        )
        .await;
    assert_eq!(j.status, StatusCode::CREATED, "{}", j.body);
    let job = easm_events::ScanJobId::new(j.id());
    let (commands, meta) = (&app.state.commands, system_meta());
    commands
        .start_scan(&meta, org, &job, "test")
        .await
        .unwrap()
        .unwrap();
    commands
        .scan_progress(&meta, org, &job, 50, "ports")
        .await
        .unwrap();
    let observed = easm_events::Observed {
        ports_scanned: Some(1),
        services,
        ..Default::default()
    };
    commands
        .complete_scan(
            &meta,
            org,
            &job,
            std::slice::from_ref(finding),
            observed,
            &[443],
        )
        .await
        .unwrap();
}
