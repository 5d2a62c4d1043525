//! The built-in scanner: resolves the asset, refuses targets inside private networks, connects
//! to the profile's ports, finds out what speaks on each open port and checks it. All network
//! I/O is async with a timeout, and each stage has a concurrency limit.

pub mod discovery;
pub mod discovery_jobs;
pub mod dns;
pub mod http;
pub mod ports;
pub mod probe;
pub mod scan_jobs;
pub mod scheduler;
pub mod services;
pub mod templates;
pub mod tls;
pub mod worker;

use easm_events::{Detection, ServiceSeen};
use futures_util::stream::{self, StreamExt};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct ScanConfig {
    /// Scan loopback, private, link-local, CGNAT and metadata addresses (tests, labs).
    pub allow_private: bool,
    /// The resolver every job asks.
    pub dns: dns::Dns,
    pub connect_timeout: Duration,
    /// How long a probe waits for a port to show what it speaks.
    pub probe_timeout: Duration,
    /// How long a check waits for an answer (HTTP requests, TLS version probes).
    pub io_timeout: Duration,
    /// How long an open port may stay silent before the probes speak first.
    pub banner_wait: Duration,
    pub port_concurrency: usize,
    pub service_concurrency: usize,
}

impl ScanConfig {
    /// The documented timeouts and limits, resolving with `dns`.
    pub fn new(dns: dns::Dns) -> Self {
        ScanConfig {
            allow_private: false,
            dns,
            connect_timeout: Duration::from_millis(1500),
            probe_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(5),
            banner_wait: Duration::from_millis(700),
            port_concurrency: 200,
            service_concurrency: 8,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub percent: u8,
    pub stage: &'static str,
}

#[derive(Debug, Default)]
pub struct Report {
    pub addresses: Vec<IpAddr>,
    pub cnames: Vec<String>,
    pub ports_scanned: usize,
    pub services: Vec<ServiceSeen>,
    pub detections: Vec<Detection>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The target is inside a network the scanner must not probe.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unresolvable(String),
}

/// Read what the peer sends: wait up to `first` for the first bytes, then take what follows
/// until the peer closes, pauses, or `max` bytes have come.
pub(crate) async fn read_some<S: AsyncRead + Unpin>(
    s: &mut S,
    max: usize,
    first: Duration,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    let mut wait = first;
    while out.len() < max {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                out.extend_from_slice(&buf[..n]);
                wait = wait.min(Duration::from_millis(300));
            }
            _ => break,
        }
    }
    out.truncate(max);
    out
}

/// Printable evidence, at most 1,000 characters.
pub(crate) fn excerpt(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    let t = clean.trim();
    if t.chars().count() > 1000 {
        format!("{}…", t.chars().take(1000).collect::<String>())
    } else {
        t.to_string()
    }
}

/// Scan `host` (a name or an address) with `profile`'s checks on `ports`, or on the profile's
/// ports when None, reporting progress as it goes.
pub async fn scan(
    host: &str,
    profile: &str,
    ports: Option<&[u16]>,
    cfg: &ScanConfig,
    progress: &watch::Sender<Progress>,
) -> Result<Report, ScanError> {
    let report = |percent, stage| progress.send_replace(Progress { percent, stage });
    report(2, "dns");
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    let mut out = Report::default();
    match host.parse::<IpAddr>() {
        Ok(ip) => out.addresses.push(ip),
        Err(_) => {
            let r = cfg
                .dns
                .resolve(host)
                .await
                .map_err(|e| ScanError::Unresolvable(e.to_string()))?;
            out.addresses = r.addresses;
            out.cnames = r.cnames;
        }
    }
    if !cfg.allow_private {
        if let Some(bad) = out
            .addresses
            .iter()
            .find(|ip| easm_domain::is_forbidden_address(**ip))
        {
            return Err(ScanError::Refused(format!(
                "{host} resolves to {bad}, a loopback, private, link-local, CGNAT or metadata address; \
                 the scanner only probes public addresses"
            )));
        }
    }
    // One address is scanned: the first IPv4 one, as most services listen there.
    let ip = *out
        .addresses
        .iter()
        .find(|a| a.is_ipv4())
        .unwrap_or(&out.addresses[0]);
    let ports = ports
        .map(<[u16]>::to_vec)
        .unwrap_or_else(|| ports::profile_ports(profile));
    out.ports_scanned = ports.len();
    report(5, "ports");
    let total = ports.len().max(1);
    let mut open = vec![];
    let mut connects = stream::iter(ports)
        .map(|port| async move {
            let addr = SocketAddr::new(ip, port);
            let ok = matches!(
                tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr)).await,
                Ok(Ok(_))
            );
            (port, ok)
        })
        .buffer_unordered(cfg.port_concurrency.max(1));
    let mut done = 0;
    while let Some((port, ok)) = connects.next().await {
        done += 1;
        if ok {
            open.push(port);
        }
        report(5 + (done * 45 / total) as u8, "ports");
    }
    open.sort_unstable();
    report(50, "services");
    let total = open.len().max(1);
    let mut examined = stream::iter(open)
        .map(|port| probe::examine(SocketAddr::new(ip, port), host, profile, cfg))
        .buffer_unordered(cfg.service_concurrency.max(1));
    let mut done = 0;
    while let Some(e) = examined.next().await {
        done += 1;
        out.services.push(e.service);
        out.detections.extend(e.findings);
        report(50 + (done * 49 / total) as u8, "services");
    }
    out.services.sort_by_key(|s| s.port);
    Ok(out)
}
