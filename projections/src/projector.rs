use crate::state::{
    touches, AlertRow, AssetRow, FindingRow, GroupRow, KeyRow, MonitorRow, OrgRow, Origin,
    ReadState, ScanJobRow, Touch, UserRow, WebhookRow,
};
use easm_events::{Event, RecordedEvent};
use easm_store::{
    anonymous_rows, chunk_rows, index_shadow, placeholders, swap_in, typed, value_rows,
    AnyConnection, AnyRow, Backend, BoxFuture, Db, EventLog, InlineProjection, LogSource,
    ReplayEvent, Row, ShadowFiller, StoreError, Val, Write, APPENDS_LOCK, BULK_VALUES,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The read models' tables, which a rebuild refills.
const READ_MODEL_TABLES: &[&str] = &[
    "rm_alerts",
    "rm_monitors",
    "rm_findings",
    "rm_scan_jobs",
    "rm_webhooks",
    "rm_asset_tags",
    "rm_assets",
    "rm_groups",
    "rm_api_keys",
    "rm_users",
    "rm_orgs",
];

/// Applies events to the read models inside the transactions that append them (see
/// `InlineProjection`); each organization's chain head records how far its read models go, so a
/// crash can neither skip nor double-apply an event.
pub struct Projector {
    db: Db,
}

struct Table {
    name: &'static str,
    pk: &'static str,
    columns: &'static [&'static str],
}

impl Table {
    /// The key and the other columns, comma-separated, in the order of a row's values.
    fn column_list(&self) -> String {
        format!("{}, {}", self.pk, self.columns.join(", "))
    }
}

/// Append the values of a row (its key, then `vals`) to `values`.
fn push_row<T>(values: &mut Vec<Val>, id: &str, row: &T, vals: fn(&T) -> Vec<Val>) {
    values.push(Val::Text(id.to_string()));
    values.extend(vals(row));
}

const ORGS: Table = Table {
    name: "rm_orgs",
    pk: "org_id",
    columns: &["name", "plan", "created_at"],
};
const KEYS: Table = Table {
    name: "rm_api_keys",
    pk: "key_id",
    columns: &[
        "org_id",
        "name",
        "role",
        "key_hash",
        "prefix",
        "created_at",
        "revoked_at",
        "user_id",
    ],
};
const USERS: Table = Table {
    name: "rm_users",
    pk: "user_id",
    columns: &[
        "org_id",
        "email",
        "name",
        "role",
        "created_at",
        "updated_at",
    ],
};
const GROUPS: Table = Table {
    name: "rm_groups",
    pk: "group_id",
    columns: &["org_id", "name", "created_at", "updated_at"],
};
const ASSETS: Table = Table {
    name: "rm_assets",
    pk: "asset_id",
    columns: &[
        "org_id",
        "group_id",
        "value",
        "asset_type",
        "tags",
        "criticality",
        "created_at",
        "updated_at",
    ],
};

const WEBHOOKS: Table = Table {
    name: "rm_webhooks",
    pk: "webhook_id",
    columns: &[
        "org_id",
        "url",
        "events",
        "description",
        "enabled",
        "rotated_at",
        "created_at",
        "updated_at",
    ],
};

const SCAN_JOBS: Table = Table {
    name: "rm_scan_jobs",
    pk: "scan_job_id",
    columns: &[
        "org_id",
        "asset_id",
        "profile",
        "ports",
        "status",
        "progress",
        "stage",
        "attempts",
        "error",
        "counts",
        "rerun_of",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
    ],
};

const FINDINGS: Table = Table {
    name: "rm_findings",
    pk: "finding_id",
    columns: &[
        "org_id",
        "asset_id",
        "template_id",
        "title",
        "severity",
        "category",
        "description",
        "evidence",
        "remediation",
        "refs",
        "cve",
        "cwe",
        "cvss_score",
        "matched_at",
        "matcher_name",
        "source",
        "status",
        "assignee",
        "notes",
        "scan_job_ids",
        "detection_count",
        "first_detected",
        "last_detected",
        "updated_at",
    ],
};

const MONITORS: Table = Table {
    name: "rm_monitors",
    pk: "monitor_id",
    columns: &[
        "org_id",
        "asset_id",
        "group_id",
        "frequency_hours",
        "profile",
        "ports",
        "enabled",
        "last_run_at",
        "next_run_at",
        "run_count",
        "last_scan_job_ids",
        "created_at",
        "updated_at",
    ],
};

const ALERTS: Table = Table {
    name: "rm_alerts",
    pk: "alert_id",
    columns: &[
        "org_id",
        "monitor_id",
        "asset_id",
        "scan_job_id",
        "alert_type",
        "severity",
        "title",
        "details",
        "status",
        "notes",
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
        "resolved_by",
        "created_at",
        "updated_at",
    ],
};

impl MonitorRow {
    fn vals(&self) -> Vec<Val> {
        vec![
            Val::Text(self.org_id.clone()),
            Val::OptText(self.asset_id.clone()),
            Val::OptText(self.group_id.clone()),
            Val::Int(self.frequency_hours),
            Val::Text(self.profile.clone()),
            Val::OptText(
                self.ports
                    .as_ref()
                    .and_then(|p| serde_json::to_string(p).ok()),
            ),
            Val::Int(self.enabled as i64),
            Val::OptInt(self.last_run_at),
            Val::OptInt(self.next_run_at),
            Val::Int(self.run_count),
            Val::Text(serde_json::to_string(&self.last_scan_job_ids).unwrap_or_default()),
            Val::Int(self.created_at),
            Val::Int(self.updated_at),
        ]
    }
    pub(crate) fn parse(r: &AnyRow) -> Result<Self, sqlx::Error> {
        let ports: Option<String> = r.try_get("ports")?;
        let jobs: String = r.try_get("last_scan_job_ids")?;
        Ok(MonitorRow {
            org_id: r.try_get("org_id")?,
            asset_id: r.try_get("asset_id")?,
            group_id: r.try_get("group_id")?,
            frequency_hours: r.try_get("frequency_hours")?,
            profile: r.try_get("profile")?,
            ports: ports.and_then(|p| serde_json::from_str(&p).ok()),
            enabled: r.try_get::<i64, _>("enabled")? != 0,
            last_run_at: r.try_get("last_run_at")?,
            next_run_at: r.try_get("next_run_at")?,
            run_count: r.try_get("run_count")?,
            last_scan_job_ids: serde_json::from_str(&jobs).unwrap_or_default(),
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

impl AlertRow {
    fn vals(&self) -> Vec<Val> {
        vec![
            Val::Text(self.org_id.clone()),
            Val::Text(self.monitor_id.clone()),
            Val::Text(self.asset_id.clone()),
            Val::Text(self.scan_job_id.clone()),
            Val::Text(self.alert_type.clone()),
            Val::Text(self.severity.clone()),
            Val::Text(self.title.clone()),
            Val::Text(self.details.to_string()),
            Val::Text(self.status.clone()),
            Val::OptText(self.notes.clone()),
            Val::OptInt(self.acknowledged_at),
            Val::OptText(self.acknowledged_by.clone()),
            Val::OptInt(self.resolved_at),
            Val::OptText(self.resolved_by.clone()),
            Val::Int(self.created_at),
            Val::Int(self.updated_at),
        ]
    }
    pub(crate) fn parse(r: &AnyRow) -> Result<Self, sqlx::Error> {
        let details: String = r.try_get("details")?;
        Ok(AlertRow {
            org_id: r.try_get("org_id")?,
            monitor_id: r.try_get("monitor_id")?,
            asset_id: r.try_get("asset_id")?,
            scan_job_id: r.try_get("scan_job_id")?,
            alert_type: r.try_get("alert_type")?,
            severity: r.try_get("severity")?,
            title: r.try_get("title")?,
            details: serde_json::from_str(&details).unwrap_or_default(),
            status: r.try_get("status")?,
            notes: r.try_get("notes")?,
            acknowledged_at: r.try_get("acknowledged_at")?,
            acknowledged_by: r.try_get("acknowledged_by")?,
            resolved_at: r.try_get("resolved_at")?,
            resolved_by: r.try_get("resolved_by")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

impl FindingRow {
    fn vals(&self) -> Vec<Val> {
        let d = &self.detection;
        vec![
            Val::Text(self.org_id.clone()),
            Val::Text(self.asset_id.clone()),
            Val::Text(d.template_id.clone()),
            Val::Text(d.title.clone()),
            Val::Text(d.severity.clone()),
            Val::Text(d.category.clone()),
            Val::Text(d.description.clone()),
            Val::Text(d.evidence.clone()),
            Val::Text(d.remediation.clone()),
            Val::Text(serde_json::to_string(&d.references).unwrap_or_default()),
            Val::OptText(d.cve.clone()),
            Val::OptText(d.cwe.clone()),
            Val::OptFloat(d.cvss_score),
            Val::Text(d.matched_at.clone()),
            Val::Text(d.matcher_name.clone()),
            Val::Text(d.source.clone()),
            Val::Text(self.status.clone()),
            Val::OptText(self.assignee.clone()),
            Val::OptText(self.notes.clone()),
            Val::Text(serde_json::to_string(&self.scan_job_ids).unwrap_or_default()),
            Val::Int(self.detection_count),
            Val::Int(self.first_detected),
            Val::Int(self.last_detected),
            Val::Int(self.updated_at),
        ]
    }
    pub(crate) fn parse(r: &AnyRow) -> Result<Self, sqlx::Error> {
        let refs: String = r.try_get("refs")?;
        let jobs: String = r.try_get("scan_job_ids")?;
        Ok(FindingRow {
            org_id: r.try_get("org_id")?,
            asset_id: r.try_get("asset_id")?,
            detection: easm_events::Detection {
                template_id: r.try_get("template_id")?,
                title: r.try_get("title")?,
                severity: r.try_get("severity")?,
                category: r.try_get("category")?,
                description: r.try_get("description")?,
                evidence: r.try_get("evidence")?,
                remediation: r.try_get("remediation")?,
                references: serde_json::from_str(&refs).unwrap_or_default(),
                cve: r.try_get("cve")?,
                cwe: r.try_get("cwe")?,
                cvss_score: r.try_get("cvss_score")?,
                matched_at: r.try_get("matched_at")?,
                matcher_name: r.try_get("matcher_name")?,
                source: r.try_get("source")?,
            },
            status: r.try_get("status")?,
            assignee: r.try_get("assignee")?,
            notes: r.try_get("notes")?,
            scan_job_ids: serde_json::from_str(&jobs).unwrap_or_default(),
            detection_count: r.try_get("detection_count")?,
            first_detected: r.try_get("first_detected")?,
            last_detected: r.try_get("last_detected")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

impl ScanJobRow {
    fn vals(&self) -> Vec<Val> {
        let json = |v: Option<String>| Val::OptText(v);
        vec![
            Val::Text(self.org_id.clone()),
            Val::Text(self.asset_id.clone()),
            Val::Text(self.profile.clone()),
            json(
                self.ports
                    .as_ref()
                    .and_then(|p| serde_json::to_string(p).ok()),
            ),
            Val::Text(self.status.clone()),
            Val::Int(self.progress),
            Val::OptText(self.stage.clone()),
            Val::Int(self.attempts),
            Val::OptText(self.error.clone()),
            json(
                self.counts
                    .as_ref()
                    .and_then(|c| serde_json::to_string(c).ok()),
            ),
            Val::OptText(self.rerun_of.clone()),
            Val::Int(self.created_at),
            Val::OptInt(self.started_at),
            Val::OptInt(self.finished_at),
            Val::Int(self.updated_at),
        ]
    }
    pub(crate) fn parse(r: &AnyRow) -> Result<Self, sqlx::Error> {
        let ports: Option<String> = r.try_get("ports")?;
        let counts: Option<String> = r.try_get("counts")?;
        Ok(ScanJobRow {
            org_id: r.try_get("org_id")?,
            asset_id: r.try_get("asset_id")?,
            profile: r.try_get("profile")?,
            ports: ports.and_then(|p| serde_json::from_str(&p).ok()),
            status: r.try_get("status")?,
            progress: r.try_get("progress")?,
            stage: r.try_get("stage")?,
            attempts: r.try_get("attempts")?,
            error: r.try_get("error")?,
            counts: counts.and_then(|c| serde_json::from_str(&c).ok()),
            rerun_of: r.try_get("rerun_of")?,
            created_at: r.try_get("created_at")?,
            started_at: r.try_get("started_at")?,
            finished_at: r.try_get("finished_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

impl WebhookRow {
    fn vals(&self) -> Vec<Val> {
        vec![
            Val::Text(self.org_id.clone()),
            Val::Text(self.url.clone()),
            Val::Text(serde_json::to_string(&self.events).unwrap_or_default()),
            Val::Text(self.description.clone()),
            Val::Int(self.enabled as i64),
            Val::OptInt(self.rotated_at),
            Val::Int(self.created_at),
            Val::Int(self.updated_at),
        ]
    }
    fn parse(r: &AnyRow) -> Result<Self, sqlx::Error> {
        let events: String = r.try_get("events")?;
        Ok(WebhookRow {
            org_id: r.try_get("org_id")?,
            url: r.try_get("url")?,
            events: serde_json::from_str(&events).unwrap_or_default(),
            description: r.try_get("description")?,
            enabled: r.try_get::<i64, _>("enabled")? != 0,
            rotated_at: r.try_get("rotated_at")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

impl OrgRow {
    fn vals(&self) -> Vec<Val> {
        vec![
            Val::Text(self.name.clone()),
            Val::Text(self.plan.clone()),
            Val::Int(self.created_at),
        ]
    }
    fn parse(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(OrgRow {
            name: r.try_get("name")?,
            plan: r.try_get("plan")?,
            created_at: r.try_get("created_at")?,
        })
    }
}

impl KeyRow {
    fn vals(&self) -> Vec<Val> {
        vec![
            Val::Text(self.org_id.clone()),
            Val::Text(self.name.clone()),
            Val::Text(self.role.clone()),
            Val::Text(self.key_hash.clone()),
            Val::Text(self.prefix.clone()),
            Val::Int(self.created_at),
            Val::OptInt(self.revoked_at),
            Val::OptText(self.user_id.clone()),
        ]
    }
    fn parse(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(KeyRow {
            org_id: r.try_get("org_id")?,
            name: r.try_get("name")?,
            role: r.try_get("role")?,
            key_hash: r.try_get("key_hash")?,
            prefix: r.try_get("prefix")?,
            created_at: r.try_get("created_at")?,
            revoked_at: r.try_get("revoked_at")?,
            user_id: r.try_get("user_id")?,
        })
    }
}

impl UserRow {
    fn vals(&self) -> Vec<Val> {
        vec![
            Val::Text(self.org_id.clone()),
            Val::Text(self.email.clone()),
            Val::Text(self.name.clone()),
            Val::Text(self.role.clone()),
            Val::Int(self.created_at),
            Val::Int(self.updated_at),
        ]
    }
    fn parse(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(UserRow {
            org_id: r.try_get("org_id")?,
            email: r.try_get("email")?,
            name: r.try_get("name")?,
            role: r.try_get("role")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

impl GroupRow {
    fn vals(&self) -> Vec<Val> {
        vec![
            Val::Text(self.org_id.clone()),
            Val::Text(self.name.clone()),
            Val::Int(self.created_at),
            Val::Int(self.updated_at),
        ]
    }
    fn parse(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(GroupRow {
            org_id: r.try_get("org_id")?,
            name: r.try_get("name")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

impl AssetRow {
    fn vals(&self) -> Vec<Val> {
        vec![
            Val::Text(self.org_id.clone()),
            Val::Text(self.group_id.clone()),
            Val::Text(self.value.clone()),
            Val::Text(self.asset_type.clone()),
            Val::Text(serde_json::to_string(&self.tags).unwrap_or_default()),
            Val::Text(self.criticality.clone()),
            Val::Int(self.created_at),
            Val::Int(self.updated_at),
        ]
    }
    pub(crate) fn parse(r: &AnyRow) -> Result<Self, sqlx::Error> {
        let tags: String = r.try_get("tags")?;
        Ok(AssetRow {
            org_id: r.try_get("org_id")?,
            group_id: r.try_get("group_id")?,
            value: r.try_get("value")?,
            asset_type: r.try_get("asset_type")?,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            criticality: r.try_get("criticality")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

/// Load the rows with the given primary keys into `into`.
async fn load<T>(
    conn: &mut AnyConnection,
    size: usize,
    table: &Table,
    ids: &BTreeSet<String>,
    parse: fn(&AnyRow) -> Result<T, sqlx::Error>,
    into: &mut BTreeMap<String, Option<T>>,
) -> Result<(), StoreError> {
    let ids: Vec<&String> = ids.iter().collect();
    for chunk in ids.chunks(size) {
        let sql = format!(
            "SELECT {} FROM {} WHERE {} IN ({})",
            table.column_list(),
            table.name,
            table.pk,
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.as_str());
        }
        for r in q.fetch_all(&mut *conn).await? {
            into.insert(r.try_get(table.pk)?, Some(parse(&r)?));
        }
    }
    Ok(())
}

/// Upserts of the live rows and deletes of the dead ones, in multi-row statements.
fn writes<T>(
    size: usize,
    table: &Table,
    rows: &BTreeMap<String, Option<T>>,
    vals: fn(&T) -> Vec<Val>,
    out: &mut Vec<Write>,
) {
    let (live, dead): (Vec<_>, Vec<_>) = rows.iter().partition(|(_, r)| r.is_some());
    for chunk in dead.chunks(size) {
        out.push(Write {
            table: table.name,
            sql: format!(
                "DELETE FROM {} WHERE {} IN ({})",
                table.name,
                table.pk,
                placeholders(1, chunk.len())
            ),
            values: chunk
                .iter()
                .map(|(id, _)| Val::Text(id.to_string()))
                .collect(),
        });
    }
    let width = table.columns.len() + 1;
    let updates: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    for chunk in live.chunks(size) {
        let mut values = Vec::with_capacity(chunk.len() * width);
        for (id, row) in chunk {
            push_row(&mut values, id, row.as_ref().expect("live rows only"), vals);
        }
        out.push(Write {
            table: table.name,
            sql: format!(
                "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) DO UPDATE SET {}",
                table.name,
                table.column_list(),
                value_rows(chunk.len(), width, 1, ""),
                table.pk,
                updates.join(", ")
            ),
            values,
        });
    }
}

/// Tags are a child table of assets: replaced wholesale for every asset written; `stored` are
/// the assets that may have tags in the table already.
fn tag_writes(
    size: usize,
    assets: &BTreeMap<String, Option<AssetRow>>,
    stored: &BTreeSet<String>,
    out: &mut Vec<Write>,
) {
    let ids: Vec<&String> = stored.iter().collect();
    for chunk in ids.chunks(size) {
        out.push(Write {
            table: "rm_asset_tags",
            sql: format!(
                "DELETE FROM rm_asset_tags WHERE asset_id IN ({})",
                placeholders(1, chunk.len())
            ),
            values: chunk.iter().map(|id| Val::Text(id.to_string())).collect(),
        });
    }
    let tags = tag_rows(assets);
    for chunk in tags.chunks(size * 3) {
        out.push(Write {
            table: "rm_asset_tags",
            sql: format!(
                "INSERT INTO rm_asset_tags (asset_id, org_id, tag) VALUES {}",
                value_rows(chunk.len() / 3, 3, 1, "")
            ),
            values: chunk.to_vec(),
        });
    }
}

/// The values of the tag rows of `assets` (asset id, organization, tag).
fn tag_rows(assets: &BTreeMap<String, Option<AssetRow>>) -> Vec<Val> {
    assets
        .iter()
        .filter_map(|(id, a)| a.as_ref().map(|a| (id, a)))
        .flat_map(|(id, a)| a.tags.iter().map(move |t| (id, &a.org_id, t)))
        .flat_map(|(id, org, tag)| [id, org, tag].map(|v| Val::Text(v.to_string())))
        .collect()
}

/// The writes that store `s`; `stored_assets`: the assets whose rows were in the tables before.
fn state_writes(size: usize, s: &ReadState, stored_assets: &BTreeSet<String>) -> Vec<Write> {
    let mut out = vec![];
    writes(size, &ORGS, &s.orgs, OrgRow::vals, &mut out);
    writes(size, &KEYS, &s.keys, KeyRow::vals, &mut out);
    writes(size, &USERS, &s.users, UserRow::vals, &mut out);
    writes(size, &GROUPS, &s.groups, GroupRow::vals, &mut out);
    writes(size, &ASSETS, &s.assets, AssetRow::vals, &mut out);
    writes(size, &WEBHOOKS, &s.webhooks, WebhookRow::vals, &mut out);
    writes(size, &SCAN_JOBS, &s.scan_jobs, ScanJobRow::vals, &mut out);
    writes(size, &FINDINGS, &s.findings, FindingRow::vals, &mut out);
    writes(size, &MONITORS, &s.monitors, MonitorRow::vals, &mut out);
    writes(size, &ALERTS, &s.alerts, AlertRow::vals, &mut out);
    tag_writes(size, &s.assets, stored_assets, &mut out);
    out
}

/// The live rows of one read-model table, for refilling it from empty.
struct Rows {
    table: &'static str,
    /// Comma-separated, in the order of the values.
    columns: String,
    values: Vec<Val>,
}

impl Rows {
    fn of<T>(table: &Table, rows: &BTreeMap<String, Option<T>>, vals: fn(&T) -> Vec<Val>) -> Self {
        let mut values = vec![];
        for (id, row) in rows {
            if let Some(row) = row {
                push_row(&mut values, id, row, vals);
            }
        }
        Rows {
            table: table.name,
            columns: table.column_list(),
            values,
        }
    }

    /// Plain inserts of as many rows as SQLite takes in one statement.
    fn sqlite_inserts(&self) -> Vec<Write> {
        let width = self.columns.split(',').count();
        self.values
            .chunks(BULK_VALUES / width * width)
            .map(|chunk| Write {
                table: self.table,
                sql: format!(
                    "INSERT INTO {} ({}) VALUES {}",
                    self.table,
                    self.columns,
                    anonymous_rows(chunk.len() / width, width)
                ),
                values: chunk.to_vec(),
            })
            .collect()
    }
}

/// Every live row of `s`, table by table.
fn state_rows(s: &ReadState) -> Vec<Rows> {
    vec![
        Rows::of(&ORGS, &s.orgs, OrgRow::vals),
        Rows::of(&KEYS, &s.keys, KeyRow::vals),
        Rows::of(&USERS, &s.users, UserRow::vals),
        Rows::of(&GROUPS, &s.groups, GroupRow::vals),
        Rows::of(&ASSETS, &s.assets, AssetRow::vals),
        Rows::of(&WEBHOOKS, &s.webhooks, WebhookRow::vals),
        Rows::of(&SCAN_JOBS, &s.scan_jobs, ScanJobRow::vals),
        Rows::of(&FINDINGS, &s.findings, FindingRow::vals),
        Rows::of(&MONITORS, &s.monitors, MonitorRow::vals),
        Rows::of(&ALERTS, &s.alerts, AlertRow::vals),
        Rows {
            table: "rm_asset_tags",
            columns: "asset_id, org_id, tag".into(),
            values: tag_rows(&s.assets),
        },
    ]
}

impl Projector {
    pub fn new(db: Db) -> Self {
        Projector { db }
    }

    /// A log whose appends keep these read models in step.
    pub fn log(self: &Arc<Self>) -> EventLog {
        EventLog::with_projection(self.db.clone(), self.clone())
    }

    /// Fold events appended without read models (by tools) into them; cheap when there are none.
    pub async fn catch_up(self: &Arc<Self>) -> Result<usize, StoreError> {
        self.log().project_lagging().await
    }

    /// Load the rows the events touch on the append's connection, fold, and answer the writes
    /// that store them.
    async fn apply(
        &self,
        conn: &mut AnyConnection,
        recorded: &[RecordedEvent],
    ) -> Result<Vec<Write>, StoreError> {
        let events = recorded.iter().map(typed).collect::<Result<Vec<_>, _>>()?;
        let mut ids: [BTreeSet<String>; 10] = Default::default();
        // Rows opened by the first event of their own stream cannot exist yet: not loaded.
        let mut new: BTreeSet<&str> = BTreeSet::new();
        for (r, e) in recorded.iter().zip(&events) {
            let (i, id) = match touches(e) {
                Touch::Nothing => continue,
                Touch::Org(id) => (0, id),
                Touch::Key(id) => (1, id),
                Touch::Group(id) => (2, id),
                Touch::Asset(id) => (3, id),
                Touch::Webhook(id) => (4, id),
                Touch::ScanJob(id) => (5, id),
                Touch::Finding(id) => (6, id),
                Touch::User(id) => (7, id),
                Touch::Monitor(id) => (8, id),
                Touch::Alert(id) => (9, id),
            };
            if new.contains(id) || ids[i].contains(id) {
                continue;
            }
            if r.stream_version == 1 && r.stream_id.ends_with(id) {
                new.insert(id);
            } else {
                ids[i].insert(id.to_string());
            }
        }
        // A deleted job changes every finding it detected: load them too.
        for e in &events {
            if let easm_events::Event::ScanDeleted(d) = e {
                let detected: Vec<String> = sqlx::query_scalar(
                    "SELECT finding_id FROM rm_findings WHERE scan_job_ids LIKE $1",
                )
                .bind(format!("%\"{}\"%", d.scan_job_id))
                .fetch_all(&mut *conn)
                .await?;
                ids[6].extend(detected);
            }
        }
        let mut state = ReadState::default();
        let size = chunk_rows(self.db.backend());
        load(conn, size, &ORGS, &ids[0], OrgRow::parse, &mut state.orgs).await?;
        load(conn, size, &KEYS, &ids[1], KeyRow::parse, &mut state.keys).await?;
        load(
            conn,
            size,
            &USERS,
            &ids[7],
            UserRow::parse,
            &mut state.users,
        )
        .await?;
        load(
            conn,
            size,
            &GROUPS,
            &ids[2],
            GroupRow::parse,
            &mut state.groups,
        )
        .await?;
        load(
            conn,
            size,
            &ASSETS,
            &ids[3],
            AssetRow::parse,
            &mut state.assets,
        )
        .await?;
        let webhooks = &mut state.webhooks;
        load(conn, size, &WEBHOOKS, &ids[4], WebhookRow::parse, webhooks).await?;
        let jobs = &mut state.scan_jobs;
        load(conn, size, &SCAN_JOBS, &ids[5], ScanJobRow::parse, jobs).await?;
        let findings = &mut state.findings;
        load(conn, size, &FINDINGS, &ids[6], FindingRow::parse, findings).await?;
        let monitors = &mut state.monitors;
        load(conn, size, &MONITORS, &ids[8], MonitorRow::parse, monitors).await?;
        let alerts = &mut state.alerts;
        load(conn, size, &ALERTS, &ids[9], AlertRow::parse, alerts).await?;
        for (r, e) in recorded.iter().zip(&events) {
            state.fold(r.into(), e);
        }
        Ok(state_writes(size, &state, &ids[3]))
    }

    /// Empty the read models and fold the whole log into them again, in one transaction: readers
    /// see the old models until the new ones commit, appends wait for it. Returns the number of
    /// events replayed.
    pub async fn rebuild(&self) -> Result<u64, StoreError> {
        let mut tx = self.db.writer().begin().await?;
        // Hold every append out (each holds the PostgreSQL lock shared from its first statement;
        // SQLite has one writer), so the log stands still and no append waits on a row here.
        let hold = match self.db.backend() {
            Backend::Postgres => format!("SELECT pg_advisory_xact_lock({APPENDS_LOCK})"),
            Backend::Sqlite => "UPDATE chain_heads SET projected_seq = projected_seq".into(),
        };
        sqlx::query(&hold).execute(&mut *tx).await?;
        let mut replay = Replay::default();
        let fold = |r: ReplayEvent| {
            replay.fold(r.chain_seq, (&r).into(), &r.event);
            Ok(())
        };
        // PostgreSQL reads the log and fills the new tables on a connection of its own.
        let mut filler = match self.db.backend() {
            Backend::Postgres => Some(ShadowFiller::open(&self.db, READ_MODEL_TABLES).await?),
            Backend::Sqlite => None,
        };
        let source = match &mut filler {
            Some(filler) => LogSource::Postgres(filler.connection()),
            None => LogSource::Sqlite(&mut tx),
        };
        EventLog::each_event(source, fold).await?;
        let count = replay.count;
        replay.write_in(&mut tx, &self.db, filler).await?;
        tx.commit().await?;
        Ok(count)
    }
}

impl InlineProjection for Projector {
    fn project<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<Vec<Write>, StoreError>> {
        Box::pin(self.apply(conn, events))
    }
}

/// Read models folded from a sequence of events and written into empty tables: the rebuild, a
/// point-in-time snapshot of one organization, and the shadow copy that verification compares.
#[derive(Default)]
pub struct Replay {
    state: ReadState,
    count: u64,
    /// Per organization, the last chain sequence folded.
    heads: BTreeMap<String, i64>,
}

impl Replay {
    pub fn apply(&mut self, r: &easm_events::RecordedEvent) -> Result<(), StoreError> {
        self.fold(r.chain_seq, r.into(), &typed(r)?);
        Ok(())
    }

    fn fold(&mut self, chain_seq: i64, origin: Origin<'_>, event: &Event) {
        self.state.fold(origin, event);
        self.count += 1;
        match self.heads.get_mut(origin.org_id) {
            Some(seq) => *seq = chain_seq,
            None => {
                self.heads.insert(origin.org_id.to_string(), chain_seq);
            }
        }
    }

    /// Events applied so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Replace the read models of `target` (another database) with this state.
    pub async fn write(self, target: &Db) -> Result<u64, StoreError> {
        let count = self.count;
        let mut tx = target.writer().begin().await?;
        self.write_in(&mut tx, target, None).await?;
        tx.commit().await?;
        Ok(count)
    }

    /// On PostgreSQL through `filler` if the caller opened one.
    async fn write_in(
        self,
        conn: &mut AnyConnection,
        db: &Db,
        filler: Option<ShadowFiller>,
    ) -> Result<(), StoreError> {
        match db.backend() {
            // Shadow tables filled by COPY, indexed, then swapped in (see `easm_store::swap_in`).
            Backend::Postgres => {
                let mut filler = match filler {
                    Some(filler) => filler,
                    None => ShadowFiller::open(db, READ_MODEL_TABLES).await?,
                };
                for rows in state_rows(&self.state) {
                    filler.fill(rows.table, &rows.columns, &rows.values).await?;
                }
                let mut shadows = vec![];
                for table in READ_MODEL_TABLES {
                    shadows.push(index_shadow(conn, table).await?);
                }
                swap_in(conn, &shadows).await?;
            }
            // SQLite deletes rows for good, so it refills the tables in place.
            Backend::Sqlite => {
                for table in READ_MODEL_TABLES {
                    sqlx::query(&format!("DELETE FROM {table}"))
                        .execute(&mut *conn)
                        .await?;
                }
                for rows in state_rows(&self.state) {
                    for write in rows.sqlite_inserts() {
                        write.run(conn).await?;
                    }
                }
            }
        }
        // What the models now hold (a snapshot holds only some organizations).
        sqlx::query("UPDATE chain_heads SET projected_seq = 0")
            .execute(&mut *conn)
            .await?;
        for (org_id, seq) in &self.heads {
            sqlx::query("UPDATE chain_heads SET projected_seq = $1 WHERE org_id = $2")
                .bind(seq)
                .bind(org_id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}
