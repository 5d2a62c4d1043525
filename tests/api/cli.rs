//! The command-line contract, run as a separate process, also while a server runs.

use crate::helpers::*;
use crate::on_both_backends;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command};

on_both_backends!(
    admin_commands_print_json_and_work_while_the_server_runs,
    serve_bootstraps_once
);

pub(crate) fn easm(store: &TestStore, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_easm"))
        .args(args)
        .envs(store.env())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "easm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub(crate) fn json_line(out: &std::process::Output) -> Value {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line: {text}");
    serde_json::from_str(lines[0]).unwrap()
}

/// `easm serve` as a process, once it listens; returns it with its address.
pub(crate) fn serve(store: &TestStore, extra: &[&str]) -> (Child, String) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut p = start_easm(store, &args, &[]);
    let addr = p.addr.take().expect("serve prints its address");
    (p.into_child(), addr)
}

/// Stop a server and return everything it printed on stdout (bootstrap prints before listening).
fn stop(mut child: Child) -> String {
    child.kill().unwrap();
    let _ = child.wait();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    out
}

async fn admin_commands_print_json_and_work_while_the_server_runs(b: Backend) {
    let store = TestStore::new(b).await;
    let (server, addr) = serve(&store, &["--no-bootstrap"]);
    let http = reqwest::Client::new();
    let get = |key: String, path: &'static str| {
        let http = http.clone();
        let url = format!("http://{addr}{path}");
        async move { answer(http.get(url).header("X-API-Key", key).send().await.unwrap()).await }
    };

    let org = json_line(&easm(
        &store,
        &["admin", "create-org", "--name", "Acme", "--plan", "free"],
    ));
    let org_id = org["orgId"].as_str().unwrap().to_string();
    let owner = org["ownerKey"].as_str().unwrap().to_string();
    assert!(owner.starts_with("ag_sk_"));
    let info = get(owner.clone(), "/api/org").await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.body);
    assert_eq!(info.body["plan"], "free");
    assert_eq!(info.body["name"], "Acme");

    let key = json_line(&easm(
        &store,
        &[
            "admin",
            "create-key",
            "--org",
            &org_id,
            "--role",
            "viewer",
            "--name",
            "ro",
        ],
    ));
    let viewer = key["key"].as_str().unwrap().to_string();
    assert_eq!(
        get(viewer.clone(), "/api/assets").await.status,
        StatusCode::OK
    );
    let denied = http
        .post(format!("http://{addr}/api/groups"))
        .header("X-API-Key", &viewer)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);

    easm(
        &store,
        &[
            "admin",
            "revoke-key",
            "--key-id",
            key["keyId"].as_str().unwrap(),
        ],
    );
    // The server follows the log written by the other process.
    let mut status = StatusCode::OK;
    for _ in 0..100 {
        status = get(viewer.clone(), "/api/assets").await.status;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let g = answer(
        http.post(format!("http://{addr}/api/groups"))
            .header("X-API-Key", &owner)
            .json(&json!({"name": "G"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(g.status, StatusCode::CREATED);
    let before = get(owner.clone(), "/api/groups").await.body;
    let rebuilt = json_line(&easm(&store, &["projections", "rebuild"]));
    assert_eq!(rebuilt["rebuilt"], true);
    assert!(rebuilt["events"].as_u64().unwrap() >= 5);
    assert_eq!(get(owner.clone(), "/api/groups").await.body, before);

    let bad = Command::new(env!("CARGO_BIN_EXE_easm"))
        .args(["admin", "create-key", "--org", &org_id, "--role", "root"])
        .envs(store.env())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert_eq!(stop(server), "", "--no-bootstrap prints no key");
}

/// Read a running server's stdout until `marker` appears; the server keeps running.
pub(crate) fn read_until(server: &mut Child, marker: &str) -> String {
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut text = String::new();
    while !text.contains(marker) {
        assert!(
            stdout.read_line(&mut text).unwrap() > 0,
            "server output: {text}"
        );
    }
    text
}

async fn serve_bootstraps_once(b: Backend) {
    let store = TestStore::new(b).await;
    let (mut server, addr) = serve(&store, &[]);
    let text = read_until(&mut server, "curl");
    let key = text
        .split_whitespace()
        .find(|w| w.starts_with("ag_sk_"))
        .expect("owner key printed")
        .to_string();
    assert!(
        text.contains(&format!("curl -H \"X-API-Key: {key}\"")),
        "{text}"
    );
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/api/org"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    let info = answer(r).await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.body["name"], "default");
    server.kill().unwrap();
    let _ = server.wait();

    // A second start finds the organization and prints no key.
    let (server, _) = serve(&store, &[]);
    let out = stop(server);
    assert!(!out.contains("ag_sk_"), "{out}");
}

/// Long work shows its progress on a terminal (run here under `script`, which gives the command a
/// pseudo-terminal) and nothing when standard error is a pipe, while the output itself is the
/// same.
#[tokio::test]
async fn long_commands_show_progress_on_a_terminal_only() {
    let store = TestStore::new(Backend::Sqlite).await;
    let app = spawn_on(store).await;
    let (org, _) = app.org(easm_domain::Plan::Pro).await;
    let store = app.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let (piped_file, tty_file) = (
        dir.path().join("piped.ndjson"),
        dir.path().join("tty.ndjson"),
    );
    let export = |out: &std::path::Path| {
        vec![
            env!("CARGO_BIN_EXE_easm").to_string(),
            "audit".into(),
            "export".into(),
            "--org".into(),
            org.to_string(),
            "--out".into(),
            out.display().to_string(),
        ]
    };
    let piped = Command::new(&export(&piped_file)[0])
        .args(&export(&piped_file)[1..])
        .envs(store.env())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert!(
        !String::from_utf8_lossy(&piped.stderr).contains("exporting"),
        "no progress into a pipe: {}",
        String::from_utf8_lossy(&piped.stderr)
    );
    let shell_line = export(&tty_file)
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let tty = Command::new("script")
        .args(["-qec", &shell_line, "/dev/null"])
        .envs(store.env())
        .env("RUST_LOG", "warn")
        .env("TERM", "xterm")
        .output()
        .unwrap();
    assert!(tty.status.success(), "{tty:?}");
    let screen = String::from_utf8_lossy(&tty.stdout);
    assert!(
        screen.contains("exporting the audit log") && screen.contains("lines"),
        "progress on the terminal: {screen}"
    );
    let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
    assert!(lines(&tty_file) > 1);
    assert_eq!(lines(&tty_file), lines(&piped_file));
}
