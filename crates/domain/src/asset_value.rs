//! Asset values are parsed at the edge into one canonical spelling, so that the same asset written
//! two ways is recognized as a duplicate.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetType {
    Domain,
    Subdomain,
    Ip,
    Cidr,
    Url,
    CloudResource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Criticality {
    Low,
    Medium,
    High,
    Critical,
}

impl AssetType {
    pub const ALL: [AssetType; 6] = [
        AssetType::Domain,
        AssetType::Subdomain,
        AssetType::Ip,
        AssetType::Cidr,
        AssetType::Url,
        AssetType::CloudResource,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AssetType::Domain => "domain",
            AssetType::Subdomain => "subdomain",
            AssetType::Ip => "ip",
            AssetType::Cidr => "cidr",
            AssetType::Url => "url",
            AssetType::CloudResource => "cloud_resource",
        }
    }

    pub fn parse(s: &str) -> Option<AssetType> {
        AssetType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl Criticality {
    pub const ALL: [Criticality; 4] = [
        Criticality::Low,
        Criticality::Medium,
        Criticality::High,
        Criticality::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Criticality::Low => "low",
            Criticality::Medium => "medium",
            Criticality::High => "high",
            Criticality::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Criticality> {
        Criticality::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

pub const MAX_VALUE_LEN: usize = 2048;

/// Validate `raw` as an asset of type `t` and return its canonical form, or why it is not one.
pub fn normalize_value(t: AssetType, raw: &str) -> Result<String, String> {
    let v = raw.trim();
    if v.is_empty() {
        return Err("must not be empty".into());
    }
    if v.len() > MAX_VALUE_LEN {
        return Err(format!("must be at most {MAX_VALUE_LEN} characters"));
    }
    match t {
        AssetType::Domain => hostname(v, 2),
        AssetType::Subdomain => hostname(v, 3),
        AssetType::Ip => v
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .map_err(|_| format!("'{v}' is not an IPv4 or IPv6 address")),
        AssetType::Cidr => cidr(v),
        AssetType::Url => url(v),
        AssetType::CloudResource => {
            if v.len() > 512 {
                Err("must be at most 512 characters".into())
            } else if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                Err("must not contain white space or control characters".into())
            } else {
                Ok(v.to_string())
            }
        }
    }
}

/// Lowercase ASCII (IDNA) hostname with at least `min_labels` labels.
fn hostname(v: &str, min_labels: usize) -> Result<String, String> {
    let v = v.strip_suffix('.').unwrap_or(v);
    if v.parse::<IpAddr>().is_ok() {
        return Err(format!("'{v}' is an IP address; use type ip"));
    }
    let ascii = idna::domain_to_ascii(v).map_err(|_| format!("'{v}' is not a valid hostname"))?;
    if ascii.is_empty() || ascii.len() > 253 {
        return Err(format!("'{v}' is not a valid hostname"));
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    for l in &labels {
        let ok = !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(format!("'{v}' is not a valid hostname"));
        }
    }
    if labels.len() < min_labels {
        return Err(if min_labels == 2 {
            format!("'{v}' is not a registrable domain (expected e.g. example.com)")
        } else {
            format!("'{v}' is not a subdomain (expected e.g. api.example.com)")
        });
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("'{v}' is not a valid hostname"));
    }
    Ok(ascii)
}

/// Canonical network: the address with host bits cleared, then `/prefix`.
fn cidr(v: &str) -> Result<String, String> {
    let err = || format!("'{v}' is not a CIDR block (expected e.g. 203.0.113.0/24)");
    let (addr, len) = v.split_once('/').ok_or_else(err)?;
    let ip: IpAddr = addr.trim().parse().map_err(|_| err())?;
    let len: u8 = len.trim().parse().map_err(|_| err())?;
    match ip {
        IpAddr::V4(a) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            let net = std::net::Ipv4Addr::from(u32::from(a) & mask);
            Ok(format!("{net}/{len}"))
        }
        IpAddr::V6(a) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            let net = std::net::Ipv6Addr::from(u128::from(a) & mask);
            Ok(format!("{net}/{len}"))
        }
        _ => Err(err()),
    }
}

fn url(v: &str) -> Result<String, String> {
    let u = url::Url::parse(v).map_err(|e| format!("'{v}' is not a URL: {e}"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!("'{v}' must be an http or https URL"));
    }
    match u.host() {
        Some(url::Host::Domain(d)) => {
            hostname(d, 1)?;
        }
        Some(_) => {}
        None => return Err(format!("'{v}' has no host")),
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not contain credentials".into());
    }
    let mut u = u;
    u.set_fragment(None);
    Ok(u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use AssetType::*;

    #[test]
    fn normalizes_each_type() {
        let ok = [
            (Domain, " Example.COM. ", "example.com"),
            (Domain, "bücher.de", "xn--bcher-kva.de"),
            (Subdomain, "API.Example.com", "api.example.com"),
            (Ip, "2001:DB8:0:0::1", "2001:db8::1"),
            (Ip, "203.0.113.7", "203.0.113.7"),
            (Cidr, "10.1.2.3/8", "10.0.0.0/8"),
            (Cidr, "2001:db8::1/32", "2001:db8::/32"),
            (
                Url,
                "HTTPS://Example.com:443/a#frag",
                "https://example.com/a",
            ),
            (
                CloudResource,
                "arn:aws:s3:::My-Bucket",
                "arn:aws:s3:::My-Bucket",
            ),
        ];
        for (t, raw, want) in ok {
            assert_eq!(normalize_value(t, raw).as_deref(), Ok(want), "{t:?} {raw}");
        }
    }

    #[test]
    fn rejects_invalid_values() {
        let bad = [
            (Domain, ""),
            (Domain, "localhost"),
            (Domain, "-bad-.com"),
            (Domain, "a..com"),
            (Domain, "1.2.3.4"),
            (Subdomain, "example.com"),
            (Ip, "256.1.1.1"),
            (Cidr, "10.0.0.0/33"),
            (Cidr, "10.0.0.0"),
            (Url, "ftp://example.com"),
            (Url, "https://user:pw@example.com/"),
            (CloudResource, "has space"),
        ];
        for (t, raw) in bad {
            assert!(
                normalize_value(t, raw).is_err(),
                "{t:?} {raw:?} should fail"
            );
        }
        assert!(normalize_value(Domain, &"a".repeat(3000)).is_err());
    }
}
