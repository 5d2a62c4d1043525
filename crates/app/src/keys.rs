//! API keys and MCP keys: made for the organization or for one of its members, and revoked.

use crate::execute::Decision;
use crate::streams::org_stream;
use crate::{App, CommandError, IssuedKey};
use easm_domain::{DomainError, NewKey, Organization, Role};
use easm_events::{EventMeta, KeyId, KeyKind, OrgId, UserId};

/// What a key is to be made as.
#[derive(Debug, Clone)]
pub struct KeyOrder<'a> {
    pub kind: KeyKind,
    /// The member's role when left out (a key of the organization needs one).
    pub role: Option<Role>,
    pub name: &'a str,
    /// The member the key belongs to.
    pub user_id: Option<&'a UserId>,
    /// MCP keys only: the write tools the role allows.
    pub allow_writes: bool,
}

impl<'a> KeyOrder<'a> {
    /// A REST API key.
    pub fn rest(role: Option<Role>, name: &'a str, user_id: Option<&'a UserId>) -> Self {
        KeyOrder {
            kind: KeyKind::Rest,
            role,
            name,
            user_id,
            allow_writes: false,
        }
    }
}

impl App {
    /// A key of the organization, or of a member; shown (its secret) only in this answer.
    pub async fn create_key(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        order: KeyOrder<'_>,
    ) -> Result<IssuedKey, CommandError> {
        let key = IssuedKey::generate(order.kind);
        let stream = org_stream(org_id);
        self.execute(org_id, meta, || async {
            let (v, org) = self.load::<Organization>(org_id, &stream).await?;
            let role = match (order.role, order.user_id) {
                (Some(role), _) => role,
                (None, Some(user)) => org.user(user)?.role,
                (None, None) => return Err(DomainError::validation("role", "is required").into()),
            };
            let events = org.create_key(key.new_key(&order, role))?;
            Ok(Decision::one(stream.clone(), v, events))
        })
        .await?;
        Ok(key)
    }

    /// Revoke a key of `kind`: a key of the other kind is not found.
    pub async fn revoke_key(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        key_id: &KeyId,
        kind: KeyKind,
    ) -> Result<(), CommandError> {
        self.on_stream(org_id, meta, org_stream(org_id), |org: &Organization| {
            org.revoke_key(key_id, kind)
        })
        .await?;
        Ok(())
    }
}

impl IssuedKey {
    pub(crate) fn new_key(&self, order: &KeyOrder<'_>, role: Role) -> NewKey {
        NewKey {
            key_id: self.key_id.clone(),
            name: order.name.to_string(),
            role,
            key_hash: self.hash(),
            prefix: self.prefix(),
            user_id: order.user_id.cloned(),
            kind: order.kind,
            allow_writes: order.allow_writes,
        }
    }
}
