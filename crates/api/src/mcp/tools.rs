//! The tool registry: each tool is a REST operation of this API, its input the operation's
//! parameters (and body fields, for the write tools) and its output the operation's answer, both
//! described with the operation's own schemas from the OpenAPI document. `docs/mcp-tools.md` is
//! written from this registry.

use crate::openapi;
use axum::http::Method;
use serde_json::{json, Map, Value};
use std::sync::{Arc, OnceLock};

/// One tool and the operation it runs.
pub(crate) struct ToolDef {
    pub name: &'static str,
    pub description: &'static str,
    pub method: Method,
    /// The operation's path, `{id}` filled from the argument of that name.
    pub path: &'static str,
    /// Parameters of the operation the tool does not take (point-in-time reads).
    pub hidden: &'static [&'static str],
    /// Arguments the tool requires beyond the operation's own required parameters.
    pub required: &'static [&'static str],
    /// The tool changes something: offered only to keys allowed writes.
    pub writes: bool,
}

const AS_OF: &[&str] = &["asOf"];

/// Every tool, read-only ones first. Names and the read-only set are a contract.
fn definitions() -> Vec<ToolDef> {
    let read = |name, description, path, hidden, required| ToolDef {
        name,
        description,
        method: Method::GET,
        path,
        hidden,
        required,
        writes: false,
    };
    vec![
        read("list_assets", "List the assets of the caller's organization (domains, subdomains, IPs, CIDR ranges, URLs, cloud resources). Filter by type, group, tag, criticality or a text in the value; paginated (page, perPage up to 100).", "/api/assets", AS_OF, &[]),
        read("get_asset", "One asset by id: value, type, group, tags, criticality, when it was added.", "/api/assets/{id}", &[], &[]),
        read("search_assets", "Find assets whose value contains a text (case-insensitive), optionally of one type; paginated.", "/api/assets", &["asOf", "groupId", "tag", "criticality"], &["q"]),
        read("list_findings", "List findings in the caller's org. Filter by severity, status, asset, scan job, template, or age (since/until on the last detection), or a text in title, template or location; sort by lastDetected, firstDetected or severity; paginated.", "/api/findings", AS_OF, &[]),
        read("get_finding", "One finding by id: template, severity, evidence, remediation, references, CVE/CWE/CVSS, triage status, detections.", "/api/findings/{id}", &[], &[]),
        read("count_findings", "Count findings under the same filters as list_findings: the total, per severity and per status.", "/api/findings/count", &[], &[]),
        read("list_scan_jobs", "List scan jobs, newest first. Filter by asset or status; paginated.", "/api/scan-jobs", &[], &[]),
        read("get_scan_job", "One scan job by id: asset, profile, ports, status, progress, findings per severity, timing.", "/api/scan-jobs/{id}", &[], &[]),
        read("list_discovery_jobs", "List discovery jobs (subdomain enumeration of root domains), newest first; paginated.", "/api/discovery/jobs", &[], &[]),
        read("get_discovery_job", "One discovery job by id: domains, modules, status, the subdomains found and where each came from.", "/api/discovery/jobs/{id}", &[], &[]),
        read("list_monitors", "List monitors: recurring scans of an asset or group that raise alerts when the attack surface changes; paginated.", "/api/monitors", &[], &[]),
        read("get_monitor", "One monitor by id: what it watches, how often, when it last and next runs.", "/api/monitors/{id}", &[], &[]),
        read("get_dashboard_stats", "The organization at a glance: assets per type and criticality, findings per severity and status, unresolved findings per severity, scan and discovery jobs of the last 30 days, monitors, alerts per status.", "/api/dashboard", &[], &[]),
        read("get_org_info", "The caller's organization: name, plan, its limits and what is used of them.", "/api/org", &[], &[]),
        ToolDef {
            name: "acknowledge_alert",
            description: "Acknowledge an open monitor alert (recorded with who and when, on the audit trail). Needs a key allowed writes and the analyst role.",
            method: Method::POST,
            path: "/api/monitors/alerts/{id}/acknowledge",
            hidden: &[],
            required: &[],
            writes: true,
        },
        ToolDef {
            name: "update_finding_status",
            description: "Triage a finding: set its status (open, acknowledged, resolved, ignored), and optionally its assignee and notes. Needs a key allowed writes and the analyst role.",
            method: Method::PATCH,
            path: "/api/findings/{id}",
            hidden: &[],
            required: &["status"],
            writes: true,
        },
    ]
}

/// A tool with its schemas, ready to list and to check arguments against.
pub(crate) struct Tool {
    pub def: ToolDef,
    pub input_schema: Arc<Map<String, Value>>,
    pub output_schema: Arc<Map<String, Value>>,
    /// Argument names that go in the request body, not the query.
    pub body: Vec<String>,
    validator: jsonschema::Validator,
}

impl Tool {
    /// What is wrong with `args`, if anything, as the client should read it.
    pub fn invalid(&self, args: &Value) -> Option<String> {
        let errors: Vec<String> = self
            .validator
            .iter_errors(args)
            .map(|e| {
                let at = e.instance_path().to_string();
                match at.is_empty() {
                    true => e.to_string(),
                    false => format!("{}: {e}", at.trim_start_matches('/')),
                }
            })
            .collect();
        (!errors.is_empty()).then(|| errors.join("; "))
    }
}

/// Every tool, built once from the OpenAPI document.
pub(crate) fn registry() -> &'static [Tool] {
    static TOOLS: OnceLock<Vec<Tool>> = OnceLock::new();
    TOOLS.get_or_init(|| {
        // Tools take no webhook URLs: the setting that changes the document does not matter.
        let doc = openapi::document(false);
        definitions()
            .into_iter()
            .map(|def| build(doc, def))
            .collect()
    })
}

pub(crate) fn find(name: &str) -> Option<&'static Tool> {
    registry().iter().find(|t| t.def.name == name)
}

fn build(doc: &Value, def: ToolDef) -> Tool {
    let op = &doc["paths"][def.path][def.method.as_str().to_ascii_lowercase()];
    assert!(op.is_object(), "no operation {} {}", def.method, def.path);
    let mut properties = Map::new();
    let mut required: Vec<String> = def.required.iter().map(|r| r.to_string()).collect();
    for p in op["parameters"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default();
        if def.hidden.contains(&name) {
            continue;
        }
        let mut schema = resolve(doc, &p["schema"]);
        if let (Some(d), Some(s)) = (p["description"].as_str(), schema.as_object_mut()) {
            s.entry("description").or_insert_with(|| json!(d));
        }
        properties.insert(name.to_string(), schema);
        if p["required"] == json!(true) && !required.iter().any(|r| r == name) {
            required.push(name.to_string());
        }
    }
    let mut body = Vec::new();
    let body_schema = resolve(
        doc,
        &op["requestBody"]["content"]["application/json"]["schema"],
    );
    // An optional body is `oneOf` null and the object.
    let fields = std::iter::once(&body_schema)
        .chain(body_schema["oneOf"].as_array().into_iter().flatten())
        .find_map(|s| s["properties"].as_object());
    for (name, schema) in fields.into_iter().flatten() {
        body.push(name.clone());
        properties.insert(name.clone(), schema.clone());
    }
    let input = json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    });
    let mut output = resolve(
        doc,
        &op["responses"]["200"]["content"]["application/json"]["schema"],
    );
    // Every answer is an object; MCP wants that said at the root (an `allOf` does not).
    if let Some(o) = output.as_object_mut() {
        o.entry("type").or_insert_with(|| json!("object"));
    }
    let validator = jsonschema::validator_for(&input).expect("a tool's input schema compiles");
    Tool {
        def,
        input_schema: Arc::new(object(input)),
        output_schema: Arc::new(object(output)),
        body,
        validator,
    }
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `schema` with every `$ref` to the document's components replaced by what it names.
fn resolve(doc: &Value, schema: &Value) -> Value {
    match schema {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                let name = r.trim_start_matches("#/components/schemas/");
                let mut target = resolve(doc, &doc["components"]["schemas"][name]);
                if let (Some(t), Some(d)) = (target.as_object_mut(), m.get("description")) {
                    t.insert("description".into(), d.clone());
                }
                return target;
            }
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), resolve(doc, v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| resolve(doc, v)).collect()),
        other => other.clone(),
    }
}

/// `docs/mcp-tools.md`: every tool with its operation and input schema.
pub fn tools_markdown() -> String {
    let mut out = String::from(
        "# MCP tools\n\n\
         <!-- Written from the tool registry (crates/api/src/mcp/tools.rs) by \
         `easm mcp-tools-doc > docs/mcp-tools.md`; a test fails when they differ. -->\n\n\
         The MCP server (`POST /mcp`, keys `mcp_sk_...`) offers these tools. Each runs the REST \
         operation named with it, as the key, and answers what the operation answers: as a \
         JSON-encoded text block in `result.content`, and as `structuredContent` (described by \
         the tool's `outputSchema`) from protocol revision 2025-06-18 on. Every call is on the \
         audit trail (`mcp.tool_called`, category `mcp`).\n\n\
         | Tool | Operation | Writes |\n|---|---|---|\n",
    );
    for t in registry() {
        out.push_str(&format!(
            "| `{}` | `{} {}` | {} |\n",
            t.def.name,
            t.def.method,
            t.def.path,
            if t.def.writes {
                "yes: keys created with `\"allowWrites\": true` only"
            } else {
                "no"
            }
        ));
    }
    for t in registry() {
        let schema = serde_json::to_string_pretty(&Value::Object((*t.input_schema).clone()))
            .expect("a schema serializes");
        out.push_str(&format!(
            "\n## `{}`\n\n{}\n\nRuns `{} {}`.\n\nInput schema:\n\n```json\n{}\n```\n",
            t.def.name, t.def.description, t.def.method, t.def.path, schema
        ));
    }
    out
}
