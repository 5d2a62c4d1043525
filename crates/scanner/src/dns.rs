//! Name resolution: A, AAAA and CNAME records. With a configured resolver every query goes to
//! it over UDP (RFC 1035); otherwise addresses come from the system (hosts file included) and
//! CNAMEs from the first nameserver of /etc/resolv.conf when there is one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::UdpSocket;

const A: u16 = 1;
const CNAME: u16 = 5;
const AAAA: u16 = 28;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Resolved {
    pub addresses: Vec<IpAddr>,
    pub cnames: Vec<String>,
}

pub async fn resolve(
    host: &str,
    resolver: Option<SocketAddr>,
    timeout: Duration,
) -> Result<Resolved, String> {
    let mut out = Resolved::default();
    match resolver {
        Some(server) => {
            for qtype in [A, AAAA] {
                let (addrs, cnames) = query(server, host, qtype, timeout).await?;
                out.addresses.extend(addrs);
                for c in cnames {
                    if !out.cnames.contains(&c) {
                        out.cnames.push(c);
                    }
                }
            }
        }
        None => {
            let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host, 0)))
                .await
                .map_err(|_| format!("resolving {host} timed out"))?
                .map_err(|e| format!("cannot resolve {host}: {e}"))?;
            for a in found {
                if !out.addresses.contains(&a.ip()) {
                    out.addresses.push(a.ip());
                }
            }
            if let Some(server) = system_nameserver() {
                if let Ok((_, cnames)) = query(server, host, CNAME, timeout).await {
                    out.cnames = cnames;
                }
            }
        }
    }
    if out.addresses.is_empty() {
        return Err(format!("{host} has no A or AAAA record"));
    }
    Ok(out)
}

fn system_nameserver() -> Option<SocketAddr> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
}

fn encode_query(id: u16, host: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(host.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in host.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    q
}

async fn query(
    server: SocketAddr,
    host: &str,
    qtype: u16,
    timeout: Duration,
) -> Result<(Vec<IpAddr>, Vec<String>), String> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    let id: u16 = rand::random();
    socket
        .send_to(&encode_query(id, host, qtype), server)
        .await
        .map_err(|e| format!("DNS query to {server}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (n, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf))
            .await
            .map_err(|_| format!("DNS server {server} did not answer"))?
            .map_err(|e| e.to_string())?;
        if from == server && n >= 12 && buf[..2] == id.to_be_bytes() {
            return parse_answer(&buf[..n]).ok_or_else(|| format!("bad DNS answer from {server}"));
        }
    }
}

/// A (possibly compressed) name at `pos`; returns it and the position after it.
fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels = vec![];
    let mut end = None;
    for _ in 0..64 {
        let len = *msg.get(pos)? as usize;
        if len == 0 {
            return Some((labels.join("."), end.unwrap_or(pos + 1)));
        }
        if len & 0xc0 == 0xc0 {
            let ptr = ((len & 0x3f) << 8) | *msg.get(pos + 1)? as usize;
            end.get_or_insert(pos + 2);
            pos = ptr;
            continue;
        }
        labels.push(String::from_utf8_lossy(msg.get(pos + 1..pos + 1 + len)?).to_lowercase());
        pos += 1 + len;
    }
    None
}

fn parse_answer(msg: &[u8]) -> Option<(Vec<IpAddr>, Vec<String>)> {
    let questions = u16::from_be_bytes([msg[4], msg[5]]);
    let answers = u16::from_be_bytes([msg[6], msg[7]]);
    let mut pos = 12;
    for _ in 0..questions {
        pos = read_name(msg, pos)?.1 + 4;
    }
    let (mut addrs, mut cnames) = (vec![], vec![]);
    for _ in 0..answers {
        pos = read_name(msg, pos)?.1;
        let rtype = u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]);
        let len = u16::from_be_bytes([*msg.get(pos + 8)?, *msg.get(pos + 9)?]) as usize;
        let data = pos + 10;
        let rdata = msg.get(data..data + len)?;
        match (rtype, len) {
            (A, 4) => addrs.push(IpAddr::from(<[u8; 4]>::try_from(rdata).ok()?)),
            (AAAA, 16) => addrs.push(IpAddr::from(<[u8; 16]>::try_from(rdata).ok()?)),
            (CNAME, _) => cnames.push(read_name(msg, data)?.0),
            _ => {}
        }
        pos = data + len;
    }
    Some((addrs, cnames))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_compressed_cnames_parse() {
        let mut msg = encode_query(7, "www.example.com", A);
        msg[7] = 2; // two answers
                    // www.example.com CNAME web.example.com (pointer to "example.com" at 16)
        msg.extend_from_slice(&[
            0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'w', b'e', b'b', 0xc0, 16,
        ]);
        let web = msg.len() - 6;
        msg.extend_from_slice(&[
            0xc0, web as u8, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 93, 184, 216, 34,
        ]);
        let (addrs, cnames) = parse_answer(&msg).unwrap();
        assert_eq!(cnames, vec!["web.example.com"]);
        assert_eq!(addrs, vec![IpAddr::from([93, 184, 216, 34])]);
    }
}
