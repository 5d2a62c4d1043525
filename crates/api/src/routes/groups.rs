use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PageParams};
use crate::routes::assets::{AssetInput, BulkAdded};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use easm_domain::{NewAsset, Permission};
use easm_events::GroupId;
use easm_projections::read::{AssetFilter, AssetView, GroupSummary, GroupView, Page};
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupName {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkAssets {
    /// At most 1000 items; all are added or none.
    #[schema(min_items = 1, max_items = 1000)]
    pub assets: Vec<AssetInput>,
}

const MAX_BULK: usize = 1000;

async fn group_view(app: &AppState, c: &Caller, id: &GroupId) -> ApiResult<GroupView> {
    app.read()
        .group(&c.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("group"))
}

/// Asset groups with their asset counts.
#[utoipa::path(get, path = "/api/groups", tag = "groups", params(PageParams),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<GroupView>), (status = 401, body = ErrorBody)))]
pub async fn list_groups(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<GroupView>>> {
    c.require(Permission::Read)?;
    Ok(Json(app.read().groups(&c.org_id, q.resolve()?).await?))
}

/// Create an asset group.
#[utoipa::path(post, path = "/api/groups", tag = "groups", request_body = GroupName,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = GroupView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_group(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiJson(body): ApiJson<GroupName>,
) -> ApiResult<(StatusCode, Json<GroupView>)> {
    c.require(Permission::Write)?;
    let id = app
        .commands
        .create_group(&c.meta(), &c.org_id, &body.name)
        .await?;
    Ok((StatusCode::CREATED, Json(group_view(&app, &c, &id).await?)))
}

/// One asset group.
#[utoipa::path(get, path = "/api/groups/{id}", tag = "groups", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody)))]
pub async fn get_group(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<GroupId>,
) -> ApiResult<Json<GroupView>> {
    c.require(Permission::Read)?;
    Ok(Json(group_view(&app, &c, &id).await?))
}

/// Rename a group.
#[utoipa::path(patch, path = "/api/groups/{id}", tag = "groups", params(("id" = String, Path)),
    request_body = GroupName, security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = GroupView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rename_group(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<GroupId>,
    ApiJson(body): ApiJson<GroupName>,
) -> ApiResult<Json<GroupView>> {
    c.require(Permission::Write)?;
    app.commands
        .rename_group(&c.meta(), &c.org_id, &id, &body.name)
        .await?;
    Ok(Json(group_view(&app, &c, &id).await?))
}

/// Delete an empty group; 409 while it holds assets.
#[utoipa::path(delete, path = "/api/groups/{id}", tag = "groups", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_group(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<GroupId>,
) -> ApiResult<StatusCode> {
    c.require(Permission::Administer)?;
    app.commands.delete_group(&c.meta(), &c.org_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rollup of a group: asset totals by type and criticality.
#[utoipa::path(get, path = "/api/groups/{id}/summary", tag = "groups", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = GroupSummary), (status = 404, body = ErrorBody)))]
pub async fn group_summary(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<GroupId>,
) -> ApiResult<Json<GroupSummary>> {
    c.require(Permission::Read)?;
    let s = app.read().group_summary(&c.org_id, &id).await?;
    Ok(Json(s.ok_or_else(|| ApiError::not_found("group"))?))
}

/// Assets of one group.
#[utoipa::path(get, path = "/api/groups/{id}/assets", tag = "groups", params(("id" = String, Path), PageParams),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<AssetView>), (status = 404, body = ErrorBody)))]
pub async fn group_assets(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<GroupId>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<AssetView>>> {
    c.require(Permission::Read)?;
    group_view(&app, &c, &id).await?;
    let filter = AssetFilter {
        group_id: Some(id.into_string()),
        ..Default::default()
    };
    Ok(Json(
        app.read().assets(&c.org_id, &filter, q.resolve()?).await?,
    ))
}

/// Add an asset to a group. 409 with `existingId` if the value is already in the organization;
/// 402 past the plan's asset limit.
#[utoipa::path(post, path = "/api/groups/{id}/assets", tag = "assets", params(("id" = String, Path)),
    request_body = AssetInput, security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = AssetView), (status = 400, body = ErrorBody), (status = 402, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_asset(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<GroupId>,
    ApiJson(body): ApiJson<AssetInput>,
) -> ApiResult<(StatusCode, Json<AssetView>)> {
    c.require(Permission::Write)?;
    let asset = app
        .commands
        .add_assets(&c.meta(), &c.org_id, c.plan, &id, &[body.into()])
        .await?
        .pop();
    Ok((
        StatusCode::CREATED,
        Json(asset.ok_or_else(ApiError::internal)?),
    ))
}

/// Add many assets to a group, all or nothing: on any invalid item (400), duplicate (409) or the
/// plan limit (402) nothing is added and `items` says which failed and why.
#[utoipa::path(post, path = "/api/groups/{id}/assets/bulk", tag = "assets", params(("id" = String, Path)),
    request_body = BulkAssets, security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = BulkAdded), (status = 400, body = ErrorBody), (status = 402, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_assets_bulk(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<GroupId>,
    ApiJson(body): ApiJson<BulkAssets>,
) -> ApiResult<(StatusCode, Json<BulkAdded>)> {
    c.require(Permission::Write)?;
    if body.assets.is_empty() || body.assets.len() > MAX_BULK {
        return Err(ApiError::bad_request(
            "assets",
            format!("assets: must hold 1 to {MAX_BULK} items"),
        ));
    }
    let items: Vec<NewAsset> = body.assets.into_iter().map(Into::into).collect();
    let added = app
        .commands
        .add_assets(&c.meta(), &c.org_id, c.plan, &id, &items)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(BulkAdded {
            added: added.len(),
            items: added,
        }),
    ))
}
