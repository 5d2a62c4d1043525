//! What speaks on an open port, found by probing rather than guessed from the number: a banner
//! the service sends first, then Redis, Memcached and MongoDB requests, a TLS handshake, and an
//! HTTP request; each probe on its own connection.

use crate::http::{self, Site, WebInfo};
use crate::{excerpt, read_some, services, tls, ScanConfig};
use easm_events::{Detection, ServiceSeen};
use std::net::SocketAddr;
use tokio::net::TcpStream;

pub struct Examined {
    pub service: ServiceSeen,
    pub findings: Vec<Detection>,
}

fn seen(port: u16, name: &str, tls: bool, detail: Option<String>) -> ServiceSeen {
    ServiceSeen {
        port,
        service: name.into(),
        tls,
        detail,
    }
}

/// A service that greets first, named from its greeting.
fn classify_banner(banner: &[u8]) -> (&'static str, String) {
    let text = String::from_utf8_lossy(banner);
    let first = text.lines().next().unwrap_or_default().trim().to_string();
    let lower = first.to_ascii_lowercase();
    let name = if first.starts_with("SSH-") {
        "ssh"
    } else if first.starts_with("220") && lower.contains("ftp") {
        "ftp"
    } else if first.starts_with("220") {
        "smtp"
    } else if first.starts_with("+OK") {
        "pop3"
    } else if first.starts_with("* OK") {
        "imap"
    } else if first.starts_with("INFO {") {
        "nats"
    } else if first.starts_with("RFB ") {
        "vnc"
    } else if banner.len() > 5 && banner[4] == 0x0a {
        let version: String = banner[5..]
            .iter()
            .take_while(|b| **b != 0)
            .map(|b| *b as char)
            .collect();
        return ("mysql", format!("protocol 10, server {version}"));
    } else {
        "unknown"
    };
    (name, excerpt(&first))
}

/// The service an HTTP answer shows, with what it says of itself (and of its certificate).
fn web_seen(port: u16, web: WebInfo, is_tls: bool, tls_detail: Option<String>) -> ServiceSeen {
    let name = match (web.elasticsearch, is_tls) {
        (true, _) => "elasticsearch",
        (false, true) => "https",
        (false, false) => "http",
    };
    let mut about = vec![format!("HTTP {}", web.status)];
    about.extend(web.server.map(|s| format!("server {s}")));
    about.extend(web.title.map(|t| format!("title \"{t}\"")));
    about.extend(tls_detail);
    seen(port, name, is_tls, Some(about.join("; ")))
}

/// Examine one open port of `host` at `addr`. The probes run at once, each on its own
/// connection, so a silent port costs one probe timeout rather than the sum of them; what
/// answered is then read in order of precedence: a greeting, a database protocol, TLS, HTTP.
pub async fn examine(addr: SocketAddr, host: &str, profile: &str, cfg: &ScanConfig) -> Examined {
    let port = addr.port();
    let matched_at = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let thorough = profile != "quick";
    let probe = cfg.probe_timeout;
    let banner = async {
        match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(mut s)) => read_some(&mut s, 1024, cfg.banner_wait).await,
            _ => vec![],
        }
    };
    let plain = Site {
        addr,
        host: host.to_string(),
        tls: false,
        timeout: probe,
    };
    let (banner, redis, memcached, mongodb, tls_info, plain_root) = tokio::join!(
        banner,
        services::redis(addr, &matched_at, probe),
        services::memcached(addr, &matched_at, probe),
        services::mongodb(addr, &matched_at, probe),
        tls::inspect(addr, host, &matched_at, probe, thorough),
        plain.get("/"),
    );
    if !banner.is_empty() {
        let (name, detail) = classify_banner(&banner);
        return Examined {
            service: seen(port, name, false, Some(detail)),
            findings: vec![],
        };
    }
    if let Some(r) = redis.or(memcached).or(mongodb) {
        return Examined {
            service: seen(port, r.name, false, r.detail),
            findings: r.finding.into_iter().collect(),
        };
    }
    let mut findings = vec![];
    let is_tls = tls_info.is_some();
    let mut detail = None;
    if let Some((info, f)) = tls_info {
        findings.extend(f);
        detail = Some(format!("{}; certificate {}", info.version, info.subject));
    }
    let site = Site {
        tls: is_tls,
        timeout: cfg.io_timeout,
        ..plain
    };
    let root = if is_tls {
        site.get("/").await
    } else {
        plain_root
    };
    if let Some(root) = root {
        let (web, f) = http::check(&site, &root, thorough).await;
        findings.extend(f);
        return Examined {
            service: web_seen(port, web, is_tls, detail),
            findings,
        };
    }
    let name = if is_tls { "tls" } else { "unknown" };
    Examined {
        service: seen(port, name, is_tls, detail),
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banners_name_their_services() {
        assert_eq!(classify_banner(b"SSH-2.0-OpenSSH_9.2\r\n").0, "ssh");
        assert_eq!(classify_banner(b"220 ProFTPD Server\r\n").0, "ftp");
        assert_eq!(classify_banner(b"220 mx.example.com ESMTP\r\n").0, "smtp");
        assert_eq!(classify_banner(b"INFO {\"server_id\":1}\r\n").0, "nats");
        let mysql = b"\x4a\x00\x00\x00\x0a8.0.36\x00rest";
        assert_eq!(
            classify_banner(mysql),
            ("mysql", "protocol 10, server 8.0.36".into())
        );
        assert_eq!(classify_banner(b"hello").0, "unknown");
    }
}
