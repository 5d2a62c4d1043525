//! Members of an organization: e-mail, name, role.

use crate::read::{iso, Page, PageRequest, ReadModels};
use crate::state::{create, live, Origin, RowMap};
use crate::table::{id, ReadModel, Table};
use easm_events::{Event, OrgId, Role, UserId};
use easm_store::{AnyRow, Row, StoreError, Val};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq)]
pub struct UserRow {
    pub org_id: OrgId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: i64,
    pub updated_at: i64,
}

pub(crate) struct Users;

impl ReadModel for Users {
    type Row = UserRow;
    const TABLE: Table = Table {
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

    fn key(event: &Event) -> Option<&str> {
        match event {
            Event::UserAdded(u) => Some(u.user_id.as_str()),
            Event::UserRoleChanged(u) => Some(u.user_id.as_str()),
            Event::UserRemoved(u) => Some(u.user_id.as_str()),
            _ => None,
        }
    }

    fn fold(rows: &mut RowMap<UserRow>, origin: Origin<'_>, event: &Event) {
        let at = origin.at;
        match event {
            Event::UserAdded(u) => create(rows, &u.user_id, || UserRow {
                org_id: origin.org_id.clone(),
                email: u.email.clone(),
                name: u.name.clone(),
                role: u.role,
                created_at: at,
                updated_at: at,
            }),
            Event::UserRoleChanged(u) => {
                if let Some(row) = live(rows, &u.user_id) {
                    row.role = u.role;
                    row.updated_at = at;
                }
            }
            Event::UserRemoved(u) => {
                rows.insert(u.user_id.to_string(), None);
            }
            _ => {}
        }
    }

    fn vals(row: &UserRow) -> Vec<Val> {
        vec![
            Val::Text(row.org_id.to_string()),
            Val::Text(row.email.clone()),
            Val::Text(row.name.clone()),
            Val::Text(row.role.as_str().into()),
            Val::Int(row.created_at),
            Val::Int(row.updated_at),
        ]
    }

    fn parse(r: &AnyRow) -> Result<UserRow, StoreError> {
        Ok(UserRow {
            org_id: id(r, "org_id")?,
            email: r.try_get("email")?,
            name: r.try_get("name")?,
            role: Self::TABLE.named(r, "role", Role::parse)?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
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

impl ReadModels {
    /// The organization's members, oldest first.
    pub async fn users(
        &self,
        org_id: &OrgId,
        p: PageRequest,
    ) -> Result<Page<UserView>, StoreError> {
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
    pub async fn user_org(&self, user_id: &UserId) -> Result<Option<OrgId>, StoreError> {
        Ok(
            sqlx::query_scalar::<_, String>("SELECT org_id FROM rm_users WHERE user_id = $1")
                .bind(user_id.as_str())
                .fetch_optional(self.db.reader())
                .await?
                .map(OrgId::new),
        )
    }
}
