//! Names of the streams commands append to, and of the reservation scopes that hold invariants
//! across streams. The read side and tools name streams through these too.

use chrono::{DateTime, Utc};

pub fn org_stream(id: &str) -> String {
    format!("org-{id}")
}

pub fn group_stream(id: &str) -> String {
    format!("group-{id}")
}

pub fn asset_stream(id: &str) -> String {
    format!("asset-{id}")
}

pub fn scan_stream(id: &str) -> String {
    format!("scan-{id}")
}

pub fn finding_stream(id: &str) -> String {
    format!("finding-{id}")
}

/// The announced risk of an asset (`risk.changed`).
pub fn risk_stream(asset_id: &str) -> String {
    format!("risk-{asset_id}")
}

pub fn webhook_stream(id: &str) -> String {
    format!("webhook-{id}")
}

pub fn monitor_stream(id: &str) -> String {
    format!("monitor-{id}")
}

pub fn alert_stream(id: &str) -> String {
    format!("alert-{id}")
}

/// A refused request, on a stream of its own so that denials never contend with each other.
pub(crate) fn access_stream(id: &str) -> String {
    format!("access-{id}")
}

/// Reservation scope of the organization's asset values: unique, and counted for the plan.
pub const ASSET_VALUES: &str = "asset_values";

/// Reservation scope of a group's members, so a group is deleted only when empty.
pub(crate) fn group_members(group_id: &str) -> String {
    format!("group_members:{group_id}")
}

/// Reservation scope of active scan jobs: one per asset and profile.
pub(crate) const ACTIVE_SCANS: &str = "active_scans";

/// Reservation scope of the scans requested in a calendar month (UTC), for the plan's quota.
pub(crate) fn month_scans(at: DateTime<Utc>) -> String {
    format!("scans:{}", at.format("%Y-%m"))
}

/// Reservation scope of the organization's monitors, counted for the plan's scheduled scans.
pub(crate) const MONITORS: &str = "monitors";
