//! Keys: REST API keys (`/api/keys`) and MCP keys (`/api/mcp-keys`), each listed, made and
//! revoked with its own kind only.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PageParams};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use easm_app::KeyOrder;
use easm_domain::{Permission, Role};
use easm_events::{KeyId, KeyKind};
use easm_projections::read::{ApiKeyView, McpKeyView, Page};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A label for people.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    /// `viewer`, `analyst`, `admin` or `owner`; at most the caller's own role.
    #[schema(value_type = crate::schema_types::RoleName, example = "analyst")]
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    pub key_id: String,
    /// The key itself, shown this once.
    pub key: String,
    pub role: String,
    pub name: String,
}

/// API keys of the organization (never the keys themselves).
#[utoipa::path(get, path = "/api/keys", tag = "keys", params(PageParams),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<ApiKeyView>), (status = 403, body = ErrorBody)))]
pub async fn list_keys(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<ApiKeyView>>> {
    c.require(Permission::Administer)?;
    Ok(Json(app.read().keys(&c.org_id, q.resolve()?).await?))
}

/// Create an API key. The answer holds the key once; only its hash is kept.
#[utoipa::path(post, path = "/api/keys", tag = "keys", request_body = CreateKey,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_key(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiJson(body): ApiJson<CreateKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    may_make_key(&c, body.role)?;
    let order = KeyOrder::rest(Some(body.role), &body.name, c.user_id.as_ref());
    let key = app.commands.create_key(&c.meta(), &c.org_id, order).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key_id: key.key_id.into_string(),
            key: key.secret,
            role: body.role.as_str().into(),
            name: body.name.trim().into(),
        }),
    ))
}

/// Revoke an API key. Requests with it are refused from now on.
#[utoipa::path(delete, path = "/api/keys/{id}", tag = "keys", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn revoke_key(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<KeyId>,
) -> ApiResult<StatusCode> {
    c.require(Permission::Administer)?;
    app.commands
        .revoke_key(&c.meta(), &c.org_id, &id, KeyKind::Rest)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Admins make keys, of at most their own role.
fn may_make_key(c: &Caller, role: Role) -> ApiResult<()> {
    c.require(Permission::Administer)?;
    if role > c.role {
        return Err(ApiError::forbidden(
            "a key cannot have a higher role than the key creating it",
        ));
    }
    Ok(())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateMcpKey {
    /// A label for people.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    /// `viewer` (default), `analyst`, `admin` or `owner`; at most the caller's own role.
    #[schema(value_type = Option<crate::schema_types::RoleName>, example = "viewer")]
    pub role: Option<Role>,
    /// Whether the key may use the write tools (`acknowledge_alert`, `update_finding_status`)
    /// its role allows; false by default.
    pub allow_writes: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedMcpKey {
    pub id: String,
    /// The key itself (`mcp_sk_...`), shown this once.
    pub key: String,
    pub name: String,
    pub role: String,
    pub allow_writes: bool,
    pub created_at: String,
}

/// MCP keys of the organization (never the keys themselves). They open only the MCP endpoint.
#[utoipa::path(get, path = "/api/mcp-keys", tag = "keys", params(PageParams),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<McpKeyView>), (status = 403, body = ErrorBody)))]
pub async fn list_mcp_keys(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<McpKeyView>>> {
    c.require(Permission::Administer)?;
    Ok(Json(app.read().mcp_keys(&c.org_id, q.resolve()?).await?))
}

/// Create an MCP key for an AI assistant. The answer holds the key once; only its hash is kept.
#[utoipa::path(post, path = "/api/mcp-keys", tag = "keys", request_body = CreateMcpKey,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = CreatedMcpKey), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_mcp_key(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiJson(body): ApiJson<CreateMcpKey>,
) -> ApiResult<(StatusCode, Json<CreatedMcpKey>)> {
    let role = body.role.unwrap_or(Role::Viewer);
    may_make_key(&c, role)?;
    let order = KeyOrder {
        kind: KeyKind::Mcp,
        role: Some(role),
        name: &body.name,
        user_id: c.user_id.as_ref(),
        allow_writes: body.allow_writes.unwrap_or(false),
    };
    let key = app.commands.create_key(&c.meta(), &c.org_id, order).await?;
    let made = app
        .read()
        .mcp_key(&c.org_id, &key.key_id)
        .await?
        .ok_or_else(|| ApiError::not_found("MCP key"))?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedMcpKey {
            id: made.key.id,
            key: key.secret,
            name: made.key.name,
            role: made.key.role,
            allow_writes: made.allow_writes,
            created_at: made.key.created_at,
        }),
    ))
}

/// Revoke an MCP key: calls with it are refused from now on.
#[utoipa::path(delete, path = "/api/mcp-keys/{id}", tag = "keys", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn revoke_mcp_key(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<KeyId>,
) -> ApiResult<StatusCode> {
    c.require(Permission::Administer)?;
    app.commands
        .revoke_key(&c.meta(), &c.org_id, &id, KeyKind::Mcp)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
