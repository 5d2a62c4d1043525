//! One HTTP attempt: signed headers, the endpoint's own headers, the timeouts, no redirects, a
//! capped response read, and the SSRF guard applied to the address actually connected to (or,
//! through a proxy, to every address of the target before the request). Endpoints that trust
//! more CAs, present a client certificate or go through a proxy get clients of their own.

use crate::schedule::{parse_retry_after, Outcome};
use easm_domain::{is_forbidden_address, validate_webhook_url};
use easm_events::EndpointTls;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of a response body is read at most.
pub const MAX_RESPONSE_READ: usize = 64 * 1024;
/// How much of it is kept in the attempt log.
const RESPONSE_EXCERPT: usize = 1024;

pub const USER_AGENT: &str = concat!(
    "easm-webhooks/",
    env!("CARGO_PKG_VERSION"),
    " (+https://github.com/easm/easm)"
);

/// Resolves with the system resolver and drops every forbidden address, so that the address
/// reqwest connects to is one that passed the check (no window for DNS rebinding).
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = all
                .into_iter()
                .filter(|a| !is_forbidden_address(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(ForbiddenHost(host)) as Box<_>);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[derive(Debug)]
struct ForbiddenHost(String);

impl std::fmt::Display for ForbiddenHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} resolves only to addresses that are not public",
            self.0
        )
    }
}

impl std::error::Error for ForbiddenHost {}

/// What a finished attempt reports, for the attempt log and the retry decision.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    pub outcome: Outcome,
    pub duration: Duration,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// What was read of the response (at most [`MAX_RESPONSE_READ`]), for answers to parse.
    pub full: Vec<u8>,
    /// Its first KiB, for the attempt log.
    pub response: Option<String>,
}

impl Sent {
    fn excerpt(mut self) -> Sent {
        if self.status_code.is_some() {
            let n = self.full.len().min(RESPONSE_EXCERPT);
            self.response = Some(String::from_utf8_lossy(&self.full[..n]).into_owned());
        }
        self
    }
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
    /// `EASM_WEBHOOK_PROXY`: the operator's proxy, trusted wherever it is.
    proxy: Option<String>,
    /// Clients of endpoints with TLS material or a proxy, by what they were built from.
    own: Arc<Mutex<HashMap<u64, reqwest::Client>>>,
}

/// Clients of their own kept at most; past it they are built again as needed.
const MAX_OWN_CLIENTS: usize = 1000;

/// The Standard Webhooks headers of one request.
pub struct Signed<'a> {
    pub msg_id: &'a str,
    pub timestamp: i64,
    pub signature: &'a str,
}

/// How an endpoint's requests travel: its TLS material (the client key beside the public
/// certificate) and its proxy.
#[derive(Clone, Debug, Default, Hash)]
pub struct Route {
    pub ca_bundle: Option<String>,
    pub client_certificate: Option<String>,
    pub client_key: Option<String>,
    pub proxy: Option<String>,
}

impl Route {
    pub fn new(tls: Option<&EndpointTls>, client_key: Option<&str>, proxy: Option<&str>) -> Self {
        Route {
            ca_bundle: tls.and_then(|t| t.ca_bundle.clone()),
            client_certificate: tls.and_then(|t| t.client_certificate.clone()),
            client_key: client_key.map(str::to_string),
            proxy: proxy.map(str::to_string),
        }
    }

    /// Tells routes apart: a client or connection made for one serves only that one.
    pub fn key(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    fn is_default(&self) -> bool {
        self.ca_bundle.is_none() && self.client_certificate.is_none() && self.proxy.is_none()
    }
}

/// One request to send.
pub struct Request<'a> {
    pub url: &'a str,
    pub route: &'a Route,
    pub content_type: &'a str,
    /// The endpoint's own headers, and a kind's authorization.
    pub headers: &'a [(String, String)],
    pub signed: Option<Signed<'a>>,
    pub body: Vec<u8>,
}

fn base_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        .user_agent(USER_AGENT)
        .pool_max_idle_per_host(32)
        // Proxies are configured, never taken from HTTPS_PROXY and the like.
        .no_proxy()
}

/// A client for `route`; `proxy` is the operator's, used when the route names none.
fn build(
    allow_private: bool,
    proxy: Option<&str>,
    route: &Route,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = base_builder();
    if let Some(ca) = &route.ca_bundle {
        for cert in reqwest::Certificate::from_pem_bundle(ca.as_bytes())? {
            b = b.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&route.client_certificate, &route.client_key) {
        b = b.identity(reqwest::Identity::from_pem(
            format!("{key}{cert}").as_bytes(),
        )?);
    }
    match (&route.proxy, proxy) {
        // An endpoint's proxy is connected to through the guard: it must be public.
        (Some(p), _) => {
            b = b.proxy(reqwest::Proxy::all(p)?);
            if !allow_private {
                b = b.dns_resolver(Arc::new(PublicOnly));
            }
        }
        (None, Some(p)) => b = b.proxy(reqwest::Proxy::all(p)?),
        (None, None) if !allow_private => b = b.dns_resolver(Arc::new(PublicOnly)),
        (None, None) => {}
    }
    b.build()
}

impl Sender {
    pub fn new(allow_private: bool, proxy: Option<String>) -> Result<Sender, reqwest::Error> {
        let proxy = proxy.filter(|p| !p.is_empty());
        Ok(Sender {
            client: build(allow_private, proxy.as_deref(), &Route::default())?,
            allow_private,
            proxy,
            own: Arc::default(),
        })
    }

    /// The client for `route`, and whether it goes through a proxy.
    fn client(&self, route: &Route) -> Result<(reqwest::Client, bool), String> {
        let proxied = route.proxy.is_some() || self.proxy.is_some();
        if route.is_default() {
            return Ok((self.client.clone(), proxied));
        }
        let key = route.key();
        if let Some(c) = self.own.lock().expect("clients").get(&key) {
            return Ok((c.clone(), proxied));
        }
        let c = build(self.allow_private, self.proxy.as_deref(), route).map_err(|e| {
            format!(
                "the endpoint's tls or proxy settings cannot be used: {}",
                describe(&e)
            )
        })?;
        let mut own = self.own.lock().expect("clients");
        if own.len() >= MAX_OWN_CLIENTS {
            own.clear();
        }
        own.insert(key, c.clone());
        Ok((c, proxied))
    }

    /// Through a proxy the proxy resolves the target: every address of its host must be
    /// public, checked here before the request.
    async fn check_target(&self, url: &str) -> Result<(), String> {
        if self.allow_private {
            return Ok(());
        }
        let u = url::Url::parse(url).map_err(|e| e.to_string())?;
        let Some(url::Host::Domain(host)) = u.host() else {
            return Ok(());
        };
        let port = u.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        match addrs.iter().find(|a| is_forbidden_address(a.ip())) {
            Some(a) => Err(ForbiddenHost(format!("{host} ({})", a.ip())).to_string()),
            None if addrs.is_empty() => Err(format!("cannot resolve {host}")),
            None => Ok(()),
        }
    }

    pub async fn send(&self, r: Request<'_>) -> Sent {
        let started = Instant::now();
        let refused = |error: String| Sent {
            outcome: Outcome::Refused,
            duration: started.elapsed(),
            status_code: None,
            error: Some(format!("refused: {error}")),
            ..Default::default()
        };
        // Literal addresses never reach the resolver: check the URL itself again here.
        if let Err(e) = validate_webhook_url(r.url, self.allow_private) {
            return refused(e.to_string());
        }
        let (client, proxied) = match self.client(r.route) {
            Ok(c) => c,
            Err(e) => return refused(e),
        };
        if proxied {
            if let Err(e) = self.check_target(r.url).await {
                return refused(e);
            }
        }
        let mut req = client.post(r.url).header("content-type", r.content_type);
        for (name, value) in r.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        // The attempt's span: the receiver's own spans join the trace that caused the message.
        if let Some(traceparent) = easm_app::trace_context::current() {
            req = req.header("traceparent", traceparent);
        }
        if let Some(signed) = &r.signed {
            req = req
                .header("webhook-id", signed.msg_id)
                .header("webhook-timestamp", signed.timestamp.to_string())
                .header("webhook-signature", signed.signature)
                .header("idempotency-key", signed.msg_id);
        }
        let result = req.body(r.body).send().await;
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                let refused = std::iter::successors(std::error::Error::source(&e), |s| s.source())
                    .any(|s| s.is::<ForbiddenHost>());
                return Sent {
                    outcome: if refused {
                        Outcome::Refused
                    } else {
                        Outcome::Transport
                    },
                    duration: started.elapsed(),
                    error: Some(describe(&e)),
                    ..Default::default()
                };
            }
        };
        let code = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now().timestamp()));
        let mut body = Vec::new();
        let mut read_error = None;
        while body.len() < MAX_RESPONSE_READ {
            match resp.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    read_error = Some(describe(&e));
                    break;
                }
            }
        }
        let error = read_error.or_else(|| {
            (!(200..300).contains(&code)).then(|| {
                if (300..400).contains(&code) {
                    format!("HTTP {code}: redirects are not followed")
                } else {
                    format!("HTTP {code}")
                }
            })
        });
        Sent {
            outcome: Outcome::Status { code, retry_after },
            duration: started.elapsed(),
            status_code: Some(code),
            error,
            full: body,
            response: None,
        }
        .excerpt()
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        format!("timed out (connect {CONNECT_TIMEOUT:?}, total {TOTAL_TIMEOUT:?})")
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
