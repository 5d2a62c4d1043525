//! Asset groups: created, renamed, and deleted only while they hold no asset.

use crate::execute::Decision;
use crate::streams::{group_members, group_stream};
use crate::{new_id, App, CommandError};
use easm_domain::Group;
use easm_events::{EventMeta, GroupId, OrgId};
use easm_store::Constraint;

impl App {
    pub async fn create_group(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        name: &str,
    ) -> Result<GroupId, CommandError> {
        let id = new_id();
        self.create(org_id, meta, group_stream(&id), Group::create(&id, name)?)
            .await?;
        Ok(id)
    }

    pub async fn rename_group(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        group_id: &GroupId,
        name: &str,
    ) -> Result<(), CommandError> {
        self.on_stream(org_id, meta, group_stream(group_id), |g: &Group| {
            g.rename(name)
        })
        .await?;
        Ok(())
    }

    /// Deleted only when empty: the append checks that no asset holds a place in the group.
    pub async fn delete_group(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        group_id: &GroupId,
    ) -> Result<(), CommandError> {
        let stream = group_stream(group_id);
        let members = group_members(group_id);
        self.execute(org_id, meta, || async {
            let (v, g) = self.load::<Group>(org_id, &stream).await?;
            let held = self.log.count_reservations(org_id, &members).await?;
            let mut d = Decision::one(stream.clone(), v, g.delete(held)?);
            d.constraints.push(Constraint::Empty {
                scope: members.clone(),
            });
            Ok(d)
        })
        .await?;
        Ok(())
    }
}
