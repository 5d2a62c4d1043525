//! `GET /metrics`: Prometheus text. Counters and histograms are kept as things happen (requests
//! by route template and status, commands, events appended by type, delivery attempts,
//! rate-limit rejections); what every process shares (outbox, delivery queue, jobs, projection
//! lag) is read from the database at each scrape. No label carries a tenant's id. Unauthenticated,
//! for scrapers: it belongs behind the operator's network boundary (`EASM_METRICS=false` turns
//! it off).

use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use easm_domain::JobStatus;
use easm_store::Gauges;
use metrics::gauge;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on the first call (a process has one).
pub fn install() -> Result<PrometheusHandle, String> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| format!("installing the metrics recorder: {e}"))?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "easm_http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        "easm_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by method and route template"
    );
    describe_counter!("easm_commands_total", "Commands run, by outcome: committed, unchanged (nothing to record), refused (by the domain), contention, failed");
    describe_counter!(
        "easm_append_retries_total",
        "Appends decided again after losing a race or a transient database error"
    );
    describe_counter!(
        "easm_events_appended_total",
        "Events committed to the log by this process, by type"
    );
    describe_counter!(
        "easm_rate_limited_total",
        "Requests refused with 429 by the per-key rate limit"
    );
    describe_counter!(
        "easm_delivery_attempts_total",
        "Messages attempted by this process's delivery worker, by endpoint kind and outcome"
    );
    describe_counter!("easm_webhook_endpoints_disabled_total", "Endpoints this process disabled after their attempts kept failing or their destination refused them");
    describe_gauge!(
        "easm_outbox_depth",
        "Committed events not yet fanned out or relayed"
    );
    describe_gauge!(
        "easm_outbox_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest event waiting in the outbox (relay and fan-out lag)"
    );
    describe_gauge!(
        "easm_projection_lag_events",
        "Committed events not yet folded into the read models"
    );
    describe_gauge!(
        "easm_delivery_queue_depth",
        "Deliveries waiting for an attempt (pending), and those due now (due)"
    );
    describe_gauge!("easm_webhook_endpoints_disabled", "Endpoints disabled now");
    describe_gauge!("easm_jobs", "Scan and discovery jobs, by kind and status");
    describe_gauge!(
        "easm_db_pool_connections",
        "This process's database connections: open, and in use"
    );
}

/// Prometheus text (exposition format 0.0.4); 404 when `EASM_METRICS=false`.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain"), (status = 404, description = "Metrics are turned off", body = crate::error::ErrorBody)))]
pub async fn scrape(State(app): State<AppState>) -> Result<Response, ApiError> {
    let Some(handle) = &app.metrics else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "ROUTE_NOT_FOUND",
            "no such route",
        ));
    };
    let g = Gauges::read(&app.db).await?;
    gauge!("easm_outbox_depth").set(g.outbox_depth as f64);
    gauge!("easm_outbox_oldest_age_seconds").set(g.outbox_oldest_seconds);
    gauge!("easm_projection_lag_events").set(g.projection_lag as f64);
    gauge!("easm_delivery_queue_depth", "state" => "pending").set(g.deliveries_pending as f64);
    gauge!("easm_delivery_queue_depth", "state" => "due").set(g.deliveries_due as f64);
    gauge!("easm_webhook_endpoints_disabled").set(g.endpoints_disabled as f64);
    for (kind, jobs) in [("scan", &g.scan_jobs), ("discovery", &g.discovery_jobs)] {
        // Every status, so that one no job has any more reads 0.
        for status in JobStatus::STORED.map(JobStatus::as_str) {
            let n = jobs
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            gauge!("easm_jobs", "kind" => kind, "status" => status).set(n as f64);
        }
    }
    gauge!("easm_db_pool_connections", "state" => "in_use").set(f64::from(g.pool_in_use));
    gauge!("easm_db_pool_connections", "state" => "open").set(f64::from(g.pool_open));
    handle.run_upkeep();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response())
}
