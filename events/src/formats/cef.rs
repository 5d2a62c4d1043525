//! ArcSight Common Event Format: one `CEF:0|...` line, the body syslog endpoints send by
//! default.

use super::{url_of, Message, PRODUCT, VERSION};
use crate::names::Severity;

/// CEF severity, 0 to 10.
fn cef_severity(s: Option<Severity>) -> u8 {
    match s {
        Some(Severity::Critical) => 10,
        Some(Severity::High) => 8,
        Some(Severity::Medium) => 5,
        Some(Severity::Low) => 3,
        Some(Severity::Info) | None => 1,
    }
}

/// Header fields escape `\` and `|`; no line breaks.
fn header(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// Extension values escape `\` and `=`, and line breaks as `\n` / `\r`.
fn value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

pub fn cef_line(m: &Message) -> String {
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", m.epoch_millis().to_string()),
        ("externalId", m.id.to_string()),
        ("act", m.message_type().to_string()),
        ("cs1Label", "orgId".into()),
        ("cs1", m.org_id().to_string()),
    ];
    if let Some(id) = m.resource_id() {
        ext.push(("cs2Label", "resourceId".into()));
        ext.push(("cs2", id.to_string()));
    }
    if let Some(a) = &m.subject.asset {
        ext.push(("dhost", a.value.clone()));
        ext.push(("cs3Label", "assetGroupId".into()));
        ext.push(("cs3", a.group_id.clone()));
        if !a.tags.is_empty() {
            ext.push(("cs4Label", "assetTags".into()));
            ext.push(("cs4", a.tags.join(",")));
        }
    }
    if let Some(f) = &m.subject.finding {
        ext.push(("msg", f.title.clone()));
        ext.push(("outcome", f.status.clone()));
        if let Some(cve) = &f.cve {
            ext.push(("cs5Label", "cve".into()));
            ext.push(("cs5", cve.clone()));
        }
        if let Some(score) = f.cvss_score {
            ext.push(("cfp1Label", "cvssScore".into()));
            ext.push(("cfp1", score.to_string()));
        }
    }
    if let Some(u) = url_of(m) {
        ext.push(("request", u));
    }
    if m.is_audit() {
        let actor = &m.data()["actor"];
        if let Some(id) = actor["id"].as_str() {
            ext.push(("suser", id.to_string()));
        }
        if let Some(ip) = actor["sourceIp"].as_str() {
            ext.push(("src", ip.to_string()));
        }
    }
    let ext: Vec<String> = ext
        .into_iter()
        .map(|(k, v)| format!("{k}={}", value(&v)))
        .collect();
    format!(
        "CEF:0|{PRODUCT}|{PRODUCT}|{VERSION}|{}|{}|{}|{}",
        header(m.message_type()),
        header(&m.title()),
        cef_severity(m.severity()),
        ext.join(" ")
    )
}
