//! One log line per request for the operator: method, route template (never the path's ids),
//! status, duration, request id and the id of the key that made it (never the key). Filter them
//! with `RUST_LOG=easm::access=off`. The same request is counted for `/metrics`, by method,
//! route template and status, with its duration, and is a span (`request`, a server span named
//! `METHOD /route`) continuing the trace of the client's `traceparent`, if it sent one.

use crate::auth::{AnsweredFor, RequestId};
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use easm_app::trace_context;
use std::time::Instant;
use tracing::Instrument;

pub async fn access_log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        request_id,
    );
    let traceparent = req.headers().get("traceparent");
    trace_context::continue_from(&span, traceparent.and_then(|v| v.to_str().ok()));
    let res = next.run(req).instrument(span.clone()).await;
    let status = res.status().as_u16();
    span.record("http.response.status_code", status);
    let seconds = started.elapsed().as_secs_f64();
    let labels = [
        ("method", method.to_string()),
        ("route", route.clone()),
        ("status", status.to_string()),
    ];
    metrics::counter!("easm_http_requests_total", &labels).increment(1);
    metrics::histogram!("easm_http_request_duration_seconds", &labels[..2]).record(seconds);
    let key_id = res
        .extensions()
        .get::<AnsweredFor>()
        .map_or("-", |k| k.0.as_str());
    tracing::info!(
        target: "easm::access",
        method = %method,
        route,
        status,
        duration_ms = seconds * 1000.0,
        request_id,
        key_id,
        "request"
    );
    res
}
