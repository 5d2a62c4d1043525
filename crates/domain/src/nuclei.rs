//! Results of the nuclei scanner (`nuclei -jsonl`), read tolerantly: fields may be missing or
//! null, some have older names (`templateID`, `matched`), and several come as a string or a list.

use crate::finding::SEVERITIES;
use easm_events::Detection;
use serde_json::Value;

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A string or the items of a list of strings.
fn texts(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(text).collect(),
        other => text(other).into_iter().collect(),
    }
}

fn first<'a>(v: &'a Value, names: &[&str]) -> &'a Value {
    names
        .iter()
        .map(|n| &v[*n])
        .find(|x| !x.is_null())
        .unwrap_or(&Value::Null)
}

/// One result line: `Ok(None)` when nuclei reports a matcher that did not match
/// (`matcher-status: false`), an error when it is not a result at all.
pub fn nuclei_detection(v: &Value) -> Result<Option<Detection>, String> {
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    if v["matcher-status"] == Value::Bool(false) {
        return Ok(None);
    }
    let template_id =
        text(first(v, &["template-id", "templateID", "template_id"])).ok_or("no template-id")?;
    let matched_at = text(first(v, &["matched-at", "matched", "host"]))
        .ok_or("no matched-at, matched or host")?;
    let info = &v["info"];
    let severity = text(&info["severity"])
        .map(|s| s.to_ascii_lowercase())
        .filter(|s| SEVERITIES.contains(&s.as_str()))
        .unwrap_or_else(|| "info".into());
    let class = &info["classification"];
    let cvss_score = match &class["cvss-score"] {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|s| (0.0..=10.0).contains(s));
    let mut evidence = vec![];
    for (label, value) in [
        ("matcher", &v["matcher-name"]),
        ("extracted", &v["extracted-results"]),
        ("ip", &v["ip"]),
        ("port", &v["port"]),
        ("type", &v["type"]),
    ] {
        let items = texts(value);
        if !items.is_empty() {
            evidence.push(format!("{label}: {}", items.join(", ")));
        }
    }
    Ok(Some(Detection {
        title: text(&info["name"]).unwrap_or_else(|| template_id.clone()),
        template_id,
        severity,
        category: text(&v["type"]).unwrap_or_default(),
        description: text(&info["description"]).unwrap_or_default(),
        evidence: evidence.join("\n"),
        remediation: text(&info["remediation"]).unwrap_or_default(),
        references: texts(&info["reference"]),
        cve: texts(&class["cve-id"])
            .first()
            .map(|c| c.to_ascii_uppercase()),
        cwe: texts(&class["cwe-id"])
            .first()
            .map(|c| c.to_ascii_uppercase()),
        cvss_score,
        matched_at,
        matcher_name: text(&v["matcher-name"]).unwrap_or_default(),
        source: "nuclei".into(),
    }))
}

/// What a results body held: each result with its 1-based line (or array position), and the
/// lines that could not be read with why.
pub type ParsedResults = (Vec<(usize, Detection)>, Vec<(usize, String)>);

/// A results body: a JSON array, or one JSON object a line.
pub fn parse_nuclei(body: &str) -> ParsedResults {
    let mut found = vec![];
    let mut errors = vec![];
    let mut take = |n: usize, v: Result<Value, String>| match v.and_then(|v| nuclei_detection(&v)) {
        Ok(Some(d)) => found.push((n, d)),
        Ok(None) => {}
        Err(e) => errors.push((n, e)),
    };
    if body.trim_start().starts_with('[') {
        match serde_json::from_str::<Vec<Value>>(body) {
            Ok(items) => {
                for (i, v) in items.into_iter().enumerate() {
                    take(i + 1, Ok(v));
                }
            }
            Err(e) => take(1, Err(format!("not a JSON array: {e}"))),
        }
    } else {
        for (i, line) in body.lines().enumerate() {
            if !line.trim().is_empty() {
                take(i + 1, serde_json::from_str(line).map_err(|e| e.to_string()));
            }
        }
    }
    (found, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_current_result() {
        let line = json!({
            "template-id": "CVE-2021-41773",
            "info": {"name": "Apache 2.4.49 - Path Traversal", "severity": "critical",
                     "description": "A path traversal.", "remediation": "Upgrade.",
                     "reference": ["https://nvd.nist.gov/vuln/detail/CVE-2021-41773"],
                     "classification": {"cve-id": ["cve-2021-41773"], "cwe-id": ["cwe-22"], "cvss-score": 7.5}},
            "type": "http", "host": "https://example.com", "matched-at": "https://example.com/cgi-bin/.%2e/",
            "ip": "93.184.216.34", "port": "443", "matcher-status": true, "matcher-name": "body",
            "extracted-results": ["root:x:0:0"], "timestamp": "2026-11-22T10:00:00Z"
        });
        let d = nuclei_detection(&line).unwrap().unwrap();
        assert_eq!(d.template_id, "CVE-2021-41773");
        assert_eq!(d.severity, "critical");
        assert_eq!(d.cve.as_deref(), Some("CVE-2021-41773"));
        assert_eq!(d.cwe.as_deref(), Some("CWE-22"));
        assert_eq!(d.cvss_score, Some(7.5));
        assert_eq!(d.matched_at, "https://example.com/cgi-bin/.%2e/");
        assert_eq!(d.matcher_name, "body");
        assert!(d.evidence.contains("extracted: root:x:0:0"));
        assert_eq!(d.source, "nuclei");
        assert_eq!(d.references.len(), 1);
    }

    #[test]
    fn tolerates_old_names_nulls_and_strings() {
        let line = json!({"templateID": "tech-detect", "matched": "http://x:8080",
            "info": {"name": null, "severity": "unknown", "reference": "https://a",
                     "classification": {"cve-id": null, "cvss-score": "5.3"}}});
        let d = nuclei_detection(&line).unwrap().unwrap();
        assert_eq!(d.title, "tech-detect");
        assert_eq!(d.severity, "info");
        assert_eq!(d.references, vec!["https://a"]);
        assert_eq!(d.cve, None);
        assert_eq!(d.cvss_score, Some(5.3));
        assert_eq!(
            nuclei_detection(&json!({"template-id": "t", "host": "h", "matcher-status": false})),
            Ok(None)
        );
        assert!(nuclei_detection(&json!({"info": {}})).is_err());
        assert!(nuclei_detection(&json!([1])).is_err());
    }

    #[test]
    fn reads_lines_or_an_array_and_reports_bad_lines() {
        let body = "{\"template-id\":\"a\",\"host\":\"h\"}\n\nnot json\n{\"template-id\":\"b\",\"matched-at\":\"h:1\",\"matcher-status\":false}\n{\"host\":\"h\"}\n";
        let (found, errors) = parse_nuclei(body);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, 1);
        assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), vec![3, 5]);
        let (found, errors) =
            parse_nuclei(r#"[{"template-id":"a","host":"h"},{"template-id":"b","host":"h"}]"#);
        assert_eq!((found.len(), errors.len()), (2, 0));
        let (found, errors) = parse_nuclei("[{");
        assert_eq!((found.len(), errors.len()), (0, 1));
    }
}
