//! Monitors (recurring scans of an asset or a group) and the alerts they raise: listed,
//! acknowledged and resolved from a SIEM or SOAR.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{page_request, ApiJson, ApiQuery, OptionalJson, PageParams};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use easm_app::AlertAction;
use easm_domain::{MonitorScope, MonitorSpec, Permission, ALERT_STATUSES};
use easm_events::{AlertId, AssetId, GroupId, MonitorId, MonitorKind, Severity};
use easm_projections::read::{AlertFilter, AlertView, MonitorView, Page};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MonitorBody {
    /// The asset to watch; or `groupId`, to watch every asset of a group.
    #[serde(default, deserialize_with = "super::id_string")]
    #[schema(value_type = Option<crate::schema_types::IdValue>)]
    pub asset_id: Option<String>,
    #[serde(default, deserialize_with = "super::id_string")]
    #[schema(value_type = Option<crate::schema_types::IdValue>)]
    pub group_id: Option<String>,
    /// Hours between runs, 1 to 720 (default 24).
    #[schema(minimum = 1, maximum = 720)]
    pub frequency_hours: Option<i64>,
    /// Profile of its scans: quick (default), standard or deep.
    #[schema(value_type = Option<crate::schema_types::ProfileName>)]
    pub profile: Option<String>,
    /// Ports to probe instead of the profile's list; fixed at creation.
    #[schema(min_items = 1, max_items = 1000, value_type = Option<Vec<crate::schema_types::Port>>)]
    pub ports: Option<Vec<i64>>,
    pub enabled: Option<bool>,
}

impl MonitorBody {
    fn spec(&self) -> MonitorSpec<'_> {
        MonitorSpec {
            frequency_hours: self.frequency_hours,
            profile: self.profile.as_deref(),
            ports: self.ports.as_deref(),
            enabled: self.enabled,
        }
    }
}

async fn monitor_view(app: &AppState, c: &Caller, id: &MonitorId) -> ApiResult<MonitorView> {
    app.read()
        .monitor(&c.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("monitor"))
}

async fn alert_view(app: &AppState, c: &Caller, id: &AlertId) -> ApiResult<AlertView> {
    app.read()
        .alert(&c.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("alert"))
}

/// Monitors of the organization, oldest first.
#[utoipa::path(get, path = "/api/monitors", tag = "monitors", params(PageParams),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<MonitorView>)))]
pub async fn list_monitors(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<MonitorView>>> {
    c.require(Permission::Read)?;
    Ok(Json(app.read().monitors(&c.org_id, q.resolve()?).await?))
}

/// Create a monitor of an asset (`assetId`) or a group (`groupId`). Its first run is due at
/// once. Each monitor takes one of the plan's scheduled scans (402 past it).
#[utoipa::path(post, path = "/api/monitors", tag = "monitors", request_body = MonitorBody,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = MonitorView), (status = 400, body = ErrorBody), (status = 402, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_monitor(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiJson(body): ApiJson<MonitorBody>,
) -> ApiResult<(StatusCode, Json<MonitorView>)> {
    c.require(Permission::Write)?;
    let scope = match (&body.asset_id, &body.group_id) {
        (Some(a), None) => MonitorScope::Asset(AssetId::new(a)),
        (None, Some(g)) => MonitorScope::Group(GroupId::new(g)),
        _ => {
            return Err(ApiError::bad_request(
                "assetId",
                "assetId or groupId: exactly one is required",
            ))
        }
    };
    let id = app
        .commands
        .create_monitor(
            &c.meta(),
            &c.org_id,
            c.plan,
            scope,
            MonitorKind::Monitor,
            &body.spec(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(monitor_view(&app, &c, &id).await?),
    ))
}

#[utoipa::path(get, path = "/api/monitors/{id}", tag = "monitors", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = MonitorView), (status = 404, body = ErrorBody)))]
pub async fn get_monitor(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<MonitorId>,
) -> ApiResult<Json<MonitorView>> {
    c.require(Permission::Read)?;
    Ok(Json(monitor_view(&app, &c, &id).await?))
}

/// Change frequency, profile or enabled state (scope and ports are fixed).
#[utoipa::path(patch, path = "/api/monitors/{id}", tag = "monitors", params(("id" = String, Path)),
    request_body = MonitorBody, security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = MonitorView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_monitor(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<MonitorId>,
    ApiJson(body): ApiJson<MonitorBody>,
) -> ApiResult<Json<MonitorView>> {
    c.require(Permission::Write)?;
    if body.asset_id.is_some() || body.group_id.is_some() {
        return Err(ApiError::bad_request(
            "assetId",
            "assetId, groupId: cannot change; create another monitor",
        ));
    }
    app.commands
        .update_monitor(
            &c.meta(),
            &c.org_id,
            &id,
            MonitorKind::Monitor,
            &body.spec(),
        )
        .await?;
    Ok(Json(monitor_view(&app, &c, &id).await?))
}

/// Delete a monitor; its alerts and the scans it requested stay.
#[utoipa::path(delete, path = "/api/monitors/{id}", tag = "monitors", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_monitor(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<MonitorId>,
) -> ApiResult<StatusCode> {
    c.require(Permission::Write)?;
    app.commands
        .delete_monitor(&c.meta(), &c.org_id, &id, MonitorKind::Monitor)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One run of a monitor or a scan schedule (`monitorId` names either).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitorRunView {
    pub monitor_id: String,
    pub scan_job_ids: Vec<String>,
    /// The discovery job a monitor runs over its domain assets (none for scan schedules).
    pub discovery_job_ids: Vec<String>,
    /// Assets not scanned this time, with the reason.
    #[schema(value_type = Vec<Object>)]
    pub skipped: Vec<easm_events::SkippedAsset>,
}

impl MonitorRunView {
    pub(crate) fn of(id: MonitorId, run: easm_app::MonitorRun) -> Self {
        MonitorRunView {
            monitor_id: id.into_string(),
            scan_job_ids: run.scan_job_ids.into_iter().map(String::from).collect(),
            discovery_job_ids: run
                .discovery_job_ids
                .into_iter()
                .map(String::from)
                .collect(),
            skipped: run.skipped,
        }
    }
}

/// Run the monitor now, without waiting for its schedule; the next scheduled run counts from
/// this one.
#[utoipa::path(post, path = "/api/monitors/{id}/run", tag = "monitors", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 202, body = MonitorRunView), (status = 404, body = ErrorBody)))]
pub async fn run_monitor(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<MonitorId>,
) -> ApiResult<(StatusCode, Json<MonitorRunView>)> {
    c.require(Permission::Write)?;
    let run = app
        .commands
        .run_monitor(
            &c.meta(),
            &c.org_id,
            c.plan,
            &id,
            Some(MonitorKind::Monitor),
        )
        .await?
        .unwrap_or_default();
    Ok((StatusCode::ACCEPTED, Json(MonitorRunView::of(id, run))))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    #[param(value_type = Option<crate::schema_types::AlertStatusName>)]
    pub status: Option<String>,
    #[param(value_type = Option<crate::schema_types::SeverityName>)]
    pub severity: Option<String>,
    /// `monitor_id` is accepted too.
    pub monitor_id: Option<String>,
    #[serde(rename = "monitor_id")]
    #[param(rename = "monitor_id")]
    pub monitor_id_ref: Option<String>,
    pub asset_id: Option<String>,
    /// new_port, port_closed, service_changed, certificate_changed or dns_changed.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub alert_type: Option<String>,
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub page: Option<i64>,
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub per_page: Option<i64>,
}

fn one_of(field: &str, value: Option<String>, allowed: &[&str]) -> ApiResult<Option<String>> {
    match value.filter(|v| !v.is_empty()) {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ApiError::bad_request(
            field,
            format!("{field}: must be one of {}", allowed.join(", ")),
        )),
        v => Ok(v),
    }
}

/// Alerts, newest first.
#[utoipa::path(get, path = "/api/monitors/alerts", tag = "monitors", params(AlertQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<AlertView>), (status = 400, body = ErrorBody)))]
pub async fn list_alerts(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<AlertQuery>,
) -> ApiResult<Json<Page<AlertView>>> {
    c.require(Permission::Read)?;
    let p = page_request(q.page, q.per_page)?;
    let filter = AlertFilter {
        status: one_of("status", q.status, &ALERT_STATUSES)?,
        severity: one_of("severity", q.severity, Severity::NAMES)?,
        monitor_id: q.monitor_id.or(q.monitor_id_ref).filter(|m| !m.is_empty()),
        asset_id: q.asset_id.filter(|a| !a.is_empty()),
        alert_type: q.alert_type.filter(|t| !t.is_empty()),
    };
    Ok(Json(app.read().alerts(&c.org_id, &filter, p).await?))
}

#[utoipa::path(get, path = "/api/monitors/alerts/{id}", tag = "monitors", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AlertView), (status = 404, body = ErrorBody)))]
pub async fn get_alert(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<AlertId>,
) -> ApiResult<Json<AlertView>> {
    c.require(Permission::Read)?;
    Ok(Json(alert_view(&app, &c, &id).await?))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AlertActionBody {
    #[schema(max_length = 5000)]
    pub notes: Option<String>,
}

/// Acknowledge an open alert (who and when are recorded); 409 once acknowledged or resolved.
#[utoipa::path(post, path = "/api/monitors/alerts/{id}/acknowledge", tag = "monitors",
    params(("id" = String, Path)), request_body = Option<AlertActionBody>,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AlertView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn acknowledge_alert(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<AlertId>,
    OptionalJson(body): OptionalJson<AlertActionBody>,
) -> ApiResult<Json<AlertView>> {
    change_alert(&app, &c, &id, body, AlertAction::Acknowledge).await
}

/// Resolve an open or acknowledged alert; 409 once resolved.
#[utoipa::path(post, path = "/api/monitors/alerts/{id}/resolve", tag = "monitors",
    params(("id" = String, Path)), request_body = Option<AlertActionBody>,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AlertView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resolve_alert(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<AlertId>,
    OptionalJson(body): OptionalJson<AlertActionBody>,
) -> ApiResult<Json<AlertView>> {
    change_alert(&app, &c, &id, body, AlertAction::Resolve).await
}

async fn change_alert(
    app: &AppState,
    c: &Caller,
    id: &AlertId,
    body: AlertActionBody,
    action: AlertAction,
) -> ApiResult<Json<AlertView>> {
    c.require(Permission::Write)?;
    let notes = body.notes.as_deref();
    app.commands
        .act_on_alert(&c.meta(), &c.org_id, id, action, notes)
        .await?;
    Ok(Json(alert_view(app, c, id).await?))
}
