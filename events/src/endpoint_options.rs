//! How an endpoint takes its messages, beside where it is (`webhook.created` and
//! `webhook.updated` v2). Write-only values (header values, tokens, API keys, the client key)
//! never enter the log: only which of them are set.

use crate::ids::GroupId;
use crate::names::{DeliveryOrdering, EndpointKind, PayloadFormat, Severity};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOptions {
    #[serde(default, skip_serializing_if = "is_default")]
    pub kind: EndpointKind,
    #[serde(default, skip_serializing_if = "is_default")]
    pub format: PayloadFormat,
    /// Names of the custom request headers; their values are write-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<DeliveryFilter>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub ordering: DeliveryOrdering,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<EndpointTls>,
    /// http(s) URL of the proxy requests go through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Splunk index, or Elasticsearch index or data stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Splunk sourcetype (default `easm:<event type>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sourcetype: Option<String>,
    /// Splunk source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Most messages in one request of a batching kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// Longest wait, in milliseconds, for a batch to fill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_window_ms: Option<u32>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl EndpointOptions {
    /// A plain Standard Webhooks endpoint, as every endpoint was before these options.
    pub fn is_plain(&self) -> bool {
        is_default(self)
    }
}

/// Which events an endpoint is sent, beyond its event types; every criterion given must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryFilter {
    /// Only events with a severity at least this bad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Only events about an asset in one of these groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_ids: Vec<GroupId>,
    /// Only events about an asset with one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// Certificates, public material; the client key is write-only and set whenever
/// `client_certificate` is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointTls {
    /// PEM certificates trusted beside the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// PEM certificate (chain) presented to the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
}
