//! Asset groups: name, and (at query time) how many assets they hold.

use crate::models::findings::FindingCounts;
use crate::read::{iso, Page, PageRequest, ReadModels};
use crate::state::{create, live, Origin, RowMap};
use crate::table::{id, ReadModel, Table};
use easm_domain::JobStatus;
use easm_events::{Event, GroupId, OrgId};
use easm_store::{AnyRow, Row, StoreError, Val};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq)]
pub struct GroupRow {
    pub org_id: OrgId,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

pub(crate) struct Groups;

impl ReadModel for Groups {
    type Row = GroupRow;
    const TABLE: Table = Table {
        name: "rm_groups",
        pk: "group_id",
        columns: &["org_id", "name", "created_at", "updated_at"],
    };

    fn key(event: &Event) -> Option<&str> {
        match event {
            Event::GroupCreated(g) => Some(g.group_id.as_str()),
            Event::GroupRenamed(g) => Some(g.group_id.as_str()),
            Event::GroupDeleted(g) => Some(g.group_id.as_str()),
            _ => None,
        }
    }

    fn fold(rows: &mut RowMap<GroupRow>, origin: Origin<'_>, event: &Event) {
        let at = origin.at;
        match event {
            Event::GroupCreated(g) => create(rows, &g.group_id, || GroupRow {
                org_id: origin.org_id.clone(),
                name: g.name.clone(),
                created_at: at,
                updated_at: at,
            }),
            Event::GroupRenamed(g) => {
                if let Some(row) = live(rows, &g.group_id) {
                    row.name = g.name.clone();
                    row.updated_at = at;
                }
            }
            Event::GroupDeleted(g) => {
                rows.insert(g.group_id.to_string(), None);
            }
            _ => {}
        }
    }

    fn vals(row: &GroupRow) -> Vec<Val> {
        vec![
            Val::Text(row.org_id.to_string()),
            Val::Text(row.name.clone()),
            Val::Int(row.created_at),
            Val::Int(row.updated_at),
        ]
    }

    fn parse(r: &AnyRow) -> Result<GroupRow, StoreError> {
        Ok(GroupRow {
            org_id: id(r, "org_id")?,
            name: r.try_get("name")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
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
pub struct GroupSummary {
    pub id: String,
    pub name: String,
    pub total_assets: i64,
    /// Asset count per type, every type present (zero where none).
    pub by_type: BTreeMap<String, i64>,
    /// Asset count per criticality, every level present.
    pub by_criticality: BTreeMap<String, i64>,
    /// Assets of the group with at least one completed scan.
    pub scanned_assets: i64,
    /// Scan jobs of the group's assets created in the last [`RECENT_DAYS`] days.
    pub recent_scans: RecentScans,
    /// When the last completed scan of one of the group's assets finished.
    pub last_scan_at: Option<String>,
    /// The findings of the group's assets the API shows, per severity and per status.
    pub findings: FindingCounts,
}

/// How far back a group's summary counts its scans.
pub const RECENT_DAYS: i64 = 30;

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecentScans {
    pub days: i64,
    pub total: i64,
    /// Jobs per status, every status present.
    pub by_status: BTreeMap<String, i64>,
}

const GROUP_COLUMNS: &str = "g.group_id, g.name, g.created_at, g.updated_at, \
     (SELECT COUNT(*) FROM rm_assets a WHERE a.group_id = g.group_id) AS asset_count";

fn group(r: &AnyRow) -> Result<GroupView, StoreError> {
    Ok(GroupView {
        id: r.try_get("group_id")?,
        name: r.try_get("name")?,
        asset_count: r.try_get("asset_count")?,
        created_at: iso(r.try_get("created_at")?),
        updated_at: iso(r.try_get("updated_at")?),
    })
}

impl ReadModels {
    pub async fn groups(
        &self,
        org_id: &OrgId,
        p: PageRequest,
    ) -> Result<Page<GroupView>, StoreError> {
        let order = "g.created_at, g.group_id";
        self.org_page(GROUP_COLUMNS, "rm_groups g", "g", order, org_id, p, group)
            .await
    }

    pub async fn group(
        &self,
        org_id: &OrgId,
        group_id: &GroupId,
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

    /// The oldest live group of the organization with this name.
    pub async fn group_named(
        &self,
        org_id: &OrgId,
        name: &str,
    ) -> Result<Option<GroupId>, StoreError> {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT group_id FROM rm_groups WHERE org_id = $1 AND name = $2 \
             ORDER BY created_at, group_id LIMIT 1",
        )
        .bind(org_id.as_str())
        .bind(name)
        .fetch_optional(self.db.reader())
        .await?;
        Ok(found.map(GroupId::new))
    }

    pub async fn group_summary(
        &self,
        org_id: &OrgId,
        group_id: &GroupId,
    ) -> Result<Option<GroupSummary>, StoreError> {
        let Some(g) = self.group(org_id, group_id).await? else {
            return Ok(None);
        };
        let (by_type, by_criticality) = self.asset_breakdown("group_id", group_id.as_str()).await?;
        let (scanned_assets, recent_scans, last_scan_at) = self.group_scans(group_id).await?;
        Ok(Some(GroupSummary {
            id: g.id,
            name: g.name,
            total_assets: g.asset_count,
            by_type,
            by_criticality,
            scanned_assets,
            recent_scans,
            last_scan_at,
            findings: self.group_finding_counts(org_id, group_id).await?,
        }))
    }

    /// The scans of the group's assets: how many assets have a completed one, the jobs of the
    /// last [`RECENT_DAYS`] days by status, when the last completed one finished.
    async fn group_scans(
        &self,
        group_id: &GroupId,
    ) -> Result<(i64, RecentScans, Option<String>), StoreError> {
        let completed = JobStatus::Completed.as_str();
        let (scanned, last): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(DISTINCT s.asset_id), MAX(s.finished_at) FROM rm_scan_jobs s \
             JOIN rm_assets a ON a.asset_id = s.asset_id WHERE a.group_id = $1 AND s.status = $2",
        )
        .bind(group_id.as_str())
        .bind(completed)
        .fetch_one(self.db.reader())
        .await?;
        let since = easm_store::now_micros() - RECENT_DAYS * 86_400_000_000;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT s.status, COUNT(*) FROM rm_scan_jobs s \
             JOIN rm_assets a ON a.asset_id = s.asset_id \
             WHERE a.group_id = $1 AND s.created_at >= $2 GROUP BY s.status",
        )
        .bind(group_id.as_str())
        .bind(since)
        .fetch_all(self.db.reader())
        .await?;
        let mut by_status: BTreeMap<String, i64> = JobStatus::STORED
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        by_status.extend(rows);
        let recent = RecentScans {
            days: RECENT_DAYS,
            total: by_status.values().sum(),
            by_status,
        };
        Ok((scanned, recent, last.map(iso)))
    }
}
