use crate::{error::DomainError, plans::Plan, roles::Role, Aggregate};
use easm_events::{
    ApiKeyCreated, ApiKeyRevoked, Event, OrgCreated, UserAdded, UserRemoved, UserRoleChanged,
};
use easm_events::{KeyId, KeyKind, OrgId, UserId};
use std::collections::{BTreeMap, HashMap};

/// An organization, its members and its API keys (stream `org-<id>`).
#[derive(Debug, Default, Clone)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub plan: Option<Plan>,
    pub keys: HashMap<KeyId, KeyState>,
    /// Current members by id (ordered, so a removal revokes keys in a stable order).
    pub users: BTreeMap<UserId, UserState>,
}

#[derive(Debug, Clone)]
pub struct KeyState {
    pub role: Role,
    pub revoked: bool,
    pub user_id: Option<UserId>,
    pub kind: KeyKind,
}

/// A key about to be made: its secret is already drawn (only its hash and prefix are kept).
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key_id: KeyId,
    pub name: String,
    pub role: Role,
    pub key_hash: String,
    pub prefix: String,
    pub user_id: Option<UserId>,
    pub kind: KeyKind,
    /// Only MCP keys may be allowed the write tools.
    pub allow_writes: bool,
}

#[derive(Debug, Clone)]
pub struct UserState {
    pub email: String,
    pub role: Role,
}

pub const MAX_EMAIL_LEN: usize = 254;

/// Member e-mail addresses: trimmed, lowercase, one `@` between a local part and a dotted domain.
pub fn validate_email(raw: &str) -> Result<String, DomainError> {
    let email = raw.trim().to_lowercase();
    let bad = |m: &str| Err(DomainError::validation("email", m));
    if email.len() > MAX_EMAIL_LEN {
        return bad(&format!("must be at most {MAX_EMAIL_LEN} characters"));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return bad("must be an e-mail address");
    };
    let labels_ok = domain.split('.').count() >= 2 && domain.split('.').all(|l| !l.is_empty());
    if local.is_empty()
        || !labels_ok
        || domain.contains('@')
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return bad("must be an e-mail address");
    }
    Ok(email)
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

pub fn create_org(org_id: &OrgId, name: &str, plan: Plan) -> Result<Vec<Event>, DomainError> {
    Ok(vec![Event::OrgCreated(OrgCreated {
        org_id: org_id.into(),
        name: validate_name("name", name)?,
        plan,
    })])
}

impl Organization {
    pub fn exists(&self) -> bool {
        self.plan.is_some()
    }

    /// A key for the organization, or for one of its members (`user_id`): a member's key never
    /// holds more than the member's role, now or after the member's role changes.
    pub fn create_key(&self, key: NewKey) -> Result<Vec<Event>, DomainError> {
        if !self.exists() {
            return Err(DomainError::NotFound {
                resource: "organization",
            });
        }
        if let Some(user_id) = &key.user_id {
            let user = self.user(user_id)?;
            if key.role > user.role {
                return Err(DomainError::validation(
                    "role",
                    format!(
                        "a key of a {} cannot be {}",
                        user.role.as_str(),
                        key.role.as_str()
                    ),
                ));
            }
        }
        if key.allow_writes && key.kind.is_rest() {
            return Err(DomainError::validation(
                "allowWrites",
                "only MCP keys are allowed or refused writes",
            ));
        }
        Ok(vec![Event::ApiKeyCreated(ApiKeyCreated {
            name: validate_name("name", &key.name)?,
            key_id: key.key_id,
            role: key.role,
            key_hash: key.key_hash,
            prefix: key.prefix,
            user_id: key.user_id,
            kind: key.kind,
            allow_writes: key.allow_writes,
        })])
    }

    pub fn user(&self, user_id: &UserId) -> Result<&UserState, DomainError> {
        self.users
            .get(user_id)
            .ok_or(DomainError::NotFound { resource: "user" })
    }

    pub fn add_user(
        &self,
        user_id: &UserId,
        email: &str,
        name: &str,
        role: Role,
    ) -> Result<Vec<Event>, DomainError> {
        if !self.exists() {
            return Err(DomainError::NotFound {
                resource: "organization",
            });
        }
        let email = validate_email(email)?;
        if let Some((id, _)) = self.users.iter().find(|(_, u)| u.email == email) {
            return Err(DomainError::Conflict {
                message: format!("{email} is already a member"),
                existing_id: Some(id.to_string()),
            });
        }
        let name = match name.trim() {
            "" => email.split('@').next().unwrap_or_default().to_string(),
            n => validate_name("name", n)?,
        };
        Ok(vec![Event::UserAdded(UserAdded {
            user_id: user_id.into(),
            email,
            name,
            role,
        })])
    }

    /// The last owner among the members stays an owner: someone must be able to hold the
    /// organization's settings.
    fn keeps_an_owner(&self, user_id: &UserId) -> Result<(), DomainError> {
        let owners = self
            .users
            .values()
            .filter(|u| u.role == Role::Owner)
            .count();
        if self.user(user_id)?.role == Role::Owner && owners == 1 {
            return Err(DomainError::Conflict {
                message: "the organization's last owner cannot be demoted or removed".into(),
                existing_id: None,
            });
        }
        Ok(())
    }

    pub fn change_role(&self, user_id: &UserId, role: Role) -> Result<Vec<Event>, DomainError> {
        let previous = self.user(user_id)?.role;
        if previous == role {
            return Ok(vec![]);
        }
        self.keeps_an_owner(user_id)?;
        Ok(vec![Event::UserRoleChanged(UserRoleChanged {
            user_id: user_id.into(),
            role,
            previous_role: previous,
        })])
    }

    /// The member leaves and every live key of theirs is revoked with them.
    pub fn remove_user(&self, user_id: &UserId) -> Result<Vec<Event>, DomainError> {
        let user = self.user(user_id)?;
        self.keeps_an_owner(user_id)?;
        let mut events = vec![Event::UserRemoved(UserRemoved {
            user_id: user_id.into(),
            email: user.email.clone(),
        })];
        let mut keys: Vec<&KeyId> = self
            .keys
            .iter()
            .filter(|(_, k)| !k.revoked && k.user_id.as_ref() == Some(user_id))
            .map(|(id, _)| id)
            .collect();
        keys.sort();
        events.extend(keys.into_iter().map(|key_id| {
            Event::ApiKeyRevoked(ApiKeyRevoked {
                key_id: key_id.clone(),
            })
        }));
        Ok(events)
    }

    /// Revoking a revoked key changes nothing and succeeds: the caller's intent already holds.
    /// A key is revoked where it is listed: a REST key with the REST keys, an MCP key with the
    /// MCP keys.
    pub fn revoke_key(&self, key_id: &KeyId, kind: KeyKind) -> Result<Vec<Event>, DomainError> {
        match self.keys.get(key_id).filter(|k| k.kind == kind) {
            None => Err(DomainError::NotFound {
                resource: kind_resource(kind),
            }),
            Some(k) if k.revoked => Ok(vec![]),
            Some(_) => Ok(vec![Event::ApiKeyRevoked(ApiKeyRevoked {
                key_id: key_id.into(),
            })]),
        }
    }
}

fn kind_resource(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Rest => "API key",
        KeyKind::Mcp => "MCP key",
    }
}

impl Aggregate for Organization {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::OrgCreated(e) => {
                self.id = e.org_id.clone();
                self.name = e.name.clone();
                self.plan = Some(e.plan);
            }
            Event::ApiKeyCreated(e) => {
                self.keys.insert(
                    e.key_id.clone(),
                    KeyState {
                        role: e.role,
                        revoked: false,
                        user_id: e.user_id.clone(),
                        kind: e.kind,
                    },
                );
            }
            Event::ApiKeyRevoked(e) => {
                if let Some(k) = self.keys.get_mut(&e.key_id) {
                    k.revoked = true;
                }
            }
            Event::UserAdded(e) => {
                self.users.insert(
                    e.user_id.clone(),
                    UserState {
                        email: e.email.clone(),
                        role: e.role,
                    },
                );
            }
            Event::UserRoleChanged(e) => {
                if let Some(u) = self.users.get_mut(&e.user_id) {
                    u.role = e.role;
                }
            }
            Event::UserRemoved(e) => {
                self.users.remove(&e.user_id);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_key(id: &str, name: &str, role: Role, user: Option<&str>, kind: KeyKind) -> NewKey {
        NewKey {
            key_id: id.into(),
            name: name.into(),
            role,
            key_hash: "h".into(),
            prefix: "p".into(),
            user_id: user.map(UserId::from),
            kind,
            allow_writes: false,
        }
    }

    #[test]
    fn keys_are_created_and_revoked_once() {
        let mut org =
            Organization::from_events(&create_org(&"o".into(), "Acme", Plan::Free).unwrap());
        let created = org
            .create_key(new_key("k", "ci", Role::Analyst, None, KeyKind::Rest))
            .unwrap();
        org.apply(&created[0]);
        let revoked = org.revoke_key(&"k".into(), KeyKind::Rest).unwrap();
        assert_eq!(revoked.len(), 1);
        org.apply(&revoked[0]);
        assert!(org
            .revoke_key(&"k".into(), KeyKind::Rest)
            .unwrap()
            .is_empty());
        assert!(matches!(
            org.revoke_key(&"x".into(), KeyKind::Rest),
            Err(DomainError::NotFound { .. })
        ));
        assert!(create_org(&"o".into(), "  ", Plan::Free).is_err());
    }

    #[test]
    fn mcp_keys_are_revoked_with_the_mcp_keys_only_and_only_they_take_writes() {
        let mut org =
            Organization::from_events(&create_org(&"o".into(), "Acme", Plan::Free).unwrap());
        let mut writer = new_key("m", "claude", Role::Analyst, None, KeyKind::Mcp);
        writer.allow_writes = true;
        let created = org.create_key(writer).unwrap();
        assert!(
            matches!(&created[0], Event::ApiKeyCreated(k) if k.kind == KeyKind::Mcp && k.allow_writes)
        );
        org.apply(&created[0]);
        let mut rest = new_key("r", "ci", Role::Analyst, None, KeyKind::Rest);
        rest.allow_writes = true;
        assert!(matches!(
            org.create_key(rest),
            Err(DomainError::Validation { .. })
        ));
        assert!(matches!(
            org.revoke_key(&"m".into(), KeyKind::Rest),
            Err(DomainError::NotFound {
                resource: "API key"
            })
        ));
        assert_eq!(org.revoke_key(&"m".into(), KeyKind::Mcp).unwrap().len(), 1);
    }

    #[test]
    fn members_keep_an_owner_and_take_their_keys_with_them() {
        let mut org =
            Organization::from_events(&create_org(&"o".into(), "Acme", Plan::Free).unwrap());
        let apply = |org: &mut Organization, events: Vec<Event>| {
            for e in &events {
                org.apply(e);
            }
            events
        };
        let added = org
            .add_user(&"u1".into(), " Ana@Example.COM ", "", Role::Owner)
            .unwrap();
        assert!(
            matches!(&added[0], Event::UserAdded(u) if u.email == "ana@example.com" && u.name == "ana")
        );
        apply(&mut org, added);
        assert!(matches!(
            org.add_user(&"u2".into(), "ana@example.com", "Other", Role::Viewer),
            Err(DomainError::Conflict { existing_id: Some(id), .. }) if id == "u1"
        ));
        for bad in [
            "ana",
            "@example.com",
            "ana@example",
            "a b@example.com",
            "ana@@example.com",
        ] {
            assert!(
                org.add_user(&"u2".into(), bad, "", Role::Viewer).is_err(),
                "{bad}"
            );
        }
        let bob = org
            .add_user(&"u2".into(), "bob@example.com", "Bob", Role::Analyst)
            .unwrap();
        apply(&mut org, bob);
        // Keys of a member never exceed the member's role.
        assert!(org
            .create_key(new_key("k0", "x", Role::Admin, Some("u2"), KeyKind::Rest))
            .is_err());
        assert!(org
            .create_key(new_key(
                "k0",
                "x",
                Role::Viewer,
                Some("nobody"),
                KeyKind::Rest
            ))
            .is_err());
        let key = org
            .create_key(new_key(
                "k1",
                "ci",
                Role::Analyst,
                Some("u2"),
                KeyKind::Rest,
            ))
            .unwrap();
        apply(&mut org, key);
        let other = org
            .create_key(new_key("k2", "ci", Role::Viewer, None, KeyKind::Rest))
            .unwrap();
        apply(&mut org, other);

        assert!(
            org.change_role(&"u1".into(), Role::Admin).is_err(),
            "last owner"
        );
        assert!(org.remove_user(&"u1".into()).is_err(), "last owner");
        assert!(org
            .change_role(&"u2".into(), Role::Analyst)
            .unwrap()
            .is_empty());
        let promoted = org.change_role(&"u2".into(), Role::Owner).unwrap();
        apply(&mut org, promoted);
        assert_eq!(org.change_role(&"u1".into(), Role::Admin).unwrap().len(), 1);

        let removed = org.remove_user(&"u2".into()).unwrap();
        assert_eq!(removed.len(), 2, "the member and their one live key");
        assert!(matches!(&removed[1], Event::ApiKeyRevoked(k) if k.key_id == "k1"));
        apply(&mut org, removed);
        assert!(org.user(&"u2".into()).is_err());
        assert!(!org.keys["k2"].revoked, "other keys stay");
    }
}
