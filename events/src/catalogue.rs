//! Every event type easm can append, with the schema version it is written at. Field names are
//! camelCase JSON; a type's JSON Schema is in `events/schemas/<type>.v<version>.json`.

pub use crate::monitors::*;
pub use crate::scans::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgCreated {
    pub org_id: String,
    pub name: String,
    pub plan: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyCreated {
    pub key_id: String,
    pub name: String,
    pub role: String,
    /// Hex SHA-256 of the full key: the key itself is never stored.
    pub key_hash: String,
    /// The first characters of the key, so people can tell keys apart.
    pub prefix: String,
    /// The member the key belongs to: it then acts with that member's current role. Absent for
    /// keys of the organization itself (made with the command line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRevoked {
    pub key_id: String,
}

/// A person became a member of the organization. Members are managed from the command line:
/// account actions are not callable with API keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAdded {
    pub user_id: String,
    /// Lowercase; unique within the organization.
    pub email: String,
    pub name: String,
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRoleChanged {
    pub user_id: String,
    pub role: String,
    pub previous_role: String,
}

/// A member left; their keys are revoked in the same append.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRemoved {
    pub user_id: String,
    pub email: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupCreated {
    pub group_id: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRenamed {
    pub group_id: String,
    pub name: String,
    pub previous_name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupDeleted {
    pub group_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetAdded {
    pub asset_id: String,
    pub group_id: String,
    /// The normalized value (lowercase IDNA hostname, canonical IP or CIDR, ...).
    pub value: String,
    #[serde(rename = "type")]
    pub asset_type: String,
    pub tags: Vec<String>,
    pub criticality: String,
}

/// Only the attributes that changed are present; each holds the value after the change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetUpdated {
    pub asset_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criticality: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetRemoved {
    pub asset_id: String,
    pub value: String,
    pub group_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookCreated {
    pub webhook_id: String,
    pub url: String,
    /// Event types or patterns (`finding.*`, `*`) the endpoint receives.
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
}

/// Only the attributes that changed are present, with their new values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookUpdated {
    pub webhook_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDeleted {
    pub webhook_id: String,
}

/// The signing secret was replaced. Secrets never enter the log; only the fact and the time
/// until which the previous secret still signs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSecretRotated {
    pub webhook_id: String,
    /// RFC 3339 UTC.
    pub previous_valid_until: String,
}

/// Delivery gave up on an endpoint: every attempt failed for the configured period (5 days by
/// default). The endpoint stays configured but receives nothing until it is enabled again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointDisabled {
    pub webhook_id: String,
    /// RFC 3339 UTC: the first failed attempt of the unbroken run of failures.
    pub failing_since: String,
    pub reason: String,
}

/// A request by a known API key was refused: 401 for a revoked key, 403 for a role without the
/// permission. Kept so that auditors see attempts, not only changes; the actor is the key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessDenied {
    pub key_id: String,
    /// The first characters of the key, as listed with the keys.
    pub key_prefix: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub reason: String,
}

/// An asset's risk score or grade moved because its unresolved findings changed (score and
/// grade as `GET /api/assets/{id}/risk` computes them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RiskChanged {
    pub asset_id: String,
    /// 0 to 100.
    pub score: u32,
    /// A to F.
    pub grade: String,
    pub previous_score: u32,
    pub previous_grade: String,
    /// Unresolved findings per severity.
    pub breakdown: crate::SeverityCounts,
}

/// Event types a webhook endpoint may subscribe to (the delivery contract). Scan and finding
/// events are in `scans.rs`, monitor and alert events in `monitors.rs`.
pub const SUBSCRIBABLE: &[&str] = &[
    "finding.new",
    "finding.resolved",
    "finding.reopened",
    "finding.status_changed",
    "scan.completed",
    "scan.failed",
    "alert.created",
    "risk.changed",
    "asset.added",
    "asset.removed",
    "endpoint.disabled",
    "audit.*",
];

/// The closed set of events. Adding a variant is a minor contract change; changing a variant's
/// fields incompatibly means a new schema version and an upcaster in `upcast.rs`.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    OrgCreated(OrgCreated),
    ApiKeyCreated(ApiKeyCreated),
    ApiKeyRevoked(ApiKeyRevoked),
    UserAdded(UserAdded),
    UserRoleChanged(UserRoleChanged),
    UserRemoved(UserRemoved),
    GroupCreated(GroupCreated),
    GroupRenamed(GroupRenamed),
    GroupDeleted(GroupDeleted),
    AssetAdded(AssetAdded),
    AssetUpdated(AssetUpdated),
    AssetRemoved(AssetRemoved),
    WebhookCreated(WebhookCreated),
    WebhookUpdated(WebhookUpdated),
    WebhookDeleted(WebhookDeleted),
    WebhookSecretRotated(WebhookSecretRotated),
    EndpointDisabled(EndpointDisabled),
    ScanRequested(ScanRequested),
    ScanStarted(ScanStarted),
    ScanProgressed(ScanProgressed),
    ScanCompleted(ScanCompleted),
    ScanFailed(ScanFailed),
    ScanCancelled(ScanCancelled),
    ScanDeleted(ScanDeleted),
    FindingNew(FindingNew),
    FindingRedetected(FindingRedetected),
    FindingReopened(FindingReopened),
    FindingResolved(FindingResolved),
    FindingStatusChanged(FindingStatusChanged),
    FindingUpdated(FindingUpdated),
    AccessDenied(AccessDenied),
    RiskChanged(RiskChanged),
    MonitorCreated(MonitorCreated),
    MonitorUpdated(MonitorUpdated),
    MonitorDeleted(MonitorDeleted),
    MonitorTriggered(MonitorTriggered),
    AlertCreated(AlertCreated),
    AlertAcknowledged(AlertAcknowledged),
    AlertResolved(AlertResolved),
}

/// `(type, current schema version)` of every event in the catalogue.
pub const EVENT_TYPES: &[(&str, i32)] = &[
    ("org.created", 1),
    ("api_key.created", 1),
    ("api_key.revoked", 1),
    ("user.added", 1),
    ("user.role_changed", 1),
    ("user.removed", 1),
    ("group.created", 1),
    ("group.renamed", 1),
    ("group.deleted", 1),
    ("asset.added", 2),
    ("asset.updated", 1),
    ("asset.removed", 1),
    ("webhook.created", 1),
    ("webhook.updated", 1),
    ("webhook.deleted", 1),
    ("webhook.secret_rotated", 1),
    ("endpoint.disabled", 1),
    ("scan.requested", 1),
    ("scan.started", 1),
    ("scan.progressed", 1),
    ("scan.completed", 1),
    ("scan.failed", 1),
    ("scan.cancelled", 1),
    ("scan.deleted", 1),
    ("finding.new", 1),
    ("finding.redetected", 1),
    ("finding.reopened", 1),
    ("finding.resolved", 1),
    ("finding.status_changed", 1),
    ("finding.updated", 1),
    ("access.denied", 1),
    ("risk.changed", 1),
    ("monitor.created", 1),
    ("monitor.updated", 1),
    ("monitor.deleted", 1),
    ("monitor.triggered", 1),
    ("alert.created", 1),
    ("alert.acknowledged", 1),
    ("alert.resolved", 1),
];

impl Event {
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::OrgCreated(_) => "org.created",
            Event::ApiKeyCreated(_) => "api_key.created",
            Event::ApiKeyRevoked(_) => "api_key.revoked",
            Event::UserAdded(_) => "user.added",
            Event::UserRoleChanged(_) => "user.role_changed",
            Event::UserRemoved(_) => "user.removed",
            Event::GroupCreated(_) => "group.created",
            Event::GroupRenamed(_) => "group.renamed",
            Event::GroupDeleted(_) => "group.deleted",
            Event::AssetAdded(_) => "asset.added",
            Event::AssetUpdated(_) => "asset.updated",
            Event::AssetRemoved(_) => "asset.removed",
            Event::WebhookCreated(_) => "webhook.created",
            Event::WebhookUpdated(_) => "webhook.updated",
            Event::WebhookDeleted(_) => "webhook.deleted",
            Event::WebhookSecretRotated(_) => "webhook.secret_rotated",
            Event::EndpointDisabled(_) => "endpoint.disabled",
            Event::ScanRequested(_) => "scan.requested",
            Event::ScanStarted(_) => "scan.started",
            Event::ScanProgressed(_) => "scan.progressed",
            Event::ScanCompleted(_) => "scan.completed",
            Event::ScanFailed(_) => "scan.failed",
            Event::ScanCancelled(_) => "scan.cancelled",
            Event::ScanDeleted(_) => "scan.deleted",
            Event::FindingNew(_) => "finding.new",
            Event::FindingRedetected(_) => "finding.redetected",
            Event::FindingReopened(_) => "finding.reopened",
            Event::FindingResolved(_) => "finding.resolved",
            Event::FindingStatusChanged(_) => "finding.status_changed",
            Event::FindingUpdated(_) => "finding.updated",
            Event::AccessDenied(_) => "access.denied",
            Event::RiskChanged(_) => "risk.changed",
            Event::MonitorCreated(_) => "monitor.created",
            Event::MonitorUpdated(_) => "monitor.updated",
            Event::MonitorDeleted(_) => "monitor.deleted",
            Event::MonitorTriggered(_) => "monitor.triggered",
            Event::AlertCreated(_) => "alert.created",
            Event::AlertAcknowledged(_) => "alert.acknowledged",
            Event::AlertResolved(_) => "alert.resolved",
        }
    }

    pub fn schema_version(&self) -> i32 {
        let ty = self.event_type();
        EVENT_TYPES
            .iter()
            .find(|(t, _)| *t == ty)
            .map(|(_, v)| *v)
            .unwrap_or(1)
    }

    pub fn data(&self) -> serde_json::Value {
        let v = match self {
            Event::OrgCreated(e) => serde_json::to_value(e),
            Event::ApiKeyCreated(e) => serde_json::to_value(e),
            Event::ApiKeyRevoked(e) => serde_json::to_value(e),
            Event::UserAdded(e) => serde_json::to_value(e),
            Event::UserRoleChanged(e) => serde_json::to_value(e),
            Event::UserRemoved(e) => serde_json::to_value(e),
            Event::GroupCreated(e) => serde_json::to_value(e),
            Event::GroupRenamed(e) => serde_json::to_value(e),
            Event::GroupDeleted(e) => serde_json::to_value(e),
            Event::AssetAdded(e) => serde_json::to_value(e),
            Event::AssetUpdated(e) => serde_json::to_value(e),
            Event::AssetRemoved(e) => serde_json::to_value(e),
            Event::WebhookCreated(e) => serde_json::to_value(e),
            Event::WebhookUpdated(e) => serde_json::to_value(e),
            Event::WebhookDeleted(e) => serde_json::to_value(e),
            Event::WebhookSecretRotated(e) => serde_json::to_value(e),
            Event::EndpointDisabled(e) => serde_json::to_value(e),
            Event::ScanRequested(e) => serde_json::to_value(e),
            Event::ScanStarted(e) => serde_json::to_value(e),
            Event::ScanProgressed(e) => serde_json::to_value(e),
            Event::ScanCompleted(e) => serde_json::to_value(e),
            Event::ScanFailed(e) => serde_json::to_value(e),
            Event::ScanCancelled(e) => serde_json::to_value(e),
            Event::ScanDeleted(e) => serde_json::to_value(e),
            Event::FindingNew(e) => serde_json::to_value(e),
            Event::FindingRedetected(e) => serde_json::to_value(e),
            Event::FindingReopened(e) => serde_json::to_value(e),
            Event::FindingResolved(e) => serde_json::to_value(e),
            Event::FindingStatusChanged(e) => serde_json::to_value(e),
            Event::FindingUpdated(e) => serde_json::to_value(e),
            Event::AccessDenied(e) => serde_json::to_value(e),
            Event::RiskChanged(e) => serde_json::to_value(e),
            Event::MonitorCreated(e) => serde_json::to_value(e),
            Event::MonitorUpdated(e) => serde_json::to_value(e),
            Event::MonitorDeleted(e) => serde_json::to_value(e),
            Event::MonitorTriggered(e) => serde_json::to_value(e),
            Event::AlertCreated(e) => serde_json::to_value(e),
            Event::AlertAcknowledged(e) => serde_json::to_value(e),
            Event::AlertResolved(e) => serde_json::to_value(e),
        };
        v.expect("catalogue structs always serialize")
    }
}
