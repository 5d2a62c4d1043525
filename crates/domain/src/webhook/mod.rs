//! Webhook endpoints and the native destinations that share their resource: where they are,
//! what they are sent, how; the audit log webhook among them.

mod destination;
mod options;

pub use destination::{
    is_forbidden_address, validate_endpoint_url, validate_proxy_url, validate_webhook_url,
};
pub use options::{
    batching, credential_names, resolve, CredentialChanges, OptionsSpec, Patch, TlsSpec, WriteOnly,
    MASK, OWNED_HEADERS,
};

use crate::{error::DomainError, Aggregate};
use easm_events::{
    EndpointDisabled, EndpointOptions, Event, WebhookCreated, WebhookDeleted, WebhookSecretRotated,
    WebhookUpdated, SUBSCRIBABLE,
};
use easm_events::{EndpointKind, OrgId, WebhookId};

/// A webhook endpoint (stream `webhook-<id>`).
#[derive(Debug, Default, Clone)]
pub struct Webhook {
    pub id: WebhookId,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub options: EndpointOptions,
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
    pub delivery: OptionsSpec,
}

/// What a decision on an endpoint comes to: its events, and the write-only values to store or
/// forget with them (never in the events).
pub type EndpointDecision = (Vec<Event>, CredentialChanges);

pub const MAX_DESCRIPTION_LEN: usize = 500;
pub const MAX_FILTERS: usize = 50;

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
    ) -> Result<EndpointDecision, DomainError> {
        let url = spec
            .url
            .as_deref()
            .ok_or_else(|| DomainError::validation("url", "is required"))?;
        let events = spec
            .events
            .as_deref()
            .ok_or_else(|| DomainError::validation("events", "is required"))?;
        let resolved = resolve(
            &EndpointOptions::default(),
            url,
            &spec.delivery,
            allow_private,
        )?;
        let kind = resolved.options.kind;
        let event = Event::WebhookCreated(WebhookCreated {
            webhook_id: id.into(),
            url: validate_endpoint_url(url, kind, allow_private)?.to_string(),
            events: validate_event_filters(events)?,
            description: validate_description(spec.description.as_deref().unwrap_or(""))?,
            enabled: spec.enabled.unwrap_or(true),
            delivery: resolved.options,
        });
        Ok((vec![event], resolved.credentials))
    }

    /// A change refused only because of what this endpoint is (its kind, its url) conflicts
    /// with its state (409): an endpoint of some kind, holding what that kind needs (its token,
    /// API key, index), would take the same fields. One that none would take stays invalid (400).
    fn conflict_if_another_would_take(
        &self,
        refused: DomainError,
        spec: &WebhookSpec,
        allow_private: bool,
    ) -> DomainError {
        let DomainError::Validation { field, message } = &refused else {
            return refused;
        };
        let kinds: Vec<EndpointKind> = match spec.delivery.kind {
            Some(k) => vec![k],
            None => EndpointKind::ALL.to_vec(),
        };
        let taken = kinds.into_iter().any(|kind| {
            let url = spec.url.as_deref().unwrap_or(match kind {
                EndpointKind::Syslog => "tcp://siem.example.com:514",
                _ => "https://receiver.example.com/",
            });
            let held = EndpointOptions {
                kind,
                format: options::default_format(kind),
                index: (kind == EndpointKind::Elasticsearch).then(|| "easm".to_string()),
                ..EndpointOptions::default()
            };
            resolve(&held, url, &spec.delivery, allow_private).is_ok()
        });
        if taken {
            DomainError::Conflict {
                message: format!(
                    "{field}: {message} (the endpoint is a {} endpoint at {})",
                    self.options.kind, self.url
                ),
                existing_id: None,
            }
        } else {
            refused
        }
    }

    pub fn update(
        &self,
        spec: &WebhookSpec,
        allow_private: bool,
    ) -> Result<EndpointDecision, DomainError> {
        self.require_live()?;
        let url = spec.url.as_deref().unwrap_or(&self.url);
        let resolved = resolve(&self.options, url, &spec.delivery, allow_private)
            .map_err(|e| self.conflict_if_another_would_take(e, spec, allow_private))?;
        let mut change = WebhookUpdated {
            webhook_id: self.id.clone(),
            url: None,
            events: None,
            description: None,
            enabled: None,
            delivery: (resolved.options != self.options).then(|| resolved.options.clone()),
            credentials: resolved
                .credentials
                .iter()
                .map(|(n, _)| n.clone())
                .collect(),
        };
        if let Some(u) = &spec.url {
            let u = validate_endpoint_url(u, resolved.options.kind, allow_private)?.to_string();
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
            && change.enabled.is_none()
            && change.delivery.is_none()
            && change.credentials.is_empty();
        let events = if nothing {
            vec![]
        } else {
            vec![Event::WebhookUpdated(change)]
        };
        Ok((events, resolved.credentials))
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
                    options: e.delivery.clone(),
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
                if let Some(o) = &e.delivery {
                    self.options = o.clone();
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
        let w = Webhook::from_events(&Webhook::create(&"w".into(), &spec, false).unwrap().0);
        assert!(w.enabled);
        assert!(w.update(&spec, false).unwrap().0.is_empty());
        let off = WebhookSpec {
            enabled: Some(false),
            ..Default::default()
        };
        assert_eq!(w.update(&off, false).unwrap().0.len(), 1);
        let mut gone = w.clone();
        gone.apply(&w.delete().unwrap()[0]);
        assert!(matches!(
            gone.rotate_secret("t"),
            Err(DomainError::NotFound { .. })
        ));
        assert!(Webhook::create(&"w".into(), &WebhookSpec::default(), false).is_err());
    }
}
