//! Results of the nuclei scanner (`nuclei -jsonl`), read tolerantly: fields may be missing or
//! null, some have older names (`templateID`, `matched`), and several come as a string or a list.

use easm_events::Detection;
use easm_events::Severity;
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
        .filter(|s| Severity::parse(s).is_some())
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
/// Detections and errors by line (item, for an array); lines with nothing to record are left out.
pub type Parsed = Vec<(usize, Result<Detection, String>)>;

/// Reads nuclei output as it arrives, so a large upload never has to be held whole: JSON lines
/// are read as each one completes; a JSON array (also accepted) is read once complete.
#[derive(Default)]
pub struct NucleiReader {
    pending: Vec<u8>,
    line: usize,
    /// None until the first non-blank byte tells the form.
    array: Option<bool>,
}

fn read_line(n: usize, bytes: &[u8], out: &mut Parsed) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        out.push((n, Err("not UTF-8 text".into())));
        return;
    };
    if text.trim().is_empty() {
        return;
    }
    let value = serde_json::from_str::<Value>(text).map_err(|e| e.to_string());
    match value.and_then(|v| nuclei_detection(&v)) {
        Ok(Some(d)) => out.push((n, Ok(d))),
        Ok(None) => {}
        Err(e) => out.push((n, Err(e))),
    }
}

impl NucleiReader {
    /// The next bytes of the body; returns what the lines completed by them hold.
    pub fn push(&mut self, chunk: &[u8]) -> Parsed {
        self.pending.extend_from_slice(chunk);
        if self.array.is_none() {
            let Some(b) = self.pending.iter().find(|b| !b.is_ascii_whitespace()) else {
                return vec![];
            };
            self.array = Some(*b == b'[');
        }
        let mut out = vec![];
        if self.array == Some(true) {
            return out;
        }
        let mut start = 0;
        while let Some(pos) = self.pending[start..].iter().position(|b| *b == b'\n') {
            self.line += 1;
            read_line(self.line, &self.pending[start..start + pos], &mut out);
            start += pos + 1;
        }
        self.pending.drain(..start);
        out
    }

    /// The end of the body: the last line, or the whole array.
    pub fn finish(self) -> Parsed {
        let mut out = vec![];
        if self.array != Some(true) {
            read_line(self.line + 1, &self.pending, &mut out);
            return out;
        }
        match serde_json::from_slice::<Vec<Value>>(&self.pending) {
            Ok(items) => {
                for (i, v) in items.iter().enumerate() {
                    match nuclei_detection(v) {
                        Ok(Some(d)) => out.push((i + 1, Ok(d))),
                        Ok(None) => {}
                        Err(e) => out.push((i + 1, Err(e))),
                    }
                }
            }
            Err(e) => out.push((1, Err(format!("not a JSON array: {e}")))),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole body at once.
    type Split = (Vec<(usize, Detection)>, Vec<(usize, String)>);

    fn parse_nuclei(body: &str) -> Split {
        let mut reader = NucleiReader::default();
        let mut parsed = reader.push(body.as_bytes());
        parsed.extend(reader.finish());
        let (mut found, mut errors) = (vec![], vec![]);
        for (n, r) in parsed {
            match r {
                Ok(d) => found.push((n, d)),
                Err(e) => errors.push((n, e)),
            }
        }
        (found, errors)
    }
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

    #[test]
    fn lines_split_across_chunks_read_the_same() {
        let body = "{\"template-id\":\"a\",\"info\":{\"name\":\"A\",\"severity\":\"low\"},\"matched-at\":\"h:1\"}\nnot json\n\n{\"template-id\":\"b\",\"info\":{\"name\":\"B\",\"severity\":\"high\"},\"matched-at\":\"h:2\"}";
        let mut reader = NucleiReader::default();
        let mut parsed = vec![];
        for chunk in body.as_bytes().chunks(7) {
            parsed.extend(reader.push(chunk));
        }
        parsed.extend(reader.finish());
        let lines: Vec<(usize, bool)> = parsed.iter().map(|(n, r)| (*n, r.is_ok())).collect();
        assert_eq!(lines, vec![(1, true), (2, false), (4, true)]);
        let mut bad = NucleiReader::default();
        assert_eq!(bad.push(b"\xff\xfe\n")[0].1, Err("not UTF-8 text".into()));
    }
}
