use crate::helpers::*;
use crate::on_both_backends;
use easm_domain::Plan;
use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(rebuild_from_the_log_gives_the_same_answers);

async fn rebuild_from_the_log_gives_the_same_answers(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "One").await;
    let h = app.group(&key, "Two").await;
    let mut ids = vec![];
    for i in 0..12 {
        ids.push(
            app.asset(
                &key,
                if i % 2 == 0 { &g } else { &h },
                &format!("r{i}.example.com"),
                "subdomain",
            )
            .await,
        );
    }
    app.patch(
        &key,
        &format!("/api/assets/{}", ids[0]),
        json!({"tags": ["a", "b"], "criticality": "high"}),
    )
    .await;
    app.patch(
        &key,
        &format!("/api/assets/{}", ids[1]),
        json!({"groupId": g}),
    )
    .await;
    app.delete(&key, &format!("/api/assets/{}", ids[2])).await;
    app.patch(
        &key,
        &format!("/api/groups/{h}"),
        json!({"name": "Two renamed"}),
    )
    .await;
    let empty = app.group(&key, "Gone").await;
    app.delete(&key, &format!("/api/groups/{empty}")).await;
    let scan = app
        .post(
            &key,
            "/api/scan-jobs",
            json!({"asset_id": ids[3], "profile": "quick", "ports": [443]}),
        )
        .await
        .id();
    app.post(&key, &format!("/api/scan-jobs/{scan}/cancel"), json!({}))
        .await;
    let gone = app
        .post(
            &key,
            "/api/scan-jobs",
            json!({"asset_id": ids[4], "profile": "deep"}),
        )
        .await
        .id();
    app.delete(&key, &format!("/api/scan-jobs/{gone}")).await;
    let standard = app
        .post(
            &key,
            "/api/scan-jobs",
            json!({"asset_id": ids[5], "profile": "standard"}),
        )
        .await
        .id();
    let imported = crate::findings::import(&app, &key, &standard, crate::findings::NUCLEI).await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.body);
    let found = app.get(&key, "/api/findings?severity=critical").await;
    let finding = found.body["items"][0]["id"].as_str().unwrap().to_string();
    app.patch(
        &key,
        &format!("/api/findings/{finding}"),
        json!({"status": "acknowledged", "assignee": "bob", "notes": "looking"}),
    )
    .await;
    // A deleted job takes its findings out of the read models; the rebuild agrees.
    let dropped = app
        .post(
            &key,
            "/api/scan-jobs",
            json!({"asset_id": ids[5], "profile": "deep"}),
        )
        .await
        .id();
    let only_dropped = r#"{"template-id":"only-dropped","info":{"name":"X","severity":"low"},"matched-at":"https://127.0.0.1/x"}"#;
    let imported = crate::findings::import(
        &app,
        &key,
        &dropped,
        &format!("{}{only_dropped}\n", crate::findings::NUCLEI),
    )
    .await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.body);
    app.delete(&key, &format!("/api/scan-jobs/{dropped}")).await;

    let paths = [
        "/api/findings".to_string(),
        "/api/assets?perPage=100".to_string(),
        "/api/groups".to_string(),
        "/api/scan-jobs".to_string(),
        format!("/api/groups/{g}/summary"),
        format!("/api/assets/{}", ids[0]),
        "/api/assets?tag=a".to_string(),
        "/api/keys".to_string(),
    ];
    let mut before = vec![];
    for p in &paths {
        before.push(app.get(&key, p).await.body);
    }
    let rows_before = app.state.service.read().dump().await.unwrap();

    // Wipe by hand first, so the rebuild has to do the work.
    for t in ["rm_asset_tags", "rm_assets", "rm_groups"] {
        sqlx::query(&format!("DELETE FROM {t}"))
            .execute(app.db.writer())
            .await
            .unwrap();
    }
    let applied = app.state.service.projector().rebuild().await.unwrap();
    assert_eq!(applied as i64, app.event_count().await);
    assert_eq!(app.state.service.read().dump().await.unwrap(), rows_before);
    for (p, b) in paths.iter().zip(&before) {
        assert_eq!(&app.get(&key, p).await.body, b, "{p}");
    }
}
