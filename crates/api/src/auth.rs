//! API-key authentication, per-key rate limiting and request ids.

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use easm_app::hash_key;
use easm_domain::{Grants, Limits, Permission, Plan, Role};
use easm_events::{Actor, ActorKind, EventMeta, KeyId, KeyKind, OrgId, UserId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub key_id: KeyId,
    pub key_prefix: String,
    pub org_id: OrgId,
    /// The key's role, capped by its member's current role when it belongs to one.
    pub role: Role,
    /// The member the key belongs to: keys it creates belong to the member too.
    pub user_id: Option<UserId>,
    pub plan: Plan,
    pub request_id: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The surface the key opens: the REST API or the MCP server.
    pub kind: KeyKind,
    /// An MCP key allowed the write tools (those its role allows).
    pub allow_writes: bool,
}

impl Caller {
    pub fn require(&self, p: Permission) -> ApiResult<()> {
        if self.role.can(p) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the {} role may not do this",
                self.role.as_str()
            )))
        }
    }

    pub fn meta(&self) -> EventMeta {
        EventMeta::new(
            Actor {
                kind: match self.kind {
                    KeyKind::Rest => ActorKind::ApiKey,
                    KeyKind::Mcp => ActorKind::McpKey,
                },
                id: self.key_id.to_string(),
                role: Some(self.role),
                source_ip: self.source_ip.clone(),
                user_agent: self.user_agent.clone(),
            },
            self.request_id.clone(),
        )
    }
}

#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// On a response: the key the request was made with, for the access log.
#[derive(Clone, Debug)]
pub struct AnsweredFor(pub KeyId);

/// Echo a well-formed incoming `X-Request-Id`, or make one; it is stamped on every event.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(easm_app::new_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim());
    }
    bearer_token(headers)
}

/// The token of `Authorization: Bearer <token>`.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Request id, source address (the client's, behind trusted proxies) and user agent of the
/// request, for the events it causes.
pub(crate) fn stamp(caller: &mut Caller, req: &Request, proxies: &crate::TrustedProxies) {
    if let Some(RequestId(id)) = req.extensions().get::<RequestId>() {
        caller.request_id = id.clone();
    }
    caller.source_ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| proxies.client(peer.ip(), req.headers()).to_string());
    caller.user_agent = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect());
}

/// Record a refused request of a known key; the answer goes out whether or not this works.
pub(crate) async fn record_denial(
    app: &AppState,
    caller: &Caller,
    req: (&str, &str),
    status: u16,
    reason: String,
) {
    let denied = easm_events::AccessDenied {
        key_id: caller.key_id.clone(),
        key_prefix: caller.key_prefix.clone(),
        method: req.0.to_string(),
        path: req.1.chars().take(512).collect(),
        status,
        reason,
    };
    if let Err(e) = app
        .commands
        .record_denial(&caller.meta(), &caller.org_id, denied)
        .await
    {
        tracing::warn!(error = %e, "could not record a denied request");
    }
}

pub async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = presented_key(req.headers()).map(str::to_string);
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    match identify(&app, presented, KeyKind::Rest).await {
        Err(Refused {
            error,
            revoked: Some(mut caller),
        }) => {
            stamp(&mut caller, &req, &app.trusted_proxies);
            let reason = "the API key is revoked".to_string();
            record_denial(&app, &caller, (&method, &path), 401, reason).await;
            let mut res = error.into_response();
            res.extensions_mut().insert(AnsweredFor(caller.key_id));
            res
        }
        Err(Refused { error, .. }) => error.into_response(),
        Ok(mut caller) => {
            let rate = app
                .limiter
                .hit(&caller.key_id, Limits::of(caller.plan).requests_per_minute);
            if rate.remaining.is_none() {
                metrics::counter!("easm_rate_limited_total").increment(1);
                let mut err = ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    format!("rate limit of {} requests per minute exceeded", rate.limit),
                );
                err.retry_after = Some(rate.reset_in.max(1));
                let mut res = err.into_response();
                rate.write(res.headers_mut());
                res.extensions_mut().insert(AnsweredFor(caller.key_id));
                return res;
            }
            if rate.touch {
                if let Err(e) = app
                    .read()
                    .touch_key(&caller.key_id, easm_store::now_micros())
                    .await
                {
                    tracing::warn!(error = %e, "could not record key use");
                }
            }
            stamp(&mut caller, &req, &app.trusted_proxies);
            req.extensions_mut().insert(caller.clone());
            let mut res = next.run(req).await;
            if res.status() == axum::http::StatusCode::FORBIDDEN {
                let reason = format!("the {} role may not do this", caller.role.as_str());
                record_denial(&app, &caller, (&method, &path), 403, reason).await;
            }
            rate.write(res.headers_mut());
            res.extensions_mut().insert(AnsweredFor(caller.key_id));
            res
        }
    }
}

/// Why a request is not let in; `revoked` holds the caller when the key is known but revoked,
/// so the attempt is recorded.
pub(crate) struct Refused {
    pub error: ApiError,
    pub revoked: Option<Caller>,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Refused {
            error,
            revoked: None,
        }
    }
}

/// The caller a presented key of `kind` stands for. A key of the other kind is refused as if
/// unknown, with a hint: each opens one surface only.
pub(crate) async fn identify(
    app: &AppState,
    presented: Option<String>,
    kind: KeyKind,
) -> Result<Caller, Refused> {
    let secret = presented
        .filter(|k| !k.is_empty())
        .ok_or_else(|| match kind {
            KeyKind::Rest => {
                ApiError::unauthorized("missing API key: send X-API-Key or Authorization: Bearer")
            }
            KeyKind::Mcp => {
                ApiError::unauthorized("missing MCP key: send Authorization: Bearer mcp_sk_...")
            }
        })?;
    let other = match kind {
        KeyKind::Rest => KeyKind::Mcp,
        KeyKind::Mcp => KeyKind::Rest,
    };
    if secret.starts_with(other.secret_prefix()) {
        return Err(ApiError::unauthorized(match kind {
            KeyKind::Rest => "MCP keys (mcp_sk_) open only the MCP endpoint, not the REST API",
            KeyKind::Mcp => {
                "REST API keys (ag_sk_) are not accepted here: use an MCP key (mcp_sk_)"
            }
        })
        .into());
    }
    if !secret.starts_with(kind.secret_prefix()) || secret.len() > 200 {
        return Err(ApiError::unauthorized("invalid or expired API key").into());
    }
    let hash = hash_key(&secret);
    let found = app
        .commands
        .authenticate(&hash)
        .await
        .map_err(|e| Refused::from(ApiError::from(e)))?;
    let invalid = || ApiError::unauthorized("invalid or expired API key");
    let key = found.filter(|k| k.kind == kind).ok_or_else(invalid)?;
    let caller = Caller {
        role: key.user_role.map_or(key.role, |m| m.min(key.role)),
        user_id: key.user_id,
        plan: key.plan,
        key_id: key.key_id,
        key_prefix: key.prefix,
        org_id: key.org_id,
        request_id: String::new(),
        source_ip: None,
        user_agent: None,
        kind: key.kind,
        allow_writes: key.allow_writes,
    };
    if key.revoked {
        return Err(Refused {
            error: invalid(),
            revoked: Some(caller),
        });
    }
    Ok(caller)
}

/// Fixed one-minute windows per key, in this process.
#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, Window>>,
}

struct Window {
    minute: i64,
    count: u32,
    last_touch: i64,
}

pub struct RateState {
    limit: u32,
    /// `None` when the request is over the limit.
    remaining: Option<u32>,
    reset_at: i64,
    reset_in: u64,
    /// Whether to record the key's last use now (at most once a minute per key).
    touch: bool,
}

impl RateState {
    fn write(&self, h: &mut HeaderMap) {
        let set = |h: &mut HeaderMap, name: &'static str, v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        set(h, "x-ratelimit-limit", self.limit.to_string());
        set(
            h,
            "x-ratelimit-remaining",
            self.remaining.unwrap_or(0).to_string(),
        );
        set(h, "x-ratelimit-reset", self.reset_at.to_string());
    }
}

impl RateLimiter {
    pub fn hit(&self, key_id: &KeyId, limit: u32) -> RateState {
        let now = chrono::Utc::now().timestamp();
        let minute = now / 60;
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, w| w.minute == minute);
        }
        let w = map.entry(key_id.to_string()).or_insert(Window {
            minute,
            count: 0,
            last_touch: 0,
        });
        if w.minute != minute {
            w.minute = minute;
            w.count = 0;
        }
        let touch = now - w.last_touch >= 60;
        if touch {
            w.last_touch = now;
        }
        w.count += 1;
        let reset_at = (minute + 1) * 60;
        RateState {
            limit,
            remaining: (w.count <= limit).then(|| limit - w.count),
            reset_at,
            reset_in: (reset_at - now) as u64,
            touch,
        }
    }
}
