//! Organizations: name, plan, when created.

use crate::read::{iso, ReadModels};
use crate::state::{create, Origin, RowMap};
use crate::table::{ReadModel, Table};
use easm_events::{Event, OrgId, Plan};
use easm_store::{AnyRow, Row, StoreError, Val};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq)]
pub struct OrgRow {
    pub name: String,
    pub plan: Plan,
    pub created_at: i64,
}

pub(crate) struct Orgs;

impl ReadModel for Orgs {
    type Row = OrgRow;
    const TABLE: Table = Table {
        name: "rm_orgs",
        pk: "org_id",
        columns: &["name", "plan", "created_at"],
    };

    fn key(event: &Event) -> Option<&str> {
        match event {
            Event::OrgCreated(o) => Some(o.org_id.as_str()),
            _ => None,
        }
    }

    fn fold(rows: &mut RowMap<OrgRow>, origin: Origin<'_>, event: &Event) {
        if let Event::OrgCreated(o) = event {
            create(rows, &o.org_id, || OrgRow {
                name: o.name.clone(),
                plan: o.plan,
                created_at: origin.at,
            })
        }
    }

    fn vals(row: &OrgRow) -> Vec<Val> {
        vec![
            Val::Text(row.name.clone()),
            Val::Text(row.plan.as_str().into()),
            Val::Int(row.created_at),
        ]
    }

    fn parse(r: &AnyRow) -> Result<OrgRow, StoreError> {
        Ok(OrgRow {
            name: r.try_get("name")?,
            plan: Self::TABLE.named(r, "plan", Plan::parse)?,
            created_at: r.try_get("created_at")?,
        })
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

impl ReadModels {
    pub async fn org(&self, org_id: &OrgId) -> Result<Option<OrgView>, StoreError> {
        let row =
            sqlx::query("SELECT org_id, name, plan, created_at FROM rm_orgs WHERE org_id = $1")
                .bind(org_id.as_str())
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
}
