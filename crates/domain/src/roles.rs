pub use easm_events::Role;

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

/// What a role may do; roles are ordered, each holding every permission of those below it.
pub trait Grants {
    fn can(self, p: Permission) -> bool;
}

impl Grants for Role {
    fn can(self, p: Permission) -> bool {
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
