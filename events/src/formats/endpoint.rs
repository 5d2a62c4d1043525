//! What is queued for an endpoint: a message rendered for its kind and format (fixed at queue
//! time, so every retry sends the same bytes), or why the message is left out (the endpoint's
//! filter, or a chat channel that only takes messages meant for people).

use super::{cef_line, render, slack_message, teams_message, Message, PRODUCT};
use crate::endpoint_options::{DeliveryFilter, EndpointOptions};
use crate::names::{EndpointKind, PayloadFormat, Severity};
use serde_json::json;

/// What rendering needs to know of the server.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// `EASM_PUBLIC_URL`: where links in chat messages point.
    pub public_url: Option<String>,
    /// This machine's name, the HOSTNAME of syslog messages and the `host` of HEC events.
    pub hostname: String,
}

/// Whether rendering or filtering for an endpoint with `o` reads what the read models know of a
/// message's subject: Standard Webhooks bodies (in any envelope) carry only the event.
pub fn needs_subject(o: &EndpointOptions) -> bool {
    o.filter.is_some()
        || o.format != PayloadFormat::Standard
        || matches!(
            o.kind,
            EndpointKind::Syslog | EndpointKind::Slack | EndpointKind::Teams
        )
}

/// Why `m` is not for an endpoint with `filter`, if it is not: every criterion must hold.
pub fn filtered_out(filter: Option<&DeliveryFilter>, m: &Message) -> Option<String> {
    let f = filter?;
    if let Some(min) = f.min_severity {
        match m.severity() {
            Some(s) if s <= min => {}
            Some(s) => return Some(format!("filter: severity {s} is below {min}")),
            None => return Some(format!("filter: no severity (minSeverity {min})")),
        }
    }
    let asset = m.subject.asset.as_ref();
    if !f.group_ids.is_empty()
        && !asset.is_some_and(|a| f.group_ids.iter().any(|g| g.as_str() == a.group_id))
    {
        return Some("filter: not about an asset in the filter's groups".into());
    }
    if !f.tags.is_empty()
        && !asset.is_some_and(|a| {
            a.tags
                .iter()
                .any(|t| f.tags.iter().any(|w| w.eq_ignore_ascii_case(t)))
        })
    {
        return Some("filter: not about an asset with the filter's tags".into());
    }
    None
}

/// The body queued for an endpoint with `o`, or why there is none.
pub fn queued_body(o: &EndpointOptions, m: &Message, ctx: &Context) -> Result<String, String> {
    let public = ctx.public_url.as_deref();
    match o.kind {
        EndpointKind::Webhook | EndpointKind::Elasticsearch => {
            Ok(render(o.format, m).body.to_string())
        }
        EndpointKind::SplunkHec => Ok(hec_event(o, m, ctx).to_string()),
        EndpointKind::Syslog => Ok(syslog_message(o.format, m, &ctx.hostname)),
        EndpointKind::Slack => slack_message(m, public)
            .map(|v| v.to_string())
            .ok_or_else(|| format!("{} is not sent to chat channels", m.message_type())),
        EndpointKind::Teams => teams_message(m, public)
            .map(|v| v.to_string())
            .ok_or_else(|| format!("{} is not sent to chat channels", m.message_type())),
    }
}

/// One event of Splunk's HTTP Event Collector (`/services/collector/event`).
fn hec_event(o: &EndpointOptions, m: &Message, ctx: &Context) -> serde_json::Value {
    let mut e = json!({
        "time": m.epoch_millis() as f64 / 1000.0,
        "host": ctx.hostname,
        "source": o.source.as_deref().unwrap_or(PRODUCT),
        "sourcetype": o
            .sourcetype
            .clone()
            .unwrap_or_else(|| format!("{PRODUCT}:{}", m.message_type())),
        "event": render(o.format, m).body,
    });
    if let Some(i) = &o.index {
        e["index"] = json!(i);
    }
    e
}

/// Syslog severity (RFC 5424): critical 2, high 3, medium 4, low 5, informational 6.
fn syslog_severity(s: Option<Severity>) -> u8 {
    match s {
        Some(Severity::Critical) => 2,
        Some(Severity::High) => 3,
        Some(Severity::Medium) => 4,
        Some(Severity::Low) => 5,
        Some(Severity::Info) | None => 6,
    }
}

/// Printable US-ASCII, at most `max`, `-` when empty (RFC 5424 header fields).
fn header_field(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() {
        "-".into()
    } else {
        v
    }
}

/// An RFC 5424 message (facility local0) whose MSG is a CEF line or JSON, without the framing
/// the transport adds.
pub fn syslog_message(format: PayloadFormat, m: &Message, hostname: &str) -> String {
    const LOCAL0: u8 = 16;
    let body = match format {
        PayloadFormat::Cef => cef_line(m),
        other => render(other, m).body.to_string(),
    };
    format!(
        "<{}>1 {} {} {PRODUCT} - {} - {body}",
        LOCAL0 * 8 + syslog_severity(m.severity()),
        m.timestamp(),
        header_field(hostname, 255),
        header_field(m.message_type(), 32),
    )
}
