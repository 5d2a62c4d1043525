//! `easm admin`: organizations, members and API keys from the command line, as the system actor
//! `cli` (account actions are never callable with an API key). Each prints one JSON object.

use crate::config::{parse_key_kind, parse_plan, parse_role};
use anyhow::{bail, Context, Result};
use easm_app::{new_id, App, KeyOrder};
use easm_domain::{Plan, Role};
use easm_events::{Actor, EventMeta, KeyId, KeyKind, OrgId, UserId};
use serde_json::json;

#[derive(clap::Subcommand)]
pub enum Admin {
    /// Create an organization and its owner key; prints {"orgId","ownerKey"}.
    CreateOrg {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "free", value_parser = parse_plan)]
        plan: Plan,
    },
    /// Create an API key (`--kind mcp`: a key of the MCP server); prints {"keyId","key"}. With
    /// --user the key is the member's: it acts with at most the member's current role (their
    /// role when --role is left out).
    CreateKey {
        #[arg(long)]
        org: OrgId,
        #[arg(long, value_parser = parse_role, required_unless_present = "user")]
        role: Option<Role>,
        #[arg(long, default_value = "cli key")]
        name: String,
        /// The member (user id) the key belongs to.
        #[arg(long)]
        user: Option<UserId>,
        /// `rest` (an `ag_sk_` key of the REST API) or `mcp` (an `mcp_sk_` key of the MCP server).
        #[arg(long, default_value = "rest", value_parser = parse_key_kind)]
        kind: KeyKind,
        /// An MCP key that may use the write tools its role allows.
        #[arg(long)]
        allow_writes: bool,
    },
    /// Add a member to an organization; prints {"userId","email","role"}.
    AddUser {
        #[arg(long)]
        org: OrgId,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Change a member's role (their keys follow); prints {"userId","role"}.
    SetRole {
        #[arg(long)]
        user_id: UserId,
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Remove a member and revoke their keys; prints {"userId","removed","revokedKeys"}.
    RemoveUser {
        #[arg(long)]
        user_id: UserId,
    },
    /// Revoke an API key or an MCP key.
    RevokeKey {
        #[arg(long)]
        key_id: KeyId,
    },
}

/// What the command line does is recorded as the system actor `cli`.
pub fn cli_meta() -> EventMeta {
    EventMeta::new(Actor::system_part("cli"), new_id::<String>())
}

pub async fn run(app: &App, command: Admin) -> Result<()> {
    let meta = cli_meta();
    let answer = match command {
        Admin::CreateOrg { name, plan } => {
            let (org_id, key) = app.create_org(&meta, &name, plan).await?;
            json!({"orgId": org_id, "ownerKey": key.secret})
        }
        Admin::CreateKey {
            org,
            role,
            name,
            user,
            kind,
            allow_writes,
        } => {
            let order = KeyOrder {
                kind,
                role,
                name: &name,
                user_id: user.as_ref(),
                allow_writes,
            };
            let key = app.create_key(&meta, &org, order).await?;
            json!({"keyId": key.key_id, "key": key.secret})
        }
        Admin::AddUser {
            org,
            email,
            role,
            name,
        } => {
            let (user_id, email) = app.add_user(&meta, &org, &email, &name, role).await?;
            json!({"userId": user_id, "email": email, "role": role.as_str()})
        }
        Admin::SetRole { user_id, role } => {
            let org = member_org(app, &user_id).await?;
            app.change_role(&meta, &org, &user_id, role).await?;
            json!({"userId": user_id, "role": role.as_str()})
        }
        Admin::RemoveUser { user_id } => {
            let org = member_org(app, &user_id).await?;
            let revoked = app.remove_user(&meta, &org, &user_id).await?;
            json!({"userId": user_id, "removed": true, "revokedKeys": revoked})
        }
        Admin::RevokeKey { key_id } => {
            let Some((org, kind)) = app.read().key_owner(&key_id).await? else {
                bail!("no API key with id {key_id}");
            };
            app.revoke_key(&meta, &org, &key_id, kind).await?;
            json!({"keyId": key_id, "revoked": true})
        }
    };
    println!("{answer}");
    Ok(())
}

/// On an empty store, create organization `default` and print its owner key once.
pub async fn bootstrap(app: &App, listen: &str) -> Result<()> {
    if app.read().org_count().await? > 0 {
        return Ok(());
    }
    let (org_id, key) = app
        .create_org(&cli_meta(), "default", Plan::Enterprise)
        .await?;
    println!(
        "Created organization \"default\" ({org_id}). Its owner API key is shown only this once:"
    );
    println!("  {}", key.secret);
    println!("Try it:");
    println!(
        "  curl -H \"X-API-Key: {}\" http://{listen}/api/assets",
        key.secret
    );
    Ok(())
}

async fn member_org(app: &App, user_id: &UserId) -> Result<OrgId> {
    app.read()
        .user_org(user_id)
        .await?
        .with_context(|| format!("no member with id {user_id}"))
}
