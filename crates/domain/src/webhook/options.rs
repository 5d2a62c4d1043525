//! How an endpoint takes its messages (kind, format, headers, filter, ordering, TLS, proxy,
//! batching): a request's changes resolved against what the endpoint has, checked as a whole
//! for its kind. Write-only values come out beside the options, to be stored apart from the log.

use super::destination::{validate_endpoint_url, validate_proxy_url};
use crate::error::DomainError;
use easm_events::{
    DeliveryFilter, DeliveryOrdering, EndpointKind, EndpointOptions, EndpointTls, PayloadFormat,
};

/// What a write-only value looks like on read; sent back, it keeps the stored value.
pub const MASK: &str = "********";
pub const MAX_HEADERS: usize = 20;
const MAX_HEADER_VALUE: usize = 4096;
const MAX_PEM: usize = 65536;
const MAX_FILTER_ITEMS: usize = 100;
pub const DEFAULT_BATCH_SIZE: u32 = 100;
pub const DEFAULT_BATCH_WINDOW_MS: u32 = 200;
const MAX_BATCH_SIZE: u32 = 10_000;
/// Well inside a delivery claim's lifetime (60 s).
const MAX_BATCH_WINDOW_MS: u32 = 10_000;

/// Headers the delivery writes itself.
pub const OWNED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "idempotency-key",
    "traceparent",
];

/// A change to one optional setting: left as it is, removed, or given a value.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

/// A write-only value as a request gives it: a new value, or the mask, which keeps the stored one.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOnly {
    Keep,
    Set(String),
}

impl WriteOnly {
    pub fn from_request(value: String) -> WriteOnly {
        if value == MASK {
            WriteOnly::Keep
        } else {
            WriteOnly::Set(value)
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsSpec {
    pub ca_bundle: Option<String>,
    pub client_certificate: Option<String>,
    pub client_key: Option<WriteOnly>,
}

/// Requested delivery options; on update, `None`/`Keep` leaves one as it is. A change of kind
/// resets what belongs to the old kind and was not given again (format, index, batching...).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptionsSpec {
    pub kind: Option<EndpointKind>,
    pub format: Option<PayloadFormat>,
    pub headers: Patch<Vec<(String, WriteOnly)>>,
    pub filter: Patch<DeliveryFilter>,
    pub ordering: Option<DeliveryOrdering>,
    pub tls: Patch<TlsSpec>,
    pub proxy: Patch<String>,
    pub token: Option<WriteOnly>,
    pub api_key: Option<WriteOnly>,
    pub index: Patch<String>,
    pub sourcetype: Patch<String>,
    pub source: Patch<String>,
    pub batch_size: Patch<u32>,
    pub batch_window_ms: Patch<u32>,
}

/// Write-only values to store (`Some`) or forget (`None`), by name.
pub type CredentialChanges = Vec<(String, Option<String>)>;

/// The options an endpoint will have and the write-only values that change with them.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub options: EndpointOptions,
    pub credentials: CredentialChanges,
}

/// Names of the write-only values an endpoint with `o` holds: one per header, the kind's
/// token or API key, the client key with a client certificate.
pub fn credential_names(o: &EndpointOptions) -> Vec<String> {
    let mut out: Vec<String> = o.headers.iter().map(|h| format!("headers.{h}")).collect();
    match o.kind {
        EndpointKind::SplunkHec => out.push("token".into()),
        EndpointKind::Elasticsearch => out.push("apiKey".into()),
        _ => {}
    }
    if o.tls
        .as_ref()
        .is_some_and(|t| t.client_certificate.is_some())
    {
        out.push("tls.clientKey".into());
    }
    out
}

/// Messages per request and the longest wait, in milliseconds, for a batch to fill, for the
/// kinds that batch.
pub fn batching(o: &EndpointOptions) -> Option<(u32, u32)> {
    o.kind.batches().then(|| {
        (
            o.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
            o.batch_window_ms.unwrap_or(DEFAULT_BATCH_WINDOW_MS),
        )
    })
}

/// The format a kind sends when none is named.
pub fn default_format(kind: EndpointKind) -> PayloadFormat {
    match kind {
        EndpointKind::Syslog => PayloadFormat::Cef,
        EndpointKind::Elasticsearch => PayloadFormat::Ecs,
        _ => PayloadFormat::Standard,
    }
}

fn formats_of(kind: EndpointKind) -> &'static [PayloadFormat] {
    use PayloadFormat::*;
    match kind {
        EndpointKind::Webhook | EndpointKind::SplunkHec => &[Standard, CloudEvents, Ocsf, Ecs],
        EndpointKind::Elasticsearch => &[Ecs],
        EndpointKind::Syslog => &[Cef, Standard, CloudEvents, Ocsf, Ecs],
        EndpointKind::Slack | EndpointKind::Teams => &[Standard],
    }
}

fn bad(field: &str, message: impl Into<String>) -> DomainError {
    DomainError::validation(field, message)
}

fn printable(field: &str, v: &str, max: usize) -> Result<String, DomainError> {
    let v = v.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(bad(
            field,
            format!("must be 1 to {max} printable characters"),
        ));
    }
    Ok(v.to_string())
}

fn header_name(name: &str, kind: EndpointKind) -> Result<(), DomainError> {
    let field = format!("headers.{name}");
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || name.len() > 100 || !name.bytes().all(token) {
        return Err(bad(&field, "is not a valid header name"));
    }
    let lower = name.to_ascii_lowercase();
    if OWNED_HEADERS.contains(&lower.as_str()) || lower.starts_with("webhook-") {
        return Err(bad(&field, "is set by the delivery itself"));
    }
    if lower == "authorization"
        && matches!(kind, EndpointKind::SplunkHec | EndpointKind::Elasticsearch)
    {
        return Err(bad(
            &field,
            "is set from the endpoint's token or apiKey for this kind",
        ));
    }
    Ok(())
}

fn header_value(name: &str, v: &str) -> Result<(), DomainError> {
    if v.is_empty()
        || v.len() > MAX_HEADER_VALUE
        || v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(bad(
            &format!("headers.{name}"),
            format!("must be 1 to {MAX_HEADER_VALUE} bytes without control characters"),
        ));
    }
    Ok(())
}

/// PEM certificates, at least one, each of which decodes.
fn certificates(field: &str, v: &str) -> Result<String, DomainError> {
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    let all: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(v.as_bytes()).collect();
    match all {
        Ok(certs) if !certs.is_empty() && v.len() <= MAX_PEM => Ok(v.trim().to_string() + "\n"),
        _ => Err(bad(
            field,
            format!(
                "must be PEM certificates (-----BEGIN CERTIFICATE-----), at most {MAX_PEM} bytes"
            ),
        )),
    }
}

/// One PEM private key (PKCS#8, PKCS#1 or SEC1) that decodes.
fn private_key(v: &str) -> Result<String, DomainError> {
    use rustls_pki_types::{pem::PemObject, PrivateKeyDer};
    if v.len() > MAX_PEM || PrivateKeyDer::from_pem_slice(v.as_bytes()).is_err() {
        return Err(bad(
            "tls.clientKey",
            "must be a PEM private key (PKCS#8, RSA or EC)",
        ));
    }
    Ok(v.trim().to_string() + "\n")
}

fn secret(field: &str, v: &str) -> Result<String, DomainError> {
    if v.is_empty() || v.len() > 1024 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            field,
            "must be 1 to 1024 printable characters without spaces",
        ));
    }
    Ok(v.to_string())
}

/// Elasticsearch's rules for index and data stream names.
fn es_index(v: &str) -> Result<String, DomainError> {
    let ok = !v.is_empty()
        && v.len() <= 255
        && v != "."
        && v != ".."
        && !v.starts_with(['-', '_', '+'])
        && v.chars().all(|c| {
            !c.is_ascii_uppercase()
                && !c.is_whitespace()
                && !matches!(
                    c,
                    '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ':'
                )
        });
    if !ok {
        return Err(bad(
            "index",
            "must be a valid Elasticsearch index name: lowercase, no spaces or \\/*?\"<>|,#:, not starting with -, _ or +",
        ));
    }
    Ok(v.to_string())
}

fn filter(f: &DeliveryFilter) -> Result<Option<DeliveryFilter>, DomainError> {
    if f.group_ids.len() > MAX_FILTER_ITEMS || f.tags.len() > MAX_FILTER_ITEMS {
        return Err(bad(
            "filter",
            format!("takes at most {MAX_FILTER_ITEMS} groupIds and {MAX_FILTER_ITEMS} tags"),
        ));
    }
    let mut out = DeliveryFilter {
        min_severity: f.min_severity,
        ..Default::default()
    };
    for g in &f.group_ids {
        let g = printable("filter.groupIds", g.as_str(), 100)?;
        if !out.group_ids.iter().any(|o| o.as_str() == g) {
            out.group_ids.push(g.into());
        }
    }
    for t in &f.tags {
        let t = printable("filter.tags", t, 64)?.to_lowercase();
        if !out.tags.contains(&t) {
            out.tags.push(t);
        }
    }
    Ok((out != DeliveryFilter::default()).then_some(out))
}

fn optional(
    p: &Patch<String>,
    current: &Option<String>,
    check: impl Fn(&str) -> Result<String, DomainError>,
) -> Result<Option<String>, DomainError> {
    Ok(match p {
        Patch::Keep => current.clone(),
        Patch::Clear => None,
        Patch::Set(v) => Some(check(v)?),
    })
}

fn number(
    p: &Patch<u32>,
    current: Option<u32>,
    field: &str,
    range: std::ops::RangeInclusive<u32>,
) -> Result<Option<u32>, DomainError> {
    Ok(match p {
        Patch::Keep => current,
        Patch::Clear => None,
        Patch::Set(n) if range.contains(n) => Some(*n),
        Patch::Set(_) => {
            return Err(bad(
                field,
                format!("must be {} to {}", range.start(), range.end()),
            ))
        }
    })
}

/// Apply `spec` to an endpoint that has `current` and will be at `url`; checks the result as a
/// whole for its kind (the url's scheme included).
pub fn resolve(
    current: &EndpointOptions,
    url: &str,
    spec: &OptionsSpec,
    allow_private: bool,
) -> Result<Resolved, DomainError> {
    let held = credential_names(current);
    let mut set: Vec<(String, String)> = vec![];
    let keep = |name: &str| -> Result<(), DomainError> {
        if held.iter().any(|h| h == name) {
            Ok(())
        } else {
            Err(bad(
                name,
                "the masked value keeps a stored value, and none is stored: give the value",
            ))
        }
    };
    let mut o = current.clone();
    let kind_changed = spec.kind.is_some_and(|k| k != current.kind);
    if let Some(k) = spec.kind {
        o.kind = k;
    }
    if kind_changed {
        // What belonged to the old kind goes unless given again.
        o.format = default_format(o.kind);
        o.index = None;
        o.sourcetype = None;
        o.source = None;
        o.batch_size = None;
        o.batch_window_ms = None;
        if o.kind == EndpointKind::Syslog {
            o.headers.clear();
            o.proxy = None;
        }
    }
    let kind = o.kind;
    if let Some(f) = spec.format {
        o.format = f;
    }
    if !formats_of(kind).contains(&o.format) {
        let names: Vec<&str> = formats_of(kind).iter().map(|f| f.as_str()).collect();
        return Err(bad(
            "format",
            format!(
                "a {kind} endpoint sends {}, not {}",
                names.join(" or "),
                o.format
            ),
        ));
    }
    if let Some(ord) = spec.ordering {
        o.ordering = ord;
    }
    match &spec.headers {
        Patch::Keep => {}
        Patch::Clear => o.headers.clear(),
        Patch::Set(list) => {
            if list.len() > MAX_HEADERS {
                return Err(bad("headers", format!("at most {MAX_HEADERS} headers")));
            }
            o.headers.clear();
            for (name, value) in list {
                if o.headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                    return Err(bad(&format!("headers.{name}"), "is given twice"));
                }
                let field = format!("headers.{name}");
                match value {
                    WriteOnly::Set(v) => {
                        header_value(name, v)?;
                        set.push((field, v.clone()));
                    }
                    WriteOnly::Keep => keep(&field)?,
                }
                o.headers.push(name.clone());
            }
        }
    }
    if !o.headers.is_empty() && kind == EndpointKind::Syslog {
        return Err(bad("headers", "a syslog endpoint takes no HTTP headers"));
    }
    for h in &o.headers {
        header_name(h, kind)?;
    }
    o.filter = match &spec.filter {
        Patch::Keep => o.filter,
        Patch::Clear => None,
        Patch::Set(f) => filter(f)?,
    };
    o.tls = match &spec.tls {
        Patch::Keep => o.tls,
        Patch::Clear => None,
        Patch::Set(t) => {
            let ca_bundle = t
                .ca_bundle
                .as_deref()
                .map(|v| certificates("tls.caBundle", v))
                .transpose()?;
            let client_certificate = t
                .client_certificate
                .as_deref()
                .map(|v| certificates("tls.clientCertificate", v))
                .transpose()?;
            match (&client_certificate, &t.client_key) {
                (Some(_), Some(WriteOnly::Set(k))) => {
                    set.push(("tls.clientKey".into(), private_key(k)?))
                }
                (Some(_), Some(WriteOnly::Keep) | None) => keep("tls.clientKey")
                    .map_err(|_| bad("tls.clientKey", "is required with a clientCertificate"))?,
                (None, Some(_)) => {
                    return Err(bad("tls.clientKey", "goes with a clientCertificate"))
                }
                (None, None) => {}
            }
            (ca_bundle.is_some() || client_certificate.is_some()).then_some(EndpointTls {
                ca_bundle,
                client_certificate,
            })
        }
    };
    o.proxy = optional(&spec.proxy, &o.proxy, |v| {
        Ok(validate_proxy_url(v, allow_private)?.to_string())
    })?;
    for (field, given, owner) in [
        ("token", &spec.token, EndpointKind::SplunkHec),
        ("apiKey", &spec.api_key, EndpointKind::Elasticsearch),
    ] {
        match given {
            Some(_) if kind != owner => {
                return Err(bad(field, format!("is for {owner} endpoints")))
            }
            Some(WriteOnly::Set(v)) => set.push((field.into(), secret(field, v)?)),
            Some(WriteOnly::Keep) => keep(field)?,
            None if kind == owner && !held.iter().any(|h| h == field) => {
                return Err(bad(field, format!("is required for {owner} endpoints")))
            }
            None => {}
        }
    }
    o.index = optional(&spec.index, &o.index, |v| match kind {
        EndpointKind::Elasticsearch => es_index(v),
        _ => printable("index", v, 255),
    })?;
    o.sourcetype = optional(&spec.sourcetype, &o.sourcetype, |v| {
        printable("sourcetype", v, 255)
    })?;
    o.source = optional(&spec.source, &o.source, |v| printable("source", v, 255))?;
    o.batch_size = number(
        &spec.batch_size,
        o.batch_size,
        "batchSize",
        1..=MAX_BATCH_SIZE,
    )?;
    o.batch_window_ms = number(
        &spec.batch_window_ms,
        o.batch_window_ms,
        "batchWindow",
        0..=MAX_BATCH_WINDOW_MS,
    )?;
    let only = |given: bool, field: &str, ok: bool, which: &str| {
        if given && !ok {
            Err(bad(field, format!("is for {which} endpoints")))
        } else {
            Ok(())
        }
    };
    let splunk_or_es = matches!(kind, EndpointKind::SplunkHec | EndpointKind::Elasticsearch);
    only(
        o.index.is_some(),
        "index",
        splunk_or_es,
        "splunk-hec and elasticsearch",
    )?;
    only(
        o.sourcetype.is_some(),
        "sourcetype",
        kind == EndpointKind::SplunkHec,
        "splunk-hec",
    )?;
    only(
        o.source.is_some(),
        "source",
        kind == EndpointKind::SplunkHec,
        "splunk-hec",
    )?;
    let batching = "splunk-hec, elasticsearch and syslog";
    only(
        o.batch_size.is_some(),
        "batchSize",
        kind.batches(),
        batching,
    )?;
    only(
        o.batch_window_ms.is_some(),
        "batchWindow",
        kind.batches(),
        batching,
    )?;
    only(
        o.proxy.is_some(),
        "proxy",
        kind != EndpointKind::Syslog,
        "HTTP",
    )?;
    if kind == EndpointKind::Elasticsearch && o.index.is_none() {
        return Err(bad("index", "is required for elasticsearch endpoints"));
    }
    let u = validate_endpoint_url(url, kind, allow_private)?;
    if o.tls.is_some() && kind == EndpointKind::Syslog && u.scheme() != "tls" {
        return Err(bad("tls", "needs a tls:// url"));
    }
    let now = credential_names(&o);
    let mut credentials: CredentialChanges = held
        .into_iter()
        .filter(|h| !now.contains(h))
        .map(|h| (h, None))
        .collect();
    credentials.extend(set.into_iter().map(|(k, v)| (k, Some(v))));
    Ok(Resolved {
        options: o,
        credentials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
    const HTTPS: &str = "https://siem.example.com/in";

    fn names(c: &CredentialChanges) -> Vec<(&str, bool)> {
        c.iter().map(|(n, v)| (n.as_str(), v.is_some())).collect()
    }

    #[test]
    fn headers_keep_their_masked_values_and_refuse_what_delivery_owns() {
        let spec = OptionsSpec {
            headers: Patch::Set(vec![("X-Tenant".into(), WriteOnly::Set("acme".into()))]),
            ..Default::default()
        };
        let r = resolve(&EndpointOptions::default(), HTTPS, &spec, false).unwrap();
        assert_eq!(r.options.headers, ["X-Tenant"]);
        assert_eq!(names(&r.credentials), [("headers.X-Tenant", true)]);
        let again = OptionsSpec {
            headers: Patch::Set(vec![
                ("X-Tenant".into(), WriteOnly::from_request(MASK.into())),
                ("Authorization".into(), WriteOnly::Set("Splunk t".into())),
            ]),
            ..Default::default()
        };
        let r2 = resolve(&r.options, HTTPS, &again, false).unwrap();
        assert_eq!(names(&r2.credentials), [("headers.Authorization", true)]);
        let unknown_mask = OptionsSpec {
            headers: Patch::Set(vec![("X-New".into(), WriteOnly::Keep)]),
            ..Default::default()
        };
        assert!(resolve(&r.options, HTTPS, &unknown_mask, false).is_err());
        let dropped = resolve(
            &r2.options,
            HTTPS,
            &OptionsSpec {
                headers: Patch::Clear,
                ..Default::default()
            },
            false,
        )
        .unwrap();
        assert_eq!(
            names(&dropped.credentials),
            [
                ("headers.X-Tenant", false),
                ("headers.Authorization", false)
            ]
        );
        for owned in [
            "Host",
            "content-length",
            "Content-Type",
            "webhook-signature",
            "Webhook-Id",
            "TraceParent",
        ] {
            let s = OptionsSpec {
                headers: Patch::Set(vec![(owned.into(), WriteOnly::Set("x".into()))]),
                ..Default::default()
            };
            assert!(
                resolve(&EndpointOptions::default(), HTTPS, &s, false).is_err(),
                "{owned}"
            );
        }
        let injected = OptionsSpec {
            headers: Patch::Set(vec![("X-A".into(), WriteOnly::Set("a\r\nX-B: b".into()))]),
            ..Default::default()
        };
        assert!(resolve(&EndpointOptions::default(), HTTPS, &injected, false).is_err());
    }

    #[test]
    fn each_kind_needs_its_own_settings_and_formats() {
        let splunk = OptionsSpec {
            kind: Some(EndpointKind::SplunkHec),
            ..Default::default()
        };
        assert!(
            resolve(&EndpointOptions::default(), HTTPS, &splunk, false).is_err(),
            "token"
        );
        let splunk = OptionsSpec {
            token: Some(WriteOnly::Set("abc-123".into())),
            index: Patch::Set("main".into()),
            batch_size: Patch::Set(500),
            ..splunk
        };
        let r = resolve(&EndpointOptions::default(), HTTPS, &splunk, false).unwrap();
        assert_eq!(names(&r.credentials), [("token", true)]);
        assert_eq!(r.options.batch_size, Some(500));
        let es = OptionsSpec {
            kind: Some(EndpointKind::Elasticsearch),
            api_key: Some(WriteOnly::Set("k".into())),
            index: Patch::Set("Bad Index".into()),
            ..Default::default()
        };
        assert!(resolve(&r.options, HTTPS, &es, false).is_err());
        let es = OptionsSpec {
            index: Patch::Set("easm-events".into()),
            ..es
        };
        let r2 = resolve(&r.options, HTTPS, &es, false).unwrap();
        assert_eq!(r2.options.format, PayloadFormat::Ecs);
        assert_eq!(r2.options.batch_size, None, "reset with the kind");
        assert_eq!(names(&r2.credentials), [("token", false), ("apiKey", true)]);
        let cef_webhook = OptionsSpec {
            format: Some(PayloadFormat::Cef),
            ..Default::default()
        };
        assert!(resolve(&EndpointOptions::default(), HTTPS, &cef_webhook, false).is_err());
        let syslog = OptionsSpec {
            kind: Some(EndpointKind::Syslog),
            ..Default::default()
        };
        assert!(
            resolve(&EndpointOptions::default(), HTTPS, &syslog, false).is_err(),
            "url"
        );
        let s = resolve(
            &EndpointOptions::default(),
            "tcp://siem.example.com:514",
            &syslog,
            false,
        )
        .unwrap();
        assert_eq!(s.options.format, PayloadFormat::Cef);
        let batch_on_webhook = OptionsSpec {
            batch_size: Patch::Set(10),
            ..Default::default()
        };
        assert!(resolve(&EndpointOptions::default(), HTTPS, &batch_on_webhook, false).is_err());
    }

    #[test]
    fn a_client_certificate_comes_with_its_key() {
        let without = OptionsSpec {
            tls: Patch::Set(TlsSpec {
                client_certificate: Some(CERT.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(resolve(&EndpointOptions::default(), HTTPS, &without, false).is_err());
        let with = OptionsSpec {
            tls: Patch::Set(TlsSpec {
                ca_bundle: Some(CERT.into()),
                client_certificate: Some(CERT.into()),
                client_key: Some(WriteOnly::Set(KEY.into())),
            }),
            ..Default::default()
        };
        let r = resolve(&EndpointOptions::default(), HTTPS, &with, false).unwrap();
        assert_eq!(names(&r.credentials), [("tls.clientKey", true)]);
        // Sent back as read (key masked), nothing changes.
        let back = OptionsSpec {
            tls: Patch::Set(TlsSpec {
                client_key: Some(WriteOnly::Keep),
                ..match &with.tls {
                    Patch::Set(t) => t.clone(),
                    _ => unreachable!(),
                }
            }),
            ..Default::default()
        };
        let r2 = resolve(&r.options, HTTPS, &back, false).unwrap();
        assert!(r2.credentials.is_empty());
        assert_eq!(r2.options, r.options);
        let not_pem = OptionsSpec {
            tls: Patch::Set(TlsSpec {
                ca_bundle: Some("hello".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(resolve(&EndpointOptions::default(), HTTPS, &not_pem, false).is_err());
    }

    #[test]
    fn filters_are_normalised_and_an_empty_one_is_none() {
        let spec = OptionsSpec {
            filter: Patch::Set(DeliveryFilter {
                min_severity: Some(easm_events::Severity::High),
                group_ids: vec!["g1".into(), "g1".into()],
                tags: vec![" Prod ".into()],
            }),
            ..Default::default()
        };
        let r = resolve(&EndpointOptions::default(), HTTPS, &spec, false).unwrap();
        let f = r.options.filter.unwrap();
        assert_eq!(f.group_ids.len(), 1);
        assert_eq!(f.tags, ["prod"]);
        let empty = OptionsSpec {
            filter: Patch::Set(DeliveryFilter::default()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&EndpointOptions::default(), HTTPS, &empty, false)
                .unwrap()
                .options
                .filter,
            None
        );
    }
}
