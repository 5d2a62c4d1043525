//! One HTTP attempt: signed headers, the timeouts, no redirects, a capped response read, and the
//! SSRF guard applied to the address actually connected to.

use crate::schedule::{parse_retry_after, Outcome};
use easm_domain::{is_forbidden_address, validate_webhook_url};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::SocketAddr;
use std::sync::Arc;
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
#[derive(Clone, Debug)]
pub struct Sent {
    pub outcome: Outcome,
    pub duration: Duration,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub response: Option<String>,
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

/// The Standard Webhooks headers of one request.
pub struct Signed<'a> {
    pub msg_id: &'a str,
    pub timestamp: i64,
    pub signature: &'a str,
}

impl Sender {
    pub fn new(allow_private: bool) -> Result<Sender, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .user_agent(USER_AGENT)
            .pool_max_idle_per_host(32);
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Sender {
            client: builder.build()?,
            allow_private,
        })
    }

    pub async fn send(&self, url: &str, signed: &Signed<'_>, body: &str) -> Sent {
        let started = Instant::now();
        // Literal addresses never reach the resolver: check the URL itself again here.
        if let Err(e) = validate_webhook_url(url, self.allow_private) {
            return Sent {
                outcome: Outcome::Refused,
                duration: started.elapsed(),
                status_code: None,
                error: Some(format!("refused: {e}")),
                response: None,
            };
        }
        let result = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", signed.msg_id)
            .header("webhook-timestamp", signed.timestamp.to_string())
            .header("webhook-signature", signed.signature)
            .header("idempotency-key", signed.msg_id)
            .body(body.to_string())
            .send()
            .await;
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
                    status_code: None,
                    error: Some(describe(&e)),
                    response: None,
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
        body.truncate(RESPONSE_EXCERPT);
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
            response: Some(String::from_utf8_lossy(&body).into_owned()),
        }
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
