//! Real servers on 127.0.0.1 for the scanner to find: HTTP and HTTPS with certificates made by
//! the test, services that speak just enough Memcached, MongoDB or Elasticsearch, a server too
//! slow to finish a scan quickly, and a DNS server. Each stops when dropped.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct Target {
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A certificate and its key, made by the test.
pub struct Cert {
    /// The certificate first, then the chain the server sends with it.
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
    pub pem: String,
    pub key_pem: String,
}

/// A self-signed certificate for `names`, valid between the two dates (year, month, day).
pub fn cert(names: &[&str], from: (i32, u8, u8), until: (i32, u8, u8)) -> Cert {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let key = rcgen::KeyPair::generate().unwrap();
    let c = params.self_signed(&key).unwrap();
    Cert {
        chain: vec![c.der().clone()],
        key_der: key.serialize_der(),
        pem: c.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A certificate for `names` valid until `until`, issued by a CA of the test's own (sent along).
pub fn issued_cert(names: &[&str], until: (i32, u8, u8)) -> Cert {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "easm test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
    Cert {
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key_der: key.serialize_der(),
        pem: leaf.pem(),
        key_pem: key.serialize_pem(),
    }
}

pub type Page = (u16, Vec<(&'static str, String)>, String);
pub type Handler = Arc<dyn Fn(&str) -> Page + Send + Sync>;
/// A TCP service's answer to one request chunk (None: close).
pub type Reply = Arc<dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync>;

async fn listen() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

async fn answer_http<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, handler: Handler) {
    let mut buf = vec![];
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
        if buf.len() > 16 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, headers, body) = if method == "GET" && path.starts_with('/') {
        handler(path)
    } else {
        (400, vec![], "bad request".into())
    };
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    let _ = s.write_all(out.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// An HTTP server, over TLS with `cert` when given.
pub async fn http(cert: Option<&Cert>, handler: Handler) -> Target {
    let (l, port) = listen().await;
    let acceptor = cert.map(|c| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                c.chain.clone(),
                PrivateKeyDer::Pkcs8(c.key_der.clone().into()),
            )
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let (acceptor, handler) = (acceptor.clone(), handler.clone());
            tokio::spawn(async move {
                match acceptor {
                    Some(a) => {
                        if let Ok(tls) = a.accept(s).await {
                            answer_http(tls, handler).await
                        }
                    }
                    None => answer_http(s, handler).await,
                }
            });
        }
    });
    Target { port, task }
}

/// A TCP service that answers each request chunk with `reply` (None: close).
pub async fn tcp(reply: Reply) -> Target {
    let (l, port) = listen().await;
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    match reply(&buf[..n]) {
                        Some(r) => {
                            if s.write_all(&r).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    }
                }
            });
        }
    });
    Target { port, task }
}

/// Memcached's `stats`, without authentication.
pub async fn memcached() -> Target {
    tcp(Arc::new(|req| {
        req.starts_with(b"stats")
            .then(|| b"STAT pid 4242\r\nSTAT version 1.6.21\r\nSTAT uptime 10\r\nEND\r\n".to_vec())
            .or_else(|| Some(b"ERROR\r\n".to_vec()))
    }))
    .await
}

fn bson_doc(elements: &[u8]) -> Vec<u8> {
    let mut d = ((elements.len() + 5) as i32).to_le_bytes().to_vec();
    d.extend_from_slice(elements);
    d.push(0);
    d
}

/// MongoDB answering OP_MSG commands without authentication: `isMaster`, and
/// `listDatabases` with one database named `customers`.
pub async fn mongodb() -> Target {
    tcp(Arc::new(|req| {
        if req.len() < 21 || req[12..16] != 2013i32.to_le_bytes() {
            return None;
        }
        let request_id = &req[4..8];
        let mut el = vec![];
        if req.windows(13).any(|w| w == b"listDatabases") {
            let db =
                bson_doc(&[&[2u8][..], b"name\0", &10i32.to_le_bytes(), b"customers\0"].concat());
            let list = bson_doc(&[&[3u8][..], b"0\0", &db].concat());
            el.extend_from_slice(&[&[4u8][..], b"databases\0", &list].concat());
        } else {
            el.extend_from_slice(&[8, b'i', b's', b'm', b'a', b's', b't', b'e', b'r', 0, 1]);
        }
        el.extend_from_slice(&[&[0x10u8][..], b"ok\0", &1i32.to_le_bytes()].concat());
        let doc = bson_doc(&el);
        let len = 16 + 4 + 1 + doc.len();
        let mut m = (len as i32).to_le_bytes().to_vec();
        m.extend_from_slice(&7i32.to_le_bytes());
        m.extend_from_slice(request_id);
        m.extend_from_slice(&2013i32.to_le_bytes());
        m.extend_from_slice(&0u32.to_le_bytes());
        m.push(0);
        m.extend_from_slice(&doc);
        Some(m)
    }))
    .await
}

/// Elasticsearch's root document, without authentication.
pub async fn elasticsearch() -> Target {
    http(
        None,
        Arc::new(|path| match path {
            "/" => (
                200,
                vec![("Content-Type", "application/json".into())],
                r#"{"name":"node-1","cluster_name":"search","version":{"number":"7.17.9"},"tagline":"You Know, for Search"}"#.into(),
            ),
            _ => (404, vec![], String::new()),
        }),
    )
    .await
}

/// Accepts connections and answers nothing for `silence`, then closes: every probe of it waits.
pub async fn slow(silence: std::time::Duration) -> Target {
    let (l, port) = listen().await;
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                tokio::time::sleep(silence).await;
                drop(s);
            });
        }
    });
    Target { port, task }
}
