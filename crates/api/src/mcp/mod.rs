//! The MCP server: the organization's attack surface for AI assistants (Claude Desktop, Cursor,
//! agents) over Streamable HTTP at `POST /mcp`, with the official Rust SDK. Stateless: any
//! process answers any request, so several share the work as they do the REST API's.
//!
//! Only MCP keys (`mcp_sk_`) open it, and they open nothing else. Each tool runs a REST operation
//! in this process with the key as caller (same filters, checks and answers; see
//! [`tools`]), at most [`CALLS_PER_MINUTE`] calls a minute per key, each on the audit trail.

mod server;
mod tools;

pub use tools::tools_markdown;

use crate::auth::{bearer_token, identify, record_denial, stamp, Refused};
use crate::{api_routes, AppState};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use easm_events::KeyKind;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use server::McpServer;
use std::sync::Arc;
use tower::Service;

/// Tool calls (and resource reads) each key may make a minute.
pub const CALLS_PER_MINUTE: u32 = 60;

/// `/mcp` (and `/` when `root` is set, for an address of its own), authenticated with MCP keys.
pub(crate) fn routes(state: &AppState, root: bool) -> Router<AppState> {
    let (rest, _) = api_routes().split_for_parts();
    let handler = McpServer {
        app: state.clone(),
        rest: rest.with_state(state.clone()),
    };
    let transport = |json: bool| {
        let handler = handler.clone();
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(json)
            // Every request carries a key, which a page rebinding a name cannot send.
            .disable_allowed_hosts();
        StreamableHttpService::new(
            move || Ok(handler.clone()),
            Arc::new(NeverSessionManager::default()),
            config,
        )
    };
    let transports = Transports {
        json: transport(true),
        sse: transport(false),
    };
    let endpoint = move |req: Request| {
        let transports = transports.clone();
        async move { transports.answer(req).await }
    };
    let mut router = Router::new().route("/mcp", any(endpoint.clone()));
    if root {
        router = router.route("/", any(endpoint));
    }
    router.layer(middleware::from_fn_with_state(state.clone(), authenticate))
}

type Transport = StreamableHttpService<McpServer, NeverSessionManager>;

/// The transport answering in JSON, and the one answering with an event stream.
#[derive(Clone)]
struct Transports {
    json: Transport,
    sse: Transport,
}

impl Transports {
    /// A client that takes only event streams gets one; any other (one taking both, as the
    /// transport asks, or JSON, or anything, as plain `curl` does) gets JSON.
    async fn answer(self, mut req: Request) -> Response {
        let mut transport = self.json;
        if req.method() == Method::POST {
            let (json, sse) = accepted(req.headers());
            if sse && !json {
                transport = self.sse;
            }
            req.headers_mut().insert(
                header::ACCEPT,
                HeaderValue::from_static("application/json, text/event-stream"),
            );
        }
        match transport.call(req).await {
            Ok(res) => res.map(axum::body::Body::new),
            Err(never) => match never {},
        }
    }
}

/// Whether `Accept` takes JSON (`*/*` and no header do) and whether it takes event streams.
fn accepted(headers: &HeaderMap) -> (bool, bool) {
    let mut types = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .peekable();
    if types.peek().is_none() {
        return (true, false);
    }
    types.fold((false, false), |(json, sse), t| {
        (
            json || ["application/json", "application/*", "*/*"].contains(&t.as_str()),
            sse || t == "text/event-stream",
        )
    })
}

/// Let in MCP keys only. Refusals are HTTP 401 with a plain `{"error"}`, as the transport's
/// clients expect; a revoked key's attempt is recorded.
async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = bearer_token(req.headers()).map(str::to_string);
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    match identify(&app, presented, KeyKind::Mcp).await {
        Ok(mut caller) => {
            stamp(&mut caller, &req, &app.trusted_proxies);
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(Refused { error, .. }) if error.status != StatusCode::UNAUTHORIZED => {
            error.into_response()
        }
        Err(Refused { error, revoked }) => {
            if let Some(mut caller) = revoked {
                stamp(&mut caller, &req, &app.trusted_proxies);
                let reason = "the MCP key is revoked".to_string();
                record_denial(&app, &caller, (&method, &path), 401, reason).await;
            }
            let mut res = (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({"error": error.body.error})),
            )
                .into_response();
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            res
        }
    }
}
