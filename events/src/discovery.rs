//! Events of discovery jobs (issue #15): a run over root domains that finds names, addresses and
//! services nobody listed, and the promotion of what it found to assets. Field names are
//! camelCase JSON; each type's JSON Schema is in `events/schemas/<type>.v1.json`.

use crate::ids::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryRequested {
    pub discovery_job_id: DiscoveryJobId,
    /// Normalised root domains, 1 to 20.
    pub domains: Vec<String>,
    /// Larger wordlist, permutations of found labels, more ports for certificates.
    pub deep: bool,
    /// The monitor whose schedule asked for it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_id: Option<MonitorId>,
}

/// A worker took the job (again, if an earlier worker died: `attempt` counts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryStarted {
    pub discovery_job_id: DiscoveryJobId,
    pub worker_id: String,
    pub attempt: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryProgressed {
    pub discovery_job_id: DiscoveryJobId,
    /// 0 to 100.
    pub progress: u8,
    /// The module running: `ct`, `bruteforce`, `permutations`, `axfr`, `tls`, `reverse`.
    pub stage: String,
}

/// A name found under one of the job's domains.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundName {
    pub name: String,
    /// What it resolves to (empty: known from certificates or a zone, not resolving now).
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    /// The modules that found it.
    pub sources: Vec<String>,
    /// Seen only in certificates that have all expired.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

/// Names found, in batches as the modules find them; a name found again adds its sources.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryNamesFound {
    pub discovery_job_id: DiscoveryJobId,
    pub names: Vec<FoundName>,
}

/// One module's run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleRun {
    pub module: String,
    /// Names (or, for `tls`, services) it found, new or not.
    pub found: u32,
    pub duration_ms: u64,
    /// Why it stopped short (the others ran on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An address the found names resolve to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundAddress {
    pub address: String,
    /// The found names resolving to it.
    pub names: Vec<String>,
    /// Its reverse DNS names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ptr: Vec<String>,
}

/// A TLS service on a found host and the names its certificate covers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundService {
    pub host: String,
    pub port: u16,
    pub service: String,
    #[serde(default)]
    pub sans: Vec<String>,
}

/// A wildcard zone: random labels under it resolve to these answers, so names that resolve to
/// nothing else were filtered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wildcard {
    pub zone: String,
    pub answers: Vec<String>,
    pub filtered: u32,
}

/// The job ended; `newNames` are the names no earlier job of the organization found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryCompleted {
    pub discovery_job_id: DiscoveryJobId,
    pub domains: Vec<String>,
    pub modules: Vec<ModuleRun>,
    pub subdomains: u32,
    pub new_names: Vec<String>,
    #[serde(default)]
    pub ips: Vec<FoundAddress>,
    #[serde(default)]
    pub services: Vec<FoundService>,
    #[serde(default)]
    pub wildcard: Vec<Wildcard>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryFailed {
    pub discovery_job_id: DiscoveryJobId,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryCancelled {
    pub discovery_job_id: DiscoveryJobId,
}

/// Found items became assets (their `asset.added` events are in the same append).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryPromoted {
    pub discovery_job_id: DiscoveryJobId,
    pub group_id: GroupId,
    pub asset_ids: Vec<AssetId>,
    pub values: Vec<String>,
}
