use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, PageParams};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use easm_domain::{Permission, Role};
use easm_events::KeyId;
use easm_projections::read::{ApiKeyView, Page};
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
    c.require(Permission::Administer)?;
    if body.role > c.role {
        return Err(ApiError::forbidden(
            "a key cannot have a higher role than the key creating it",
        ));
    }
    let key = app
        .commands
        .create_key(
            &c.meta(),
            &c.org_id,
            Some(body.role),
            &body.name,
            c.user_id.as_ref(),
        )
        .await?;
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
    app.commands.revoke_key(&c.meta(), &c.org_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
