//! Deliveries SIEMs take as they are: endpoint options checked and their secrets write-only;
//! CloudEvents, OCSF and ECS bodies read by clients we did not write; filters; FIFO order across
//! a failing receiver; custom headers, a corporate CA, mutual TLS and a proxy; Splunk HEC,
//! Elasticsearch `_bulk`, rsyslog over TCP and TLS, Slack and Teams. Deliveries run in `easm
//! serve` processes against real servers on 127.0.0.1.

use crate::delivery::{all_status, Setup, WAIT};
use crate::helpers::*;
use crate::receiver::Receiver;
use crate::siem_servers::*;
use crate::{on_both_backends, on_every_transport, on_sqlite_and_nats};
use easm_domain::Plan;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

on_both_backends!(endpoint_options_are_checked_and_write_only_values_masked);

on_every_transport!(
    formats_are_read_by_their_own_clients,
    filters_leave_messages_out_and_count_them,
    a_fifo_endpoint_receives_in_log_order_across_failures,
    splunk_hec_takes_batches_and_its_answers_are_followed,
    elasticsearch_indexes_each_document_once,
    syslog_reaches_rsyslog_over_tcp_and_tls,
    a_corporate_ca_and_a_client_certificate_reach_the_receiver,
);

on_both_backends!(a_batch_under_way_when_its_process_dies_is_sent_by_the_next);

on_every_transport!(messages_without_a_slot_wait_in_the_queue);

on_sqlite_and_nats!(
    requests_go_through_the_configured_proxy,
    chat_channels_get_short_messages_for_people,
);

const KEY_PEM_MARK: &str = "PRIVATE KEY";

async fn endpoint_options_are_checked_and_write_only_values_masked(b: Backend) {
    let app = spawn_configured(TestStore::new(b).await, |s| s.webhook_allow_private = true).await;
    let (_, key) = app.org(Plan::Pro).await;
    let created = app
        .post(
            &key,
            "/api/webhooks",
            json!({"url": "http://127.0.0.1:9/", "events": ["finding.*"], "kind": "splunk-hec",
                   "token": "hec-token-123456", "headers": {"X-Tenant": "acme-secret"},
                   "format": "ocsf", "index": "security", "batchSize": 500, "batchWindow": "50ms"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.id();
    for shown in [
        created.body.clone(),
        app.get(&key, &format!("/api/webhooks/{id}")).await.body,
    ] {
        assert_eq!(shown["kind"], "splunk-hec");
        assert_eq!(shown["format"], "ocsf");
        assert_eq!(shown["token"], "********");
        assert_eq!(shown["headers"], json!({"X-Tenant": "********"}));
        assert_eq!(
            (shown["batchSize"].clone(), shown["batchWindow"].clone()),
            (json!(500), json!(50))
        );
        let text = shown.to_string();
        assert!(
            !text.contains("hec-token-123456") && !text.contains("acme-secret"),
            "{text}"
        );
    }
    // Sent back as read, with the masks, the values stay; a new one replaces its own.
    let mut back = app.get(&key, &format!("/api/webhooks/{id}")).await.body;
    let back = json!({"headers": back["headers"].take(), "token": back["token"].take(),
                      "description": "SOC"});
    let patched = app.patch(&key, &format!("/api/webhooks/{id}"), back).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let stored = app
        .state
        .commands
        .credentials()
        .all(&id.clone().into())
        .await
        .unwrap();
    assert_eq!(stored["token"], "hec-token-123456");
    assert_eq!(stored["headers.X-Tenant"], "acme-secret");
    let rotated = app
        .patch(
            &key,
            &format!("/api/webhooks/{id}"),
            json!({"token": "hec-token-new"}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    // Refused with the field named, nothing changed.
    for (body, field) in [
        (json!({"headers": {"Host": "x"}}), "headers.Host"),
        (
            json!({"headers": {"content-type": "text/plain"}}),
            "headers.content-type",
        ),
        (
            json!({"headers": {"Webhook-Signature": "v1,x"}}),
            "headers.Webhook-Signature",
        ),
        (
            json!({"headers": {"Authorization": "Splunk x"}}),
            "headers.Authorization",
        ),
        (json!({"headers": {"X-New": "********"}}), "headers.X-New"),
        (json!({"headers": {"X-Bad": "a\nb"}}), "headers.X-Bad"),
        (json!({"format": "cef"}), "format"),
        (json!({"batchSize": 0}), "batchSize"),
        (json!({"batchWindow": "1h"}), "batchWindow"),
        (json!({"apiKey": "k"}), "apiKey"),
        (json!({"filter": {"minSeverity": "severe"}}), "filter"),
        (json!({"ordering": "sorted"}), "ordering"),
        (json!({"proxy": "socks5://127.0.0.1:1080"}), "proxy"),
        (
            json!({"tls": {"caBundle": "not a certificate"}}),
            "tls.caBundle",
        ),
        (json!({"kind": "elasticsearch", "apiKey": "k"}), "index"),
        (json!({"kind": "syslog"}), "url"),
    ] {
        let a = app
            .patch(&key, &format!("/api/webhooks/{id}"), body.clone())
            .await;
        // What another kind of endpoint would take conflicts with this one (409); what none
        // would is invalid (400).
        let fits_another = [
            json!({"format": "cef"}),
            json!({"headers": {"Authorization": "Splunk x"}}),
            json!({"apiKey": "k"}),
            // To elasticsearch, without the index a new one of that kind would hold.
            json!({"kind": "elasticsearch", "apiKey": "k"}),
            json!({"kind": "syslog"}),
        ]
        .contains(&body);
        let want = if fits_another {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(a.status, want, "{body}: {}", a.body);
        assert!(a.body.to_string().contains(field), "{body}: {}", a.body);
    }
    // A group that is not there is named as such (404, the body being well formed).
    let no_group = app
        .patch(
            &key,
            &format!("/api/webhooks/{id}"),
            json!({"filter": {"groupIds": ["no-such-group"]}}),
        )
        .await;
    assert_eq!(no_group.status, StatusCode::NOT_FOUND, "{}", no_group.body);
    assert!(no_group.body["error"]
        .as_str()
        .unwrap()
        .contains("filter.groupIds"));
    let still = app.get(&key, &format!("/api/webhooks/{id}")).await.body;
    assert_eq!(
        (still["kind"].clone(), still["description"].clone()),
        (json!("splunk-hec"), json!("SOC"))
    );
    // A client certificate needs its key; the key is write-only.
    let ca = TestCa::new("corp CA");
    let client = ca.client("easm");
    let no_key = app
        .post(
            &key,
            "/api/webhooks",
            json!({"url": "https://127.0.0.1:9/", "events": ["*"],
                   "tls": {"clientCertificate": client.pem}}),
        )
        .await;
    assert_eq!(no_key.status, StatusCode::BAD_REQUEST, "{}", no_key.body);
    let mtls = app
        .post(
            &key,
            "/api/webhooks",
            json!({"url": "https://127.0.0.1:9/", "events": ["*"],
                   "tls": {"caBundle": ca.pem, "clientCertificate": client.pem, "clientKey": client.key_pem}}),
        )
        .await;
    assert_eq!(mtls.status, StatusCode::CREATED, "{}", mtls.body);
    assert_eq!(mtls.body["tls"]["clientKey"], "********");
    assert!(mtls.body["tls"]["caBundle"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    // The log names what changed and never holds a value.
    let events = app.get(&key, "/api/events?limit=100").await;
    assert_eq!(events.status, StatusCode::OK, "{}", events.body);
    let log = events.body.to_string();
    // The token's replacement is named in the log, its value is not.
    assert!(log.contains(r#""credentials":["token"]"#), "{log}");
    for secret in [
        "hec-token-123456",
        "hec-token-new",
        "acme-secret",
        KEY_PEM_MARK,
    ] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
    // Deleting the endpoint forgets its values.
    assert_eq!(
        app.delete(&key, &format!("/api/webhooks/{id}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert!(app
        .state
        .commands
        .credentials()
        .all(&id.into())
        .await
        .unwrap()
        .is_empty());
}

/// Runs a Python snippet over JSON lines on stdin; the snippet prints one result per line.
fn python(script: &str, input: &[Value]) -> Vec<String> {
    let lines: String = input.iter().map(|v| format!("{v}\n")).collect();
    run_python(script, &lines)
}

/// CloudEvents structured mode as the `cloudevents` SDK parses it from HTTP.
const CLOUDEVENTS: &str = r#"
import sys, json
try:
    from cloudevents.http import from_http
except ImportError:  # cloudevents 2.x
    from cloudevents.v1.http import from_http
for line in sys.stdin:
    m = json.loads(line)
    e = from_http(m["headers"], m["body"])
    print(json.dumps({"id": e["id"], "type": e["type"], "source": e["source"],
                      "subject": e.get("subject"), "specversion": e["specversion"],
                      "data": e.data}))
"#;

/// OCSF events as py-ocsf-models reads them: Detection Findings by their own model, others by
/// the base event and the objects the class requires.
const OCSF: &str = r#"
import sys, json
from py_ocsf_models.events.base_event import BaseEvent
from py_ocsf_models.events.findings.detection_finding import DetectionFinding
from py_ocsf_models.events.findings.finding import Finding
from py_ocsf_models.objects.vulnerability_details import VulnerabilityDetails
from py_ocsf_models.objects.resource_details import ResourceDetails
from py_ocsf_models.objects.user import User
from py_ocsf_models.objects.api import API
for line in sys.stdin:
    e = json.loads(line)
    c = e["class_uid"]
    if c == 2004:
        DetectionFinding.model_validate(e)
    elif c == 2002:
        Finding.model_validate(e)
        for v in e["vulnerabilities"]:
            VulnerabilityDetails.model_validate(v)
    elif c == 3001:
        BaseEvent.model_validate(e)
        User.model_validate(e["user"])
    elif c == 6003:
        BaseEvent.model_validate(e)
        API.model_validate(e["api"])
        User.model_validate(e["actor"]["user"])
    else:
        BaseEvent.model_validate(e)
    for r in e.get("resources") or []:
        ResourceDetails.model_validate(r)
    assert e["type_uid"] == c * 100 + e["activity_id"], e
    print(c)
"#;

async fn formats_are_read_by_their_own_clients(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[]).await;
    let (ce_rx, ocsf_rx, ecs_rx) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let mut hooks = vec![];
    for (rx, format, events) in [
        (&ce_rx, "cloudevents", json!(["finding.*", "asset.*"])),
        (&ocsf_rx, "ocsf", json!(["finding.*", "audit.*"])),
        (&ecs_rx, "ecs", json!(["finding.*"])),
    ] {
        let a = s
            .post(
                "/api/webhooks",
                json!({"url": rx.url, "events": events, "format": format,
                       "headers": {"X-Tenant": "acme", "Authorization": "Bearer siem-token"}}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        hooks.push(a.id());
    }
    s.nuclei_results().await;
    // CloudEvents: every message, asset and findings, as the SDK reads it.
    let got = eventually(WAIT, || {
        let r = ce_rx.received();
        (r.iter().any(|m| m.body.contains("finding.new"))
            && r.iter().any(|m| m.body.contains("asset.added")))
        .then_some(r)
    })
    .await;
    for m in &got {
        assert_eq!(m.header("content-type"), "application/cloudevents+json");
        assert_eq!(m.header("x-tenant"), "acme");
        assert_eq!(m.header("authorization"), "Bearer siem-token");
        assert!(m.header("webhook-signature").starts_with("v1,"));
        assert_eq!(m.header("webhook-id"), m.json()["id"]);
    }
    let input: Vec<Value> = got
        .iter()
        .map(|m| json!({"headers": {"content-type": m.header("content-type")}, "body": m.body}))
        .collect();
    let parsed: Vec<Value> = python(CLOUDEVENTS, &input)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed.len(), got.len());
    let finding = parsed
        .iter()
        .find(|e| e["type"] == "com.easm.finding.new")
        .expect("a finding.new event");
    assert_eq!(finding["specversion"], "1.0");
    assert_eq!(finding["source"], format!("/easm/orgs/{}", s.org));
    assert_eq!(finding["subject"], finding["data"]["findingId"]);
    // OCSF: findings and the audit trail, validated by py-ocsf-models.
    let got = eventually(WAIT, || {
        let r = ocsf_rx.received();
        (r.iter().filter(|m| m.json()["class_uid"] == 2002).count() >= 1
            && r.iter().any(|m| m.json()["class_uid"] == 6003))
        .then_some(r)
    })
    .await;
    let bodies: Vec<Value> = got.iter().map(|m| m.json()).collect();
    let classes = python(OCSF, &bodies);
    assert_eq!(classes.len(), bodies.len());
    let vuln = bodies.iter().find(|e| e["class_uid"] == 2002).unwrap();
    assert_eq!(vuln["vulnerabilities"][0]["cve"]["uid"], "CVE-2021-41773");
    assert_eq!(vuln["severity_id"], 5);
    assert_eq!(vuln["resources"][0]["name"], "127.0.0.1");
    let api = bodies.iter().find(|e| e["class_uid"] == 6003).unwrap();
    assert_eq!(api["actor"]["user"]["type"], "API key");
    assert!(api["src_endpoint"]["ip"].is_string(), "{api}");
    // ECS: the vulnerability, its host and where it was seen.
    let got = eventually(WAIT, || {
        ecs_rx
            .received()
            .into_iter()
            .map(|m| m.json())
            .find(|d| d["vulnerability"]["id"] == "CVE-2021-41773")
    })
    .await;
    assert_eq!(got["event"]["kind"], "state");
    assert_eq!(got["event"]["category"], json!(["vulnerability"]));
    assert_eq!(got["event"]["severity"], 99);
    assert_eq!(got["vulnerability"]["score"]["base"], 7.5);
    assert_eq!(got["host"]["name"], "127.0.0.1");
    assert_eq!(got["url"]["domain"], "127.0.0.1");
    assert!(got["@timestamp"].as_str().unwrap().ends_with('Z'));
}

async fn filters_leave_messages_out_and_count_them(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[]).await;
    let rx = Receiver::start().await;
    let a = s
        .post(
            "/api/webhooks",
            json!({"url": rx.url, "events": ["finding.*"], "filter": {"minSeverity": "high"}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let hook = a.id();
    let tags = s
        .post(
            "/api/webhooks",
            json!({"url": rx.url, "events": ["asset.added"], "filter": {"tags": ["prod"]}}),
        )
        .await
        .id();
    s.nuclei_results().await;
    let g = s
        .post("/api/groups", json!({"name": "filtered"}))
        .await
        .id();
    for (value, tags) in [
        ("prod.example.com", json!(["prod"])),
        ("dev.example.com", json!(["dev"])),
    ] {
        let added = s
            .post(
                &format!("/api/groups/{g}/assets"),
                json!({"value": value, "type": "subdomain", "tags": tags}),
            )
            .await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    }
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let filtered = page(
            &s,
            format!("/api/webhooks/{hook}/deliveries?status=filtered"),
        )
        .await;
        let sent = page(
            &s,
            format!("/api/webhooks/{hook}/deliveries?status=succeeded"),
        )
        .await;
        if filtered["total"].as_i64() >= Some(1) && sent["total"].as_i64() >= Some(1) {
            for d in filtered["items"].as_array().unwrap() {
                assert!(
                    d["lastError"].as_str().unwrap().contains("below high"),
                    "{d}"
                );
                assert!(d["attempts"].as_array().unwrap().is_empty());
            }
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{filtered} {sent}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tagged = eventually(WAIT, || {
        rx.received()
            .into_iter()
            .map(|m| m.json())
            .find(|v| v["type"] == "asset.added")
    })
    .await;
    assert_eq!(tagged["data"]["value"], "prod.example.com");
    let left_out = page(
        &s,
        format!("/api/webhooks/{tags}/deliveries?status=filtered"),
    )
    .await;
    assert!(left_out["total"].as_i64().unwrap() >= 1, "{left_out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for m in rx.received() {
        let v = m.json();
        if v["type"] == "finding.new" {
            assert_eq!(v["data"]["severity"], "critical", "{v}");
        }
        assert_ne!(v["data"]["value"], "dev.example.com", "{v}");
    }
}

async fn a_fifo_endpoint_receives_in_log_order_across_failures(b: Backend, nats: bool) {
    let s = Setup::start(
        b,
        nats,
        &[("EASM_WEBHOOK_RETRY_SCHEDULE", "300ms,300ms,300ms,300ms")],
    )
    .await;
    let rx = Receiver::start().await;
    let a = s
        .post(
            "/api/webhooks",
            json!({"url": rx.url, "events": ["asset.added"], "ordering": "fifo"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["ordering"], "fifo");
    rx.fail_first(3);
    let mut added = vec![];
    for _ in 0..4 {
        added.extend(s.assets(3).await);
    }
    let got = rx.wait_for(12 + 3, WAIT).await;
    // What arrived, failures included, never went back in the log.
    let positions: Vec<i64> = got
        .iter()
        .map(|m| m.json()["data"]["position"].as_i64().unwrap())
        .collect();
    for w in positions.windows(2) {
        assert!(w[0] <= w[1], "out of order: {positions:?}");
    }
    let mut unique = positions.clone();
    unique.dedup();
    assert_eq!(unique.len(), 12, "{positions:?}");
    // The first message was tried four times before the second went.
    assert_eq!(
        positions[..4]
            .iter()
            .filter(|p| **p == positions[0])
            .count(),
        4,
        "{positions:?}"
    );
}

async fn splunk_hec_takes_batches_and_its_answers_are_followed(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[]).await;
    let hec = HecServer::start("4c1e3c5a-hec-token").await;
    hec.busy_first(1);
    let a = s
        .post(
            "/api/webhooks",
            json!({"url": hec.url, "events": ["asset.added"], "kind": "splunk-hec",
                   "token": "4c1e3c5a-hec-token", "index": "easm", "sourcetype": "easm:asset",
                   "batchSize": 20, "batchWindow": 300}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let hook = a.id();
    let values = s.assets(50).await;
    let indexed = eventually(WAIT, || {
        let i = hec.indexed();
        (i.len() >= 50).then_some(i)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let indexed_after = hec.indexed();
    assert_eq!(indexed_after.len(), 50, "each event indexed once");
    for e in &indexed {
        assert_eq!(e["index"], "easm");
        assert_eq!(e["sourcetype"], "easm:asset");
        assert!(e["time"].as_f64().unwrap() > 1.7e9);
        assert_eq!(e["event"]["type"], "asset.added");
    }
    let mut seen: Vec<String> = indexed
        .iter()
        .map(|e| e["event"]["data"]["value"].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    let mut want = values.clone();
    want.sort();
    assert_eq!(seen, want);
    // Batched: fewer requests than events, one of them busy; the log names each batch.
    let requests = hec.requests();
    assert!(
        requests.len() < 20 && requests.iter().any(|n| *n > 1),
        "{requests:?}"
    );
    let log = s
        .get(&format!("/api/webhooks/{hook}/deliveries?perPage=100"))
        .await;
    let items = log.body["items"].as_array().unwrap();
    let retried = items
        .iter()
        .find(|d| d["attemptCount"] == 2)
        .expect("a delivery retried after 'server busy'");
    let first = &retried["attempts"][0];
    assert_eq!(first["statusCode"], 503);
    assert!(
        first["error"].as_str().unwrap().contains("Server is busy"),
        "{first}"
    );
    let batch = retried["attempts"][1]["batchId"].as_str().unwrap();
    let together = s
        .get(&format!(
            "/api/webhooks/{hook}/deliveries?batchId={batch}&perPage=100"
        ))
        .await;
    assert_eq!(
        together.body["total"], retried["attempts"][1]["batchSize"],
        "{}",
        together.body
    );
    // A token HEC refuses disables the endpoint at once: no retry can fix it.
    let bad = s
        .post(
            "/api/webhooks",
            json!({"url": hec.url, "events": ["asset.added"], "kind": "splunk-hec",
                   "token": "wrong-token", "batchWindow": 0}),
        )
        .await
        .id();
    s.assets(1).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let v = s.get(&format!("/api/webhooks/{bad}")).await;
        if v.body["enabled"] == false {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", v.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed = s
        .get(&format!("/api/webhooks/{bad}/deliveries?status=failed"))
        .await;
    assert!(failed.body["items"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("Invalid token"));
}

async fn elasticsearch_indexes_each_document_once(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[("EASM_WEBHOOK_RETRY_SCHEDULE", "300ms,300ms")]).await;
    let es = EsServer::start("ZWFzbTpzZWNyZXQ=").await;
    es.refuse_action("audit.group.created");
    es.reject_items_first(2);
    let a = s
        .post(
            "/api/webhooks",
            json!({"url": es.url, "events": ["asset.added", "audit.group.created"], "kind": "elasticsearch",
                   "index": "easm-events", "apiKey": "ZWFzbTpzZWNyZXQ=", "batchWindow": 100}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["format"], "ecs");
    let hook = a.id();
    s.assets(10).await;
    let docs = eventually(WAIT, || {
        let d = es.docs("easm-events");
        (d.len() >= 10).then_some(d)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(es.docs("easm-events").len(), 10, "each document once");
    for (id, doc) in &docs {
        assert!(id.starts_with("evt_"), "the message id is the _id: {id}");
        assert_eq!(doc["event"]["action"], "asset.added");
        assert_eq!(doc["ecs"]["version"], "8.11.0");
        assert!(doc["host"]["name"]
            .as_str()
            .unwrap()
            .ends_with(".example.com"));
    }
    // The mapping error is dead-lettered with Elasticsearch's reason; nothing else failed.
    let failed = s
        .get(&format!("/api/webhooks/{hook}/deliveries?status=failed"))
        .await;
    assert_eq!(failed.body["total"], 1, "{}", failed.body);
    let reason = failed.body["items"][0]["attempts"][0]["error"]
        .as_str()
        .unwrap();
    assert!(reason.contains("document_parsing_exception"), "{reason}");
    assert_eq!(failed.body["items"][0]["eventType"], "audit.group.created");
    // Two items were rejected with 429 and sent again on their own schedule.
    let log = s
        .get(&format!("/api/webhooks/{hook}/deliveries?perPage=100"))
        .await;
    let retried = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["attemptCount"] == 2 && d["status"] == "succeeded")
        .count();
    assert_eq!(retried, 2, "{}", log.body);
    assert!(es.bulk_requests() < 10);
    // An API key Elasticsearch refuses disables the endpoint.
    let bad = s
        .post(
            "/api/webhooks",
            json!({"url": es.url, "events": ["asset.added"], "kind": "elasticsearch",
                   "index": "easm-events", "apiKey": "wrong", "batchWindow": 0}),
        )
        .await
        .id();
    s.assets(1).await;
    let deadline = std::time::Instant::now() + WAIT;
    while s.get(&format!("/api/webhooks/{bad}")).await.body["enabled"] != false {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// rsyslog's line for a message: `<pri>|<hostname>|<app-name>|<msgid>|<msg>`.
fn syslog_fields(line: &str) -> Vec<&str> {
    line.splitn(5, '|').collect()
}

async fn syslog_reaches_rsyslog_over_tcp_and_tls(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[]).await;
    let mut tcp = Rsyslog::start(None).await;
    let ca = TestCa::new("syslog CA");
    let server = ca.server();
    let tls = Rsyslog::start(Some((&ca, &server))).await;
    let plain = s
        .post(
            "/api/webhooks",
            json!({"url": format!("tcp://127.0.0.1:{}", tcp.port), "events": ["asset.added"],
                   "kind": "syslog", "batchWindow": 50}),
        )
        .await;
    assert_eq!(plain.status, StatusCode::CREATED, "{}", plain.body);
    assert_eq!(plain.body["format"], "cef");
    let secure = s
        .post(
            "/api/webhooks",
            json!({"url": format!("tls://localhost:{}", tls.port), "events": ["asset.added"],
                   "kind": "syslog", "format": "ecs", "tls": {"caBundle": ca.pem}, "batchWindow": 50}),
        )
        .await;
    assert_eq!(secure.status, StatusCode::CREATED, "{}", secure.body);
    let values = s.assets(5).await;
    let lines = tcp.wait_for(5, WAIT).await;
    for l in &lines {
        let f = syslog_fields(l);
        assert_eq!(f[0], "134", "local0.info: {l}");
        assert_eq!((f[2], f[3]), ("easm", "asset.added"), "{l}");
        assert!(f[4].trim_start().starts_with("CEF:0|easm|easm|"), "{l}");
        assert!(f[4].contains("act=asset.added"), "{l}");
    }
    let lines = tls.wait_for(5, WAIT).await;
    let mut ids: Vec<String> = lines
        .iter()
        .map(|l| {
            let f = syslog_fields(l);
            assert_eq!(f[3], "asset.added", "{l}");
            let doc: Value = serde_json::from_str(f[4].trim()).unwrap();
            assert_eq!(doc["event"]["action"], "asset.added");
            doc["easm"]["data"]["value"].as_str().unwrap().to_string()
        })
        .collect();
    ids.sort();
    let mut want = values.clone();
    want.sort();
    assert_eq!(ids, want);
    // The receiver goes away and comes back: the connection is made again.
    tcp.restart();
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.assets(2).await;
    tcp.wait_for(7, WAIT).await;
    assert_eq!(
        s.get(&format!(
            "/api/webhooks/{}/deliveries?status=failed",
            plain.id()
        ))
        .await
        .body["total"],
        0
    );
}

async fn a_corporate_ca_and_a_client_certificate_reach_the_receiver(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[]).await;
    let rx = Receiver::start().await;
    let corp = TestCa::new("corp CA");
    let clients = TestCa::new("client CA");
    let server = corp.server();
    let front = TlsFront::start(&server, Some(&clients), &rx.url).await;
    let url = format!("https://localhost:{}/hook", front.port);
    // Without the CA the receiver's certificate is not trusted; without a client certificate
    // the receiver refuses the handshake.
    let untrusted = s
        .post("/api/webhooks", json!({"url": url, "events": ["*"]}))
        .await
        .id();
    let test = s
        .post(&format!("/api/webhooks/{untrusted}/test"), json!({}))
        .await;
    assert_eq!(test.status, StatusCode::OK, "{}", test.body);
    assert!(
        test.body["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("certificate"),
        "{}",
        test.body
    );
    let no_client = s
        .post(
            "/api/webhooks",
            json!({"url": url, "events": ["*"], "tls": {"caBundle": corp.pem}}),
        )
        .await
        .id();
    let test = s
        .post(&format!("/api/webhooks/{no_client}/test"), json!({}))
        .await;
    assert_eq!(test.body["status"], "failed", "{}", test.body);
    let client = clients.client("easm-delivery");
    let mtls = s
        .post(
            "/api/webhooks",
            json!({"url": url, "events": ["asset.added"],
                   "tls": {"caBundle": corp.pem, "clientCertificate": client.pem, "clientKey": client.key_pem}}),
        )
        .await;
    assert_eq!(mtls.status, StatusCode::CREATED, "{}", mtls.body);
    let test = s
        .post(&format!("/api/webhooks/{}/test", mtls.id()), json!({}))
        .await;
    assert_eq!(test.body["status"], "succeeded", "{}", test.body);
    assert_eq!(test.body["attempts"][0]["statusCode"], 200);
    s.assets(2).await;
    let got = eventually(WAIT, || {
        let r = rx.received();
        (r.iter().filter(|m| m.body.contains("asset.added")).count() >= 2).then_some(r)
    })
    .await;
    assert!(got
        .iter()
        .all(|m| !m.header("webhook-signature").is_empty()));
    assert!(!front.client_names.lock().unwrap().is_empty());
}

async fn requests_go_through_the_configured_proxy(b: Backend, nats: bool) {
    let proxy = Proxy::start().await;
    let rx = Receiver::start().await;
    let s = Setup::start(
        b,
        nats,
        &[
            ("HTTPS_PROXY", "http://127.0.0.1:9"),
            ("HTTP_PROXY", "http://127.0.0.1:9"),
        ],
    )
    .await;
    // Proxy variables of the environment are not used: this goes straight to the receiver.
    let direct = s
        .post("/api/webhooks", json!({"url": rx.url, "events": ["*"]}))
        .await
        .id();
    let test = s
        .post(&format!("/api/webhooks/{direct}/test"), json!({}))
        .await;
    assert_eq!(test.body["status"], "succeeded", "{}", test.body);
    assert!(proxy.requests.lock().unwrap().is_empty());
    let via = s
        .post(
            "/api/webhooks",
            json!({"url": rx.url, "events": ["*"], "proxy": proxy.url}),
        )
        .await;
    assert_eq!(via.status, StatusCode::CREATED, "{}", via.body);
    assert_eq!(via.body["proxy"], format!("{}/", proxy.url));
    let test = s
        .post(&format!("/api/webhooks/{}/test", via.id()), json!({}))
        .await;
    assert_eq!(test.body["status"], "succeeded", "{}", test.body);
    let seen = proxy.requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with(&format!("POST {}", rx.url)), "{seen:?}");
    // The operator's proxy carries what names none.
    let mut s = s;
    s.env.push(("EASM_WEBHOOK_PROXY", proxy.url.clone()));
    s.server = None;
    s.restart();
    let test = s
        .post(&format!("/api/webhooks/{direct}/test"), json!({}))
        .await;
    assert_eq!(test.body["status"], "succeeded", "{}", test.body);
    assert_eq!(proxy.requests.lock().unwrap().len(), 2);
}

async fn chat_channels_get_short_messages_for_people(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[("EASM_PUBLIC_URL", "https://easm.example.com")]).await;
    let (slack_rx, teams_rx) = (Receiver::start().await, Receiver::start().await);
    let slack = s
        .post(
            "/api/webhooks",
            json!({"url": slack_rx.url, "events": ["finding.new", "asset.added"], "kind": "slack"}),
        )
        .await;
    assert_eq!(slack.status, StatusCode::CREATED, "{}", slack.body);
    let teams = s
        .post(
            "/api/webhooks",
            json!({"url": teams_rx.url, "events": ["finding.new"], "kind": "teams"}),
        )
        .await
        .id();
    let test = s
        .post(&format!("/api/webhooks/{}/test", slack.id()), json!({}))
        .await;
    assert_eq!(test.body["status"], "succeeded", "{}", test.body);
    assert_eq!(
        slack_rx.received()[0].json()["text"],
        "*Test message from easm*"
    );
    s.nuclei_results().await;
    let text = eventually(WAIT, || {
        slack_rx
            .received()
            .into_iter()
            .filter_map(|m| m.json()["text"].as_str().map(str::to_string))
            .find(|t| t.contains("CRITICAL"))
    })
    .await;
    assert!(text.starts_with("*New finding*"), "{text}");
    assert!(
        text.contains("*Asset:* 127.0.0.1") && text.contains("Apache 2.4.49"),
        "{text}"
    );
    assert!(
        text.contains("<https://easm.example.com/api/findings/"),
        "{text}"
    );
    let card = eventually(WAIT, || teams_rx.received().first().map(|m| m.json())).await;
    assert_eq!(
        card["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    // Asset events are not for people: left out and counted.
    let left = s
        .get(&format!(
            "/api/webhooks/{}/deliveries?status=filtered",
            slack.id()
        ))
        .await;
    assert!(left.body["total"].as_i64().unwrap() >= 1, "{}", left.body);
    assert!(left.body["items"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("chat"));
    let sent = s
        .get(&format!(
            "/api/webhooks/{teams}/deliveries?status=succeeded"
        ))
        .await;
    assert!(sent.body["total"].as_i64().unwrap() >= 1, "{}", sent.body);
}

async fn page(s: &Setup, path: String) -> Value {
    let a = s.get(&path).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body
}

/// The values of the assets HEC indexed, each once.
fn indexed_values(hec: &HecServer) -> Vec<String> {
    let mut v: Vec<String> = hec
        .indexed()
        .iter()
        .map(|e| e["event"]["data"]["value"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

async fn hec_endpoint(s: &Setup, hec: &HecServer, batch_size: u32) -> String {
    let a = s
        .post(
            "/api/webhooks",
            json!({"url": hec.url, "events": ["asset.added"], "kind": "splunk-hec",
                   "token": "5b2d-hec-token", "batchSize": batch_size, "batchWindow": 0}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    a.id()
}

/// From the outbox, a batch goes out before its messages are written: the process dies while
/// the collector holds the request, and the next process sends the events again (at least
/// once) rather than losing them; each is then recorded once, delivered.
async fn a_batch_under_way_when_its_process_dies_is_sent_by_the_next(b: Backend) {
    let mut s = Setup::start(b, false, &[]).await;
    let hec = HecServer::start("5b2d-hec-token").await;
    hec.answer_after(Duration::from_secs(60));
    let hook = hec_endpoint(&s, &hec, 10).await;
    let mut values = s.assets(3).await;
    values.sort();
    eventually(WAIT, || (indexed_values(&hec) == values).then_some(())).await;
    s.server.take().unwrap().kill();
    hec.answer_after(Duration::ZERO);
    s.restart();
    eventually(WAIT, || (hec.requests().len() >= 2).then_some(())).await;
    assert_eq!(indexed_values(&hec), values);
    let items = s
        .deliveries_when(&hook, |d| all_status(d, 3, "succeeded"))
        .await;
    assert!(items.iter().all(|d| d["attemptCount"] == 1), "{items:#?}");
}

/// One request at a time to the endpoint (`EASM_WEBHOOK_CONCURRENCY=1`), batches of 2: while
/// the first is answered slowly, the other messages wait in the queue, shown pending and not yet
/// attempted, and go once the slot is free; each is delivered once.
async fn messages_without_a_slot_wait_in_the_queue(b: Backend, nats: bool) {
    let s = Setup::start(b, nats, &[("EASM_WEBHOOK_CONCURRENCY", "1")]).await;
    let hec = HecServer::start("5b2d-hec-token").await;
    hec.answer_after(Duration::from_secs(2));
    let hook = hec_endpoint(&s, &hec, 2).await;
    let mut values = s.assets(6).await;
    values.sort();
    let waiting = s
        .deliveries_when(&hook, |d| {
            d.iter()
                .filter(|m| m["status"] == "pending" && m["attemptCount"] == 0)
                .count()
                >= 4
        })
        .await;
    assert!(hec.requests().len() <= 1, "{:?}", hec.requests());
    assert!(waiting.len() >= 4, "{waiting:#?}");
    hec.answer_after(Duration::ZERO);
    let items = s
        .deliveries_when(&hook, |d| all_status(d, 6, "succeeded"))
        .await;
    assert!(items.iter().all(|d| d["attemptCount"] == 1), "{items:#?}");
    assert_eq!(hec.indexed().len(), 6, "each event indexed once");
    assert_eq!(indexed_values(&hec), values);
}
