//! HTTP checks: a minimal HTTP/1.1 client over a plain or TLS connection to the scanned address
//! (never re-resolving the name), and the checks on what it returns.

use crate::templates::{
    ELASTIC_OPEN, HTTP_ENV, HTTP_GIT, HTTP_LISTING, HTTP_NO_CSP, HTTP_NO_HSTS, HTTP_NO_XCTO,
    HTTP_NO_XFO, HTTP_VERSION,
};
use crate::{excerpt, read_some, tls};
use easm_events::Detection;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn head_excerpt(&self) -> String {
        let mut s = format!("HTTP {}\n", self.status);
        for (n, v) in &self.headers {
            s.push_str(&format!("{n}: {v}\n"));
        }
        s
    }
}

/// Parse a response (headers and as much body as was read); None if it is not HTTP.
pub fn parse(raw: &[u8]) -> Option<Response> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = r.parse(raw).ok()? else {
        return None;
    };
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut body = raw[len..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Some(Response {
        status: r.code?,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
        let Some(size) = size.filter(|s| *s > 0) else {
            break;
        };
        let start = eol + 2;
        let end = (start + size).min(raw.len());
        out.extend_from_slice(&raw[start..end]);
        raw = raw.get(end + 2..).unwrap_or_default();
    }
    out
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Option<Response> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: easm-scanner/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    tokio::time::timeout(timeout, s.write_all(req.as_bytes()))
        .await
        .ok()?
        .ok()?;
    parse(&read_some(&mut s, MAX_RESPONSE, timeout).await)
}

/// How to reach the web server: the scanned address, plain or TLS, and the Host header.
#[derive(Clone, Debug)]
pub struct Site {
    pub addr: SocketAddr,
    pub host: String,
    pub tls: bool,
    pub timeout: Duration,
}

impl Site {
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let host = match self.addr {
            SocketAddr::V6(_) if self.host.contains(':') => format!("[{}]", self.host),
            _ => self.host.clone(),
        };
        format!("{scheme}://{host}:{}{path}", self.addr.port())
    }

    pub async fn get(&self, path: &str) -> Option<Response> {
        if self.tls {
            let (s, _) = tls::connect(self.addr, &self.host, self.timeout)
                .await
                .ok()?;
            exchange(s, &self.host, path, self.timeout).await
        } else {
            let s = tokio::time::timeout(self.timeout, TcpStream::connect(self.addr))
                .await
                .ok()?
                .ok()?;
            exchange(s, &self.host, path, self.timeout).await
        }
    }
}

/// What the root page says about the server, for the health view.
#[derive(Debug, Clone, Default)]
pub struct WebInfo {
    pub status: u16,
    pub server: Option<String>,
    pub title: Option<String>,
    pub elasticsearch: bool,
}

fn title(body: &str) -> Option<String> {
    let lower = body.to_ascii_lowercase();
    let start = lower.find("<title>")? + 7;
    let end = start + lower[start..].find("</title>")?;
    Some(body[start..end].trim().chars().take(200).collect())
}

fn has_version(value: &str) -> bool {
    value
        .split(['/', ' ', '(', ')'])
        .skip(1)
        .any(|part| part.starts_with(|c: char| c.is_ascii_digit()) && part.contains('.'))
}

/// The checks on a web server: headers and version disclosure on the root page, Elasticsearch
/// answering without credentials and, when `files` is set, exposed files and directory listing.
pub async fn check(site: &Site, root: &Response, files: bool) -> (WebInfo, Vec<Detection>) {
    let mut found = vec![];
    let url = site.url("/");
    let head = root.head_excerpt();
    let body = root.text();
    let mut info = WebInfo {
        status: root.status,
        server: root.header("server").map(str::to_string),
        title: title(&body),
        elasticsearch: false,
    };
    if body.contains("\"cluster_name\"") && body.contains("You Know, for Search") {
        info.elasticsearch = true;
        let seen = format!("{head}\n{}", excerpt(&body));
        found.push(ELASTIC_OPEN.detect(&site.url(""), "", seen));
    }
    if root.status < 400 || root.status == 404 {
        let csp = root.header("content-security-policy");
        if site.tls && root.header("strict-transport-security").is_none() {
            found.push(HTTP_NO_HSTS.detect(&url, "", head.clone()));
        }
        if csp.is_none() {
            found.push(HTTP_NO_CSP.detect(&url, "", head.clone()));
        }
        let framing = csp.is_some_and(|c| c.contains("frame-ancestors"));
        if root.header("x-frame-options").is_none() && !framing {
            found.push(HTTP_NO_XFO.detect(&url, "", head.clone()));
        }
        if root.header("x-content-type-options").is_none() {
            found.push(HTTP_NO_XCTO.detect(&url, "", head.clone()));
        }
    }
    for name in ["server", "x-powered-by"] {
        if let Some(v) = root.header(name).filter(|v| has_version(v)) {
            let seen = format!("{name}: {v}");
            found.push(HTTP_VERSION.detect(&url, name, seen));
        }
    }
    if !files {
        return (info, found);
    }
    if root.status == 200 && is_listing(&body) {
        found.push(HTTP_LISTING.detect(&url, "", excerpt(&body)));
    }
    if let Some(r) = site.get("/.git/HEAD").await.filter(|r| r.status == 200) {
        let text = r.text();
        let t = text.trim();
        let sha = t.len() == 40 && t.chars().all(|c| c.is_ascii_hexdigit());
        if t.starts_with("ref: refs/") || sha {
            found.push(HTTP_GIT.detect(&site.url("/.git/HEAD"), "", excerpt(&text)));
        }
    }
    if let Some(r) = site.get("/.env").await.filter(|r| r.status == 200) {
        let text = r.text();
        let html = r.header("content-type").is_some_and(|t| t.contains("html"));
        if !html && is_env_file(&text) {
            found.push(HTTP_ENV.detect(&site.url("/.env"), "", redact_env(&text)));
        }
    }
    (info, found)
}

fn is_listing(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    lower.contains("<title>index of /") || lower.contains("<title>directory listing for /")
}

fn is_env_file(text: &str) -> bool {
    let assignments = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| {
            l.split_once('=').is_some_and(|(k, _)| {
                let k = k.trim_start_matches("export ").trim();
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .count();
    assignments > 0
}

/// The variable names of an exposed `.env`, not their values: evidence must not spread secrets.
fn redact_env(text: &str) -> String {
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .filter(|k| !k.is_empty() && !k.starts_with('#'))
        .take(50)
        .collect();
    format!("variables (values withheld): {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_chunked_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nServer: nginx/1.18.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nref: \r\n10\r\nrefs/heads/main\n\r\n0\r\n\r\n";
        let r = parse(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("SERVER"), Some("nginx/1.18.0"));
        assert_eq!(r.text(), "ref: refs/heads/main\n");
        assert!(parse(b"+PONG\r\n").is_none());
    }

    #[test]
    fn versions_env_files_and_listings_are_recognised() {
        assert!(has_version("nginx/1.18.0 (Ubuntu)"));
        assert!(has_version("PHP/8.1.2"));
        assert!(!has_version("nginx"));
        assert!(!has_version("cloudflare"));
        assert!(is_env_file("# db\nDB_PASSWORD=hunter2\nexport API_KEY=x\n"));
        assert!(!is_env_file("<html>not found</html>"));
        assert_eq!(
            redact_env("DB_PASSWORD=hunter2\nAPI_KEY=x"),
            "variables (values withheld): DB_PASSWORD, API_KEY"
        );
        assert!(is_listing("<html><head><title>Index of /</title>"));
        assert_eq!(title("<TITLE> Hi </TITLE>"), Some("Hi".into()));
    }
}
