//! Group commit: concurrent appends of one organization committed together, each answered on its
//! own checks, in one process, in two, and through a crash.

use crate::cli::easm;
use crate::delivery::Setup;
use crate::helpers::*;
use crate::on_both_backends;
use easm_domain::Plan;
use easm_events::{chain_hash, Event, GroupCreated, OrgId, GENESIS_HASH};
use easm_store::{AppendError, AppendRequest, Constraint, Db, EventLog, FeedFilter, StreamAppend};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

on_both_backends!(
    each_append_of_a_batch_is_answered_on_its_own_checks,
    two_processes_racing_for_the_same_values_commit_each_once,
    a_crash_during_batches_loses_no_acknowledged_command,
);

/// The organization's chain links from genesis, every hash recomputes, and chain order is
/// position order.
pub(crate) async fn assert_chain_intact(log: &EventLog, org: &OrgId) -> usize {
    let filter = FeedFilter {
        chain_order: true,
        ..Default::default()
    };
    let events = log.org_after(org, 0, 1_000_000, &filter).await.unwrap();
    let mut prev = GENESIS_HASH.to_string();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.chain_seq, i as i64 + 1, "no gap in the chain");
        assert_eq!(
            e.prev_hash, prev,
            "event {} links to its predecessor",
            e.chain_seq
        );
        assert_eq!(
            e.hash,
            chain_hash(&prev, e),
            "event {} recomputes",
            e.chain_seq
        );
        if i > 0 {
            assert!(
                e.position > events[i - 1].position,
                "chain order is position order"
            );
        }
        prev = e.hash.clone();
    }
    events.len()
}

/// Kinds of append racing in one batch, by `i % 4`: a stream of its own; one stream everyone
/// creates; a key everyone claims (with one of its own beside it); a quota of four.
fn racing_append(org: &OrgId, i: usize) -> AppendRequest {
    let stream = match i % 4 {
        1 => "group-same".to_string(),
        _ => format!("group-r{i}"),
    };
    let claim = |scope: &str, key: String| Constraint::Claim {
        scope: scope.into(),
        key,
        owner: format!("r{i}"),
    };
    let constraints = match i % 4 {
        2 => vec![claim("t", "dup".into()), claim("t", format!("own{i}"))],
        3 => vec![
            claim("quota", format!("q{i}")),
            Constraint::AtMost {
                scope: "quota".into(),
                max: 4,
            },
        ],
        _ => vec![],
    };
    AppendRequest {
        org_id: org.clone(),
        meta: system_meta(),
        streams: vec![StreamAppend {
            stream_id: stream.clone(),
            expected_version: 0,
            events: vec![Event::GroupCreated(GroupCreated {
                group_id: format!("{stream}-{i}").into(),
                name: format!("racing {i}"),
            })],
        }],
        constraints,
    }
}

async fn each_append_of_a_batch_is_answered_on_its_own_checks(b: Backend) {
    let app = spawn_app(b).await;
    let (org, _) = app.org(Plan::Pro).await;
    let log = EventLog::new(app.db.clone());
    let before = assert_chain_intact(&log, &org).await;

    // Held out of the organization's lock (PostgreSQL) or the one writer (SQLite) for a moment,
    // the appends queue up behind the first and commit together.
    let mut hold = app.db.writer().begin().await.unwrap();
    if b == Backend::Postgres {
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) l")
            .bind(org.as_str())
            .execute(&mut *hold)
            .await
            .unwrap();
    }
    let appends: Vec<_> = (0..40)
        .map(|i| {
            let (log, req) = (log.clone(), racing_append(&org, i));
            tokio::spawn(async move { (i, log.append(req).await) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    hold.rollback().await.unwrap();

    let (mut ok, mut conflicts, mut refused) = (vec![], 0, 0);
    for a in appends {
        match a.await.unwrap() {
            (i, Ok(events)) => {
                assert_eq!(events.len(), 1);
                ok.push(i % 4)
            }
            (i, Err(AppendError::Conflict { .. })) => {
                assert_eq!(i % 4, 1, "only the shared stream conflicts");
                conflicts += 1
            }
            (i, Err(AppendError::Constraint(_))) => {
                assert!(i % 4 >= 2, "only claims are refused");
                refused += 1
            }
            (i, Err(e)) => panic!("append {i}: {e}"),
        }
    }
    ok.sort();
    let kinds = |k| ok.iter().filter(|&&x| x == k).count();
    assert_eq!(
        (kinds(0), kinds(1), kinds(2), kinds(3)),
        (10, 1, 1, 4),
        "own streams all commit; one creates the shared stream; one claims the key; four fill the quota"
    );
    assert_eq!((conflicts, refused), (9, 9 + 6));

    let counts = log.commit_counts();
    assert_eq!(counts.appends, 16);
    assert!(
        counts.transactions <= 3,
        "the queued appends committed together: {counts:?}"
    );
    assert_eq!(assert_chain_intact(&log, &org).await, before + 16);
    // A refused append's claims went back with it, the winner's stayed.
    assert_eq!(log.count_reservations(&org, "t").await.unwrap(), 2);
    assert_eq!(log.count_reservations(&org, "quota").await.unwrap(), 4);
    let keys: Vec<String> = (0..40)
        .map(|i| format!("own{i}"))
        .chain(["dup".to_string()])
        .collect();
    let held = log.reservations(&org, "t", &keys).await.unwrap();
    let winner = &held.iter().find(|(k, _)| k == "dup").unwrap().1;
    assert_eq!(
        held.iter().map(|(_, owner)| owner).collect::<Vec<_>>(),
        [winner, winner],
        "the key and the winner's own claim: {held:?}"
    );
}

/// Asset values every client of both processes adds, and values each adds alone.
const SHARED: usize = 20;
const OWN: usize = 8;
const CLIENTS: usize = 4;

async fn two_processes_racing_for_the_same_values_commit_each_once(b: Backend) {
    let mut s = Setup::start(b, false, &[]).await;
    let second = start_easm(
        &s.store,
        &["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"],
        &s.env,
    );
    let group = s.post("/api/groups", json!({"name": "race"})).await.id();
    let http = reqwest::Client::new();
    let urls = [
        s.server
            .as_ref()
            .unwrap()
            .url(&format!("/api/groups/{group}/assets")),
        second.url(&format!("/api/groups/{group}/assets")),
    ];
    let clients: Vec<_> = (0..2 * CLIENTS)
        .map(|c| {
            let (http, url, key) = (http.clone(), urls[c % 2].clone(), s.key.clone());
            tokio::spawn(async move {
                let mut values: Vec<String> =
                    (0..SHARED).map(|v| format!("s{v}.race.test")).collect();
                values.extend((0..OWN).map(|v| format!("c{c}-{v}.race.test")));
                values.rotate_left(c * 3);
                let mut created = vec![];
                for value in values {
                    let res = http
                        .post(&url)
                        .header("X-API-Key", &key)
                        .json(&json!({"value": value, "type": "subdomain"}))
                        .send()
                        .await
                        .unwrap();
                    match res.status() {
                        StatusCode::CREATED => created.push(value),
                        StatusCode::CONFLICT => {}
                        other => panic!("{value}: {other} {}", res.text().await.unwrap()),
                    }
                }
                created
            })
        })
        .collect();
    let mut created = vec![];
    for c in clients {
        created.extend(c.await.unwrap());
    }
    let distinct: BTreeSet<&String> = created.iter().collect();
    assert_eq!(created.len(), distinct.len(), "each value is created once");
    assert_eq!(created.len(), SHARED + 2 * CLIENTS * OWN);

    assert_eq!(listed_values(&s).await.len(), created.len());
    drop(second);
    s.server.take();
    let db = Db::connect(&s.store.config).await.unwrap();
    assert_chain_intact(&EventLog::new(db.clone()), &s.org).await;
    db.close().await;
    easm(&s.store, &["projections", "verify"]);
}

/// The values of every asset, page after page.
async fn listed_values(s: &Setup) -> BTreeSet<String> {
    let mut values = BTreeSet::new();
    for page in 1.. {
        let got = s.get(&format!("/api/assets?perPage=100&page={page}")).await;
        let items = got.body["items"].as_array().unwrap().clone();
        if items.is_empty() {
            return values;
        }
        values.extend(
            items
                .iter()
                .map(|a| a["value"].as_str().unwrap().to_string()),
        );
    }
    values
}

async fn a_crash_during_batches_loses_no_acknowledged_command(b: Backend) {
    let mut s = Setup::start(b, false, &[]).await;
    let group = s.post("/api/groups", json!({"name": "crash"})).await.id();
    let url = s
        .server
        .as_ref()
        .unwrap()
        .url(&format!("/api/groups/{group}/assets"));
    let http = reqwest::Client::new();
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let (http, url, key) = (http.clone(), url.clone(), s.key.clone());
            tokio::spawn(async move {
                let mut acknowledged = vec![];
                for v in 0.. {
                    let value = format!("c{c}-{v}.crash.test");
                    let sent = http
                        .post(&url)
                        .header("X-API-Key", &key)
                        .json(&json!({"value": value, "type": "subdomain"}))
                        .send()
                        .await;
                    match sent {
                        Ok(res) if res.status() == StatusCode::CREATED => acknowledged.push(value),
                        Ok(res) => panic!("{value}: {}", res.status()),
                        // The process is gone.
                        Err(_) => return acknowledged,
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.server.take().unwrap().kill();
    let mut acknowledged = vec![];
    for c in clients {
        acknowledged.extend(c.await.unwrap());
    }
    assert!(acknowledged.len() > 100, "load ran: {}", acknowledged.len());

    s.restart();
    let values = listed_values(&s).await;
    for v in &acknowledged {
        assert!(values.contains(v), "{v} was acknowledged, then lost");
    }
    s.server.take();
    let db = Db::connect(&s.store.config).await.unwrap();
    assert_chain_intact(&EventLog::new(db.clone()), &s.org).await;
    db.close().await;
    easm(&s.store, &["projections", "verify"]);
}
