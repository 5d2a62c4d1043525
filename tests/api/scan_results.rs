//! What one scan of real servers on 127.0.0.1 records: findings with their evidence, what
//! answered where, signed webhooks, triage and export, and findings resolved by a later scan
//! that no longer sees them and reopened when they are back. On SQLite, and on PostgreSQL with
//! NATS; each behaviour scans the same servers anew.

use crate::delivery::{Setup, WAIT};
use crate::helpers::Backend;
use crate::on_sqlite_and_nats;
use crate::receiver::Receiver;
use crate::scanner::{asset, by_key, findings_of, job_when, page, scan, PRIVATE, REDIS};
use crate::targets::{self, cert, Target};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

on_sqlite_and_nats!(
    a_scan_finds_what_local_servers_expose,
    a_scan_records_what_answered_on_each_port,
    a_scan_announces_its_findings_in_signed_webhooks,
    findings_are_triaged_and_exported,
    a_finding_no_longer_seen_is_resolved_and_reopened_when_back,
);

/// The servers one scan finds things on, the scan, and what it found.
struct Scanned {
    s: Setup,
    receiver: Receiver,
    secret: String,
    /// HTTPS with an expired, self-signed certificate for another name, and a server version.
    https: Target,
    /// Plain HTTP with good headers, a listing, a `.env` and (while `exposed`) a `.git`.
    web: Target,
    exposed: Arc<AtomicBool>,
    es: Target,
    mc: Target,
    mongo: Target,
    asset: String,
    job: String,
    /// The job once completed.
    done: Value,
    findings: Vec<Value>,
}

impl Scanned {
    async fn new(b: Backend, nats: bool) -> Scanned {
        let s = Setup::start(b, nats, &[PRIVATE]).await;
        let receiver = Receiver::start().await;
        let (_, secret) = s
            .webhook(
                &receiver.url,
                &[
                    "finding.new",
                    "finding.resolved",
                    "finding.reopened",
                    "scan.completed",
                ],
            )
            .await;
        let expired = cert(&["other.example"], (2020, 1, 1), (2021, 1, 1));
        let https = targets::http(
            Some(&expired),
            Arc::new(|path| match path {
                "/" => page(200, &[("Server", "nginx/1.18.0")], "<title>Shop</title>"),
                _ => page(404, &[], ""),
            }),
        )
        .await;
        let exposed = Arc::new(AtomicBool::new(true));
        let web = web_server(exposed.clone()).await;
        let (es, mc, mongo) = (
            targets::elasticsearch().await,
            targets::memcached().await,
            targets::mongodb().await,
        );
        let asset = asset(&s, "127.0.0.1", "ip").await;
        let mut scanned = Scanned {
            s,
            receiver,
            secret,
            https,
            web,
            exposed,
            es,
            mc,
            mongo,
            asset,
            job: String::new(),
            done: Value::Null,
            findings: vec![],
        };
        scanned.job = scan(&scanned.s, &scanned.asset, "standard", &scanned.ports()).await;
        scanned.done = job_when(&scanned.s, &scanned.job, "completed").await;
        scanned.findings = findings_of(&scanned.s, &scanned.job).await;
        scanned
    }

    fn ports(&self) -> [u16; 6] {
        [
            self.https.port,
            self.web.port,
            self.es.port,
            self.mc.port,
            self.mongo.port,
            REDIS,
        ]
    }

    /// The finding of `template` matched at `matched`.
    fn get(&self, template: &str, matched: &str) -> Value {
        by_key(&self.findings)[&(template.to_string(), matched.to_string())].clone()
    }

    fn https_root(&self) -> String {
        format!("https://127.0.0.1:{}/", self.https.port)
    }

    /// Scan the asset again with the same profile and ports; answers the new job's id.
    async fn rescan(&self) -> String {
        let again = self
            .s
            .post(&format!("/api/scan-jobs/{}/run", self.job), json!({}))
            .await;
        assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
        job_when(&self.s, &again.id(), "completed").await;
        again.id()
    }
}

async fn web_server(exposed: Arc<AtomicBool>) -> Target {
    targets::http(
        None,
        Arc::new(move |path| match path {
            "/" => page(
                200,
                &[
                    (
                        "Content-Security-Policy",
                        "default-src 'self'; frame-ancestors 'none'",
                    ),
                    ("X-Content-Type-Options", "nosniff"),
                ],
                "<html><head><title>Index of /</title></head></html>",
            ),
            "/.git/HEAD" if exposed.load(Ordering::SeqCst) => {
                page(200, &[], "ref: refs/heads/main\n")
            }
            "/.env" => page(
                200,
                &[("Content-Type", "text/plain")],
                "DB_PASSWORD=hunter2\nAPI_KEY=abc\n",
            ),
            _ => page(404, &[], "not found"),
        }),
    )
    .await
}

fn at(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

async fn a_scan_finds_what_local_servers_expose(b: Backend, nats: bool) {
    let t = Scanned::new(b, nats).await;
    assert_eq!(t.done["progress"], 100);
    assert_eq!(t.done["attempts"], 1);
    let found = by_key(&t.findings);
    let (https, web) = (t.https.port, t.web.port);
    let expected = [
        ("tls.expired-cert", at(https)),
        ("tls.self-signed-cert", at(https)),
        ("tls.hostname-mismatch", at(https)),
        ("http.missing-hsts", t.https_root()),
        ("http.missing-csp", t.https_root()),
        ("http.missing-x-frame-options", t.https_root()),
        ("http.server-version-disclosure", t.https_root()),
        ("http.exposed-git", url(web, "/.git/HEAD")),
        ("http.exposed-env", url(web, "/.env")),
        ("http.directory-listing", url(web, "/")),
        ("service.elasticsearch-unauthenticated", url(t.es.port, "")),
        ("service.memcached-unauthenticated", at(t.mc.port)),
        ("service.mongodb-unauthenticated", at(t.mongo.port)),
        ("service.redis-unauthenticated", at(REDIS)),
    ];
    for (template, matched) in &expected {
        let key = (template.to_string(), matched.clone());
        let f = found
            .get(&key)
            .unwrap_or_else(|| panic!("{template} at {matched} not in {:#?}", found.keys()));
        assert_eq!(f["status"], "open");
        assert_eq!(f["source"], "easm");
        for field in [
            "title",
            "severity",
            "category",
            "description",
            "evidence",
            "remediation",
        ] {
            assert!(
                !f[field].as_str().unwrap_or_default().is_empty(),
                "{template} has no {field}: {f}"
            );
        }
        assert!(!f["references"].as_array().unwrap().is_empty());
    }
    // Good headers on the plain server are not findings.
    for template in [
        "http.missing-csp",
        "http.missing-x-frame-options",
        "http.missing-hsts",
    ] {
        assert!(!found.contains_key(&(template.to_string(), url(web, "/"))));
    }
    // The job's counts are the findings' severities.
    let mut counts: HashMap<String, u64> = HashMap::new();
    for f in &t.findings {
        *counts
            .entry(f["severity"].as_str().unwrap().into())
            .or_default() += 1;
    }
    for (severity, n) in &counts {
        assert_eq!(
            t.done["counts"][severity], *n,
            "{severity}: {}",
            t.done["counts"]
        );
    }
    findings_carry_their_evidence(&t);
}

/// What a finding shows of what was found, and never a secret it saw.
fn findings_carry_their_evidence(t: &Scanned) {
    let cert_evidence = t.get("tls.expired-cert", &at(t.https.port))["evidence"].clone();
    let cert_evidence = cert_evidence.as_str().unwrap();
    assert!(
        cert_evidence.contains("notAfter: 2021-01-01"),
        "{cert_evidence}"
    );
    assert!(cert_evidence.contains("other.example"), "{cert_evidence}");
    let env = t.get("http.exposed-env", &url(t.web.port, "/.env"));
    let env_evidence = env["evidence"].as_str().unwrap();
    assert!(env_evidence.contains("DB_PASSWORD") && !env_evidence.contains("hunter2"));
    assert!(
        t.get("service.mongodb-unauthenticated", &at(t.mongo.port))["evidence"]
            .as_str()
            .unwrap()
            .contains("customers")
    );
    assert!(
        t.get("http.server-version-disclosure", &t.https_root())["evidence"]
            .as_str()
            .unwrap()
            .contains("nginx/1.18.0")
    );
    assert_eq!(
        t.get("http.exposed-git", &url(t.web.port, "/.git/HEAD"))["cwe"],
        "CWE-538"
    );
}

async fn a_scan_records_what_answered_on_each_port(b: Backend, nats: bool) {
    let t = Scanned::new(b, nats).await;
    let health = t.s.get(&format!("/api/assets/{}/health", t.asset)).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    assert_eq!(health.body["status"], "up");
    assert_eq!(health.body["scanJobId"], t.job.as_str());
    assert_eq!(health.body["addresses"], json!(["127.0.0.1"]));
    assert_eq!(health.body["portsScanned"], t.ports().len());
    let mut sorted = t.ports().to_vec();
    sorted.sort_unstable();
    assert_eq!(health.body["openPorts"], json!(sorted));
    let service = |port: u16| {
        health.body["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["port"] == port)
            .unwrap()
            .clone()
    };
    assert_eq!(service(t.https.port)["service"], "https");
    assert_eq!(service(t.https.port)["tls"], true);
    assert_eq!(service(t.web.port)["service"], "http");
    assert_eq!(service(t.es.port)["service"], "elasticsearch");
    assert_eq!(service(t.mc.port)["service"], "memcached");
    assert_eq!(service(t.mongo.port)["service"], "mongodb");
    assert_eq!(service(REDIS)["service"], "redis");
}

async fn a_scan_announces_its_findings_in_signed_webhooks(b: Backend, nats: bool) {
    let t = Scanned::new(b, nats).await;
    let got = t.receiver.wait_for(t.findings.len() + 1, WAIT).await;
    for r in &got {
        let (id, ts) = (r.header("webhook-id"), r.header("webhook-timestamp"));
        let signed = easm_delivery::sign(
            std::slice::from_ref(&t.secret),
            id,
            ts.parse().unwrap(),
            r.body.as_bytes(),
        );
        assert_eq!(r.header("webhook-signature"), signed.unwrap());
    }
    let bodies: Vec<Value> = got.iter().map(|r| r.json()).collect();
    let completed: Vec<&Value> = bodies
        .iter()
        .filter(|x| x["type"] == "scan.completed")
        .collect();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["data"]["scanJobId"], t.job.as_str());
    assert_eq!(
        bodies.iter().filter(|x| x["type"] == "finding.new").count(),
        t.findings.len()
    );
}

async fn findings_are_triaged_and_exported(b: Backend, nats: bool) {
    let t = Scanned::new(b, nats).await;
    let env_id = t.get("http.exposed-env", &url(t.web.port, "/.env"))["id"].clone();
    let ack =
        t.s.call(
            Method::PATCH,
            &format!("/api/findings/{}", env_id.as_str().unwrap()),
            Some(json!({"status": "acknowledged", "assignee": "sec@example.com"})),
        )
        .await;
    assert_eq!(ack.status, StatusCode::OK, "{}", ack.body);
    assert_eq!(ack.body["status"], "acknowledged");
    let csv =
        t.s.http
            .get(t.s.server.as_ref().unwrap().url(&format!(
                "/api/findings/export?format=csv&asset_id={}",
                t.asset
            )))
            .header("X-API-Key", &t.s.key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert_eq!(csv.lines().count(), t.findings.len() + 1, "{csv}");
    assert!(csv.contains("service.redis-unauthenticated"));
}

async fn a_finding_no_longer_seen_is_resolved_and_reopened_when_back(b: Backend, nats: bool) {
    let t = Scanned::new(b, nats).await;
    let git = t.get("http.exposed-git", &url(t.web.port, "/.git/HEAD"));
    let git = format!("/api/findings/{}", git["id"].as_str().unwrap());
    let env = t.get("http.exposed-env", &url(t.web.port, "/.env"));
    let env = format!("/api/findings/{}", env["id"].as_str().unwrap());
    let ack =
        t.s.call(Method::PATCH, &env, Some(json!({"status": "acknowledged"})))
            .await;
    assert_eq!(ack.status, StatusCode::OK, "{}", ack.body);
    // The repository is gone: the next scan of the profile resolves it.
    t.exposed.store(false, Ordering::SeqCst);
    let again = t.rescan().await;
    let f = t.s.get(&git).await;
    assert_eq!(f.body["status"], "resolved", "{}", f.body);
    let last = f.body["statusHistory"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["to"], "resolved");
    assert_eq!(last["scanJobId"], again.as_str());
    let env_now = t.s.get(&env).await;
    assert_eq!(env_now.body["status"], "acknowledged", "still detected");
    assert_eq!(env_now.body["detectionCount"], 2);
    // Back: reopened.
    t.exposed.store(true, Ordering::SeqCst);
    t.rescan().await;
    let f = t.s.get(&git).await;
    assert_eq!(f.body["status"], "open", "{}", f.body);
    assert_eq!(f.body["detectionCount"], 2);
    let got = t.receiver.wait_for(t.findings.len() + 5, WAIT).await;
    let types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types.iter().filter(|t| *t == "finding.resolved").count(), 1);
    assert_eq!(types.iter().filter(|t| *t == "finding.reopened").count(), 1);
    assert_eq!(types.iter().filter(|t| *t == "scan.completed").count(), 3);
}
