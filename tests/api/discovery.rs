//! Discovery end to end: `easm serve` runs jobs over zones held by a real authoritative DNS
//! server on 127.0.0.1 (names, a wildcard zone, an alias to a missing name, AXFR allowed), a
//! crt.sh-format HTTP server and an HTTPS server with names in its certificate; the names
//! found can be promoted to assets within the plan. On SQLite, and on PostgreSQL with NATS.

use crate::delivery::Setup;
use crate::helpers::{spawn_app, system_meta, Backend};
use crate::scanner::PRIVATE;
use crate::targets::{self, cert};
use crate::{on_both_backends, on_sqlite_and_nats};
use easm::zone_server::{ZoneServer, Zones};
use easm_domain::Plan;
use easm_events::{DiscoveryCompleted, DiscoveryJobId, FoundName};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

on_sqlite_and_nats!(
    every_module_finds_its_names_and_wildcards_are_filtered,
    a_monitor_of_a_domain_alerts_on_names_no_earlier_run_found,
    a_discovery_job_survives_its_worker_and_stops_when_cancelled,
    a_deep_job_permutes_found_names_and_filters_a_wildcard_sub_zone,
);
on_both_backends!(
    promotion_adds_only_found_values_within_the_plan,
    discovery_jobs_are_validated_and_counted_per_month,
);

const LOCAL: [u8; 4] = [127, 0, 0, 1];
const MAPPED: &str = "::ffff:127.0.0.2";

fn zones() -> Zones {
    Zones::default()
        .zone("disc.test")
        .allow_transfer("disc.test")
        .a("ns.disc.test", LOCAL.into())
        .a("www.disc.test", LOCAL.into())
        .a("api.disc.test", [127, 0, 0, 2].into())
        .a("secret-internal.disc.test", [127, 0, 0, 3].into())
        .a("ct-only-host.disc.test", LOCAL.into())
        .a("san-only-host.disc.test", LOCAL.into())
        .a("rev-only-host.disc.test", [127, 0, 0, 2].into())
        .cname("old.disc.test", "gone.other.test")
        .a("*.wild.disc.test", [127, 0, 0, 9].into())
        .a("real.wild.disc.test", [127, 0, 0, 10].into())
        .a("api-dev.disc.test", LOCAL.into())
        .zone("other.test")
        .zone("wildroot.test")
        .a("ns.wildroot.test", LOCAL.into())
        .a("*.wildroot.test", [127, 0, 0, 9].into())
        .a("www.wildroot.test", [127, 0, 0, 4].into())
        // Reverse names of 127/8 are `localhost` by RFC 6761, whatever a server says: the
        // reverse name is served for a mapped address (which still reaches only loopback).
        .a("mail.disc.test", MAPPED.parse().unwrap())
        .zone("ip6.arpa")
        .ptr(MAPPED.parse().unwrap(), "rev-only-host.disc.test")
}

/// A crt.sh-format answer for `disc.test`: a live name, an expired-only one, a wildcard.
fn ct_answer() -> String {
    json!([
        {"name_value": "*.disc.test\nct-only-host.disc.test", "common_name": "disc.test", "not_after": "2099-01-01T00:00:00"},
        {"name_value": "expired-host.disc.test", "not_after": "2001-01-01T00:00:00"},
        {"name_value": "mail.elsewhere.test", "not_after": "2099-01-01T00:00:00"}
    ])
    .to_string()
}

pub(crate) async fn discovery_when(s: &Setup, job: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let a = s.get(&format!("/api/discovery/jobs/{job}")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        if a.body["status"] == status {
            return a.body;
        }
        let ended =
            ["completed", "failed", "cancelled"].contains(&a.body["status"].as_str().unwrap());
        assert!(!ended, "the job ended otherwise: {}", a.body);
        assert!(Instant::now() < deadline, "never {status}: {}", a.body);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn by_name(job: &Value) -> BTreeMap<String, Value> {
    job["subdomains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s.clone()))
        .collect()
}

fn sources(found: &BTreeMap<String, Value>, name: &str) -> Vec<String> {
    let s = &found
        .get(name)
        .unwrap_or_else(|| panic!("{name} not found in {found:?}"))["sources"];
    s.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

async fn every_module_finds_its_names_and_wildcards_are_filtered(b: Backend, nats: bool) {
    let dns = ZoneServer::start(zones()).await.unwrap();
    let ct = targets::http(
        None,
        Arc::new(|req: &str| {
            let body = if req.contains("disc.test") {
                ct_answer()
            } else {
                "[]".into()
            };
            (200, vec![("Content-Type", "application/json".into())], body)
        }),
    )
    .await;
    let tls_cert = cert(
        &["www.disc.test", "san-only-host.disc.test", "*.disc.test"],
        (2024, 1, 1),
        (2099, 1, 1),
    );
    let https = targets::http(Some(&tls_cert), Arc::new(|_| (200, vec![], "ok".into()))).await;
    let (resolver, axfr_port) = (dns.addr.to_string(), dns.addr.port().to_string());
    let ct_url = format!("http://127.0.0.1:{}", ct.port);
    let tls_port = https.port.to_string();
    let s = Setup::start(
        b,
        nats,
        &[
            PRIVATE,
            ("EASM_SCAN_RESOLVER", &resolver),
            ("EASM_DISCOVERY_AXFR_PORT", &axfr_port),
            ("EASM_DISCOVERY_CT_URL", &ct_url),
            ("EASM_DISCOVERY_TLS_PORTS", &tls_port),
        ],
    )
    .await;
    // The root is an asset: what discovery finds wrong with it becomes its findings.
    let root = crate::scanner::asset(&s, "disc.test", "domain").await;
    let run = s
        .post(
            "/api/discovery/run",
            json!({"domains": ["Disc.Test", "wildroot.test"], "deep": false}),
        )
        .await;
    assert_eq!(run.status, StatusCode::ACCEPTED, "{}", run.body);
    assert_eq!(run.body["status"], "queued");
    assert_eq!(run.body["domains"], json!(["disc.test", "wildroot.test"]));
    assert_eq!(run.body["deep"], false);
    assert!(run.body["createdAt"].is_string());
    let job = discovery_when(&s, &run.id(), "completed").await;
    let found = by_name(&job);
    assert_eq!(sources(&found, "www.disc.test")[0], "axfr");
    assert!(sources(&found, "www.disc.test").contains(&"bruteforce".into()));
    assert!(sources(&found, "api.disc.test").contains(&"bruteforce".into()));
    assert_eq!(sources(&found, "secret-internal.disc.test"), ["axfr"]);
    assert!(sources(&found, "ct-only-host.disc.test").contains(&"ct".into()));
    assert_eq!(sources(&found, "expired-host.disc.test"), ["ct"]);
    assert_eq!(found["expired-host.disc.test"]["expired"], true);
    assert_eq!(found["expired-host.disc.test"]["addresses"], json!([]));
    assert_eq!(found["ct-only-host.disc.test"]["expired"], false);
    assert_eq!(found["api.disc.test"]["addresses"], json!(["127.0.0.2"]));
    assert_eq!(found["old.disc.test"]["cname"], "gone.other.test");
    assert!(found["www.disc.test"]["firstSeen"].is_string());
    // The wildcard zone yields its real names (its name server's too), not the wordlist.
    let wild: Vec<&String> = found
        .keys()
        .filter(|n| n.ends_with("wildroot.test"))
        .collect();
    assert_eq!(wild, ["ns.wildroot.test", "www.wildroot.test"]);
    assert_eq!(job["wildcard"][0]["zone"], "wildroot.test");
    assert_eq!(job["wildcard"][0]["answers"], json!(["127.0.0.9"]));
    assert!(
        job["wildcard"][0]["filtered"].as_u64().unwrap() > 2_000,
        "{}",
        job["wildcard"]
    );
    // Names only the axfr zone, the certificate and reverse DNS held (axfr ran first and
    // found them all, so the later modules add their sources).
    assert!(!found.contains_key("mail.elsewhere.test"));
    let modules: Vec<&str> = job["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["module"].as_str().unwrap())
        .collect();
    assert_eq!(modules, ["ct", "axfr", "bruteforce", "tls", "reverse"]);
    assert!(
        job["modules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["error"].is_null()),
        "{}",
        job["modules"]
    );
    let service = &job["services"][0];
    assert_eq!(service["port"], https.port);
    assert!(service["sans"]
        .as_array()
        .unwrap()
        .contains(&json!("san-only-host.disc.test")));
    let ip = job["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["address"] == MAPPED)
        .unwrap()
        .clone();
    assert_eq!(ip["ptr"], json!(["rev-only-host.disc.test"]));
    assert_eq!(job["progress"], 100);
    assert_eq!(
        job["subdomainCount"].as_u64().unwrap() as usize,
        found.len()
    );
    let new: Vec<&str> = job["newNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(new.len(), found.len(), "a first run finds only new names");
    let findings = dns_findings(&s, &root).await;
    assert_eq!(
        findings.keys().collect::<Vec<_>>(),
        ["dns.dangling-cname", "dns.zone-transfer"]
    );
    let zt = &findings["dns.zone-transfer"];
    assert_eq!(zt["severity"], "high");
    assert_eq!(zt["source"], "discovery");
    assert_eq!(zt["discoveryJobIds"], json!([run.id()]));
    assert_eq!(zt["scanJobIds"], json!([]));
    assert_eq!(findings["dns.dangling-cname"]["matchedAt"], "old.disc.test");
    assert!(findings["dns.dangling-cname"]["evidence"]
        .as_str()
        .unwrap()
        .contains("gone.other.test"));
    // The second run finds the same names, none of them new.
    let again = s
        .post("/api/discovery/run", json!({"domains": ["disc.test"]}))
        .await;
    let again = discovery_when(&s, &again.id(), "completed").await;
    assert!(by_name(&again).contains_key("www.disc.test"));
    let findings = dns_findings(&s, &root).await;
    assert_eq!(findings.len(), 2, "detected again, not twice");
    assert_eq!(findings["dns.zone-transfer"]["detectionCount"], 2);
    assert_eq!(findings["dns.zone-transfer"]["status"], "open");
    assert_eq!(again["newNames"], json!([]));
    assert_eq!(
        by_name(&again)["www.disc.test"]["firstSeen"],
        found["www.disc.test"]["firstSeen"],
        "first seen by the organization, in the earlier job"
    );
    let list = s.get("/api/discovery/jobs?status=completed").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["total"], 2);
    assert!(list.body["items"][0].get("subdomains").is_none());
    let audit = s.get("/api/audit-log?action=discovery.completed").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    assert_eq!(audit.body["total"], 2, "{}", audit.body);
    let cancelled = s
        .post(
            &format!("/api/discovery/jobs/{}/cancel", run.id()),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::CONFLICT);
}

async fn a_monitor_of_a_domain_alerts_on_names_no_earlier_run_found(b: Backend, nats: bool) {
    let dns = ZoneServer::start(zones()).await.unwrap();
    let logged = Arc::new(std::sync::Mutex::new(vec!["www.disc.test"]));
    let ct = targets::http(None, {
        let logged = logged.clone();
        Arc::new(move |_: &str| {
            let names = logged.lock().unwrap().join("\n");
            let body = json!([{"name_value": names, "not_after": "2099-01-01T00:00:00"}]);
            (
                200,
                vec![("Content-Type", "application/json".into())],
                body.to_string(),
            )
        })
    })
    .await;
    let (resolver, ct_url) = (
        dns.addr.to_string(),
        format!("http://127.0.0.1:{}", ct.port),
    );
    let s = Setup::start(
        b,
        nats,
        &[
            PRIVATE,
            ("EASM_SCAN_RESOLVER", &resolver),
            ("EASM_DISCOVERY_CT_URL", &ct_url),
            ("EASM_DISCOVERY_MODULES", "ct"),
        ],
    )
    .await;
    let root = crate::scanner::asset(&s, "disc.test", "domain").await;
    let monitor = s.post("/api/monitors", json!({"assetId": root})).await;
    assert_eq!(monitor.status, StatusCode::CREATED, "{}", monitor.body);
    let first = run_monitor(&s, &monitor.id()).await;
    let baseline = discovery_when(&s, &first, "completed").await;
    assert_eq!(baseline["monitorId"], monitor.id().as_str());
    assert_eq!(baseline["newNames"], json!(["www.disc.test"]));
    let alerts = s.get("/api/monitors/alerts?type=new_subdomain").await;
    assert_eq!(
        alerts.body["total"], 0,
        "the first run is the baseline: {}",
        alerts.body
    );
    logged.lock().unwrap().push("brand-new.disc.test");
    let second = run_monitor(&s, &monitor.id()).await;
    let job = discovery_when(&s, &second, "completed").await;
    assert_eq!(job["newNames"], json!(["brand-new.disc.test"]));
    let alerts = s.get("/api/monitors/alerts?type=new_subdomain").await;
    assert_eq!(alerts.body["total"], 1, "{}", alerts.body);
    let alert = &alerts.body["items"][0];
    assert_eq!(alert["assetId"], root.as_str());
    assert_eq!(alert["monitorId"], monitor.id().as_str());
    assert_eq!(alert["discoveryJobId"], second.as_str());
    assert_eq!(alert["scanJobId"], Value::Null);
    assert_eq!(alert["details"]["name"], "brand-new.disc.test");
    assert_eq!(alert["details"]["domain"], "disc.test");
    assert_eq!(alert["severity"], "medium");
}

async fn a_discovery_job_survives_its_worker_and_stops_when_cancelled(b: Backend, nats: bool) {
    let dns = ZoneServer::start(zones()).await.unwrap();
    // Certificate transparency that keeps every job waiting 3 s, then fails.
    let ct = targets::slow(Duration::from_secs(3)).await;
    let (resolver, ct_url) = (
        dns.addr.to_string(),
        format!("http://127.0.0.1:{}", ct.port),
    );
    let mut s = Setup::start(
        b,
        nats,
        &[
            PRIVATE,
            ("EASM_SCAN_LEASE", "2s"),
            ("EASM_SCAN_RESOLVER", &resolver),
            ("EASM_DISCOVERY_CT_URL", &ct_url),
            ("EASM_DISCOVERY_MODULES", "ct,bruteforce"),
        ],
    )
    .await;
    let receiver = crate::receiver::Receiver::start().await;
    s.webhook(&receiver.url, &["discovery.completed"]).await;
    let job = s
        .post("/api/discovery/run", json!({"domains": ["disc.test"]}))
        .await
        .id();
    discovery_when(&s, &job, "running").await;
    s.server.take().unwrap().kill();
    s.restart();
    let done = discovery_when(&s, &job, "completed").await;
    // Taken over (a loaded machine may let a lease of 2 s lapse once more).
    assert!(done["attempts"].as_u64().unwrap() >= 2, "{done}");
    assert!(by_name(&done).contains_key("api.disc.test"));
    assert!(done["modules"][0]["error"]
        .as_str()
        .unwrap()
        .contains("certificate transparency"));
    let got = receiver.wait_for(1, crate::delivery::WAIT).await;
    assert_eq!(got[0].json()["type"], "discovery.completed");
    assert_eq!(got[0].json()["data"]["discoveryJobId"], job.as_str());
    // A cancelled job stops where it is and never completes.
    let other = s
        .post("/api/discovery/run", json!({"domains": ["disc.test"]}))
        .await
        .id();
    discovery_when(&s, &other, "running").await;
    let cancelled = s
        .post(&format!("/api/discovery/jobs/{other}/cancel"), json!({}))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = s.get(&format!("/api/discovery/jobs/{other}")).await;
    assert_eq!(after.body["status"], "cancelled", "{}", after.body);
    assert_eq!(
        receiver.received().len(),
        1,
        "one discovery.completed, once"
    );
}

async fn a_deep_job_permutes_found_names_and_filters_a_wildcard_sub_zone(b: Backend, nats: bool) {
    let dns = ZoneServer::start(zones()).await.unwrap();
    let ct = targets::http(
        None,
        Arc::new(|_: &str| {
            let names = "api.disc.test\nreal.wild.disc.test";
            let body = json!([{"name_value": names, "not_after": "2099-01-01T00:00:00"}]);
            (
                200,
                vec![("Content-Type", "application/json".into())],
                body.to_string(),
            )
        }),
    )
    .await;
    let (resolver, ct_url) = (
        dns.addr.to_string(),
        format!("http://127.0.0.1:{}", ct.port),
    );
    let s = Setup::start(
        b,
        nats,
        &[
            PRIVATE,
            ("EASM_SCAN_RESOLVER", &resolver),
            ("EASM_DISCOVERY_CT_URL", &ct_url),
            ("EASM_DISCOVERY_MODULES", "ct,permutations"),
        ],
    )
    .await;
    let shallow = s
        .post("/api/discovery/run", json!({"domains": ["disc.test"]}))
        .await
        .id();
    let shallow = discovery_when(&s, &shallow, "completed").await;
    let modules: Vec<&str> = shallow["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["module"].as_str().unwrap())
        .collect();
    assert_eq!(modules, ["ct"], "permutations run in deep jobs only");
    let deep = s
        .post(
            "/api/discovery/run",
            json!({"domains": ["disc.test"], "deep": true}),
        )
        .await
        .id();
    let job = discovery_when(&s, &deep, "completed").await;
    let found = by_name(&job);
    assert_eq!(sources(&found, "api-dev.disc.test"), ["permutations"]);
    // Permutations under `wild.disc.test` all answer its wildcard: none is reported.
    let wild: Vec<&String> = found
        .keys()
        .filter(|n| n.ends_with(".wild.disc.test"))
        .collect();
    assert_eq!(wild, ["real.wild.disc.test"]);
    let zones: Vec<&str> = job["wildcard"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["zone"].as_str().unwrap())
        .collect();
    assert_eq!(zones, ["wild.disc.test"]);
    assert!(
        job["wildcard"][0]["filtered"].as_u64().unwrap() > 10,
        "{}",
        job["wildcard"]
    );
}

/// Run a monitor by hand; its discovery job.
async fn run_monitor(s: &Setup, monitor: &str) -> String {
    let a = s
        .post(&format!("/api/monitors/{monitor}/run"), json!({}))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    a.body["discoveryJobIds"][0].as_str().unwrap().to_string()
}

/// The findings of `asset` by template.
async fn dns_findings(s: &Setup, asset: &str) -> BTreeMap<String, Value> {
    let a = s.get(&format!("/api/findings?asset_id={asset}")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["templateId"].as_str().unwrap().to_string(), f.clone()))
        .collect()
}

/// A job of `org` that ran and found `names` (with addresses), driven through the command side
/// as a worker would.
async fn found_job(
    app: &crate::helpers::TestApp,
    org: &easm_events::OrgId,
    names: &[(&str, &str)],
) -> DiscoveryJobId {
    let c = &app.state.commands;
    let meta = system_meta();
    let id = c
        .request_discovery(&meta, org, Plan::Free, &["example.com".into()], false, None)
        .await
        .unwrap();
    c.start_discovery(&meta, org, &id, "w1")
        .await
        .unwrap()
        .unwrap();
    let found: Vec<FoundName> = names
        .iter()
        .map(|(n, a)| FoundName {
            name: n.to_string(),
            addresses: vec![a.to_string()],
            sources: vec!["bruteforce".into()],
            ..Default::default()
        })
        .collect();
    assert!(c.discovery_found(&meta, org, &id, &found).await.unwrap());
    let summary = DiscoveryCompleted {
        discovery_job_id: id.clone(),
        domains: vec![],
        modules: vec![],
        subdomains: 0,
        new_names: vec![],
        ips: vec![],
        services: vec![],
        wildcard: vec![],
    };
    c.complete_discovery(&meta, org, &id, summary, &[])
        .await
        .unwrap();
    id
}

async fn promotion_adds_only_found_values_within_the_plan(b: Backend) {
    let app = spawn_app(b).await;
    let (org, key) = app.org(Plan::Free).await;
    let job = found_job(
        &app,
        &org,
        &[
            ("api.example.com", "192.0.2.1"),
            ("www.example.com", "192.0.2.2"),
        ],
    )
    .await;
    let path = format!("/api/discovery/jobs/{job}/add-assets");
    let a = app
        .post(
            &key,
            &path,
            json!({"values": ["API.example.com", "192.0.2.2", "other.example.com", "api.example.com"]}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["added"], 2);
    let values: Vec<&str> = a.items_field("value");
    assert_eq!(values, ["api.example.com", "192.0.2.2"]);
    assert_eq!(a.body["items"][0]["type"], "subdomain");
    assert_eq!(a.body["items"][1]["type"], "ip");
    assert_eq!(a.body["skipped"][0]["value"], "other.example.com");
    assert!(a.body["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("not found by this discovery job"));
    let group = a.body["items"][0]["groupId"].as_str().unwrap().to_string();
    let g = app.get(&key, &format!("/api/groups/{group}")).await;
    assert_eq!(g.body["name"], "Discovered");
    // Promoting again: already assets, skipped with the reason; the same group is reused.
    let again = app
        .post(
            &key,
            &path,
            json!({"values": ["www.example.com", "api.example.com"]}),
        )
        .await;
    assert_eq!(again.body["added"], 1, "{}", again.body);
    assert_eq!(again.body["items"][0]["groupId"], group.as_str());
    assert!(again.body["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("already an asset"));
    // The asset's own history says which job it was promoted from.
    let timeline = app
        .get(
            &key,
            &format!(
                "/api/assets/{}/timeline",
                a.body["items"][0]["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(timeline.status, StatusCode::OK);
    assert_eq!(timeline.body["items"][0]["type"], "asset.added");
    assert_eq!(
        timeline.body["items"][0]["data"]["discoveryJobId"],
        job.as_str()
    );
    // The free plan holds 25 assets: 30 more names would pass it, and nothing is added.
    let many: Vec<(String, String)> = (0..30)
        .map(|i| (format!("h{i}.example.com"), format!("192.0.2.{}", 10 + i)))
        .collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(n, a)| (n.as_str(), a.as_str())).collect();
    let big = found_job(&app, &org, &refs).await;
    let names: Vec<&str> = refs.iter().map(|(n, _)| *n).collect();
    let refused = app
        .post(
            &key,
            &format!("/api/discovery/jobs/{big}/add-assets"),
            json!({"values": names}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::PAYMENT_REQUIRED,
        "{}",
        refused.body
    );
    assert_eq!(refused.code(), "PLAN_LIMIT");
    let assets = app.get(&key, "/api/assets").await;
    assert_eq!(assets.body["total"], 3, "nothing half-added");
    // In a new organization the refused promotion leaves no `Discovered` group behind.
    let (fresh_org, fresh_key) = app.org(Plan::Free).await;
    let many_job = found_job(&app, &fresh_org, &refs).await;
    let refused = app
        .post(
            &fresh_key,
            &format!("/api/discovery/jobs/{many_job}/add-assets"),
            json!({"values": names}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(app.get(&fresh_key, "/api/groups").await.body["total"], 0);
    let missing = app
        .post(
            &key,
            "/api/discovery/jobs/nope/add-assets",
            json!({"values": ["a.example.com"]}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let empty = app.post(&key, &path, json!({"values": []})).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
}

async fn discovery_jobs_are_validated_and_counted_per_month(b: Backend) {
    let app = spawn_app(b).await;
    let (org, key) = app.org(Plan::Free).await;
    for bad in [
        json!({"domains": []}),
        json!({"domains": ["not a domain"]}),
        json!({"domains": "x.com"}),
        json!({"domains": ["a.com"], "extra": 1}),
    ] {
        let a = app.post(&key, "/api/discovery/run", bad.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}: {}", a.body);
    }
    let many: Vec<String> = (0..21).map(|i| format!("d{i}.com")).collect();
    let a = app
        .post(&key, "/api/discovery/run", json!({"domains": many}))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let shown = app.get(&key, "/api/org").await;
    assert_eq!(
        shown.body["limits"]["discoveryJobsPerMonth"], 10,
        "{}",
        shown.body
    );
    let mut first = String::new();
    for i in 0..10 {
        let a = app
            .post(
                &key,
                "/api/discovery/run",
                json!({"domains": [format!("d{i}.com")]}),
            )
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
        if i == 0 {
            first = a.id();
        }
    }
    let over = app
        .post(
            &key,
            "/api/discovery/run",
            json!({"domains": ["one-more.com"]}),
        )
        .await;
    assert_eq!(over.status, StatusCode::PAYMENT_REQUIRED, "{}", over.body);
    assert_eq!(over.code(), "PLAN_LIMIT");
    let cancelled = app
        .post(
            &key,
            &format!("/api/discovery/jobs/{first}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.body["status"], "cancelled");
    let list = app.get(&key, "/api/discovery/jobs?status=queued").await;
    assert_eq!(list.body["total"], 9);
    let bad = app.get(&key, "/api/discovery/jobs?status=done").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.get(&key, "/api/discovery/jobs/nope").await.status,
        StatusCode::NOT_FOUND
    );
    let viewer = app.key(&org, easm_domain::Role::Viewer).await;
    let denied = app
        .post(&viewer, "/api/discovery/run", json!({"domains": ["v.com"]}))
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get(&viewer, "/api/discovery/jobs").await.status,
        StatusCode::OK
    );
}
