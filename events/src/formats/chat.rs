//! Short human-readable messages for chat channels (Slack and Microsoft Teams incoming
//! webhooks): new findings, new alerts, finished scans, discovery, and tests. Other messages
//! are not for people and are not sent.

use super::Message;
use serde_json::{json, Value};

/// Whether a chat channel is sent messages of this type.
fn for_people(message_type: &str) -> bool {
    matches!(
        message_type,
        "finding.new" | "alert.created" | "scan.completed" | "webhook.test"
    ) || message_type.starts_with("discovery.")
}

/// What a chat message says.
struct Summary {
    heading: String,
    /// (label, value)
    facts: Vec<(&'static str, String)>,
    /// The API path of the subject.
    path: Option<String>,
}

fn summary(m: &Message) -> Option<Summary> {
    let t = m.message_type();
    if !for_people(t) {
        return None;
    }
    let d = m.data();
    let heading = match t {
        "finding.new" => "New finding".to_string(),
        "alert.created" => "New alert".to_string(),
        "scan.completed" => "Scan completed".to_string(),
        "webhook.test" => "Test message from easm".to_string(),
        other => format!("Discovery: {}", other.trim_start_matches("discovery.")),
    };
    let mut facts = vec![];
    if let Some(s) = m.severity() {
        facts.push(("Severity", s.as_str().to_uppercase()));
    }
    if let Some(a) = &m.subject.asset {
        facts.push(("Asset", a.value.clone()));
    }
    let title = m
        .subject
        .finding
        .as_ref()
        .map(|f| f.title.clone())
        .or_else(|| d["title"].as_str().map(str::to_string));
    if let Some(title) = title {
        facts.push(("Title", title));
    }
    for (label, key) in [
        ("Profile", "profile"),
        ("Domains", "domains"),
        ("Subdomains", "subdomains"),
    ] {
        let v = match &d[key] {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        };
        facts.push((label, v));
    }
    if let Some(counts) = d["counts"].as_object() {
        let found: Vec<String> = counts
            .iter()
            .filter(|(_, n)| n.as_u64().is_some_and(|n| n > 0))
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        facts.push((
            "Findings",
            if found.is_empty() {
                "none".into()
            } else {
                found.join(", ")
            },
        ));
    }
    if let Some(names) = d["newNames"].as_array() {
        facts.push(("New names", names.len().to_string()));
    }
    let path = match t {
        "finding.new" => m.resource_id().map(|id| format!("/api/findings/{id}")),
        "alert.created" => m.resource_id().map(|id| format!("/api/alerts/{id}")),
        "scan.completed" => d["scanJobId"]
            .as_str()
            .map(|id| format!("/api/scan-jobs/{id}")),
        _ => d["discoveryJobId"]
            .as_str()
            .map(|id| format!("/api/discovery-jobs/{id}")),
    };
    Some(Summary {
        heading,
        facts,
        path,
    })
}

fn link(base: Option<&str>, path: &str) -> String {
    format!("{}{path}", base.unwrap_or("").trim_end_matches('/'))
}

/// A Slack incoming-webhook message (`text` with mrkdwn); `base`: the public URL links start
/// from.
pub fn slack_message(m: &Message, base: Option<&str>) -> Option<Value> {
    let Summary {
        heading,
        facts,
        path,
    } = summary(m)?;
    let mut lines = vec![format!("*{heading}*")];
    lines.extend(facts.iter().map(|(k, v)| format!("*{k}:* {v}")));
    if let Some(p) = path {
        let l = link(base, &p);
        lines.push(if base.is_some() {
            format!("<{l}|Open in easm>")
        } else {
            format!("`{l}`")
        });
    }
    Some(json!({"text": lines.join("\n")}))
}

/// A Microsoft Teams incoming-webhook message: an Adaptive Card with the facts.
pub fn teams_message(m: &Message, base: Option<&str>) -> Option<Value> {
    let Summary {
        heading,
        facts,
        path,
    } = summary(m)?;
    let mut body = vec![
        json!({"type": "TextBlock", "text": heading, "weight": "Bolder", "size": "Medium", "wrap": true}),
        json!({"type": "FactSet", "facts": facts.iter().map(|(k, v)| json!({"title": k, "value": v})).collect::<Vec<_>>()}),
    ];
    let mut actions = vec![];
    if let Some(p) = path {
        let l = link(base, &p);
        if base.is_some() {
            actions.push(json!({"type": "Action.OpenUrl", "title": "Open in easm", "url": l}));
        } else {
            body.push(json!({"type": "TextBlock", "text": l, "isSubtle": true, "wrap": true}));
        }
    }
    Some(json!({
        "type": "message",
        "summary": heading,
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": actions,
            },
        }],
    }))
}
