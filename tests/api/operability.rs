//! Running easm as an operator does (issue #18): PostgreSQL over TLS, a start that fails says
//! why in one line, logs, and a stop that ends streams and finishes the work under way.

use crate::delivery::{all_status, Setup, WAIT};
use crate::helpers::{run_python, spawn_configured, start_easm, Backend, TestStore};
use crate::receiver::Receiver;
use easm_store::DbConfig;
use sqlx::{Connection, PgConnection};
use std::process::Command;
use std::time::Duration;

fn pg_url(store: &TestStore) -> String {
    match &store.config {
        DbConfig::Postgres { url } => url.clone(),
        DbConfig::Sqlite { .. } => unreachable!("a PostgreSQL store"),
    }
}

/// The certificate the machine's PostgreSQL presents (Debian's self-signed one, for `localhost`):
/// the root to trust in the verifying modes.
async fn server_certificate(url: &str) -> String {
    let mut c = PgConnection::connect(url).await.unwrap();
    let file: String = sqlx::query_scalar("SHOW ssl_cert_file")
        .fetch_one(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    file
}

/// Connections of the application `name` to this database, and how many of them use TLS.
async fn connections_of(url: &str, name: &str) -> (i64, i64) {
    let mut c = PgConnection::connect(url).await.unwrap();
    let counts = sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.datname = current_database() \
         AND a.application_name = $1",
    )
    .bind(name)
    .fetch_one(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
    counts
}

#[tokio::test]
async fn postgres_is_reached_over_tls_in_each_mode() {
    let store = TestStore::new(Backend::Postgres).await;
    let url = pg_url(&store);
    let root = server_certificate(&url).await;
    // The certificate names `localhost`: the verifying modes connect by that name.
    let by_name = url.replace("@127.0.0.1:", "@localhost:");
    let modes = [
        ("require", format!("{url}?sslmode=require")),
        (
            "verify-ca",
            format!("{by_name}?sslmode=verify-ca&sslrootcert={root}"),
        ),
        (
            "verify-full",
            format!("{by_name}?sslmode=verify-full&sslrootcert={root}"),
        ),
    ];
    for (mode, with) in modes {
        let app = format!("easm-{mode}");
        let server = start_easm(
            &store,
            &["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"],
            &[(
                "EASM_DATABASE_URL",
                format!("{with}&application_name={app}"),
            )],
        );
        let ready = reqwest::get(server.url("/readyz")).await.unwrap();
        assert_eq!(ready.status(), 200, "{mode}");
        let (all, tls) = connections_of(&url, &app).await;
        assert!(all > 0, "{mode}: easm holds no connection");
        assert_eq!(tls, all, "{mode}: every connection of easm uses TLS");
    }
}

/// `easm serve` against `url`, expected to fail: its exit status and the lines it wrote to
/// standard error other than logs.
fn failed_start(store: &TestStore, url: &str) -> (std::process::ExitStatus, Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_easm"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"])
        .envs(store.env())
        .env("EASM_DATABASE_URL", url)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains(" INFO ") && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    (out.status, lines)
}

#[tokio::test]
async fn a_start_that_fails_says_why_in_one_line() {
    let store = TestStore::new(Backend::Postgres).await;
    let url = pg_url(&store);
    let root = server_certificate(&url).await;
    let closed = url.replace("@127.0.0.1:5432", "@127.0.0.1:1");
    let stranger = url.replace("postgres@", "nobody@");
    let cases = [
        (closed, "Connection refused"),
        (stranger, "role \"nobody\" does not exist"),
        (
            // The certificate names `localhost`, not the address.
            format!("{url}?sslmode=verify-full&sslrootcert={root}"),
            "certificate not valid for name \"127.0.0.1\"",
        ),
        (
            // A self-signed certificate is trusted only when named as the root.
            format!("{url}?sslmode=verify-ca"),
            "UnknownIssuer",
        ),
    ];
    for (with, why) in cases {
        let started = std::time::Instant::now();
        let (status, lines) = failed_start(&store, &with);
        assert!(!status.success(), "{with}: exited {status}");
        assert_eq!(lines.len(), 1, "{with}: one line, got {lines:#?}");
        assert!(
            lines[0].starts_with("easm: opening the database: ") && lines[0].contains(why),
            "{with}: {}",
            lines[0]
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{with}: a failed start is told at once"
        );
    }
}

/// The lines `easm serve` writes to standard error up to the one saying it listens, with the
/// log settings `env`.
fn lines_until_listening(env: &[(&str, &str)]) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_easm"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"])
        .env("EASM_DATA_DIR", dir.path())
        .env_remove("EASM_DATABASE_URL")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = vec![];
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let listening = line.contains("easm listening");
        lines.push(line);
        if listening || lines.len() > 500 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.last().is_some_and(|l| l.contains("easm listening")),
        "{lines:#?}"
    );
    lines
}

#[test]
fn logs_are_json_lines_when_asked() {
    let lines = lines_until_listening(&[("EASM_LOG_FORMAT", "json")]);
    for line in &lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(entry["timestamp"].is_string(), "{line}");
        assert!(entry["level"].is_string(), "{line}");
        assert!(entry["message"].is_string(), "{line}");
    }
    let listening: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(listening["level"], "INFO");
    assert!(listening["addr"]
        .as_str()
        .is_some_and(|a| a.starts_with("127.0.0.1:")));
}

#[test]
fn text_logs_carry_no_colour_codes_into_a_pipe() {
    for format in [None, Some("text")] {
        let env: Vec<(&str, &str)> = format.map(|f| ("EASM_LOG_FORMAT", f)).into_iter().collect();
        let lines = lines_until_listening(&env);
        assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:#?}");
        assert!(lines.last().unwrap().contains(" INFO "));
    }
}

#[test]
fn an_unknown_log_format_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_easm"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("EASM_DATA_DIR", dir.path())
        .env("EASM_LOG_FORMAT", "xml")
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "easm: EASM_LOG_FORMAT is json or text, not \"xml\""
    );
}

#[tokio::test]
async fn every_request_has_an_access_log_line_without_the_key() {
    use easm_api::AppState;
    use easm_domain::Plan;
    use std::io::{BufRead, BufReader};
    let store = TestStore::new(Backend::Sqlite).await;
    let db = easm_store::Db::connect(&store.config).await.unwrap();
    let (_, key) = AppState::new(db.clone())
        .commands
        .create_org(&crate::helpers::system_meta(), "Logged", Plan::Pro)
        .await
        .unwrap();
    db.close().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_easm"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"])
        .envs(store.env())
        .env("EASM_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(serde_json::from_str(&line).unwrap_or_default());
        }
    });
    let wait = Duration::from_secs(10);
    let addr = loop {
        let entry = rx.recv_timeout(wait).expect("easm listening");
        if entry["message"] == "easm listening" {
            break entry["addr"].as_str().unwrap().to_string();
        }
    };
    let http = reqwest::Client::new();
    let listed = http
        .get(format!("http://{addr}/api/assets?page=1"))
        .header("X-API-Key", &key.secret)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let request_id = listed.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let refused = http
        .get(format!("http://{addr}/api/assets/{}", "some-id"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let mut access = vec![];
    while access.len() < 2 {
        let entry = rx.recv_timeout(wait).expect("two access lines");
        assert!(
            !entry.to_string().contains(&key.secret),
            "the key itself is never logged"
        );
        if entry["target"] == "easm::access" {
            access.push(entry);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(access[0]["method"], "GET");
    assert_eq!(access[0]["route"], "/api/assets");
    assert_eq!(access[0]["status"], 200);
    assert_eq!(access[0]["request_id"], request_id.as_str());
    assert_eq!(access[0]["key_id"], key.key_id.as_str());
    assert!(access[0]["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));
    assert_eq!(
        access[1]["route"], "/api/assets/{id}",
        "the template, not the id"
    );
    assert_eq!(access[1]["status"], 401);
    assert_eq!(access[1]["key_id"], "-");
}

crate::on_every_transport!(sigterm_ends_streams_finishes_deliveries_and_releases_leases);

/// `easm serve` asked to stop (SIGTERM) with an event stream open and a delivery in flight: the
/// stream ends, the delivery's answer is awaited and recorded (not sent again), every lease is
/// released for another process to take at once, and the process exits 0.
async fn sigterm_ends_streams_finishes_deliveries_and_releases_leases(b: Backend, nats: bool) {
    let mut s = Setup::start(b, nats, &[("EASM_SHUTDOWN_TIMEOUT", "20s")]).await;
    let receiver = Receiver::start().await;
    receiver.answer_after(Duration::from_secs(2));
    let (hook, _) = s.webhook(&receiver.url, &["asset.added"]).await;
    let stream = s
        .http
        .get(s.server.as_ref().unwrap().url("/api/events"))
        .header("X-API-Key", &s.key)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), reqwest::StatusCode::OK);
    s.assets(1).await;
    receiver.wait_for(1, WAIT).await;
    let child = s.server.take().unwrap().into_child();
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let streamed = tokio::time::timeout(WAIT, stream.text())
        .await
        .expect("the event stream ends when the server stops")
        .unwrap();
    assert!(streamed.contains("event: asset.added"), "{streamed}");
    let exited = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(exited.status.success(), "{:?}", exited.status);
    let db = easm_store::Db::connect(&s.store.config).await.unwrap();
    let held: Vec<String> = sqlx::query_scalar("SELECT name FROM leases")
        .fetch_all(db.reader())
        .await
        .unwrap();
    db.close().await;
    assert!(held.is_empty(), "leases left: {held:?}");
    s.restart();
    let items = s
        .deliveries_when(&hook, |d| all_status(d, 1, "succeeded"))
        .await;
    assert_eq!(items[0]["attemptCount"], 1, "{items:#?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1, "not sent again");
}

crate::on_both_backends!(forwarded_addresses_count_only_from_trusted_proxies);

/// Behind a trusted proxy (here the test client's own address), the client named by
/// `X-Forwarded-For` or `Forwarded` is the source address of the events a request causes, the
/// nearest untrusted hop and not what the client wrote itself; without the setting, the same
/// headers change nothing.
async fn forwarded_addresses_count_only_from_trusted_proxies(b: Backend) {
    for (trusted, header, value, source) in [
        ("127.0.0.1", "x-forwarded-for", "203.0.113.7", "203.0.113.7"),
        (
            "127.0.0.0/8, 10.0.0.0/8",
            "x-forwarded-for",
            "1.2.3.4, 198.51.100.9, 10.1.2.3",
            "198.51.100.9",
        ),
        (
            "127.0.0.1",
            "forwarded",
            r#"for="[2001:db8::17]:4711";proto=https"#,
            "2001:db8::17",
        ),
        ("", "x-forwarded-for", "203.0.113.7", "127.0.0.1"),
        ("10.0.0.0/8", "x-forwarded-for", "203.0.113.7", "127.0.0.1"),
    ] {
        let proxies: easm_api::TrustedProxies = trusted.parse().unwrap();
        let app = spawn_configured(TestStore::new(b).await, |s| s.trusted_proxies = proxies).await;
        let (_, key) = app.org(easm_domain::Plan::Pro).await;
        let made = app
            .client
            .post(app.url("/api/groups"))
            .header("X-API-Key", &key)
            .header(header, value)
            .json(&serde_json::json!({"name": "behind a proxy"}))
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), 201);
        let log = app.get(&key, "/api/audit-log?action=group.created").await;
        assert_eq!(
            log.body["items"][0]["actor"]["sourceIp"], source,
            "{trusted} / {header}: {value}: {}",
            log.body
        );
    }
}

#[test]
fn a_malformed_trusted_proxies_setting_is_refused_at_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_easm"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("EASM_TRUSTED_PROXIES", "10.0.0.0/33")
        .env("EASM_DATA_DIR", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'10.0.0.0/33': the prefix length must be 0 to 32"),
        "{err}"
    );
}

/// `/metrics` as Prometheus's own client library parses it: each series and its labels,
/// one JSON line per sample.
async fn scrape(s: &Setup) -> Vec<serde_json::Value> {
    let text = reqwest::get(s.server.as_ref().unwrap().url("/metrics"))
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(json.dumps({"type": family.type, "name": s.name, "labels": s.labels, "value": s.value}))
"#;
    run_python(script, &text)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Scrapes until `done` holds (the count of an attempt moves once its answer is in).
async fn scrape_until(
    s: &Setup,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let samples = scrape(s).await;
        if done(&samples) || std::time::Instant::now() > deadline {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the sample `name` whose labels include `labels` (0 when there is none).
fn sample(samples: &[serde_json::Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
        .sum()
}

/// Requests, commands, events, deliveries and the shared depths are exported as Prometheus text
/// that its client library parses, by route template (never an id), and they move with traffic;
/// `EASM_METRICS=false` turns the route off.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_are_exported_for_prometheus_and_move_with_traffic() {
    let mut s = Setup::start(Backend::Sqlite, false, &[]).await;
    let receiver = Receiver::start().await;
    s.webhook(&receiver.url, &["asset.added"]).await;
    s.assets(3).await;
    receiver.wait_for(3, WAIT).await;
    let delivered = [("kind", "webhook"), ("outcome", "delivered")];
    let before = scrape_until(&s, |m| {
        sample(m, "easm_delivery_attempts_total", &delivered) >= 3.0
    })
    .await;
    let bulk = [("route", "/api/groups/{id}/assets/bulk"), ("status", "201")];
    assert_eq!(sample(&before, "easm_http_requests_total", &bulk), 1.0);
    assert!(
        sample(
            &before,
            "easm_http_request_duration_seconds_count",
            &[("route", "/api/groups/{id}/assets/bulk")]
        ) == 1.0
    );
    assert!(before
        .iter()
        .any(|x| x["name"] == "easm_http_request_duration_seconds_bucket"
            && x["labels"]["le"] == "0.005"));
    assert_eq!(
        sample(
            &before,
            "easm_events_appended_total",
            &[("type", "asset.added")]
        ),
        3.0
    );
    assert!(sample(&before, "easm_commands_total", &[("outcome", "committed")]) >= 3.0);
    assert_eq!(
        sample(&before, "easm_delivery_attempts_total", &delivered),
        3.0
    );
    for gauge in [
        "easm_outbox_depth",
        "easm_outbox_oldest_age_seconds",
        "easm_projection_lag_events",
        "easm_delivery_queue_depth",
        "easm_webhook_endpoints_disabled",
        "easm_jobs",
        "easm_db_pool_connections",
    ] {
        assert!(
            before
                .iter()
                .any(|x| x["name"] == gauge && x["type"] == "gauge"),
            "{gauge} missing"
        );
    }
    assert!(sample(&before, "easm_db_pool_connections", &[("state", "open")]) >= 1.0);
    // No label names a tenant.
    let org = s.org.to_string();
    assert!(before
        .iter()
        .all(|x| !x["labels"].to_string().contains(&org)));

    s.assets(2).await;
    receiver.wait_for(5, WAIT).await;
    let after = scrape_until(&s, |m| {
        sample(m, "easm_delivery_attempts_total", &delivered) >= 5.0
    })
    .await;
    assert_eq!(sample(&after, "easm_http_requests_total", &bulk), 2.0);
    assert_eq!(
        sample(
            &after,
            "easm_events_appended_total",
            &[("type", "asset.added")]
        ),
        5.0
    );

    s.env.push(("EASM_METRICS", "false".into()));
    s.server.take().unwrap().kill();
    s.restart();
    let off = reqwest::get(s.server.as_ref().unwrap().url("/metrics"))
        .await
        .unwrap();
    assert_eq!(off.status(), 404);
}

/// `GET /docs` in headless Chromium: the page, its script and styles all come from the server (no
/// CDN is reachable here), load the OpenAPI document and render its operations. The screenshot is
/// left in the test's output directory.
#[tokio::test]
async fn the_api_reference_renders_in_a_browser() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let url = app.url("/docs/");
    let profile = tempfile::tempdir().unwrap();
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs-page.png");
    let chromium = move |extra: &[String]| {
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--virtual-time-budget=15000",
                "--window-size=1280,1600",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium (the Debian package) runs the browser test");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = tokio::task::spawn_blocking(move || {
        let dom = chromium(&["--dump-dom".into()]);
        chromium(&[format!("--screenshot={}", shot.display())]);
        assert!(shot.exists(), "no screenshot at {}", shot.display());
        println!("screenshot of /docs: {}", shot.display());
        dom
    })
    .await
    .unwrap();
    for path in [
        "/api/groups",
        "/api/webhooks/{id}/deliveries",
        "/api/findings",
    ] {
        assert!(
            dom.contains(&format!("data-path=\"{path}\"")),
            "{path} not rendered: {}",
            &dom[..dom.len().min(2000)]
        );
    }
    assert!(!dom.contains("Failed to load API definition"), "{dom}");
}
