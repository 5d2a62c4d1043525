//! The MCP server end to end: the official Python SDK (`mcp`) reads an organization's attack
//! surface over Streamable HTTP and through `easm mcp` (stdio), never another organization's;
//! MCP keys open only `/mcp` and REST keys only the REST API; revocation, the rate limit, write
//! tools, JSON-RPC errors, protocol revisions and the audit trail. On SQLite and PostgreSQL.

use crate::findings::{import, new_job, NUCLEI};
use crate::helpers::*;
use crate::on_both_backends;
use easm_domain::{Plan, Role};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashSet;

on_both_backends!(
    the_python_sdk_reads_one_organization_over_http_and_stdio,
    keys_open_one_surface_each_and_revocation_is_immediate,
    calls_are_limited_to_sixty_a_minute_per_key,
    write_tools_need_a_key_allowed_writes_and_a_role_that_may,
    errors_are_json_rpc_errors_and_revisions_are_negotiated,
);

/// The read-only tools every MCP key has, in the registry's order.
const READ_TOOLS: [&str; 14] = [
    "list_assets",
    "get_asset",
    "search_assets",
    "list_findings",
    "get_finding",
    "count_findings",
    "list_scan_jobs",
    "get_scan_job",
    "list_discovery_jobs",
    "get_discovery_job",
    "list_monitors",
    "get_monitor",
    "get_dashboard_stats",
    "get_org_info",
];

/// A JSON-RPC client of `/mcp` for what the SDK hides: raw codes, headers, revisions.
pub(crate) struct Mcp {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) key: String,
}

impl Mcp {
    pub(crate) fn new(url: String, key: &str) -> Mcp {
        Mcp {
            http: reqwest::Client::new(),
            url,
            key: key.to_string(),
        }
    }

    /// POST one request, with `MCP-Protocol-Version: version` when given; the HTTP status and
    /// the JSON answer.
    pub(crate) async fn send(&self, body: Value, version: Option<&str>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(&self.url)
            .bearer_auth(&self.key)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(v) = version {
            req = req.header("mcp-protocol-version", v);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn rpc(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let (status, answer) = self.send(body, Some("2025-11-25")).await;
        assert_eq!(status, StatusCode::OK, "{method}: {answer}");
        answer
    }

    pub(crate) async fn call(&self, tool: &str, arguments: Value) -> Value {
        self.rpc("tools/call", json!({"name": tool, "arguments": arguments}))
            .await
    }

    pub(crate) async fn tool_names(&self) -> Vec<String> {
        let listed = self.rpc("tools/list", json!({})).await;
        listed["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    }
}

/// A new MCP key of the tenant made with `body`; its secret and id.
pub(crate) async fn mcp_key(t: &Tenant, body: Value) -> (String, String) {
    let made = t.post("/api/mcp-keys", body).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    (made.body["key"].as_str().unwrap().to_string(), made.id())
}

/// Runs `tests/api/mcp_client.py` (the Python SDK) with `plan`; its output, one value a line.
fn python_client(plan: Value) -> Vec<Value> {
    let script = format!(
        "import runpy; runpy.run_path({:?}, run_name='__main__')",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/api/mcp_client.py")
    );
    run_python(&script, &plan.to_string())
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An organization with assets, findings, a scan job, a discovery job and a monitor, and another
/// organization on the same server with data of its own.
struct Surface {
    t: Tenant,
    ip: String,
    job: String,
    finding: String,
    discovery: String,
    monitor: String,
    /// The other organization's ids: none may appear in anything the first one's key reads.
    foreign: Vec<String>,
}

impl Surface {
    async fn new(b: Backend) -> Surface {
        let t = Tenant::new(b, Plan::Pro, "Web").await;
        let ip = t.asset("127.0.0.1", "ip").await;
        let domain = t.asset("example.com", "domain").await;
        let job = new_job(&t.app, &t.key, &ip, "quick").await;
        assert_eq!(
            import(&t.app, &t.key, &job, NUCLEI).await.status,
            StatusCode::OK
        );
        let critical = t.get("/api/findings?severity=critical").await;
        let finding = critical.body["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let run = t
            .post("/api/discovery/run", json!({"domains": ["example.com"]}))
            .await;
        assert!(run.status.is_success(), "{}", run.body);
        let discovery = run.id();
        let monitor = t
            .post(
                "/api/monitors",
                json!({"assetId": domain, "frequencyHours": 24}),
            )
            .await;
        assert_eq!(monitor.status, StatusCode::CREATED, "{}", monitor.body);
        let monitor = monitor.id();

        let (other, other_key) = t.app.org(Plan::Pro).await;
        let group = t.app.group(&other_key, "Theirs").await;
        let theirs = t.app.asset(&other_key, &group, "127.0.0.1", "ip").await;
        let their_job = new_job(&t.app, &other_key, &theirs, "quick").await;
        let imported = import(&t.app, &other_key, &their_job, NUCLEI).await;
        assert_eq!(imported.status, StatusCode::OK, "{}", imported.body);
        let their_findings = t.app.get(&other_key, "/api/findings").await;
        let mut foreign = vec![other.to_string(), group, theirs, their_job];
        foreign.extend(
            their_findings
                .items_field("id")
                .into_iter()
                .map(String::from),
        );
        Surface {
            t,
            ip,
            job,
            finding,
            discovery,
            monitor,
            foreign,
        }
    }

    /// Every read-only tool once, and two reads of the other organization's data.
    fn calls(&self) -> Vec<Value> {
        let s = self;
        vec![
            json!(["list_assets", {}]),
            json!(["get_asset", {"id": s.ip}]),
            json!(["search_assets", {"q": "EXAMPLE"}]),
            json!(["list_findings", {"severity": "critical", "status": "open"}]),
            json!(["get_finding", {"id": s.finding}]),
            json!(["count_findings", {}]),
            json!(["list_scan_jobs", {}]),
            json!(["get_scan_job", {"id": s.job}]),
            json!(["list_discovery_jobs", {}]),
            json!(["get_discovery_job", {"id": s.discovery}]),
            json!(["list_monitors", {}]),
            json!(["get_monitor", {"id": s.monitor}]),
            json!(["get_dashboard_stats", {}]),
            json!(["get_org_info", {}]),
            json!(["get_asset", {"id": s.foreign[2]}]),
            json!(["get_finding", {"id": s.foreign[4]}]),
        ]
    }
}

async fn the_python_sdk_reads_one_organization_over_http_and_stdio(b: Backend) {
    let s = Surface::new(b).await;
    let (key, _) = mcp_key(&s.t, json!({"name": "claude"})).await;
    let everything = s.t.get("/api/findings?perPage=100").await;
    let mut outputs = Vec::new();
    for transport in ["http", "stdio"] {
        let lines = python_client(json!({
            "transport": transport,
            "url": s.t.app.url("/mcp"),
            "key": key,
            "easm": env!("CARGO_BIN_EXE_easm"),
            "calls": s.calls(),
            "resources": [
                format!("easm://findings/{}", s.finding),
                format!("easm://assets/{}", s.foreign[2]),
            ],
        }));
        assert_eq!(lines[0]["initialized"], "2025-11-25", "{transport}");
        assert_eq!(lines[0]["server"], "easm");
        let tools: Vec<&str> = lines[1]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(tools, READ_TOOLS, "{transport}: a key without writes");
        assert_eq!(lines[1]["output_schemas"].as_array().unwrap().len(), 14);
        for (name, schema) in lines[1]["schemas"].as_object().unwrap() {
            assert_eq!(schema["type"], "object", "{name}");
            assert_eq!(schema["additionalProperties"], false, "{name}");
        }
        for filter in [
            "severity",
            "status",
            "asset_id",
            "templateId",
            "since",
            "page",
            "perPage",
        ] {
            assert!(
                lines[1]["schemas"]["list_findings"]["properties"][filter].is_object(),
                "list_findings takes {filter}"
            );
        }
        assert_eq!(
            lines[2]["templates"],
            json!(["easm://findings/{id}", "easm://assets/{id}"])
        );
        let calls = &lines[3..19];
        for (i, c) in calls.iter().take(14).enumerate() {
            assert_eq!(c["call"], READ_TOOLS[i]);
            assert_eq!(c["is_error"], false, "{transport}: {c}");
            let text: Value = serde_json::from_str(c["text"].as_str().unwrap()).unwrap();
            assert_eq!(c["structured"], text, "structuredContent is the text block");
        }
        let result = |i: usize| -> Value { calls[i]["structured"].clone() };
        assert_eq!(result(0)["total"], 2);
        assert_eq!(result(1)["value"], "127.0.0.1");
        assert_eq!(result(2)["items"][0]["value"], "example.com");
        assert_eq!(result(2)["total"], 1);
        assert_eq!(result(3)["total"], 1);
        assert_eq!(result(3)["items"][0]["templateId"], "CVE-2021-41773");
        assert_eq!(result(4)["cve"], "CVE-2021-41773");
        assert_eq!(result(5)["total"], everything.body["total"]);
        assert_eq!(result(5)["bySeverity"]["critical"], 1);
        assert_eq!(result(7)["id"], s.job.as_str());
        assert_eq!(result(9)["id"], s.discovery.as_str());
        assert_eq!(result(11)["id"], s.monitor.as_str());
        assert_eq!(result(12)["assets"]["total"], 2);
        assert_eq!(result(12)["monitors"]["total"], 1);
        assert_eq!(result(13)["id"], s.t.org.as_str());
        // The other organization's asset and finding are not found, as over REST.
        for c in &calls[14..16] {
            assert_eq!(c["is_error"], true, "{c}");
            assert!(c["text"].as_str().unwrap().contains("NOT_FOUND"), "{c}");
        }
        let attached = &lines[19];
        assert_eq!(attached["mime"], "application/json");
        let finding: Value = serde_json::from_str(attached["text"].as_str().unwrap()).unwrap();
        assert_eq!(finding["id"], s.finding.as_str());
        assert_eq!(lines[20]["error"]["code"], -32002, "{}", lines[20]);
        // What the server said (the plan's own arguments aside).
        let all = calls
            .iter()
            .flat_map(|c| [c["text"].to_string(), c["structured"].to_string()])
            .chain([attached["text"].to_string(), lines[20]["error"].to_string()])
            .collect::<Vec<_>>()
            .join("\n");
        for id in &s.foreign {
            assert!(!all.contains(id.as_str()), "{transport}: {id} leaked");
        }
        outputs.push(calls.iter().map(|c| c["text"].clone()).collect::<Vec<_>>());
    }
    assert_eq!(
        outputs[0], outputs[1],
        "the bridge adds nothing and loses nothing"
    );

    // The 2026-07-28 revision starts with server/discover and keeps no session at all.
    let modern = python_client(json!({
        "transport": "http",
        "modern": true,
        "url": s.t.app.url("/mcp"),
        "key": key,
        "calls": [["get_org_info", {}]],
    }));
    assert_eq!(modern[0]["initialized"], "2026-07-28");
    assert_eq!(modern[1]["tools"], json!(READ_TOOLS));
    assert_eq!(
        modern[3]["structured"]["id"],
        s.t.org.as_str(),
        "{}",
        modern[3]
    );

    // Every call and read is on the audit trail, category mcp, with its arguments.
    let audit = s.t.get("/api/audit-log?category=mcp&perPage=100").await;
    assert_eq!(audit.body["total"], 2 * (16 + 2) + 1, "{}", audit.body);
    let items = audit.body["items"].as_array().unwrap();
    let tools: HashSet<&str> = items
        .iter()
        .map(|r| r["details"]["tool"].as_str().unwrap())
        .collect();
    assert!(READ_TOOLS.iter().all(|t| tools.contains(t)));
    assert!(tools.contains("resources/read"));
    let first = &items[items.len() - 1];
    assert_eq!(first["action"], "mcp.tool_called");
    assert_eq!(first["category"], "mcp");
    assert_eq!(first["actor"]["kind"], "mcp_key");
    assert!(first["actor"]["keyPrefix"]
        .as_str()
        .unwrap()
        .starts_with("mcp_sk_"));
    assert_eq!(first["details"]["tool"], "list_assets");
    assert_eq!(first["details"]["arguments"], json!({}));
    assert_eq!(first["details"]["outcome"], "success");
    let failed = items
        .iter()
        .find(|r| r["details"]["arguments"]["id"] == s.foreign[4].as_str())
        .unwrap();
    assert_eq!(failed["details"]["outcome"], "error");
    // REST traffic is not in the mcp category.
    let api = s.t.get("/api/audit-log?category=api&perPage=100").await;
    assert!(api.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["action"] != "mcp.tool_called"));
}

async fn keys_open_one_surface_each_and_revocation_is_immediate(b: Backend) {
    let t = Tenant::new(b, Plan::Pro, "Web").await;
    let made = t.post("/api/mcp-keys", json!({"name": " claude "})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let key = made.body["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("mcp_sk_") && key.len() == 7 + 43, "{key}");
    assert_eq!(made.body["name"], "claude");
    assert_eq!(made.body["role"], "viewer", "viewer unless asked");
    assert_eq!(made.body["allowWrites"], false);
    assert!(made.body["createdAt"].is_string());
    let id = made.id();

    // Made by admins, of at most their own role.
    let viewer = t.key_of(Role::Viewer).await;
    let by_viewer = t
        .app
        .post(&viewer, "/api/mcp-keys", json!({"name": "x"}))
        .await;
    assert_eq!(by_viewer.status, StatusCode::FORBIDDEN);
    let admin = t.key_of(Role::Admin).await;
    let too_high = t
        .app
        .post(
            &admin,
            "/api/mcp-keys",
            json!({"name": "x", "role": "owner"}),
        )
        .await;
    assert_eq!(too_high.status, StatusCode::FORBIDDEN);
    for bad in [
        json!({"name": ""}),
        json!({"name": "x", "role": "root"}),
        json!({"name": "x", "allowWrites": "yes"}),
        json!({"name": "x", "scope": "all"}),
    ] {
        let refused = t.post("/api/mcp-keys", bad.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            refused.body
        );
    }

    // Listed apart from the REST keys.
    let listed = t.get("/api/mcp-keys").await;
    assert_eq!(listed.items_field("id"), [id.as_str()]);
    assert!(listed.body["items"][0]["prefix"]
        .as_str()
        .unwrap()
        .starts_with("mcp_sk_"));
    let rest_keys = t.get("/api/keys?perPage=100").await;
    assert!(!rest_keys.items_field("id").contains(&id.as_str()));
    let rest_id = rest_keys.items_field("id")[0].to_string();

    // Each kind opens its own surface only, refused with 401 and a plain {"error"}.
    let mcp = Mcp::new(t.app.url("/mcp"), &key);
    assert_eq!(mcp.tool_names().await, READ_TOOLS);
    let on_rest = t.app.get(&key, "/api/assets").await;
    assert_eq!(on_rest.status, StatusCode::UNAUTHORIZED);
    assert!(on_rest.body["error"].as_str().unwrap().contains("MCP"));
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    for presented in [t.key.as_str(), "", "mcp_sk_unknown", "Basic abc"] {
        let (status, body) = Mcp::new(t.app.url("/mcp"), presented)
            .send(list.clone(), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{presented:?}");
        let fields: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(fields, ["error"], "{presented:?}: {body}");
    }

    // Revoked where it is listed, and refused at once.
    let wrong_list = t.delete(&format!("/api/keys/{id}")).await;
    assert_eq!(wrong_list.status, StatusCode::NOT_FOUND);
    let wrong_kind = t.delete(&format!("/api/mcp-keys/{rest_id}")).await;
    assert_eq!(wrong_kind.status, StatusCode::NOT_FOUND);
    assert_eq!(mcp.tool_names().await.len(), 14, "still valid");
    let revoked = t.delete(&format!("/api/mcp-keys/{id}")).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let (status, body) = mcp.send(list, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(t.get("/api/mcp-keys").await.body["items"][0]["revokedAt"].is_string());
    let denied = t
        .get("/api/audit-log?action=access.denied&category=mcp")
        .await;
    assert_eq!(denied.body["total"], 1, "{}", denied.body);
    assert_eq!(denied.body["items"][0]["actor"]["kind"], "mcp_key");
    assert_eq!(denied.body["items"][0]["details"]["status"], 401);
    let created = t
        .get("/api/audit-log?action=api_key.created&perPage=100")
        .await;
    assert!(created.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["details"]["kind"] == "mcp" && r["details"]["keyHash"].is_null()));
}

async fn calls_are_limited_to_sixty_a_minute_per_key(b: Backend) {
    let t = Tenant::new(b, Plan::Pro, "Web").await;
    let (key, _) = mcp_key(&t, json!({"name": "busy"})).await;
    let (other, _) = mcp_key(&t, json!({"name": "calm"})).await;
    let mcp = Mcp::new(t.app.url("/mcp"), &key);
    // The window is the minute: start early enough in one that the calls all fall in it.
    let second = chrono::Utc::now().timestamp() % 60;
    if second > 40 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - second) as u64)).await;
    }
    // Counted for the key wherever it calls: here, and in another process on the same store.
    let elsewhere = start_easm(
        &t.app.store,
        &["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"],
        &[],
    );
    let there = Mcp::new(elsewhere.url("/mcp"), &key);
    for i in 0..easm_api::CALLS_PER_MINUTE {
        let server = if i % 2 == 0 { &mcp } else { &there };
        let answer = server.call("get_org_info", json!({})).await;
        assert!(answer["result"].is_object(), "call {i}: {answer}");
    }
    for server in [&mcp, &there] {
        let over = server.call("get_org_info", json!({})).await;
        assert_eq!(over["error"]["code"], -32000, "{over}");
        assert_eq!(over["error"]["message"], "rate limit: 60 calls/min");
    }
    // Listing is not a call, and other keys have budgets of their own.
    assert_eq!(mcp.tool_names().await.len(), 14);
    let calm = Mcp::new(t.app.url("/mcp"), &other);
    assert!(calm.call("get_org_info", json!({})).await["result"].is_object());
    let audit = t.get("/api/audit-log?category=mcp").await;
    assert_eq!(audit.body["total"], 61, "refused calls are not run");
    let listed = t.get("/api/mcp-keys").await;
    assert!(
        listed.body["items"][0]["lastUsedAt"].is_string(),
        "{}",
        listed.body
    );
}

async fn write_tools_need_a_key_allowed_writes_and_a_role_that_may(b: Backend) {
    let t = Tenant::new(b, Plan::Pro, "Web").await;
    let ip = t.asset("127.0.0.1", "ip").await;
    let job = new_job(&t.app, &t.key, &ip, "quick").await;
    import(&t.app, &t.key, &job, NUCLEI).await;
    let finding = t
        .get("/api/findings?severity=critical")
        .await
        .items_field("id")[0]
        .to_string();
    let update = json!({"id": finding, "status": "acknowledged", "assignee": "ana"});

    let (reader, _) = mcp_key(&t, json!({"name": "r", "role": "analyst"})).await;
    let reader = Mcp::new(t.app.url("/mcp"), &reader);
    assert_eq!(reader.tool_names().await, READ_TOOLS);
    let refused = reader.call("update_finding_status", update.clone()).await;
    assert_eq!(refused["error"]["code"], -32601, "{refused}");

    let (viewer, _) = mcp_key(&t, json!({"name": "v", "allowWrites": true})).await;
    let viewer = Mcp::new(t.app.url("/mcp"), &viewer);
    assert_eq!(
        viewer.tool_names().await.len(),
        14,
        "a viewer may not write"
    );

    let (writer, _) = mcp_key(
        &t,
        json!({"name": "w", "role": "analyst", "allowWrites": true}),
    )
    .await;
    let writer = Mcp::new(t.app.url("/mcp"), &writer);
    let names = writer.tool_names().await;
    assert_eq!(names.len(), 16);
    assert!(names.contains(&"update_finding_status".to_string()));
    assert!(names.contains(&"acknowledge_alert".to_string()));
    let listed = writer.rpc("tools/list", json!({})).await;
    let tool = |name: &str| -> Value {
        listed["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        tool("update_finding_status")["annotations"]["readOnlyHint"],
        false
    );
    assert_eq!(tool("list_findings")["annotations"]["readOnlyHint"], true);
    let bad = writer
        .call(
            "update_finding_status",
            json!({"id": finding, "status": "done"}),
        )
        .await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    let done = writer.call("update_finding_status", update).await;
    assert_eq!(done["result"]["isError"], false, "{done}");
    assert_eq!(
        done["result"]["structuredContent"]["status"],
        "acknowledged"
    );
    let now = t.get(&format!("/api/findings/{finding}")).await;
    assert_eq!(now.body["status"], "acknowledged");
    assert_eq!(now.body["assignee"], "ana");
    // Audited like the REST call, as the MCP key.
    let audit = t.get("/api/audit-log?action=finding.status_changed").await;
    assert_eq!(audit.body["total"], 1, "{}", audit.body);
    assert_eq!(audit.body["items"][0]["category"], "mcp");
    assert_eq!(audit.body["items"][0]["actor"]["kind"], "mcp_key");
    assert_eq!(audit.body["items"][0]["actor"]["role"], "analyst");
    let missing = writer
        .call("acknowledge_alert", json!({"id": "no-such-alert"}))
        .await;
    assert_eq!(missing["result"]["isError"], true, "{missing}");
}

async fn errors_are_json_rpc_errors_and_revisions_are_negotiated(b: Backend) {
    let t = Tenant::new(b, Plan::Pro, "Web").await;
    let (key, _) = mcp_key(&t, json!({"name": "claude"})).await;
    let mcp = Mcp::new(t.app.url("/mcp"), &key);
    let init = |version: &str| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}})
    };
    for (asked, agreed) in [
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2024-11-05", "2025-11-25"),
    ] {
        let (status, answer) = mcp.send(init(asked), None).await;
        assert_eq!(status, StatusCode::OK, "{asked}: {answer}");
        assert_eq!(answer["result"]["protocolVersion"], agreed, "{asked}");
        assert_eq!(answer["result"]["serverInfo"]["name"], "easm");
        assert!(answer["result"]["capabilities"]["tools"].is_object());
        assert!(answer["result"]["capabilities"]["resources"].is_object());
    }
    // 2025-03-26 (no header) has neither output schemas nor structured content.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "get_org_info", "arguments": {}}});
    let (_, old_list) = mcp.send(list.clone(), None).await;
    assert!(old_list["result"]["tools"][0]["outputSchema"].is_null());
    let (_, old_call) = mcp.send(call.clone(), None).await;
    assert!(old_call["result"]["structuredContent"].is_null());
    let text = old_call["result"]["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap()["id"],
        t.org.as_str()
    );
    let (_, new_list) = mcp.send(list, Some("2025-06-18")).await;
    assert_eq!(
        new_list["result"]["tools"][0]["outputSchema"]["type"],
        "object"
    );
    let (_, new_call) = mcp.send(call, Some("2025-06-18")).await;
    assert_eq!(
        new_call["result"]["structuredContent"]["id"],
        t.org.as_str()
    );

    // JSON for clients taking it (or anything, as plain curl does), an event stream for those
    // taking only that.
    let listing = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}).to_string();
    for (accept, streamed) in [
        (None, false),
        (Some("*/*"), false),
        (Some("application/json"), false),
        (Some("text/event-stream"), true),
    ] {
        let mut req = mcp
            .http
            .post(&mcp.url)
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(listing.clone());
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{accept:?}");
        let kind = res.headers()["content-type"].to_str().unwrap().to_string();
        let body = res.text().await.unwrap();
        let message: Value = match streamed {
            false => serde_json::from_str(&body).unwrap(),
            true => {
                assert!(kind.starts_with("text/event-stream"), "{kind}");
                let data = body
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim)
                    .find(|d| !d.is_empty())
                    .unwrap_or_else(|| panic!("no event in {body}"));
                serde_json::from_str(data).unwrap()
            }
        };
        assert_eq!(message["id"], 7, "{accept:?}: {body}");
        assert_eq!(message["result"]["tools"].as_array().unwrap().len(), 14);
    }

    for (method, params, code) in [
        ("prompts/get", json!({"name": "x"}), -32601),
        ("no/such/method", json!({}), -32601),
        (
            "tools/call",
            json!({"name": "drop_tables", "arguments": {}}),
            -32601,
        ),
        (
            "tools/call",
            json!({"name": "list_findings", "arguments": {"severity": "urgent"}}),
            -32602,
        ),
        (
            "tools/call",
            json!({"name": "list_findings", "arguments": {"limit": 5}}),
            -32602,
        ),
        (
            "tools/call",
            json!({"name": "list_findings", "arguments": {"page": 0}}),
            -32602,
        ),
        (
            "tools/call",
            json!({"name": "list_findings", "arguments": {"since": "yesterday"}}),
            -32602,
        ),
        (
            "tools/call",
            json!({"name": "get_finding", "arguments": {}}),
            -32602,
        ),
        (
            "tools/call",
            json!({"name": "search_assets", "arguments": {}}),
            -32602,
        ),
        ("resources/read", json!({"uri": "easm://secrets/1"}), -32002),
    ] {
        let answer = mcp.rpc(method, params.clone()).await;
        assert_eq!(answer["error"]["code"], code, "{method} {params}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("panicked") && !message.contains(".rs:"),
            "{message}"
        );
    }
    let unknown = mcp.call("drop_tables", json!({})).await;
    assert_eq!(unknown["error"]["message"], "unknown tool: drop_tables");
    let invalid = mcp.call("list_findings", json!({"limit": 5})).await;
    assert!(invalid["error"]["message"]
        .as_str()
        .unwrap()
        .contains("limit"));
    // A read model gone (the key, the call counts and the log still work): an internal error
    // that tells nothing of its cause.
    sqlx::query("DROP TABLE rm_alerts")
        .execute(t.app.db.writer())
        .await
        .unwrap();
    let broken = mcp.call("get_dashboard_stats", json!({})).await;
    assert_eq!(broken["error"]["code"], -32603, "{broken}");
    let message = broken["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains("pool") && !message.contains("sqlx"),
        "{message}"
    );
}

/// `easm admin create-key --kind mcp` makes a key `easm serve --mcp-listen` takes, at `/` and
/// `/mcp` of that address (and `/mcp` of the API's); that address serves nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_mcp_key_from_the_command_line_opens_the_mcp_address() {
    use crate::cli::{easm, json_line};
    let store = TestStore::new(Backend::Sqlite).await;
    let org = json_line(&easm(&store, &["admin", "create-org", "--name", "Acme"]));
    let org_id = org["orgId"].as_str().unwrap();
    let create = [
        "admin",
        "create-key",
        "--org",
        org_id,
        "--role",
        "viewer",
        "--kind",
    ];
    let made = json_line(&easm(&store, &[&create[..], &["mcp"]].concat()));
    let key = made["key"].as_str().unwrap();
    assert!(key.starts_with("mcp_sk_"), "{made}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mcp_addr = format!("127.0.0.1:{port}");
    let server = start_easm(
        &store,
        &["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"],
        &[("EASM_MCP_LISTEN", mcp_addr.clone())],
    );
    for url in [
        format!("http://{mcp_addr}/"),
        format!("http://{mcp_addr}/mcp"),
        server.url("/mcp"),
    ] {
        let names = Mcp::new(url.clone(), key).tool_names().await;
        assert_eq!(names, READ_TOOLS, "{url}");
    }
    let rest = reqwest::Client::new()
        .get(format!("http://{mcp_addr}/api/org"))
        .bearer_auth(org["ownerKey"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), StatusCode::NOT_FOUND);
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_easm"))
        .args([&create[..], &["soap"]].concat())
        .envs(store.env())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("rest, mcp"));
}

/// `docs/mcp-tools.md` is what the registry says.
#[test]
fn the_tools_document_is_the_registry() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/mcp-tools.md");
    let written = std::fs::read_to_string(path).unwrap();
    assert!(
        written == easm_api::tools_markdown(),
        "docs/mcp-tools.md is stale: run `easm mcp-tools-doc > docs/mcp-tools.md`"
    );
    for tool in READ_TOOLS {
        assert!(written.contains(&format!("## `{tool}`")), "{tool}");
    }
}
