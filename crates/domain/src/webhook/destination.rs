//! Where an endpoint is: its URL by kind, and which addresses delivery must never connect to
//! (the SSRF guard's judgement; the connecting is delivery's).

use crate::error::DomainError;
use easm_events::EndpointKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const MAX_URL_LEN: usize = 2048;

/// Whether connecting to `ip` could reach the server's own network: loopback, private,
/// link-local (which holds the cloud metadata address), CGNAT, multicast, unspecified, broadcast,
/// documentation-reserved or unique-local ranges, including IPv4 addresses wrapped in IPv6
/// (mapped, compatible, and those that 6to4 and Teredo relays carry to IPv4; NAT64's
/// `64:ff9b::/96` is refused whole).
pub fn is_forbidden_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let seg = v6.segments();
            let v4_at =
                |i: usize| Ipv4Addr::from((u32::from(seg[i]) << 16) | u32::from(seg[i + 1]));
            // IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks).
            if seg[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                return forbidden_v4(v4_at(6));
            }
            // 6to4: 2002:AABB:CCDD::/48 reaches AA.BB.CC.DD.
            if seg[0] == 0x2002 && forbidden_v4(v4_at(1)) {
                return true;
            }
            // Teredo: 2001:0::/32, the server at bits 32-63, the client inverted in the last 32.
            if seg[0] == 0x2001
                && seg[1] == 0
                && (forbidden_v4(v4_at(2)) || forbidden_v4(!v4_at(6)))
            {
                return true;
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local, incl. fd00:ec2::254 metadata
                || (seg[0] & 0xffc0) == 0xfe80 // link-local
                || (seg[0] == 0x64 && seg[1] == 0xff9b) // NAT64 may reach IPv4 inside
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64.0.0/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || o[0] >= 240 // reserved
}

/// Syntax of an endpoint URL: https (or http when private targets are allowed, for tests and
/// local receivers), a host, no credentials, no fragment. Where the host points is checked by the
/// caller, which can resolve names.
pub fn validate_webhook_url(raw: &str, allow_private: bool) -> Result<url::Url, DomainError> {
    let bad = |m: String| DomainError::validation("url", m);
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > MAX_URL_LEN {
        return Err(bad(format!("must be 1 to {MAX_URL_LEN} characters")));
    }
    let u = url::Url::parse(raw).map_err(|e| bad(format!("'{raw}' is not a URL: {e}")))?;
    match u.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(bad("must be an https URL".into())),
    }
    if u.host().is_none() {
        return Err(bad("must have a host".into()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad("must not contain credentials".into()));
    }
    if u.fragment().is_some() {
        return Err(bad("must not contain a fragment".into()));
    }
    if !allow_private {
        if let Some(url::Host::Ipv4(ip)) = u.host() {
            if is_forbidden_address(IpAddr::V4(ip)) {
                return Err(bad(format!("{ip} is not a public address")));
            }
        }
        if let Some(url::Host::Ipv6(ip)) = u.host() {
            if is_forbidden_address(IpAddr::V6(ip)) {
                return Err(bad(format!("{ip} is not a public address")));
            }
        }
    }
    Ok(u)
}

/// The URL of an endpoint of `kind`: syslog takes `tcp://host:port` or `tls://host:port`, every
/// other kind an https URL as [`validate_webhook_url`] has it.
pub fn validate_endpoint_url(
    raw: &str,
    kind: EndpointKind,
    allow_private: bool,
) -> Result<url::Url, DomainError> {
    if kind != EndpointKind::Syslog {
        return validate_webhook_url(raw, allow_private);
    }
    let bad = |m: String| DomainError::validation("url", m);
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > MAX_URL_LEN {
        return Err(bad(format!("must be 1 to {MAX_URL_LEN} characters")));
    }
    let u = url::Url::parse(raw).map_err(|e| bad(format!("'{raw}' is not a URL: {e}")))?;
    if !matches!(u.scheme(), "tcp" | "tls") {
        return Err(bad(
            "a syslog endpoint's url is tcp://host:port or tls://host:port".into(),
        ));
    }
    // Hosts of schemes the URL standard does not know stay text, literal addresses included.
    let host = match u.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.parse::<IpAddr>().ok(),
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => return Err(bad("must have a host".into())),
    };
    if u.port().is_none() {
        return Err(bad("must name a port (tcp://host:port)".into()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad("must not contain credentials".into()));
    }
    if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
        return Err(bad("takes no path, query or fragment".into()));
    }
    if let Some(ip) = host.filter(|ip| !allow_private && is_forbidden_address(*ip)) {
        return Err(bad(format!("{ip} is not a public address")));
    }
    Ok(u)
}

/// A proxy for an endpoint's requests: http or https, a host, no credentials (they would be in
/// the log; an operator's `EASM_WEBHOOK_PROXY` may hold them), a public address unless private
/// targets are allowed.
pub fn validate_proxy_url(raw: &str, allow_private: bool) -> Result<url::Url, DomainError> {
    let bad = |m: String| DomainError::validation("proxy", m);
    let u = url::Url::parse(raw.trim()).map_err(|e| bad(format!("'{raw}' is not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad("must be an http or https URL".into()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad(
            "must not contain credentials (the operator's EASM_WEBHOOK_PROXY may)".into(),
        ));
    }
    let ip = match u.host() {
        None => return Err(bad("must have a host".into())),
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
    };
    if let Some(ip) = ip.filter(|ip| !allow_private && is_forbidden_address(*ip)) {
        return Err(bad(format!("{ip} is not a public address")));
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::169.254.169.254",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "2002:c0a8:101:1::5",
            // Teredo to a private server, and to a client at 127.0.0.1 (inverted: 80ff:fffe).
            "2001:0:a00:1::1",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "64:ff9b::8.8.8.8",
        ] {
            assert!(is_forbidden_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "100.128.0.1",
            "2002:5db8:d822::1",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
            "::8.8.8.8",
        ] {
            assert!(!is_forbidden_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn syslog_urls_name_a_transport_and_a_port() {
        let k = EndpointKind::Syslog;
        assert!(validate_endpoint_url("tcp://siem.example.com:514", k, false).is_ok());
        assert!(validate_endpoint_url("tls://siem.example.com:6514", k, false).is_ok());
        assert!(validate_endpoint_url("tcp://127.0.0.1:514", k, true).is_ok());
        for bad in [
            "udp://siem.example.com:514",
            "tcp://siem.example.com",
            "tcp://10.0.0.1:514",
            "tcp://u:p@siem.example.com:514",
            "tcp://siem.example.com:514/x",
            "https://siem.example.com/",
        ] {
            assert!(validate_endpoint_url(bad, k, false).is_err(), "{bad}");
        }
        assert!(
            validate_endpoint_url("tcp://siem.example.com:514", EndpointKind::Webhook, false)
                .is_err()
        );
    }

    #[test]
    fn proxies_are_http_without_credentials() {
        assert!(validate_proxy_url("http://proxy.example.com:3128", false).is_ok());
        assert!(validate_proxy_url("http://127.0.0.1:3128", true).is_ok());
        for bad in [
            "socks5://proxy.example.com:1080",
            "http://u:p@proxy.example.com:3128",
            "http://10.1.1.1:3128",
        ] {
            assert!(validate_proxy_url(bad, false).is_err(), "{bad}");
        }
    }
}
