//! Queries over the read models, answering in the API's JSON shapes.

mod monitors;

pub use monitors::{AlertFilter, AlertView, DueMonitor, MonitorView};

use crate::state::{AssetRow, FindingRow, ReadState, ScanJobRow};
use easm_events::RecordedEvent;

/// Findings some live scan job detected; the others left with their deleted jobs.
const DETECTED: &str = "f.scan_job_ids <> '[]'";
use easm_events::{format_timestamp, from_micros};
use easm_store::{AnyRow, Db, Row, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

fn iso(us: i64) -> String {
    format_timestamp(&from_micros(us))
}

/// A page of a list endpoint.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    pub page: i64,
    pub per_page: i64,
}

impl PageRequest {
    fn offset(&self) -> i64 {
        (self.page - 1) * self.per_page
    }

    pub fn wrap<T>(&self, items: Vec<T>, total: i64) -> Page<T> {
        Page {
            items,
            total,
            page: self.page,
            per_page: self.per_page,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrgView {
    pub id: String,
    pub name: String,
    pub plan: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub role: String,
    /// The first characters of the key, to tell keys apart; the key itself is never stored.
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    /// The member the key belongs to; it acts with at most the member's current role.
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    pub id: String,
    pub name: String,
    pub asset_count: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AssetView {
    pub id: String,
    pub value: String,
    #[serde(rename = "type")]
    pub asset_type: String,
    pub group_id: String,
    pub tags: Vec<String>,
    pub criticality: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupSummary {
    pub id: String,
    pub name: String,
    pub total_assets: i64,
    /// Asset count per type, every type present (zero where none).
    pub by_type: BTreeMap<String, i64>,
    /// Asset count per criticality, every level present.
    pub by_criticality: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// When the signing secret was last rotated, if ever.
    pub secret_rotated_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const WEBHOOK_COLUMNS: &str = "w.webhook_id, w.url, w.events, w.description, w.enabled, \
     w.rotated_at, w.created_at, w.updated_at";

fn webhook(r: &AnyRow) -> Result<WebhookView, StoreError> {
    let events: String = r.try_get("events")?;
    Ok(WebhookView {
        id: r.try_get("webhook_id")?,
        url: r.try_get("url")?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        description: r.try_get("description")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        secret_rotated_at: r.try_get::<Option<i64>, _>("rotated_at")?.map(iso),
        created_at: iso(r.try_get("created_at")?),
        updated_at: iso(r.try_get("updated_at")?),
    })
}

/// An API key as authentication needs it.
#[derive(Debug, Clone)]
pub struct KeyAuth {
    pub key_id: String,
    pub org_id: String,
    pub role: String,
    pub plan: String,
    pub prefix: String,
    pub revoked: bool,
    /// The role of the member the key belongs to, if it belongs to one.
    pub user_role: Option<String>,
    pub user_id: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct AssetFilter {
    pub asset_type: Option<String>,
    pub group_id: Option<String>,
    pub tag: Option<String>,
    pub criticality: Option<String>,
    pub q: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct FindingFilter {
    /// Any of these severities.
    pub severities: Vec<String>,
    pub status: Option<String>,
    pub asset_id: Option<String>,
    pub scan_job_id: Option<String>,
    pub template_id: Option<String>,
    /// Last detected at or after / at or before (epoch microseconds).
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Case-insensitive substring of title, templateId or matchedAt.
    pub q: Option<String>,
    /// `lastDetected` (default, newest first), `firstDetected` or `severity`.
    pub sort: Option<String>,
}

const SEVERITY_ORDER: &str = "CASE f.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 \
     WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END, f.last_detected DESC, f.finding_id";

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FindingView {
    pub id: String,
    pub asset_id: String,
    pub template_id: String,
    pub title: String,
    pub severity: String,
    pub category: String,
    pub description: String,
    pub evidence: String,
    pub remediation: String,
    pub references: Vec<String>,
    pub cve: Option<String>,
    pub cwe: Option<String>,
    pub cvss_score: Option<f64>,
    pub matched_at: String,
    pub matcher_name: String,
    /// `easm` or `nuclei`.
    pub source: String,
    /// open, acknowledged, resolved or ignored.
    pub status: String,
    pub assignee: Option<String>,
    pub notes: Option<String>,
    pub scan_job_ids: Vec<String>,
    pub detection_count: i64,
    pub first_detected: String,
    pub last_detected: String,
    pub updated_at: String,
}

const FINDING_COLUMNS: &str =
    "f.finding_id, f.org_id, f.asset_id, f.template_id, f.title, f.severity, \
     f.category, f.description, f.evidence, f.remediation, f.refs, f.cve, f.cwe, f.cvss_score, \
     f.matched_at, f.matcher_name, f.source, f.status, f.assignee, f.notes, f.scan_job_ids, \
     f.detection_count, f.first_detected, f.last_detected, f.updated_at";

fn finding(r: &AnyRow) -> Result<FindingView, StoreError> {
    let row = FindingRow::parse(r)?;
    let d = row.detection;
    Ok(FindingView {
        id: r.try_get("finding_id")?,
        asset_id: row.asset_id,
        template_id: d.template_id,
        title: d.title,
        severity: d.severity,
        category: d.category,
        description: d.description,
        evidence: d.evidence,
        remediation: d.remediation,
        references: d.references,
        cve: d.cve,
        cwe: d.cwe,
        cvss_score: d.cvss_score,
        matched_at: d.matched_at,
        matcher_name: d.matcher_name,
        source: d.source,
        status: row.status,
        assignee: row.assignee,
        notes: row.notes,
        scan_job_ids: row.scan_job_ids,
        detection_count: row.detection_count,
        first_detected: iso(row.first_detected),
        last_detected: iso(row.last_detected),
        updated_at: iso(row.updated_at),
    })
}

#[derive(Debug, Default)]
pub struct ScanJobFilter {
    pub status: Option<String>,
    pub asset_id: Option<String>,
    pub profile: Option<String>,
}

/// A scan job as the API shows it. `asset_id` is the reference API's spelling; `assetId` is the
/// same value in this API's own.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScanJobView {
    pub id: String,
    /// queued, running, completed, failed or cancelled.
    pub status: String,
    #[serde(rename = "asset_id")]
    pub asset_id_ref: String,
    pub asset_id: String,
    pub profile: String,
    /// Explicit ports, when given at creation.
    pub ports: Option<Vec<u16>>,
    /// 0 to 100.
    pub progress: i64,
    pub stage: Option<String>,
    /// Workers that took the job.
    pub attempts: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// Findings per severity, once completed.
    #[schema(value_type = Option<Object>)]
    pub counts: Option<easm_events::SeverityCounts>,
    pub rerun_of: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub updated_at: String,
}

const SCAN_JOB_COLUMNS: &str =
    "s.scan_job_id, s.org_id, s.asset_id, s.profile, s.ports, s.status, \
     s.progress, s.stage, s.attempts, s.error, s.counts, s.rerun_of, s.created_at, s.started_at, \
     s.finished_at, s.updated_at";

fn scan_job(r: &AnyRow) -> Result<ScanJobView, StoreError> {
    let row = ScanJobRow::parse(r)?;
    Ok(ScanJobView {
        id: r.try_get("scan_job_id")?,
        status: row.status,
        asset_id_ref: row.asset_id.clone(),
        asset_id: row.asset_id,
        profile: row.profile,
        ports: row.ports,
        progress: row.progress,
        stage: row.stage,
        attempts: row.attempts,
        error: row.error,
        counts: row.counts,
        rerun_of: row.rerun_of,
        created_at: iso(row.created_at),
        started_at: row.started_at.map(iso),
        finished_at: row.finished_at.map(iso),
        updated_at: iso(row.updated_at),
    })
}

const ASSET_COLUMNS: &str =
    "a.asset_id, a.org_id, a.value, a.asset_type, a.group_id, a.tags, a.criticality, a.created_at, \
     a.updated_at";
const GROUP_COLUMNS: &str = "g.group_id, g.name, g.created_at, g.updated_at, \
     (SELECT COUNT(*) FROM rm_assets a WHERE a.group_id = g.group_id) AS asset_count";

fn asset(r: &AnyRow) -> Result<AssetView, StoreError> {
    Ok(asset_view(r.try_get("asset_id")?, AssetRow::parse(r)?))
}

fn asset_view(id: String, row: AssetRow) -> AssetView {
    AssetView {
        id,
        value: row.value,
        asset_type: row.asset_type,
        group_id: row.group_id,
        tags: row.tags,
        criticality: row.criticality,
        created_at: iso(row.created_at),
        updated_at: iso(row.updated_at),
    }
}

/// The assets that `recorded` (just appended) added, as the read models now hold them: the
/// same fold, so a command can answer without reading its rows back.
pub fn added_assets(recorded: &[RecordedEvent]) -> Result<Vec<AssetView>, StoreError> {
    let mut state = ReadState::default();
    let mut order = Vec::new();
    for r in recorded {
        let event = easm_store::typed(r)?;
        if let easm_events::Event::AssetAdded(a) = &event {
            order.push(a.asset_id.clone());
        }
        state.fold(r.into(), &event);
    }
    Ok(order
        .into_iter()
        .filter_map(|id| {
            let row = state.assets.remove(&id).flatten()?;
            Some(asset_view(id, row))
        })
        .collect())
}

fn api_key(r: &AnyRow) -> Result<ApiKeyView, StoreError> {
    Ok(ApiKeyView {
        id: r.try_get("key_id")?,
        name: r.try_get("name")?,
        role: r.try_get("role")?,
        prefix: r.try_get("prefix")?,
        created_at: iso(r.try_get("created_at")?),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(iso),
        last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(iso),
        user_id: r.try_get("user_id")?,
    })
}

fn user(r: &AnyRow) -> Result<UserView, StoreError> {
    Ok(UserView {
        id: r.try_get("user_id")?,
        email: r.try_get("email")?,
        name: r.try_get("name")?,
        role: r.try_get("role")?,
        created_at: iso(r.try_get("created_at")?),
        updated_at: iso(r.try_get("updated_at")?),
    })
}

fn group(r: &AnyRow) -> Result<GroupView, StoreError> {
    Ok(GroupView {
        id: r.try_get("group_id")?,
        name: r.try_get("name")?,
        asset_count: r.try_get("asset_count")?,
        created_at: iso(r.try_get("created_at")?),
        updated_at: iso(r.try_get("updated_at")?),
    })
}

/// Escape `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
fn like_pattern(q: &str) -> String {
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
    db: Db,
}

impl ReadModels {
    pub fn new(db: Db) -> Self {
        ReadModels { db }
    }

    /// One page of an organization's rows of `from`, whose `alias` table holds `org_id`.
    #[allow(clippy::too_many_arguments)]
    async fn org_page<T>(
        &self,
        columns: &str,
        from: &str,
        alias: &str,
        order: &str,
        org_id: &str,
        p: PageRequest,
        parse: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let filter = format!("{alias}.org_id = $1");
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {from} WHERE {filter}"))
            .bind(org_id)
            .fetch_one(self.db.reader())
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {columns} FROM {from} WHERE {filter} ORDER BY {order} LIMIT $2 OFFSET $3"
        ))
        .bind(org_id)
        .bind(p.per_page)
        .bind(p.offset())
        .fetch_all(self.db.reader())
        .await?;
        let items = rows.iter().map(parse).collect::<Result<_, _>>()?;
        Ok(p.wrap(items, total))
    }

    /// One row of an organization's `from` (alias `alias`) by its key column `pk`.
    #[allow(clippy::too_many_arguments)]
    async fn org_row<T>(
        &self,
        columns: &str,
        from: &str,
        alias: &str,
        pk: &str,
        org_id: &str,
        id: &str,
        parse: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {columns} FROM {from} WHERE {alias}.org_id = $1 AND {alias}.{pk} = $2"
        ))
        .bind(org_id)
        .bind(id)
        .fetch_optional(self.db.reader())
        .await?;
        row.as_ref().map(parse).transpose()
    }

    pub async fn org(&self, org_id: &str) -> Result<Option<OrgView>, StoreError> {
        let row =
            sqlx::query("SELECT org_id, name, plan, created_at FROM rm_orgs WHERE org_id = $1")
                .bind(org_id)
                .fetch_optional(self.db.reader())
                .await?;
        row.map(|r| {
            Ok(OrgView {
                id: r.try_get("org_id")?,
                name: r.try_get("name")?,
                plan: r.try_get("plan")?,
                created_at: iso(r.try_get("created_at")?),
            })
        })
        .transpose()
    }

    pub async fn org_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM rm_orgs")
            .fetch_one(self.db.reader())
            .await?)
    }

    pub async fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyAuth>, StoreError> {
        let row = sqlx::query(
            "SELECT k.key_id, k.org_id, k.role, k.prefix, k.revoked_at, k.user_id, o.plan, \
             m.role AS user_role \
             FROM rm_api_keys k JOIN rm_orgs o ON o.org_id = k.org_id \
             LEFT JOIN rm_users m ON m.user_id = k.user_id WHERE k.key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(self.db.reader())
        .await?;
        row.map(|r| {
            Ok(KeyAuth {
                key_id: r.try_get("key_id")?,
                org_id: r.try_get("org_id")?,
                role: r.try_get("role")?,
                prefix: r.try_get("prefix")?,
                plan: r.try_get("plan")?,
                revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
                user_role: r.try_get("user_role")?,
                user_id: r.try_get("user_id")?,
            })
        })
        .transpose()
    }

    /// Every key of an organization (revoked too) with its prefix, for the audit trail.
    pub async fn key_prefixes(
        &self,
        org_id: &str,
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT key_id, prefix FROM rm_api_keys WHERE org_id = $1")
            .bind(org_id)
            .fetch_all(self.db.reader())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("key_id")?, r.try_get("prefix")?)))
            .collect()
    }

    /// The organization a key belongs to.
    pub async fn key_org(&self, key_id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT org_id FROM rm_api_keys WHERE key_id = $1")
                .bind(key_id)
                .fetch_optional(self.db.reader())
                .await?,
        )
    }

    pub async fn touch_key(&self, key_id: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_key_usage (key_id, last_used_at) VALUES ($1, $2) \
             ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at",
        )
        .bind(key_id)
        .bind(at)
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    pub async fn keys(&self, org_id: &str, p: PageRequest) -> Result<Page<ApiKeyView>, StoreError> {
        self.org_page(
            "k.key_id, k.name, k.role, k.prefix, k.created_at, k.revoked_at, k.user_id, \
             u.last_used_at",
            "rm_api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.key_id",
            "k",
            "k.created_at, k.key_id",
            org_id,
            p,
            api_key,
        )
        .await
    }

    /// The organization's members, oldest first.
    pub async fn users(&self, org_id: &str, p: PageRequest) -> Result<Page<UserView>, StoreError> {
        self.org_page(
            "m.user_id, m.email, m.name, m.role, m.created_at, m.updated_at",
            "rm_users m",
            "m",
            "m.created_at, m.user_id",
            org_id,
            p,
            user,
        )
        .await
    }

    /// The organization a member belongs to.
    pub async fn user_org(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT org_id FROM rm_users WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(self.db.reader())
                .await?,
        )
    }

    pub async fn groups(
        &self,
        org_id: &str,
        p: PageRequest,
    ) -> Result<Page<GroupView>, StoreError> {
        let order = "g.created_at, g.group_id";
        self.org_page(GROUP_COLUMNS, "rm_groups g", "g", order, org_id, p, group)
            .await
    }

    pub async fn group(
        &self,
        org_id: &str,
        group_id: &str,
    ) -> Result<Option<GroupView>, StoreError> {
        self.org_row(
            GROUP_COLUMNS,
            "rm_groups g",
            "g",
            "group_id",
            org_id,
            group_id,
            group,
        )
        .await
    }

    pub async fn group_summary(
        &self,
        org_id: &str,
        group_id: &str,
    ) -> Result<Option<GroupSummary>, StoreError> {
        let Some(g) = self.group(org_id, group_id).await? else {
            return Ok(None);
        };
        let mut by_type: BTreeMap<String, i64> = easm_domain::AssetType::ALL
            .iter()
            .map(|t| (t.as_str().to_string(), 0))
            .collect();
        let mut by_criticality: BTreeMap<String, i64> = easm_domain::Criticality::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), 0))
            .collect();
        for (column, map) in [
            ("asset_type", &mut by_type),
            ("criticality", &mut by_criticality),
        ] {
            let rows = sqlx::query(&format!(
                "SELECT {column} AS k, COUNT(*) AS n FROM rm_assets WHERE group_id = $1 GROUP BY {column}"
            ))
            .bind(group_id)
            .fetch_all(self.db.reader())
            .await?;
            for r in rows {
                map.insert(r.try_get("k")?, r.try_get("n")?);
            }
        }
        Ok(Some(GroupSummary {
            id: g.id,
            name: g.name,
            total_assets: g.asset_count,
            by_type,
            by_criticality,
        }))
    }

    pub async fn assets(
        &self,
        org_id: &str,
        f: &AssetFilter,
        p: PageRequest,
    ) -> Result<Page<AssetView>, StoreError> {
        let mut clauses = vec!["a.org_id = $1".to_string()];
        let mut binds = vec![org_id.to_string()];
        let mut add = |sql: &str, v: String| {
            binds.push(v);
            clauses.push(sql.replace('?', &format!("${}", binds.len())));
        };
        if let Some(t) = &f.asset_type {
            add("a.asset_type = ?", t.clone());
        }
        if let Some(g) = &f.group_id {
            add("a.group_id = ?", g.clone());
        }
        if let Some(c) = &f.criticality {
            add("a.criticality = ?", c.clone());
        }
        if let Some(t) = &f.tag {
            add(
                "EXISTS (SELECT 1 FROM rm_asset_tags t WHERE t.asset_id = a.asset_id AND t.tag = ?)",
                t.clone(),
            );
        }
        if let Some(q) = &f.q {
            add("LOWER(a.value) LIKE ? ESCAPE '\\'", like_pattern(q));
        }
        self.filtered_page(
            ASSET_COLUMNS,
            "rm_assets a",
            "a.created_at, a.asset_id",
            (&clauses, &binds),
            p,
            asset,
        )
        .await
    }

    /// One page of `from` under `clauses` (`$n` placeholders numbered in `binds` order).
    async fn filtered_page<T>(
        &self,
        columns: &str,
        from: &str,
        order: &str,
        (clauses, binds): (&[String], &[String]),
        p: PageRequest,
        parse: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let filter = clauses.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) FROM {from} WHERE {filter}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for b in binds {
            count = count.bind(b);
        }
        let total = count.fetch_one(self.db.reader()).await?;
        let n = binds.len();
        let sql = format!(
            "SELECT {columns} FROM {from} WHERE {filter} ORDER BY {order} LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
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

    pub async fn scan_jobs(
        &self,
        org_id: &str,
        f: &ScanJobFilter,
        p: PageRequest,
    ) -> Result<Page<ScanJobView>, StoreError> {
        let mut clauses = vec!["s.org_id = $1".to_string()];
        let mut binds = vec![org_id.to_string()];
        for (column, value) in [
            ("status", &f.status),
            ("asset_id", &f.asset_id),
            ("profile", &f.profile),
        ] {
            if let Some(v) = value {
                binds.push(v.clone());
                clauses.push(format!("s.{column} = ${}", binds.len()));
            }
        }
        self.filtered_page(
            SCAN_JOB_COLUMNS,
            "rm_scan_jobs s",
            "s.created_at DESC, s.scan_job_id DESC",
            (&clauses, &binds),
            p,
            scan_job,
        )
        .await
    }

    pub async fn findings(
        &self,
        org_id: &str,
        f: &FindingFilter,
        p: PageRequest,
    ) -> Result<Page<FindingView>, StoreError> {
        let mut clauses = vec![format!("f.org_id = $1 AND {DETECTED}")];
        let mut binds = vec![org_id.to_string()];
        let mut bind = |v: String| {
            binds.push(v);
            format!("${}", binds.len())
        };
        if !f.severities.is_empty() {
            let list: Vec<String> = f.severities.iter().map(|s| bind(s.clone())).collect();
            clauses.push(format!("f.severity IN ({})", list.join(", ")));
        }
        for (column, value) in [
            ("f.status", &f.status),
            ("f.asset_id", &f.asset_id),
            ("f.template_id", &f.template_id),
        ] {
            if let Some(v) = value {
                clauses.push(format!("{column} = {}", bind(v.clone())));
            }
        }
        if let Some(job) = &f.scan_job_id {
            let p = bind(like_pattern(&format!("\"{job}\"")));
            clauses.push(format!("f.scan_job_ids LIKE {p} ESCAPE '\\'"));
        }
        if let Some(q) = &f.q {
            let p = bind(like_pattern(q));
            clauses.push(format!(
                "(LOWER(f.title) LIKE {p} ESCAPE '\\' OR LOWER(f.template_id) LIKE {p} ESCAPE '\\' \
                 OR LOWER(f.matched_at) LIKE {p} ESCAPE '\\')"
            ));
        }
        for (op, at) in [(">=", f.since), ("<=", f.until)] {
            if let Some(at) = at {
                clauses.push(format!(
                    "f.last_detected {op} CAST({} AS BIGINT)",
                    bind(at.to_string())
                ));
            }
        }
        let order = match f.sort.as_deref() {
            Some("severity") => SEVERITY_ORDER,
            Some("firstDetected") => "f.first_detected DESC, f.finding_id",
            _ => "f.last_detected DESC, f.finding_id",
        };
        self.filtered_page(
            FINDING_COLUMNS,
            "rm_findings f",
            order,
            (&clauses, &binds),
            p,
            finding,
        )
        .await
    }

    pub async fn finding(&self, org_id: &str, id: &str) -> Result<Option<FindingView>, StoreError> {
        let found = self
            .org_row(
                FINDING_COLUMNS,
                "rm_findings f",
                "f",
                "finding_id",
                org_id,
                id,
                finding,
            )
            .await?;
        Ok(found.filter(|f| !f.scan_job_ids.is_empty()))
    }

    /// Unresolved (open or acknowledged) findings of an asset per severity.
    pub async fn unresolved_by_severity(
        &self,
        org_id: &str,
        asset_id: &str,
    ) -> Result<easm_events::SeverityCounts, StoreError> {
        let rows = sqlx::query(
            &format!(
                "SELECT severity, COUNT(*) AS n FROM rm_findings f WHERE org_id = $1 AND asset_id = $2 \
                 AND status IN ('open', 'acknowledged') AND {DETECTED} GROUP BY severity"
            ),
        )
        .bind(org_id)
        .bind(asset_id)
        .fetch_all(self.db.reader())
        .await?;
        let mut c = easm_events::SeverityCounts::default();
        for r in rows {
            let n = r.try_get::<i64, _>("n")? as u32;
            c.add(&r.try_get::<String, _>("severity")?, n);
        }
        Ok(c)
    }

    /// Jobs for the workers: queued or running, requested at or before `before` (micros),
    /// oldest first, as (organization, job).
    pub async fn active_scan_jobs(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT org_id, scan_job_id FROM rm_scan_jobs WHERE status IN ('queued', 'running') \
             AND created_at <= $1 ORDER BY created_at LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("org_id")?, r.try_get("scan_job_id")?)))
            .collect()
    }

    /// Open or acknowledged findings of an asset: those a completed scan may auto-resolve.
    pub async fn unresolved_findings(
        &self,
        org_id: &str,
        asset_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(&format!(
            "SELECT finding_id FROM rm_findings f WHERE org_id = $1 AND asset_id = $2 \
                 AND status IN ('open', 'acknowledged') AND {DETECTED} ORDER BY finding_id"
        ))
        .bind(org_id)
        .bind(asset_id)
        .fetch_all(self.db.reader())
        .await?)
    }

    /// Every scan job of an asset, newest first.
    pub async fn asset_scan_jobs(
        &self,
        org_id: &str,
        asset_id: &str,
    ) -> Result<Vec<ScanJobView>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SCAN_JOB_COLUMNS} FROM rm_scan_jobs s WHERE s.org_id = $1 AND s.asset_id = $2 \
             ORDER BY s.created_at DESC, s.scan_job_id DESC"
        ))
        .bind(org_id)
        .bind(asset_id)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter().map(scan_job).collect()
    }

    pub async fn scan_job(
        &self,
        org_id: &str,
        id: &str,
    ) -> Result<Option<ScanJobView>, StoreError> {
        self.org_row(
            SCAN_JOB_COLUMNS,
            "rm_scan_jobs s",
            "s",
            "scan_job_id",
            org_id,
            id,
            scan_job,
        )
        .await
    }

    pub async fn asset(
        &self,
        org_id: &str,
        asset_id: &str,
    ) -> Result<Option<AssetView>, StoreError> {
        self.org_row(
            ASSET_COLUMNS,
            "rm_assets a",
            "a",
            "asset_id",
            org_id,
            asset_id,
            asset,
        )
        .await
    }

    pub async fn webhooks(
        &self,
        org_id: &str,
        p: PageRequest,
    ) -> Result<Page<WebhookView>, StoreError> {
        let order = "w.created_at, w.webhook_id";
        self.org_page(
            WEBHOOK_COLUMNS,
            // The audit log webhook has its own settings API.
            "(SELECT * FROM rm_webhooks WHERE webhook_id NOT LIKE 'audit-%') w",
            "w",
            order,
            org_id,
            p,
            webhook,
        )
        .await
    }

    /// The endpoints that receive deliveries now (fan-out matches on them).
    /// By organization, for any number of them in one query per 500.
    pub async fn enabled_webhooks(
        &self,
        orgs: &[&str],
    ) -> Result<BTreeMap<String, Vec<WebhookView>>, StoreError> {
        let mut out: BTreeMap<String, Vec<WebhookView>> = BTreeMap::new();
        for chunk in orgs.chunks(500) {
            let sql = format!(
                "SELECT w.org_id, {WEBHOOK_COLUMNS} FROM rm_webhooks w \
                 WHERE w.org_id IN ({}) AND w.enabled = 1",
                easm_store::placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for org in chunk {
                q = q.bind(*org);
            }
            for r in q.fetch_all(self.db.reader()).await? {
                out.entry(r.try_get("org_id")?)
                    .or_default()
                    .push(webhook(&r)?);
            }
        }
        Ok(out)
    }

    pub async fn webhook(&self, org_id: &str, id: &str) -> Result<Option<WebhookView>, StoreError> {
        self.org_row(
            WEBHOOK_COLUMNS,
            "rm_webhooks w",
            "w",
            "webhook_id",
            org_id,
            id,
            webhook,
        )
        .await
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
            ("rm_monitors", "monitor_id"),
            ("rm_alerts", "alert_id"),
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
