use crate::helpers::*;
use crate::on_both_backends;
use easm_domain::Plan;
use easm_events::{chain_hash, Event, GroupCreated, OrgId, GENESIS_HASH};
use easm_store::{AppendRequest, EventLog, StreamAppend};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, Executor};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

on_both_backends!(
    tailing_reader_sees_every_event_once_in_order_under_concurrent_appends,
    events_are_immutable_hash_chained_and_in_the_outbox,
    stale_expected_version_is_a_conflict,
    state_survives_a_restart,
);

fn group_event(i: usize) -> Event {
    Event::GroupCreated(GroupCreated {
        group_id: format!("g{i}").into(),
        name: format!("group {i}"),
    })
}

async fn append_one(log: &EventLog, org: &OrgId, stream: String) -> i64 {
    let events = log
        .append(AppendRequest {
            org_id: org.into(),
            meta: system_meta(),
            streams: vec![StreamAppend {
                stream_id: stream,
                expected_version: 0,
                events: vec![group_event(0), group_event(1)],
            }],
            constraints: vec![],
        })
        .await
        .unwrap();
    events[0].position
}

async fn tailing_reader_sees_every_event_once_in_order_under_concurrent_appends(b: Backend) {
    let app = spawn_app(b).await;
    let log = EventLog::new(app.db.clone());
    let before = app.event_count().await;
    let done = Arc::new(AtomicBool::new(false));
    let tailer = {
        let (log, done) = (log.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen: Vec<i64> = vec![];
            let mut after = 0;
            // Once the writers are done, read on until everything shows: the server's own short
            // transactions (its sweep folds these tool appends) may hold the horizon a moment.
            let mut deadline = None;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let batch = log.read_all_after(after, 37).await.unwrap();
                for e in &batch {
                    seen.push(e.position);
                    after = e.position;
                }
                if finished && batch.is_empty() {
                    let until = *deadline.get_or_insert_with(|| {
                        std::time::Instant::now() + std::time::Duration::from_secs(2)
                    });
                    if seen.len() as i64 >= before + 400 || std::time::Instant::now() > until {
                        return seen;
                    }
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    // Orgs are shared by pairs of writers, so appends both serialize and interleave.
                    append_one(&log, &format!("org-{}", w % 4).into(), format!("s-{w}-{i}")).await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = tailer.await.unwrap();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
    let all: Vec<i64> = sqlx::query_scalar("SELECT position FROM events ORDER BY position")
        .fetch_all(app.db.reader())
        .await
        .unwrap();
    assert_eq!(all.len() as i64, before + 400);
    assert_eq!(
        seen, all,
        "the tailer saw every committed event exactly once"
    );

    if b == Backend::Postgres {
        // A transaction that began writing earlier and commits later must hold readers back
        // rather than be skipped: hold one open, append after it, and look.
        let url = match &app.store.config {
            easm_store::DbConfig::Postgres { url } => url.clone(),
            _ => unreachable!(),
        };
        let mut slow = sqlx::PgConnection::connect(&url).await.unwrap();
        slow.execute("BEGIN").await.unwrap();
        slow.execute("SELECT pg_current_xact_id()").await.unwrap();
        let last = *all.last().unwrap();
        let later = append_one(&log, &"org-x".into(), "late-stream".into()).await;
        assert!(later > last);
        let visible = log.read_all_after(last, 100).await.unwrap();
        assert!(
            visible.is_empty(),
            "events behind an open transaction are not handed out yet"
        );
        slow.execute("COMMIT").await.unwrap();
        // Other short transactions of the server (its sweep folds these tool appends) may hold
        // the horizon for a moment too.
        let mut visible = vec![];
        for _ in 0..100 {
            visible = log.read_all_after(last, 100).await.unwrap();
            if !visible.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(visible.len(), 2);
        assert_eq!(visible[0].position, later);
    }
}

async fn events_are_immutable_hash_chained_and_in_the_outbox(b: Backend) {
    let app = spawn_app(b).await;
    let (org, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "G").await;
    let a = app.asset(&key, &g, "c.example.com", "subdomain").await;
    app.patch(&key, &format!("/api/assets/{a}"), json!({"tags": ["z"]}))
        .await;

    let log = EventLog::new(app.db.clone());
    // On PostgreSQL what is readable stops at the oldest transaction open anywhere in the
    // cluster: another test's may hold it back for a moment.
    let mut events = vec![];
    for _ in 0..250 {
        events = log.read_all_after(0, 1000).await.unwrap();
        if events.iter().filter(|e| e.org_id == org).count() >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mine: Vec<_> = events.iter().filter(|e| e.org_id == org).collect();
    assert_eq!(mine.len(), 5, "org, owner key, group, asset, update");
    let mut prev = GENESIS_HASH.to_string();
    for (i, e) in mine.iter().enumerate() {
        assert_eq!(e.chain_seq, i as i64 + 1);
        assert_eq!(e.prev_hash, prev);
        assert_eq!(
            e.hash,
            chain_hash(&prev, e),
            "hash recomputes from the canonical encoding"
        );
        assert_eq!(e.event_id.get_version_num(), 7, "UUID v7 ids");
        prev = e.hash.clone();
    }
    assert_eq!(mine[3].event_type, "asset.added");
    assert_eq!(mine[3].schema_version, 2);
    assert_eq!(mine[3].actor.role, Some(easm_domain::Role::Owner));
    assert!(!mine[3].request_id.is_empty());

    let outbox: Vec<i64> = sqlx::query_scalar("SELECT position FROM outbox ORDER BY position")
        .fetch_all(app.db.reader())
        .await
        .unwrap();
    let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
    assert_eq!(outbox, positions, "every event is recorded for publishing");

    // A third party recomputes the chain from the documented encoding alone.
    let ndjson: String = mine
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    let verify = |input: String| {
        let mut child = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../events/verify_chain.py"
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    assert_eq!(verify(ndjson.clone()), (true, "ok 5".to_string()));
    let tampered = ndjson.replacen("c.example.com", "d.example.com", 1);
    let (ok, msg) = verify(tampered);
    assert!(!ok && msg.starts_with("line 4:"), "{msg}");

    for sql in ["UPDATE events SET data = '{}'", "DELETE FROM events"] {
        let r = sqlx::query(sql).execute(app.db.writer()).await;
        let err = r.expect_err(sql).to_string();
        assert!(err.contains("immutable"), "{sql}: {err}");
    }
    assert_eq!(log.read_all_after(0, 1000).await.unwrap(), events);

    // An event stored at an older schema version is upcast when read.
    sqlx::query(
        "INSERT INTO events (position, event_id, stream_id, stream_version, event_type, schema_version, \
         occurred_at, org_id, actor_kind, actor_id, actor_role, request_id, correlation_id, causation_id, data, \
         chain_seq, prev_hash, hash) VALUES ($1, $2, 'asset-old', 1, 'asset.added', 1, 0, $3, 'system', 'x', NULL, \
         'r', 'r', NULL, $4, 1000, 'p', 'h')",
    )
    .bind(positions.last().unwrap() + 1)
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(org.as_str())
    .bind(json!({"assetId": "old", "groupId": g, "value": "old.com", "type": "domain"}).to_string())
    .execute(app.db.writer())
    .await
    .unwrap();
    let (version, old) = log.load(&org, "asset-old").await.unwrap();
    assert_eq!(version, 1);
    let Event::AssetAdded(added) = &old[0] else {
        panic!("{old:?}")
    };
    assert_eq!(added.criticality, "medium");
    assert!(added.tags.is_empty());
}

async fn stale_expected_version_is_a_conflict(b: Backend) {
    let app = spawn_app(b).await;
    let log = EventLog::new(app.db.clone());
    append_one(&log, &"o".into(), "s".into()).await;
    let stale = log
        .append(AppendRequest {
            org_id: "o".into(),
            meta: system_meta(),
            streams: vec![StreamAppend {
                stream_id: "s".into(),
                expected_version: 1,
                events: vec![group_event(3)],
            }],
            constraints: vec![],
        })
        .await;
    assert!(
        matches!(
            stale,
            Err(easm_store::AppendError::Conflict {
                expected: 1,
                actual: 2,
                ..
            })
        ),
        "{stale:?}"
    );
    assert_eq!(log.load(&"o".into(), "s").await.unwrap().0, 2);
}

async fn state_survives_a_restart(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "Persistent").await;
    let a = app.asset(&key, &g, "keep.example.com", "subdomain").await;
    let before = app.get(&key, &format!("/api/assets/{a}")).await.body;
    let store = app.stop().await;
    let app = spawn_on(store).await;
    let after = app.get(&key, &format!("/api/assets/{a}")).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.body, before);
    assert_eq!(
        app.get(&key, "/api/groups").await.body["items"][0]["assetCount"],
        1
    );
    app.asset(&key, &g, "more.example.com", "subdomain").await;
    let dup = app
        .post(
            &key,
            &format!("/api/groups/{g}/assets"),
            json!({"value": "keep.example.com", "type": "subdomain"}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
}
