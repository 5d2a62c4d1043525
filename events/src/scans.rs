//! Events of scan jobs and of the findings they detect (issue #4). Field names are camelCase
//! JSON; each type's JSON Schema is in `events/schemas/<type>.v1.json`.

use crate::ids::*;
use crate::names::FindingStatus;
use serde::{Deserialize, Serialize};

/// A scan of one asset was asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanRequested {
    pub scan_job_id: ScanJobId,
    pub asset_id: AssetId,
    /// `quick`, `standard` or `deep`.
    pub profile: String,
    /// Ports given at creation instead of the profile's list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<u16>>,
    /// The job this one runs again, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<ScanJobId>,
}

/// A worker took the job (again, if an earlier worker died: `attempt` counts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanStarted {
    pub scan_job_id: ScanJobId,
    pub worker_id: String,
    pub attempt: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanProgressed {
    pub scan_job_id: ScanJobId,
    /// 0 to 100.
    pub progress: u8,
    /// What the scanner is doing, e.g. `dns`, `ports`, `tls`, `http`.
    pub stage: String,
}

/// Findings per severity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityCounts {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
    pub info: u32,
}

impl SeverityCounts {
    /// Count `n` more findings of `severity`; an unknown severity counts as info.
    pub fn add(&mut self, severity: &str, n: u32) {
        match severity.trim().to_ascii_lowercase().as_str() {
            "critical" => self.critical += n,
            "high" => self.high += n,
            "medium" => self.medium += n,
            "low" => self.low += n,
            _ => self.info += n,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanCompleted {
    pub scan_job_id: ScanJobId,
    pub asset_id: AssetId,
    pub profile: String,
    /// What the scan detected, new or seen before.
    pub counts: SeverityCounts,
    /// What the built-in scanner saw of the asset (empty for jobs completed by imports).
    #[serde(flatten)]
    pub observed: Observed,
}

/// What answered on an open port, found by probing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSeen {
    pub port: u16,
    /// `http`, `https`, `tls`, `ssh`, `smtp`, `redis`, `memcached`, `mongodb`,
    /// `elasticsearch`, ... or `unknown`.
    pub service: String,
    pub tls: bool,
    /// Version, banner line, page title or certificate subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The reachability of an asset at the end of a scan: its addresses and open services.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cnames: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports_scanned: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceSeen>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanFailed {
    pub scan_job_id: ScanJobId,
    pub asset_id: AssetId,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanCancelled {
    pub scan_job_id: ScanJobId,
}

/// The job and its findings leave the read models; the log keeps the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanDeleted {
    pub scan_job_id: ScanJobId,
}

/// What one detection saw; every field but `templateId`, `title`, `severity` and `matchedAt`
/// may be empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Detection {
    pub template_id: String,
    pub title: String,
    /// `critical`, `high`, `medium`, `low` or `info`.
    pub severity: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub description: String,
    /// What was seen: certificate fields, a response excerpt, a banner.
    #[serde(default)]
    pub evidence: String,
    #[serde(default)]
    pub remediation: String,
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cve: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss_score: Option<f64>,
    /// `host:port` or a URL.
    pub matched_at: String,
    #[serde(default)]
    pub matcher_name: String,
    /// `easm` (the built-in scanner), `nuclei` (imported) or `discovery`.
    pub source: String,
}

/// The first detection of a finding, by a scan (`scanJobId`) or a discovery job
/// (`discoveryJobId`): exactly one of the two.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingNew {
    pub finding_id: FindingId,
    pub asset_id: AssetId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_job_id: Option<ScanJobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_job_id: Option<DiscoveryJobId>,
    /// Profile of the detecting scan; absent for imported results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Boxed: it is by far the largest event.
    #[serde(flatten)]
    pub detection: Box<Detection>,
}

/// A later detection of an open, acknowledged or ignored finding (by a scan or a discovery job).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingRedetected {
    pub finding_id: FindingId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_job_id: Option<ScanJobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_job_id: Option<DiscoveryJobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub evidence: String,
}

/// A resolved finding came back, detected again (`scanJobId`) or reopened by hand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingReopened {
    pub finding_id: FindingId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_job_id: Option<ScanJobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_job_id: Option<DiscoveryJobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// A finding became resolved: by hand, or because a completed scan of the profile that found it
/// no longer did (`scanJobId`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingResolved {
    pub finding_id: FindingId,
    pub from: FindingStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_job_id: Option<ScanJobId>,
    /// The completed discovery job that no longer detected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_job_id: Option<DiscoveryJobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// Any other change of status (open, acknowledged, ignored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingStatusChanged {
    pub finding_id: FindingId,
    pub from: FindingStatus,
    pub to: FindingStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// Triage fields changed; only those present changed (an empty assignee clears it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingUpdated {
    pub finding_id: FindingId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}
