//! Traces over OTLP/HTTP, received by a real OTLP/HTTP receiver on 127.0.0.1 that decodes the
//! protobuf export requests with the OpenTelemetry protocol's own types.

use crate::delivery::{Setup, WAIT};
use crate::helpers::Backend;
use crate::receiver::Receiver;
use axum::body::Bytes;
use axum::extract::State;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A span as the receiver got it, ids in hex.
#[derive(Clone, Debug)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    links: Vec<String>,
}

#[derive(Default)]
struct Collected {
    spans: Mutex<Vec<Span>>,
}

async fn export(State(c): State<Arc<Collected>>, body: Bytes) -> StatusCode {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut spans = c.spans.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for s in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
            spans.push(Span {
                service: service.clone(),
                name: s.name,
                trace_id: hex::encode(&s.trace_id),
                span_id: hex::encode(&s.span_id),
                parent: hex::encode(&s.parent_span_id),
                links: s.links.iter().map(|l| hex::encode(&l.trace_id)).collect(),
            });
        }
    }
    StatusCode::OK
}

struct OtlpReceiver {
    endpoint: String,
    collected: Arc<Collected>,
}

impl OtlpReceiver {
    async fn start() -> OtlpReceiver {
        let collected = Arc::new(Collected::default());
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state(collected.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        OtlpReceiver {
            endpoint,
            collected,
        }
    }

    /// The spans of `trace_id` once `done` holds for them (panics after a while).
    async fn trace_when(&self, trace_id: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + WAIT;
        loop {
            let spans: Vec<Span> = self.collected.spans.lock().unwrap().clone();
            let trace: Vec<Span> = spans
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .cloned()
                .collect();
            if done(&trace) {
                return trace;
            }
            assert!(Instant::now() < deadline, "spans now: {spans:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn all(&self) -> Vec<Span> {
        self.collected.spans.lock().unwrap().clone()
    }
}

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name}: {spans:#?}"))
}

crate::on_every_transport!(one_trace_runs_from_the_request_to_the_receiver);

/// A client's request with its own `traceparent`: the request, its command and the append are
/// spans of the client's trace, the event keeps the append's context, and the delivery attempt,
/// made later by the delivery side (through NATS too), is a span of the same trace, whose
/// context the receiver gets as `traceparent`.
async fn one_trace_runs_from_the_request_to_the_receiver(b: Backend, nats: bool) {
    let otlp = OtlpReceiver::start().await;
    let s = Setup::start(
        b,
        nats,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint),
            ("OTEL_SERVICE_NAME", "easm-under-test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let receiver = Receiver::start().await;
    s.webhook(&receiver.url, &["asset.added"]).await;
    let group = s.post("/api/groups", json!({"name": "traced"})).await.id();

    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let client_span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let added = s
        .http
        .post(
            s.server
                .as_ref()
                .unwrap()
                .url(&format!("/api/groups/{group}/assets")),
        )
        .header("X-API-Key", &s.key)
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&json!({"value": "traced.example.com", "type": "domain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);

    let got = receiver.wait_for(1, WAIT).await;
    let sent = got[0].header("traceparent").to_string();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent:?}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", trace_id.as_str(), "01")
    );

    let trace = otlp
        .trace_when(&trace_id, |t| {
            t.iter().any(|s| s.name == "delivery attempt") && t.iter().any(|s| s.name == "append")
        })
        .await;
    assert!(
        trace.iter().all(|s| s.service == "easm-under-test"),
        "{trace:#?}"
    );
    let request = named(&trace, "POST /api/groups/{id}/assets");
    assert_eq!(request.parent, client_span);
    let command = named(&trace, "command");
    assert_eq!(command.parent, request.span_id);
    let append = named(&trace, "append");
    assert_eq!(append.parent, command.span_id);
    let attempt = named(&trace, "delivery attempt");
    assert_eq!(attempt.parent, append.span_id, "{trace:#?}");
    assert_eq!(
        attempt.span_id, parts[2],
        "the receiver got the attempt's context"
    );

    // The event keeps the append's context, outside its hashed envelope.
    let db = easm_store::Db::connect(&s.store.config).await.unwrap();
    let stored: Option<String> =
        sqlx::query_scalar("SELECT traceparent FROM events WHERE event_type = 'asset.added'")
            .fetch_one(db.reader())
            .await
            .unwrap();
    db.close().await;
    assert_eq!(
        stored.as_deref(),
        Some(format!("00-{trace_id}-{}-01", append.span_id).as_str())
    );

    // The batches that carried the event are spans of their own, linked to its trace.
    let deadline = Instant::now() + WAIT;
    let wanted: &[&str] = if nats {
        &["fan-out", "relay batch"]
    } else {
        &["fan-out"]
    };
    loop {
        let all = otlp.all();
        let seen = |name: &str| {
            all.iter()
                .any(|s| s.name == name && (name == "relay batch" || s.links.contains(&trace_id)))
        };
        if wanted.iter().all(|n| seen(n)) {
            break;
        }
        assert!(Instant::now() < deadline, "batch spans: {all:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
