//! Scan schedules: recurring scans of an asset or a group every 1 to 90 days, without the
//! alerts of monitors. They count against the plan's scheduled scans with the monitors, and the
//! same scheduler runs both.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PageParams};
use crate::routes::monitors::MonitorRunView;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use easm_domain::{MonitorScope, MonitorSpec, Permission};
use easm_events::{AssetId, GroupId, MonitorId, MonitorKind};
use easm_projections::read::{Page, ScanScheduleView};
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScanScheduleBody {
    /// `asset` or `group`, naming which of `assetId` and `groupId` is given.
    #[schema(value_type = Option<crate::schema_types::ScheduleTypeName>)]
    pub schedule_type: Option<String>,
    #[serde(default, deserialize_with = "super::id_string")]
    #[schema(value_type = Option<crate::schema_types::IdValue>)]
    pub asset_id: Option<String>,
    #[serde(default, deserialize_with = "super::id_string")]
    #[schema(value_type = Option<crate::schema_types::IdValue>)]
    pub group_id: Option<String>,
    /// quick (default), standard or deep.
    #[schema(value_type = Option<crate::schema_types::ProfileName>)]
    pub profile: Option<String>,
    /// Days between runs, 1 to 90 (default 7).
    #[schema(minimum = 1, maximum = 90)]
    pub frequency_days: Option<i64>,
    pub enabled: Option<bool>,
}

impl ScanScheduleBody {
    fn spec(&self) -> MonitorSpec<'_> {
        MonitorSpec {
            frequency_hours: self.frequency_days.map(|d| d.saturating_mul(24)),
            profile: self.profile.as_deref(),
            ports: None,
            enabled: self.enabled,
        }
    }
}

/// Days between runs when the request names none.
const DEFAULT_DAYS: i64 = 7;

async fn view(app: &AppState, c: &Caller, id: &MonitorId) -> ApiResult<ScanScheduleView> {
    app.read()
        .scan_schedule(&c.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("scan schedule"))
}

/// Scan schedules of the organization, oldest first.
#[utoipa::path(get, path = "/api/scan-schedules", tag = "scans", params(PageParams),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<ScanScheduleView>)))]
pub async fn list_scan_schedules(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<ScanScheduleView>>> {
    c.require(Permission::Read)?;
    Ok(Json(
        app.read().scan_schedules(&c.org_id, q.resolve()?).await?,
    ))
}

/// Create a schedule of an asset or a group; its first run is due at once. Each takes one of
/// the plan's scheduled scans (402 past it).
#[utoipa::path(post, path = "/api/scan-schedules", tag = "scans", request_body = ScanScheduleBody,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = ScanScheduleView), (status = 400, body = ErrorBody), (status = 402, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_scan_schedule(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiJson(body): ApiJson<ScanScheduleBody>,
) -> ApiResult<(StatusCode, Json<ScanScheduleView>)> {
    c.require(Permission::Write)?;
    let scope =
        match (
            body.schedule_type.as_deref(),
            &body.asset_id,
            &body.group_id,
        ) {
            (Some("asset") | None, Some(a), None) => MonitorScope::Asset(AssetId::new(a)),
            (Some("group") | None, None, Some(g)) => MonitorScope::Group(GroupId::new(g)),
            (Some(t), _, _) if t != "asset" && t != "group" => {
                return Err(ApiError::bad_request(
                    "scheduleType",
                    "scheduleType: must be asset or group",
                ))
            }
            _ => return Err(ApiError::bad_request(
                "scheduleType",
                "scheduleType asset takes assetId, group takes groupId: exactly one is required",
            )),
        };
    let mut spec = body.spec();
    spec.frequency_hours.get_or_insert(DEFAULT_DAYS * 24);
    let id = app
        .commands
        .create_monitor(
            &c.meta(),
            &c.org_id,
            c.plan,
            scope,
            MonitorKind::Schedule,
            &spec,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view(&app, &c, &id).await?)))
}

#[utoipa::path(get, path = "/api/scan-schedules/{id}", tag = "scans", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ScanScheduleView), (status = 404, body = ErrorBody)))]
pub async fn get_scan_schedule(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<MonitorId>,
) -> ApiResult<Json<ScanScheduleView>> {
    c.require(Permission::Read)?;
    Ok(Json(view(&app, &c, &id).await?))
}

/// Change `frequencyDays`, `profile` or `enabled` (what it scans is fixed).
#[utoipa::path(patch, path = "/api/scan-schedules/{id}", tag = "scans", params(("id" = String, Path)),
    request_body = ScanScheduleBody, security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ScanScheduleView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_scan_schedule(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<MonitorId>,
    ApiJson(body): ApiJson<ScanScheduleBody>,
) -> ApiResult<Json<ScanScheduleView>> {
    c.require(Permission::Write)?;
    if body.asset_id.is_some() || body.group_id.is_some() || body.schedule_type.is_some() {
        return Err(ApiError::bad_request(
            "scheduleType",
            "scheduleType, assetId, groupId: cannot change; create another schedule",
        ));
    }
    app.commands
        .update_monitor(
            &c.meta(),
            &c.org_id,
            &id,
            MonitorKind::Schedule,
            &body.spec(),
        )
        .await?;
    Ok(Json(view(&app, &c, &id).await?))
}

/// Delete a schedule; the scan jobs it requested stay.
#[utoipa::path(delete, path = "/api/scan-schedules/{id}", tag = "scans", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_scan_schedule(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<MonitorId>,
) -> ApiResult<StatusCode> {
    c.require(Permission::Write)?;
    app.commands
        .delete_monitor(&c.meta(), &c.org_id, &id, MonitorKind::Schedule)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Run the schedule now; the next run counts from this one.
#[utoipa::path(post, path = "/api/scan-schedules/{id}/run-now", tag = "scans", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 202, body = MonitorRunView), (status = 404, body = ErrorBody)))]
pub async fn run_scan_schedule(
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
            Some(MonitorKind::Schedule),
        )
        .await?
        .unwrap_or_default();
    Ok((StatusCode::ACCEPTED, Json(MonitorRunView::of(id, run))))
}
