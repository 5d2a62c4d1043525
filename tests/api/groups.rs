use crate::helpers::*;
use crate::on_both_backends;
use easm_domain::Plan;
use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(
    groups_count_rename_summarize_and_delete_when_empty,
    adding_to_a_group_sees_its_renames_and_deletion_at_once,
    a_group_summary_counts_the_scans_of_its_assets,
);

async fn groups_count_rename_summarize_and_delete_when_empty(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "Production").await;
    let h = app.group(&key, "Staging").await;
    let a1 = app.asset(&key, &g, "a.example.com", "subdomain").await;
    app.asset(&key, &g, "203.0.113.9", "ip").await;
    app.patch(
        &key,
        &format!("/api/assets/{a1}"),
        json!({"criticality": "critical"}),
    )
    .await;

    let list = app.get(&key, "/api/groups").await;
    assert_eq!(list.body["total"], 2);
    assert_eq!(list.body["items"][0]["name"], "Production");
    assert_eq!(list.body["items"][0]["assetCount"], 2);
    assert_eq!(list.body["items"][1]["assetCount"], 0);

    let renamed = app
        .patch(
            &key,
            &format!("/api/groups/{g}"),
            json!({"name": "  Prod  "}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    assert_eq!(renamed.body["name"], "Prod");
    assert_eq!(
        app.get(&key, &format!("/api/groups/{g}")).await.body["name"],
        "Prod"
    );
    let empty_name = app
        .patch(&key, &format!("/api/groups/{g}"), json!({"name": " "}))
        .await;
    assert_eq!(empty_name.status, StatusCode::BAD_REQUEST);
    assert_eq!(empty_name.body["field"], "name");

    let s = app.get(&key, &format!("/api/groups/{g}/summary")).await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.body["totalAssets"], 2);
    assert_eq!(s.body["byType"]["subdomain"], 1);
    assert_eq!(s.body["byType"]["ip"], 1);
    assert_eq!(s.body["byType"]["cidr"], 0);
    assert_eq!(s.body["byCriticality"]["critical"], 1);
    assert_eq!(s.body["byCriticality"]["medium"], 1);

    let held = app.delete(&key, &format!("/api/groups/{g}")).await;
    assert_eq!(held.status, StatusCode::CONFLICT);
    let all: Vec<String> = app.get(&key, &format!("/api/groups/{g}/assets")).await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    app.patch(
        &key,
        &format!("/api/assets/{}", all[0]),
        json!({"groupId": h}),
    )
    .await;
    app.delete(&key, &format!("/api/assets/{}", all[1])).await;
    assert_eq!(
        app.delete(&key, &format!("/api/groups/{g}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&key, &format!("/api/groups/{g}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&key, &format!("/api/groups/{g}/summary"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&key, &format!("/api/groups/{g}/assets"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let into_deleted = app
        .post(
            &key,
            &format!("/api/groups/{g}/assets"),
            json!({"value": "z.com", "type": "domain"}),
        )
        .await;
    assert_eq!(into_deleted.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&key, "/api/groups").await.body["total"], 1);
}

/// Asset adds keep groups they have seen; a rename or a deletion made meanwhile by another
/// process on the same store is never missed.
async fn adding_to_a_group_sees_its_renames_and_deletion_at_once(b: Backend) {
    let app = spawn_app(b).await;
    let (org, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "Edge").await;
    let first = app.asset(&key, &g, "one.example.com", "subdomain").await;
    let db = easm_store::Db::connect(&app.store.config).await.unwrap();
    let other = easm_api::AppState::new(db).commands;
    let meta = crate::helpers::system_meta();
    other
        .rename_group(&meta, &org, &g.as_str().into(), "Perimeter")
        .await
        .unwrap();
    let second = app.asset(&key, &g, "two.example.com", "subdomain").await;
    assert_eq!(
        app.get(&key, &format!("/api/assets/{second}")).await.body["groupId"],
        g.as_str()
    );
    for a in [&first, &second] {
        other
            .remove_asset(&meta, &org, &a.as_str().into())
            .await
            .unwrap();
    }
    other
        .delete_group(&meta, &org, &g.as_str().into())
        .await
        .unwrap();
    let late = app
        .post(
            &key,
            &format!("/api/groups/{g}/assets"),
            json!({"value": "three.example.com", "type": "subdomain"}),
        )
        .await;
    assert_eq!(late.status, StatusCode::NOT_FOUND, "{}", late.body);
    assert_eq!(app.get(&key, "/api/assets").await.body["total"], 0);
}

/// The summary counts the scans of the group's assets: the assets with a completed scan, the
/// jobs of the last 30 days by status, and when the last completed one finished.
async fn a_group_summary_counts_the_scans_of_its_assets(b: Backend) {
    let app = spawn_app(b).await;
    let (org, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "Edge").await;
    let a = app.asset(&key, &g, "a.example.com", "subdomain").await;
    let b = app.asset(&key, &g, "b.example.com", "subdomain").await;
    app.asset(&key, &g, "c.example.com", "subdomain").await;
    let elsewhere = app.group(&key, "Elsewhere").await;
    let d = app
        .asset(&key, &elsewhere, "d.example.com", "subdomain")
        .await;
    let summary = || async { app.get(&key, &format!("/api/groups/{g}/summary")).await };
    let none = summary().await;
    assert_eq!(none.body["scannedAssets"], 0, "{}", none.body);
    assert_eq!(none.body["recentScans"]["total"], 0);
    assert_eq!(none.body["recentScans"]["days"], 30);
    assert!(none.body["lastScanAt"].is_null());

    let job = |asset: String, profile: &'static str| {
        let app = &app;
        let key = &key;
        async move {
            let j = app
                .post(
                    key,
                    "/api/scan-jobs",
                    json!({"asset_id": asset, "profile": profile}),
                )
                .await;
            assert_eq!(j.status, StatusCode::CREATED, "{}", j.body);
            easm_events::ScanJobId::new(j.id())
        }
    };
    let (done, failed) = (job(a.clone(), "quick").await, job(b, "quick").await);
    job(a, "standard").await;
    let other = job(d, "quick").await;
    let commands = &app.state.commands;
    let meta = system_meta();
    for j in [&done, &failed, &other] {
        commands
            .start_scan(&meta, &org, j, "test")
            .await
            .unwrap()
            .unwrap();
    }
    for j in [&done, &other] {
        commands
            .complete_scan(&meta, &org, j, &[], Default::default(), &[443])
            .await
            .unwrap();
    }
    commands
        .fail_scan(&meta, &org, &failed, "unreachable")
        .await
        .unwrap();

    let s = summary().await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    assert_eq!(s.body["scannedAssets"], 1, "{}", s.body);
    assert_eq!(s.body["recentScans"]["total"], 3);
    assert_eq!(
        s.body["recentScans"]["byStatus"],
        json!({"queued": 1, "running": 0, "completed": 1, "failed": 1, "cancelled": 0})
    );
    let last = s.body["lastScanAt"].as_str().unwrap();
    let finished = app.get(&key, &format!("/api/scan-jobs/{done}")).await;
    assert_eq!(finished.body["finishedAt"], last);
}
