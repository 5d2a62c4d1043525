use crate::{error::DomainError, plans::Plan, roles::Role, Aggregate};
use easm_events::{ApiKeyCreated, ApiKeyRevoked, Event, OrgCreated};
use std::collections::HashMap;

/// An organization and its API keys (stream `org-<id>`).
#[derive(Debug, Default, Clone)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub plan: Option<Plan>,
    pub keys: HashMap<String, KeyState>,
}

#[derive(Debug, Clone)]
pub struct KeyState {
    pub role: Role,
    pub revoked: bool,
}

pub const MAX_NAME_LEN: usize = 200;

/// Names of organizations, groups and keys: trimmed, non-empty, bounded, printable.
pub fn validate_name(field: &str, raw: &str) -> Result<String, DomainError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(DomainError::validation(field, "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(DomainError::validation(
            field,
            format!("must be at most {MAX_NAME_LEN} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(DomainError::validation(
            field,
            "must not contain control characters",
        ));
    }
    Ok(name.to_string())
}

pub fn create_org(org_id: &str, name: &str, plan: Plan) -> Result<Vec<Event>, DomainError> {
    Ok(vec![Event::OrgCreated(OrgCreated {
        org_id: org_id.into(),
        name: validate_name("name", name)?,
        plan: plan.as_str().into(),
    })])
}

impl Organization {
    pub fn exists(&self) -> bool {
        self.plan.is_some()
    }

    pub fn create_key(
        &self,
        key_id: &str,
        name: &str,
        role: Role,
        key_hash: &str,
        prefix: &str,
    ) -> Result<Vec<Event>, DomainError> {
        if !self.exists() {
            return Err(DomainError::NotFound {
                resource: "organization",
            });
        }
        Ok(vec![Event::ApiKeyCreated(ApiKeyCreated {
            key_id: key_id.into(),
            name: validate_name("name", name)?,
            role: role.as_str().into(),
            key_hash: key_hash.into(),
            prefix: prefix.into(),
        })])
    }

    /// Revoking a revoked key changes nothing and succeeds: the caller's intent already holds.
    pub fn revoke_key(&self, key_id: &str) -> Result<Vec<Event>, DomainError> {
        match self.keys.get(key_id) {
            None => Err(DomainError::NotFound {
                resource: "API key",
            }),
            Some(k) if k.revoked => Ok(vec![]),
            Some(_) => Ok(vec![Event::ApiKeyRevoked(ApiKeyRevoked {
                key_id: key_id.into(),
            })]),
        }
    }
}

impl Aggregate for Organization {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::OrgCreated(e) => {
                self.id = e.org_id.clone();
                self.name = e.name.clone();
                self.plan = Plan::parse(&e.plan);
            }
            Event::ApiKeyCreated(e) => {
                let role = Role::parse(&e.role).unwrap_or(Role::Viewer);
                self.keys.insert(
                    e.key_id.clone(),
                    KeyState {
                        role,
                        revoked: false,
                    },
                );
            }
            Event::ApiKeyRevoked(e) => {
                if let Some(k) = self.keys.get_mut(&e.key_id) {
                    k.revoked = true;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_and_revoked_once() {
        let mut org = Organization::from_events(&create_org("o", "Acme", Plan::Free).unwrap());
        let created = org
            .create_key("k", "ci", Role::Analyst, "h", "ag_sk_ab")
            .unwrap();
        org.apply(&created[0]);
        let revoked = org.revoke_key("k").unwrap();
        assert_eq!(revoked.len(), 1);
        org.apply(&revoked[0]);
        assert!(org.revoke_key("k").unwrap().is_empty());
        assert!(matches!(
            org.revoke_key("x"),
            Err(DomainError::NotFound { .. })
        ));
        assert!(create_org("o", "  ", Plan::Free).is_err());
    }
}
