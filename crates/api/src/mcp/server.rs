//! The MCP handler: tools and resources of the caller's organization, each run as the REST
//! operation it names with the MCP key as caller, rate-limited and audited per call.

use super::tools::{find, registry, Tool};
use super::CALLS_PER_MINUTE;
use crate::auth::{record_denial, Caller};
use crate::AppState;
use axum::body::Body;
use axum::http::{header, request::Parts, Method, Request, StatusCode};
use axum::Router;
use easm_domain::{Grants, Permission};
use easm_events::McpToolCalled;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, CustomRequest,
    CustomResult, ErrorCode, Implementation, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use tower::ServiceExt;

/// The revisions this server speaks: from 2025-03-26 (the first with Streamable HTTP) on.
const VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2026_07_28,
];

/// The resources a client may attach: one finding, one asset.
const TEMPLATES: [(&str, &str, &str); 2] = [
    ("easm://findings/{id}", "finding", "/api/findings/"),
    ("easm://assets/{id}", "asset", "/api/assets/"),
];

/// How many of the newest findings and assets `resources/list` offers.
const LISTED: u32 = 50;

#[derive(Clone)]
pub(crate) struct McpServer {
    pub app: AppState,
    /// The REST operations, without their authentication: the MCP key authenticated already.
    pub rest: Router,
}

/// What a REST operation answered that is not a success.
enum Refusal {
    /// The arguments do not fit the operation (400): a JSON-RPC invalid-params error.
    Invalid(String),
    /// The operation refused (not found, conflict, role): a tool result marked as an error.
    Refused(StatusCode, Value),
}

impl Refusal {
    /// What the operation said was wrong.
    fn reason(&self) -> String {
        match self {
            Refusal::Invalid(why) => why.clone(),
            Refusal::Refused(status, body) => refused(*status, body),
        }
    }
}

/// Why an operation refused: its error message, or its status.
fn refused(status: StatusCode, body: &Value) -> String {
    body["error"]
        .as_str()
        .map_or_else(|| status.to_string(), str::to_string)
}

impl McpServer {
    /// Run a REST operation as the key.
    async fn run(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        args: &Map<String, Value>,
        body_fields: &[String],
    ) -> Result<Result<Value, Refusal>, McpError> {
        let (uri, req) = operation(caller, &method, path, args, body_fields)?;
        let res = self
            .rest
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| internal("the operation failed", e))?;
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .map_err(|e| internal("the answer could not be read", e))?;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Ok(answer));
        }
        if status.is_server_error() {
            return Err(internal("the operation failed", status));
        }
        if status == StatusCode::FORBIDDEN {
            let reason = answer["error"].as_str().unwrap_or("forbidden").to_string();
            record_denial(&self.app, caller, (method.as_str(), &uri), 403, reason).await;
        }
        Ok(Err(match status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => Refusal::Invalid(
                answer["error"]
                    .as_str()
                    .unwrap_or("invalid arguments")
                    .to_string(),
            ),
            _ => Refusal::Refused(status, answer),
        }))
    }

    /// Count a call against the key's budget for this minute, kept in the database so that it
    /// holds across processes; past it the call is refused with -32000.
    async fn spend(&self, caller: &Caller) -> Result<(), McpError> {
        let now = easm_store::now_micros();
        let read = self.app.read();
        let calls = read
            .count_mcp_call(&caller.key_id, now / 60_000_000)
            .await
            .map_err(|e| internal("the call could not be counted", e))?;
        if calls == 1 {
            if let Err(e) = read.touch_key(&caller.key_id, now).await {
                tracing::warn!(error = %e, "could not record key use");
            }
        }
        if calls > i64::from(CALLS_PER_MINUTE) {
            metrics::counter!("easm_rate_limited_total").increment(1);
            return Err(McpError::new(
                ErrorCode(-32000),
                format!("rate limit: {CALLS_PER_MINUTE} calls/min"),
                None,
            ));
        }
        Ok(())
    }

    /// Put the call on the audit trail; a call that cannot be recorded is not answered.
    async fn audit(
        &self,
        caller: &Caller,
        tool: &str,
        arguments: &Map<String, Value>,
        error: Option<String>,
    ) -> Result<(), McpError> {
        let call = McpToolCalled {
            key_id: caller.key_id.clone(),
            tool: tool.to_string(),
            arguments: Value::Object(arguments.clone()),
            outcome: if error.is_some() { "error" } else { "success" }.into(),
            error,
        };
        self.app
            .commands
            .record_tool_call(&caller.meta(), &caller.org_id, call)
            .await
            .map_err(|e| internal("the call could not be recorded", e))
    }

    /// What a tool call answers: the tool's operation run, or why it was not.
    async fn tool_answer(
        &self,
        caller: &Caller,
        name: &str,
        args: &Map<String, Value>,
        structured: bool,
    ) -> Result<Answer<CallToolResponse>, McpError> {
        let Some(tool) = find(name).filter(|t| offered(caller, t)) else {
            let error = McpError::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!("unknown tool: {name}"),
                None,
            );
            return Ok(Answer::failed("unknown tool".into(), error));
        };
        if let Some(why) = tool.invalid(&Value::Object(args.clone())) {
            return Ok(Answer::invalid(why));
        }
        let (method, path) = (tool.def.method.clone(), tool.def.path);
        Ok(
            match self.run(caller, method, path, args, &tool.body).await? {
                Ok(v) => {
                    let mut result = CallToolResult::success(vec![text_of(&v)]);
                    if structured {
                        result.structured_content = Some(v);
                    }
                    Answer::done(result.into())
                }
                Err(Refusal::Invalid(why)) => Answer::invalid(why),
                Err(Refusal::Refused(status, body)) => Answer {
                    failure: Some(refused(status, &body)),
                    result: Ok(CallToolResult::error(vec![text_of(&body)]).into()),
                },
            },
        )
    }

    /// What reading `uri` answers: the finding or asset it names, as JSON.
    async fn resource_answer(
        &self,
        caller: &Caller,
        uri: &str,
    ) -> Result<Answer<ReadResourceResponse>, McpError> {
        let not_found = |why: String| {
            let error = McpError::resource_not_found(why.clone(), Some(json!({"uri": uri})));
            Answer::failed(why, error)
        };
        let target = TEMPLATES.iter().find_map(|(template, _, path)| {
            let prefix = template.trim_end_matches("{id}");
            uri.strip_prefix(prefix)
                .filter(|id| !id.is_empty() && !id.contains('/'))
                .map(|id| format!("{path}{id}"))
        });
        let Some(path) = target else {
            return Ok(not_found("no such resource".into()));
        };
        Ok(
            match self
                .run(caller, Method::GET, &path, &Map::new(), &[])
                .await?
            {
                Ok(v) => {
                    let contents = ResourceContents::text(v.to_string(), uri)
                        .with_mime_type("application/json");
                    Answer::done(ReadResourceResult::new(vec![contents]).into())
                }
                Err(refusal) => not_found(refusal.reason()),
            },
        )
    }
}

/// A call's answer, and what went wrong with it for the audit trail (`None` when nothing did).
struct Answer<T> {
    result: Result<T, McpError>,
    failure: Option<String>,
}

impl<T> Answer<T> {
    fn done(answer: T) -> Self {
        Answer {
            result: Ok(answer),
            failure: None,
        }
    }

    fn failed(why: String, error: McpError) -> Self {
        Answer {
            result: Err(error),
            failure: Some(why),
        }
    }

    fn invalid(why: String) -> Self {
        let error = McpError::invalid_params(format!("invalid arguments: {why}"), None);
        Answer::failed(why, error)
    }
}

/// The request of a REST operation: `{id}` in the path from the argument of that name, the other
/// arguments as query (`GET`) or body (writes).
fn operation(
    caller: &Caller,
    method: &Method,
    path: &str,
    args: &Map<String, Value>,
    body_fields: &[String],
) -> Result<(String, Request<Body>), McpError> {
    let mut path = path.to_string();
    let mut query = form_urlencoded::Serializer::new(String::new());
    let mut body = Map::new();
    for (k, v) in args {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let slot = format!("{{{k}}}");
        if path.contains(&slot) {
            let segment: String = form_urlencoded::byte_serialize(text.as_bytes()).collect();
            path = path.replace(&slot, &segment.replace('+', "%20"));
        } else if body_fields.contains(k) {
            body.insert(k.clone(), v.clone());
        } else {
            query.append_pair(k, &text);
        }
    }
    let query = query.finish();
    let uri = match query.is_empty() {
        true => path,
        false => format!("{path}?{query}"),
    };
    let body = match *method {
        Method::GET => Body::empty(),
        _ => Body::from(Value::Object(body).to_string()),
    };
    let req = Request::builder()
        .method(method.clone())
        .uri(&uri)
        .header(header::CONTENT_TYPE, "application/json")
        .extension(caller.clone())
        .body(body)
        .map_err(|e| internal("the request could not be made", e))?;
    Ok((uri, req))
}

fn internal(what: &str, e: impl std::fmt::Display) -> McpError {
    tracing::error!(error = %e, "MCP: {what}");
    McpError::internal_error(what.to_string(), None)
}

/// Write tools exist only for keys allowed writes whose role may write.
fn offered(caller: &Caller, tool: &Tool) -> bool {
    !tool.def.writes || (caller.allow_writes && caller.role.can(Permission::Write))
}

/// The key the `/mcp` request was authenticated with.
fn caller(cx: &RequestContext<RoleServer>) -> Result<Caller, McpError> {
    cx.extensions
        .get::<Parts>()
        .and_then(|p| p.extensions.get::<Caller>())
        .cloned()
        .ok_or_else(|| internal("no caller", "the request was not authenticated"))
}

/// Whether the revision in use has `structuredContent` and `outputSchema` (2025-06-18 on).
fn structured(cx: &RequestContext<RoleServer>) -> bool {
    cx.protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2025_06_18.as_str())
}

fn listed(tool: &Tool, structured: bool) -> rmcp::model::Tool {
    let t = rmcp::model::Tool::new(
        tool.def.name,
        tool.def.description,
        tool.input_schema.clone(),
    );
    let t = t.with_annotations(
        rmcp::model::ToolAnnotations::new()
            .read_only(!tool.def.writes)
            .destructive(false)
            .idempotent(true)
            .open_world(false),
    );
    match structured {
        true => t.with_raw_output_schema(tool.output_schema.clone()),
        false => t,
    }
}

fn text_of(v: &Value) -> ContentBlock {
    ContentBlock::text(serde_json::to_string(v).unwrap_or_default())
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
        .with_server_info(Implementation::new("easm", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "easm: the external attack surface of one organization (the key's). Tools read its \
             assets, findings, scan and discovery jobs, monitors and dashboard; resources \
             easm://findings/{id} and easm://assets/{id} attach one finding or asset.",
        )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(VERSIONS)
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        find(name).map(|t| listed(t, true))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let caller = caller(&cx)?;
        let structured = structured(&cx);
        Ok(ListToolsResult::with_all_items(
            registry()
                .iter()
                .filter(|t| offered(&caller, t))
                .map(|t| listed(t, structured))
                .collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = caller(&cx)?;
        self.spend(&caller).await?;
        let name = request.name.to_string();
        let args = request.arguments.unwrap_or_default();
        let answer = self
            .tool_answer(&caller, &name, &args, structured(&cx))
            .await?;
        self.audit(&caller, &name, &args, answer.failure).await?;
        answer.result
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _cx: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        Err(McpError::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("unknown method: {}", request.method),
            None,
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(
            TEMPLATES
                .iter()
                .map(|(uri, name, _)| {
                    ResourceTemplate::new(*uri, *name)
                        .with_description(format!("One {name} of the organization, as JSON."))
                        .with_mime_type("application/json")
                })
                .collect(),
        ))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let caller = caller(&cx)?;
        let page = Map::from_iter([("perPage".to_string(), json!(LISTED))]);
        let mut resources = Vec::new();
        for (kind, path, label) in [
            ("findings", "/api/findings", "title"),
            ("assets", "/api/assets", "value"),
        ] {
            let items = match self.run(&caller, Method::GET, path, &page, &[]).await? {
                Ok(v) => v["items"].as_array().cloned().unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            for item in items {
                let id = item["id"].as_str().unwrap_or_default();
                let name = item[label].as_str().unwrap_or(id);
                resources.push(
                    Resource::new(format!("easm://{kind}/{id}"), name)
                        .with_mime_type("application/json"),
                );
            }
        }
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let caller = caller(&cx)?;
        self.spend(&caller).await?;
        let uri = request.uri;
        let args = Map::from_iter([("uri".to_string(), json!(uri))]);
        let answer = self.resource_answer(&caller, &uri).await?;
        self.audit(&caller, "resources/read", &args, answer.failure)
            .await?;
        answer.result
    }
}
