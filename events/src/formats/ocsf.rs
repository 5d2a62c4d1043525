//! Open Cybersecurity Schema Framework 1.x events: findings as Vulnerability Finding (2002, when
//! they name a CVE) or Detection Finding (2004), alerts as Detection Findings, audit events as
//! Account Change (3001, keys and members) or API Activity (6003), anything else as a Base Event
//! (0). The event's own data travels in `unmapped.easm`.

use super::{url_of, Message, PRODUCT, VERSION};
use crate::names::Severity;
use serde_json::{json, Map, Value};

pub const OCSF_VERSION: &str = "1.5.0";

fn severity_id(s: Option<Severity>) -> (u8, &'static str) {
    match s {
        Some(Severity::Critical) => (5, "Critical"),
        Some(Severity::High) => (4, "High"),
        Some(Severity::Medium) => (3, "Medium"),
        Some(Severity::Low) => (2, "Low"),
        Some(Severity::Info) => (1, "Informational"),
        None => (0, "Unknown"),
    }
}

/// What every class shares: metadata, time, severity, class and activity, the original data.
fn base(
    m: &Message,
    (class_uid, class_name): (u32, &str),
    (category_uid, category_name): (u32, &str),
    (activity_id, activity_name): (u32, &str),
) -> Map<String, Value> {
    let (sev, sev_name) = severity_id(m.severity());
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "product": {"name": PRODUCT, "vendor_name": PRODUCT, "version": VERSION},
        "uid": m.id,
        "tenant_uid": m.org_id(),
        "event_code": m.message_type(),
    });
    if let Some(c) = m.data()["correlationId"].as_str() {
        metadata["correlation_uid"] = json!(c);
    }
    let v = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": format!("{class_name}: {activity_name}"),
        "time": m.epoch_millis(),
        "severity_id": sev,
        "severity": sev_name,
        "message": m.title(),
        "metadata": metadata,
        "unmapped": {"easm": {"type": m.message_type(), "data": m.data()}},
    });
    match v {
        Value::Object(o) => o,
        _ => unreachable!("a JSON object literal"),
    }
}

pub fn event(m: &Message) -> Value {
    let action = m.action();
    let family = action.split_once('.').map_or(action, |(f, _)| f);
    let o = if m.is_audit() {
        match family {
            "api_key" | "user" => account_change(m, family),
            _ => api_activity(m),
        }
    } else {
        match family {
            "finding" => finding(m),
            "alert" => alert(m),
            _ => base(m, (0, "Base Event"), (0, "Uncategorized"), (99, "Other")),
        }
    };
    Value::Object(o)
}

fn resources(m: &Message) -> Option<Value> {
    let a = m.subject.asset.as_ref()?;
    let mut r = json!({"uid": a.id, "name": a.value, "type": a.asset_type,
        "group": {"uid": a.group_id}});
    if !a.tags.is_empty() {
        r["labels"] = json!(a.tags);
    }
    Some(json!([r]))
}

fn finding(m: &Message) -> Map<String, Value> {
    let f = m.subject.finding.clone().unwrap_or_default();
    let activity = match m.action() {
        "finding.new" => (1, "Create"),
        "finding.resolved" => (3, "Close"),
        _ => (2, "Update"),
    };
    let class = if f.cve.is_some() {
        (2002, "Vulnerability Finding")
    } else {
        (2004, "Detection Finding")
    };
    let mut o = base(m, class, (2, "Findings"), activity);
    let id = m.resource_id().unwrap_or(&f.id);
    let mut info =
        json!({"uid": id, "title": if f.title.is_empty() { m.title() } else { f.title.clone() }});
    if !f.description.is_empty() {
        info["desc"] = json!(f.description);
    }
    if !f.category.is_empty() {
        info["types"] = json!([f.category]);
    }
    if let Some(u) = url_of(m) {
        info["src_url"] = json!(u);
    }
    if !f.template_id.is_empty() {
        info["analytic"] =
            json!({"uid": f.template_id, "name": f.template_id, "type_id": 1, "type": "Rule"});
    }
    o.insert("finding_info".into(), info);
    let (status_id, status) = match f.status.as_str() {
        "open" => (1, "New"),
        "acknowledged" => (2, "In Progress"),
        "ignored" => (3, "Suppressed"),
        "resolved" => (4, "Resolved"),
        _ => (0, "Unknown"),
    };
    o.insert("status_id".into(), json!(status_id));
    o.insert("status".into(), json!(status));
    if let Some(r) = resources(m) {
        o.insert("resources".into(), r);
    }
    let (_, sev_name) = severity_id(m.severity());
    let mut vuln = json!({"title": f.title, "severity": sev_name});
    if !f.description.is_empty() {
        vuln["desc"] = json!(f.description);
    }
    if let Some(cve) = &f.cve {
        let mut c = json!({"uid": cve});
        if let Some(score) = f.cvss_score {
            c["cvss"] = json!([{"base_score": score, "version": "3.1"}]);
        }
        vuln["cve"] = c;
    }
    if let Some(cwe) = &f.cwe {
        vuln["cwe"] = json!({"uid": cwe});
    }
    if !f.references.is_empty() {
        vuln["references"] = json!(f.references);
    }
    if !f.remediation.is_empty() {
        vuln["remediation"] = json!({"desc": f.remediation});
        o.insert("remediation".into(), json!({"desc": f.remediation}));
    }
    if f.cve.is_some() || f.cwe.is_some() {
        o.insert("vulnerabilities".into(), json!([vuln]));
    }
    o
}

fn alert(m: &Message) -> Map<String, Value> {
    let activity = match m.action() {
        "alert.created" => (1, "Create"),
        "alert.resolved" => (3, "Close"),
        _ => (2, "Update"),
    };
    let mut o = base(m, (2004, "Detection Finding"), (2, "Findings"), activity);
    let d = m.event_data();
    let mut info = json!({
        "uid": m.resource_id().unwrap_or(m.id),
        "title": d["title"].as_str().map(str::to_string).unwrap_or_else(|| m.title()),
    });
    if let Some(t) = d["alertType"].as_str() {
        info["types"] = json!([t]);
    }
    o.insert("finding_info".into(), info);
    if let Some(r) = resources(m) {
        o.insert("resources".into(), r);
    }
    o
}

/// The actor of an audit record as an OCSF user.
fn actor_user(m: &Message) -> Value {
    let a = &m.data()["actor"];
    let id = a["id"].as_str().unwrap_or("unknown");
    let (type_id, kind) = match a["kind"].as_str() {
        Some("user") => (1, "User"),
        Some("system") => (3, "System"),
        _ => (99, "API key"),
    };
    json!({"uid": id, "name": id, "type_id": type_id, "type": kind,
        "account": {"uid": id, "name": id, "type_id": 99, "type": kind}})
}

fn verb(action: &str) -> &str {
    action.rsplit_once('.').map_or(action, |(_, v)| v)
}

fn account_change(m: &Message, family: &str) -> Map<String, Value> {
    let activity = match verb(m.action()) {
        "created" | "added" => (1, "Create"),
        "revoked" | "removed" => (6, "Delete"),
        _ => (99, "Other"),
    };
    let mut o = base(
        m,
        (3001, "Account Change"),
        (3, "Identity & Access Management"),
        activity,
    );
    let d = m.event_data();
    let uid = m.resource_id().unwrap_or_default();
    let name = d["name"]
        .as_str()
        .or_else(|| d["email"].as_str())
        .unwrap_or(uid);
    let (type_id, kind) = if family == "api_key" {
        (99, "API key")
    } else {
        (1, "User")
    };
    let mut user = json!({"uid": uid, "name": name, "type_id": type_id, "type": kind,
        "account": {"uid": uid, "name": name, "type_id": 99, "type": kind}});
    if let Some(e) = d["email"].as_str() {
        user["email_addr"] = json!(e);
    }
    o.insert("user".into(), user);
    o.insert("actor".into(), json!({"user": actor_user(m)}));
    o
}

fn api_activity(m: &Message) -> Map<String, Value> {
    let activity = match verb(m.action()) {
        "created" | "added" | "requested" | "triggered" => (1, "Create"),
        "removed" | "deleted" | "revoked" => (4, "Delete"),
        _ => (3, "Update"),
    };
    let mut o = base(
        m,
        (6003, "API Activity"),
        (6, "Application Activity"),
        activity,
    );
    let a = &m.data()["actor"];
    let mut actor = json!({"user": actor_user(m)});
    if let Some(ua) = a["userAgent"].as_str() {
        actor["app_name"] = json!(ua);
    }
    o.insert("actor".into(), actor);
    o.insert(
        "api".into(),
        json!({
            "operation": m.action(),
            "request": {"uid": m.data()["requestId"].as_str().unwrap_or(m.id)},
            "service": {"name": PRODUCT, "uid": PRODUCT, "version": VERSION},
        }),
    );
    o.insert(
        "src_endpoint".into(),
        match a["sourceIp"].as_str() {
            Some(ip) => json!({"ip": ip}),
            None => json!({"name": a["kind"].as_str().unwrap_or("system")}),
        },
    );
    o.insert("cloud".into(), json!({"provider": PRODUCT}));
    if let Some(r) = resources(m) {
        o.insert("resources".into(), r);
    }
    o
}
