use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiQuery, PageParams};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use easm_domain::{Limits, Permission};
use easm_projections::read::{Page, UserView};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgInfo {
    pub id: String,
    pub name: String,
    pub plan: String,
    pub created_at: String,
    #[schema(value_type = Object)]
    pub limits: Limits,
    pub usage: Usage,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub assets: u64,
}

/// The caller's organization: plan, limits and usage.
#[utoipa::path(get, path = "/api/org", tag = "organization",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = OrgInfo), (status = 401, body = ErrorBody)))]
pub async fn get_org(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<OrgInfo>> {
    c.require(Permission::Read)?;
    let org = app
        .read()
        .org(&c.org_id)
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    let assets = app
        .log()
        .count_reservations(&c.org_id, easm_app::streams::ASSET_VALUES)
        .await?;
    Ok(Json(OrgInfo {
        id: org.id,
        name: org.name,
        plan: org.plan,
        created_at: org.created_at,
        limits: Limits::of(c.plan),
        usage: Usage { assets },
    }))
}

fn not_with_api_key() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "API_KEY_NOT_ALLOWED",
        "account actions (members, roles, plan, deleting the organization) are not callable with API keys",
    )
}

/// The organization's members and their roles. Members are managed with `easm admin add-user`,
/// `set-role` and `remove-user`: account actions are not callable with API keys.
#[utoipa::path(get, path = "/api/org/members", tag = "organization", params(PageParams),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<UserView>), (status = 403, body = ErrorBody)))]
pub async fn list_members(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<UserView>>> {
    c.require(Permission::Administer)?;
    Ok(Json(app.read().users(&c.org_id, q.resolve()?).await?))
}

/// Change a member's role: an account action, never callable with an API key.
#[utoipa::path(patch, path = "/api/org/members/{id}", tag = "organization",
    params(("id" = String, Path)), security(("api_key" = []), ("bearer" = [])),
    responses((status = 403, description = "API_KEY_NOT_ALLOWED", body = ErrorBody)))]
pub async fn change_member_role(Extension(_c): Extension<Caller>) -> ApiError {
    not_with_api_key()
}

/// Remove a member: an account action, never callable with an API key.
#[utoipa::path(delete, path = "/api/org/members/{id}", tag = "organization",
    params(("id" = String, Path)), security(("api_key" = []), ("bearer" = [])),
    responses((status = 403, description = "API_KEY_NOT_ALLOWED", body = ErrorBody)))]
pub async fn remove_member(Extension(_c): Extension<Caller>) -> ApiError {
    not_with_api_key()
}

/// Invite a member: an account action, never callable with an API key.
#[utoipa::path(post, path = "/api/org/members", tag = "organization",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 403, description = "API_KEY_NOT_ALLOWED", body = ErrorBody)))]
pub async fn invite_member(Extension(_c): Extension<Caller>) -> ApiError {
    not_with_api_key()
}

/// Change the plan: an account action, never callable with an API key.
#[utoipa::path(patch, path = "/api/org/plan", tag = "organization",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 403, description = "API_KEY_NOT_ALLOWED", body = ErrorBody)))]
pub async fn change_plan(Extension(_c): Extension<Caller>) -> ApiError {
    not_with_api_key()
}

/// Delete the organization: an account action, never callable with an API key.
#[utoipa::path(delete, path = "/api/org", tag = "organization",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 403, description = "API_KEY_NOT_ALLOWED", body = ErrorBody)))]
pub async fn delete_org(Extension(_c): Extension<Caller>) -> ApiError {
    not_with_api_key()
}
