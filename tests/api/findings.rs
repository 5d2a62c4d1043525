//! Findings from imported nuclei results: deduplicated, detected again, reopened, filtered and
//! triaged.

use crate::helpers::*;
use crate::on_both_backends;
use easm_domain::{Plan, Role};
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(
    imported_results_become_findings_with_their_details,
    findings_are_filtered_searched_and_sorted,
    a_plain_date_filters_from_the_start_of_its_day,
    results_imported_again_are_detections_of_the_same_findings,
    a_resolved_finding_detected_again_reopens_with_its_history,
    triage_refuses_bad_input_other_roles_and_other_organizations,
    risk_and_coverage_follow_the_findings_and_jobs,
    bulk_status_is_all_or_nothing,
    findings_export_in_four_formats,
    a_deleted_job_takes_its_findings_out_of_the_read_models,
    results_larger_than_a_request_body_stream_in,
);

pub const NUCLEI: &str = r#"{"template-id":"CVE-2021-41773","info":{"name":"Apache 2.4.49 - Path Traversal","severity":"critical","description":"Path traversal.","remediation":"Upgrade Apache.","reference":["https://nvd.nist.gov/vuln/detail/CVE-2021-41773"],"classification":{"cve-id":["cve-2021-41773"],"cwe-id":["cwe-22"],"cvss-score":7.5}},"type":"http","host":"https://127.0.0.1","matched-at":"https://127.0.0.1/cgi-bin/.%2e/","ip":"127.0.0.1","port":"443","matcher-status":true,"timestamp":"2026-11-22T10:00:00Z"}
{"templateID":"http-missing-security-headers","info":{"name":"HTTP Missing Security Headers","severity":"info","reference":null},"type":"http","matched":"https://127.0.0.1/","matcher-name":"strict-transport-security"}
{"template-id":"CVE-2021-41773","info":{"name":"Apache 2.4.49 - Path Traversal","severity":"critical"},"matched-at":"https://127.0.0.1/cgi-bin/.%2e/"}
{"template-id":"tech-detect","info":{"name":"Tech","severity":"info"},"host":"https://127.0.0.1","matcher-status":false}
this is not json
{"info":{"name":"no template"},"host":"x"}
"#;

/// A new scan job of `asset` with `profile`; its id.
pub(crate) async fn new_job(app: &TestApp, key: &str, asset: &str, profile: &str) -> String {
    app.post(
        key,
        "/api/scan-jobs",
        json!({"asset_id": asset, "profile": profile}),
    )
    .await
    .id()
}

pub(crate) async fn import(app: &TestApp, key: &str, job: &str, body: &str) -> Answer {
    answer(
        app.client
            .post(app.url(&format!("/api/scan-jobs/{job}/results")))
            .header("X-API-Key", key)
            .header("content-type", "application/x-ndjson")
            .body(body.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn titles(a: &Answer) -> Vec<String> {
    a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f: &Value| f["templateId"].as_str().unwrap().to_string())
        .collect()
}

/// An organization with the asset `127.0.0.1` and a quick scan job of it, `NUCLEI` imported.
struct Imported {
    t: Tenant,
    asset: String,
    job: String,
    report: Answer,
}

impl Imported {
    async fn new(b: Backend) -> Imported {
        let t = Tenant::new(b, Plan::Pro, "Web").await;
        let asset = t.asset("127.0.0.1", "ip").await;
        let job = new_job(&t.app, &t.key, &asset, "quick").await;
        let report = import(&t.app, &t.key, &job, NUCLEI).await;
        Imported {
            t,
            asset,
            job,
            report,
        }
    }

    /// A new job of the asset with `profile`, `NUCLEI` imported under it; the import's answer.
    async fn again_under(&self, profile: &str) -> (String, Answer) {
        let job = new_job(&self.t.app, &self.t.key, &self.asset, profile).await;
        let report = import(&self.t.app, &self.t.key, &job, NUCLEI).await;
        (job, report)
    }

    async fn get(&self, path: &str) -> Answer {
        self.t.get(path).await
    }

    /// The id of the critical finding (`CVE-2021-41773`).
    async fn critical_id(&self) -> String {
        self.get("/api/findings?severity=critical").await.body["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn all_ids(&self) -> Vec<String> {
        self.get("/api/findings").await.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect()
    }

    async fn patch_finding(&self, id: &str, body: Value) -> Answer {
        self.t.patch(&format!("/api/findings/{id}"), body).await
    }

    async fn bulk_status(&self, body: Value) -> Answer {
        self.t.post("/api/findings/bulk-status", body).await
    }

    /// `GET /api/findings/export{query}`: status, content type, body.
    async fn export(&self, query: &str) -> (StatusCode, String, String) {
        let r = self
            .t
            .app
            .client
            .get(self.t.app.url(&format!("/api/findings/export{query}")))
            .header("X-API-Key", &self.t.key)
            .send()
            .await
            .unwrap();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status(), ct, r.text().await.unwrap())
    }
}

async fn imported_results_become_findings_with_their_details(b: Backend) {
    let s = Imported::new(b).await;
    let report = &s.report;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert_eq!(report.body["imported"], 3);
    assert_eq!(report.body["new"], 2);
    assert_eq!(
        report.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["line"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![5, 6]
    );

    let all = s.get("/api/findings").await;
    assert_eq!(all.body["total"], 2, "{}", all.body);
    let critical = s.get("/api/findings?severity=critical").await;
    assert_eq!(titles(&critical), vec!["CVE-2021-41773"]);
    let f = &critical.body["items"][0];
    assert_eq!(f["cve"], "CVE-2021-41773");
    assert_eq!(f["cwe"], "CWE-22");
    assert_eq!(f["cvssScore"], 7.5);
    assert_eq!(f["source"], "nuclei");
    assert_eq!(f["status"], "open");
    assert_eq!(f["detectionCount"], 1);
    assert_eq!(f["scanJobIds"], json!([s.job]));
}

async fn findings_are_filtered_searched_and_sorted(b: Backend) {
    let s = Imported::new(b).await;
    assert_eq!(
        s.get("/api/findings?severity=critical,info").await.body["total"],
        2
    );
    assert_eq!(
        titles(&s.get("/api/findings?q=TRAVERSAL").await),
        vec!["CVE-2021-41773"]
    );
    assert_eq!(
        titles(&s.get("/api/findings?sort=severity").await)[0],
        "CVE-2021-41773"
    );
    assert_eq!(
        s.get("/api/findings?templateId=http-missing-security-headers")
            .await
            .body["total"],
        1
    );
    assert_eq!(
        s.get(&format!("/api/scan-jobs/{}/findings", s.job))
            .await
            .body["total"],
        2
    );
    for (q, field) in [
        ("severity=severe", "severity"),
        ("status=closed", "status"),
        ("since=yesterday", "since"),
        ("sort=random", "sort"),
    ] {
        let bad = s.get(&format!("/api/findings?{q}")).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(bad.body["field"], field);
    }
}

/// `since=2026-04-01`, as the primary model writes it: the start of that day UTC.
async fn a_plain_date_filters_from_the_start_of_its_day(b: Backend) {
    let s = Imported::new(b).await;
    let all = s.get("/api/findings").await.body["total"].clone();
    assert!(all.as_u64().unwrap() > 0);
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today.succ_opt().unwrap();
    for (q, total) in [
        ("since=2000-01-01".to_string(), all.clone()),
        (format!("since={tomorrow}"), json!(0)),
        ("until=2000-01-01".to_string(), json!(0)),
        (format!("until={tomorrow}"), all.clone()),
        (format!("since={tomorrow}T00:00:00Z"), json!(0)),
    ] {
        let found = s.get(&format!("/api/findings?{q}")).await;
        assert_eq!(found.status, StatusCode::OK, "{q}: {}", found.body);
        assert_eq!(found.body["total"], total, "{q}");
    }
    let assets = s.get("/api/assets?asOf=2000-01-01").await;
    assert_eq!(assets.status, StatusCode::OK, "{}", assets.body);
    assert_eq!(assets.body["total"], 0, "nothing existed then");
    for q in ["since=2026-13-01", "until=01/04/2026", "asOf=2026-04"] {
        let bad = s.get(&format!("/api/findings?{q}")).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{q}");
    }
}

/// The same results again under the same job change nothing; under another job they are
/// detections of the same findings.
async fn results_imported_again_are_detections_of_the_same_findings(b: Backend) {
    let s = Imported::new(b).await;
    let again = import(&s.t.app, &s.t.key, &s.job, NUCLEI).await;
    assert_eq!(
        (again.body["new"].clone(), again.body["unchanged"].clone()),
        (json!(0), json!(2))
    );
    let (job2, second) = s.again_under("standard").await;
    assert_eq!(second.body["redetected"], 2);
    let one = s
        .get(&format!("/api/findings/{}", s.critical_id().await))
        .await;
    assert_eq!(one.body["detectionCount"], 2);
    assert_eq!(one.body["scanJobIds"], json!([s.job, job2]));
}

async fn a_resolved_finding_detected_again_reopens_with_its_history(b: Backend) {
    let s = Imported::new(b).await;
    let critical_id = s.critical_id().await;
    s.again_under("standard").await;
    let resolved = s
        .patch_finding(
            &critical_id,
            json!({"status": "resolved", "notes": "patched", "assignee": "alice"}),
        )
        .await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.body);
    assert_eq!(resolved.body["status"], "resolved");
    assert_eq!(resolved.body["notes"], "patched");
    assert_eq!(resolved.body["assignee"], "alice");
    assert_eq!(
        s.get("/api/findings?status=resolved").await.body["total"],
        1
    );
    let (job3, third) = s.again_under("deep").await;
    assert_eq!(third.body["reopened"], 1);
    assert_eq!(third.body["redetected"], 1);
    let reopened = s.get(&format!("/api/findings/{critical_id}")).await;
    assert_eq!(reopened.body["status"], "open");
    let history: Vec<(Value, Value)> = reopened.body["statusHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["from"].clone(), h["to"].clone()))
        .collect();
    assert_eq!(
        history,
        vec![
            (Value::Null, json!("open")),
            (json!("open"), json!("resolved")),
            (json!("resolved"), json!("open")),
        ]
    );
    let steps = &reopened.body["statusHistory"];
    assert_eq!(steps[1]["notes"], "patched");
    assert_eq!(steps[1]["actorKind"], "api_key");
    assert_eq!(steps[2]["scanJobId"], job3.as_str());
}

async fn triage_refuses_bad_input_other_roles_and_other_organizations(b: Backend) {
    let s = Imported::new(b).await;
    let critical_id = s.critical_id().await;
    s.patch_finding(&critical_id, json!({"assignee": "alice"}))
        .await;
    let bad = s
        .patch_finding(&critical_id, json!({"status": "closed"}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["field"], "status");
    let cleared = s.patch_finding(&critical_id, json!({"assignee": ""})).await;
    assert!(cleared.body["assignee"].is_null());
    assert_eq!(
        s.patch_finding("nope", json!({"status": "open"}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let viewer = s.t.key_of(Role::Viewer).await;
    assert_eq!(
        s.t.app
            .patch(
                &viewer,
                &format!("/api/findings/{critical_id}"),
                json!({"status": "ignored"})
            )
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        import(&s.t.app, &s.t.key, "nope", NUCLEI).await.status,
        StatusCode::NOT_FOUND
    );
    let (_, stranger) = s.t.app.org(Plan::Pro).await;
    assert_eq!(
        s.t.app.get(&stranger, "/api/findings").await.body["total"],
        0
    );
}

/// Risk counts unresolved findings: one critical (40) and one info (0).
async fn risk_and_coverage_follow_the_findings_and_jobs(b: Backend) {
    let s = Imported::new(b).await;
    s.again_under("standard").await;
    let (job3, _) = s.again_under("deep").await;
    let risk = s.get(&format!("/api/assets/{}/risk", s.asset)).await;
    assert_eq!(risk.status, StatusCode::OK, "{}", risk.body);
    assert_eq!(risk.body["score"], 40);
    assert_eq!(risk.body["grade"], "D");
    assert_eq!(risk.body["breakdown"]["critical"], 1);
    assert_eq!(risk.body["breakdown"]["info"], 1);
    let coverage = s.get(&format!("/api/assets/{}/coverage", s.asset)).await;
    let profiles: Vec<(String, u64)> = coverage
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["profile"].as_str().unwrap().to_string(),
                p["jobs"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        profiles,
        vec![
            ("quick".into(), 1),
            ("standard".into(), 1),
            ("deep".into(), 1)
        ]
    );
    assert_eq!(coverage.body[2]["lastJobId"], job3.as_str());
    assert_eq!(coverage.body[0]["lastStatus"], "queued");
    assert_eq!(
        s.get("/api/assets/nope/risk").await.status,
        StatusCode::NOT_FOUND
    );
}

async fn bulk_status_is_all_or_nothing(b: Backend) {
    let s = Imported::new(b).await;
    let ids = s.all_ids().await;
    let mut with_unknown = ids.clone();
    with_unknown.push("nope".into());
    let refused = s
        .bulk_status(json!({"ids": with_unknown, "status": "ignored"}))
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.body);
    assert_eq!(refused.body["items"][0]["index"], 2);
    assert_eq!(s.get("/api/findings?status=ignored").await.body["total"], 0);
    for body in [
        json!({"ids": [], "status": "ignored"}),
        json!({"ids": ids, "status": "gone"}),
    ] {
        let bad = s.bulk_status(body).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    }
    let done = s
        .bulk_status(json!({"ids": ids, "status": "ignored", "notes": "accepted risk"}))
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["updated"], 2);
    assert_eq!(s.get("/api/findings?status=ignored").await.body["total"], 2);
    let calm = s.get(&format!("/api/assets/{}/risk", s.asset)).await;
    assert_eq!(
        (calm.body["score"].clone(), calm.body["grade"].clone()),
        (json!(0), json!("A"))
    );
}

/// Every matching row, as CSV, NDJSON, JSON or SARIF.
async fn findings_export_in_four_formats(b: Backend) {
    let s = Imported::new(b).await;
    let ids = s.all_ids().await;
    s.bulk_status(json!({"ids": ids, "status": "ignored"}))
        .await;
    let (status, ct, csv) = s.export("").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("text/csv"));
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("id,assetId,templateId,title,severity,status"));
    assert!(csv.contains(",CVE-2021-41773,Apache 2.4.49 - Path Traversal,critical,ignored,"));
    let (_, _, ndjson) = s.export("?format=ndjson&severity=critical").await;
    let rows: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["templateId"], "CVE-2021-41773");
    let (_, ct, json_text) = s.export("?format=json").await;
    assert_eq!(ct, "application/json");
    let all: Vec<Value> = serde_json::from_str(&json_text).unwrap();
    assert_eq!(all.len(), 2);
    let (_, ct, sarif) = s.export("?format=sarif&sort=severity").await;
    assert_eq!(ct, "application/sarif+json");
    let sarif: Value = serde_json::from_str(&sarif).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    // The schema's `language` pattern has a bare `]` (a literal in most dialects) that the
    // validator's ECMA-262 regex check refuses: it is escaped, meaning the same.
    let schema: Value = serde_json::from_str(
        &include_str!("fixtures/sarif-schema-2.1.0.json")
            .replace("{2}-[a-zA-Z]{2}]?$", "{2}-[a-zA-Z]{2}\\\\]?$"),
    )
    .unwrap();
    let invalid: Vec<String> = jsonschema::validator_for(&schema)
        .unwrap()
        .iter_errors(&sarif)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(invalid.is_empty(), "not SARIF 2.1.0: {invalid:#?}");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["ruleId"], "CVE-2021-41773");
    assert_eq!(results[0]["level"], "error");
    assert_eq!(results[1]["level"], "note");
    // Each result names its rule by index; the rules carry what dashboards rank and link by.
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(sarif["runs"][0]["tool"]["driver"]["name"], "easm");
    for r in results {
        let rule = &rules[r["ruleIndex"].as_u64().unwrap() as usize];
        assert_eq!(rule["id"], r["ruleId"]);
        let score: f64 = rule["properties"]["security-severity"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.0..=10.0).contains(&score), "{rule}");
    }
    let cve = rules.iter().find(|r| r["id"] == "CVE-2021-41773").unwrap();
    // The finding's own CVSS score, and where to read about the CVE.
    assert_eq!(cve["properties"]["security-severity"], "7.5", "{cve}");
    assert_eq!(
        cve["helpUri"], "https://nvd.nist.gov/vuln/detail/CVE-2021-41773",
        "{cve}"
    );
    let (status, _, _) = s.export("?format=xml").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // An export is of the findings now, whole: a moment or a page is the list's.
    for q in ["?asOf=2026-01-01", "?page=2"] {
        let (status, _, body) = s.export(q).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q} {body}");
    }
}

async fn a_deleted_job_takes_its_findings_out_of_the_read_models(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "Web").await;
    let asset = app.asset(&key, &g, "127.0.0.1", "ip").await;
    let job = |profile: &'static str| new_job(&app, &key, &asset, profile);
    let (first, second) = (job("quick").await, job("deep").await);
    import(&app, &key, &first, NUCLEI).await;
    let cve_line = NUCLEI.lines().next().unwrap();
    import(&app, &key, &second, cve_line).await;
    let all = app.get(&key, "/api/findings").await;
    assert_eq!(all.body["total"], 2);
    let headers = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["templateId"] == "http-missing-security-headers")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let deleted = app.delete(&key, &format!("/api/scan-jobs/{first}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let left = app.get(&key, "/api/findings").await;
    assert_eq!(titles(&left), vec!["CVE-2021-41773"]);
    assert_eq!(left.body["items"][0]["scanJobIds"], json!([second]));
    let gone = app.get(&key, &format!("/api/findings/{headers}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let risk = app.get(&key, &format!("/api/assets/{asset}/risk")).await;
    assert_eq!(risk.body["breakdown"]["info"], 0);
    assert_eq!(risk.body["breakdown"]["critical"], 1);

    // A later detection brings the finding back, with what the log knows of it.
    let third = job("standard").await;
    import(&app, &key, &third, NUCLEI).await;
    let back = app.get(&key, &format!("/api/findings/{headers}")).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    assert_eq!(back.body["scanJobIds"], json!([third]));
    assert_eq!(back.body["detectionCount"], 2);
}

async fn results_larger_than_a_request_body_stream_in(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "Web").await;
    let asset = app.asset(&key, &g, "127.0.0.1", "ip").await;
    let job = app
        .post(
            &key,
            "/api/scan-jobs",
            json!({"asset_id": asset, "profile": "deep"}),
        )
        .await
        .id();
    let padding = "x".repeat(1500);
    let mut body = String::new();
    for i in 0..1500 {
        body.push_str(&format!(
            "{{\"template-id\":\"t-{i}\",\"info\":{{\"name\":\"T {i}\",\"severity\":\"low\",\"description\":\"{padding}\"}},\"matched-at\":\"https://127.0.0.1/{i}\"}}\n"
        ));
        if i == 700 {
            body.push_str("{broken\n");
        }
    }
    // Twice the 1 MiB limit of other request bodies.
    assert!(body.len() > 2 << 20);
    let a = import(&app, &key, &job, &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["imported"], 1500);
    assert_eq!(a.body["new"], 1500);
    assert_eq!(a.body["errors"][0]["line"], 702);
    let found = app.get(&key, "/api/findings?perPage=1").await;
    assert_eq!(found.body["total"], 1500);
    let again = import(&app, &key, &job, &body).await;
    assert_eq!(again.body["unchanged"], 1500, "{}", again.body);
}
