use easm_api::AppState;
use easm_domain::Plan;
use easm_events::{Actor, EventMeta, OrgId};
use easm_store::{Db, DbConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Generates one test per backend from `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

/// Generates one test on SQLite and one on PostgreSQL with NATS from
/// `async fn name(backend: Backend, nats: bool)`.
#[macro_export]
macro_rules! on_sqlite_and_nats {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite, false).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres_nats() {
                super::$name($crate::helpers::Backend::Postgres, true).await
            }
        }
    )*};
}

/// Generates one test per transport from `async fn name(backend: Backend, nats: bool)`:
/// SQLite, PostgreSQL, and PostgreSQL with NATS.
#[macro_export]
macro_rules! on_every_transport {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite, false).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres, false).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres_nats() {
                super::$name($crate::helpers::Backend::Postgres, true).await
            }
        }
    )*};
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn pg_base_url() -> String {
    std::env::var("EASM_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A fresh, empty store: a temporary SQLite file or a new PostgreSQL database.
pub struct TestStore {
    pub config: DbConfig,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl TestStore {
    pub async fn new(backend: Backend) -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => TestStore {
                config: DbConfig::Sqlite {
                    path: dir.path().join("easm.db"),
                },
                dir,
                pg_name: None,
            },
            Backend::Postgres => {
                let name = format!("easm_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = PgConnection::connect(&format!("{}/postgres", pg_base_url()))
                    .await
                    .expect("PostgreSQL must run on 127.0.0.1:5432 (see .ci/run)");
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .unwrap();
                TestStore {
                    config: DbConfig::Postgres {
                        url: format!("{}/{name}", pg_base_url()),
                    },
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// Environment for running the `easm` binary against this store.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("EASM_DATA_DIR", self.dir.path().display().to_string())];
        if let DbConfig::Postgres { url } = &self.config {
            env.push(("EASM_DATABASE_URL", url.clone()));
        }
        env
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Best effort, on a thread of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut c) =
                        PgConnection::connect(&format!("{}/postgres", pg_base_url())).await
                    {
                        let _ = c
                            .execute(
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                            )
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub db: Db,
    pub store: TestStore,
    pub client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .expect("answer has an id")
            .to_string()
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// The string `field` of each item of a page, in order.
    pub fn items_field(&self, field: &str) -> Vec<&str> {
        self.body["items"]
            .as_array()
            .expect("a page")
            .iter()
            .map(|item| item[field].as_str().expect("a string field"))
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_on(TestStore::new(backend).await).await
}

/// Start the server on a random port over an existing store.
pub async fn spawn_on(store: TestStore) -> TestApp {
    spawn_configured(store, |_| {}).await
}

/// Start the server with settings changed by `configure`.
pub async fn spawn_configured(store: TestStore, configure: impl FnOnce(&mut AppState)) -> TestApp {
    let db = Db::connect(&store.config).await.unwrap();
    let mut state = AppState::new(db.clone());
    configure(&mut state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let state = state.clone();
        async move {
            easm_api::serve(listener, None, state, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        }
    });
    TestApp {
        addr,
        state,
        db,
        store,
        client: reqwest::Client::new(),
        server,
        stop: Some(tx),
    }
}

pub fn system_meta() -> EventMeta {
    EventMeta::new(Actor::system(), "test")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A new organization; returns (org id, owner key).
    pub async fn org(&self, plan: Plan) -> (OrgId, String) {
        let (id, key) = self
            .state
            .commands
            .create_org(&system_meta(), "Test org", plan)
            .await
            .unwrap();
        (id, key.secret)
    }

    pub async fn key(&self, org: &OrgId, role: easm_domain::Role) -> String {
        self.state
            .commands
            .create_key(
                &system_meta(),
                org,
                easm_app::KeyOrder::rest(Some(role), "test key", None),
            )
            .await
            .unwrap()
            .secret
    }

    pub async fn call(&self, method: Method, key: &str, path: &str, body: Option<Value>) -> Answer {
        let mut req = self
            .client
            .request(method, self.url(path))
            .header("X-API-Key", key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await.unwrap()).await
    }

    pub async fn get(&self, key: &str, path: &str) -> Answer {
        self.call(Method::GET, key, path, None).await
    }

    pub async fn post(&self, key: &str, path: &str, body: Value) -> Answer {
        self.call(Method::POST, key, path, Some(body)).await
    }

    pub async fn patch(&self, key: &str, path: &str, body: Value) -> Answer {
        self.call(Method::PATCH, key, path, Some(body)).await
    }

    pub async fn delete(&self, key: &str, path: &str) -> Answer {
        self.call(Method::DELETE, key, path, None).await
    }

    /// Create a group and return its id.
    pub async fn group(&self, key: &str, name: &str) -> String {
        let a = self
            .post(key, "/api/groups", serde_json::json!({ "name": name }))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.id()
    }

    /// Add an asset and return its id.
    pub async fn asset(&self, key: &str, group: &str, value: &str, ty: &str) -> String {
        let a = self
            .post(
                key,
                &format!("/api/groups/{group}/assets"),
                serde_json::json!({"value": value, "type": ty}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.id()
    }

    /// Stop the server and give back its store, for a restart.
    pub async fn stop(self) -> TestStore {
        let TestApp {
            store,
            server,
            stop,
            db,
            ..
        } = self;
        if let Some(tx) = stop {
            let _ = tx.send(());
        }
        let _ = server.await;
        db.close().await;
        store
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(self.db.reader())
            .await
            .unwrap()
    }
}

pub async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// A nats-server of the test's own, on its own port, that the test can stop and start again.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    pub fn start_on(port: u16, dir: tempfile::TempDir) -> NatsServer {
        let debian = std::path::Path::new("/usr/sbin/nats-server");
        let binary = if debian.exists() {
            debian
        } else {
            std::path::Path::new("nats-server")
        };
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        NatsServer {
            child: Some(child),
            port,
            dir,
        }
    }

    pub fn start() -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        NatsServer::start_on(port, tempfile::tempdir().unwrap())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn stop(mut self) -> (u16, tempfile::TempDir) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let port = self.port;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (port, dir)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An `easm` process (`serve` or `deliver`) on a test store, started and ready.
pub struct EasmProcess {
    child: Option<Child>,
    /// Where `serve` listens.
    pub addr: Option<String>,
}

/// Start `easm <args>` with extra environment and wait until it says it is listening or
/// delivering.
pub fn start_easm(store: &TestStore, args: &[&str], env: &[(&str, String)]) -> EasmProcess {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_easm"))
        .args(args)
        .envs(store.env())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "info,easm_delivery=debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addr = None;
    let mut ready = false;
    for line in stderr.by_ref() {
        let line = line.unwrap();
        if line.contains("easm listening") || line.contains("easm delivering") {
            addr = line
                .find("addr=")
                .map(|i| line[i + 5..].split_whitespace().next().unwrap().to_string());
            ready = true;
            break;
        }
    }
    // Keep reading, so the process never writes its logs into a closed pipe.
    std::thread::spawn(move || stderr.for_each(drop));
    assert!(ready, "easm {args:?} did not start");
    EasmProcess {
        child: Some(child),
        addr,
    }
}

impl EasmProcess {
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.addr.as_deref().expect("a serve process")
        )
    }

    /// Kill at once, as a crash would.
    pub fn kill(self) {}

    /// The process itself, for a caller that stops it and reads its output.
    pub fn into_child(mut self) -> Child {
        self.child.take().expect("running")
    }
}

impl Drop for EasmProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An organization on a fresh server, with one group, speaking with its owner key: where most
/// behaviours start.
pub struct Tenant {
    pub app: TestApp,
    pub org: OrgId,
    pub key: String,
    pub group: String,
}

impl Tenant {
    pub async fn new(b: Backend, plan: Plan, group: &str) -> Tenant {
        let app = spawn_app(b).await;
        let (org, key) = app.org(plan).await;
        let group = app.group(&key, group).await;
        Tenant {
            app,
            org,
            key,
            group,
        }
    }

    /// An asset of the tenant's group; its id.
    pub async fn asset(&self, value: &str, ty: &str) -> String {
        self.app.asset(&self.key, &self.group, value, ty).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.app.get(&self.key, path).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.app.post(&self.key, path, body).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.app.patch(&self.key, path, body).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.app.delete(&self.key, path).await
    }

    /// A key of the tenant's organization with `role`.
    pub async fn key_of(&self, role: easm_domain::Role) -> String {
        self.app.key(&self.org, role).await
    }
}

/// Runs a Python snippet (clients written by others: parsers, SDKs) with `stdin` as its input;
/// answers the lines it printed, and fails the test when it fails.
pub fn run_python(script: &str, stdin: &str) -> Vec<String> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
