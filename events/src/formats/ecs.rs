//! Elastic Common Schema 8.x documents: `@timestamp`, `event.*` as ECS's categorization fields
//! allow them, `vulnerability.*` for findings, `host.*` and `url.*` for the asset and where a
//! finding was seen, the event's own data under `easm`.

use super::{url_of, url_parts, Message, PRODUCT, VERSION};
use crate::names::Severity;
use serde_json::{json, Value};

pub const ECS_VERSION: &str = "8.11.0";

/// `event.severity` (a number; higher is worse) and the severity's name.
fn severity(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Critical => (99, "Critical"),
        Severity::High => (73, "High"),
        Severity::Medium => (47, "Medium"),
        Severity::Low => (21, "Low"),
        Severity::Info => (1, "Informational"),
    }
}

/// `event.kind`, `event.category` and `event.type`, from ECS's allowed values.
fn categorize(m: &Message) -> (&'static str, &'static str, &'static str) {
    let action = m.action();
    let family = action.split_once('.').map_or(action, |(f, _)| f);
    let verb = action.rsplit_once('.').map_or(action, |(_, v)| v);
    let change = match verb {
        "created" | "added" | "new" | "requested" => "creation",
        "removed" | "deleted" | "revoked" => "deletion",
        "started" => "start",
        "completed" | "failed" | "cancelled" => "end",
        _ => "change",
    };
    match (m.is_audit(), family) {
        (false, "finding") => ("state", "vulnerability", "info"),
        (false, "alert") => ("alert", "intrusion_detection", "info"),
        (_, "api_key" | "user") => (
            "event",
            "iam",
            match change {
                "creation" => "creation",
                "deletion" => "deletion",
                _ => "change",
            },
        ),
        // A tool call reads (or writes through) the API: an access of it.
        (_, "mcp") => ("event", "web", "access"),
        (_, "scan" | "discovery") => (
            "event",
            "host",
            match change {
                "start" | "end" => change,
                _ => "info",
            },
        ),
        _ => (
            "event",
            "configuration",
            match change {
                "start" | "end" => "change",
                other => other,
            },
        ),
    }
}

pub fn document(m: &Message) -> Value {
    let (kind, category, ty) = categorize(m);
    let mut event = json!({
        "id": m.id,
        "kind": kind,
        "category": [category],
        "type": [ty],
        "action": m.message_type(),
        "dataset": "easm.events",
        "module": PRODUCT,
        "provider": PRODUCT,
    });
    if let Some(s) = m.severity() {
        event["severity"] = json!(severity(s).0);
    }
    let mut doc = json!({
        "@timestamp": m.timestamp(),
        "ecs": {"version": ECS_VERSION},
        "event": event,
        "message": m.title(),
        "organization": {"id": m.org_id()},
        "observer": {"vendor": PRODUCT, "product": PRODUCT, "version": VERSION, "type": "scanner"},
        "easm": {"type": m.message_type(), "data": m.data()},
    });
    if let Some(a) = &m.subject.asset {
        doc["host"] = json!({"name": a.value, "hostname": a.value, "id": a.id});
        if a.asset_type == "ip" {
            doc["host"]["ip"] = json!([a.value]);
        }
        if !a.tags.is_empty() {
            doc["tags"] = json!(a.tags);
        }
        doc["labels"] = json!({"asset_group_id": a.group_id, "asset_type": a.asset_type});
    }
    if let Some(f) = &m.subject.finding {
        let mut v = json!({
            "id": f.cve.clone().unwrap_or_else(|| f.template_id.clone()),
            "description": if f.description.is_empty() { &f.title } else { &f.description },
            "category": [if f.category.is_empty() { "exposure" } else { &f.category }],
            "scanner": {"vendor": PRODUCT},
            "enumeration": if f.cve.is_some() { "CVE" } else { "easm" },
        });
        if let Some(s) = m.severity() {
            v["severity"] = json!(severity(s).1);
        }
        if let Some(score) = f.cvss_score {
            v["score"] = json!({"base": score, "version": "3.1"});
            v["classification"] = json!("CVSS");
        }
        if let Some(r) = f.references.first() {
            v["reference"] = json!(r);
        }
        doc["vulnerability"] = v;
        doc["rule"] = json!({"id": f.template_id, "name": f.title});
    }
    if let Some(u) = url_of(m) {
        let (scheme, host) = url_parts(&u).unwrap_or_default();
        let domain = host.rsplit_once(':').map_or(host, |(h, _)| h);
        doc["url"] = json!({"full": u, "scheme": scheme, "domain": domain});
    }
    if m.is_audit() {
        let a = &m.data()["actor"];
        if let Some(id) = a["id"].as_str() {
            doc["user"] = json!({"id": id});
        }
        if let Some(ip) = a["sourceIp"].as_str() {
            doc["source"] = json!({"ip": ip});
        }
        if let Some(ua) = a["userAgent"].as_str() {
            doc["user_agent"] = json!({"original": ua});
        }
    }
    doc
}
