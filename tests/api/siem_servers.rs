//! Real servers on 127.0.0.1 that SIEM deliveries go to, each following its documented protocol:
//! a Splunk HTTP Event Collector, an Elasticsearch `_bulk` API, rsyslog itself (the Debian
//! package) over TCP or TLS, a TLS front that can require client certificates from a test CA,
//! and a forward proxy. Each stops when dropped.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

async fn serve(app: axum::Router) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

/// Poll `f` until it answers, for at most `timeout`.
pub async fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[derive(Default)]
struct Hec {
    token: String,
    /// Events indexed, in order.
    indexed: Mutex<Vec<Value>>,
    /// Requests answered, with how many events each carried.
    requests: Mutex<Vec<usize>>,
    busy_first: AtomicUsize,
    /// How long a request that indexed its events waits for its answer.
    answer_after_ms: AtomicU64,
}

/// A Splunk HTTP Event Collector: `POST /services/collector/event`, `Authorization: Splunk
/// <token>`, events as concatenated JSON objects, answers and codes as Splunk documents them
/// (0 success, 2 token required, 4 invalid token, 6 invalid data format, 9 server busy, 12
/// event field required).
pub struct HecServer {
    pub url: String,
    state: Arc<Hec>,
    task: JoinHandle<()>,
}

async fn hec(
    State(s): State<Arc<Hec>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let answer = |status: StatusCode, v: Value| (status, axum::Json(v)).into_response();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(token) = auth.strip_prefix("Splunk ") else {
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"text": "Token is required", "code": 2}),
        );
    };
    if token != s.token {
        return answer(
            StatusCode::FORBIDDEN,
            json!({"text": "Invalid token", "code": 4}),
        );
    }
    let events: Result<Vec<Value>, _> = serde_json::Deserializer::from_slice(&body)
        .into_iter::<Value>()
        .collect();
    let Ok(events) = events else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"text": "Invalid data format", "code": 6}),
        );
    };
    s.requests.lock().unwrap().push(events.len());
    if s.busy_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"text": "Server is busy", "code": 9}),
        );
    }
    // Events before a bad one are indexed; the answer names the bad one.
    for (i, e) in events.iter().enumerate() {
        if e.get("event").is_none_or(Value::is_null) {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"text": "Event field is required", "code": 12, "invalid-event-number": i}),
            );
        }
        s.indexed.lock().unwrap().push(e.clone());
    }
    let wait = s.answer_after_ms.load(Ordering::SeqCst);
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    answer(StatusCode::OK, json!({"text": "Success", "code": 0}))
}

impl HecServer {
    pub async fn start(token: &str) -> HecServer {
        let state = Arc::new(Hec {
            token: token.into(),
            ..Default::default()
        });
        let app = axum::Router::new()
            .route("/services/collector/event", axum::routing::post(hec))
            .with_state(state.clone());
        let (url, task) = serve(app).await;
        HecServer { url, state, task }
    }

    /// Answer "server busy" to the next `n` requests.
    pub fn busy_first(&self, n: usize) {
        self.state.busy_first.store(n, Ordering::SeqCst);
    }

    /// Index what comes at once, but answer only after `wait` (a collector under load).
    pub fn answer_after(&self, wait: Duration) {
        self.state
            .answer_after_ms
            .store(wait.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn indexed(&self) -> Vec<Value> {
        self.state.indexed.lock().unwrap().clone()
    }

    /// How many events each request carried.
    pub fn requests(&self) -> Vec<usize> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for HecServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct Es {
    api_key: String,
    /// Documents by `_index` then `_id`.
    docs: Mutex<BTreeMap<String, BTreeMap<String, Value>>>,
    /// Documents whose `event.action` this index's mapping refuses.
    refuse_actions: Mutex<Vec<String>>,
    /// Items answered 429 before any is indexed.
    reject_items_first: AtomicUsize,
    bulk_requests: AtomicUsize,
}

/// Elasticsearch's `_bulk` API: `Authorization: ApiKey <key>`, NDJSON action and document lines,
/// `create` refusing an `_id` that exists (409), a mapping that refuses some documents (400
/// `document_parsing_exception`), per-item answers as Elasticsearch gives them.
pub struct EsServer {
    pub url: String,
    state: Arc<Es>,
    task: JoinHandle<()>,
}

async fn bulk(
    State(s): State<Arc<Es>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth != format!("ApiKey {}", s.api_key) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"type": "security_exception",
                "reason": "unable to authenticate with provided credentials"}, "status": 401})),
        )
            .into_response();
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with("application/x-ndjson") && !ct.starts_with("application/json") {
        return (StatusCode::NOT_ACCEPTABLE, "bad content type").into_response();
    }
    s.bulk_requests.fetch_add(1, Ordering::SeqCst);
    let text = String::from_utf8_lossy(&body);
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let mut items = vec![];
    let mut errors = false;
    for pair in lines.chunks(2) {
        let action: Value = serde_json::from_str(pair[0]).unwrap();
        let meta = &action["create"];
        let (index, id) = (
            meta["_index"].as_str().unwrap().to_string(),
            meta["_id"].as_str().unwrap().to_string(),
        );
        let doc: Value = serde_json::from_str(pair[1]).unwrap();
        let refused = s
            .refuse_actions
            .lock()
            .unwrap()
            .iter()
            .any(|a| doc["event"]["action"] == *a);
        let mut docs = s.docs.lock().unwrap();
        let (status, error) = if refused {
            (
                400,
                Some(json!({"type": "document_parsing_exception",
                "reason": "[1:2] failed to parse field [event.action]: mapping refuses it"})),
            )
        } else if s
            .reject_items_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            (
                429,
                Some(
                    json!({"type": "es_rejected_execution_exception", "reason": "rejected execution: queue capacity reached"}),
                ),
            )
        } else if docs.get(&index).is_some_and(|d| d.contains_key(&id)) {
            (
                409,
                Some(json!({"type": "version_conflict_engine_exception",
                "reason": format!("[{id}]: version conflict, document already exists")})),
            )
        } else {
            docs.entry(index.clone())
                .or_default()
                .insert(id.clone(), doc);
            (201, None)
        };
        errors |= error.is_some();
        let mut item = json!({"_index": index, "_id": id, "status": status});
        if let Some(e) = error {
            item["error"] = e;
        } else {
            item["result"] = json!("created");
        }
        items.push(json!({"create": item}));
    }
    axum::Json(json!({"took": 1, "errors": errors, "items": items})).into_response()
}

impl EsServer {
    pub async fn start(api_key: &str) -> EsServer {
        let state = Arc::new(Es {
            api_key: api_key.into(),
            ..Default::default()
        });
        let app = axum::Router::new()
            .route("/_bulk", axum::routing::post(bulk))
            .with_state(state.clone());
        let (url, task) = serve(app).await;
        EsServer { url, state, task }
    }

    pub fn refuse_action(&self, action: &str) {
        self.state
            .refuse_actions
            .lock()
            .unwrap()
            .push(action.into());
    }

    /// Answer 429 to the next `n` items.
    pub fn reject_items_first(&self, n: usize) {
        self.state.reject_items_first.store(n, Ordering::SeqCst);
    }

    pub fn docs(&self, index: &str) -> BTreeMap<String, Value> {
        self.state
            .docs
            .lock()
            .unwrap()
            .get(index)
            .cloned()
            .unwrap_or_default()
    }

    pub fn bulk_requests(&self) -> usize {
        self.state.bulk_requests.load(Ordering::SeqCst)
    }
}

impl Drop for EsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A CA of the test's own, issuing server and client certificates.
pub struct TestCa {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
    pub pem: String,
}

/// A certificate with its key, as PEM and as rustls wants them.
pub struct Issued {
    pub pem: String,
    pub key_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            key,
            cert,
        }
    }

    fn issue(
        &self,
        name: &str,
        sans: Vec<rcgen::SanType>,
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> Issued {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = sans;
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate().unwrap();
        let c = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            pem: c.pem(),
            key_pem: key.serialize_pem(),
            chain: vec![c.der().clone()],
            key_der: key.serialize_der(),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self) -> Issued {
        self.issue(
            "localhost",
            vec![
                rcgen::SanType::DnsName("localhost".try_into().unwrap()),
                rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()),
            ],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    pub fn client(&self, name: &str) -> Issued {
        self.issue(name, vec![], rcgen::ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        Arc::new(roots)
    }
}

/// TLS in front of a plain HTTP server: connections are decrypted and piped to `to`. With
/// `clients`, a certificate issued by that CA is required; the names on the certificates
/// clients presented are kept.
pub struct TlsFront {
    pub port: u16,
    pub client_names: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl TlsFront {
    pub async fn start(server: &Issued, clients: Option<&TestCa>, to: &str) -> TlsFront {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match clients {
            Some(ca) => builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(ca.roots(), provider)
                    .build()
                    .unwrap(),
            ),
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(
                server.chain.clone(),
                PrivateKeyDer::Pkcs8(server.key_der.clone().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let to = to
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let client_names: Arc<Mutex<Vec<String>>> = Arc::default();
        let names = client_names.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, to, names) = (acceptor.clone(), to.clone(), names.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(s).await else {
                        return;
                    };
                    if let Some(certs) = tls.get_ref().1.peer_certificates() {
                        names
                            .lock()
                            .unwrap()
                            .push(format!("{} certificate(s)", certs.len()));
                    }
                    let Ok(mut upstream) = TcpStream::connect(&to).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                });
            }
        });
        TlsFront {
            port,
            client_names,
            task,
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A forward proxy: absolute-form requests (`POST http://host:port/path`) are sent on to their
/// host in origin form, `CONNECT host:port` is tunnelled; each request line is kept.
pub struct Proxy {
    pub url: String,
    pub requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = vec![];
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if s.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let line = text.lines().next().unwrap_or_default().to_string();
                    seen.lock().unwrap().push(line.clone());
                    let mut parts = line.split_whitespace();
                    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    if method == "CONNECT" {
                        let Ok(mut up) = TcpStream::connect(target).await else {
                            return;
                        };
                        let _ = s
                            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                            .await;
                        let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
                        return;
                    }
                    let Some(rest) = target.strip_prefix("http://") else {
                        return;
                    };
                    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                    let Ok(mut up) = TcpStream::connect(host).await else {
                        return;
                    };
                    let origin = text.replacen(target, &format!("/{path}"), 1);
                    if up.write_all(origin.as_bytes()).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
                });
            }
        });
        Proxy {
            url,
            requests,
            task,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// rsyslog (the Debian package) listening on 127.0.0.1 over TCP, or TLS with `tls` (server
/// certificate, and the CA clients must present certificates of, if any), writing each message
/// it gets as one line to a file: `<pri>|<hostname>|<app-name>|<msgid>|<msg>`.
pub struct Rsyslog {
    pub port: u16,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Rsyslog {
    pub async fn start(tls: Option<(&TestCa, &Issued)>) -> Rsyslog {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let (global, input) = match tls {
            None => (
                String::new(),
                format!(r#"input(type="imtcp" port="{port}" address="127.0.0.1")"#),
            ),
            Some((ca, server)) => {
                std::fs::write(path("ca.pem"), &ca.pem).unwrap();
                std::fs::write(path("cert.pem"), &server.pem).unwrap();
                std::fs::write(path("key.pem"), &server.key_pem).unwrap();
                (
                    format!(
                        r#"global(DefaultNetstreamDriverCAFile="{}" DefaultNetstreamDriverCertFile="{}" DefaultNetstreamDriverKeyFile="{}")"#,
                        path("ca.pem"),
                        path("cert.pem"),
                        path("key.pem")
                    ),
                    format!(
                        r#"input(type="imtcp" port="{port}" address="127.0.0.1" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")"#
                    ),
                )
            }
        };
        let conf = format!(
            r#"global(workDirectory="{work}")
{global}
module(load="imtcp")
{input}
template(name="line" type="string" string="%pri%|%hostname%|%app-name%|%msgid%|%msg%\n")
action(type="omfile" file="{out}" template="line" flushOnTXEnd="on" asyncWriting="off")
"#,
            work = dir.path().display(),
            out = path("out.log"),
        );
        std::fs::write(path("rsyslog.conf"), conf).unwrap();
        let child = std::process::Command::new("rsyslogd")
            .args([
                "-n",
                "-f",
                &path("rsyslog.conf"),
                "-i",
                &path("rsyslog.pid"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("rsyslogd (apt-get install rsyslog rsyslog-gnutls)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "rsyslogd did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Rsyslog { port, dir, child }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out.log")
    }

    /// The lines written so far.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.out())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The lines once there are at least `n`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        eventually(timeout, || {
            let l = self.lines();
            (l.len() >= n).then_some(l)
        })
        .await
    }

    /// Stop it (connections drop) and start it again on the same port.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let conf = self.dir.path().join("rsyslog.conf");
        let pid = self.dir.path().join("rsyslog.pid");
        let _ = std::fs::remove_file(&pid);
        self.child = std::process::Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(&pid)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
