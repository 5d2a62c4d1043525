//! Creating an organization, with its owner key in the same append.

use crate::streams::org_stream;
use crate::{new_id, App, CommandError, IssuedKey, KeyOrder};
use easm_domain::{create_org, Aggregate, Organization, Plan, Role};
use easm_events::{EventMeta, KeyKind, OrgId};

impl App {
    /// A new organization and its owner key (the only time the key is shown).
    pub async fn create_org(
        &self,
        meta: &EventMeta,
        name: &str,
        plan: Plan,
    ) -> Result<(OrgId, IssuedKey), CommandError> {
        let org_id = new_id();
        let key = IssuedKey::generate(KeyKind::Rest);
        let mut events = create_org(&org_id, name, plan)?;
        let org = Organization::from_events(&events);
        let order = KeyOrder::rest(Some(Role::Owner), "owner key", None);
        events.extend(org.create_key(key.new_key(&order, Role::Owner))?);
        self.create(&org_id, meta, org_stream(&org_id), events)
            .await?;
        Ok((org_id, key))
    }
}
