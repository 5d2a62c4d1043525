//! The log as auditors and replay tools read it: the event feed (pages or a live stream), the
//! verifiable export, and the key that signs exports.

use crate::audit_export::{export_lines, Range};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{page_request, ApiQuery};
use crate::routes::findings::time;
use crate::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use easm_domain::Permission;
use easm_events::{export_line, export_value, OrgId, RecordedEvent};
use easm_projections::read::Page;
use easm_store::{audit_signing_secret, AuditFilter, EventLog, FeedFilter};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

const MAX_LIMIT: i64 = 1000;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Events after this position (0, or absent: from the start).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
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
            .log()
            .org_after(&c.org_id, after, limit, &filter)
            .await?;
        let next_after = events.last().map_or(after, |e| e.position);
        let items = events.iter().map(export_value).collect();
        return Ok(Json(FeedPage { items, next_after }).into_response());
    }
    if let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        after = last.trim().parse().map_err(|_| {
            ApiError::bad_request("Last-Event-ID", "Last-Event-ID: must be a position")
        })?;
    }
    let log = app.log().clone();
    let org = c.org_id.clone();
    // Woken by this process's commits; another process's are read within a second.
    let commits = app.commands.commit_feed().commits();
    // State: the cursor, events read but not sent yet, and the commits seen.
    let live = futures_util::stream::unfold(
        (after, std::collections::VecDeque::new(), commits),
        move |(mut after, mut queued, mut commits)| {
            let (log, org, filter) = (log.clone(), org.clone(), filter.clone());
            async move {
                loop {
                    if let Some(e) = queued.pop_front() {
                        let e: easm_events::RecordedEvent = e;
                        let sse = SseEvent::default()
                            .id(e.position.to_string())
                            .event(e.event_type.clone())
                            .data(export_line(&e));
                        let state = (after, queued, commits);
                        return Some((Ok::<_, std::convert::Infallible>(sse), state));
                    }
                    commits.borrow_and_update();
                    match log.org_after(&org, after, limit, &filter).await {
                        Ok(events) if !events.is_empty() => {
                            after = events.last().map_or(after, |e| e.position);
                            queued.extend(events);
                        }
                        Ok(_) => {
                            tokio::select! {
                                Ok(()) = commits.changed() => {}
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "event stream: read failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        },
    );
    // A stopping server ends its streams: clients resume from `Last-Event-ID`.
    let mut stopping = app.stopping.subscribe();
    let live = futures_util::StreamExt::take_until(live, async move {
        let _ = stopping.wait_for(|s| *s).await;
    });
    Ok(Sse::new(live)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// A time (RFC 3339, or a date for its start UTC); events at or after it.
    pub since: Option<String>,
    /// A time (RFC 3339, or a date for its start UTC); events before it.
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
    let lines = export_lines(app.log().clone(), c.org_id.clone(), range, secret);
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The actor's id: an API key id, `cli`, `scanner`, `delivery`, ...
    pub actor: Option<String>,
    /// Actions (event types, with or without `audit.`), comma-separated.
    pub action: Option<String>,
    /// Resource type: `asset`, `group`, `api_key`, `user`, `webhook`, `scan`, `finding`, `monitor`,
    /// `alert`, `access`, `org`.
    pub resource: Option<String>,
    /// Resource id.
    pub resource_id: Option<String>,
    #[param(value_type = Option<crate::schema_types::AuditCategoryName>)]
    pub category: Option<String>,
    #[param(value_type = Option<crate::schema_types::AuditOutcomeName>)]
    pub outcome: Option<String>,
    /// A time (RFC 3339, or a date for its start UTC), included.
    #[param(value_type = Option<crate::schema_types::Moment>)]
    pub since: Option<String>,
    /// A time (RFC 3339, or a date for its start UTC), included.
    #[param(value_type = Option<crate::schema_types::Moment>)]
    pub until: Option<String>,
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub page: Option<i64>,
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub per_page: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub id: String,
    pub position: i64,
    pub timestamp: String,
    /// The event type, e.g. `asset.updated`, `access.denied`.
    pub action: String,
    /// `api`, `cli`, `system` or `mcp` (calls and changes of MCP keys).
    pub category: String,
    /// `success` or `denied`.
    pub outcome: String,
    /// kind, id, role, sourceIp, userAgent, and keyPrefix for API keys.
    #[schema(value_type = Object)]
    pub actor: serde_json::Value,
    /// `{"type", "id"}`.
    #[schema(value_type = Object)]
    pub resource: serde_json::Value,
    pub request_id: String,
    pub correlation_id: String,
    /// The event's fields (key hashes left out).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// For changes to an existing resource: `{field: {"before", "after"}}`.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<serde_json::Value>,
}

fn category(e: &easm_events::RecordedEvent) -> &'static str {
    match (e.actor.kind, e.actor.id.as_str()) {
        (easm_events::ActorKind::System, "cli") => "cli",
        (easm_events::ActorKind::System, _) => "system",
        (easm_events::ActorKind::McpKey, _) => "mcp",
        _ => "api",
    }
}

/// Fields an event changed, before and after: `before` is what the earlier events of the same
/// stream last said of each field (a status change says `from` and `to` itself).
fn changes(
    prior: &[easm_events::RecordedEvent],
    e: &easm_events::RecordedEvent,
) -> Option<serde_json::Value> {
    use serde_json::{json, Map, Value};
    let data = e.data.as_object()?;
    if let Some(from) = data.get("from") {
        let to = e.event_type.rsplit('.').next().unwrap_or_default();
        let after = data.get("to").cloned().unwrap_or_else(|| json!(to));
        return Some(json!({"status": {"before": from, "after": after}}));
    }
    let mut state = Map::new();
    for p in prior {
        if let Some(m) = p.data.as_object() {
            for (k, v) in m {
                state.insert(k.clone(), v.clone());
            }
        }
    }
    let ids = [
        "orgId",
        "keyId",
        "groupId",
        "assetId",
        "webhookId",
        "scanJobId",
        "findingId",
    ];
    let mut out = Map::new();
    for (k, after) in data {
        if ids.contains(&k.as_str()) || k == "keyHash" {
            continue;
        }
        let before = state.get(k).cloned().unwrap_or(Value::Null);
        if &before != after {
            out.insert(k.clone(), json!({"before": before, "after": after}));
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// The audit trail: every accepted command and every refused request of a known key, newest
/// first. Admin or owner.
#[utoipa::path(get, path = "/api/audit-log", tag = "audit", params(AuditQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<AuditRecord>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn audit_log(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditRecord>>> {
    c.require(Permission::Administer)?;
    let p = page_request(q.page, q.per_page)?;
    let filter = q.filter()?;
    let log = app.log();
    let (events, total) = log
        .audit_page(&c.org_id, &filter, p.offset(), p.per_page)
        .await?;
    let prefixes = app.read().key_prefixes(&c.org_id).await?;
    let mut items = Vec::with_capacity(events.len());
    for e in &events {
        items.push(audit_record(log, &c.org_id, &prefixes, e).await?);
    }
    Ok(Json(p.wrap(items, total)))
}

impl AuditQuery {
    /// The log's filter of these parameters; an unknown category or outcome is refused.
    fn filter(&self) -> ApiResult<AuditFilter> {
        let q = self;
        if let Some(cat) = q
            .category
            .as_deref()
            .filter(|c| !["api", "cli", "system", "mcp"].contains(c))
        {
            return Err(ApiError::bad_request(
                "category",
                format!("category: {cat} is not api, cli, system or mcp"),
            ));
        }
        if let Some(o) = q
            .outcome
            .as_deref()
            .filter(|o| !["success", "denied"].contains(o))
        {
            return Err(ApiError::bad_request(
                "outcome",
                format!("outcome: {o} is not success or denied"),
            ));
        }
        Ok(AuditFilter {
            actor: q.actor.clone().filter(|a| !a.is_empty()),
            actions: q
                .action
                .as_deref()
                .map(|a| {
                    a.split(',')
                        .map(|x| x.trim().trim_start_matches("audit.").to_string())
                        .filter(|x| !x.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            resource: q.resource.clone().filter(|r| !r.is_empty()),
            resource_id: q.resource_id.clone().filter(|r| !r.is_empty()),
            category: q.category.clone(),
            outcome: q.outcome.clone(),
            since: time("since", &q.since)?,
            until: time("until", &q.until)?,
        })
    }
}

/// One event as the audit trail shows it; `changes` against what the resource's earlier events
/// last said.
async fn audit_record(
    log: &EventLog,
    org_id: &OrgId,
    prefixes: &HashMap<String, String>,
    e: &RecordedEvent,
) -> ApiResult<AuditRecord> {
    let audit = easm_events::audit_payload(e);
    let data = &audit["data"];
    let mut actor = data["actor"].clone();
    if let Some(prefix) = prefixes.get(&e.actor.id) {
        actor["keyPrefix"] = serde_json::json!(prefix);
    }
    let denied = e.event_type == "access.denied";
    let changes = if e.stream_version > 1 && !denied {
        let (prior, _) = log
            .stream_page(org_id, &e.stream_id, 0, e.stream_version - 1)
            .await?;
        changes(&prior, e)
    } else {
        None
    };
    Ok(AuditRecord {
        id: e.event_id.to_string(),
        position: e.position,
        timestamp: easm_events::format_timestamp(&e.occurred_at),
        action: e.event_type.clone(),
        category: category(e).into(),
        outcome: if denied { "denied" } else { "success" }.into(),
        actor,
        resource: data["resource"].clone(),
        request_id: e.request_id.clone(),
        correlation_id: e.correlation_id.clone(),
        details: data["details"].clone(),
        changes,
    })
}
