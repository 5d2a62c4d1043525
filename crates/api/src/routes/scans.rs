//! Scan jobs: requested here, run by scan workers, followed through their events.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{page_request, ApiJson, ApiQuery};
use crate::routes::findings::{self, FindingQuery};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use easm_app::{CommandError, Imported, ScanRequest};
use easm_domain::Permission;
use easm_domain::{DomainError, NucleiReader, Parsed};
use easm_events::{AssetId, Detection, ScanJobId};
use easm_projections::read::{FindingView, Page, ScanJobFilter, ScanJobView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanJobBody {
    /// The asset to scan (`assetId` is accepted too).
    #[serde(default, deserialize_with = "super::id_string")]
    #[schema(value_type = Option<crate::schema_types::IdValue>)]
    pub asset_id: Option<String>,
    #[serde(default, rename = "assetId", deserialize_with = "super::id_string")]
    #[schema(value_type = Option<crate::schema_types::IdValue>)]
    pub asset_id_camel: Option<String>,
    /// `quick` (top 20 ports), `standard` (top 100) or `deep` (top 1000).
    #[schema(value_type = Option<crate::schema_types::ProfileName>)]
    pub profile: Option<String>,
    /// Ports to probe instead of the profile's list (1 to 1000 of them).
    #[schema(min_items = 1, max_items = 1000, value_type = Option<Vec<crate::schema_types::Port>>)]
    pub ports: Option<Vec<i64>>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScanJobQuery {
    #[param(value_type = Option<crate::schema_types::JobStatusName>)]
    pub status: Option<String>,
    pub asset_id: Option<String>,
    #[param(value_type = Option<crate::schema_types::ProfileName>)]
    pub profile: Option<String>,
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub page: Option<i64>,
    #[serde(rename = "perPage")]
    #[param(rename = "perPage")]
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub per_page: Option<i64>,
}

async fn view(app: &AppState, c: &Caller, id: &ScanJobId) -> ApiResult<ScanJobView> {
    app.read()
        .scan_job(&c.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("scan job"))
}

/// Queue a scan of an asset. 409 while a scan of the same asset and profile is queued or
/// running (`existingId` names it); 402 past the plan's scans per month.
#[utoipa::path(post, path = "/api/scan-jobs", tag = "scans", request_body = ScanJobBody,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = ScanJobView), (status = 400, body = ErrorBody), (status = 402, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_scan_job(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiJson(body): ApiJson<ScanJobBody>,
) -> ApiResult<(StatusCode, Json<ScanJobView>)> {
    c.require(Permission::Write)?;
    let asset_id = body
        .asset_id
        .or(body.asset_id_camel)
        .map(AssetId::new)
        .ok_or_else(|| ApiError::bad_request("asset_id", "asset_id: is required"))?;
    let profile = body
        .profile
        .ok_or_else(|| ApiError::bad_request("profile", "profile: is required"))?;
    let id = app
        .commands
        .request_scan(
            &c.meta(),
            &c.org_id,
            c.plan,
            &ScanRequest {
                asset_id: &asset_id,
                profile: &profile,
                ports: body.ports.as_deref(),
                rerun_of: None,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view(&app, &c, &id).await?)))
}

/// Scan jobs, newest first.
#[utoipa::path(get, path = "/api/scan-jobs", tag = "scans", params(ScanJobQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<ScanJobView>), (status = 400, body = ErrorBody)))]
pub async fn list_scan_jobs(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<ScanJobQuery>,
) -> ApiResult<Json<Page<ScanJobView>>> {
    c.require(Permission::Read)?;
    let p = page_request(q.page, q.per_page)?;
    check_job_status(q.status.as_deref())?;
    let filter = ScanJobFilter {
        status: q.status,
        asset_id: q.asset_id,
        profile: q
            .profile
            .as_deref()
            .map(easm_domain::validate_profile)
            .transpose()?,
    };
    Ok(Json(app.read().scan_jobs(&c.org_id, &filter, p).await?))
}

/// A job status filter names a status (scan and discovery jobs alike).
pub(super) fn check_job_status(status: Option<&str>) -> ApiResult<()> {
    match status {
        Some(s) if easm_domain::JobStatus::parse(s).is_none() => Err(ApiError::bad_request(
            "status",
            "status: must be queued, running, completed, failed or cancelled",
        )),
        _ => Ok(()),
    }
}

/// One scan job: status, progress, times, counts by severity, the error if it failed.
#[utoipa::path(get, path = "/api/scan-jobs/{id}", tag = "scans", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ScanJobView), (status = 404, body = ErrorBody)))]
pub async fn get_scan_job(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<ScanJobId>,
) -> ApiResult<Json<ScanJobView>> {
    c.require(Permission::Read)?;
    Ok(Json(view(&app, &c, &id).await?))
}

/// Run a job again: a new job with the same asset, profile and ports.
#[utoipa::path(post, path = "/api/scan-jobs/{id}/run", tag = "scans", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = ScanJobView), (status = 402, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rerun_scan_job(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<ScanJobId>,
) -> ApiResult<(StatusCode, Json<ScanJobView>)> {
    c.require(Permission::Write)?;
    let new = app
        .commands
        .rerun_scan(&c.meta(), &c.org_id, c.plan, &id)
        .await?;
    Ok((StatusCode::CREATED, Json(view(&app, &c, &new).await?)))
}

/// Cancel a queued or running job (409 once it ended).
#[utoipa::path(post, path = "/api/scan-jobs/{id}/cancel", tag = "scans", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ScanJobView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel_scan_job(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<ScanJobId>,
) -> ApiResult<Json<ScanJobView>> {
    c.require(Permission::Write)?;
    app.commands.cancel_scan(&c.meta(), &c.org_id, &id).await?;
    Ok(Json(view(&app, &c, &id).await?))
}

/// Delete a job (cancelled first if it still runs): it leaves the API; the log keeps its history.
#[utoipa::path(delete, path = "/api/scan-jobs/{id}", tag = "scans", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_scan_job(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<ScanJobId>,
) -> ApiResult<StatusCode> {
    c.require(Permission::Administer)?;
    app.commands.delete_scan(&c.meta(), &c.org_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct LineError {
    /// 1-based line (or array position).
    pub line: usize,
    pub error: String,
}

#[derive(Serialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    /// Results read (matcher-status false skipped).
    pub imported: usize,
    pub new: usize,
    pub redetected: usize,
    pub reopened: usize,
    /// Already recorded for this scan job.
    pub unchanged: usize,
    /// Lines that could not be read; the others were imported.
    pub errors: Vec<LineError>,
}

/// Largest results body: it is read as it arrives, never held whole (but for the array form).
pub const MAX_RESULTS: usize = 256 << 20;
/// Detections recorded per batch while the body streams in: large enough that a commit's fixed
/// cost (the index pages it rewrites) is shared by many findings, small enough that two batches
/// in memory stay a few tens of MiB.
const IMPORT_BATCH: usize = 2000;

/// Import results of an external scanner (nuclei `-jsonl` output, or a JSON array of the same
/// objects) into findings under this scan job, recorded in batches as the body streams in (one
/// batch is recorded while the next is read). A bad line is reported by number and does not stop
/// the others; sending the same results again records nothing twice.
#[utoipa::path(post, path = "/api/scan-jobs/{id}/results", tag = "scans", params(("id" = String, Path)),
    request_body(content = String, content_type = "application/x-ndjson"),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = ImportReport), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn import_results(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<ScanJobId>,
    body: axum::body::Body,
) -> ApiResult<Json<ImportReport>> {
    use futures_util::StreamExt;
    c.require(Permission::Write)?;
    if app.read().scan_job(&c.org_id, &id).await?.is_none() {
        return Err(DomainError::NotFound {
            resource: "scan job",
        }
        .into());
    }
    let mut report = ImportReport::default();
    let mut reader = NucleiReader::default();
    let mut batch = vec![];
    let mut recording = Recording::default();
    let mut size = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                recording.settle(&mut report).await?;
                return Err(ApiError::bad_request(
                    "body",
                    format!("the body could not be read: {e}"),
                ));
            }
        };
        size += chunk.len();
        if size > MAX_RESULTS {
            recording.settle(&mut report).await?;
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!(
                    "results are limited to {} MiB per request; the batches read before were recorded",
                    MAX_RESULTS >> 20
                ),
            ));
        }
        sort(reader.push(&chunk), &mut batch, &mut report);
        if batch.len() >= IMPORT_BATCH {
            recording.settle(&mut report).await?;
            recording.start(&app, &c, &id, std::mem::take(&mut batch));
        }
    }
    sort(reader.finish(), &mut batch, &mut report);
    recording.settle(&mut report).await?;
    recording.start(&app, &c, &id, batch);
    recording.settle(&mut report).await?;
    Ok(Json(report))
}

fn sort(parsed: Parsed, batch: &mut Vec<Detection>, report: &mut ImportReport) {
    for (line, r) in parsed {
        match r {
            Ok(d) => batch.push(d),
            Err(error) => report.errors.push(LineError { line, error }),
        }
    }
}

/// The batch being recorded, in a task of its own so that the body is read on meanwhile.
#[derive(Default)]
struct Recording(Option<tokio::task::JoinHandle<(usize, Result<Imported, CommandError>)>>);

impl Recording {
    fn start(&mut self, app: &AppState, c: &Caller, id: &ScanJobId, batch: Vec<Detection>) {
        let (commands, meta, org_id, id) =
            (app.commands.clone(), c.meta(), c.org_id.clone(), id.clone());
        self.0 = Some(tokio::spawn(async move {
            let outcome = commands.import_results(&meta, &org_id, &id, &batch).await;
            (batch.len(), outcome)
        }));
    }

    /// Wait for the batch being recorded, and count it in `report`.
    async fn settle(&mut self, report: &mut ImportReport) -> ApiResult<()> {
        let Some(task) = self.0.take() else {
            return Ok(());
        };
        let (read, outcome) = task.await.map_err(|e| {
            tracing::error!(error = %e, "an import batch's task ended without an answer");
            ApiError::internal()
        })?;
        let outcome = outcome?;
        report.imported += read;
        report.new += outcome.new;
        report.redetected += outcome.redetected;
        report.reopened += outcome.reopened;
        report.unchanged += outcome.unchanged;
        Ok(())
    }
}

/// The findings a scan job detected (the filters of GET /api/findings apply).
#[utoipa::path(get, path = "/api/scan-jobs/{id}/findings", tag = "scans", params(("id" = String, Path), FindingQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<FindingView>), (status = 404, body = ErrorBody)))]
pub async fn scan_job_findings(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<ScanJobId>,
    ApiQuery(mut q): ApiQuery<FindingQuery>,
) -> ApiResult<Json<Page<FindingView>>> {
    c.require(Permission::Read)?;
    view(&app, &c, &id).await?;
    q.scan_job_id = Some(id.into_string());
    Ok(Json(findings::page(&app, &c, q).await?))
}
