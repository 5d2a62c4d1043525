//! Findings: listed and filtered, one in full, triaged (status, assignee, notes).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{page_request, ApiJson, ApiQuery};
use crate::AppState;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use easm_domain::{Permission, SEVERITIES, STATUSES};
use easm_projections::read::{FindingFilter, FindingView, Page};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct FindingQuery {
    /// One or more of critical, high, medium, low, info, comma-separated.
    pub severity: Option<String>,
    /// open, acknowledged, resolved or ignored.
    pub status: Option<String>,
    pub asset_id: Option<String>,
    pub scan_job_id: Option<String>,
    #[serde(rename = "templateId")]
    #[param(rename = "templateId")]
    pub template_id: Option<String>,
    /// Last detected at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Last detected at or before this RFC 3339 time.
    pub until: Option<String>,
    /// Case-insensitive substring of title, templateId or matchedAt.
    pub q: Option<String>,
    /// lastDetected (default, newest first), firstDetected or severity.
    pub sort: Option<String>,
    pub page: Option<i64>,
    #[serde(rename = "perPage")]
    #[param(rename = "perPage")]
    pub per_page: Option<i64>,
}

fn time(field: &str, v: &Option<String>) -> ApiResult<Option<i64>> {
    v.as_deref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_micros())
                .map_err(|_| {
                    ApiError::bad_request(field, format!("{field}: must be an RFC 3339 time"))
                })
        })
        .transpose()
}

impl FindingQuery {
    pub fn filter(self) -> ApiResult<FindingFilter> {
        let severities: Vec<String> = self
            .severity
            .as_deref()
            .map(|s| {
                s.split(',')
                    .map(|x| x.trim().to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(bad) = severities
            .iter()
            .find(|s| !SEVERITIES.contains(&s.as_str()))
        {
            return Err(ApiError::bad_request(
                "severity",
                format!("severity: '{bad}' is not one of critical, high, medium, low, info"),
            ));
        }
        if let Some(s) = &self.status {
            if !STATUSES.contains(&s.as_str()) {
                return Err(ApiError::bad_request(
                    "status",
                    "status: must be open, acknowledged, resolved or ignored",
                ));
            }
        }
        if let Some(s) = &self.sort {
            if !["lastDetected", "firstDetected", "severity"].contains(&s.as_str()) {
                return Err(ApiError::bad_request(
                    "sort",
                    "sort: must be lastDetected, firstDetected or severity",
                ));
            }
        }
        Ok(FindingFilter {
            severities,
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            status: self.status,
            asset_id: self.asset_id,
            scan_job_id: self.scan_job_id,
            template_id: self.template_id,
            q: self.q,
            sort: self.sort,
        })
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriageBody {
    /// open, acknowledged, resolved or ignored.
    pub status: Option<String>,
    /// Who handles it; an empty string clears it.
    pub assignee: Option<String>,
    pub notes: Option<String>,
}

/// A page of findings under the filters.
pub async fn page(app: &AppState, c: &Caller, q: FindingQuery) -> ApiResult<Page<FindingView>> {
    let p = page_request(q.page, q.per_page)?;
    let filter = q.filter()?;
    Ok(app.service.read().findings(&c.org_id, &filter, p).await?)
}

/// Findings, newest detection first unless sorted otherwise.
#[utoipa::path(get, path = "/api/findings", tag = "findings", params(FindingQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<FindingView>), (status = 400, body = ErrorBody)))]
pub async fn list_findings(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<FindingQuery>,
) -> ApiResult<Json<Page<FindingView>>> {
    c.require(Permission::Read)?;
    Ok(Json(page(&app, &c, q).await?))
}

async fn view(app: &AppState, c: &Caller, id: &str) -> ApiResult<FindingView> {
    app.service
        .read()
        .finding(&c.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("finding"))
}

/// One finding in full.
#[utoipa::path(get, path = "/api/findings/{id}", tag = "findings", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = FindingView), (status = 404, body = ErrorBody)))]
pub async fn get_finding(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<FindingView>> {
    c.require(Permission::Read)?;
    Ok(Json(view(&app, &c, &id).await?))
}

/// Triage: status (resolved emits finding.resolved, resolved to open finding.reopened, other
/// changes finding.status_changed), assignee, notes.
#[utoipa::path(patch, path = "/api/findings/{id}", tag = "findings", params(("id" = String, Path)),
    request_body = TriageBody, security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = FindingView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn triage_finding(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TriageBody>,
) -> ApiResult<Json<FindingView>> {
    c.require(Permission::Write)?;
    view(&app, &c, &id).await?;
    app.service
        .triage_finding(
            &c.meta(),
            &c.org_id,
            &id,
            body.status.as_deref(),
            body.assignee.as_deref(),
            body.notes.as_deref(),
        )
        .await?;
    Ok(Json(view(&app, &c, &id).await?))
}
