//! TLS: a handshake that accepts any certificate so it can be examined (expiry, self-signed or
//! untrusted chain, host name), and raw ClientHellos for TLS 1.0 and 1.1, which rustls cannot
//! speak, to learn whether the server still accepts them.

use crate::templates::{
    TLS_DEPRECATED, TLS_EXPIRED, TLS_EXPIRING, TLS_MISMATCH, TLS_SELF_SIGNED, TLS_UNTRUSTED,
};
use easm_events::Detection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

const EXPIRING_DAYS: i64 = 30;

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn public_roots() -> Arc<WebPkiServerVerifier> {
    static ROOTS: OnceLock<Arc<WebPkiServerVerifier>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .expect("the public roots make a verifier")
        })
        .clone()
}

/// Accepts every chain (the scanner judges it afterwards) and keeps it; signatures of the
/// handshake itself are still checked.
#[derive(Debug)]
struct Keep {
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Keep {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.chain.lock().expect("chain") = chain;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(ServerName::IpAddress(ip.into())),
        Err(_) => ServerName::try_from(host.to_string()).map_err(|e| e.to_string()),
    }
}

/// A TLS connection (TLS 1.2 or 1.3) whatever the certificate, and the chain the server sent.
pub async fn connect(
    addr: SocketAddr,
    host: &str,
    timeout: Duration,
) -> Result<(TlsStream<TcpStream>, Vec<CertificateDer<'static>>), String> {
    let keep = Arc::new(Keep {
        chain: Mutex::default(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(keep.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = server_name(host)?;
    let stream = tokio::time::timeout(timeout, async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| "TLS handshake timed out".to_string())??;
    let chain = std::mem::take(&mut *keep.chain.lock().expect("chain"));
    Ok((stream, chain))
}

/// What the handshake showed, for the asset's health view.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    pub version: String,
    pub subject: String,
    pub issuer: String,
    pub not_after: String,
}

fn when(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Whether `host` is one of the certificate's names (one leading wildcard label allowed).
fn names_match(host: &str, dns: &[String], ips: &[IpAddr]) -> bool {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ips.contains(&ip);
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    dns.iter().any(|n| {
        let n = n.trim_end_matches('.').to_ascii_lowercase();
        match n.strip_prefix("*.") {
            Some(base) => host
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest == base),
            None => n == host,
        }
    })
}

/// The DNS names and addresses a certificate is for: its subject alternative names, else its
/// common names.
fn cert_names(cert: &X509Certificate<'_>) -> (Vec<String>, Vec<IpAddr>) {
    let (mut dns, mut ips) = (vec![], vec![]);
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => dns.push(n.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).expect("4 bytes"))),
                    16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).expect("16 bytes"))),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    if dns.is_empty() && ips.is_empty() {
        dns.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_string)),
        );
    }
    (dns, ips)
}

/// The DNS names of the certificate the TLS service on `addr` presents for `host`.
pub async fn certificate_names(
    addr: SocketAddr,
    host: &str,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let (_, chain) = connect(addr, host, timeout).await?;
    let leaf = chain.first().ok_or("no certificate")?;
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| e.to_string())?;
    Ok(cert_names(&cert).0)
}

/// Examine the TLS service on `addr`: None when it does not speak TLS.
pub async fn inspect(
    addr: SocketAddr,
    host: &str,
    matched_at: &str,
    timeout: Duration,
    legacy: bool,
) -> Option<(TlsInfo, Vec<Detection>)> {
    let (stream, chain) = match connect(addr, host, timeout).await {
        Ok(c) => c,
        // A server that speaks only TLS 1.0 or 1.1 refuses a modern handshake with an alert.
        Err(e) if e.contains("alert") => {
            return legacy_only(addr, host, matched_at, timeout, legacy).await
        }
        Err(_) => return None,
    };
    let version = stream
        .get_ref()
        .1
        .protocol_version()
        .and_then(|v| v.as_str())
        .unwrap_or("TLS")
        .to_string();
    drop(stream);
    let mut found = vec![];
    let leaf = chain.first()?;
    let Ok((_, cert)) = X509Certificate::from_der(leaf) else {
        return Some((
            TlsInfo {
                version,
                ..TlsInfo::default()
            },
            found,
        ));
    };
    let subject = cert.subject().to_string();
    let issuer = cert.issuer().to_string();
    let (not_before, not_after) = (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    );
    let (dns, ips) = cert_names(&cert);
    let names: Vec<String> = dns
        .iter()
        .cloned()
        .chain(ips.iter().map(IpAddr::to_string))
        .collect();
    let evidence = format!(
        "subject: {subject}\nissuer: {issuer}\nnotBefore: {}\nnotAfter: {}\nserial: {}\nnames: {}\nprotocol: {version}",
        when(not_before),
        when(not_after),
        cert.raw_serial_as_string(),
        names.join(", ")
    );
    let now = chrono::Utc::now().timestamp();
    if not_after < now {
        found.push(TLS_EXPIRED.detect(matched_at, "", evidence.clone()));
    } else if not_after < now + EXPIRING_DAYS * 86_400 {
        found.push(TLS_EXPIRING.detect(matched_at, "", evidence.clone()));
    }
    found.extend(trust(&cert, &chain, host, matched_at, &evidence));
    if !names_match(host, &dns, &ips) {
        let why = format!("{evidence}\nscanned host: {host}");
        found.push(TLS_MISMATCH.detect(matched_at, "", why));
    }
    if legacy {
        found.extend(deprecated_versions(addr, host, matched_at, timeout).await);
    }
    let info = TlsInfo {
        version,
        subject,
        issuer,
        not_after: when(not_after),
    };
    Some((info, found))
}

/// A self-signed certificate, or a chain the public roots do not vouch for (its dates and names
/// are checked on their own).
fn trust(
    cert: &X509Certificate<'_>,
    chain: &[CertificateDer<'static>],
    host: &str,
    matched_at: &str,
    evidence: &str,
) -> Option<Detection> {
    let self_signed = chain.len() == 1 && cert.subject().as_raw() == cert.issuer().as_raw();
    if self_signed {
        return Some(TLS_SELF_SIGNED.detect(matched_at, "", evidence.to_string()));
    }
    let name = server_name(host).ok()?;
    let verdict =
        public_roots().verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now());
    match verdict {
        Err(rustls::Error::InvalidCertificate(e)) if !time_or_name(&e) => {
            let why = format!("{evidence}\nverification: {e:?}");
            Some(TLS_UNTRUSTED.detect(matched_at, "", why))
        }
        _ => None,
    }
}

async fn deprecated_versions(
    addr: SocketAddr,
    host: &str,
    matched_at: &str,
    timeout: Duration,
) -> Vec<Detection> {
    let mut found = vec![];
    for (v, label) in [(0x0301u16, "tls1.0"), (0x0302, "tls1.1")] {
        if accepts_legacy(addr, host, v, timeout).await {
            let seen =
                format!("the server answered a {label} ClientHello with a {label} ServerHello");
            found.push(TLS_DEPRECATED.detect(matched_at, label, seen));
        }
    }
    found
}

async fn legacy_only(
    addr: SocketAddr,
    host: &str,
    matched_at: &str,
    timeout: Duration,
    legacy: bool,
) -> Option<(TlsInfo, Vec<Detection>)> {
    if !legacy {
        return None;
    }
    let found = deprecated_versions(addr, host, matched_at, timeout).await;
    let version = found
        .first()?
        .matcher_name
        .to_uppercase()
        .replace("TLS", "TLSv");
    let info = TlsInfo {
        version,
        ..TlsInfo::default()
    };
    Some((info, found))
}

/// Expiry and names are reported by their own templates, not as an untrusted chain.
fn time_or_name(e: &CertificateError) -> bool {
    use CertificateError::*;
    matches!(
        e,
        Expired
            | ExpiredContext { .. }
            | NotValidYet
            | NotValidYetContext { .. }
            | NotValidForName
            | NotValidForNameContext { .. }
    )
}

/// A ClientHello offering only `version` (0x0301 TLS 1.0, 0x0302 TLS 1.1) with the CBC suites
/// servers of that era accept.
fn legacy_hello(version: u16, host: &str) -> Vec<u8> {
    let suites: [u16; 10] = [
        0xc014, 0xc013, 0xc00a, 0xc009, 0x0039, 0x0033, 0x0035, 0x002f, 0x000a, 0x00ff,
    ];
    let mut ext = vec![];
    if host.parse::<IpAddr>().is_err() {
        let name = host.as_bytes();
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
    }
    // supported groups: x25519, secp256r1, secp384r1; point formats: uncompressed
    ext.extend_from_slice(&[0, 10, 0, 8, 0, 6, 0, 29, 0, 23, 0, 24]);
    ext.extend_from_slice(&[0, 11, 0, 2, 1, 0]);
    let mut body = vec![];
    body.extend_from_slice(&version.to_be_bytes());
    body.extend((0..32).map(|_| rand::random::<u8>()));
    body.push(0); // no session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// Whether the server answers a `version` ClientHello with a ServerHello of that version.
pub async fn accepts_legacy(addr: SocketAddr, host: &str, version: u16, timeout: Duration) -> bool {
    let attempt = async {
        let mut tcp = TcpStream::connect(addr).await.ok()?;
        tcp.write_all(&legacy_hello(version, host)).await.ok()?;
        let mut head = [0u8; 11];
        tcp.read_exact(&mut head).await.ok()?;
        // record: handshake; message: ServerHello; its version
        Some(head[0] == 0x16 && head[5] == 2 && u16::from_be_bytes([head[9], head[10]]) == version)
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly_or_by_one_wildcard_label() {
        let dns = vec!["*.example.com".to_string(), "example.org".to_string()];
        assert!(names_match("www.example.com", &dns, &[]));
        assert!(names_match("EXAMPLE.org.", &dns, &[]));
        assert!(!names_match("example.com", &dns, &[]));
        assert!(!names_match("a.b.example.com", &dns, &[]));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(names_match("127.0.0.1", &[], &[ip]));
        assert!(!names_match("127.0.0.2", &dns, &[ip]));
    }

    #[test]
    fn the_legacy_hello_is_a_well_formed_record() {
        let hello = legacy_hello(0x0301, "example.com");
        assert_eq!(&hello[..3], &[0x16, 3, 1]);
        assert_eq!(
            u16::from_be_bytes([hello[3], hello[4]]) as usize,
            hello.len() - 5
        );
        assert_eq!(hello[5], 1);
        assert_eq!(&hello[9..11], &[3, 1]);
    }
}
