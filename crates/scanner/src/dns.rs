//! Name resolution for the scanner and for discovery, with hickory's resolver: UDP with TCP on
//! truncation, retries, several upstreams, and negative answers told apart (a name that does
//! not exist, a name without records of the type, a failing server, no answer in time). The
//! upstreams are the configured ones (`EASM_SCAN_RESOLVER`), else the system's (resolv.conf and
//! the hosts file). Zone transfers (AXFR over TCP, RFC 5936) go to a zone's own name servers.

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use hickory_resolver::proto::rr::RecordType as Type;

/// How long one query waits for its answer (each is tried twice).
pub const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Resolved {
    pub addresses: Vec<IpAddr>,
    pub cnames: Vec<String>,
}

/// Why a lookup gave no records.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LookupError {
    #[error("{0} does not exist (NXDOMAIN)")]
    NxDomain(String),
    #[error("{0} has no {1} record")]
    NoData(String, RecordType),
    #[error("the DNS server failed for {0}: {1}")]
    ServerFailure(String, ResponseCode),
    #[error("no DNS server answered for {0} in time")]
    Timeout(String),
    #[error("DNS lookup of {0}: {1}")]
    Other(String, String),
}

impl LookupError {
    /// The name does not exist, or exists without records of the type: an answer, not a fault.
    pub fn is_negative(&self) -> bool {
        matches!(self, LookupError::NxDomain(_) | LookupError::NoData(..))
    }

    fn of(name: &str, record_type: RecordType, e: NetError) -> LookupError {
        match e {
            NetError::Dns(DnsError::NoRecordsFound(n)) => match n.response_code {
                ResponseCode::NXDomain => LookupError::NxDomain(name.into()),
                ResponseCode::NoError => LookupError::NoData(name.into(), record_type),
                code => LookupError::ServerFailure(name.into(), code),
            },
            NetError::Dns(DnsError::ResponseCode(code)) => {
                LookupError::ServerFailure(name.into(), code)
            }
            NetError::Timeout => LookupError::Timeout(name.into()),
            e => LookupError::Other(name.into(), e.to_string()),
        }
    }
}

/// A resolver shared by every job of the process (cheap to clone).
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns").finish_non_exhaustive()
    }
}

impl Dns {
    /// Ask `upstreams` in turn (UDP, TCP on truncation or error), or the system's resolvers when
    /// none is given (none at all when the system has no configuration). Fails only when the
    /// resolver cannot be built.
    pub fn new(upstreams: &[SocketAddr], timeout: Duration) -> Result<Dns, String> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if upstreams.is_empty() {
            match TokioResolver::builder(provider.clone()) {
                Ok(b) => b,
                // A server must start without resolv.conf (a container without network): its
                // lookups fail, each with the reason, until a resolver is configured.
                Err(e) => {
                    tracing::warn!(error = %e, "no system DNS configuration; set EASM_SCAN_RESOLVER");
                    TokioResolver::builder_with_config(
                        ResolverConfig::from_name_servers(vec![]),
                        provider,
                    )
                }
            }
        } else {
            let servers = upstreams
                .iter()
                .map(|a| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = a.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = a.port();
                    NameServerConfig::new(a.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut b = TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                provider,
            );
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = timeout;
        opts.attempts = 2;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.preserve_intermediates = true;
        opts.try_tcp_on_error = true;
        opts.ndots = 0;
        opts.max_active_requests = 4096;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot start the DNS resolver: {e}"))?;
        Ok(Dns { resolver })
    }

    /// The addresses of `host` and the CNAMEs on the way to them.
    pub async fn resolve(&self, host: &str) -> Result<Resolved, LookupError> {
        let fqdn = fqdn(host);
        let found = self
            .resolver
            .lookup_ip(fqdn.as_str())
            .await
            .map_err(|e| LookupError::of(host, RecordType::A, e))?;
        let mut out = Resolved::default();
        for record in found.as_lookup().answers() {
            match &record.data {
                RData::A(a) => push_new(&mut out.addresses, IpAddr::V4(a.0)),
                RData::AAAA(a) => push_new(&mut out.addresses, IpAddr::V6(a.0)),
                RData::CNAME(c) => push_new(&mut out.cnames, name_text(&c.0)),
                _ => {}
            }
        }
        if out.addresses.is_empty() {
            return Err(LookupError::NoData(host.into(), RecordType::A));
        }
        Ok(out)
    }

    /// Whether `name` exists and what it answers, in as few queries as brute force affords: A
    /// first (a name that does not exist costs one query), AAAA when it has no A record, and
    /// its CNAME when it has no address (an alias to a missing name).
    pub async fn probe(&self, name: &str) -> Result<Resolved, LookupError> {
        let mut out = Resolved::default();
        let mut failure = None;
        for t in [RecordType::A, RecordType::AAAA] {
            match self.resolver.lookup(fqdn(name).as_str(), t).await {
                Ok(found) => {
                    for record in found.answers() {
                        match &record.data {
                            RData::A(a) => push_new(&mut out.addresses, IpAddr::V4(a.0)),
                            RData::AAAA(a) => push_new(&mut out.addresses, IpAddr::V6(a.0)),
                            RData::CNAME(c) => push_new(&mut out.cnames, name_text(&c.0)),
                            _ => {}
                        }
                    }
                    if !out.addresses.is_empty() {
                        return Ok(out);
                    }
                }
                Err(e) => match LookupError::of(name, t, e) {
                    e @ LookupError::NxDomain(_) => return Err(e),
                    LookupError::NoData(..) => {}
                    e => {
                        failure = Some(e);
                        break;
                    }
                },
            }
        }
        if out.cnames.is_empty() {
            match self.cname(name).await {
                Ok(Some(target)) => out.cnames.push(target),
                Ok(None) => {}
                Err(e) => return Err(failure.unwrap_or(e)),
            }
        }
        match (out.cnames.is_empty(), failure) {
            (false, _) => Ok(out),
            (true, Some(e)) => Err(e),
            (true, None) => Err(LookupError::NoData(name.into(), RecordType::A)),
        }
    }

    /// The first-level CNAME target of `name`, if it is an alias.
    pub async fn cname(&self, name: &str) -> Result<Option<String>, LookupError> {
        match self.records(name, RecordType::CNAME).await {
            Ok(records) => Ok(records.into_iter().find_map(|r| match r {
                RData::CNAME(c) => Some(name_text(&c.0)),
                _ => None,
            })),
            Err(LookupError::NoData(..)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The names an address points back to (PTR).
    pub async fn reverse(&self, ip: IpAddr) -> Result<Vec<String>, LookupError> {
        let found = self
            .resolver
            .reverse_lookup(ip)
            .await
            .map_err(|e| LookupError::of(&ip.to_string(), RecordType::PTR, e))?;
        Ok(found
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(p) => Some(name_text(&p.0)),
                _ => None,
            })
            .collect())
    }

    /// The name servers of a zone.
    pub async fn name_servers(&self, zone: &str) -> Result<Vec<String>, LookupError> {
        Ok(self
            .records(zone, RecordType::NS)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                RData::NS(ns) => Some(name_text(&ns.0)),
                _ => None,
            })
            .collect())
    }

    /// The records of one type at `name`, as answered.
    pub async fn records(&self, name: &str, t: RecordType) -> Result<Vec<RData>, LookupError> {
        let found = self
            .resolver
            .lookup(fqdn(name).as_str(), t)
            .await
            .map_err(|e| LookupError::of(name, t, e))?;
        let wanted: Vec<RData> = found
            .answers()
            .iter()
            .filter(|r| r.record_type() == t)
            .map(|r| r.data.clone())
            .collect();
        if wanted.is_empty() {
            return Err(LookupError::NoData(name.into(), t));
        }
        Ok(wanted)
    }
}

/// One record of a transferred zone.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneRecord {
    pub name: String,
    pub record_type: RecordType,
    pub data: String,
}

/// The whole zone from `server` by AXFR over TCP, or why not (refused, no answer, malformed).
/// The transfer ends at the second SOA record; at most `max_records` are kept.
pub async fn zone_transfer(
    server: SocketAddr,
    zone: &str,
    timeout: Duration,
    max_records: usize,
) -> Result<Vec<ZoneRecord>, String> {
    let origin = Name::from_ascii(fqdn(zone)).map_err(|e| format!("{zone}: {e}"))?;
    let mut query = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    query.add_query(Query::query(origin, RecordType::AXFR));
    let bytes = query.to_vec().map_err(|e| e.to_string())?;
    let transfer = async {
        let mut s = TcpStream::connect(server)
            .await
            .map_err(|e| format!("{server}: {e}"))?;
        s.write_all(&(bytes.len() as u16).to_be_bytes())
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(&bytes).await.map_err(|e| e.to_string())?;
        let mut out = vec![];
        let mut soas = 0;
        loop {
            let len = s
                .read_u16()
                .await
                .map_err(|e| format!("{server} closed the transfer: {e}"))?;
            let mut buf = vec![0u8; len as usize];
            s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            let msg = Message::from_vec(&buf).map_err(|e| format!("bad answer: {e}"))?;
            if msg.metadata.id != query.metadata.id {
                return Err("the answer does not match the query".into());
            }
            if msg.metadata.response_code != ResponseCode::NoError {
                return Err(format!("refused ({})", msg.metadata.response_code));
            }
            if msg.answers.is_empty() {
                return Err("refused (an empty answer)".into());
            }
            for r in &msg.answers {
                if r.record_type() == RecordType::SOA {
                    soas += 1;
                    if soas == 2 {
                        return Ok(out);
                    }
                }
                if out.len() < max_records {
                    out.push(ZoneRecord {
                        name: name_text(&r.name),
                        record_type: r.record_type(),
                        data: r.data.to_string(),
                    });
                }
            }
        }
    };
    tokio::time::timeout(timeout, transfer)
        .await
        .map_err(|_| format!("{server} did not finish the transfer in time"))?
}

/// Lowercase, without the root's dot.
fn name_text(n: &Name) -> String {
    n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

fn fqdn(host: &str) -> String {
    format!("{}.", host.trim_end_matches('.'))
}

fn push_new<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}
