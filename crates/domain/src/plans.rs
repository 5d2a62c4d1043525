use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Free,
    Pro,
    Enterprise,
}

/// What a plan allows. `None` means unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub assets: Option<u64>,
    pub scans_per_month: Option<u64>,
    pub scheduled_scans: Option<u64>,
    pub credential_monitors: Option<u64>,
    pub audit_log: bool,
    pub requests_per_minute: u32,
}

impl Plan {
    pub const ALL: [Plan; 3] = [Plan::Free, Plan::Pro, Plan::Enterprise];

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Pro => "pro",
            Plan::Enterprise => "enterprise",
        }
    }

    pub fn parse(s: &str) -> Option<Plan> {
        Plan::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The defaults documented in the README's "Plans" table.
    pub fn limits(self) -> Limits {
        match self {
            Plan::Free => Limits {
                assets: Some(25),
                scans_per_month: Some(100),
                scheduled_scans: Some(2),
                credential_monitors: Some(1),
                audit_log: false,
                requests_per_minute: 120,
            },
            Plan::Pro => Limits {
                assets: Some(1_000),
                scans_per_month: Some(5_000),
                scheduled_scans: Some(50),
                credential_monitors: Some(10),
                audit_log: false,
                requests_per_minute: 600,
            },
            Plan::Enterprise => Limits {
                assets: None,
                scans_per_month: None,
                scheduled_scans: None,
                credential_monitors: None,
                audit_log: true,
                requests_per_minute: 6_000,
            },
        }
    }
}
