use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long `/readyz` waits for the database: a load balancer's probe must get an answer even
/// while connections cannot be had.
const DATABASE_WAIT: Duration = Duration::from_secs(2);

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Process is up")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// What `/readyz` answers: each dependency's state, and on 503 which one is down.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    status: &'static str,
    /// `UNAVAILABLE` when a dependency is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    /// Names the dependencies that are down, e.g. `nats unreachable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// `database`, and `nats` when the bus is NATS: `ok` or `unreachable`.
    #[schema(value_type = BTreeMap<String, String>)]
    dependencies: BTreeMap<&'static str, &'static str>,
}

/// Every dependency answers: the database, and the bus when it is NATS.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency is unreachable; `error` names it", body = Readiness)))]
pub async fn readyz(State(app): State<AppState>) -> Response {
    let database = match tokio::time::timeout(DATABASE_WAIT, app.db.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            false
        }
        Err(_) => {
            tracing::warn!("readiness: the database did not answer in time");
            false
        }
    };
    let mut up = vec![("database", database)];
    up.extend(app.dependencies.iter().map(|d| (d.name, (d.up)())));
    let down: Vec<&str> = up.iter().filter(|(_, ok)| !ok).map(|(n, _)| *n).collect();
    let ready = down.is_empty();
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" },
        code: (!ready).then_some("UNAVAILABLE"),
        error: (!ready).then(|| format!("{} unreachable", down.join(", "))),
        dependencies: up
            .into_iter()
            .map(|(name, ok)| (name, if ok { "ok" } else { "unreachable" }))
            .collect(),
    };
    if ready {
        return Json(body).into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        Json(body),
    )
        .into_response()
}
