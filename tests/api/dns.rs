//! The resolver of the scanner and discovery against a real authoritative server on 127.0.0.1:
//! answers, negative answers told apart, TCP after truncation, the next upstream after a silent
//! one, and zone transfers.

use easm::zone_server::{ZoneServer, Zones};
use easm_scanner::dns::{zone_transfer, Dns, LookupError, Type};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

fn zones() -> Zones {
    let mut z = Zones::default()
        .zone("dns.test")
        .allow_transfer("dns.test")
        .zone("closed.test")
        .a("www.dns.test", [192, 0, 2, 10].into())
        .a("www.dns.test", "2001:db8::10".parse().unwrap())
        .cname("alias.dns.test", "www.dns.test")
        .cname("gone.dns.test", "missing.elsewhere.test")
        .a("deep.sub.dns.test", [192, 0, 2, 11].into())
        .ptr([192, 0, 2, 10].into(), "www.dns.test")
        .zone("2.0.192.in-addr.arpa")
        .a("www.closed.test", [192, 0, 2, 12].into());
    for i in 0..150u8 {
        z = z.a("many.dns.test", [198, 51, 100, i].into());
    }
    z
}

async fn resolver(upstreams: &[SocketAddr]) -> Dns {
    Dns::new(upstreams, Duration::from_millis(300)).unwrap()
}

#[tokio::test]
async fn answers_and_negative_answers_are_told_apart() {
    let server = ZoneServer::start(zones()).await.unwrap();
    let dns = resolver(&[server.addr]).await;
    let www = dns.resolve("www.dns.test").await.unwrap();
    let expected: Vec<IpAddr> = vec![[192, 0, 2, 10].into(), "2001:db8::10".parse().unwrap()];
    assert_eq!(www.addresses.len(), 2);
    assert!(expected.iter().all(|a| www.addresses.contains(a)));
    let alias = dns.resolve("alias.dns.test").await.unwrap();
    assert_eq!(alias.cnames, vec!["www.dns.test"]);
    assert!(alias.addresses.contains(&IpAddr::from([192, 0, 2, 10])));
    assert_eq!(
        dns.cname("gone.dns.test").await.unwrap().as_deref(),
        Some("missing.elsewhere.test")
    );
    assert_eq!(dns.cname("www.dns.test").await.unwrap(), None);
    assert_eq!(
        dns.resolve("nope.dns.test").await.unwrap_err(),
        LookupError::NxDomain("nope.dns.test".into())
    );
    // `sub.dns.test` exists (a name lives below it) but has no address.
    let empty = dns.resolve("sub.dns.test").await.unwrap_err();
    assert!(matches!(empty, LookupError::NoData(..)), "{empty:?}");
    assert!(empty.is_negative());
    let refused = dns.resolve("www.other.test").await.unwrap_err();
    assert!(
        matches!(refused, LookupError::ServerFailure(..)),
        "{refused:?}"
    );
    assert!(!refused.is_negative());
    assert_eq!(
        dns.reverse([192, 0, 2, 10].into()).await.unwrap(),
        vec!["www.dns.test"]
    );
    assert_eq!(
        dns.name_servers("dns.test").await.unwrap(),
        vec!["ns.dns.test"]
    );
}

#[tokio::test]
async fn a_truncated_answer_is_asked_again_over_tcp() {
    let server = ZoneServer::start(zones()).await.unwrap();
    let dns = resolver(&[server.addr]).await;
    // 150 addresses do not fit in a UDP answer: the server truncates, the resolver asks by TCP.
    let many = dns.resolve("many.dns.test").await.unwrap();
    assert_eq!(many.addresses.len(), 150);
}

#[tokio::test]
async fn a_silent_upstream_is_a_timeout_and_the_next_one_answers() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let only_silent = resolver(&[silent_addr]).await;
    let e = only_silent.resolve("www.dns.test").await.unwrap_err();
    assert!(
        matches!(e, LookupError::Timeout(_) | LookupError::Other(..)),
        "{e:?}"
    );
    assert!(!e.is_negative());
    let server = ZoneServer::start(zones()).await.unwrap();
    let both = resolver(&[silent_addr, server.addr]).await;
    let www = both.resolve("www.dns.test").await.unwrap();
    assert!(www.addresses.contains(&IpAddr::from([192, 0, 2, 10])));
}

#[tokio::test]
async fn zone_transfers_are_taken_where_allowed_and_refused_elsewhere() {
    let server = ZoneServer::start(zones()).await.unwrap();
    let records = zone_transfer(server.addr, "dns.test", Duration::from_secs(2), 10_000)
        .await
        .unwrap();
    let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
    assert!(names.contains(&"deep.sub.dns.test"), "{names:?}");
    assert!(names.contains(&"gone.dns.test"));
    assert_eq!(
        records
            .iter()
            .filter(|r| r.name == "many.dns.test" && r.record_type == Type::A)
            .count(),
        150
    );
    let refused = zone_transfer(server.addr, "closed.test", Duration::from_secs(2), 10)
        .await
        .unwrap_err();
    assert!(refused.contains("refused"), "{refused}");
}
