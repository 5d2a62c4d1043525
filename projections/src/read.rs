//! Queries over the read models, answering in the API's JSON shapes. Each read model's queries
//! live with it in `models/`; this holds what they share, and re-exports their shapes.

pub use crate::models::alerts::{AlertFilter, AlertView};
pub use crate::models::assets::{added_assets, AssetFilter, AssetRelated, AssetView};
pub use crate::models::dashboard::{AssetCounts, DashboardStats, MonitorCounts, RecentJobs};
pub use crate::models::discovery::{DiscoveryJobFilter, DiscoveryJobView, SubdomainView};
pub use crate::models::findings::{
    FindingCounts, FindingCursor, FindingFilter, FindingSort, FindingView, TOTAL_CAP,
};
pub use crate::models::groups::{GroupSummary, GroupView, RecentScans};
pub use crate::models::keys::{ApiKeyView, KeyAuth, McpKeyView};
pub use crate::models::monitors::{DueMonitor, MonitorView, ScanScheduleView};
pub use crate::models::orgs::OrgView;
pub use crate::models::scan_jobs::{ScanJobFilter, ScanJobView};
pub use crate::models::users::UserView;
pub use crate::models::webhooks::{Endpoint, FilterView, TlsView, WebhookView};

use easm_events::{format_timestamp, from_micros, OrgId};
use easm_store::{AnyRow, Db, Filter, Row, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub(crate) fn iso(us: i64) -> String {
    format_timestamp(&from_micros(us))
}

/// A page of a list endpoint.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    /// The total stopped counting here: the filters select more (lists that count from kept
    /// totals, such as findings, stop only for filters those do not cover).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub total_capped: bool,
    /// Absent on a page asked for `after` a cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<i64>,
    pub per_page: i64,
    /// Where the next page starts (`?after=`), on lists paged by cursor; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    pub page: i64,
    pub per_page: i64,
}

impl PageRequest {
    pub fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.per_page)
    }

    pub fn wrap<T>(&self, items: Vec<T>, total: i64) -> Page<T> {
        Page {
            items,
            total,
            total_capped: false,
            page: Some(self.page),
            per_page: self.per_page,
            next_cursor: None,
        }
    }
}

/// Escape `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
pub(crate) fn like_pattern(q: &str) -> String {
    let mut s = String::from("%");
    for c in q.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

/// Read-model queries of one database.
#[derive(Clone, Debug)]
pub struct ReadModels {
    pub(crate) db: Db,
}

/// A count of zero for each name, for counts that name every value.
pub(crate) fn zeros<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, i64> {
    names.into_iter().map(|n| (n.to_string(), 0)).collect()
}

impl ReadModels {
    pub fn new(db: Db) -> Self {
        ReadModels { db }
    }

    /// One page of an organization's rows of `from`, whose `alias` table holds `org_id`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn org_page<T>(
        &self,
        columns: &str,
        from: &str,
        alias: &str,
        order: &str,
        org_id: &OrgId,
        p: PageRequest,
        parse: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let filter = Filter::by(&format!("{alias}.org_id"), org_id.as_str());
        self.filtered_page(columns, from, order, &filter, p, parse)
            .await
    }

    /// The `(name, count)` rows of a grouping query whose one parameter is `value`.
    pub(crate) async fn grouped(
        &self,
        sql: &str,
        value: &str,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql)
            .bind(value)
            .fetch_all(self.db.reader())
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// One row of an organization's `from` (alias `alias`) by its key column `pk`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn org_row<T>(
        &self,
        columns: &str,
        from: &str,
        alias: &str,
        pk: &str,
        org_id: &OrgId,
        id: impl AsRef<str>,
        parse: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {columns} FROM {from} WHERE {alias}.org_id = $1 AND {alias}.{pk} = $2"
        ))
        .bind(org_id.as_str())
        .bind(id.as_ref())
        .fetch_optional(self.db.reader())
        .await?;
        row.as_ref().map(parse).transpose()
    }

    /// One page of `from` under `filter` (its values numbered from `$1`).
    pub(crate) async fn filtered_page<T>(
        &self,
        columns: &str,
        from: &str,
        order: &str,
        filter: &Filter,
        p: PageRequest,
        parse: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let (conditions, binds) = (filter.sql(), filter.binds());
        let count_sql = format!("SELECT COUNT(*) FROM {from} WHERE {conditions}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for b in binds {
            count = count.bind(b);
        }
        let total = count.fetch_one(self.db.reader()).await?;
        let n = filter.next();
        let sql = format!(
            "SELECT {columns} FROM {from} WHERE {conditions} ORDER BY {order} LIMIT ${n} OFFSET ${}",
            n + 1
        );
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q
            .bind(p.per_page)
            .bind(p.offset())
            .fetch_all(self.db.reader())
            .await?;
        let items = rows.iter().map(parse).collect::<Result<_, _>>()?;
        Ok(p.wrap(items, total))
    }

    /// Every read model row, in a stable order: what a rebuild must reproduce exactly.
    pub async fn dump(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for (table, key) in [
            ("rm_orgs", "org_id"),
            ("rm_api_keys", "key_id"),
            ("rm_users", "user_id"),
            ("rm_groups", "group_id"),
            ("rm_assets", "asset_id"),
            ("rm_asset_tags", "asset_id, tag"),
            ("rm_webhooks", "webhook_id"),
            ("rm_scan_jobs", "scan_job_id"),
            ("rm_findings", "finding_id"),
            ("rm_finding_jobs", "finding_id, scan_job_id"),
            (
                "rm_finding_totals",
                "org_id, scope, scope_id, severity, status",
            ),
            ("rm_monitors", "monitor_id"),
            ("rm_alerts", "alert_id"),
            ("rm_discovery_jobs", "discovery_job_id"),
            ("rm_discovery_names", "name_key"),
        ] {
            let rows = sqlx::query(&format!("SELECT * FROM {table} ORDER BY {key}"))
                .fetch_all(self.db.reader())
                .await?;
            for r in rows {
                let mut cells = vec![table.to_string()];
                for i in 0..r.len() {
                    let cell = r
                        .try_get::<Option<String>, _>(i)
                        .or_else(|_| {
                            r.try_get::<Option<i64>, _>(i)
                                .map(|v| v.map(|v| v.to_string()))
                        })
                        .or_else(|_| {
                            r.try_get::<Option<f64>, _>(i)
                                .map(|v| v.map(|v| v.to_string()))
                        })?;
                    cells.push(cell.unwrap_or_else(|| "NULL".into()));
                }
                out.push(cells.join("|"));
            }
        }
        Ok(out)
    }
}
