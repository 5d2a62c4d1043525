use crate::{error::DomainError, organization::validate_name, Aggregate};
use easm_events::GroupId;
use easm_events::{Event, GroupCreated, GroupDeleted, GroupRenamed};

/// An asset group (stream `group-<id>`).
#[derive(Debug, Default, Clone)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    pub created: bool,
    pub deleted: bool,
}

pub fn validate_group_name(raw: &str) -> Result<String, DomainError> {
    validate_name("name", raw)
}

impl Group {
    pub fn live(&self) -> bool {
        self.created && !self.deleted
    }

    pub fn create(group_id: &GroupId, name: &str) -> Result<Vec<Event>, DomainError> {
        Ok(vec![Event::GroupCreated(GroupCreated {
            group_id: group_id.into(),
            name: validate_group_name(name)?,
        })])
    }

    fn require_live(&self) -> Result<(), DomainError> {
        if self.live() {
            Ok(())
        } else {
            Err(DomainError::NotFound { resource: "group" })
        }
    }

    pub fn rename(&self, name: &str) -> Result<Vec<Event>, DomainError> {
        self.require_live()?;
        let name = validate_group_name(name)?;
        if name == self.name {
            return Ok(vec![]);
        }
        Ok(vec![Event::GroupRenamed(GroupRenamed {
            group_id: self.id.clone(),
            name,
            previous_name: self.name.clone(),
        })])
    }

    /// `asset_count` is how many live assets the group holds; a group must be emptied first.
    pub fn delete(&self, asset_count: u64) -> Result<Vec<Event>, DomainError> {
        self.require_live()?;
        if asset_count > 0 {
            return Err(DomainError::Conflict {
                message: format!(
                    "group still holds {asset_count} asset(s): move or delete them first"
                ),
                existing_id: None,
            });
        }
        Ok(vec![Event::GroupDeleted(GroupDeleted {
            group_id: self.id.clone(),
        })])
    }
}

impl Aggregate for Group {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::GroupCreated(e) => {
                self.id = e.group_id.clone();
                self.name = e.name.clone();
                self.created = true;
            }
            Event::GroupRenamed(e) => self.name = e.name.clone(),
            Event::GroupDeleted(_) => self.deleted = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_and_delete_rules() {
        let g = Group::from_events(&Group::create(&"g".into(), "Prod").unwrap());
        assert!(g.rename("Prod").unwrap().is_empty());
        assert_eq!(g.rename("Staging").unwrap().len(), 1);
        assert!(matches!(g.delete(3), Err(DomainError::Conflict { .. })));
        let deleted = g.delete(0).unwrap();
        let mut g2 = g.clone();
        g2.apply(&deleted[0]);
        assert!(matches!(g2.rename("x"), Err(DomainError::NotFound { .. })));
        assert!(Group::create(&"g".into(), "").is_err());
    }
}
