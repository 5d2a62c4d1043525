//! API keys: made for the organization or for one of its members, and revoked.

use crate::execute::Decision;
use crate::streams::org_stream;
use crate::{App, CommandError, IssuedKey};
use easm_domain::{DomainError, Organization, Role};
use easm_events::{EventMeta, KeyId, OrgId, UserId};

impl App {
    /// A key of the organization, or of a member (`user_id`); `role` defaults to the member's.
    pub async fn create_key(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        role: Option<Role>,
        name: &str,
        user_id: Option<&UserId>,
    ) -> Result<IssuedKey, CommandError> {
        let key = IssuedKey::generate();
        let stream = org_stream(org_id);
        self.execute(org_id, meta, || async {
            let (v, org) = self.load::<Organization>(org_id, &stream).await?;
            let role = match (role, user_id) {
                (Some(role), _) => role,
                (None, Some(user)) => org.user(user)?.role,
                (None, None) => return Err(DomainError::validation("role", "is required").into()),
            };
            let events =
                org.create_key(&key.key_id, name, role, &key.hash(), &key.prefix(), user_id)?;
            Ok(Decision::one(stream.clone(), v, events))
        })
        .await?;
        Ok(key)
    }

    pub async fn revoke_key(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        key_id: &KeyId,
    ) -> Result<(), CommandError> {
        self.on_stream(org_id, meta, org_stream(org_id), |org: &Organization| {
            org.revoke_key(key_id)
        })
        .await?;
        Ok(())
    }
}
