//! The client's address behind reverse proxies the operator trusts (`EASM_TRUSTED_PROXIES`):
//! `Forwarded` (RFC 7239) or else `X-Forwarded-For`, read from the nearest hop back, through the
//! trusted ones only. From anyone else those headers are ignored: a client could write anything
//! in them, and the address goes into audit records.

use axum::http::HeaderMap;
use std::net::IpAddr;
use std::str::FromStr;

/// Networks whose requests may say whom they forward.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of addresses and CIDR networks; empty for none.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut networks = vec![];
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (addr, prefix) = match item.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (item, None),
            };
            let addr = IpAddr::from_str(addr)
                .map_err(|_| format!("'{item}' is not an IP address or CIDR network"))?
                .to_canonical();
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("'{item}': the prefix length must be 0 to {max}"))?,
            };
            networks.push(Network { addr, prefix });
        }
        Ok(TrustedProxies(networks))
    }
}

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client of a request that came from `peer` with `headers`: the nearest address the
    /// forwarding headers give that is not a trusted proxy. A hop they do not name (`unknown`,
    /// an obfuscated or malformed node) ends the walk at the last proxy known.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded_for(headers).into_iter().rev() {
            let Some(ip) = hop else { return client };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// The hops a request went through, client first: from `Forwarded` when the request has it,
/// else from `X-Forwarded-For`. `None` for a hop given without an address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| split_outside_quotes(v, ','))
            .map(|element| {
                split_outside_quotes(element, ';')
                    .into_iter()
                    .find_map(|pair| {
                        let (name, value) = pair.split_once('=')?;
                        name.trim()
                            .eq_ignore_ascii_case("for")
                            .then(|| node(value.trim().trim_matches('"')))
                    })?
            })
            .collect();
    }
    values("x-forwarded-for")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|n| node(n.trim()))
        .collect()
}

/// `s` cut at `sep`, except inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = vec![];
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A node's address: `192.0.2.1`, `192.0.2.1:8080`, `[2001:db8::1]`, `[2001:db8::1]:8080`, or
/// a bare IPv6 address (X-Forwarded-For).
fn node(n: &str) -> Option<IpAddr> {
    if let Some(rest) = n.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    if let Ok(ip) = n.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (host, port) = n.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(s: &str) -> TrustedProxies {
        s.parse().unwrap()
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(
            trusted("10.0.0.0/8").client(ip("198.51.100.2"), &h),
            ip("198.51.100.2")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client_and_what_it_claimed_is_not_believed() {
        // The client wrote 1.2.3.4 itself; the two proxies appended what they saw.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.7, 10.0.0.5")]);
        assert_eq!(
            trusted("10.0.0.0/8").client(ip("10.0.0.9"), &h),
            ip("203.0.113.7")
        );
        let spread = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.7"),
        ]);
        assert_eq!(
            trusted("10.0.0.9").client(ip("10.0.0.9"), &spread),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn forwarded_is_read_before_x_forwarded_for() {
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            (
                "forwarded",
                r#"for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711""#,
            ),
        ]);
        assert_eq!(
            trusted("::1, 127.0.0.1").client(ip("127.0.0.1"), &h),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            trusted("127.0.0.1, 2001:db8:cafe::/48").client(ip("::ffff:127.0.0.1"), &h),
            ip("192.0.2.60")
        );
    }

    #[test]
    fn a_hop_without_an_address_ends_the_walk_at_the_last_known_proxy() {
        let h = headers(&[("forwarded", "for=192.0.2.60, for=unknown, for=10.0.0.2")]);
        assert_eq!(
            trusted("10.0.0.0/8").client(ip("10.0.0.1"), &h),
            ip("10.0.0.2")
        );
        let ported = headers(&[("x-forwarded-for", "192.0.2.60:5120")]);
        assert_eq!(
            trusted("10.0.0.0/8").client(ip("10.0.0.1"), &ported),
            ip("192.0.2.60")
        );
    }

    #[test]
    fn the_setting_is_addresses_and_networks() {
        assert_eq!(trusted(""), TrustedProxies::default());
        assert!(trusted("10.0.0.0/8").trusts(ip("10.255.0.1")));
        assert!(!trusted("10.0.0.0/8").trusts(ip("11.0.0.1")));
        assert!(trusted("0.0.0.0/0").trusts(ip("8.8.8.8")));
        assert!(trusted("fd00::/8").trusts(ip("fd12::1")));
        assert!(!trusted("fd00::/8").trusts(ip("10.0.0.1")));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
    }
}
