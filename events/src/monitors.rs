//! Events of monitors (recurring scans of an asset or a group) and of the alerts they raise when
//! a scan sees the asset change. Field names are camelCase JSON; each type's JSON Schema is in
//! `events/schemas/<type>.v1.json`.

use crate::ids::*;
use crate::names::MonitorKind;
use serde::{Deserialize, Serialize};

/// A monitor watches one asset or every asset of one group (exactly one of the two).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorCreated {
    pub monitor_id: MonitorId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_id: Option<AssetId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    /// Hours between two runs, 1 to 720.
    pub frequency_hours: u32,
    /// Profile of the scans it requests.
    pub profile: String,
    /// Explicit ports of its scans instead of the profile's list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<u16>>,
    pub enabled: bool,
    /// `schedule` for a scan schedule (`/api/scan-schedules`); absent for a monitor.
    #[serde(default, skip_serializing_if = "MonitorKind::is_monitor")]
    pub kind: MonitorKind,
}

/// Only the fields present changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorUpdated {
    pub monitor_id: MonitorId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_hours: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorDeleted {
    pub monitor_id: MonitorId,
}

/// A run: the scans it requested, and the assets it could not scan with the reason. The next
/// run is due `frequencyHours` after `ranAt`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorTriggered {
    pub monitor_id: MonitorId,
    /// RFC 3339 UTC.
    pub ran_at: String,
    /// Asked for by a user (`POST /api/monitors/{id}/run`) rather than by the schedule.
    pub manual: bool,
    pub scan_job_ids: Vec<ScanJobId>,
    /// The discovery job a monitor runs over its domain assets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discovery_job_ids: Vec<DiscoveryJobId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedAsset>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedAsset {
    pub asset_id: AssetId,
    pub reason: String,
}

/// A completed scan saw the asset differ from the previous completed scan of the same profile
/// and ports, or a monitor's discovery job found a name no earlier job had.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertCreated {
    pub alert_id: AlertId,
    pub monitor_id: MonitorId,
    pub asset_id: AssetId,
    /// The scan that saw the change (v1: always present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_job_id: Option<ScanJobId>,
    /// The discovery job that found the name of a `new_subdomain` alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_job_id: Option<DiscoveryJobId>,
    /// `new_port`, `port_closed`, `service_changed`, `certificate_changed`, `dns_changed` or
    /// `new_subdomain`.
    pub alert_type: String,
    /// `critical`, `high`, `medium`, `low` or `info`.
    pub severity: String,
    pub title: String,
    /// Type-specific facts: `port`, `service`, `before`, `after`, ...
    pub details: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertAcknowledged {
    pub alert_id: AlertId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// From `open` or `acknowledged`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertResolved {
    pub alert_id: AlertId,
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}
