use serde::Serialize;

pub use easm_events::Plan;

/// What a plan allows. `None` means unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub assets: Option<u64>,
    pub scans_per_month: Option<u64>,
    pub discovery_jobs_per_month: Option<u64>,
    pub scheduled_scans: Option<u64>,
    pub credential_monitors: Option<u64>,
    pub audit_log: bool,
    pub requests_per_minute: u32,
}

impl Limits {
    /// The defaults documented in the README's "Plans" table.
    pub fn of(plan: Plan) -> Limits {
        match plan {
            Plan::Free => Limits {
                assets: Some(25),
                scans_per_month: Some(100),
                discovery_jobs_per_month: Some(10),
                scheduled_scans: Some(2),
                credential_monitors: Some(1),
                audit_log: false,
                requests_per_minute: 120,
            },
            Plan::Pro => Limits {
                assets: Some(1_000),
                scans_per_month: Some(5_000),
                discovery_jobs_per_month: Some(500),
                scheduled_scans: Some(50),
                credential_monitors: Some(10),
                audit_log: false,
                requests_per_minute: 600,
            },
            Plan::Enterprise => Limits {
                assets: None,
                scans_per_month: None,
                discovery_jobs_per_month: None,
                scheduled_scans: None,
                credential_monitors: None,
                audit_log: true,
                requests_per_minute: 6_000,
            },
        }
    }
}
