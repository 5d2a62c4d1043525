//! The audit log webhook: every audit event of the organization (`audit.<action>`, one per event
//! in the log) forwarded to one endpoint, typically a SIEM. Owner only, on plans with `audit_log`.
//! It is an ordinary endpoint subscribed to `audit.*`, so it is signed, retried and logged like
//! any other.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::deliveries::{answered, page, queue_test, DeliveryQuery, DeliveryView};
use crate::routes::webhooks::check_destination;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use easm_domain::{audit_webhook_id, Limits, Permission};
use easm_events::WebhookId;
use easm_projections::read::Page;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditWebhookBody {
    /// https URL of the receiver; required the first time (404 without it).
    #[schema(min_length = 1, max_length = 2048)]
    pub url: Option<String>,
    pub enabled: Option<bool>,
    /// Replace the signing secret (the old one keeps signing for 24 hours).
    #[serde(default)]
    pub regenerate_secret: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditWebhookView {
    pub url: String,
    pub enabled: bool,
    /// Always `["audit.*"]`.
    pub events: Vec<String>,
    /// The full signing secret right after it was generated; `whsec_...` and its last 4
    /// characters otherwise.
    pub secret: String,
    pub secret_rotated_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Owner, on a plan with the audit log.
fn allowed(c: &Caller) -> ApiResult<WebhookId> {
    c.require(Permission::Configure)?;
    if !Limits::of(c.plan).audit_log {
        return Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "PLAN_LIMIT",
            format!(
                "the audit log webhook needs a plan with audit_log (enterprise); this organization is on {}",
                c.plan.as_str()
            ),
        ));
    }
    Ok(audit_webhook_id(&c.org_id))
}

fn mask(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("whsec_...{tail}")
}

async fn view(
    app: &AppState,
    c: &Caller,
    id: &WebhookId,
    secret: Option<String>,
) -> ApiResult<AuditWebhookView> {
    let w = app
        .read()
        .webhook(&c.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("audit webhook"))?;
    let secret = match secret {
        Some(s) => s,
        None => mask(
            app.commands
                .secrets()
                .active(id)
                .await?
                .first()
                .map(String::as_str)
                .unwrap_or_default(),
        ),
    };
    Ok(AuditWebhookView {
        url: w.url,
        enabled: w.enabled,
        events: w.events,
        secret,
        secret_rotated_at: w.secret_rotated_at,
        created_at: w.created_at,
        updated_at: w.updated_at,
    })
}

/// The audit log webhook, its secret masked.
#[utoipa::path(get, path = "/api/settings/audit-webhook", tag = "webhooks",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AuditWebhookView), (status = 402, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_audit_webhook(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<AuditWebhookView>> {
    let id = allowed(&c)?;
    Ok(Json(view(&app, &c, &id, None).await?))
}

/// Create or change the audit log webhook. The first save, and `regenerateSecret`, answer the
/// new signing secret once, in `secret`.
#[utoipa::path(put, path = "/api/settings/audit-webhook", tag = "webhooks",
    request_body = AuditWebhookBody, security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AuditWebhookView), (status = 201, body = AuditWebhookView), (status = 400, body = ErrorBody), (status = 402, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_audit_webhook(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiJson(body): ApiJson<AuditWebhookBody>,
) -> ApiResult<(StatusCode, Json<AuditWebhookView>)> {
    let id = allowed(&c)?;
    let existed = app.read().webhook(&c.org_id, &id).await?.is_some();
    match &body.url {
        Some(u) => check_destination(u, app.webhook_allow_private).await?,
        None if !existed => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "there is no audit webhook yet: the first PUT gives its url",
            ))
        }
        None => {}
    }
    let secret = app
        .commands
        .put_audit_webhook(
            &c.meta(),
            &c.org_id,
            body.url,
            body.enabled,
            body.regenerate_secret,
            app.webhook_allow_private,
        )
        .await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(view(&app, &c, &id, secret).await?)))
}

/// Remove the audit log webhook; its delivery log is kept.
#[utoipa::path(delete, path = "/api/settings/audit-webhook", tag = "webhooks",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204), (status = 402, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_audit_webhook(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<StatusCode> {
    let id = allowed(&c)?;
    app.commands
        .delete_webhook(&c.meta(), &c.org_id, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send a `webhook.test` message to the audit log webhook and answer what the receiver
/// answered (`200`), or the delivery still pending after 20 seconds (`202`).
#[utoipa::path(post, path = "/api/settings/audit-webhook/test", tag = "webhooks",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = DeliveryView), (status = 202, body = DeliveryView), (status = 402, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn test_audit_webhook(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<(StatusCode, Json<DeliveryView>)> {
    let id = allowed(&c)?;
    view(&app, &c, &id, None).await?;
    let queued = queue_test(&app, &c, &id).await?;
    answered(&app, &id, queued).await
}

/// Deliveries to the audit log webhook, newest first, with every attempt.
#[utoipa::path(get, path = "/api/settings/audit-webhook/deliveries", tag = "webhooks",
    params(DeliveryQuery), security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<DeliveryView>), (status = 402, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn audit_webhook_deliveries(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<Page<DeliveryView>>> {
    let id = allowed(&c)?;
    Ok(Json(page(&app, &id, q).await?))
}
