//! Every event type easm can append, with the schema version it is written at. Field names are
//! camelCase JSON; a type's JSON Schema is in `events/schemas/<type>.v<version>.json`.

pub use crate::discovery::*;
pub use crate::endpoint_options::*;
use crate::ids::*;
pub use crate::monitors::*;
use crate::names::{KeyKind, Plan, Role};
pub use crate::scans::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgCreated {
    pub org_id: OrgId,
    pub name: String,
    pub plan: Plan,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyCreated {
    pub key_id: KeyId,
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the full key: the key itself is never stored.
    pub key_hash: String,
    /// The first characters of the key, so people can tell keys apart.
    pub prefix: String,
    /// The member the key belongs to: it then acts with that member's current role. Absent for
    /// keys of the organization itself (made with the command line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// `mcp` for a key of the MCP server; absent for REST keys.
    #[serde(default, skip_serializing_if = "KeyKind::is_rest")]
    pub kind: KeyKind,
    /// An MCP key that may use the write tools its role allows; absent (false) otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_writes: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRevoked {
    pub key_id: KeyId,
}

/// A person became a member of the organization. Members are managed from the command line:
/// account actions are not callable with API keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAdded {
    pub user_id: UserId,
    /// Lowercase; unique within the organization.
    pub email: String,
    pub name: String,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRoleChanged {
    pub user_id: UserId,
    pub role: Role,
    pub previous_role: Role,
}

/// A member left; their keys are revoked in the same append.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRemoved {
    pub user_id: UserId,
    pub email: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupCreated {
    pub group_id: GroupId,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRenamed {
    pub group_id: GroupId,
    pub name: String,
    pub previous_name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupDeleted {
    pub group_id: GroupId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetAdded {
    pub asset_id: AssetId,
    pub group_id: GroupId,
    /// The normalized value (lowercase IDNA hostname, canonical IP or CIDR, ...).
    pub value: String,
    #[serde(rename = "type")]
    pub asset_type: String,
    pub tags: Vec<String>,
    pub criticality: String,
    /// The discovery job whose finding was promoted to this asset, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_job_id: Option<DiscoveryJobId>,
}

/// Only the attributes that changed are present; each holds the value after the change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetUpdated {
    pub asset_id: AssetId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criticality: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetRemoved {
    pub asset_id: AssetId,
    pub value: String,
    pub group_id: GroupId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookCreated {
    pub webhook_id: WebhookId,
    pub url: String,
    /// Event types or patterns (`finding.*`, `*`) the endpoint receives.
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// v2: how it takes its messages; absent for a plain Standard Webhooks endpoint.
    #[serde(default, skip_serializing_if = "EndpointOptions::is_plain")]
    pub delivery: EndpointOptions,
}

/// Only the attributes that changed are present, with their new values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookUpdated {
    pub webhook_id: WebhookId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// v2: the whole of the new delivery options, when any changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<EndpointOptions>,
    /// v2: write-only values that were set, replaced or cleared (`headers.<Name>`, `token`,
    /// `apiKey`, `tls.clientKey`); never the values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDeleted {
    pub webhook_id: WebhookId,
}

/// The signing secret was replaced. Secrets never enter the log; only the fact and the time
/// until which the previous secret still signs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSecretRotated {
    pub webhook_id: WebhookId,
    /// RFC 3339 UTC.
    pub previous_valid_until: String,
}

/// Delivery gave up on an endpoint: every attempt failed for the configured period (5 days by
/// default). The endpoint stays configured but receives nothing until it is enabled again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointDisabled {
    pub webhook_id: WebhookId,
    /// RFC 3339 UTC: the first failed attempt of the unbroken run of failures.
    pub failing_since: String,
    pub reason: String,
}

/// A request by a known API key was refused: 401 for a revoked key, 403 for a role without the
/// permission. Kept so that auditors see attempts, not only changes; the actor is the key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessDenied {
    pub key_id: KeyId,
    /// The first characters of the key, as listed with the keys.
    pub key_prefix: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub reason: String,
}

/// An MCP key called a tool: what an assistant read (or changed) is on the audit trail with
/// the arguments it asked with. The actor is the key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpToolCalled {
    pub key_id: KeyId,
    pub tool: String,
    /// The call's arguments as the client sent them (an object).
    pub arguments: serde_json::Value,
    /// `success`, or `error` when the tool answered an error.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An asset's risk score or grade moved because its unresolved findings changed (score and
/// grade as `GET /api/assets/{id}/risk` computes them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RiskChanged {
    pub asset_id: AssetId,
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
    "discovery.completed",
    "audit.*",
];

/// Declares the closed set of events once: each variant with its type name and the schema
/// version it is written at. From this one list come the enum, [`EVENT_TYPES`], each event's
/// name, version and data, and decoding by name, so adding an event type is one line here (plus
/// its struct, schema and upcasters).
macro_rules! catalogue {
    ($($variant:ident($name:literal, $version:literal)),* $(,)?) => {
        /// The closed set of events. Adding a variant is a minor contract change; changing a
        /// variant's fields incompatibly means a new schema version and an upcaster in
        /// `upcast.rs`.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Event {
            $($variant($variant),)*
        }

        /// `(type, current schema version)` of every event in the catalogue.
        pub const EVENT_TYPES: &[(&str, i32)] = &[$(($name, $version),)*];

        impl Event {
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Event::$variant(_) => $name,)*
                }
            }

            pub fn schema_version(&self) -> i32 {
                match self {
                    $(Event::$variant(_) => $version,)*
                }
            }

            pub fn data(&self) -> serde_json::Value {
                let v = match self {
                    $(Event::$variant(e) => serde_json::to_value(e),)*
                };
                v.expect("catalogue structs always serialize")
            }

            /// The typed event of `event_type` from data in its current version.
            pub(crate) fn build(
                event_type: &str,
                data: impl crate::upcast::Source,
            ) -> Result<Event, crate::DecodeError> {
                Ok(match event_type {
                    $($name => Event::$variant(data.parse(event_type)?),)*
                    other => return Err(crate::DecodeError::UnknownType(other.into())),
                })
            }
        }
    };
}

catalogue! {
    OrgCreated("org.created", 1),
    ApiKeyCreated("api_key.created", 1),
    ApiKeyRevoked("api_key.revoked", 1),
    UserAdded("user.added", 1),
    UserRoleChanged("user.role_changed", 1),
    UserRemoved("user.removed", 1),
    GroupCreated("group.created", 1),
    GroupRenamed("group.renamed", 1),
    GroupDeleted("group.deleted", 1),
    AssetAdded("asset.added", 2),
    AssetUpdated("asset.updated", 1),
    AssetRemoved("asset.removed", 1),
    WebhookCreated("webhook.created", 2),
    WebhookUpdated("webhook.updated", 2),
    WebhookDeleted("webhook.deleted", 1),
    WebhookSecretRotated("webhook.secret_rotated", 1),
    EndpointDisabled("endpoint.disabled", 1),
    ScanRequested("scan.requested", 1),
    ScanStarted("scan.started", 1),
    ScanProgressed("scan.progressed", 1),
    ScanCompleted("scan.completed", 1),
    ScanFailed("scan.failed", 1),
    ScanCancelled("scan.cancelled", 1),
    ScanDeleted("scan.deleted", 1),
    FindingNew("finding.new", 2),
    FindingRedetected("finding.redetected", 2),
    FindingReopened("finding.reopened", 1),
    FindingResolved("finding.resolved", 1),
    FindingStatusChanged("finding.status_changed", 1),
    FindingUpdated("finding.updated", 1),
    AccessDenied("access.denied", 1),
    McpToolCalled("mcp.tool_called", 1),
    RiskChanged("risk.changed", 1),
    MonitorCreated("monitor.created", 1),
    MonitorUpdated("monitor.updated", 1),
    MonitorDeleted("monitor.deleted", 1),
    MonitorTriggered("monitor.triggered", 1),
    AlertCreated("alert.created", 2),
    AlertAcknowledged("alert.acknowledged", 1),
    AlertResolved("alert.resolved", 1),
    DiscoveryRequested("discovery.requested", 1),
    DiscoveryStarted("discovery.started", 1),
    DiscoveryProgressed("discovery.progressed", 1),
    DiscoveryNamesFound("discovery.names_found", 1),
    DiscoveryCompleted("discovery.completed", 1),
    DiscoveryFailed("discovery.failed", 1),
    DiscoveryCancelled("discovery.cancelled", 1),
    DiscoveryPromoted("discovery.promoted", 1),
}
