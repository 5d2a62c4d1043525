//! Names of the streams commands append to, and of the reservation scopes that hold invariants
//! across streams. The read side and tools name streams through these too.

use chrono::{DateTime, Utc};
use easm_events::{
    AlertId, AssetId, DiscoveryJobId, FindingId, GroupId, MonitorId, OrgId, ScanJobId, WebhookId,
};

pub fn org_stream(id: &OrgId) -> String {
    format!("org-{id}")
}

pub fn group_stream(id: &GroupId) -> String {
    format!("group-{id}")
}

pub fn asset_stream(id: &AssetId) -> String {
    format!("asset-{id}")
}

pub fn scan_stream(id: &ScanJobId) -> String {
    format!("scan-{id}")
}

pub fn discovery_stream(id: &DiscoveryJobId) -> String {
    format!("discovery-{id}")
}

pub fn finding_stream(id: &FindingId) -> String {
    format!("finding-{id}")
}

/// The announced risk of an asset (`risk.changed`).
pub fn risk_stream(asset_id: &AssetId) -> String {
    format!("risk-{asset_id}")
}

pub fn webhook_stream(id: &WebhookId) -> String {
    format!("webhook-{id}")
}

pub fn monitor_stream(id: &MonitorId) -> String {
    format!("monitor-{id}")
}

pub fn alert_stream(id: &AlertId) -> String {
    format!("alert-{id}")
}

/// A refused request, on a stream of its own so that denials never contend with each other.
pub(crate) fn access_stream(id: &str) -> String {
    format!("access-{id}")
}

/// A tool call of an MCP key, on a stream of its own like a refused request.
pub(crate) fn mcp_call_stream(id: &str) -> String {
    format!("mcp-{id}")
}

/// Reservation scope of the organization's asset values: unique, and counted for the plan.
pub const ASSET_VALUES: &str = "asset_values";

/// Reservation scope of a group's members, so a group is deleted only when empty.
pub(crate) fn group_members(group_id: &GroupId) -> String {
    format!("group_members:{group_id}")
}

/// Reservation scope of active scan jobs: one per asset and profile.
pub(crate) const ACTIVE_SCANS: &str = "active_scans";

/// Reservation scope of the scans requested in a calendar month (UTC), for the plan's quota.
pub(crate) fn month_scans(at: DateTime<Utc>) -> String {
    format!("scans:{}", at.format("%Y-%m"))
}

/// Reservation scope of the discovery jobs requested in a calendar month (UTC), for the plan's
/// quota.
pub(crate) fn month_discoveries(at: DateTime<Utc>) -> String {
    format!("discovery:{}", at.format("%Y-%m"))
}

/// Reservation scope of the organization's monitors, counted for the plan's scheduled scans.
pub(crate) const MONITORS: &str = "monitors";
