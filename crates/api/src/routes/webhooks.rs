use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PageParams};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use easm_domain::{
    is_audit_webhook, is_forbidden_address, validate_webhook_url, Permission, WebhookSpec,
};
use easm_events::WebhookId;
use easm_projections::read::{Page, WebhookView};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// https URL of the receiver; it must not resolve to a private, loopback, link-local, CGNAT,
    /// multicast or metadata address.
    pub url: Option<String>,
    /// Event types or families, e.g. `["finding.*", "scan.completed"]`.
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

impl From<WebhookBody> for WebhookSpec {
    fn from(b: WebhookBody) -> Self {
        WebhookSpec {
            url: b.url,
            events: b.events,
            description: b.description,
            enabled: b.enabled,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The signing secret (`whsec_...`), shown this once.
    pub secret: String,
}

/// Refuse URLs whose host resolves to an address inside the server's reach. The delivery checks
/// the address again at every connection; this answers the mistake when it is made.
pub async fn check_destination(url: &str, allow_private: bool) -> ApiResult<()> {
    let u = validate_webhook_url(url, allow_private)?;
    if allow_private {
        return Ok(());
    }
    let Some(url::Host::Domain(host)) = u.host() else {
        return Ok(());
    };
    let port = u.port_or_known_default().unwrap_or(443);
    let lookup = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::lookup_host((host, port)),
    )
    .await;
    let addrs: Vec<_> = match lookup {
        Ok(Ok(a)) => a.collect(),
        _ => {
            return Err(ApiError::bad_request(
                "url",
                format!("url: cannot resolve {host}"),
            ))
        }
    };
    if addrs.is_empty() {
        return Err(ApiError::bad_request(
            "url",
            format!("url: cannot resolve {host}"),
        ));
    }
    if let Some(a) = addrs.iter().find(|a| is_forbidden_address(a.ip())) {
        return Err(ApiError::bad_request(
            "url",
            format!(
                "url: {host} resolves to {}, which is not a public address",
                a.ip()
            ),
        ));
    }
    Ok(())
}

/// A regular endpoint of the caller's organization; the audit log webhook is managed through
/// `/api/settings/audit-webhook` only.
pub async fn view(app: &AppState, c: &Caller, id: &WebhookId) -> ApiResult<WebhookView> {
    regular(id)?;
    app.read()
        .webhook(&c.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))
}

fn regular(id: &WebhookId) -> ApiResult<()> {
    if is_audit_webhook(id.as_str()) {
        Err(ApiError::not_found("webhook"))
    } else {
        Ok(())
    }
}

/// Webhook endpoints of the organization.
#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks", params(PageParams),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<WebhookView>), (status = 403, body = ErrorBody)))]
pub async fn list_webhooks(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<WebhookView>>> {
    c.require(Permission::Administer)?;
    Ok(Json(app.read().webhooks(&c.org_id, q.resolve()?).await?))
}

/// Create a webhook endpoint. The answer holds the signing secret once, in `secret`.
#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks", request_body = WebhookBody,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = WebhookWithSecret), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_webhook(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiJson(body): ApiJson<WebhookBody>,
) -> ApiResult<(StatusCode, Json<WebhookWithSecret>)> {
    c.require(Permission::Administer)?;
    if let Some(u) = &body.url {
        check_destination(u, app.webhook_allow_private).await?;
    }
    let (id, secret) = app
        .commands
        .create_webhook(
            &c.meta(),
            &c.org_id,
            &body.into(),
            app.webhook_allow_private,
        )
        .await?;
    let webhook = view(&app, &c, &id).await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookWithSecret { webhook, secret }),
    ))
}

/// One webhook endpoint (never its secret).
#[utoipa::path(get, path = "/api/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = WebhookView), (status = 404, body = ErrorBody)))]
pub async fn get_webhook(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<WebhookId>,
) -> ApiResult<Json<WebhookView>> {
    c.require(Permission::Administer)?;
    Ok(Json(view(&app, &c, &id).await?))
}

/// Change an endpoint's url, events, description or enabled state.
#[utoipa::path(patch, path = "/api/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    request_body = WebhookBody, security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = WebhookView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_webhook(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<WebhookId>,
    ApiJson(body): ApiJson<WebhookBody>,
) -> ApiResult<Json<WebhookView>> {
    c.require(Permission::Administer)?;
    regular(&id)?;
    if let Some(u) = &body.url {
        check_destination(u, app.webhook_allow_private).await?;
    }
    app.commands
        .update_webhook(
            &c.meta(),
            &c.org_id,
            &id,
            &body.into(),
            app.webhook_allow_private,
        )
        .await?;
    Ok(Json(view(&app, &c, &id).await?))
}

/// Remove an endpoint.
#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<WebhookId>,
) -> ApiResult<StatusCode> {
    c.require(Permission::Administer)?;
    regular(&id)?;
    app.commands
        .delete_webhook(&c.meta(), &c.org_id, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the signing secret; the previous one keeps signing for 24 hours.
#[utoipa::path(post, path = "/api/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = WebhookWithSecret), (status = 404, body = ErrorBody)))]
pub async fn rotate_secret(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<WebhookId>,
) -> ApiResult<Json<WebhookWithSecret>> {
    c.require(Permission::Administer)?;
    regular(&id)?;
    let secret = app
        .commands
        .rotate_webhook_secret(&c.meta(), &c.org_id, &id)
        .await?;
    Ok(Json(WebhookWithSecret {
        webhook: view(&app, &c, &id).await?,
        secret,
    }))
}
