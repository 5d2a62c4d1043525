//! Assets: value, type, group, criticality and tags (also kept one per row in `rm_asset_tags`,
//! so the tag filter is an index lookup).

use crate::models::alerts::Alerts;
use crate::models::findings::Findings;
use crate::models::scan_jobs::ScanJobs;
use crate::read::{iso, like_pattern, zeros, Page, PageRequest, ReadModels};
use crate::state::{create, live, Origin, ReadState, RowMap};
use crate::table::{id, to_json, ChildTable, ReadModel, Table};
use easm_domain::{AssetType, Criticality};
use easm_events::{AlertId, AssetId, Event, FindingId, GroupId, OrgId, RecordedEvent, ScanJobId};
use easm_store::{AnyRow, Filter, Row, StoreError, Val};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq)]
pub struct AssetRow {
    pub org_id: OrgId,
    pub group_id: GroupId,
    pub value: String,
    pub asset_type: String,
    pub tags: Vec<String>,
    pub criticality: String,
    pub created_at: i64,
    pub updated_at: i64,
}

pub(crate) struct Assets;

impl ReadModel for Assets {
    type Row = AssetRow;
    const TABLE: Table = Table {
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

    fn key(event: &Event) -> Option<&str> {
        match event {
            Event::AssetAdded(a) => Some(a.asset_id.as_str()),
            Event::AssetUpdated(a) => Some(a.asset_id.as_str()),
            Event::AssetRemoved(a) => Some(a.asset_id.as_str()),
            _ => None,
        }
    }

    fn fold(rows: &mut RowMap<AssetRow>, origin: Origin<'_>, event: &Event) {
        let at = origin.at;
        match event {
            Event::AssetAdded(a) => create(rows, &a.asset_id, || AssetRow {
                org_id: origin.org_id.clone(),
                group_id: a.group_id.clone(),
                value: a.value.clone(),
                asset_type: a.asset_type.clone(),
                tags: a.tags.clone(),
                criticality: a.criticality.clone(),
                created_at: at,
                updated_at: at,
            }),
            Event::AssetUpdated(a) => {
                if let Some(row) = live(rows, &a.asset_id) {
                    if let Some(g) = &a.group_id {
                        row.group_id = g.clone();
                    }
                    if let Some(t) = &a.tags {
                        row.tags = t.clone();
                    }
                    if let Some(c) = &a.criticality {
                        row.criticality = c.clone();
                    }
                    row.updated_at = at;
                }
            }
            Event::AssetRemoved(a) => {
                rows.insert(a.asset_id.to_string(), None);
            }
            _ => {}
        }
    }

    fn vals(row: &AssetRow) -> Vec<Val> {
        vec![
            Val::Text(row.org_id.to_string()),
            Val::Text(row.group_id.to_string()),
            Val::Text(row.value.clone()),
            Val::Text(row.asset_type.clone()),
            Val::Text(to_json(&row.tags)),
            Val::Text(row.criticality.clone()),
            Val::Int(row.created_at),
            Val::Int(row.updated_at),
        ]
    }

    fn parse(r: &AnyRow) -> Result<AssetRow, StoreError> {
        Ok(AssetRow {
            org_id: id(r, "org_id")?,
            group_id: id(r, "group_id")?,
            value: r.try_get("value")?,
            asset_type: r.try_get("asset_type")?,
            tags: Self::TABLE.json(r, "tags")?,
            criticality: r.try_get("criticality")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }

    const CHILD: Option<ChildTable> = Some(ChildTable {
        name: "rm_asset_tags",
        columns: &["asset_id", "org_id", "tag"],
    });

    fn child_values(rows: &RowMap<AssetRow>) -> Vec<Val> {
        tag_rows(rows)
    }
}

/// The values of the tag rows of the live assets (asset id, organization, tag).
fn tag_rows(rows: &RowMap<AssetRow>) -> Vec<Val> {
    rows.iter()
        .filter_map(|(id, a)| a.as_ref().map(|a| (id, a)))
        .flat_map(|(id, a)| a.tags.iter().map(move |t| (id, &a.org_id, t)))
        .flat_map(|(id, org, tag)| [id.as_str(), org.as_str(), tag].map(|v| Val::Text(v.into())))
        .collect()
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

#[derive(Debug, Default, Clone)]
pub struct AssetFilter {
    pub asset_type: Option<String>,
    pub group_id: Option<String>,
    pub tag: Option<String>,
    pub criticality: Option<String>,
    pub q: Option<String>,
}

const ASSET_COLUMNS: &str =
    "a.asset_id, a.org_id, a.value, a.asset_type, a.group_id, a.tags, a.criticality, a.created_at, \
     a.updated_at";

fn asset(r: &AnyRow) -> Result<AssetView, StoreError> {
    Ok(asset_view(r.try_get("asset_id")?, Assets::parse(r)?))
}

fn asset_view(id: String, row: AssetRow) -> AssetView {
    AssetView {
        id,
        value: row.value,
        asset_type: row.asset_type,
        group_id: row.group_id.into_string(),
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
        if let Event::AssetAdded(a) = &event {
            order.push(a.asset_id.clone());
        }
        state.fold(r.into(), &event);
    }
    Ok(order
        .into_iter()
        .filter_map(|id| {
            let row = state.assets.remove(id.as_str()).flatten()?;
            Some(asset_view(id.into_string(), row))
        })
        .collect())
}

impl ReadModels {
    /// Assets per type and per criticality (each present, zero where none) whose `column`
    /// (`org_id` or `group_id`) is `value`.
    pub(crate) async fn asset_breakdown(
        &self,
        column: &str,
        value: &str,
    ) -> Result<(BTreeMap<String, i64>, BTreeMap<String, i64>), StoreError> {
        let mut by_type = zeros(AssetType::ALL.iter().map(|t| t.as_str()));
        let mut by_criticality = zeros(Criticality::ALL.iter().map(|c| c.as_str()));
        for (key, map) in [
            ("asset_type", &mut by_type),
            ("criticality", &mut by_criticality),
        ] {
            let sql =
                format!("SELECT {key}, COUNT(*) FROM rm_assets WHERE {column} = $1 GROUP BY {key}");
            map.extend(self.grouped(&sql, value).await?);
        }
        Ok((by_type, by_criticality))
    }

    pub async fn assets(
        &self,
        org_id: &OrgId,
        f: &AssetFilter,
        p: PageRequest,
    ) -> Result<Page<AssetView>, StoreError> {
        let mut w = Filter::by("a.org_id", org_id.as_str());
        w.eq("a.asset_type", f.asset_type.as_deref());
        w.eq("a.group_id", f.group_id.as_deref());
        w.eq("a.criticality", f.criticality.as_deref());
        if let Some(t) = &f.tag {
            let p = w.bind(t.as_str());
            w.push(format!(
                "EXISTS (SELECT 1 FROM rm_asset_tags t WHERE t.asset_id = a.asset_id AND t.tag = {p})"
            ));
        }
        if let Some(q) = &f.q {
            let p = w.bind(like_pattern(q));
            w.push(format!("LOWER(a.value) LIKE {p} ESCAPE '\\'"));
        }
        self.filtered_page(
            ASSET_COLUMNS,
            "rm_assets a",
            "a.created_at, a.asset_id",
            &w,
            p,
            asset,
        )
        .await
    }

    pub async fn asset(
        &self,
        org_id: &OrgId,
        asset_id: &AssetId,
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::state::given;
    use easm_events::{AssetAdded, AssetRemoved, AssetUpdated};

    /// Asset `id` added to group `g1`.
    pub(crate) fn added(id: &str) -> Event {
        Event::AssetAdded(AssetAdded {
            asset_id: id.into(),
            group_id: "g1".into(),
            value: format!("{id}.example.com"),
            asset_type: "domain".into(),
            tags: vec!["prod".into()],
            criticality: "medium".into(),
            discovery_job_id: None,
        })
    }

    #[test]
    fn an_update_changes_only_what_it_names() {
        let state = given::events([
            added("a1"),
            Event::AssetUpdated(AssetUpdated {
                asset_id: "a1".into(),
                group_id: Some("g2".into()),
                tags: None,
                criticality: Some("high".into()),
            }),
        ]);
        let row = state.assets["a1"].clone().expect("live");
        assert_eq!(
            (row.group_id.as_str(), row.criticality.as_str(), row.tags),
            ("g2", "high", vec!["prod".to_string()])
        );
        assert_eq!((row.created_at, row.updated_at), (0, 1));
    }

    #[test]
    fn a_removed_asset_is_deleted_with_its_tags_and_a_replayed_add_changes_nothing() {
        let state = given::events([
            added("a1"),
            added("a2"),
            Event::AssetRemoved(AssetRemoved {
                asset_id: "a1".into(),
                value: "a1.example.com".into(),
                group_id: "g1".into(),
            }),
            added("a1"),
        ]);
        assert_eq!(state.assets["a1"], None);
        let tags = tag_rows(&state.assets);
        assert_eq!(
            tags.len(),
            3,
            "one tag row (asset, org, tag) of the live asset"
        );
        assert_eq!(tags[0], Val::Text("a2".into()));
    }
}

/// What the read models hold of one asset beyond its row, by id: its scan jobs, findings and
/// alerts (for its timeline).
#[derive(Debug, Default, PartialEq)]
pub struct AssetRelated {
    pub scan_jobs: Vec<ScanJobId>,
    pub findings: Vec<FindingId>,
    pub alerts: Vec<AlertId>,
}

impl ReadModels {
    pub async fn asset_related(
        &self,
        org_id: &OrgId,
        asset_id: &AssetId,
    ) -> Result<AssetRelated, StoreError> {
        Ok(AssetRelated {
            scan_jobs: self
                .ids_of_asset(&ScanJobs::TABLE, org_id, asset_id)
                .await?,
            findings: self
                .ids_of_asset(&Findings::TABLE, org_id, asset_id)
                .await?,
            alerts: self.ids_of_asset(&Alerts::TABLE, org_id, asset_id).await?,
        })
    }

    /// The keys of the rows of `table` that belong to the asset.
    async fn ids_of_asset<T: From<String>>(
        &self,
        table: &Table,
        org_id: &OrgId,
        asset_id: &AssetId,
    ) -> Result<Vec<T>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT {} FROM {} WHERE asset_id = $1 AND org_id = $2",
            table.pk, table.name
        ))
        .bind(asset_id.as_str())
        .bind(org_id.as_str())
        .fetch_all(self.db.reader())
        .await?;
        Ok(ids.into_iter().map(T::from).collect())
    }
}
