use crate::helpers::*;
use crate::on_both_backends;
use easm_domain::Plan;
use easm_events::{Event, GroupCreated, OrgId};
use easm_store::{AppendRequest, EventLog, StreamAppend};
use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(
    rebuild_from_the_log_gives_the_same_answers,
    read_models_commit_with_concurrent_writes_and_catch_up_with_tools,
    rebuild_runs_while_commands_change_the_rows_it_rewrites,
    a_rebuild_leaves_the_read_models_with_their_keys_and_indexes,
    a_tools_bulk_import_is_folded_by_the_sweep_in_batches,
);

async fn rebuild_from_the_log_gives_the_same_answers(b: Backend) {
    let app = spawn_app(b).await;
    let (key, paths) = a_varied_history(&app).await;
    let mut before = vec![];
    for p in &paths {
        before.push(app.get(&key, p).await.body);
    }
    let rows_before = app.state.read().dump().await.unwrap();

    // Wipe by hand first, so the rebuild has to do the work.
    for t in ["rm_asset_tags", "rm_assets", "rm_groups"] {
        sqlx::query(&format!("DELETE FROM {t}"))
            .execute(app.db.writer())
            .await
            .unwrap();
    }
    let applied = app.state.commands.projector().rebuild().await.unwrap();
    assert_eq!(applied as i64, app.event_count().await);
    assert_eq!(app.state.read().dump().await.unwrap(), rows_before);
    for (p, b) in paths.iter().zip(&before) {
        assert_eq!(&app.get(&key, p).await.body, b, "{p}");
    }
}

/// An organization whose log holds a bit of everything: assets added, tagged, moved and
/// removed, groups renamed and deleted, scan jobs cancelled and deleted, findings imported and
/// triaged, and a deleted job's findings gone. Answers its key and the paths whose answers a
/// rebuild must keep.
async fn a_varied_history(app: &TestApp) -> (String, Vec<String>) {
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
    let imported = crate::findings::import(app, &key, &standard, crate::findings::NUCLEI).await;
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
        app,
        &key,
        &dropped,
        &format!("{}{only_dropped}\n", crate::findings::NUCLEI),
    )
    .await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.body);
    app.delete(&key, &format!("/api/scan-jobs/{dropped}")).await;

    let paths = vec![
        "/api/findings".to_string(),
        "/api/assets?perPage=100".to_string(),
        "/api/groups".to_string(),
        "/api/scan-jobs".to_string(),
        format!("/api/groups/{g}/summary"),
        format!("/api/assets/{}", ids[0]),
        "/api/assets?tag=a".to_string(),
        "/api/keys".to_string(),
    ];
    (key, paths)
}

/// Events a tool appends without read models (a bare `EventLog`) for the next command of that
/// organization to fold first, or for the server's sweep; every command's own write is readable
/// the moment it answers, whichever process reads; a rebuild agrees with all of it.
async fn read_models_commit_with_concurrent_writes_and_catch_up_with_tools(b: Backend) {
    let app = spawn_app(b).await;
    let mut orgs = vec![];
    for _ in 0..3 {
        let (org, key) = app.org(Plan::Pro).await;
        let group = app.group(&key, "G").await;
        orgs.push((org, key, group));
    }
    // Org 0: a tool's group, then at once a command of the same organization.
    tool_groups(&app, &orgs[0].0, ["from-tool-0".to_string()]).await;
    app.group(&orgs[0].1, "after the tool").await;
    // Org 1: a tool's group and no command after it.
    tool_groups(&app, &orgs[1].0, ["from-tool-1".to_string()]).await;

    let mut tasks = vec![];
    for i in 0..24 {
        let (_, key, group) = orgs[i % 3].clone();
        let client = app.client.clone();
        let base = app.url("");
        tasks.push(tokio::spawn(async move {
            let created = client
                .post(format!("{base}/api/groups/{group}/assets"))
                .header("X-API-Key", &key)
                .json(&json!({"type": "subdomain", "value": format!("c{i}.example.com")}))
                .send()
                .await
                .unwrap();
            assert_eq!(created.status(), StatusCode::CREATED);
            let id = created.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
            let read = client
                .get(format!("{base}/api/assets/{id}"))
                .header("X-API-Key", &key)
                .send()
                .await
                .unwrap();
            assert_eq!(read.status(), StatusCode::OK, "read your own write");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let names = |key: String| {
        let app = &app;
        async move {
            let listed = app.get(&key, "/api/groups").await.body;
            listed["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert!(names(orgs[0].1.clone())
        .await
        .contains(&"from-tool-0".to_string()));
    let mut swept = false;
    for _ in 0..100 {
        if names(orgs[1].1.clone())
            .await
            .contains(&"from-tool-1".to_string())
        {
            swept = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(swept, "the server folds a tool's events on its own");
    for (_, key, group) in &orgs {
        let summary = app.get(key, &format!("/api/groups/{group}/summary")).await;
        assert_eq!(summary.body["totalAssets"], 8, "{}", summary.body);
    }

    let rows = app.state.read().dump().await.unwrap();
    let applied = app.state.commands.projector().rebuild().await.unwrap();
    assert_eq!(applied as i64, app.event_count().await);
    assert_eq!(app.state.read().dump().await.unwrap(), rows);
}

/// A rebuild holds appends out before either touches a row: commands that change the rows it
/// deletes and rewrites wait for it (never deadlock with it, never fail), and the result agrees.
async fn rebuild_runs_while_commands_change_the_rows_it_rewrites(b: Backend) {
    let app = spawn_app(b).await;
    // Enterprise: eight unpaced writers outrun Pro's 600 requests a minute since group commit.
    let (org, key) = app.org(Plan::Enterprise).await;
    let g = app.group(&key, "G").await;
    let mut ids = vec![];
    for i in 0..8 {
        ids.push(
            app.asset(&key, &g, &format!("w{i}.example.com"), "subdomain")
                .await,
        );
    }
    let until = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    let mut writers = vec![];
    for (w, id) in ids.iter().enumerate() {
        let (client, base, key, id) = (app.client.clone(), app.url(""), key.clone(), id.clone());
        writers.push(tokio::spawn(async move {
            let mut statuses = vec![];
            let mut n = 0;
            while std::time::Instant::now() < until {
                n += 1;
                let r = client
                    .patch(format!("{base}/api/assets/{id}"))
                    .header("X-API-Key", &key)
                    .json(&json!({"tags": [format!("t{w}-{n}")]}))
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status());
            }
            statuses
        }));
    }
    // Readers meanwhile (PostgreSQL swaps new tables in; SQLite refills its own) always answer.
    let mut readers = vec![];
    for id in ids.iter().take(2) {
        let key = app.key(&org, easm_domain::Role::Viewer).await;
        let (client, base, id) = (app.client.clone(), app.url(""), id.clone());
        readers.push(tokio::spawn(async move {
            let mut statuses = vec![];
            while std::time::Instant::now() < until {
                for path in [format!("/api/assets/{id}"), "/api/assets?tag=x".to_string()] {
                    let r = client
                        .get(format!("{base}{path}"))
                        .header("X-API-Key", &key)
                        .send()
                        .await
                        .unwrap();
                    statuses.push(r.status());
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            statuses
        }));
    }
    for _ in 0..3 {
        app.state.commands.projector().rebuild().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for r in readers {
        let statuses = r.await.unwrap();
        assert!(statuses.len() > 2);
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
    }
    for w in writers {
        let statuses = w.await.unwrap();
        assert!(!statuses.is_empty());
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
    }
    let rows = app.state.read().dump().await.unwrap();
    app.state.commands.projector().rebuild().await.unwrap();
    assert_eq!(app.state.read().dump().await.unwrap(), rows);
}

/// The read models' tables, keys and indexes, as the database describes them.
async fn schema(app: &TestApp) -> Vec<String> {
    let sql = match app.db.backend() {
        easm_store::Backend::Postgres => {
            "SELECT c.relname || ' ' || c.relkind::text || ' ' || COALESCE(pg_get_indexdef(c.oid), '') \
             || COALESCE((SELECT ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid) \
             FROM pg_constraint k WHERE k.conindid = c.oid), '') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relname LIKE 'rm\\_%' \
             AND c.relkind IN ('r', 'i') ORDER BY 1"
        }
        easm_store::Backend::Sqlite => {
            "SELECT type || ' ' || name || ' ' || COALESCE(sql, '') FROM sqlite_master \
             WHERE name LIKE 'rm\\_%' ESCAPE '\\' OR tbl_name LIKE 'rm\\_%' ESCAPE '\\' ORDER BY 1"
        }
    };
    sqlx::query_scalar(sql)
        .fetch_all(app.db.reader())
        .await
        .unwrap()
}

/// A rebuild replaces the read models' rows, not their shape: the same tables, keys and indexes
/// under the same names afterwards (PostgreSQL builds them on new tables), none left behind, and
/// commands that need the keys (an upsert by primary key) work on the rebuilt tables.
async fn a_rebuild_leaves_the_read_models_with_their_keys_and_indexes(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "G").await;
    let id = app.asset(&key, &g, "keys.example.com", "subdomain").await;
    let before = schema(&app).await;
    assert!(
        before.iter().any(|s| s.contains("rm_assets_org")),
        "{before:?}"
    );
    app.state.commands.projector().rebuild().await.unwrap();
    assert_eq!(schema(&app).await, before);
    let patched = app
        .patch(
            &key,
            &format!("/api/assets/{id}"),
            json!({"tags": ["after"]}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(
        app.get(&key, "/api/assets?tag=after").await.body["total"],
        1
    );
}

/// A tool's bulk import is folded by the server's sweep in bounded batches, or by the next command
/// of the organization, which still reads its own write at once.
async fn a_tools_bulk_import_is_folded_by_the_sweep_in_batches(b: Backend) {
    let app = spawn_app(b).await;
    let groups = |key: String| {
        let app = &app;
        async move {
            app.get(&key, "/api/groups?perPage=1").await.body["total"]
                .as_i64()
                .unwrap()
        }
    };
    // Org 1: a command right after the import folds the backlog and reads its own write.
    let (org, key) = app.org(Plan::Enterprise).await;
    tool_groups(&app, &org, (0..6_000).map(|i| format!("bulk-{org}-{i}"))).await;
    app.group(&key, "during the import").await;
    assert_eq!(groups(key.clone()).await, 6_001);
    // Org 2: nobody writes after the import; the sweep folds it, 5,000 events a transaction.
    let (quiet, quiet_key) = app.org(Plan::Enterprise).await;
    tool_groups(
        &app,
        &quiet,
        (0..15_000).map(|i| format!("bulk-{quiet}-{i}")),
    )
    .await;
    let mut total = 0;
    for _ in 0..200 {
        total = groups(quiet_key.clone()).await;
        if total == 15_000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(total, 15_000);
    // Over 21,000 events: the rebuild reads the log in more than one batch.
    let rows = app.state.read().dump().await.unwrap();
    let applied = app.state.commands.projector().rebuild().await.unwrap();
    assert_eq!(applied as i64, app.event_count().await);
    assert_eq!(app.state.read().dump().await.unwrap(), rows);
}

/// Groups appended the way a tool would: through a bare log, without read models, in one append.
async fn tool_groups(app: &TestApp, org: &OrgId, names: impl IntoIterator<Item = String>) {
    let streams = names
        .into_iter()
        .map(|name| StreamAppend {
            stream_id: format!("group-{name}"),
            expected_version: 0,
            events: vec![Event::GroupCreated(GroupCreated {
                group_id: name.as_str().into(),
                name,
            })],
        })
        .collect();
    EventLog::new(app.db.clone())
        .append(AppendRequest {
            org_id: org.clone(),
            meta: system_meta(),
            streams,
            constraints: vec![],
        })
        .await
        .unwrap();
}
