//! Findings from imported nuclei results: deduplicated, detected again, reopened, filtered and
//! triaged.

use crate::helpers::*;
use crate::on_both_backends;
use easm_domain::{Plan, Role};
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(
    nuclei_results_become_findings_and_are_triaged,
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
async fn new_job(app: &TestApp, key: &str, asset: &str, profile: &str) -> String {
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

async fn nuclei_results_become_findings_and_are_triaged(b: Backend) {
    let app = spawn_app(b).await;
    let (org, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "Web").await;
    let asset = app.asset(&key, &g, "127.0.0.1", "ip").await;
    let scan = |profile: &'static str| new_job(&app, &key, &asset, profile);
    let job = scan("quick").await;

    let report = import(&app, &key, &job, NUCLEI).await;
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

    let all = app.get(&key, "/api/findings").await;
    assert_eq!(all.body["total"], 2, "{}", all.body);
    let critical = app.get(&key, "/api/findings?severity=critical").await;
    assert_eq!(titles(&critical), vec!["CVE-2021-41773"]);
    let f = &critical.body["items"][0];
    assert_eq!(f["cve"], "CVE-2021-41773");
    assert_eq!(f["cwe"], "CWE-22");
    assert_eq!(f["cvssScore"], 7.5);
    assert_eq!(f["source"], "nuclei");
    assert_eq!(f["status"], "open");
    assert_eq!(f["detectionCount"], 1);
    assert_eq!(f["scanJobIds"], json!([job]));
    let critical_id = f["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.get(&key, "/api/findings?severity=critical,info")
            .await
            .body["total"],
        2
    );
    assert_eq!(
        titles(&app.get(&key, "/api/findings?q=TRAVERSAL").await),
        vec!["CVE-2021-41773"]
    );
    assert_eq!(
        titles(&app.get(&key, "/api/findings?sort=severity").await)[0],
        "CVE-2021-41773"
    );
    assert_eq!(
        app.get(
            &key,
            "/api/findings?templateId=http-missing-security-headers"
        )
        .await
        .body["total"],
        1
    );
    assert_eq!(
        app.get(&key, &format!("/api/scan-jobs/{job}/findings"))
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
        let bad = app.get(&key, &format!("/api/findings?{q}")).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(bad.body["field"], field);
    }

    // The same results again under the same job change nothing; under another job they are
    // detections of the same findings.
    let again = import(&app, &key, &job, NUCLEI).await;
    assert_eq!(
        (again.body["new"].clone(), again.body["unchanged"].clone()),
        (json!(0), json!(2))
    );
    let job2 = scan("standard").await;
    let second = import(&app, &key, &job2, NUCLEI).await;
    assert_eq!(second.body["redetected"], 2);
    let one = app.get(&key, &format!("/api/findings/{critical_id}")).await;
    assert_eq!(one.body["detectionCount"], 2);
    assert_eq!(one.body["scanJobIds"], json!([job, job2]));

    // Triage, then a new detection reopens what was resolved.
    let resolved = app
        .patch(
            &key,
            &format!("/api/findings/{critical_id}"),
            json!({"status": "resolved", "notes": "patched", "assignee": "alice"}),
        )
        .await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.body);
    assert_eq!(resolved.body["status"], "resolved");
    assert_eq!(resolved.body["notes"], "patched");
    assert_eq!(resolved.body["assignee"], "alice");
    assert_eq!(
        app.get(&key, "/api/findings?status=resolved").await.body["total"],
        1
    );
    let job3 = scan("deep").await;
    let third = import(&app, &key, &job3, NUCLEI).await;
    assert_eq!(third.body["reopened"], 1);
    assert_eq!(third.body["redetected"], 1);
    let reopened = app.get(&key, &format!("/api/findings/{critical_id}")).await;
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

    let bad = app
        .patch(
            &key,
            &format!("/api/findings/{critical_id}"),
            json!({"status": "closed"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["field"], "status");
    let cleared = app
        .patch(
            &key,
            &format!("/api/findings/{critical_id}"),
            json!({"assignee": ""}),
        )
        .await;
    assert!(cleared.body["assignee"].is_null());
    assert_eq!(
        app.patch(&key, "/api/findings/nope", json!({"status": "open"}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let viewer = app.key(&org, Role::Viewer).await;
    assert_eq!(
        app.patch(
            &viewer,
            &format!("/api/findings/{critical_id}"),
            json!({"status": "ignored"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        import(&app, &key, "nope", NUCLEI).await.status,
        StatusCode::NOT_FOUND
    );
    let (_, stranger) = app.org(Plan::Pro).await;
    assert_eq!(app.get(&stranger, "/api/findings").await.body["total"], 0);

    // Risk counts unresolved findings: one critical (40) and one info (0) now.
    let risk = app.get(&key, &format!("/api/assets/{asset}/risk")).await;
    assert_eq!(risk.status, StatusCode::OK, "{}", risk.body);
    assert_eq!(risk.body["score"], 40);
    assert_eq!(risk.body["grade"], "D");
    assert_eq!(risk.body["breakdown"]["critical"], 1);
    assert_eq!(risk.body["breakdown"]["info"], 1);
    let coverage = app
        .get(&key, &format!("/api/assets/{asset}/coverage"))
        .await;
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
        app.get(&key, "/api/assets/nope/risk").await.status,
        StatusCode::NOT_FOUND
    );

    // Bulk status: all or nothing.
    let ids: Vec<String> = app.get(&key, "/api/findings").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    let mut with_unknown = ids.clone();
    with_unknown.push("nope".into());
    let refused = app
        .post(
            &key,
            "/api/findings/bulk-status",
            json!({"ids": with_unknown, "status": "ignored"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.body);
    assert_eq!(refused.body["items"][0]["index"], 2);
    assert_eq!(
        app.get(&key, "/api/findings?status=ignored").await.body["total"],
        0
    );
    for body in [
        json!({"ids": [], "status": "ignored"}),
        json!({"ids": ids, "status": "gone"}),
    ] {
        let bad = app.post(&key, "/api/findings/bulk-status", body).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    }
    let done = app
        .post(
            &key,
            "/api/findings/bulk-status",
            json!({"ids": ids, "status": "ignored", "notes": "accepted risk"}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["updated"], 2);
    assert_eq!(
        app.get(&key, "/api/findings?status=ignored").await.body["total"],
        2
    );
    let calm = app.get(&key, &format!("/api/assets/{asset}/risk")).await;
    assert_eq!(
        (calm.body["score"].clone(), calm.body["grade"].clone()),
        (json!(0), json!("A"))
    );

    // Export: every matching row, in three formats.
    let export = |q: &'static str| {
        let req = app
            .client
            .get(app.url(&format!("/api/findings/export{q}")))
            .header("X-API-Key", &key);
        async move {
            let r = req.send().await.unwrap();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (r.status(), ct, r.text().await.unwrap())
        }
    };
    let (status, ct, csv) = export("").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("text/csv"));
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("id,assetId,templateId,title,severity,status"));
    assert!(csv.contains(",CVE-2021-41773,Apache 2.4.49 - Path Traversal,critical,ignored,"));
    let (_, _, ndjson) = export("?format=ndjson&severity=critical").await;
    let rows: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["templateId"], "CVE-2021-41773");
    let (_, ct, json_text) = export("?format=json").await;
    assert_eq!(ct, "application/json");
    let all: Vec<Value> = serde_json::from_str(&json_text).unwrap();
    assert_eq!(all.len(), 2);
    let (_, ct, sarif) = export("?format=sarif&sort=severity").await;
    assert_eq!(ct, "application/sarif+json");
    let sarif: Value = serde_json::from_str(&sarif).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["ruleId"], "CVE-2021-41773");
    assert_eq!(results[0]["level"], "error");
    assert_eq!(results[1]["level"], "note");
    let (status, _, _) = export("?format=xml").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
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
