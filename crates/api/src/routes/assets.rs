use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{page_request, ApiJson, ApiQuery, PageParams};
use crate::routes::findings::read_as_of;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use easm_domain::{AssetPatch, AssetType, Criticality, JobStatus, NewAsset, Permission};
use easm_events::{format_timestamp, Actor, AssetId, GroupId, ScanJobId};
use easm_projections::read::{AssetFilter, AssetView, Page, ScanJobView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetInput {
    /// Normalized per type: lowercase IDNA hostnames, canonical IPs and CIDRs.
    pub value: String,
    #[serde(rename = "type")]
    #[schema(value_type = crate::schema_types::AssetTypeName)]
    pub asset_type: String,
    #[schema(max_items = 50, value_type = Option<Vec<crate::schema_types::Tag>>)]
    pub tags: Option<Vec<String>>,
    /// medium by default.
    #[schema(value_type = Option<crate::schema_types::CriticalityName>)]
    pub criticality: Option<String>,
}

impl From<AssetInput> for NewAsset {
    fn from(a: AssetInput) -> Self {
        NewAsset {
            value: a.value,
            asset_type: a.asset_type,
            tags: a.tags,
            criticality: a.criticality,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BulkAdded {
    pub added: usize,
    pub items: Vec<AssetView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AssetPatchBody {
    /// Move the asset to this group.
    #[serde(default, deserialize_with = "super::id_string")]
    #[schema(value_type = Option<crate::schema_types::IdValue>)]
    pub group_id: Option<String>,
    /// Replaces the asset's tags.
    #[schema(max_items = 50, value_type = Option<Vec<crate::schema_types::Tag>>)]
    pub tags: Option<Vec<String>>,
    #[schema(value_type = Option<crate::schema_types::CriticalityName>)]
    pub criticality: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AssetQuery {
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub page: Option<i64>,
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub per_page: Option<i64>,
    /// Asset type.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<crate::schema_types::AssetTypeName>)]
    pub asset_type: Option<String>,
    pub group_id: Option<String>,
    pub tag: Option<String>,
    #[param(value_type = Option<crate::schema_types::CriticalityName>)]
    pub criticality: Option<String>,
    /// Case-insensitive substring of the value.
    pub q: Option<String>,
    /// A time (RFC 3339, or a date for its start UTC): the assets as they were at that moment,
    /// replayed from the log.
    #[param(value_type = Option<crate::schema_types::Moment>)]
    pub as_of: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    pub event_id: String,
    pub position: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: i32,
    pub occurred_at: String,
    #[schema(value_type = Object)]
    pub actor: Actor,
    pub request_id: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// Assets of the organization. Filters: type, groupId, tag, criticality, q.
#[utoipa::path(get, path = "/api/assets", tag = "assets", params(AssetQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<AssetView>), (status = 400, body = ErrorBody)))]
pub async fn list_assets(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<AssetQuery>,
) -> ApiResult<Json<Page<AssetView>>> {
    c.require(Permission::Read)?;
    let page = page_request(q.page, q.per_page)?;
    if let Some(t) = &q.asset_type {
        AssetType::parse(t).ok_or_else(|| {
            ApiError::bad_request("type", format!("type: unknown asset type '{t}'"))
        })?;
    }
    if let Some(cr) = &q.criticality {
        Criticality::parse(cr).ok_or_else(|| {
            ApiError::bad_request("criticality", format!("criticality: unknown level '{cr}'"))
        })?;
    }
    let filter = AssetFilter {
        asset_type: q.asset_type,
        group_id: q.group_id,
        tag: q.tag,
        criticality: q.criticality,
        q: q.q.filter(|s| !s.is_empty()),
    };
    let read = read_as_of(&app, &c, &q.as_of).await?;
    Ok(Json(read.assets(&c.org_id, &filter, page).await?))
}

async fn asset_view(app: &AppState, c: &Caller, id: &AssetId) -> ApiResult<AssetView> {
    app.read()
        .asset(&c.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("asset"))
}

/// One asset.
#[utoipa::path(get, path = "/api/assets/{id}", tag = "assets", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AssetView), (status = 404, body = ErrorBody)))]
pub async fn get_asset(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<AssetId>,
) -> ApiResult<Json<AssetView>> {
    c.require(Permission::Read)?;
    Ok(Json(asset_view(&app, &c, &id).await?))
}

/// Change an asset's group, tags or criticality.
#[utoipa::path(patch, path = "/api/assets/{id}", tag = "assets", params(("id" = String, Path)),
    request_body = AssetPatchBody, security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AssetView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_asset(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<AssetId>,
    ApiJson(body): ApiJson<AssetPatchBody>,
) -> ApiResult<Json<AssetView>> {
    c.require(Permission::Write)?;
    let patch = AssetPatch {
        group_id: body.group_id.map(GroupId::new),
        tags: body.tags,
        criticality: body.criticality,
    };
    app.commands
        .update_asset(&c.meta(), &c.org_id, &id, &patch)
        .await?;
    Ok(Json(asset_view(&app, &c, &id).await?))
}

/// Remove an asset. Its history stays in the log.
#[utoipa::path(delete, path = "/api/assets/{id}", tag = "assets", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_asset(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<AssetId>,
) -> ApiResult<StatusCode> {
    c.require(Permission::Write)?;
    app.commands.remove_asset(&c.meta(), &c.org_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The asset's history, newest first, read from the event log: its own events and risk, the
/// scans of it (without their progress ticks), its findings and the alerts raised on it.
#[utoipa::path(get, path = "/api/assets/{id}/timeline", tag = "assets", params(("id" = String, Path), PageParams),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<TimelineEntry>), (status = 404, body = ErrorBody)))]
pub async fn asset_timeline(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<AssetId>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<TimelineEntry>>> {
    c.require(Permission::Read)?;
    let p = q.resolve()?;
    let (events, total) = app
        .commands
        .asset_timeline(&c.org_id, &id, p.offset(), p.per_page)
        .await?
        .ok_or_else(|| ApiError::not_found("asset"))?;
    let items = events
        .into_iter()
        .map(|e| TimelineEntry {
            event_id: e.event_id.to_string(),
            position: e.position,
            event_type: e.event_type,
            schema_version: e.schema_version,
            occurred_at: format_timestamp(&e.occurred_at),
            actor: e.actor,
            request_id: e.request_id,
            data: e.data,
        })
        .collect();
    Ok(Json(p.wrap(items, total)))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetRisk {
    pub asset_id: String,
    /// 0 (no unresolved finding) to 100; see the README for the formula.
    pub score: u32,
    /// A (0), B (1-19), C (20-39), D (40-69) or F (70-100).
    pub grade: String,
    /// Unresolved (open or acknowledged) findings per severity.
    #[schema(value_type = Object)]
    pub breakdown: easm_events::SeverityCounts,
}

/// The asset's risk from its unresolved findings.
#[utoipa::path(get, path = "/api/assets/{id}/risk", tag = "assets", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AssetRisk), (status = 404, body = ErrorBody)))]
pub async fn asset_risk(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<AssetId>,
) -> ApiResult<Json<AssetRisk>> {
    c.require(Permission::Read)?;
    asset_view(&app, &c, &id).await?;
    let breakdown = app.read().unresolved_by_severity(&c.org_id, &id).await?;
    let (score, grade) = easm_domain::risk_score(&breakdown);
    Ok(Json(AssetRisk {
        asset_id: id.into_string(),
        score,
        grade: grade.to_string(),
        breakdown,
    }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileCoverage {
    pub profile: String,
    /// The newest job of this profile.
    pub last_job_id: Option<String>,
    pub last_status: Option<String>,
    pub last_requested_at: Option<String>,
    /// When a job of this profile last completed.
    pub last_completed_at: Option<String>,
    pub jobs: usize,
}

/// Which scan profiles ran on the asset, when, and with what result.
#[utoipa::path(get, path = "/api/assets/{id}/coverage", tag = "assets", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = [ProfileCoverage]), (status = 404, body = ErrorBody)))]
pub async fn asset_coverage(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<AssetId>,
) -> ApiResult<Json<Vec<ProfileCoverage>>> {
    c.require(Permission::Read)?;
    asset_view(&app, &c, &id).await?;
    let jobs = app.read().asset_scan_jobs(&c.org_id, &id).await?;
    Ok(Json(
        easm_domain::PROFILES
            .iter()
            .map(|profile| {
                let mine: Vec<_> = jobs.iter().filter(|j| j.profile == *profile).collect();
                let last = mine.first();
                ProfileCoverage {
                    profile: profile.to_string(),
                    last_job_id: last.map(|j| j.id.clone()),
                    last_status: last.map(|j| j.status.clone()),
                    last_requested_at: last.map(|j| j.created_at.clone()),
                    last_completed_at: mine
                        .iter()
                        .find(|j| j.status == JobStatus::Completed.as_str())
                        .and_then(|j| j.finished_at.clone()),
                    jobs: mine.len(),
                }
            })
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetHealth {
    pub asset_id: String,
    /// `up` (open services answered), `down` (nothing answered) or `unknown` (never scanned
    /// to completion).
    pub status: String,
    /// The completed scan this is read from.
    pub scan_job_id: Option<String>,
    pub profile: Option<String>,
    pub scanned_at: Option<String>,
    pub addresses: Vec<String>,
    pub cnames: Vec<String>,
    pub ports_scanned: Option<u32>,
    pub open_ports: Vec<u16>,
    /// What answered on each open port, found by probing.
    #[schema(value_type = Vec<Object>)]
    pub services: Vec<easm_events::ServiceSeen>,
    /// Why the newest scan failed, when it failed after the last completed one.
    pub last_error: Option<String>,
}

/// Reachability and open services of the asset, from its latest completed scan.
#[utoipa::path(get, path = "/api/assets/{id}/health", tag = "assets", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AssetHealth), (status = 404, body = ErrorBody)))]
pub async fn asset_health(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<AssetId>,
) -> ApiResult<Json<AssetHealth>> {
    c.require(Permission::Read)?;
    asset_view(&app, &c, &id).await?;
    let jobs = app.read().asset_scan_jobs(&c.org_id, &id).await?;
    let ended = |j: &&ScanJobView| j.finished_at.clone().unwrap_or_default();
    let completed = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Completed.as_str())
        .max_by_key(ended);
    let last_error = jobs
        .iter()
        .filter(|j| j.status == "failed")
        .max_by_key(ended)
        .filter(|f| completed.is_none_or(|c| ended(f) > ended(&c)))
        .and_then(|f| f.error.clone());
    let mut health = AssetHealth {
        asset_id: id.into_string(),
        status: "unknown".into(),
        scan_job_id: None,
        profile: None,
        scanned_at: None,
        addresses: vec![],
        cnames: vec![],
        ports_scanned: None,
        open_ports: vec![],
        services: vec![],
        last_error,
    };
    let Some(job) = completed else {
        return Ok(Json(health));
    };
    if let Some(done) = app
        .commands
        .observation(&c.org_id, &ScanJobId::new(job.id.clone()))
        .await?
    {
        let seen = done.observed;
        health.status = if seen.services.is_empty() {
            "down"
        } else {
            "up"
        }
        .into();
        health.open_ports = seen.services.iter().map(|s| s.port).collect();
        health.addresses = seen.addresses;
        health.cnames = seen.cnames;
        health.ports_scanned = seen.ports_scanned;
        health.services = seen.services;
    }
    health.scan_job_id = Some(job.id.clone());
    health.profile = Some(job.profile.clone());
    health.scanned_at = job.finished_at.clone();
    Ok(Json(health))
}
