//! An authoritative DNS server on 127.0.0.1 for zones held in memory, speaking UDP and TCP
//! (RFC 1035, with truncation past the client's payload size) and AXFR (RFC 5936). The discovery
//! benchmark resolves against it, and so do the tests: the real protocol, no internet.

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const TTL: u32 = 60;

/// The records the server holds. Names are lowercase without the final dot.
#[derive(Default, Clone)]
pub struct Zones {
    origins: Vec<String>,
    records: HashMap<String, Vec<RData>>,
    /// Zones whose transfer is allowed.
    axfr: HashSet<String>,
    /// Names counted as existing because a record lives below them.
    interior: HashSet<String>,
}

impl Zones {
    /// A zone with its SOA and an NS record naming `ns.<origin>`.
    pub fn zone(mut self, origin: &str) -> Self {
        let o = origin.to_ascii_lowercase();
        let ns = format!("ns.{o}");
        let soa = SOA::new(
            name(&ns),
            name(&format!("hostmaster.{o}")),
            1,
            3600,
            600,
            86400,
            TTL,
        );
        self.origins.push(o.clone());
        self.add(&o, RData::SOA(soa))
            .add(&o, RData::NS(NS(name(&ns))))
    }

    /// Let anyone transfer `origin` (the misconfiguration discovery reports).
    pub fn allow_transfer(mut self, origin: &str) -> Self {
        self.axfr.insert(origin.to_ascii_lowercase());
        self
    }

    pub fn a(self, n: &str, ip: IpAddr) -> Self {
        let data = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        self.add(n, data)
    }

    pub fn cname(self, n: &str, target: &str) -> Self {
        self.add(n, RData::CNAME(CNAME(name(target))))
    }

    pub fn ptr(self, ip: IpAddr, target: &str) -> Self {
        let arpa = reverse_name(ip);
        self.add(&arpa, RData::PTR(PTR(name(target))))
    }

    /// Any record; `*.<zone>` owners answer for every name below that have no records.
    pub fn add(mut self, n: &str, data: RData) -> Self {
        let n = n.trim_end_matches('.').to_ascii_lowercase();
        let mut parent = n.as_str();
        while let Some((_, rest)) = parent.split_once('.') {
            self.interior.insert(rest.to_string());
            parent = rest;
        }
        self.records.entry(n).or_default().push(data);
        self
    }

    fn origin_of(&self, n: &str) -> Option<&str> {
        self.origins
            .iter()
            .filter(|o| n == o.as_str() || n.ends_with(&format!(".{o}")))
            .max_by_key(|o| o.len())
            .map(String::as_str)
    }

    /// The records at `n`, or those of the closest wildcard above it.
    fn at(&self, n: &str) -> Option<&Vec<RData>> {
        if let Some(r) = self.records.get(n) {
            return Some(r);
        }
        if self.interior.contains(n) {
            return None;
        }
        let mut parent = n;
        while let Some((_, rest)) = parent.split_once('.') {
            if let Some(r) = self.records.get(&format!("*.{rest}")) {
                return Some(r);
            }
            if self.records.contains_key(rest) || self.interior.contains(rest) {
                return None;
            }
            parent = rest;
        }
        None
    }

    fn answer(&self, query: &Message) -> Message {
        let mut out = Message::response(query.metadata.id, OpCode::Query);
        out.metadata.recursion_desired = query.metadata.recursion_desired;
        out.add_queries(query.queries.clone());
        let Some(q) = query.queries.first() else {
            out.metadata.response_code = ResponseCode::FormErr;
            return out;
        };
        let qname = q
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let Some(origin) = self.origin_of(&qname) else {
            out.metadata.response_code = ResponseCode::Refused;
            return out;
        };
        out.metadata.authoritative = true;
        let qtype = q.query_type();
        let mut current = qname.clone();
        for _ in 0..8 {
            let Some(records) = self.at(&current) else {
                if current == qname && !self.interior.contains(&current) {
                    out.metadata.response_code = ResponseCode::NXDomain;
                }
                break;
            };
            let owner = name(&current);
            let cname = records.iter().find_map(|r| match r {
                RData::CNAME(c) if qtype != RecordType::CNAME => Some(c.0.clone()),
                _ => None,
            });
            for r in records.iter().filter(|r| {
                r.record_type() == qtype
                    || (cname.is_some() && r.record_type() == RecordType::CNAME)
            }) {
                out.add_answer(Record::from_rdata(owner.clone(), TTL, r.clone()));
            }
            match cname {
                Some(target) => {
                    current = target.to_ascii().trim_end_matches('.').to_ascii_lowercase();
                    if self.origin_of(&current).is_none() {
                        break;
                    }
                }
                None => break,
            }
        }
        if out.answers.is_empty() {
            if let Some(soa) = self.records.get(origin).and_then(|r| {
                r.iter()
                    .find(|d| d.record_type() == RecordType::SOA)
                    .cloned()
            }) {
                out.add_authority(Record::from_rdata(name(origin), TTL, soa));
            }
        }
        out
    }

    /// The messages of a zone transfer, or a refusal.
    fn transfer(&self, query: &Message) -> Vec<Message> {
        let q = query.queries.first();
        let zone = q.map(|q| {
            q.name()
                .to_ascii()
                .trim_end_matches('.')
                .to_ascii_lowercase()
        });
        let Some(zone) = zone.filter(|z| self.axfr.contains(z)) else {
            let mut refused = Message::response(query.metadata.id, OpCode::Query);
            refused.add_queries(query.queries.clone());
            refused.metadata.response_code = ResponseCode::Refused;
            return vec![refused];
        };
        let soa = self.records[&zone]
            .iter()
            .find(|d| d.record_type() == RecordType::SOA)
            .cloned()
            .expect("a zone has its SOA");
        let mut all = vec![Record::from_rdata(name(&zone), TTL, soa.clone())];
        let mut names: Vec<&String> = self
            .records
            .keys()
            .filter(|n| self.origin_of(n) == Some(zone.as_str()))
            .collect();
        names.sort();
        for n in names {
            for r in &self.records[n] {
                if r.record_type() != RecordType::SOA {
                    all.push(Record::from_rdata(name(n), TTL, r.clone()));
                }
            }
        }
        all.push(Record::from_rdata(name(&zone), TTL, soa));
        all.chunks(100)
            .map(|chunk| {
                let mut m = Message::response(query.metadata.id, OpCode::Query);
                m.metadata.authoritative = true;
                m.add_queries(query.queries.clone());
                m.add_answers(chunk.iter().cloned());
                m
            })
            .collect()
    }
}

fn name(n: &str) -> Name {
    Name::from_ascii(format!("{}.", n.trim_end_matches('.'))).expect("a valid name")
}

/// `d.c.b.a.in-addr.arpa` or the nibbles of an IPv6 address under `ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut parts: Vec<String> = v6
                .octets()
                .iter()
                .flat_map(|b| [b >> 4, b & 0xf])
                .map(|n| format!("{n:x}"))
                .collect();
            parts.reverse();
            format!("{}.ip6.arpa", parts.join("."))
        }
    }
}

/// A running server; it stops when dropped.
pub struct ZoneServer {
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ZoneServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl ZoneServer {
    /// Serve `zones` on one port of 127.0.0.1, UDP and TCP.
    pub async fn start(zones: Zones) -> std::io::Result<ZoneServer> {
        let tcp = TcpListener::bind("127.0.0.1:0").await?;
        let addr = tcp.local_addr()?;
        let udp = UdpSocket::bind(addr).await?;
        let zones = Arc::new(zones);
        let udp_task = {
            let zones = zones.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                        return;
                    };
                    if let Some(reply) = udp_reply(&zones, &buf[..n]) {
                        let _ = udp.send_to(&reply, from).await;
                    }
                }
            })
        };
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = tcp.accept().await else {
                    return;
                };
                tokio::spawn(serve_tcp(zones.clone(), s));
            }
        });
        Ok(ZoneServer {
            addr,
            tasks: vec![udp_task, tcp_task],
        })
    }
}

fn udp_reply(zones: &Zones, packet: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(packet).ok()?;
    let limit = query.edns.as_ref().map_or(512, Edns::max_payload).max(512) as usize;
    let mut answer = zones.answer(&query);
    if let Some(e) = &query.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(e.max_payload().max(512));
        answer.set_edns(edns);
    }
    let bytes = answer.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    let mut truncated = Message::response(query.metadata.id, OpCode::Query);
    truncated.add_queries(query.queries.clone());
    truncated.metadata.truncation = true;
    truncated.metadata.authoritative = true;
    truncated.to_vec().ok()
}

async fn serve_tcp(zones: Arc<Zones>, mut s: TcpStream) {
    loop {
        let Ok(len) = s.read_u16().await else { return };
        let mut buf = vec![0u8; len as usize];
        if s.read_exact(&mut buf).await.is_err() {
            return;
        }
        let Ok(query) = Message::from_vec(&buf) else {
            return;
        };
        let replies = match query.queries.first().map(|q| q.query_type()) {
            Some(RecordType::AXFR) => zones.transfer(&query),
            _ => vec![zones.answer(&query)],
        };
        for r in replies {
            let Ok(bytes) = r.to_vec() else { return };
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            if s.write_all(&framed).await.is_err() {
                return;
            }
        }
    }
}
