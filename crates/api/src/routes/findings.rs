//! Findings: listed and filtered, one in full, triaged (status, assignee, notes).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{page_request, ApiJson, ApiQuery};
use crate::routes::sarif;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::Response;
use axum::{Extension, Json};
use easm_app::streams::finding_stream;
use easm_domain::Permission;
use easm_events::{FindingId, FindingStatus, Severity};
use easm_projections::read::{
    FindingCounts, FindingCursor, FindingFilter, FindingSort, FindingView, Page,
};
use easm_projections::ReadModels;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A query of findings: the filters every one takes, and the parameters of its own (the list's
/// page and moment, the export's format), so that each states only what it reads.
macro_rules! finding_query {
    ($(#[$doc:meta])* $name:ident { $($own:tt)* }) => {
        #[derive(Deserialize, IntoParams, Default)]
        #[into_params(parameter_in = Query)]
        $(#[$doc])*
        pub struct $name {
            /// One or more of critical, high, medium, low, info, comma-separated.
            #[param(pattern = "^(critical|high|medium|low|info)(,(critical|high|medium|low|info))*$")]
            pub severity: Option<String>,
            #[param(value_type = Option<crate::schema_types::FindingStatusName>)]
            pub status: Option<String>,
            pub asset_id: Option<String>,
            pub scan_job_id: Option<String>,
            #[serde(rename = "templateId")]
            #[param(rename = "templateId")]
            pub template_id: Option<String>,
            /// Last detected at or after this time (RFC 3339, or a date for its start UTC).
            #[param(value_type = Option<crate::schema_types::Moment>)]
            pub since: Option<String>,
            /// Last detected at or before this time (RFC 3339, or a date for its start UTC).
            #[param(value_type = Option<crate::schema_types::Moment>)]
            pub until: Option<String>,
            /// Case-insensitive substring of title, templateId or matchedAt.
            pub q: Option<String>,
            /// lastDetected (default, newest first), firstDetected or severity.
            #[param(value_type = Option<crate::schema_types::FindingSortName>)]
            pub sort: Option<String>,
            $($own)*
        }

        impl $name {
            pub fn filter(self) -> ApiResult<FindingFilter> {
                filter_of(FilterParams {
                    severity: self.severity,
                    status: self.status,
                    asset_id: self.asset_id,
                    scan_job_id: self.scan_job_id,
                    template_id: self.template_id,
                    since: self.since,
                    until: self.until,
                    q: self.q,
                    sort: self.sort,
                })
            }
        }
    };
}

finding_query!(
    /// The parameters of a page of findings.
    FindingQuery {
        /// RFC 3339: the findings as they were at that moment, replayed from the log.
        #[serde(rename = "asOf")]
        #[param(rename = "asOf", value_type = Option<crate::schema_types::Moment>)]
        pub as_of: Option<String>,
        #[param(minimum = 1, maximum = 9223372036854775807_i64)]
        pub page: Option<i64>,
        /// The `nextCursor` of the page before: pages that stay in place while findings are
        /// added, at the same cost at any depth. It carries the order of its pages: `page` and
        /// `sort` are not read with it.
        #[param(format = "x-easm-cursor")]
        pub after: Option<String>,
        #[serde(rename = "perPage")]
        #[param(rename = "perPage")]
        #[param(minimum = 1, maximum = 9223372036854775807_i64)]
        pub per_page: Option<i64>,
    }
);

finding_query!(
    /// The parameters of an export of findings: every one under the filters, as they are now
    /// (`asOf` and pages are the list's: refused here).
    #[serde(deny_unknown_fields)]
    FindingExportQuery {
        /// csv (default, RFC 4180), json (an array), ndjson or sarif (2.1.0).
        #[param(value_type = Option<crate::schema_types::ExportFormatName>)]
        pub format: Option<String>,
    }
);

finding_query!(
    /// The filters of a count of findings (pages and moments are the list's: refused here).
    #[serde(deny_unknown_fields)]
    FindingCountQuery {}
);

/// The filters as a query gives them, before they are checked.
struct FilterParams {
    severity: Option<String>,
    status: Option<String>,
    asset_id: Option<String>,
    scan_job_id: Option<String>,
    template_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    q: Option<String>,
    sort: Option<String>,
}

/// A time parameter (`since`, `until`, `asOf`) as epoch microseconds.
pub(crate) fn time(field: &str, v: &Option<String>) -> ApiResult<Option<i64>> {
    v.as_deref()
        .map(|s| {
            easm_events::parse_timestamp(s)
                .map(|t| t.timestamp_micros())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        field,
                        format!("{field}: must be an RFC 3339 time or a date (YYYY-MM-DD)"),
                    )
                })
        })
        .transpose()
}

fn filter_of(f: FilterParams) -> ApiResult<FindingFilter> {
    let severities: Vec<String> = f
        .severity
        .as_deref()
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    if let Some(bad) = severities.iter().find(|s| Severity::parse(s).is_none()) {
        return Err(ApiError::bad_request(
            "severity",
            format!("severity: '{bad}' is not one of critical, high, medium, low, info"),
        ));
    }
    if let Some(s) = &f.status {
        if FindingStatus::parse(s).is_none() {
            return Err(ApiError::bad_request(
                "status",
                "status: must be open, acknowledged, resolved or ignored",
            ));
        }
    }
    let sort = match f.sort.as_deref() {
        None => FindingSort::default(),
        Some(s) => FindingSort::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "sort",
                format!("sort: must be {}", FindingSort::NAMES.join(", ")),
            )
        })?,
    };
    Ok(FindingFilter {
        severities,
        since: time("since", &f.since)?,
        until: time("until", &f.until)?,
        status: f.status,
        asset_id: f.asset_id,
        scan_job_id: f.scan_job_id,
        template_id: f.template_id,
        q: f.q,
        sort,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriageBody {
    #[schema(value_type = Option<crate::schema_types::FindingStatusName>)]
    pub status: Option<String>,
    /// Who handles it; an empty string clears it.
    pub assignee: Option<String>,
    pub notes: Option<String>,
}

/// A page of findings under the filters.
/// The read models now, or replayed as they were at `asOf`.
pub(crate) async fn read_as_of(
    app: &AppState,
    c: &Caller,
    as_of: &Option<String>,
) -> ApiResult<ReadModels> {
    Ok(match time("asOf", as_of)? {
        Some(at) => app.snapshots.at(app.log(), &c.org_id, at).await?,
        None => app.read().clone(),
    })
}

pub async fn page(app: &AppState, c: &Caller, mut q: FindingQuery) -> ApiResult<Page<FindingView>> {
    let p = page_request(q.page, q.per_page)?;
    let read = read_as_of(app, c, &q.as_of).await?;
    let after = q
        .after
        .take()
        .map(|text| {
            FindingCursor::parse(&text).ok_or_else(|| {
                ApiError::bad_request("after", "after: not a cursor this API answered")
            })
        })
        .transpose()?;
    let mut filter = q.filter()?;
    // A cursor carries its page's order.
    if let Some(cursor) = &after {
        filter.sort = cursor.sort();
    }
    Ok(read.findings(&c.org_id, &filter, p, after.as_ref()).await?)
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

/// How many findings the filters select: in all, per severity and per status.
#[utoipa::path(get, path = "/api/findings/count", tag = "findings", params(FindingCountQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = FindingCounts), (status = 400, body = ErrorBody)))]
pub async fn count_findings(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(q): ApiQuery<FindingCountQuery>,
) -> ApiResult<Json<FindingCounts>> {
    c.require(Permission::Read)?;
    let filter = q.filter()?;
    Ok(Json(app.read().finding_counts(&c.org_id, &filter).await?))
}

async fn view(app: &AppState, c: &Caller, id: &FindingId) -> ApiResult<FindingView> {
    app.read()
        .finding(&c.org_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("finding"))
}

/// One change of a finding's status, read from the log.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    pub at: String,
    /// Absent for the first detection.
    pub from: Option<String>,
    pub to: String,
    pub notes: Option<String>,
    /// api_key, user or system (automatic changes).
    pub actor_kind: String,
    pub actor_id: String,
    /// The scan job whose detection or completion caused it, if any.
    pub scan_job_id: Option<String>,
    /// The discovery job whose detection or completion caused it, if any.
    pub discovery_job_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindingDetail {
    #[serde(flatten)]
    pub finding: FindingView,
    pub status_history: Vec<StatusChange>,
}

/// The status changes among a finding's events, oldest first.
fn status_history(events: &[easm_events::RecordedEvent]) -> ApiResult<Vec<StatusChange>> {
    use easm_events::Event;
    let mut out = vec![];
    let mut current: Option<FindingStatus> = None;
    for r in events {
        let (to, notes, (job, discovery)) = match easm_store::typed(r)? {
            Event::FindingNew(e) => (
                FindingStatus::Open,
                None,
                (e.scan_job_id, e.discovery_job_id),
            ),
            Event::FindingReopened(e) => (
                FindingStatus::Open,
                e.notes,
                (e.scan_job_id, e.discovery_job_id),
            ),
            Event::FindingResolved(e) => (
                FindingStatus::Resolved,
                e.notes,
                (e.scan_job_id, e.discovery_job_id),
            ),
            Event::FindingStatusChanged(e) => (e.to, e.notes, (None, None)),
            _ => continue,
        };
        out.push(StatusChange {
            at: easm_events::format_timestamp(&r.occurred_at),
            from: current.replace(to).map(|s| s.as_str().into()),
            to: to.as_str().into(),
            notes,
            actor_kind: r.actor.kind.as_str().into(),
            actor_id: r.actor.id.clone(),
            scan_job_id: job.map(String::from),
            discovery_job_id: discovery.map(String::from),
        });
    }
    Ok(out)
}

/// One finding in full, with its status history from the log.
#[utoipa::path(get, path = "/api/findings/{id}", tag = "findings", params(("id" = String, Path)),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = FindingDetail), (status = 404, body = ErrorBody)))]
pub async fn get_finding(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<FindingId>,
) -> ApiResult<Json<FindingDetail>> {
    c.require(Permission::Read)?;
    let finding = view(&app, &c, &id).await?;
    let (events, _) = app
        .log()
        .stream_page(&c.org_id, &finding_stream(&id), 0, i64::MAX)
        .await?;
    Ok(Json(FindingDetail {
        finding,
        status_history: status_history(&events)?,
    }))
}

/// Triage: status (resolved emits finding.resolved, resolved to open finding.reopened, other
/// changes finding.status_changed), assignee, notes.
#[utoipa::path(patch, path = "/api/findings/{id}", tag = "findings", params(("id" = String, Path)),
    request_body = TriageBody, security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = FindingView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn triage_finding(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<FindingId>,
    ApiJson(body): ApiJson<TriageBody>,
) -> ApiResult<Json<FindingView>> {
    c.require(Permission::Write)?;
    app.commands
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkStatusBody {
    /// 1 to 500 finding ids.
    #[schema(min_items = 1, max_items = 500)]
    pub ids: Vec<String>,
    #[schema(value_type = crate::schema_types::FindingStatusName)]
    pub status: String,
    #[schema(max_length = 4096)]
    pub notes: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BulkStatusDone {
    /// Findings whose status changed (the others had it already).
    pub updated: usize,
}

/// Set the status of up to 500 findings, all or nothing (an unknown id fails the whole request
/// with `items` naming it); one event per finding.
#[utoipa::path(post, path = "/api/findings/bulk-status", tag = "findings",
    request_body = BulkStatusBody, security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = BulkStatusDone), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn bulk_status(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiJson(body): ApiJson<BulkStatusBody>,
) -> ApiResult<Json<BulkStatusDone>> {
    c.require(Permission::Write)?;
    if body.ids.is_empty() || body.ids.len() > 500 {
        return Err(ApiError::bad_request(
            "ids",
            "ids: must hold 1 to 500 finding ids",
        ));
    }
    if FindingStatus::parse(&body.status).is_none() {
        return Err(ApiError::bad_request(
            "status",
            "status: must be open, acknowledged, resolved or ignored",
        ));
    }
    let updated = app
        .commands
        .bulk_finding_status(
            &c.meta(),
            &c.org_id,
            &body.ids.iter().map(FindingId::new).collect::<Vec<_>>(),
            &body.status,
            body.notes.as_deref(),
        )
        .await?;
    Ok(Json(BulkStatusDone { updated }))
}

/// Rows read per query while exporting.
const EXPORT_PAGE: i64 = 500;

const CSV_HEADER: &str = "id,assetId,templateId,title,severity,status,category,matchedAt,cve,cwe,cvssScore,source,assignee,detectionCount,firstDetected,lastDetected\r\n";

/// RFC 4180: quote a field holding a comma, quote, CR or LF, doubling quotes. First, a field
/// that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab or CR: titles
/// and URLs come from imported scanner output) is prefixed with `'`, which shows it as text.
fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    if v.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

fn csv_row(f: &FindingView) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = [
        f.id.clone(),
        f.asset_id.clone(),
        f.template_id.clone(),
        f.title.clone(),
        f.severity.clone(),
        f.status.clone(),
        f.category.clone(),
        f.matched_at.clone(),
        opt(&f.cve),
        opt(&f.cwe),
        f.cvss_score.map(|s| s.to_string()).unwrap_or_default(),
        f.source.clone(),
        opt(&f.assignee),
        f.detection_count.to_string(),
        f.first_detected.clone(),
        f.last_detected.clone(),
    ];
    let mut line = fields
        .iter()
        .map(|v| csv_field(v))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// Every finding under the filters, not paginated, streamed page by page as it is read, as CSV,
/// JSON, NDJSON or SARIF 2.1.0.
#[utoipa::path(get, path = "/api/findings/export", tag = "findings", params(FindingExportQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "text/csv, application/json, application/x-ndjson or application/sarif+json"), (status = 400, body = ErrorBody)))]
pub async fn export_findings(
    State(app): State<AppState>,
    Extension(c): Extension<Caller>,
    ApiQuery(mut q): ApiQuery<FindingExportQuery>,
) -> ApiResult<Response> {
    c.require(Permission::Read)?;
    let format = match q.format.take().as_deref().unwrap_or("csv") {
        "csv" => Export::Csv,
        "json" => Export::Json,
        "ndjson" => Export::Ndjson,
        "sarif" => Export::Sarif,
        _ => {
            return Err(ApiError::bad_request(
                "format",
                "format: must be csv, json, ndjson or sarif",
            ))
        }
    };
    let filter = q.filter()?;
    let read = app.read().clone();
    let org = c.org_id.clone();
    // State: where the next page starts (None once the last one went out: `Some(None)` is the
    // first), and the SARIF rules met.
    let pages = futures_util::stream::unfold(
        (Some(None), sarif::Rules::default()),
        move |(next, mut rules)| {
            let (read, org, filter) = (read.clone(), org.clone(), filter.clone());
            async move {
                let after: Option<FindingCursor> = next?;
                let first = after.is_none();
                let run = read
                    .finding_run(&org, &filter, after.as_ref(), 0, EXPORT_PAGE)
                    .await;
                let (items, next) = match run {
                    Ok(found) => found,
                    Err(e) => {
                        let failed = Err(std::io::Error::other(e.to_string()));
                        return Some((failed, (None, rules)));
                    }
                };
                let mut chunk = String::new();
                if first {
                    chunk.push_str(format.head());
                }
                for (i, f) in items.iter().enumerate() {
                    chunk.push_str(&format.item(f, first && i == 0, &mut rules));
                }
                if next.is_none() {
                    chunk.push_str(&format.tail(&rules));
                }
                Some((Ok::<_, std::io::Error>(chunk), (next.map(Some), rules)))
            }
        },
    );
    Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .body(Body::from_stream(pages))
        .map_err(|_| ApiError::internal())
}

#[derive(Clone, Copy)]
enum Export {
    Csv,
    Json,
    Ndjson,
    /// SARIF 2.1.0, for code-scanning dashboards: one result per finding.
    Sarif,
}

impl Export {
    fn content_type(self) -> &'static str {
        match self {
            Export::Csv => "text/csv; charset=utf-8",
            Export::Json => "application/json",
            Export::Ndjson => "application/x-ndjson",
            Export::Sarif => "application/sarif+json",
        }
    }

    fn head(self) -> &'static str {
        match self {
            Export::Csv => CSV_HEADER,
            Export::Json => "[",
            Export::Ndjson => "",
            Export::Sarif => sarif::HEAD,
        }
    }

    fn tail(self, rules: &sarif::Rules) -> String {
        match self {
            Export::Json => "]".into(),
            Export::Sarif => rules.tail(),
            Export::Csv | Export::Ndjson => String::new(),
        }
    }

    fn item(self, f: &FindingView, first: bool, rules: &mut sarif::Rules) -> String {
        let comma = if first { "" } else { "," };
        match self {
            Export::Csv => csv_row(f),
            Export::Json => format!("{comma}{}", serde_json::to_string(f).unwrap_or_default()),
            Export::Ndjson => format!("{}\n", serde_json::to_string(f).unwrap_or_default()),
            Export::Sarif => format!("{comma}{}", rules.result(f)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_as_rfc_4180_says() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn csv_fields_a_spreadsheet_would_run_are_text() {
        assert_eq!(csv_field("=1+1"), "'=1+1");
        assert_eq!(
            csv_field("=HYPERLINK(\"http://x\",\"a\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"a\"\")\""
        );
        assert_eq!(csv_field("+cmd"), "'+cmd");
        assert_eq!(csv_field("-2+3"), "'-2+3");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("\tx"), "'\tx");
        assert_eq!(csv_field("\rx"), "\"'\rx\"");
        assert_eq!(csv_field("a=b"), "a=b");
        assert_eq!(csv_field("9.8"), "9.8");
    }
}
