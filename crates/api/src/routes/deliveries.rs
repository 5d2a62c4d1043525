//! What happened to the messages of an endpoint: deliveries with every attempt, hand-made
//! retries, recovery of a failed period, and test messages.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{page_request, ApiQuery};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use easm_domain::Permission;
use easm_events::formats::{queued_body, Message, Subject};
use easm_events::{format_timestamp, from_micros, test_payload, WebhookId};
use easm_projections::read::Page;
use easm_store::{DeliveryRecord, NewDelivery, Queuing, ONE_ATTEMPT};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use utoipa::{IntoParams, ToSchema};

fn iso(us: i64) -> String {
    format_timestamp(&from_micros(us))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    /// 1 for the first attempt.
    pub attempt: i64,
    pub at: String,
    /// The receiver's HTTP status; absent when no answer came (connection error, timeout).
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    pub error: Option<String>,
    /// The first KiB of the response body.
    pub response: Option<String>,
    /// The request that carried this message with others (native destinations batch them);
    /// `GET .../deliveries?batchId=` lists its messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// Also the `webhook-id` and `Idempotency-Key` of every attempt.
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    /// `pending` (waiting for its next attempt), `succeeded`, `failed` (no attempt left;
    /// retry by hand or recover), or `filtered` (left out by the endpoint's filter or kind;
    /// `lastError` says why).
    pub status: String,
    pub attempt_count: i64,
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub attempts: Vec<AttemptView>,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(r: DeliveryRecord) -> Self {
        DeliveryView {
            id: r.delivery_id,
            webhook_id: r.webhook_id,
            event_id: r.event_id,
            event_type: r.event_type,
            status: r.status,
            attempt_count: r.attempts,
            next_attempt_at: r.next_attempt_at.map(iso),
            last_status_code: r.last_status,
            last_error: r.last_error,
            created_at: iso(r.created_at),
            updated_at: iso(r.updated_at),
            attempts: r
                .attempt_log
                .into_iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    at: iso(a.started_at),
                    status_code: a.status_code,
                    duration_ms: a.duration_ms,
                    error: a.error,
                    response: a.response,
                    batch_id: a.batch_id,
                    batch_size: a.batch_size,
                })
                .collect(),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    #[param(value_type = Option<crate::schema_types::DeliveryStatusName>)]
    pub status: Option<String>,
    /// The messages one request carried.
    pub batch_id: Option<String>,
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub page: Option<i64>,
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub per_page: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecoverQuery {
    /// A time (RFC 3339, or a date for its start UTC): failed deliveries created at or after
    /// it are sent again. Required.
    #[param(required = true, value_type = crate::schema_types::Moment)]
    pub since: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Recovered {
    /// How many failed deliveries were queued again.
    pub requeued: u64,
}

/// The endpoint must exist in the caller's organization (the audit log webhook is reached
/// through its settings routes only).
async fn endpoint(app: &AppState, c: &Caller, id: &WebhookId) -> ApiResult<()> {
    c.require(Permission::Administer)?;
    crate::routes::webhooks::view(app, c, id).await.map(|_| ())
}

async fn delivery(app: &AppState, webhook_id: &WebhookId, id: &str) -> ApiResult<DeliveryView> {
    app.deliveries
        .get(webhook_id, id)
        .await?
        .map(DeliveryView::from)
        .ok_or_else(|| ApiError::not_found("delivery"))
}

/// Deliveries to an endpoint, newest first, each with every attempt.
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path), DeliveryQuery), security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<DeliveryView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_deliveries(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<WebhookId>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<Page<DeliveryView>>> {
    endpoint(&app, &c, &id).await?;
    Ok(Json(page(&app, &id, q).await?))
}

/// A page of an endpoint's deliveries.
pub async fn page(
    app: &AppState,
    id: &WebhookId,
    q: DeliveryQuery,
) -> ApiResult<Page<DeliveryView>> {
    let p = page_request(q.page, q.per_page)?;
    if let Some(s) = &q.status {
        if !["pending", "succeeded", "failed", "filtered"].contains(&s.as_str()) {
            return Err(ApiError::bad_request(
                "status",
                "status: must be pending, succeeded, failed or filtered",
            ));
        }
    }
    let (items, total) = app
        .deliveries
        .list(
            id,
            q.status.as_deref(),
            q.batch_id.as_deref(),
            p.page,
            p.per_page,
        )
        .await?;
    Ok(p.wrap(items.into_iter().map(DeliveryView::from).collect(), total))
}

/// One delivery with its attempts.
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries/{deliveryId}", tag = "webhooks",
    params(("id" = String, Path), ("deliveryId" = String, Path)), security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = DeliveryView), (status = 404, body = ErrorBody)))]
pub async fn get_delivery(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((id, delivery_id)): Path<(WebhookId, String)>,
) -> ApiResult<Json<DeliveryView>> {
    endpoint(&app, &c, &id).await?;
    Ok(Json(delivery(&app, &id, &delivery_id).await?))
}

/// Send a delivery again now (one attempt, same `webhook-id`), whether it failed or succeeded.
#[utoipa::path(post, path = "/api/webhooks/{id}/deliveries/{deliveryId}/retry", tag = "webhooks",
    params(("id" = String, Path), ("deliveryId" = String, Path)), security(("api_key" = []), ("bearer" = [])),
    responses((status = 202, body = DeliveryView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry_delivery(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((id, delivery_id)): Path<(WebhookId, String)>,
) -> ApiResult<(StatusCode, Json<DeliveryView>)> {
    endpoint(&app, &c, &id).await?;
    delivery(&app, &id, &delivery_id).await?;
    if !app.deliveries.resend(&id, &delivery_id).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "DELIVERY_PENDING",
            "the delivery is still pending: its next attempt is already scheduled",
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(delivery(&app, &id, &delivery_id).await?),
    ))
}

/// Send every failed delivery created at or after `since` again (one attempt each).
#[utoipa::path(post, path = "/api/webhooks/{id}/recover", tag = "webhooks",
    params(("id" = String, Path), RecoverQuery), security(("api_key" = []), ("bearer" = [])),
    responses((status = 202, body = Recovered), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn recover(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<WebhookId>,
    ApiQuery(q): ApiQuery<RecoverQuery>,
) -> ApiResult<(StatusCode, Json<Recovered>)> {
    endpoint(&app, &c, &id).await?;
    let since = q
        .since
        .as_deref()
        .and_then(easm_events::parse_timestamp)
        .ok_or_else(|| {
            ApiError::bad_request(
                "since",
                "since: required, an RFC 3339 time such as 2026-11-01T00:00:00Z or a date",
            )
        })?;
    let requeued = app
        .deliveries
        .recover(&id, since.timestamp_micros())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Recovered { requeued })))
}

/// Send a `webhook.test` message to the endpoint, in its kind and format (one attempt, signed
/// like any other), and answer what the receiver answered: `200` with the delivery and its
/// attempt, or `202` with the delivery still pending if no attempt finished within 20 seconds
/// (follow it in the deliveries).
#[utoipa::path(post, path = "/api/webhooks/{id}/test", tag = "webhooks",
    params(("id" = String, Path)), security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = DeliveryView), (status = 202, body = DeliveryView), (status = 404, body = ErrorBody)))]
pub async fn test_webhook(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<WebhookId>,
) -> ApiResult<(StatusCode, Json<DeliveryView>)> {
    endpoint(&app, &c, &id).await?;
    let queued = queue_test(&app, &c, &id).await?;
    answered(&app, &id, queued).await
}

/// How long a test waits for its attempt: longer than one attempt can take (15 s).
const TEST_WAIT: Duration = Duration::from_secs(20);

/// The test delivery once its attempt finished (`200`), or as it stands after [`TEST_WAIT`]
/// (`202`).
pub async fn answered(
    app: &AppState,
    id: &WebhookId,
    queued: DeliveryView,
) -> ApiResult<(StatusCode, Json<DeliveryView>)> {
    let until = Instant::now() + TEST_WAIT;
    let mut pause = Duration::from_millis(5);
    while Instant::now() < until {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
        let now = delivery(app, id, &queued.id).await?;
        if now.status != "pending" {
            return Ok((StatusCode::OK, Json(now)));
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(delivery(app, id, &queued.id).await?),
    ))
}

/// Queue a `webhook.test` message to endpoint `id` of the caller's organization, rendered for
/// its kind and format.
pub async fn queue_test(app: &AppState, c: &Caller, id: &WebhookId) -> ApiResult<DeliveryView> {
    let message = uuid::Uuid::now_v7();
    let delivery_id = format!("tst_{}_{id}", message.simple());
    let body = test_payload(&c.org_id, id, &chrono::Utc::now());
    let endpoint = app
        .read()
        .endpoint(&c.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    let payload = if endpoint.options.is_plain() {
        body.to_string()
    } else {
        let subject = Subject::default();
        let m = Message {
            id: &delivery_id,
            body: &body,
            subject: &subject,
        };
        queued_body(&endpoint.options, &m, &app.rendering).map_err(|why| {
            ApiError::new(
                StatusCode::CONFLICT,
                "NOT_SENT",
                format!("a test message is not sent: {why}"),
            )
        })?
    };
    let row = [NewDelivery {
        delivery_id: delivery_id.clone(),
        org_id: c.org_id.clone(),
        webhook_id: id.clone(),
        event_id: message.to_string(),
        event_type: "webhook.test".into(),
        payload,
        schedule_step: ONE_ATTEMPT,
        position: None,
        fifo: false,
        batch: 0,
        filtered: None,
        trace_parent: easm_app::trace_context::current(),
    }];
    app.deliveries
        .enqueue(&Queuing::plan(&row, None), &[])
        .await?;
    app.delivery_wake.notify_one();
    delivery(app, id, &delivery_id).await
}
