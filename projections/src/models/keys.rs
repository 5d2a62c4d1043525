//! API keys and MCP keys: kind, role, prefix, hash (for authentication), revocation, the member
//! they belong to; their last use is kept beside them (`api_key_usage`), outside the log.

use crate::read::{iso, Page, PageRequest, ReadModels};
use crate::state::{create, live, Origin, RowMap};
use crate::table::{id, opt_id, ReadModel, Table};
use easm_domain::{Plan, Role};
use easm_events::{Event, KeyId, KeyKind, OrgId, UserId};
use easm_store::{AnyRow, Filter, Row, StoreError, Val};
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
    pub kind: KeyKind,
    pub allow_writes: bool,
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
            "kind",
            "allow_writes",
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
                kind: k.kind,
                allow_writes: k.allow_writes,
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
            Val::Text(row.kind.as_str().into()),
            Val::Int(row.allow_writes.into()),
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
            kind: Self::TABLE.named(r, "kind", KeyKind::parse)?,
            allow_writes: r.try_get::<i64, _>("allow_writes")? != 0,
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

/// An MCP key as listed: an API key's fields, and whether it may use the write tools.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct McpKeyView {
    #[serde(flatten)]
    pub key: ApiKeyView,
    pub allow_writes: bool,
}

fn mcp_key_view(r: &AnyRow) -> Result<McpKeyView, StoreError> {
    Ok(McpKeyView {
        key: api_key(r)?,
        allow_writes: r.try_get::<i64, _>("allow_writes")? != 0,
    })
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

const KEY_COLUMNS: &str = "k.key_id, k.name, k.role, k.prefix, k.created_at, k.revoked_at, \
     k.user_id, k.kind, k.allow_writes, u.last_used_at";
const KEYS_FROM: &str = "rm_api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.key_id";

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
    pub kind: KeyKind,
    pub allow_writes: bool,
}

impl ReadModels {
    pub async fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyAuth>, StoreError> {
        let row = sqlx::query(
            "SELECT k.key_id, k.org_id, k.role, k.prefix, k.revoked_at, k.user_id, k.kind, \
             k.allow_writes, o.plan, m.role AS user_role \
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
                kind: Keys::TABLE.named(&r, "kind", KeyKind::parse)?,
                allow_writes: r.try_get::<i64, _>("allow_writes")? != 0,
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

    /// The organization a key belongs to, and the key's kind.
    pub async fn key_owner(&self, key_id: &KeyId) -> Result<Option<(OrgId, KeyKind)>, StoreError> {
        let row = sqlx::query("SELECT org_id, kind FROM rm_api_keys WHERE key_id = $1")
            .bind(key_id.as_str())
            .fetch_optional(self.db.reader())
            .await?;
        row.map(|r| {
            Ok((
                id(&r, "org_id")?,
                Keys::TABLE.named(&r, "kind", KeyKind::parse)?,
            ))
        })
        .transpose()
    }

    /// Count one more MCP call of the key in `minute` (epoch minutes); how many it has made in
    /// it, this one included. The key's earlier minutes are forgotten as a new one starts.
    pub async fn count_mcp_call(&self, key_id: &KeyId, minute: i64) -> Result<i64, StoreError> {
        let calls: i64 = sqlx::query_scalar(
            "INSERT INTO mcp_key_calls (key_id, minute, calls) VALUES ($1, $2, 1) \
             ON CONFLICT (key_id, minute) DO UPDATE SET calls = mcp_key_calls.calls + 1 \
             RETURNING calls",
        )
        .bind(key_id.as_str())
        .bind(minute)
        .fetch_one(self.db.writer())
        .await?;
        if calls == 1 {
            sqlx::query("DELETE FROM mcp_key_calls WHERE key_id = $1 AND minute < $2")
                .bind(key_id.as_str())
                .bind(minute)
                .execute(self.db.writer())
                .await?;
        }
        Ok(calls)
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

    /// The REST keys of an organization.
    pub async fn keys(
        &self,
        org_id: &OrgId,
        p: PageRequest,
    ) -> Result<Page<ApiKeyView>, StoreError> {
        self.keys_of(KeyKind::Rest, org_id, p, api_key).await
    }

    /// The MCP keys of an organization.
    pub async fn mcp_keys(
        &self,
        org_id: &OrgId,
        p: PageRequest,
    ) -> Result<Page<McpKeyView>, StoreError> {
        self.keys_of(KeyKind::Mcp, org_id, p, mcp_key_view).await
    }

    /// One MCP key of an organization.
    pub async fn mcp_key(
        &self,
        org_id: &OrgId,
        key_id: &KeyId,
    ) -> Result<Option<McpKeyView>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM {KEYS_FROM} \
             WHERE k.org_id = $1 AND k.key_id = $2 AND k.kind = 'mcp'"
        ))
        .bind(org_id.as_str())
        .bind(key_id.as_str())
        .fetch_optional(self.db.reader())
        .await?;
        row.as_ref().map(mcp_key_view).transpose()
    }

    async fn keys_of<T>(
        &self,
        kind: KeyKind,
        org_id: &OrgId,
        p: PageRequest,
        view: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let mut w = Filter::by("k.org_id", org_id.as_str());
        w.eq("k.kind", Some(kind.as_str()));
        self.filtered_page(
            KEY_COLUMNS,
            KEYS_FROM,
            "k.created_at, k.key_id",
            &w,
            p,
            view,
        )
        .await
    }
}
