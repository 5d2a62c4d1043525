use crate::helpers::*;
use crate::on_both_backends;
use easm_domain::Plan;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_backends!(
    idempotency_key_replays_the_first_answer,
    bad_input_is_a_clear_4xx_naming_the_field,
    a_body_over_the_limit_is_refused_and_changes_nothing,
    unknown_routes_methods_and_filters_are_named_as_such,
    pagination_is_bounded,
    bodies_are_objects_and_whole_numbers_are_integers,
    health_and_readiness,
);

async fn idempotency_key_replays_the_first_answer(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    let send = |body: Value, idem: &'static str| {
        app.client
            .post(app.url("/api/groups"))
            .header("X-API-Key", &key)
            .header("Idempotency-Key", idem)
            .json(&body)
            .send()
    };
    let first = answer(send(json!({"name": "Once"}), "k-1").await.unwrap()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let events = app.event_count().await;
    let again = answer(send(json!({"name": "Once"}), "k-1").await.unwrap()).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        app.event_count().await,
        events,
        "the replay appended nothing"
    );
    let other = answer(send(json!({"name": "Twice"}), "k-1").await.unwrap()).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.code(), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.get(&key, "/api/groups").await.body["total"], 1);
    // A failed request's answer is replayed too, and a new key acts anew.
    let bad1 = answer(send(json!({"name": ""}), "k-2").await.unwrap()).await;
    let bad2 = answer(send(json!({"name": ""}), "k-2").await.unwrap()).await;
    assert_eq!((bad1.status, &bad1.body), (bad2.status, &bad2.body));
    assert_eq!(
        answer(send(json!({"name": "Once"}), "k-3").await.unwrap())
            .await
            .status,
        StatusCode::CREATED
    );
    // Keys are per organization.
    let (_, key2) = app.org(Plan::Pro).await;
    let r = app
        .client
        .post(app.url("/api/groups"))
        .header("X-API-Key", &key2)
        .header("Idempotency-Key", "k-1")
        .json(&json!({"name": "Other org"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().get("idempotent-replayed").is_none());
}

async fn bad_input_is_a_clear_4xx_naming_the_field(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "G").await;
    let events = app.event_count().await;
    let raw = |path: String, body: &'static str| {
        app.client
            .post(app.url(&path))
            .header("X-API-Key", &key)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let malformed = answer(raw("/api/groups".into(), "{\"name\": ").await.unwrap()).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.code(), "INVALID_JSON");
    let empty = answer(raw("/api/groups".into(), "").await.unwrap()).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);

    let cases: Vec<(String, Value, &str)> = vec![
        ("/api/groups".into(), json!({"name": 7}), "name"),
        ("/api/groups".into(), json!({}), "."),
        (
            "/api/groups".into(),
            json!({"name": "x".repeat(201)}),
            "name",
        ),
        ("/api/groups".into(), json!({"name": "ok", "extra": 1}), "."),
        (
            format!("/api/groups/{g}/assets"),
            json!({"value": "a.com", "type": "planet"}),
            "type",
        ),
        (
            format!("/api/groups/{g}/assets"),
            json!({"value": "a.com", "type": "domain", "criticality": "extreme"}),
            "criticality",
        ),
        (
            format!("/api/groups/{g}/assets"),
            json!({"value": "a.com", "type": "domain", "tags": "x"}),
            "tags",
        ),
        (
            format!("/api/groups/{g}/assets"),
            json!({"value": "a.com", "type": "domain", "tags": ["x".repeat(65)]}),
            "tags",
        ),
        (
            format!("/api/groups/{g}/assets"),
            json!({"value": format!("{}.com", "a".repeat(3000)), "type": "domain"}),
            "value",
        ),
        (
            format!("/api/groups/{g}/assets/bulk"),
            json!({"assets": [{"value": "a.com", "type": 1}]}),
            "assets[0].type",
        ),
    ];
    for (path, body, field) in cases {
        let r = app.post(&key, &path, body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{path} {body}: {}",
            r.body
        );
        assert!(r.body["error"].as_str().is_some_and(|e| !e.is_empty()));
        if field != "." {
            let named = r.body["field"] == field
                || r.body["items"][0]["error"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(field);
            assert!(named, "{path} {body}: should name {field}: {}", r.body);
        }
    }
    let patch = app
        .patch(&key, "/api/assets/x", json!({"criticality": 3}))
        .await;
    assert_eq!(patch.status, StatusCode::BAD_REQUEST);
    assert_eq!(patch.body["field"], "criticality");

    assert_eq!(
        app.event_count().await,
        events,
        "no bad request changed anything"
    );
}

async fn a_body_over_the_limit_is_refused_and_changes_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    let events = app.event_count().await;
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(1_100_000));
    let too_big = app
        .client
        .post(app.url("/api/groups"))
        .header("X-API-Key", &key)
        .header("Content-Type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    let too_big = answer(too_big).await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_big.code(), "PAYLOAD_TOO_LARGE");
    assert_eq!(app.event_count().await, events);
}

async fn unknown_routes_methods_and_filters_are_named_as_such(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    let unknown = app.get(&key, "/api/nothing-here").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.code(), "ROUTE_NOT_FOUND");
    let wrong_method = app.call(Method::PUT, &key, "/api/assets", None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        app.get(&key, "/api/assets?type=planet").await.status,
        StatusCode::BAD_REQUEST
    );
}

async fn pagination_is_bounded(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    let g = app.group(&key, "G").await;
    let items: Vec<_> = (0..105)
        .map(|i| json!({"value": format!("p{i}.example.com"), "type": "subdomain"}))
        .collect();
    assert_eq!(
        app.post(
            &key,
            &format!("/api/groups/{g}/assets/bulk"),
            json!({ "assets": items })
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let first = app.get(&key, "/api/assets").await;
    assert_eq!(first.body["perPage"], 50);
    assert_eq!(first.body["items"].as_array().unwrap().len(), 50);
    let max = app.get(&key, "/api/assets?perPage=500").await;
    assert_eq!(max.body["perPage"], 100);
    assert_eq!(max.body["items"].as_array().unwrap().len(), 100);
    let last = app.get(&key, "/api/assets?page=2&perPage=100").await;
    assert_eq!(last.body["items"].as_array().unwrap().len(), 5);
    assert_eq!(last.body["total"], 105);
    let mut seen: Vec<String> = vec![];
    for page in 1..=3 {
        let p = app
            .get(&key, &format!("/api/assets?page={page}&perPage=40"))
            .await;
        seen.extend(
            p.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_string()),
        );
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 105, "pages neither repeat nor skip");
    for q in ["page=0", "perPage=0", "page=abc", "perPage=-3"] {
        let r = app.get(&key, &format!("/api/assets?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(!r.body["field"].as_str().unwrap().is_empty());
    }
    // A page far past the end is empty, however far: its offset does not overflow.
    for path in ["/api/assets", "/api/audit-log", "/api/org/members"] {
        let far = app
            .get(&key, &format!("{path}?page=184467440737095518&perPage=100"))
            .await;
        assert_eq!(far.status, StatusCode::OK, "{path} {}", far.body);
        assert_eq!(far.body["items"], json!([]), "{path}");
    }
}

/// Bodies are JSON objects (serde would take a struct's fields from an array), and a number
/// without a fraction is an integer wherever one is asked for, as JSON Schema counts it.
async fn bodies_are_objects_and_whole_numbers_are_integers(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Enterprise).await;
    for body in [json!(["a", "b"]), json!("G"), json!(7)] {
        let r = app.post(&key, "/api/groups", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.code(), "INVALID_JSON", "{body}");
    }
    let g = app.group(&key, "Whole numbers").await;
    let schedule = app
        .post(
            &key,
            "/api/scan-schedules",
            json!({"groupId": g, "frequencyDays": 45.0}),
        )
        .await;
    assert_eq!(schedule.status, StatusCode::CREATED, "{}", schedule.body);
    let fraction = app
        .post(
            &key,
            "/api/scan-schedules",
            json!({"groupId": g, "frequencyDays": 45.5}),
        )
        .await;
    assert_eq!(
        fraction.status,
        StatusCode::BAD_REQUEST,
        "{}",
        fraction.body
    );
    assert_eq!(fraction.body["field"], "frequencyDays");
    // An action's optional body may be `null`, as the document states it.
    let acked = app
        .client
        .post(app.url("/api/monitors/alerts/00000000-0000-0000-0000-000000000000/acknowledge"))
        .header("X-API-Key", &key)
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status(), StatusCode::NOT_FOUND, "parsed as no body");
}

async fn health_and_readiness(b: Backend) {
    let app = spawn_app(b).await;
    for p in ["/healthz", "/readyz"] {
        let r = app.client.get(app.url(p)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{p}");
    }
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    let ready: Value = r.json().await.unwrap();
    assert_eq!(
        ready,
        json!({"status": "ready", "dependencies": {"database": "ok"}})
    );
    app.db.close().await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    let down: Value = r.json().await.unwrap();
    assert_eq!(down["code"], "UNAVAILABLE");
    assert_eq!(down["error"], "database unreachable", "names what is down");
    assert_eq!(down["dependencies"]["database"], "unreachable");
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn openapi_documents_every_served_route() {
    let app = spawn_configured(TestStore::new(Backend::Sqlite).await, |s| {
        s.metrics = Some(easm_api::metrics::install().unwrap());
    })
    .await;
    let doc: Value = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = vec![];
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    // Every documented operation is served: without a key it answers 401 (or 200 when public),
    // never the router's own 404 or 405.
    for op in &documented {
        let (method, path) = op.split_once(' ').unwrap();
        let url = app.url(&path.replace("{id}", "00000000-0000-0000-0000-000000000000"));
        // Not all answers are JSON (`/metrics` is Prometheus text).
        let r = app
            .client
            .request(method.parse().unwrap(), url)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert!(
            status == StatusCode::UNAUTHORIZED
                || (status == StatusCode::OK && !path.starts_with("/api/")
                    || path == "/api/openapi.json"),
            "{op} answered {status} {}",
            r.text().await.unwrap()
        );
        let op_doc = &paths[path][method.to_lowercase()];
        let answers = op_doc["responses"].as_object().unwrap();
        // What the layers around every handler can answer is stated for each operation.
        if op_doc["security"].as_array().is_some_and(|s| !s.is_empty()) {
            for status in ["401", "403", "429", "503"] {
                assert!(answers.contains_key(status), "{op} documents {status}");
            }
        }
        if path.contains('{') {
            assert!(answers.contains_key("404"), "{op} documents 404");
        }
        if op_doc.get("requestBody").is_some() {
            assert!(answers.contains_key("400"), "{op} documents 400");
            assert!(answers.contains_key("413"), "{op} documents 413");
        }
    }
    // What the server checks is stated: bounds, enumerations, and the rules of bodies whose one
    // type serves creating and changing.
    let schemas = &doc["components"]["schemas"];
    let per_page = paths["/api/assets"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "perPage")
        .unwrap();
    assert_eq!(per_page["schema"]["minimum"], 1, "{per_page}");
    assert_eq!(
        schemas["RoleName"]["enum"],
        json!(["viewer", "analyst", "admin", "owner"])
    );
    assert_eq!(
        schemas["BulkStatusBody"]["properties"]["ids"]["maxItems"],
        500
    );
    let new_monitor =
        &paths["/api/monitors"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert!(new_monitor["allOf"][1]["oneOf"].is_array(), "{new_monitor}");
    assert_eq!(schemas["AssetInput"]["oneOf"].as_array().unwrap().len(), 6);
    // A list and an export of findings state only the parameters each reads.
    let names = |path: &str| -> Vec<String> {
        paths[path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (list, export) = (names("/api/findings"), names("/api/findings/export"));
    assert!(list.contains(&"asOf".into()) && !list.contains(&"format".into()));
    assert!(export.contains(&"format".into()) && !export.contains(&"page".into()));
    assert!(!export.contains(&"asOf".into()), "{export:?}");
    // And the API's required surface is all in the document.
    for op in [
        "GET /api/groups",
        "POST /api/groups",
        "GET /api/groups/{id}",
        "PATCH /api/groups/{id}",
        "DELETE /api/groups/{id}",
        "GET /api/groups/{id}/summary",
        "GET /api/groups/{id}/assets",
        "POST /api/groups/{id}/assets",
        "POST /api/groups/{id}/assets/bulk",
        "GET /api/assets",
        "GET /api/assets/{id}",
        "PATCH /api/assets/{id}",
        "DELETE /api/assets/{id}",
        "GET /api/assets/{id}/timeline",
        "GET /api/assets/{id}/risk",
        "GET /api/assets/{id}/coverage",
        "GET /api/keys",
        "POST /api/keys",
        "DELETE /api/keys/{id}",
        "GET /api/org",
        "GET /api/scan-jobs",
        "POST /api/scan-jobs",
        "GET /api/scan-jobs/{id}",
        "DELETE /api/scan-jobs/{id}",
        "POST /api/scan-jobs/{id}/run",
        "POST /api/scan-jobs/{id}/cancel",
        "POST /api/scan-jobs/{id}/results",
        "GET /api/scan-jobs/{id}/findings",
        "GET /api/findings",
        "GET /api/findings/export",
        "POST /api/findings/bulk-status",
        "GET /api/findings/{id}",
        "PATCH /api/findings/{id}",
        "GET /api/webhooks",
        "POST /api/webhooks",
        "GET /api/webhooks/{id}",
        "PATCH /api/webhooks/{id}",
        "DELETE /api/webhooks/{id}",
        "POST /api/webhooks/{id}/rotate-secret",
        "POST /api/webhooks/{id}/test",
        "GET /api/webhooks/{id}/deliveries",
        "POST /api/webhooks/{id}/deliveries/{deliveryId}/retry",
        "POST /api/webhooks/{id}/recover",
        "GET /api/settings/audit-webhook",
        "PUT /api/settings/audit-webhook",
        "DELETE /api/settings/audit-webhook",
        "POST /api/settings/audit-webhook/test",
        "GET /api/settings/audit-webhook/deliveries",
        "GET /api/mcp-keys",
        "POST /api/mcp-keys",
        "DELETE /api/mcp-keys/{id}",
        "GET /api/findings/count",
        "GET /api/dashboard",
        "GET /healthz",
        "GET /readyz",
        "GET /api/openapi.json",
        "GET /metrics",
    ] {
        assert!(
            documented.iter().any(|d| d == op),
            "{op} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}

/// Schemathesis (its default checks, every phase, a fixed seed) finds nothing the document and the
/// server disagree on: schema-valid requests accepted, schema-violating ones refused, only the
/// statuses and bodies the document states, on every operation.
#[tokio::test]
async fn schemathesis_finds_the_document_true() {
    let s = crate::delivery::Setup::start(Backend::Sqlite, false, &[]).await;
    let url = s.server.as_ref().unwrap().url("/api/openapi.json");
    let key = format!("X-API-Key: {}", s.key);
    let hooks = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/api");
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("st")
            .args([
                "run",
                &url,
                "-H",
                &key,
                "--seed",
                "1",
                "--max-examples",
                "25",
            ])
            .arg("--no-color")
            // A test message waits up to 20 s for its attempt (to a name that may not resolve).
            .args(["--request-timeout", "30"])
            .env("PYTHONPATH", hooks)
            .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
            .current_dir(dir.path())
            .output()
            .expect("schemathesis (st) from the test virtualenv")
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("Selected: 89/89"), "{report}");
}
