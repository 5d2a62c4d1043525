//! The log as auditors and replay tools read it: the event feed (pages or a live stream), the
//! verifiable export, and the key that signs exports.

use crate::audit_export::{export_lines, Range};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::routes::findings::time;
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use easm_domain::Permission;
use easm_events::export_line;
use easm_store::{audit_signing_secret, FeedFilter};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

const MAX_LIMIT: i64 = 1000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// Events after this position (0, or absent: from the start).
    pub after: Option<i64>,
    /// 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// Event types, comma-separated.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub types: Option<String>,
    /// One stream, e.g. `asset-<id>`.
    pub stream: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedPage {
    /// Events in the export format: the hashed fields, `position`, `prevHash`, `hash`.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<serde_json::Value>,
    /// The cursor for the next call: the last position returned, or `after` when none was.
    pub next_after: i64,
}

impl FeedQuery {
    fn filter(&self) -> FeedFilter {
        FeedFilter {
            types: self
                .types
                .as_deref()
                .map(|t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            stream_id: self.stream.clone().filter(|s| !s.is_empty()),
            ..FeedFilter::default()
        }
    }
}

/// The organization's events in log order after a position, as pages (`nextAfter` is the next
/// cursor) or, with `Accept: text/event-stream`, as a live stream that resumes from
/// `Last-Event-ID`. Following the cursor gives every event once and in order. Admin or owner.
#[utoipa::path(get, path = "/api/events", tag = "audit", params(FeedQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = FeedPage, description = "JSON, or text/event-stream"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn events(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<FeedQuery>,
) -> ApiResult<Response> {
    c.require(Permission::Administer)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "limit",
            format!("limit: must be 1 to {MAX_LIMIT}"),
        ));
    }
    let mut after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request("after", "after: must be 0 or more"));
    }
    let filter = q.filter();
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !wants_stream {
        let events = app
            .service
            .log()
            .org_after(&c.org_id, after, limit, &filter)
            .await?;
        let next_after = events.last().map_or(after, |e| e.position);
        let items = events
            .iter()
            .map(|e| serde_json::from_str(&export_line(e)).expect("an exported line is JSON"))
            .collect();
        return Ok(Json(FeedPage { items, next_after }).into_response());
    }
    if let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        after = last.trim().parse().map_err(|_| {
            ApiError::bad_request("Last-Event-ID", "Last-Event-ID: must be a position")
        })?;
    }
    let log = app.service.log().clone();
    let org = c.org_id.clone();
    // State: the cursor, and events read but not sent yet.
    let live = futures_util::stream::unfold(
        (after, std::collections::VecDeque::new()),
        move |(mut after, mut queued)| {
            let (log, org, filter) = (log.clone(), org.clone(), filter.clone());
            async move {
                loop {
                    if let Some(e) = queued.pop_front() {
                        let e: easm_events::RecordedEvent = e;
                        let sse = SseEvent::default()
                            .id(e.position.to_string())
                            .event(e.event_type.clone())
                            .data(export_line(&e));
                        return Some((Ok::<_, std::convert::Infallible>(sse), (after, queued)));
                    }
                    match log.org_after(&org, after, limit, &filter).await {
                        Ok(events) if !events.is_empty() => {
                            after = events.last().map_or(after, |e| e.position);
                            queued.extend(events);
                        }
                        Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "event stream: read failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        },
    );
    Ok(Sse::new(live)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// RFC 3339; events at or after it.
    pub since: Option<String>,
    /// RFC 3339; events before it.
    pub until: Option<String>,
}

/// The verifiable export: NDJSON, one event a line in chain order, then a digest line signed
/// with the server's Ed25519 key (see the README for the format and a verifier). Streamed.
/// Admin or owner.
#[utoipa::path(get, path = "/api/audit-log/export", tag = "audit", params(ExportQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "application/x-ndjson"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn export(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    c.require(Permission::Administer)?;
    let range = Range {
        since: time("since", &q.since)?.zip(q.since.clone()),
        until: time("until", &q.until)?.zip(q.until.clone()),
    };
    let secret = audit_signing_secret(&app.db).await?;
    let lines = export_lines(app.service.log().clone(), c.org_id.clone(), range, secret);
    let body = futures_util::StreamExt::map(lines, |r| r.map_err(std::io::Error::other));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"easm-audit-{}.ndjson\"", c.org_id),
        )
        .body(Body::from_stream(body))
        .map_err(|_| ApiError::internal())
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKey {
    /// Always `ed25519`.
    pub algorithm: String,
    /// Base64 of the 32-byte public key.
    pub public_key: String,
}

/// The public key that verifies audit exports.
#[utoipa::path(get, path = "/api/settings/audit-signing-key", tag = "audit",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = SigningKey)))]
pub async fn signing_key(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<SigningKey>> {
    c.require(Permission::Read)?;
    let secret = audit_signing_secret(&app.db).await?;
    Ok(Json(SigningKey {
        algorithm: "ed25519".into(),
        public_key: easm_events::public_key(&secret),
    }))
}
