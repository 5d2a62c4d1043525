use crate::{error::DomainError, Aggregate};
use easm_events::{
    EndpointDisabled, Event, WebhookCreated, WebhookDeleted, WebhookSecretRotated, WebhookUpdated,
    SUBSCRIBABLE,
};
use easm_events::{OrgId, WebhookId};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A webhook endpoint (stream `webhook-<id>`).
#[derive(Debug, Default, Clone)]
pub struct Webhook {
    pub id: WebhookId,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub created: bool,
    pub deleted: bool,
}

/// Requested attributes; on update, `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookSpec {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

pub const MAX_URL_LEN: usize = 2048;
pub const MAX_DESCRIPTION_LEN: usize = 500;
pub const MAX_FILTERS: usize = 50;

/// Whether connecting to `ip` could reach the server's own network: loopback, private,
/// link-local (which holds the cloud metadata address), CGNAT, multicast, unspecified, broadcast,
/// documentation-reserved or unique-local ranges, including IPv4 addresses wrapped in IPv6.
pub fn is_forbidden_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let seg = v6.segments();
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

/// Event filters: exact subscribable types, a family wildcard (`finding.*`), any `audit.` type,
/// or `*`. Trimmed, without repeats, 1 to 50.
pub fn validate_event_filters(filters: &[String]) -> Result<Vec<String>, DomainError> {
    if filters.is_empty() || filters.len() > MAX_FILTERS {
        return Err(DomainError::validation(
            "events",
            format!("must hold 1 to {MAX_FILTERS} event types"),
        ));
    }
    let families: Vec<&str> = SUBSCRIBABLE
        .iter()
        .filter_map(|t| t.split_once('.').map(|(f, _)| f))
        .collect();
    let mut out: Vec<String> = Vec::new();
    for f in filters {
        let f = f.trim();
        let ok = f == "*"
            || SUBSCRIBABLE.contains(&f)
            || f.strip_suffix(".*")
                .is_some_and(|fam| families.contains(&fam))
            || f.strip_prefix("audit.").is_some_and(|rest| {
                !rest.is_empty()
                    && rest.len() <= 64
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.')
            });
        if !ok {
            return Err(DomainError::validation(
                "events",
                format!("'{f}' is not a subscribable event type (one of {}, a family such as finding.*, or *)", SUBSCRIBABLE.join(", ")),
            ));
        }
        if !out.iter().any(|o| o == f) {
            out.push(f.to_string());
        }
    }
    Ok(out)
}

fn validate_description(d: &str) -> Result<String, DomainError> {
    let d = d.trim();
    if d.chars().count() > MAX_DESCRIPTION_LEN || d.chars().any(char::is_control) {
        return Err(DomainError::validation(
            "description",
            format!("must be at most {MAX_DESCRIPTION_LEN} printable characters"),
        ));
    }
    Ok(d.to_string())
}

impl Webhook {
    pub fn live(&self) -> bool {
        self.created && !self.deleted
    }

    fn require_live(&self) -> Result<(), DomainError> {
        if self.live() {
            Ok(())
        } else {
            Err(DomainError::NotFound {
                resource: "webhook",
            })
        }
    }

    pub fn create(
        id: &WebhookId,
        spec: &WebhookSpec,
        allow_private: bool,
    ) -> Result<Vec<Event>, DomainError> {
        let url = spec
            .url
            .as_deref()
            .ok_or_else(|| DomainError::validation("url", "is required"))?;
        let events = spec
            .events
            .as_deref()
            .ok_or_else(|| DomainError::validation("events", "is required"))?;
        Ok(vec![Event::WebhookCreated(WebhookCreated {
            webhook_id: id.into(),
            url: validate_webhook_url(url, allow_private)?.to_string(),
            events: validate_event_filters(events)?,
            description: validate_description(spec.description.as_deref().unwrap_or(""))?,
            enabled: spec.enabled.unwrap_or(true),
        })])
    }

    pub fn update(
        &self,
        spec: &WebhookSpec,
        allow_private: bool,
    ) -> Result<Vec<Event>, DomainError> {
        self.require_live()?;
        let mut change = WebhookUpdated {
            webhook_id: self.id.clone(),
            url: None,
            events: None,
            description: None,
            enabled: None,
        };
        if let Some(u) = &spec.url {
            let u = validate_webhook_url(u, allow_private)?.to_string();
            change.url = (u != self.url).then_some(u);
        }
        if let Some(e) = &spec.events {
            let e = validate_event_filters(e)?;
            change.events = (e != self.events).then_some(e);
        }
        if let Some(d) = &spec.description {
            let d = validate_description(d)?;
            change.description = (d != self.description).then_some(d);
        }
        if let Some(en) = spec.enabled {
            change.enabled = (en != self.enabled).then_some(en);
        }
        let nothing = change.url.is_none()
            && change.events.is_none()
            && change.description.is_none()
            && change.enabled.is_none();
        Ok(if nothing {
            vec![]
        } else {
            vec![Event::WebhookUpdated(change)]
        })
    }

    pub fn delete(&self) -> Result<Vec<Event>, DomainError> {
        self.require_live()?;
        Ok(vec![Event::WebhookDeleted(WebhookDeleted {
            webhook_id: self.id.clone(),
        })])
    }

    /// `previous_valid_until`: until when the replaced secret still signs (RFC 3339).
    pub fn rotate_secret(&self, previous_valid_until: &str) -> Result<Vec<Event>, DomainError> {
        self.require_live()?;
        Ok(vec![Event::WebhookSecretRotated(WebhookSecretRotated {
            webhook_id: self.id.clone(),
            previous_valid_until: previous_valid_until.into(),
        })])
    }
}

impl Webhook {
    /// Delivery gives up on the endpoint; nothing to record if it is already off.
    pub fn disable(&self, failing_since: &str, reason: &str) -> Result<Vec<Event>, DomainError> {
        self.require_live()?;
        if !self.enabled {
            return Ok(vec![]);
        }
        Ok(vec![Event::EndpointDisabled(EndpointDisabled {
            webhook_id: self.id.clone(),
            failing_since: failing_since.into(),
            reason: reason.into(),
        })])
    }
}

/// The organization's audit log webhook is an endpoint like the others, subscribed to `audit.*`,
/// with an id of its own kind, managed under `/api/settings/audit-webhook` only.
pub fn audit_webhook_id(org_id: &OrgId) -> WebhookId {
    WebhookId::new(format!("audit-{org_id}"))
}

pub fn is_audit_webhook(id: &str) -> bool {
    id.starts_with("audit-")
}

/// Whether an endpoint subscribed with `filters` receives messages of type `message_type`
/// (an event type, or `audit.<event type>` for the audit form of an event).
pub fn subscribed(filters: &[String], message_type: &str) -> bool {
    filters.iter().any(|f| {
        f == "*" && !message_type.starts_with("audit.")
            || f == message_type
            || f.strip_suffix('*')
                .is_some_and(|prefix| prefix.ends_with('.') && message_type.starts_with(prefix))
    })
}

impl Aggregate for Webhook {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::WebhookCreated(e) => {
                *self = Webhook {
                    id: e.webhook_id.clone(),
                    url: e.url.clone(),
                    events: e.events.clone(),
                    description: e.description.clone(),
                    enabled: e.enabled,
                    created: true,
                    deleted: false,
                }
            }
            Event::WebhookUpdated(e) => {
                if let Some(u) = &e.url {
                    self.url = u.clone();
                }
                if let Some(ev) = &e.events {
                    self.events = ev.clone();
                }
                if let Some(d) = &e.description {
                    self.description = d.clone();
                }
                if let Some(en) = e.enabled {
                    self.enabled = en;
                }
            }
            Event::WebhookDeleted(_) => self.deleted = true,
            Event::EndpointDisabled(_) => self.enabled = false,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_match_types_families_and_audit() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(subscribed(&f(&["finding.*"]), "finding.new"));
        assert!(!subscribed(&f(&["finding.*"]), "findings.new"));
        assert!(!subscribed(&f(&["finding.*"]), "scan.completed"));
        assert!(subscribed(&f(&["scan.completed"]), "scan.completed"));
        assert!(!subscribed(&f(&["scan.completed"]), "scan.failed"));
        assert!(subscribed(&f(&["*"]), "asset.added"));
        assert!(!subscribed(&f(&["*"]), "audit.asset.added"));
        assert!(subscribed(&f(&["audit.*"]), "audit.group.created"));
        assert!(subscribed(&f(&["audit.group.*"]), "audit.group.created"));
        assert!(!subscribed(&f(&["audit.*"]), "group.created"));
    }

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
        ] {
            assert!(is_forbidden_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "100.128.0.1",
        ] {
            assert!(!is_forbidden_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_and_filters() {
        assert!(validate_webhook_url("https://siem.example.com/in", false).is_ok());
        for bad in [
            "http://siem.example.com/",
            "https://10.0.0.8/",
            "https://[::1]/",
            "ftp://x.com/",
            "https://u:p@x.com/",
            "https://x.com/#f",
            "nonsense",
        ] {
            assert!(validate_webhook_url(bad, false).is_err(), "{bad}");
        }
        assert!(validate_webhook_url("http://127.0.0.1:9000/hook", true).is_ok());
        let ok = validate_event_filters(&[
            "finding.*".into(),
            "scan.completed".into(),
            "scan.completed".into(),
            "audit.key_created".into(),
            "*".into(),
        ])
        .unwrap();
        assert_eq!(
            ok,
            ["finding.*", "scan.completed", "audit.key_created", "*"]
        );
        for bad in [
            vec![],
            vec!["nope".to_string()],
            vec!["finding.nope".to_string()],
            vec!["planet.*".to_string()],
        ] {
            assert!(validate_event_filters(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lifecycle() {
        let spec = WebhookSpec {
            url: Some("https://siem.example.com/in".into()),
            events: Some(vec!["scan.*".into()]),
            ..Default::default()
        };
        let w = Webhook::from_events(&Webhook::create(&"w".into(), &spec, false).unwrap());
        assert!(w.enabled);
        assert!(w.update(&spec, false).unwrap().is_empty());
        let off = WebhookSpec {
            enabled: Some(false),
            ..Default::default()
        };
        assert_eq!(w.update(&off, false).unwrap().len(), 1);
        let mut gone = w.clone();
        gone.apply(&w.delete().unwrap()[0]);
        assert!(matches!(
            gone.rotate_secret("t"),
            Err(DomainError::NotFound { .. })
        ));
        assert!(Webhook::create(&"w".into(), &WebhookSpec::default(), false).is_err());
    }
}
