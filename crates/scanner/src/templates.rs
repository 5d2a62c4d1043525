//! The findings the built-in scanner reports: what each means and how to fix it. Template ids are
//! part of the public contract (clients filter and suppress by them).

use easm_events::Detection;

pub struct Template {
    pub id: &'static str,
    pub title: &'static str,
    pub severity: &'static str,
    pub category: &'static str,
    pub description: &'static str,
    pub remediation: &'static str,
    pub references: &'static [&'static str],
    pub cwe: Option<&'static str>,
    pub cvss: Option<f64>,
}

impl Template {
    /// A detection of this template at `matched_at`, with what was seen.
    pub fn detect(&self, matched_at: &str, matcher: &str, evidence: String) -> Detection {
        Detection {
            template_id: self.id.into(),
            title: self.title.into(),
            severity: self.severity.into(),
            category: self.category.into(),
            description: self.description.into(),
            evidence,
            remediation: self.remediation.into(),
            references: self.references.iter().map(|r| r.to_string()).collect(),
            cve: None,
            cwe: self.cwe.map(str::to_string),
            cvss_score: self.cvss,
            matched_at: matched_at.into(),
            matcher_name: matcher.into(),
            source: "easm".into(),
        }
    }
}

const MOZ_HEADERS: &str = "https://developer.mozilla.org/en-US/docs/Web/HTTP/Headers";

pub const TLS_EXPIRED: Template = Template {
    id: "tls.expired-cert",
    title: "Expired TLS certificate",
    severity: "high",
    category: "tls",
    description: "The certificate served on this port is past its notAfter date; clients refuse the connection or users learn to click through warnings.",
    remediation: "Renew the certificate and automate renewal (for example with ACME).",
    references: &["https://www.rfc-editor.org/rfc/rfc5280#section-4.1.2.5"],
    cwe: Some("CWE-298"),
    cvss: None,
};

pub const TLS_EXPIRING: Template = Template {
    id: "tls.expiring-cert",
    title: "TLS certificate expires within 30 days",
    severity: "medium",
    category: "tls",
    description: "The certificate served on this port expires within 30 days.",
    remediation: "Renew the certificate before it expires and automate renewal.",
    references: &["https://www.rfc-editor.org/rfc/rfc5280#section-4.1.2.5"],
    cwe: Some("CWE-298"),
    cvss: None,
};

pub const TLS_SELF_SIGNED: Template = Template {
    id: "tls.self-signed-cert",
    title: "Self-signed TLS certificate",
    severity: "medium",
    category: "tls",
    description: "The certificate is signed by its own key; clients cannot authenticate the server, which invites man-in-the-middle attacks.",
    remediation: "Serve a certificate issued by a publicly trusted certificate authority.",
    references: &["https://cwe.mitre.org/data/definitions/295.html"],
    cwe: Some("CWE-295"),
    cvss: None,
};

pub const TLS_UNTRUSTED: Template = Template {
    id: "tls.untrusted-chain",
    title: "Untrusted TLS certificate chain",
    severity: "medium",
    category: "tls",
    description: "The certificate chain does not lead to a publicly trusted root (unknown issuer, missing intermediate or bad signature).",
    remediation: "Serve the full chain of a certificate issued by a publicly trusted authority.",
    references: &["https://cwe.mitre.org/data/definitions/295.html"],
    cwe: Some("CWE-295"),
    cvss: None,
};

pub const TLS_MISMATCH: Template = Template {
    id: "tls.hostname-mismatch",
    title: "TLS certificate does not match the host name",
    severity: "medium",
    category: "tls",
    description: "None of the certificate's names (subjectAltName, or the common name when it has none) matches the scanned host.",
    remediation: "Serve a certificate that names this host.",
    references: &["https://www.rfc-editor.org/rfc/rfc6125"],
    cwe: Some("CWE-297"),
    cvss: None,
};

pub const TLS_DEPRECATED: Template = Template {
    id: "tls.deprecated-protocol",
    title: "Deprecated TLS protocol version accepted",
    severity: "medium",
    category: "tls",
    description: "The server completes a handshake with TLS 1.0 or 1.1, deprecated by RFC 8996 for weak cryptography.",
    remediation: "Accept TLS 1.2 and 1.3 only.",
    references: &["https://www.rfc-editor.org/rfc/rfc8996"],
    cwe: Some("CWE-327"),
    cvss: None,
};

pub const HTTP_NO_HSTS: Template = Template {
    id: "http.missing-hsts",
    title: "Missing Strict-Transport-Security header",
    severity: "low",
    category: "http",
    description: "The HTTPS response has no Strict-Transport-Security header, so browsers may still reach the site over plain HTTP.",
    remediation: "Send `Strict-Transport-Security: max-age=31536000; includeSubDomains` on HTTPS responses.",
    references: &[MOZ_HEADERS],
    cwe: Some("CWE-319"),
    cvss: None,
};

pub const HTTP_NO_CSP: Template = Template {
    id: "http.missing-csp",
    title: "Missing Content-Security-Policy header",
    severity: "low",
    category: "http",
    description: "The response has no Content-Security-Policy header, which limits the damage of cross-site scripting.",
    remediation: "Send a Content-Security-Policy suited to the application.",
    references: &[MOZ_HEADERS],
    cwe: Some("CWE-693"),
    cvss: None,
};

pub const HTTP_NO_XFO: Template = Template {
    id: "http.missing-x-frame-options",
    title: "Missing X-Frame-Options header",
    severity: "low",
    category: "http",
    description: "The response has neither X-Frame-Options nor a CSP frame-ancestors directive; the page can be framed for clickjacking.",
    remediation: "Send `X-Frame-Options: DENY` (or SAMEORIGIN), or CSP `frame-ancestors`.",
    references: &[MOZ_HEADERS],
    cwe: Some("CWE-1021"),
    cvss: None,
};

pub const HTTP_NO_XCTO: Template = Template {
    id: "http.missing-x-content-type-options",
    title: "Missing X-Content-Type-Options header",
    severity: "info",
    category: "http",
    description: "The response has no `X-Content-Type-Options: nosniff`; browsers may sniff content into an executable type.",
    remediation: "Send `X-Content-Type-Options: nosniff`.",
    references: &[MOZ_HEADERS],
    cwe: Some("CWE-693"),
    cvss: None,
};

pub const HTTP_VERSION: Template = Template {
    id: "http.server-version-disclosure",
    title: "Server software version disclosed",
    severity: "low",
    category: "http",
    description: "A response header names the server software and its version, which helps attackers pick known exploits.",
    remediation: "Remove version numbers from Server and X-Powered-By headers.",
    references: &["https://cwe.mitre.org/data/definitions/200.html"],
    cwe: Some("CWE-200"),
    cvss: None,
};

pub const HTTP_GIT: Template = Template {
    id: "http.exposed-git",
    title: "Exposed Git repository",
    severity: "high",
    category: "http",
    description: "`/.git/HEAD` is served: the repository (source code, history, often secrets) can be downloaded.",
    remediation: "Remove the .git directory from the web root or deny access to it.",
    references: &["https://cwe.mitre.org/data/definitions/538.html"],
    cwe: Some("CWE-538"),
    cvss: Some(7.5),
};

pub const HTTP_ENV: Template = Template {
    id: "http.exposed-env",
    title: "Exposed environment file",
    severity: "high",
    category: "http",
    description: "`/.env` is served and holds configuration variables, often credentials and API keys.",
    remediation: "Remove the file from the web root, deny access to dotfiles, and rotate every secret it held.",
    references: &["https://cwe.mitre.org/data/definitions/538.html"],
    cwe: Some("CWE-538"),
    cvss: Some(7.5),
};

pub const HTTP_LISTING: Template = Template {
    id: "http.directory-listing",
    title: "Directory listing enabled",
    severity: "medium",
    category: "http",
    description: "The server lists the files of a directory, exposing files that were never meant to be linked.",
    remediation: "Disable automatic directory indexes.",
    references: &["https://cwe.mitre.org/data/definitions/548.html"],
    cwe: Some("CWE-548"),
    cvss: Some(5.3),
};

pub const REDIS_OPEN: Template = Template {
    id: "service.redis-unauthenticated",
    title: "Redis without authentication",
    severity: "critical",
    category: "service",
    description: "The Redis server answers commands without authentication: anyone can read and change its data and often run code on the host.",
    remediation: "Require a password or ACL users (`requirepass`), bind to private interfaces, and firewall the port.",
    references: &["https://redis.io/docs/latest/operate/oss_and_stack/management/security/"],
    cwe: Some("CWE-306"),
    cvss: Some(9.8),
};

pub const MEMCACHED_OPEN: Template = Template {
    id: "service.memcached-unauthenticated",
    title: "Memcached without authentication",
    severity: "high",
    category: "service",
    description: "The Memcached server answers commands without authentication: cached data can be read and changed, and the port can amplify DDoS attacks.",
    remediation: "Enable SASL authentication, bind to private interfaces, and firewall the port.",
    references: &["https://github.com/memcached/memcached/wiki/SASLHowto"],
    cwe: Some("CWE-306"),
    cvss: Some(7.5),
};

pub const ELASTIC_OPEN: Template = Template {
    id: "service.elasticsearch-unauthenticated",
    title: "Elasticsearch without authentication",
    severity: "critical",
    category: "service",
    description: "The Elasticsearch HTTP API answers without authentication: every index can be read, changed or deleted.",
    remediation: "Enable security (`xpack.security.enabled: true`), bind to private interfaces, and firewall the port.",
    references: &["https://www.elastic.co/guide/en/elasticsearch/reference/current/security-minimal-setup.html"],
    cwe: Some("CWE-306"),
    cvss: Some(9.8),
};

pub const MONGO_OPEN: Template = Template {
    id: "service.mongodb-unauthenticated",
    title: "MongoDB without authentication",
    severity: "critical",
    category: "service",
    description: "The MongoDB server lists its databases without authentication: every collection can be read, changed or dropped.",
    remediation: "Enable access control (`security.authorization: enabled`), bind to private interfaces, and firewall the port.",
    references: &["https://www.mongodb.com/docs/manual/administration/security-checklist/"],
    cwe: Some("CWE-306"),
    cvss: Some(9.8),
};
