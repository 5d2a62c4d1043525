//! Discovery: jobs over root domains, run by the scan workers, and the promotion of what they
//! found to assets.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{page_request, ApiJson, ApiQuery};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use easm_domain::Permission;
use easm_events::{DiscoveryJobId, GroupId};
use easm_projections::read::{AssetView, DiscoveryJobFilter, DiscoveryJobView, Page};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryRunBody {
    /// Root domains, 1 to 20, validated and normalised like domain assets.
    #[schema(min_items = 1, max_items = 20)]
    pub domains: Vec<String>,
    /// A larger wordlist, permutations of the labels found, and more ports for certificates.
    #[serde(default)]
    pub deep: bool,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiscoveryJobQuery {
    #[param(value_type = Option<crate::schema_types::JobStatusName>)]
    pub status: Option<String>,
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub page: Option<i64>,
    #[serde(rename = "perPage")]
    #[param(rename = "perPage")]
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub per_page: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddAssetsBody {
    /// Found subdomains or addresses to add as assets, 1 to 1000.
    #[schema(min_items = 1, max_items = 1000)]
    pub values: Vec<String>,
    /// The group to add them to; a group named `Discovered` (created on first use) otherwise.
    #[serde(default, deserialize_with = "super::id_string")]
    #[schema(value_type = Option<crate::schema_types::IdValue>)]
    pub group_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Skipped {
    pub value: String,
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct AddAssetsResult {
    pub added: usize,
    pub items: Vec<AssetView>,
    pub skipped: Vec<Skipped>,
}

/// Values one promotion may name.
const MAX_VALUES: usize = 1000;

async fn view(app: &AppState, c: &Caller, id: &DiscoveryJobId) -> ApiResult<DiscoveryJobView> {
    app.read()
        .discovery_job(&c.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("discovery job"))
}

/// Start a discovery job over root domains; 402 past the plan's discovery jobs per month.
#[utoipa::path(post, path = "/api/discovery/run", tag = "discovery", request_body = DiscoveryRunBody,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 202, body = DiscoveryJobView), (status = 400, body = ErrorBody), (status = 402, body = ErrorBody)))]
pub async fn run_discovery(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiJson(body): ApiJson<DiscoveryRunBody>,
) -> ApiResult<(StatusCode, Json<DiscoveryJobView>)> {
    c.require(Permission::Write)?;
    let id = app
        .commands
        .request_discovery(&c.meta(), &c.org_id, c.plan, &body.domains, body.deep, None)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(view(&app, &c, &id).await?)))
}

/// Discovery jobs, newest first (without their names: see a job's detail).
#[utoipa::path(get, path = "/api/discovery/jobs", tag = "discovery", params(DiscoveryJobQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<DiscoveryJobView>), (status = 400, body = ErrorBody)))]
pub async fn list_discovery_jobs(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<DiscoveryJobQuery>,
) -> ApiResult<Json<Page<DiscoveryJobView>>> {
    c.require(Permission::Read)?;
    let p = page_request(q.page, q.per_page)?;
    super::scans::check_job_status(q.status.as_deref())?;
    let filter = DiscoveryJobFilter { status: q.status };
    Ok(Json(
        app.read().discovery_jobs(&c.org_id, &filter, p).await?,
    ))
}

/// A job with the subdomains it found (addresses, CNAME, the modules that found each, when the
/// organization first saw it), addresses, services, wildcards and the modules that ran.
#[utoipa::path(get, path = "/api/discovery/jobs/{id}", tag = "discovery", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = DiscoveryJobView), (status = 404, body = ErrorBody)))]
pub async fn get_discovery_job(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<DiscoveryJobId>,
) -> ApiResult<Json<DiscoveryJobView>> {
    c.require(Permission::Read)?;
    Ok(Json(view(&app, &c, &id).await?))
}

/// Cancel a queued or running job (409 once it ended).
#[utoipa::path(post, path = "/api/discovery/jobs/{id}/cancel", tag = "discovery", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = DiscoveryJobView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel_discovery_job(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<DiscoveryJobId>,
) -> ApiResult<Json<DiscoveryJobView>> {
    c.require(Permission::Write)?;
    app.commands
        .cancel_discovery(&c.meta(), &c.org_id, &id)
        .await?;
    Ok(Json(view(&app, &c, &id).await?))
}

/// Promote found subdomains and addresses to assets, all or nothing (402 when the plan's asset
/// limit would be passed). Values the job did not find, or that are assets already, are
/// skipped with the reason.
#[utoipa::path(post, path = "/api/discovery/jobs/{id}/add-assets", tag = "discovery", params(("id" = String, Path)),
    request_body = AddAssetsBody, security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AddAssetsResult), (status = 400, body = ErrorBody), (status = 402, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_discovered_assets(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<DiscoveryJobId>,
    ApiJson(body): ApiJson<AddAssetsBody>,
) -> ApiResult<Json<AddAssetsResult>> {
    c.require(Permission::Write)?;
    if body.values.is_empty() || body.values.len() > MAX_VALUES {
        return Err(ApiError::bad_request(
            "values",
            format!("values: must hold 1 to {MAX_VALUES} values"),
        ));
    }
    let group = body.group_id.map(GroupId::new);
    let promoted = app
        .commands
        .promote_discovered(
            &c.meta(),
            &c.org_id,
            c.plan,
            &id,
            &body.values,
            group.as_ref(),
        )
        .await?;
    Ok(Json(AddAssetsResult {
        added: promoted.added.len(),
        items: promoted.added,
        skipped: promoted
            .skipped
            .into_iter()
            .map(|(value, reason)| Skipped { value, reason })
            .collect(),
    }))
}
