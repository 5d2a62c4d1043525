use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::OrgId;
use crate::names::Role;

/// Who caused an event. `role` is the role the actor held at the time, kept for audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The address the command came from (the TCP peer of the API request), for audit. Absent
    /// for commands from the CLI or the system, and on events recorded before it was kept.
    #[serde(rename = "sourceIp", default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// The `User-Agent` of the API request, for audit (at most 256 characters). Absent where
    /// `sourceIp` is, and on events recorded before it was kept.
    #[serde(rename = "userAgent", default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    ApiKey,
    /// A key of the MCP server (category `mcp` on the audit trail).
    McpKey,
    User,
    System,
}

impl Actor {
    pub fn system() -> Self {
        Actor::system_part("system")
    }

    /// A part of easm acting on its own (`cli`, `delivery`).
    pub fn system_part(id: &str) -> Self {
        Actor {
            kind: ActorKind::System,
            id: id.into(),
            role: None,
            source_ip: None,
            user_agent: None,
        }
    }
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::ApiKey => "api_key",
            ActorKind::McpKey => "mcp_key",
            ActorKind::User => "user",
            ActorKind::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api_key" => Some(ActorKind::ApiKey),
            "mcp_key" => Some(ActorKind::McpKey),
            "user" => Some(ActorKind::User),
            "system" => Some(ActorKind::System),
            _ => None,
        }
    }
}

/// Request-scoped metadata stamped on every event a command appends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMeta {
    pub actor: Actor,
    pub request_id: String,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    /// The W3C `traceparent` of the span that appends the events, when tracing is on.
    pub trace_parent: Option<String>,
}

impl EventMeta {
    pub fn new(actor: Actor, request_id: impl Into<String>) -> Self {
        let request_id = request_id.into();
        EventMeta {
            actor,
            correlation_id: request_id.clone(),
            request_id,
            causation_id: None,
            trace_parent: None,
        }
    }
}

/// An event as it stands in the log. `position` is global and only increases in the order in which
/// readers can see events; `chain_seq`, `prev_hash` and `hash` form the organization's hash chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: i32,
    #[serde(with = "micros")]
    pub occurred_at: DateTime<Utc>,
    pub org_id: OrgId,
    pub actor: Actor,
    pub request_id: String,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub data: serde_json::Value,
    pub chain_seq: i64,
    pub prev_hash: String,
    pub hash: String,
    /// The W3C `traceparent` of the append that recorded the event, when tracing was on:
    /// operational, like `position`, so outside the hashed envelope.
    #[serde(
        rename = "traceparent",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub trace_parent: Option<String>,
}

/// The one timestamp format of the contract: RFC 3339, UTC, microseconds, `Z`.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A time as clients write one: RFC 3339, or a plain date (`2026-04-01`), meaning the start of
/// that day UTC, as the primary model's own examples write `since`.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc()),
    }
}

/// Timestamps are stored as epoch microseconds so both databases keep them exactly.
pub fn from_micros(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

mod micros {
    use super::format_timestamp;
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_timestamp(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_is_rfc_3339_or_a_date_meaning_its_start_utc() {
        let at = |s: &str| parse_timestamp(s).map(|t| format_timestamp(&t));
        assert_eq!(
            at("2026-04-01").as_deref(),
            Some("2026-04-01T00:00:00.000000Z")
        );
        assert_eq!(
            at("2026-04-01T12:30:00+02:00").as_deref(),
            Some("2026-04-01T10:30:00.000000Z")
        );
        for bad in ["2026-13-01", "2026-04", "01/04/2026", "", "yesterday"] {
            assert_eq!(at(bad), None, "{bad}");
        }
    }
}
