//! The findings export as SARIF 2.1.0, for code-scanning dashboards: one result per finding, and
//! one rule per template in `tool.driver.rules` (its `helpUri`, and `security-severity`, by
//! which the dashboards rank). The export streams page by page, so a rule is numbered where its
//! template first appears and the rules are written after the results: SARIF is JSON, and the
//! order of an object's members carries no meaning.

use easm_projections::read::FindingView;
use serde_json::{json, Value};
use std::collections::HashMap;

pub const HEAD: &str = concat!(
    r#"{"version":"2.1.0","$schema":"https://json.schemastore.org/sarif-2.1.0.json","#,
    r#""runs":[{"results":["#
);

/// The rules met so far, in the order of their `ruleIndex`.
#[derive(Default)]
pub struct Rules {
    rules: Vec<Value>,
    index: HashMap<String, usize>,
}

impl Rules {
    /// The result of one finding, its template's rule numbered on first sight.
    pub fn result(&mut self, f: &FindingView) -> Value {
        let index = match self.index.get(&f.template_id) {
            Some(i) => *i,
            None => {
                self.rules.push(rule(f));
                self.index
                    .insert(f.template_id.clone(), self.rules.len() - 1);
                self.rules.len() - 1
            }
        };
        json!({
            "ruleId": f.template_id,
            "ruleIndex": index,
            "level": level(&f.severity),
            "message": {"text": f.title},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": f.matched_at}}}],
            "partialFingerprints": {"easmFindingId": f.id},
            "properties": {
                "severity": f.severity,
                "status": f.status,
                "assetId": f.asset_id,
                "cve": f.cve,
                "cwe": f.cwe,
                "cvssScore": f.cvss_score,
                "lastDetected": f.last_detected,
            },
        })
    }

    /// What closes the results: the tool and its rules, then the run and the log.
    pub fn tail(&self) -> String {
        let tool = json!({"driver": {
            "name": "easm",
            "version": env!("CARGO_PKG_VERSION"),
            "rules": self.rules,
        }});
        format!(r#"],"tool":{tool}}}]}}"#)
    }
}

fn level(severity: &str) -> &'static str {
    match severity {
        "critical" | "high" => "error",
        "medium" => "warning",
        _ => "note",
    }
}

/// A template's rule, from the first finding of it.
fn rule(f: &FindingView) -> Value {
    let mut r = json!({
        "id": f.template_id,
        "shortDescription": {"text": f.title},
        "defaultConfiguration": {"level": level(&f.severity)},
        "properties": {
            "security-severity": security_severity(f),
            "tags": tags(f),
        },
    });
    if !f.description.is_empty() {
        r["fullDescription"] = json!({"text": f.description});
    }
    if !f.remediation.is_empty() {
        r["help"] = json!({"text": f.remediation});
    }
    if let Some(uri) = help_uri(f) {
        r["helpUri"] = json!(uri);
    }
    r
}

/// The CVSS score when the finding has one, else a score inside its severity's CVSS band; as a
/// string, the way code scanning reads it.
fn security_severity(f: &FindingView) -> String {
    let score = f.cvss_score.unwrap_or(match f.severity.as_str() {
        "critical" => 9.5,
        "high" => 8.0,
        "medium" => 5.5,
        "low" => 3.0,
        _ => 0.0,
    });
    format!("{:.1}", score.clamp(0.0, 10.0))
}

fn tags(f: &FindingView) -> Vec<String> {
    let mut tags = vec!["security".to_string()];
    tags.extend(f.cwe.iter().cloned());
    tags.extend(f.cve.iter().cloned());
    tags
}

/// Where to read about the template: its first http(s) reference, else the CVE at NVD, else the
/// CWE at MITRE.
fn help_uri(f: &FindingView) -> Option<String> {
    if let Some(r) = f
        .references
        .iter()
        .find(|r| r.starts_with("https://") || r.starts_with("http://"))
    {
        return Some(r.clone());
    }
    if let Some(cve) = &f.cve {
        return Some(format!("https://nvd.nist.gov/vuln/detail/{cve}"));
    }
    let cwe = f.cwe.as_deref()?;
    let n = cwe.trim_start_matches("CWE-");
    n.chars()
        .all(|c| c.is_ascii_digit())
        .then(|| format!("https://cwe.mitre.org/data/definitions/{n}.html"))
}
