//! Services that speak when spoken to: Redis, Memcached and MongoDB, with just enough of each
//! protocol to tell whether they answer without authentication.

use crate::templates::{MEMCACHED_OPEN, MONGO_OPEN, REDIS_OPEN};
use crate::{excerpt, read_some};
use easm_events::Detection;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Send `request` on a fresh connection and read what comes back.
pub async fn exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let mut s = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    tokio::time::timeout(timeout, s.write_all(request))
        .await
        .ok()?
        .ok()?;
    let got = read_some(&mut s, 16 * 1024, timeout).await;
    (!got.is_empty()).then_some(got)
}

/// A service recognised by probing, with a finding when it needs no credentials.
pub struct Recognised {
    pub name: &'static str,
    pub detail: Option<String>,
    pub finding: Option<Detection>,
}

pub async fn redis(addr: SocketAddr, matched_at: &str, timeout: Duration) -> Option<Recognised> {
    let reply = exchange(addr, b"*1\r\n$4\r\nPING\r\n", timeout).await?;
    let text = String::from_utf8_lossy(&reply);
    if text.starts_with("-NOAUTH") || text.starts_with("-ERR operation not permitted") {
        return Some(Recognised {
            name: "redis",
            detail: Some("authentication required".into()),
            finding: None,
        });
    }
    if !text.starts_with("+PONG") {
        return None;
    }
    let info = exchange(addr, b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n", timeout)
        .await
        .map(|r| String::from_utf8_lossy(&r).into_owned())
        .unwrap_or_default();
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_string());
    let seen = format!("PING answered +PONG without AUTH\n{}", excerpt(&info));
    Some(Recognised {
        name: "redis",
        detail: version.map(|v| format!("redis {v}")),
        finding: Some(REDIS_OPEN.detect(matched_at, "", seen)),
    })
}

pub async fn memcached(
    addr: SocketAddr,
    matched_at: &str,
    timeout: Duration,
) -> Option<Recognised> {
    let reply = exchange(addr, b"stats\r\n", timeout).await?;
    let text = String::from_utf8_lossy(&reply);
    if !text.starts_with("STAT ") {
        return None;
    }
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("STAT version "))
        .map(|v| v.trim().to_string());
    Some(Recognised {
        name: "memcached",
        detail: version.map(|v| format!("memcached {v}")),
        finding: Some(MEMCACHED_OPEN.detect(matched_at, "", excerpt(&text))),
    })
}

/// A BSON document of int32 and string fields.
fn bson(fields: &[(&str, Result<i32, &str>)]) -> Vec<u8> {
    let mut body = vec![];
    for (name, value) in fields {
        match value {
            Ok(n) => {
                body.push(0x10);
                body.extend_from_slice(name.as_bytes());
                body.push(0);
                body.extend_from_slice(&n.to_le_bytes());
            }
            Err(s) => {
                body.push(0x02);
                body.extend_from_slice(name.as_bytes());
                body.push(0);
                body.extend_from_slice(&(s.len() as i32 + 1).to_le_bytes());
                body.extend_from_slice(s.as_bytes());
                body.push(0);
            }
        }
    }
    body.push(0);
    let mut doc = ((body.len() + 4) as i32).to_le_bytes().to_vec();
    doc.extend(body);
    doc
}

/// An OP_MSG (opcode 2013) carrying one command document.
pub fn op_msg(request_id: i32, command: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + 1 + command.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as i32).to_le_bytes());
    m.extend_from_slice(&request_id.to_le_bytes());
    m.extend_from_slice(&0i32.to_le_bytes());
    m.extend_from_slice(&2013i32.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.push(0);
    m.extend_from_slice(command);
    m
}

fn is_op_msg_reply(reply: &[u8]) -> bool {
    reply.len() >= 21 && reply[12..16] == 2013i32.to_le_bytes()
}

pub async fn mongodb(addr: SocketAddr, matched_at: &str, timeout: Duration) -> Option<Recognised> {
    let hello = op_msg(1, &bson(&[("isMaster", Ok(1)), ("$db", Err("admin"))]));
    let reply = exchange(addr, &hello, timeout).await?;
    if !is_op_msg_reply(&reply) {
        return None;
    }
    let list = op_msg(
        2,
        &bson(&[
            ("listDatabases", Ok(1)),
            ("nameOnly", Ok(1)),
            ("$db", Err("admin")),
        ]),
    );
    let listed = exchange(addr, &list, timeout).await.unwrap_or_default();
    let open = is_op_msg_reply(&listed) && contains(&listed, b"\x04databases\x00");
    let finding = open.then(|| {
        let names: String = String::from_utf8_lossy(&listed[21..])
            .split(|c: char| c.is_control())
            .filter(|s| s.len() > 1)
            .collect::<Vec<_>>()
            .join(" ");
        let seen = format!(
            "listDatabases answered without authentication: {}",
            excerpt(&names)
        );
        MONGO_OPEN.detect(matched_at, "", seen)
    });
    Some(Recognised {
        name: "mongodb",
        detail: Some(
            if open {
                "no authentication"
            } else {
                "authentication required"
            }
            .into(),
        ),
        finding,
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_msg_frames_a_bson_command() {
        let doc = bson(&[("isMaster", Ok(1)), ("$db", Err("admin"))]);
        assert_eq!(
            i32::from_le_bytes(doc[..4].try_into().unwrap()) as usize,
            doc.len()
        );
        let m = op_msg(7, &doc);
        assert_eq!(
            i32::from_le_bytes(m[..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert!(is_op_msg_reply(&m));
        assert!(contains(&m, b"isMaster\x00"));
    }
}
