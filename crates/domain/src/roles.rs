use serde::{Deserialize, Serialize};

/// Roles are ordered: each holds every permission of the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Analyst,
    Admin,
    Owner,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    Read,
    /// Create and change assets and groups, trigger scans, triage.
    Write,
    /// Delete groups, manage API keys.
    Administer,
    /// Organization settings such as webhooks.
    Configure,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Analyst, Role::Admin, Role::Owner];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn can(self, p: Permission) -> bool {
        let needed = match p {
            Permission::Read => Role::Viewer,
            Permission::Write => Role::Analyst,
            Permission::Administer => Role::Admin,
            Permission::Configure => Role::Owner,
        };
        self >= needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_matrix() {
        use Permission::*;
        let table = [
            (Role::Viewer, [true, false, false, false]),
            (Role::Analyst, [true, true, false, false]),
            (Role::Admin, [true, true, true, false]),
            (Role::Owner, [true, true, true, true]),
        ];
        for (role, expected) in table {
            let got = [Read, Write, Administer, Configure].map(|p| role.can(p));
            assert_eq!(got, expected, "{role:?}");
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
