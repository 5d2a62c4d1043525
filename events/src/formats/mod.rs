//! The bodies an endpoint can ask for instead of Standard Webhooks JSON: CloudEvents, OCSF, ECS
//! and CEF, and the short text of chat messages. Each renders a message (the Standard Webhooks
//! body of an event, of its audit form or of a test) with what the read models know of its
//! subject, so a SIEM gets the finding's severity and the asset's name even on events that only
//! carry ids.

mod cef;
mod chat;
mod cloudevents;
mod ecs;
mod endpoint;
mod ocsf;

pub use cef::cef_line;
pub use chat::{slack_message, teams_message};
pub use endpoint::{filtered_out, needs_subject, queued_body, syslog_message, Context};

use crate::names::{PayloadFormat, Severity};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The product as formats name it.
pub const PRODUCT: &str = "easm";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the read models know of a message's subject.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<FindingFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<AssetFacts>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingFacts {
    pub id: String,
    pub title: String,
    pub template_id: String,
    pub category: String,
    pub description: String,
    /// `open`, `acknowledged`, `resolved` or `ignored`.
    pub status: String,
    pub matched_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cve: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    pub remediation: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetFacts {
    pub id: String,
    pub value: String,
    /// `domain`, `subdomain`, `ip`, `cidr`...
    pub asset_type: String,
    pub group_id: String,
    pub tags: Vec<String>,
}

/// One message to render.
pub struct Message<'a> {
    /// Its `webhook-id`: the same for every retry to one endpoint.
    pub id: &'a str,
    /// The Standard Webhooks body: `{"type", "timestamp", "data"}`.
    pub body: &'a Value,
    pub subject: &'a Subject,
}

impl Message<'_> {
    pub fn message_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }

    /// The event's own type: `audit.asset.added` is about `asset.added`.
    pub fn action(&self) -> &str {
        let t = self.message_type();
        t.strip_prefix("audit.").unwrap_or(t)
    }

    pub fn is_audit(&self) -> bool {
        self.message_type().starts_with("audit.")
    }

    pub fn timestamp(&self) -> &str {
        self.body["timestamp"].as_str().unwrap_or_default()
    }

    /// Milliseconds since the epoch.
    pub fn epoch_millis(&self) -> i64 {
        crate::parse_timestamp(self.timestamp())
            .map(|t| t.timestamp_millis())
            .unwrap_or_default()
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn org_id(&self) -> &str {
        self.data()["orgId"].as_str().unwrap_or_default()
    }

    /// The event's data: the audit form keeps it under `details`.
    pub fn event_data(&self) -> &Value {
        if self.is_audit() {
            &self.data()["details"]
        } else {
            self.data()
        }
    }

    /// The id of what the event is about, as its family names it.
    pub fn resource_id(&self) -> Option<&str> {
        if self.is_audit() {
            return self.data()["resource"]["id"].as_str();
        }
        let d = self.data();
        [
            "findingId",
            "alertId",
            "scanJobId",
            "discoveryJobId",
            "assetId",
            "monitorId",
            "groupId",
            "webhookId",
            "keyId",
            "userId",
        ]
        .iter()
        .find_map(|k| d[*k].as_str())
    }

    /// The severity of the event's subject, if it has one.
    pub fn severity(&self) -> Option<Severity> {
        self.subject.severity.or_else(|| {
            self.event_data()["severity"]
                .as_str()
                .and_then(Severity::parse)
        })
    }

    /// A short line saying what happened.
    pub fn title(&self) -> String {
        let d = self.event_data();
        let what = self
            .subject
            .finding
            .as_ref()
            .map(|f| f.title.clone())
            .or_else(|| d["title"].as_str().map(str::to_string));
        match (what, self.subject.asset.as_ref()) {
            (Some(w), Some(a)) => format!("{}: {w} on {}", self.action(), a.value),
            (Some(w), None) => format!("{}: {w}", self.action()),
            (None, Some(a)) => format!("{}: {}", self.action(), a.value),
            (None, None) => self.action().to_string(),
        }
    }
}

/// A rendered body and its media type.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub content_type: &'static str,
    pub body: Value,
}

/// The message in `format`, as JSON (CEF is a line: see [`cef_line`]).
pub fn render(format: PayloadFormat, m: &Message) -> Rendered {
    match format {
        PayloadFormat::Standard | PayloadFormat::Cef => Rendered {
            content_type: "application/json",
            body: m.body.clone(),
        },
        PayloadFormat::CloudEvents => Rendered {
            content_type: "application/cloudevents+json",
            body: cloudevents::event(m),
        },
        PayloadFormat::Ocsf => Rendered {
            content_type: "application/json",
            body: ocsf::event(m),
        },
        PayloadFormat::Ecs => Rendered {
            content_type: "application/json",
            body: ecs::document(m),
        },
    }
}

/// Where the finding was seen, when that is a URL.
fn url_of(m: &Message) -> Option<String> {
    let f = m.subject.finding.as_ref()?;
    url_parts(&f.matched_at).map(|_| f.matched_at.clone())
}

/// Scheme and host of an http(s) URL.
fn url_parts(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    Some((scheme, host))
}

#[cfg(test)]
mod tests;
