//! Syslog over TCP or TLS: RFC 5424 messages (queued already) framed by octet counting (RFC 6587,
//! as RFC 5425 has it for TLS), written a batch at a time over one connection per endpoint,
//! kept open and made again when it broke. TCP acknowledges nothing, so a message counts as
//! delivered once written; a connection the receiver closed is noticed before the next write.

use super::{Answer, ItemVerdict};
use crate::schedule::Outcome;
use crate::sender::{Route, Sent, CONNECT_TIMEOUT, TOTAL_TIMEOUT};
use easm_domain::is_forbidden_address;
use easm_events::WebhookId;
use futures_util::FutureExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open connection and what it was opened for.
struct Conn {
    to: String,
    route: u64,
    io: Box<dyn Io>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Conn>>>;

/// The connections of this process, one per syslog endpoint.
#[derive(Clone)]
pub struct Syslog {
    allow_private: bool,
    conns: Arc<Mutex<HashMap<WebhookId, Slot>>>,
}

/// Octet-counting frames: `<length> <message>` each.
pub fn frames(messages: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(format!("{} ", m.len()).as_bytes());
        out.extend_from_slice(m.as_bytes());
    }
    out
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn tls_config(route: &Route) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(ca) = &route.ca_bundle {
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            let cert = cert.map_err(|e| format!("tls.caBundle: {e}"))?;
            roots.add(cert).map_err(|e| format!("tls.caBundle: {e}"))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match (&route.client_certificate, &route.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("tls.clientCertificate: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| format!("tls.clientKey: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

impl Syslog {
    pub fn new(allow_private: bool) -> Self {
        Syslog {
            allow_private,
            conns: Arc::default(),
        }
    }

    /// `tcp://host:port` or `tls://host:port` to a connection, the address checked first.
    async fn connect(&self, url: &str, route: &Route) -> Result<Box<dyn Io>, (Outcome, String)> {
        let refused = |e: String| (Outcome::Refused, format!("refused: {e}"));
        let transport = |e: String| (Outcome::Transport, e);
        let u = url::Url::parse(url).map_err(|e| refused(e.to_string()))?;
        let host = u
            .host_str()
            .ok_or_else(|| refused("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = u.port().ok_or_else(|| refused("no port".into()))?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| transport(format!("cannot resolve {host}: {e}")))?
            .filter(|a| self.allow_private || !is_forbidden_address(a.ip()))
            .collect();
        if addrs.is_empty() {
            return Err(refused(format!(
                "{host} resolves only to addresses that are not public"
            )));
        }
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addrs[..]))
            .await
            .map_err(|_| {
                transport(format!(
                    "could not connect: timed out ({CONNECT_TIMEOUT:?})"
                ))
            })?
            .map_err(|e| transport(format!("could not connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        if u.scheme() != "tls" {
            return Ok(Box::new(tcp));
        }
        let config = tls_config(route).map_err(refused)?;
        let name = ServerName::try_from(host.clone()).map_err(|e| refused(e.to_string()))?;
        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
        )
        .await
        .map_err(|_| transport("TLS handshake timed out".into()))?
        .map_err(|e| transport(format!("TLS handshake failed: {e}")))?;
        Ok(Box::new(tls))
    }

    /// Write `messages` to endpoint `id` at `url`, connecting first if needed.
    pub async fn send(
        &self,
        id: &WebhookId,
        url: &str,
        route: &Route,
        messages: &[&str],
    ) -> Answer {
        let started = Instant::now();
        let slot: Slot = self
            .conns
            .lock()
            .expect("syslog connections")
            .entry(id.clone())
            .or_default()
            .clone();
        let mut conn = slot.lock().await;
        let key = route.key();
        if conn.as_ref().is_some_and(|c| c.to != url || c.route != key) {
            *conn = None;
        }
        // The receiver sends nothing: readable means it closed (or broke) the connection.
        if let Some(c) = conn.as_mut() {
            let mut probe = [0u8; 64];
            if let Some(Ok(0) | Err(_)) = c.io.read(&mut probe).now_or_never() {
                *conn = None;
            }
        }
        let failed = |outcome: Outcome, error: String| {
            let verdict = crate::classify(&outcome);
            Answer {
                sent: Sent {
                    outcome,
                    duration: started.elapsed(),
                    error: Some(error),
                    ..Default::default()
                },
                items: vec![ItemVerdict::of(verdict, None); messages.len()],
                disable: None,
            }
        };
        if conn.is_none() {
            match self.connect(url, route).await {
                Ok(io) => {
                    *conn = Some(Conn {
                        to: url.to_string(),
                        route: key,
                        io,
                    })
                }
                Err((outcome, e)) => return failed(outcome, e),
            }
        }
        let c = conn.as_mut().expect("connected above");
        let data = frames(messages);
        let written = tokio::time::timeout(TOTAL_TIMEOUT, async {
            c.io.write_all(&data).await?;
            c.io.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Answer {
                sent: Sent {
                    outcome: Outcome::Transport,
                    duration: started.elapsed(),
                    response: Some(format!(
                        "{} messages, {} bytes written",
                        messages.len(),
                        data.len()
                    )),
                    ..Default::default()
                },
                items: vec![ItemVerdict::delivered(); messages.len()],
                disable: None,
            },
            Ok(Err(e)) => {
                *conn = None;
                failed(Outcome::Transport, format!("write failed: {e}"))
            }
            Err(_) => {
                *conn = None;
                failed(
                    Outcome::Transport,
                    format!("write timed out ({TOTAL_TIMEOUT:?})"),
                )
            }
        }
    }

    /// Forget the connection of an endpoint (deleted, disabled, moved).
    pub fn close(&self, id: &WebhookId) {
        self.conns.lock().expect("syslog connections").remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_count_octets() {
        assert_eq!(frames(&["<134>1 a", "é"]), b"8 <134>1 a2 \xc3\xa9".to_vec());
    }
}
