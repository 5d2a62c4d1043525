//! The organization at a glance.

use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::AppState;
use axum::extract::State;
use axum::{Extension, Json};
use easm_domain::Permission;
use easm_projections::read::DashboardStats;

/// Counts of assets, findings, recent scan and discovery jobs, monitors and alerts.
#[utoipa::path(get, path = "/api/dashboard", tag = "organization",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = DashboardStats), (status = 401, body = ErrorBody)))]
pub async fn dashboard(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<DashboardStats>> {
    c.require(Permission::Read)?;
    Ok(Json(app.read().dashboard(&c.org_id).await?))
}
