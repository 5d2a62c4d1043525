use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PageParams};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use easm_domain::{
    is_audit_webhook, is_forbidden_address, parse_duration, validate_endpoint_url,
    validate_proxy_url, validate_webhook_url, OptionsSpec, Patch, Permission, TlsSpec, WebhookSpec,
    WriteOnly,
};
use easm_events::{
    DeliveryFilter, DeliveryOrdering, EndpointKind, PayloadFormat, Severity, WebhookId,
};
use easm_projections::read::{Page, WebhookView};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookBody {
    /// https URL of the receiver (`tcp://host:port` or `tls://host:port` for syslog); it must
    /// not resolve to a private, loopback, link-local, CGNAT, multicast or metadata address.
    #[schema(min_length = 1, max_length = 2048)]
    pub url: Option<String>,
    /// Event types or families, e.g. `["finding.*", "scan.completed"]`.
    pub events: Option<Vec<String>>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    pub enabled: Option<bool>,
    /// `webhook` (default), `splunk-hec`, `elasticsearch`, `syslog`, `slack` or `teams`.
    #[schema(value_type = Option<crate::schema_types::EndpointKindName>)]
    pub kind: Option<EndpointKind>,
    /// `standard` (default; `ecs` for elasticsearch, `cef` for syslog), `cloudevents`, `ocsf`,
    /// `ecs` or `cef` (syslog only).
    #[schema(value_type = Option<crate::schema_types::PayloadFormatName>)]
    pub format: Option<PayloadFormat>,
    /// Custom request headers. Values are write-only: reads show them masked, and the masked
    /// value sent back keeps the stored one. `Host`, `Content-Length`, `Content-Type` and
    /// `webhook-*` are the delivery's own. `null` removes them all.
    #[serde(default, deserialize_with = "given")]
    pub headers: Option<Option<BTreeMap<String, String>>>,
    /// Only events that match every criterion are sent; the others are logged as `filtered`.
    #[serde(default, deserialize_with = "given")]
    pub filter: Option<Option<FilterBody>>,
    /// `concurrent` (default) or `fifo`: the next message waits until the previous one was
    /// delivered or failed for good.
    #[schema(value_type = Option<crate::schema_types::OrderingName>)]
    pub ordering: Option<DeliveryOrdering>,
    #[serde(default, deserialize_with = "given")]
    pub tls: Option<Option<TlsBody>>,
    /// http or https proxy the requests go through (otherwise `EASM_WEBHOOK_PROXY`, if set).
    #[serde(default, deserialize_with = "given")]
    pub proxy: Option<Option<String>>,
    /// splunk-hec: the HEC token (write-only).
    pub token: Option<String>,
    /// elasticsearch: the API key (write-only), sent as `Authorization: ApiKey <apiKey>`.
    pub api_key: Option<String>,
    /// splunk-hec: the index; elasticsearch: the index or data stream (required).
    #[serde(default, deserialize_with = "given")]
    pub index: Option<Option<String>>,
    /// splunk-hec: the sourcetype (default `easm:<event type>`).
    #[serde(default, deserialize_with = "given")]
    pub sourcetype: Option<Option<String>>,
    /// splunk-hec: the source.
    #[serde(default, deserialize_with = "given")]
    pub source: Option<Option<String>>,
    /// splunk-hec, elasticsearch, syslog: messages per request, 1 to 10000 (default 100).
    #[serde(default, deserialize_with = "given")]
    #[schema(minimum = 1, maximum = 10000)]
    pub batch_size: Option<Option<u32>>,
    /// splunk-hec, elasticsearch, syslog: how long a batch waits to fill, in milliseconds or
    /// as a duration (`"200ms"`, `"1s"`), at most 10 s (default 200 ms).
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<crate::schema_types::BatchWindowValue>)]
    pub batch_window: Option<Option<BatchWindow>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FilterBody {
    /// `critical`, `high`, `medium`, `low` or `info`: only events with a severity at least this
    /// bad (findings, alerts).
    #[schema(value_type = Option<crate::schema_types::SeverityName>)]
    pub min_severity: Option<Severity>,
    /// Only events about an asset in one of these groups.
    #[serde(default)]
    pub group_ids: Vec<String>,
    /// Only events about an asset with one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsBody {
    /// PEM certificates to trust beside the public roots (a corporate CA).
    pub ca_bundle: Option<String>,
    /// PEM certificate for mutual TLS.
    pub client_certificate: Option<String>,
    /// PEM private key of the client certificate (write-only).
    pub client_key: Option<String>,
}

/// Milliseconds, or a duration such as `"200ms"`.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum BatchWindow {
    Millis(u32),
    Text(String),
}

/// `Some(None)` for an explicit `null`, `Some(Some(v))` for a value; absent fields stay `None`.
fn given<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn patch<T, U>(
    v: Option<Option<T>>,
    f: impl FnOnce(T) -> Result<U, ApiError>,
) -> Result<Patch<U>, ApiError> {
    Ok(match v {
        None => Patch::Keep,
        Some(None) => Patch::Clear,
        Some(Some(v)) => Patch::Set(f(v)?),
    })
}

impl TryFrom<WebhookBody> for WebhookSpec {
    type Error = ApiError;

    fn try_from(b: WebhookBody) -> Result<Self, ApiError> {
        let delivery = OptionsSpec {
            kind: b.kind,
            format: b.format,
            headers: patch(b.headers, |h| {
                Ok(h.into_iter()
                    .map(|(k, v)| (k, WriteOnly::from_request(v)))
                    .collect())
            })?,
            filter: patch(b.filter, |f| {
                Ok(DeliveryFilter {
                    min_severity: f.min_severity,
                    group_ids: f.group_ids.into_iter().map(Into::into).collect(),
                    tags: f.tags,
                })
            })?,
            ordering: b.ordering,
            tls: patch(b.tls, |t| {
                Ok(TlsSpec {
                    ca_bundle: t.ca_bundle,
                    client_certificate: t.client_certificate,
                    client_key: t.client_key.map(WriteOnly::from_request),
                })
            })?,
            proxy: patch(b.proxy, Ok)?,
            token: b.token.map(WriteOnly::from_request),
            api_key: b.api_key.map(WriteOnly::from_request),
            index: patch(b.index, Ok)?,
            sourcetype: patch(b.sourcetype, Ok)?,
            source: patch(b.source, Ok)?,
            batch_size: patch(b.batch_size, Ok)?,
            batch_window_ms: patch(b.batch_window, |w| {
                match w {
                BatchWindow::Millis(ms) => Ok(ms),
                BatchWindow::Text(t) => parse_duration(&t)
                    .ok()
                    .and_then(|d| u32::try_from(d.as_millis()).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "batchWindow",
                            format!("batchWindow: '{t}' is not milliseconds or a duration such as 200ms"),
                        )
                    }),
            }
            })?,
        };
        Ok(WebhookSpec {
            url: b.url,
            events: b.events,
            description: b.description,
            enabled: b.enabled,
            delivery,
        })
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
    check_host(
        "url",
        &validate_webhook_url(url, allow_private)?,
        allow_private,
    )
    .await
}

/// [`check_destination`] for what a request names: the url as its endpoint's kind takes it, and
/// a proxy's host.
async fn check_destinations(
    spec: &WebhookSpec,
    kind: EndpointKind,
    allow_private: bool,
) -> ApiResult<()> {
    // A url that is not one of the kind's forms is the command's to refuse: a change can
    // conflict with the endpoint it changes rather than be invalid.
    if let Some(u) = spec.url.as_deref() {
        if let Ok(u) = validate_endpoint_url(u, kind, allow_private) {
            check_host("url", &u, allow_private).await?;
        }
    }
    if let Patch::Set(p) = &spec.delivery.proxy {
        let p = validate_proxy_url(p, allow_private)?;
        check_host("proxy", &p, allow_private).await?;
    }
    Ok(())
}

/// A filter names groups of the caller's organization.
async fn check_filter_groups(app: &AppState, c: &Caller, spec: &WebhookSpec) -> ApiResult<()> {
    if let Patch::Set(f) = &spec.delivery.filter {
        for g in &f.group_ids {
            if app.read().group(&c.org_id, g).await?.is_none() {
                // Like any id that names nothing: 404, the body being well formed.
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    format!("filter.groupIds: no group {g} in this organization"),
                ));
            }
        }
    }
    Ok(())
}

async fn check_host(field: &str, u: &url::Url, allow_private: bool) -> ApiResult<()> {
    if allow_private {
        return Ok(());
    }
    let Some(url::Host::Domain(host)) = u.host() else {
        return Ok(());
    };
    // Schemes the URL standard does not know (syslog's tcp://) keep literal addresses as text;
    // the URL's own check judged those.
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let port = u.port_or_known_default().unwrap_or(443);
    let lookup = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::lookup_host((host, port)),
    )
    .await;
    let addrs: Vec<_> = match lookup {
        Ok(Ok(a)) => a.collect(),
        _ => vec![],
    };
    if addrs.is_empty() {
        return Err(ApiError::bad_request(
            field,
            format!("{field}: cannot resolve {host}"),
        ));
    }
    if let Some(a) = addrs.iter().find(|a| is_forbidden_address(a.ip())) {
        return Err(ApiError::bad_request(
            field,
            format!(
                "{field}: {host} resolves to {}, which is not a public address",
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
    responses((status = 201, body = WebhookWithSecret), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody, description = "A group of `filter.groupIds` is not in the organization.")))]
pub async fn create_webhook(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiJson(body): ApiJson<WebhookBody>,
) -> ApiResult<(StatusCode, Json<WebhookWithSecret>)> {
    c.require(Permission::Administer)?;
    let spec = WebhookSpec::try_from(body)?;
    let kind = spec.delivery.kind.unwrap_or_default();
    check_destinations(&spec, kind, app.webhook_allow_private).await?;
    check_filter_groups(&app, &c, &spec).await?;
    let (id, secret) = app
        .commands
        .create_webhook(&c.meta(), &c.org_id, &spec, app.webhook_allow_private)
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
    let current = view(&app, &c, &id).await?;
    let spec = WebhookSpec::try_from(body)?;
    let kind = spec.delivery.kind.unwrap_or(current.kind);
    check_destinations(&spec, kind, app.webhook_allow_private).await?;
    check_filter_groups(&app, &c, &spec).await?;
    app.commands
        .update_webhook(&c.meta(), &c.org_id, &id, &spec, app.webhook_allow_private)
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
