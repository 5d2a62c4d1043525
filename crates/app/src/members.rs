//! Members of an organization: added, re-roled and removed (their keys follow in the same
//! append).

use crate::streams::org_stream;
use crate::{new_id, App, CommandError};
use easm_domain::{Organization, Role};
use easm_events::{Event, EventMeta, KeyId, OrgId, UserId};
use easm_store::typed;

impl App {
    /// Add a member; answers the member's id and e-mail address as recorded (normalized).
    pub async fn add_user(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        email: &str,
        name: &str,
        role: Role,
    ) -> Result<(UserId, String), CommandError> {
        let user_id = new_id();
        let recorded = self
            .on_stream(org_id, meta, org_stream(org_id), |org: &Organization| {
                org.add_user(&user_id, email, name, role)
            })
            .await?;
        for e in &recorded {
            if let Event::UserAdded(added) = typed(e)? {
                return Ok((user_id, added.email));
            }
        }
        Ok((user_id, email.to_string()))
    }

    pub async fn change_role(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        user_id: &UserId,
        role: Role,
    ) -> Result<(), CommandError> {
        self.on_stream(org_id, meta, org_stream(org_id), |org: &Organization| {
            org.change_role(user_id, role)
        })
        .await?;
        Ok(())
    }

    /// Remove a member and revoke their keys; answers the revoked key ids.
    pub async fn remove_user(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        user_id: &UserId,
    ) -> Result<Vec<KeyId>, CommandError> {
        let recorded = self
            .on_stream(org_id, meta, org_stream(org_id), |org: &Organization| {
                org.remove_user(user_id)
            })
            .await?;
        let mut revoked = vec![];
        for e in &recorded {
            if let Event::ApiKeyRevoked(r) = typed(e)? {
                revoked.push(r.key_id);
            }
        }
        Ok(revoked)
    }
}
