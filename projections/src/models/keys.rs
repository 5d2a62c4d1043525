//! API keys: role, prefix, hash (for authentication), revocation, the member they belong to;
//! their last use is kept beside them (`api_key_usage`), outside the log.

use crate::read::{iso, Page, PageRequest, ReadModels};
use crate::state::{create, live, Origin, RowMap};
use crate::table::{id, opt_id, ReadModel, Table};
use easm_domain::{Plan, Role};
use easm_events::{Event, KeyId, OrgId, UserId};
use easm_store::{AnyRow, Row, StoreError, Val};
use serde::Serialize;
use std::collections::HashMap;
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq)]
pub struct KeyRow {
    pub org_id: OrgId,
    pub name: String,
    pub role: Role,
    pub key_hash: String,
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub user_id: Option<UserId>,
}

pub(crate) struct Keys;

impl ReadModel for Keys {
    type Row = KeyRow;
    const TABLE: Table = Table {
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

    fn key(event: &Event) -> Option<&str> {
        match event {
            Event::ApiKeyCreated(k) => Some(k.key_id.as_str()),
            Event::ApiKeyRevoked(k) => Some(k.key_id.as_str()),
            _ => None,
        }
    }

    fn fold(rows: &mut RowMap<KeyRow>, origin: Origin<'_>, event: &Event) {
        match event {
            Event::ApiKeyCreated(k) => create(rows, &k.key_id, || KeyRow {
                org_id: origin.org_id.clone(),
                name: k.name.clone(),
                role: k.role,
                key_hash: k.key_hash.clone(),
                prefix: k.prefix.clone(),
                created_at: origin.at,
                revoked_at: None,
                user_id: k.user_id.clone(),
            }),
            Event::ApiKeyRevoked(k) => {
                if let Some(row) = live(rows, &k.key_id) {
                    row.revoked_at = Some(origin.at);
                }
            }
            _ => {}
        }
    }

    fn vals(row: &KeyRow) -> Vec<Val> {
        vec![
            Val::Text(row.org_id.to_string()),
            Val::Text(row.name.clone()),
            Val::Text(row.role.as_str().into()),
            Val::Text(row.key_hash.clone()),
            Val::Text(row.prefix.clone()),
            Val::Int(row.created_at),
            Val::OptInt(row.revoked_at),
            Val::OptText(row.user_id.as_ref().map(ToString::to_string)),
        ]
    }

    fn parse(r: &AnyRow) -> Result<KeyRow, StoreError> {
        Ok(KeyRow {
            org_id: id(r, "org_id")?,
            name: r.try_get("name")?,
            role: Self::TABLE.named(r, "role", Role::parse)?,
            key_hash: r.try_get("key_hash")?,
            prefix: r.try_get("prefix")?,
            created_at: r.try_get("created_at")?,
            revoked_at: r.try_get("revoked_at")?,
            user_id: opt_id(r, "user_id")?,
        })
    }
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

/// An API key as authentication needs it.
#[derive(Debug, Clone)]
pub struct KeyAuth {
    pub key_id: KeyId,
    pub org_id: OrgId,
    pub role: Role,
    pub plan: Plan,
    pub prefix: String,
    pub revoked: bool,
    /// The role of the member the key belongs to, if it belongs to one.
    pub user_role: Option<Role>,
    pub user_id: Option<UserId>,
}

impl ReadModels {
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
                key_id: id(&r, "key_id")?,
                org_id: id(&r, "org_id")?,
                role: Keys::TABLE.named(&r, "role", Role::parse)?,
                prefix: r.try_get("prefix")?,
                plan: Keys::TABLE.named(&r, "plan", Plan::parse)?,
                revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
                user_role: Keys::TABLE.opt_named(&r, "user_role", Role::parse)?,
                user_id: opt_id(&r, "user_id")?,
            })
        })
        .transpose()
    }

    /// Every key of an organization (revoked too) with its prefix, for the audit trail.
    pub async fn key_prefixes(
        &self,
        org_id: &OrgId,
    ) -> Result<HashMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT key_id, prefix FROM rm_api_keys WHERE org_id = $1")
            .bind(org_id.as_str())
            .fetch_all(self.db.reader())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("key_id")?, r.try_get("prefix")?)))
            .collect()
    }

    /// The organization a key belongs to.
    pub async fn key_org(&self, key_id: &KeyId) -> Result<Option<OrgId>, StoreError> {
        Ok(
            sqlx::query_scalar::<_, String>("SELECT org_id FROM rm_api_keys WHERE key_id = $1")
                .bind(key_id.as_str())
                .fetch_optional(self.db.reader())
                .await?
                .map(OrgId::new),
        )
    }

    pub async fn touch_key(&self, key_id: &KeyId, at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_key_usage (key_id, last_used_at) VALUES ($1, $2) \
             ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at",
        )
        .bind(key_id.as_str())
        .bind(at)
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    pub async fn keys(
        &self,
        org_id: &OrgId,
        p: PageRequest,
    ) -> Result<Page<ApiKeyView>, StoreError> {
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
}
