//! Findings at scale: totals kept by the projection stay exact whatever happens to the findings,
//! cursor pages return every finding once while findings are added, and a large import
//! announces every new finding once.

use crate::delivery::Setup;
use crate::findings::{import, new_job};
use crate::helpers::*;
use crate::receiver::Receiver;
use crate::{on_both_backends, on_every_transport};
use easm_domain::Plan;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

on_both_backends!(
    totals_stay_exact_through_triage_hiding_removal_and_rebuild,
    cursor_pages_return_every_finding_once_while_findings_are_added,
);

on_every_transport!(a_large_import_announces_every_new_finding_once);

const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

/// `n` nuclei results, templates `{prefix}-{i % 7}` at distinct locations, severities in turn.
fn results(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"template-id\":\"{prefix}-{}\",\"info\":{{\"name\":\"{prefix} {i}\",\
                 \"severity\":\"{}\"}},\"matched-at\":\"https://127.0.0.1/{prefix}/{i}\"}}\n",
                i % 7,
                SEVERITIES[i % SEVERITIES.len()]
            )
        })
        .collect()
}

fn ids(page: &Answer) -> Vec<String> {
    page.items_field("id")
        .into_iter()
        .map(String::from)
        .collect()
}

/// Every filter the kept totals answer agrees with a count of the rows themselves (`since`
/// makes the count read the findings), in `/api/findings/count` and in a list's `total`.
async fn assert_totals_exact(t: &Tenant, assets: &[String], step: &str) {
    let mut queries: Vec<String> = vec![
        String::new(),
        "status=open".into(),
        "status=resolved".into(),
        "severity=high".into(),
        "severity=critical,low&status=acknowledged".into(),
        "templateId=s-3".into(),
        "templateId=s-0&severity=critical".into(),
    ];
    for a in assets {
        queries.push(format!("asset_id={a}"));
        queries.push(format!("asset_id={a}&status=open&severity=medium"));
    }
    for q in &queries {
        let kept = t.get(&format!("/api/findings/count?{q}")).await;
        let counted = t
            .get(&format!("/api/findings/count?{q}&since=1970-01-01"))
            .await;
        assert_eq!(kept.status, StatusCode::OK, "{}", kept.body);
        assert_eq!(kept.body, counted.body, "{step}: {q}");
        let page = t.get(&format!("/api/findings?{q}&perPage=1")).await;
        assert_eq!(page.body["total"], kept.body["total"], "{step}: {q}");
        assert!(page.body.get("totalCapped").is_none(), "{}", page.body);
    }
    // A group's findings are its live assets', wherever they moved.
    let mut groups = BTreeMap::new();
    for a in assets {
        let live = t.get(&format!("/api/assets/{a}")).await;
        if live.status == StatusCode::OK {
            let kept = t.get(&format!("/api/findings/count?asset_id={a}")).await;
            let group = live.body["groupId"].as_str().unwrap().to_string();
            *groups.entry(group).or_insert(0) += kept.body["total"].as_i64().unwrap();
        }
    }
    for group in [&t.group, &other_group(t).await] {
        let summary = t.get(&format!("/api/groups/{group}/summary")).await;
        let total = groups.get(group).copied().unwrap_or(0);
        assert_eq!(summary.body["findings"]["total"], total, "{step}: {group}");
    }
}

/// The tenant's second group, made on first use.
async fn other_group(t: &Tenant) -> String {
    let groups = t.get("/api/groups?perPage=100").await;
    let items = groups.body["items"].as_array().expect("a page");
    match items.iter().find(|g| g["name"] == "Other") {
        Some(g) => g["id"].as_str().unwrap().to_string(),
        None => t.app.group(&t.key, "Other").await,
    }
}

async fn totals_stay_exact_through_triage_hiding_removal_and_rebuild(b: Backend) {
    let t = Tenant::new(b, Plan::Pro, "Web").await;
    let mut assets = vec![];
    let mut jobs = vec![];
    for i in 0..3 {
        let asset = t.asset(&format!("127.0.0.{}", i + 1), "ip").await;
        let job = new_job(&t.app, &t.key, &asset, "quick").await;
        let report = import(&t.app, &t.key, &job, &results("s", 20 + 5 * i)).await;
        assert_eq!(report.status, StatusCode::OK, "{}", report.body);
        assets.push(asset);
        jobs.push(job);
    }
    assert_totals_exact(&t, &assets, "imported").await;
    let all = t.get("/api/findings/count").await;
    assert_eq!(all.body["total"], 75);
    assert_eq!(all.body["bySeverity"]["critical"], 15);

    let first = ids(&t.get("/api/findings?perPage=10&sort=severity").await);
    let one = t
        .patch(
            &format!("/api/findings/{}", first[0]),
            json!({"status": "acknowledged"}),
        )
        .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    let bulk = t
        .post(
            "/api/findings/bulk-status",
            json!({"ids": first[1..].to_vec(), "status": "resolved"}),
        )
        .await;
    assert_eq!(bulk.status, StatusCode::OK, "{}", bulk.body);
    assert_totals_exact(&t, &assets, "triaged").await;
    let resolved = t.get("/api/findings/count?status=resolved").await;
    assert_eq!(resolved.body["total"], 9);

    // A deleted job hides the findings only it detected.
    let deleted = t.delete(&format!("/api/scan-jobs/{}", jobs[0])).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_totals_exact(&t, &assets, "job deleted").await;
    assert_eq!(t.get("/api/findings/count").await.body["total"], 55);

    // Detected again: the hidden come back, the resolved reopen.
    for (asset, n) in [(&assets[0], 20), (&assets[1], 25)] {
        let job = new_job(&t.app, &t.key, asset, "deep").await;
        import(&t.app, &t.key, &job, &results("s", n)).await;
    }
    assert_totals_exact(&t, &assets, "detected again").await;
    assert_eq!(t.get("/api/findings/count").await.body["total"], 75);

    // Moved to another group one after the other, with a status change between.
    let other = other_group(&t).await;
    let move_to_other = |asset: &String| {
        let path = format!("/api/assets/{asset}");
        let t = &t;
        let other = other.clone();
        async move {
            let moved = t.patch(&path, json!({"groupId": other})).await;
            assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
        }
    };
    move_to_other(&assets[1]).await;
    assert_totals_exact(&t, &assets, "asset moved").await;
    let other_total = t.get(&format!("/api/groups/{other}/summary")).await;
    assert_eq!(other_total.body["findings"]["total"], 25);
    let of_moved = format!("/api/findings?asset_id={}&perPage=3", assets[1]);
    let of_moved = ids(&t.get(&of_moved).await);
    let bulk = t
        .post(
            "/api/findings/bulk-status",
            json!({"ids": of_moved, "status": "ignored"}),
        )
        .await;
    assert_eq!(bulk.status, StatusCode::OK, "{}", bulk.body);
    assert_totals_exact(&t, &assets, "moved asset triaged").await;
    move_to_other(&assets[0]).await;
    assert_totals_exact(&t, &assets, "second asset moved").await;

    let removed = t.delete(&format!("/api/assets/{}", assets[2])).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    assert_totals_exact(&t, &assets, "asset removed").await;
    let removed = t.delete(&format!("/api/assets/{}", assets[1])).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    assert_totals_exact(&t, &assets, "moved asset removed").await;

    let before = t.app.state.read().dump().await.unwrap();
    t.app.state.commands.projector().rebuild().await.unwrap();
    assert_eq!(t.app.state.read().dump().await.unwrap(), before);
    assert_totals_exact(&t, &assets, "rebuilt").await;
}

/// Follows `nextCursor` from the first page of `query` to the last, importing findings under
/// `job` between pages; answers the ids seen, in order.
async fn walk(t: &Tenant, query: &str, job: &str, added: &mut usize) -> Vec<String> {
    let mut seen = vec![];
    let mut page = t.get(&format!("/api/findings?{query}&perPage=7")).await;
    loop {
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_eq!(page.body["perPage"], 7);
        seen.extend(ids(&page));
        let Some(cursor) = page.body["nextCursor"].as_str().map(String::from) else {
            assert!(ids(&page).len() <= 7);
            return seen;
        };
        assert_eq!(ids(&page).len(), 7, "only the last page is short");
        *added += 1;
        let more = import(&t.app, &t.key, job, &results(&format!("n{added}"), 3)).await;
        assert_eq!(more.body["new"], 3, "{}", more.body);
        page = t
            .get(&format!("/api/findings?{query}&perPage=7&after={cursor}"))
            .await;
        assert!(page.body.get("page").is_none(), "{}", page.body);
    }
}

async fn cursor_pages_return_every_finding_once_while_findings_are_added(b: Backend) {
    let t = Tenant::new(b, Plan::Pro, "Web").await;
    let asset = t.asset("127.0.0.1", "ip").await;
    let job = new_job(&t.app, &t.key, &asset, "quick").await;
    import(&t.app, &t.key, &job, &results("s", 40)).await;
    let mut added = 0;
    for query in [
        "sort=lastDetected",
        "sort=firstDetected",
        "sort=severity",
        "severity=high,low",
        "status=open&sort=severity",
    ] {
        let before: BTreeSet<String> = {
            let all = t.get(&format!("/api/findings?{query}&perPage=100")).await;
            ids(&all).into_iter().collect()
        };
        let seen = walk(&t, query, &job, &mut added).await;
        let distinct: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(distinct.len(), seen.len(), "{query}: a finding twice");
        assert!(
            before.is_subset(&distinct),
            "{query}: {} of {} findings missed",
            before.difference(&distinct).count(),
            before.len()
        );
        // Numbered pages give the same order as cursors when nothing is added.
        let numbered: Vec<String> = {
            let mut out = vec![];
            for n in 1.. {
                let page = t
                    .get(&format!("/api/findings?{query}&perPage=7&page={n}"))
                    .await;
                if ids(&page).is_empty() {
                    break;
                }
                out.extend(ids(&page));
            }
            out
        };
        let settled = walk_quietly(&t, query).await;
        assert_eq!(settled, numbered, "{query}");
    }

    let first = t.get("/api/findings?perPage=5&sort=severity").await;
    let cursor = first.body["nextCursor"].as_str().unwrap();
    let next = t
        .get(&format!("/api/findings?perPage=5&after={cursor}"))
        .await;
    // The cursor carries its order; a page number means nothing beside it.
    for also in ["&page=3", "&sort=firstDetected"] {
        let same = t
            .get(&format!("/api/findings?perPage=5&after={cursor}{also}"))
            .await;
        assert_eq!(ids(&same), ids(&next), "{also}");
    }
    for bad in ["zz", "6f7267", "abc"] {
        let refused = t.get(&format!("/api/findings?after={bad}")).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            refused.body
        );
        assert_eq!(refused.body["field"], "after", "{}", refused.body);
    }
    let last = t.get("/api/findings?perPage=100&templateId=s-3").await;
    assert!(last.body.get("nextCursor").is_none(), "{}", last.body);
    assert_eq!(last.body["page"], Value::from(1));
}

/// The ids of every cursor page of `query`, nothing added meanwhile.
async fn walk_quietly(t: &Tenant, query: &str) -> Vec<String> {
    let mut seen = vec![];
    let mut after = String::new();
    loop {
        let page = t
            .get(&format!("/api/findings?{query}&perPage=7{after}"))
            .await;
        seen.extend(ids(&page));
        match page.body["nextCursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => return seen,
        }
    }
}

/// More findings than a list counts beyond its kept totals.
const LARGE: usize = 10_500;

async fn a_large_import_announces_every_new_finding_once(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[("EASM_WEBHOOK_RATE", "100000")]).await;
    let receiver = Receiver::start().await;
    s.webhook(&receiver.url, &["finding.new"]).await;
    let (_, job) = s.scan_job("deep").await;
    let report = s.import(&job, results("large", LARGE)).await;
    assert_eq!(report.status(), StatusCode::OK);
    let report: Value = report.json().await.unwrap();
    assert_eq!(report["new"], LARGE, "{report}");

    let got = receiver.wait_for(LARGE, Duration::from_secs(180)).await;
    let announced: BTreeSet<String> = got
        .iter()
        .map(|r| r.json()["data"]["findingId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(announced.len(), LARGE, "every new finding announced");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.received().len(), LARGE, "and announced once");

    let listed = s.get("/api/findings?perPage=1").await;
    assert_eq!(listed.body["total"], LARGE);
    assert!(listed.body.get("totalCapped").is_none());
    // A text filter has no kept total: the list counts so far, the count endpoint in full.
    let searched = s.get("/api/findings?perPage=1&q=large").await;
    assert_eq!(searched.body["total"], 10_000);
    assert_eq!(searched.body["totalCapped"], true);
    let counted = s.get("/api/findings/count?q=large").await;
    assert_eq!(counted.body["total"], LARGE);
}
