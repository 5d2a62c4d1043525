//! The log as auditors read it: the event feed (pages and a live stream, complete under
//! concurrent writes) and the verifiable export, checked by `easm audit verify` and by the
//! Python verifier of the docs, which must name the exact line of every kind of edit.

use crate::helpers::*;
use crate::on_both_backends;
use easm_domain::{Plan, Role};
use easm_events::OrgId;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::process::Command;

on_both_backends!(
    the_feed_gives_every_event_once_in_order_under_concurrent_writes,
    the_feed_streams_live_and_resumes_from_the_last_event_id,
    an_export_holds_every_event_and_a_signed_digest,
    every_edit_of_an_export_is_named_by_its_line,
    a_stock_jcs_implementation_recomputes_every_hash,
    a_range_exported_from_the_cli_verifies,
    as_of_queries_answer_as_the_read_models_were_then,
    a_replay_writes_the_read_models_of_a_moment_to_a_file,
    verify_names_an_edited_read_model_row,
    refused_requests_of_known_keys_are_in_the_trail,
    a_change_is_recorded_with_its_before_and_after,
    the_trail_is_filtered_by_resource_actor_and_category,
    reading_the_trail_needs_an_admin_and_a_refusal_is_recorded,
);

/// Every event after `after`, following the cursor.
async fn follow(app: &TestApp, key: &str, after: i64, query: &str) -> (Vec<Value>, i64) {
    let mut cursor = after;
    let mut all = vec![];
    loop {
        let a = app
            .get(key, &format!("/api/events?after={cursor}&limit=7{query}"))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let items = a.body["items"].as_array().unwrap().clone();
        cursor = a.body["nextAfter"].as_i64().unwrap();
        if items.is_empty() {
            return (all, cursor);
        }
        all.extend(items);
    }
}

async fn the_feed_gives_every_event_once_in_order_under_concurrent_writes(b: Backend) {
    let app = spawn_app(b).await;
    let (_, owner) = app.org(Plan::Enterprise).await;
    let (_, other_org_key) = app.org(Plan::Enterprise).await;
    app.group(&other_org_key, "Not ours").await;
    let viewer = {
        let (org, _) = (app.get(&owner, "/api/org").await.body["id"].clone(), ());
        app.key(&org.as_str().unwrap().into(), Role::Viewer).await
    };
    assert_eq!(
        app.get(&viewer, "/api/events").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&owner, "/api/events?limit=0").await.status,
        StatusCode::BAD_REQUEST
    );

    // Writers and a follower at the same time.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, url, key) = (app.client.clone(), app.url("/api/groups"), owner.clone());
            tokio::spawn(async move {
                for i in 0..12 {
                    let r = client
                        .post(&url)
                        .header("X-API-Key", &key)
                        .json(&json!({"name": format!("w{w}-{i}")}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::CREATED);
                }
            })
        })
        .collect();
    let mut seen = vec![];
    let mut cursor = 0;
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        let (items, next) = follow(&app, &owner, cursor, "").await;
        seen.extend(items);
        cursor = next;
        if done {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    let (rest, _) = follow(&app, &owner, cursor, "").await;
    seen.extend(rest);

    let positions: Vec<i64> = seen
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in order, once");
    let (everything, _) = follow(&app, &owner, 0, "").await;
    assert_eq!(
        seen, everything,
        "the follower saw exactly what the log holds"
    );
    let groups = seen.iter().filter(|e| e["type"] == "group.created").count();
    assert_eq!(groups, 48);
    assert!(seen.iter().all(|e| e["data"]["name"] != "Not ours"));
    let chain: Vec<i64> = seen
        .iter()
        .map(|e| e["chainSeq"].as_i64().unwrap())
        .collect();
    assert_eq!(chain.iter().collect::<HashSet<_>>().len(), chain.len());

    let (only, _) = follow(&app, &owner, 0, "&type=group.created").await;
    assert_eq!(only.len(), 48);
    let stream = only[0]["streamId"].as_str().unwrap().to_string();
    let (one, _) = follow(&app, &owner, 0, &format!("&stream={stream}")).await;
    assert_eq!(one.len(), 1);
}

async fn the_feed_streams_live_and_resumes_from_the_last_event_id(b: Backend) {
    let app = spawn_app(b).await;
    let (_, owner) = app.org(Plan::Enterprise).await;
    let (existing, _) = follow(&app, &owner, 0, "").await;
    let res = app
        .client
        .get(app.url("/api/events"))
        .header("X-API-Key", &owner)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    app.group(&owner, "Live one").await;
    app.group(&owner, "Live two").await;
    let want = existing.len() + 2;
    let mut body = res;
    let mut text = String::new();
    let mut ids = vec![];
    while ids.len() < want {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), body.chunk())
            .await
            .expect("events arrive")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        ids = text
            .lines()
            .filter_map(|l| l.strip_prefix("id:"))
            .map(|i| i.trim().parse::<i64>().unwrap())
            .collect();
    }
    assert!(text.contains("event: group.created"), "{text}");
    assert!(text.contains("Live two"));
    // Resume after the first event: the rest, and nothing before.
    let res = app
        .client
        .get(app.url("/api/events"))
        .header("X-API-Key", &owner)
        .header("Accept", "text/event-stream")
        .header("Last-Event-ID", ids[0].to_string())
        .send()
        .await
        .unwrap();
    let mut body = res;
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), body.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let first: i64 = String::from_utf8_lossy(&chunk)
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(first, ids[1]);
}

fn easm(store: &TestStore, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_easm"))
        .args(args)
        .envs(store.env())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// (exit code, report) of both verifiers, which must agree.
pub(crate) fn verify_both(store: &TestStore, lines: &[String], key: &str) -> (bool, Value) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let path = file.to_str().unwrap();
    let ours = easm(store, &["audit", "verify", path, "--public-key", key]);
    let report: Value = serde_json::from_slice(&ours.stdout).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/verify_audit_export.py"
    );
    let theirs = Command::new("python3")
        .args([script, path, key])
        .output()
        .unwrap();
    let python: Value = serde_json::from_slice(&theirs.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&theirs.stderr)));
    assert_eq!(
        ours.status.success(),
        theirs.status.success(),
        "{report} {python}"
    );
    assert_eq!(report["valid"], python["valid"]);
    assert_eq!(report["line"], python["line"], "{report} {python}");
    (ours.status.success(), report)
}

/// The organization's audit export through the API, line by line.
pub(crate) async fn export_lines(app: &TestApp, key: &str) -> Vec<String> {
    let res = app
        .client
        .get(app.url("/api/audit-log/export"))
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let text = res.text().await.unwrap();
    text.lines().map(str::to_string).collect()
}

/// An enterprise organization with a group whose name needs escaping and three assets, its
/// export through the API (`lines`), its events as the feed gives them, and the server's public
/// key.
struct Exported {
    app: TestApp,
    org: OrgId,
    public: String,
    lines: Vec<String>,
    everything: Vec<Value>,
}

impl Exported {
    async fn new(b: Backend) -> Exported {
        let app = spawn_app(b).await;
        let (org, owner) = app.org(Plan::Enterprise).await;
        let g = app.group(&owner, "Équipe \"rouge\" ✓ \\ tab\t").await;
        for v in ["a.example.com", "b.example.com", "10.0.0.0/24"] {
            let ty = if v.contains('/') { "cidr" } else { "domain" };
            app.asset(&owner, &g, v, ty).await;
        }
        let key = app.get(&owner, "/api/settings/audit-signing-key").await;
        assert_eq!(key.body["algorithm"], "ed25519");
        let public = key.body["publicKey"].as_str().unwrap().to_string();
        let analyst = app.key(&org, Role::Analyst).await;
        let denied = app.get(&analyst, "/api/audit-log/export").await;
        assert_eq!(denied.status, StatusCode::FORBIDDEN);
        let lines = export_lines(&app, &owner).await;
        let (everything, _) = follow(&app, &owner, 0, "").await;
        Exported {
            app,
            org,
            public,
            lines,
            everything,
        }
    }

    fn verify(&self, lines: &[String]) -> (bool, Value) {
        verify_both(&self.app.store, lines, &self.public)
    }
}

async fn an_export_holds_every_event_and_a_signed_digest(b: Backend) {
    let e = Exported::new(b).await;
    let cli_key = easm(&e.app.store, &["audit", "public-key"]);
    assert_eq!(String::from_utf8_lossy(&cli_key.stdout).trim(), e.public);
    assert_eq!(
        e.lines.len(),
        e.everything.len() + 1,
        "every event and the digest"
    );
    let digest: Value = serde_json::from_str(e.lines.last().unwrap()).unwrap();
    assert_eq!(digest["count"], e.everything.len());
    assert_eq!(digest["orgId"], e.org.as_str());
    let (ok, report) = e.verify(&e.lines);
    assert!(ok, "{report}");
    assert_eq!(report["events"], e.everything.len());
}

/// The chain's encoding is RFC 8785: the `jcs` package (a stock implementation, not ours)
/// recomputes the hash of every exported event, a finding with a CVSS score of 10.0 among them,
/// which serde_json writes `10.0` and JCS `10`; both of our verifiers agree.
async fn a_stock_jcs_implementation_recomputes_every_hash(b: Backend) {
    let app = spawn_app(b).await;
    let (_, owner) = app.org(Plan::Enterprise).await;
    let g = app.group(&owner, "JCS ✓ \u{1f600} \u{e000}").await;
    let asset = app.asset(&owner, &g, "127.0.0.1", "ip").await;
    let job = crate::findings::new_job(&app, &owner, &asset, "quick").await;
    let results = crate::findings::NUCLEI.replace(r#""cvss-score":7.5"#, r#""cvss-score":10.0"#);
    let imported = crate::findings::import(&app, &owner, &job, &results).await;
    assert!(imported.status.is_success(), "{}", imported.body);
    let key = app.get(&owner, "/api/settings/audit-signing-key").await;
    let public = key.body["publicKey"].as_str().unwrap().to_string();
    let export = app
        .client
        .get(app.url("/api/audit-log/export"))
        .header("X-API-Key", &owner)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(export.contains(r#""cvssScore":10.0"#), "{export}");
    let checked = run_python(
        r#"
import hashlib, json, sys
import jcs
n = 0
for line in sys.stdin:
    item = json.loads(line)
    if "digest" in item:
        continue
    digest, prev = item.pop("hash"), item.pop("prevHash")
    item.pop("position")
    computed = hashlib.sha256(prev.encode() + b"\n" + jcs.canonicalize(item)).hexdigest()
    assert computed == digest, line
    n += 1
print(n)
"#,
        &export,
    );
    let lines: Vec<String> = export.lines().map(str::to_string).collect();
    assert_eq!(checked, [(lines.len() - 1).to_string()]);
    let (ok, report) = verify_both(&app.store, &lines, &public);
    assert!(ok, "{report}");
}

async fn every_edit_of_an_export_is_named_by_its_line(b: Backend) {
    let e = Exported::new(b).await;
    let lines = &e.lines;
    // Whitespace is not an edit: the hashed form is canonical.
    let mut spaced = lines.clone();
    spaced[2] = spaced[2].replacen("\"chainSeq\":", "\"chainSeq\": ", 1);
    assert!(e.verify(&spaced).0);
    let mut modified = lines.clone();
    let asset_line = lines
        .iter()
        .position(|l| l.contains("a.example.com"))
        .unwrap();
    modified[asset_line] = modified[asset_line].replace("a.example.com", "z.example.com");
    let mut group_renamed = lines.clone();
    let group_line = lines.iter().position(|l| l.contains("rouge")).unwrap();
    group_renamed[group_line] = group_renamed[group_line].replace("rouge", "bleu");
    let mut removed = lines.clone();
    removed.remove(3);
    let mut inserted = lines.clone();
    inserted.insert(3, lines[1].clone());
    let mut reordered = lines.clone();
    reordered.swap(3, 4);
    let mut resigned_count = lines.clone();
    let n = resigned_count.len();
    let count = e.everything.len();
    resigned_count[n - 1] = resigned_count[n - 1].replace(
        &format!("\"count\":{count}"),
        &format!("\"count\":{}", count - 1),
    );
    for (edited, line) in [
        (modified, asset_line + 1),
        (group_renamed, group_line + 1),
        (removed, 4),
        (inserted, 4),
        (reordered, 4),
        (resigned_count, n),
    ] {
        let (ok, report) = e.verify(&edited);
        assert!(!ok);
        assert_eq!(report["line"], line, "{report}");
    }
}

/// The CLI export of a time range verifies too, anchored where the range starts.
async fn a_range_exported_from_the_cli_verifies(b: Backend) {
    let e = Exported::new(b).await;
    let since = e.everything[2]["occurredAt"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("range.ndjson");
    let exported = easm(
        &e.app.store,
        &[
            "audit",
            "export",
            "--org",
            e.org.as_str(),
            "--since",
            &since,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let range: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(range.len() < e.lines.len());
    let first: Value = serde_json::from_str(&range[0]).unwrap();
    assert!(first["occurredAt"].as_str().unwrap() >= since.as_str());
    let (ok, report) = e.verify(&range);
    assert!(ok, "{report}");
}

/// A moment between two writes.
async fn moment() -> String {
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let t = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    t
}

fn values(a: &Answer) -> Vec<String> {
    let mut v: Vec<String> = a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["value"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// An organization whose asset `first.example.com` was added, then `second.example.com`
/// (`before_second` is a moment between them), then the first removed; a quick scan of the
/// second imported `NUCLEI` (`while_open` is a moment after it), then its critical finding
/// resolved.
struct History {
    app: TestApp,
    org: OrgId,
    key: String,
    before_second: String,
    while_open: String,
    critical: String,
}

impl History {
    async fn new(b: Backend) -> History {
        let app = spawn_app(b).await;
        let (org, key) = app.org(Plan::Enterprise).await;
        let g = app.group(&key, "Web").await;
        let first = app.asset(&key, &g, "first.example.com", "domain").await;
        let before_second = moment().await;
        app.asset(&key, &g, "second.example.com", "domain").await;
        let removed = app.delete(&key, &format!("/api/assets/{first}")).await;
        assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
        let second = app.get(&key, "/api/assets").await.body["items"][0]["id"].clone();
        let job = app
            .post(
                &key,
                "/api/scan-jobs",
                json!({"asset_id": second, "profile": "quick"}),
            )
            .await
            .id();
        let imported = crate::findings::import(&app, &key, &job, crate::findings::NUCLEI).await;
        assert_eq!(imported.status, StatusCode::OK, "{}", imported.body);
        let while_open = moment().await;
        let critical = app.get(&key, "/api/findings?severity=critical").await.body["items"][0]
            ["id"]
            .as_str()
            .unwrap()
            .to_string();
        let resolved = app
            .patch(
                &key,
                &format!("/api/findings/{critical}"),
                json!({"status": "resolved"}),
            )
            .await;
        assert_eq!(resolved.status, StatusCode::OK);
        History {
            app,
            org,
            key,
            before_second,
            while_open,
            critical,
        }
    }
}

async fn as_of_queries_answer_as_the_read_models_were_then(b: Backend) {
    let h = History::new(b).await;
    let (app, key) = (&h.app, &h.key);
    let then = app
        .get(key, &format!("/api/assets?asOf={}", h.before_second))
        .await;
    assert_eq!(then.status, StatusCode::OK, "{}", then.body);
    assert_eq!(values(&then), vec!["first.example.com"]);
    assert_eq!(
        values(&app.get(key, "/api/assets").await),
        vec!["second.example.com"]
    );
    let open_then = app
        .get(
            key,
            &format!(
                "/api/findings?severity=critical&status=open&asOf={}",
                h.while_open
            ),
        )
        .await;
    assert_eq!(open_then.body["total"], 1, "{}", open_then.body);
    let open_now = app
        .get(key, "/api/findings?severity=critical&status=open")
        .await;
    assert_eq!(open_now.body["total"], 0);
    let bad = app.get(key, "/api/assets?asOf=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

/// The same moment as a snapshot file.
async fn a_replay_writes_the_read_models_of_a_moment_to_a_file(b: Backend) {
    let h = History::new(b).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("snapshot.db");
    let replayed = easm(
        &h.app.store,
        &[
            "replay",
            "--org",
            h.org.as_str(),
            "--until",
            &h.before_second,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let report: Value = serde_json::from_slice(&replayed.stdout).unwrap();
    assert!(report["events"].as_u64().unwrap() >= 4);
    let snapshot = easm_store::Db::connect(&easm_store::DbConfig::Sqlite { path: out.clone() })
        .await
        .unwrap();
    let assets = easm_projections::ReadModels::new(snapshot.clone())
        .assets(
            &h.org,
            &Default::default(),
            easm_projections::read::PageRequest {
                page: 1,
                per_page: 50,
            },
        )
        .await
        .unwrap();
    let names: Vec<&str> = assets.items.iter().map(|a| a.value.as_str()).collect();
    assert_eq!(names, vec!["first.example.com"]);
    snapshot.close().await;
}

/// The live read models agree with the log, until someone edits them.
async fn verify_names_an_edited_read_model_row(b: Backend) {
    let h = History::new(b).await;
    let verified = easm(&h.app.store, &["projections", "verify"]);
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    sqlx::query("UPDATE rm_findings SET status = 'ignored' WHERE finding_id = $1")
        .bind(&h.critical)
        .execute(h.app.db.writer())
        .await
        .unwrap();
    let verified = easm(&h.app.store, &["projections", "verify"]);
    assert_eq!(verified.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(report["verified"], false);
    let diffs = report["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 2, "{report}");
    assert!(diffs
        .iter()
        .all(|d| d["row"].as_str().unwrap().contains(&h.critical)));
}

/// An enterprise organization where, with a `User-Agent` of `audit-test/1.0`, the owner created
/// the group `Before` and renamed it `After`; a viewer key was refused deleting it (403), then
/// revoked and refused again (401); and a key nobody knows was refused.
struct Trail {
    app: TestApp,
    org: OrgId,
    owner: String,
    group: String,
    viewer: String,
    viewer_id: String,
}

impl Trail {
    async fn new(b: Backend) -> Trail {
        let app = spawn_app(b).await;
        let (org, owner) = app.org(Plan::Enterprise).await;
        let mut t = Trail {
            app,
            org,
            owner,
            group: String::new(),
            viewer: String::new(),
            viewer_id: String::new(),
        };
        let owner = t.owner.clone();
        t.group = t
            .send(
                Method::POST,
                &owner,
                "/api/groups",
                Some(json!({"name": "Before"})),
            )
            .await
            .id();
        let renamed = t
            .send(
                Method::PATCH,
                &owner,
                &format!("/api/groups/{}", t.group),
                Some(json!({"name": "After"})),
            )
            .await;
        assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
        t.viewer = t.app.key(&t.org, Role::Viewer).await;
        let refused = t
            .send(
                Method::DELETE,
                &t.viewer,
                &format!("/api/groups/{}", t.group),
                None,
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let keys = t.app.get(&owner, "/api/keys").await;
        t.viewer_id = keys.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["role"] == "viewer")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let revoked = t
            .app
            .delete(&owner, &format!("/api/keys/{}", t.viewer_id))
            .await;
        assert!(revoked.status.is_success(), "{}", revoked.body);
        let after_revoke = t.send(Method::GET, &t.viewer, "/api/assets", None).await;
        assert_eq!(after_revoke.status, StatusCode::UNAUTHORIZED);
        let unknown = t
            .send(Method::GET, "ag_sk_unknown", "/api/assets", None)
            .await;
        assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
        t
    }

    async fn send(&self, method: Method, key: &str, path: &str, body: Option<Value>) -> Answer {
        let mut req = self
            .app
            .client
            .request(method, self.app.url(path))
            .header("X-API-Key", key)
            .header("User-Agent", "audit-test/1.0");
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await.unwrap()).await
    }

    /// `GET /api/audit-log{query}` as the owner.
    async fn trail(&self, query: &str) -> Answer {
        self.app
            .get(&self.owner, &format!("/api/audit-log{query}"))
            .await
    }
}

async fn refused_requests_of_known_keys_are_in_the_trail(b: Backend) {
    let t = Trail::new(b).await;
    let denied = t.trail("?outcome=denied").await;
    assert_eq!(denied.status, StatusCode::OK, "{}", denied.body);
    assert_eq!(
        denied.body["total"], 2,
        "an unknown key is no one: {}",
        denied.body
    );
    let items = denied.body["items"].as_array().unwrap();
    let (revoked_try, forbidden) = (&items[0], &items[1]);
    assert_eq!(forbidden["action"], "access.denied");
    assert_eq!(forbidden["outcome"], "denied");
    assert_eq!(forbidden["details"]["status"], 403);
    assert_eq!(forbidden["details"]["method"], "DELETE");
    assert_eq!(
        forbidden["details"]["path"],
        format!("/api/groups/{}", t.group)
    );
    assert_eq!(forbidden["actor"]["id"], t.viewer_id.as_str());
    assert_eq!(forbidden["actor"]["role"], "viewer");
    assert_eq!(forbidden["actor"]["userAgent"], "audit-test/1.0");
    assert_eq!(forbidden["actor"]["sourceIp"], "127.0.0.1");
    assert!(t
        .viewer
        .starts_with(forbidden["actor"]["keyPrefix"].as_str().unwrap()));
    assert_eq!(revoked_try["details"]["status"], 401);
    assert_eq!(revoked_try["details"]["path"], "/api/assets");
}

async fn a_change_is_recorded_with_its_before_and_after(b: Backend) {
    let t = Trail::new(b).await;
    let rename = t.trail("?action=audit.group.renamed").await;
    assert_eq!(rename.body["total"], 1);
    let record = &rename.body["items"][0];
    assert_eq!(
        record["changes"]["name"],
        json!({"before": "Before", "after": "After"})
    );
    assert_eq!(record["outcome"], "success");
    assert_eq!(record["category"], "api");
    assert_eq!(record["resource"], json!({"type": "group", "id": t.group}));
    assert_eq!(record["actor"]["userAgent"], "audit-test/1.0");
}

async fn the_trail_is_filtered_by_resource_actor_and_category(b: Backend) {
    let t = Trail::new(b).await;
    let on_group = t
        .trail(&format!("?resource=group&resourceId={}", t.group))
        .await;
    assert_eq!(on_group.body["total"], 2, "{}", on_group.body);
    // An id is matched exactly, as the stream's resource or a string anywhere in the data, and
    // never read as a pattern.
    let on_key = t.trail(&format!("?resourceId={}", t.viewer_id)).await;
    let actions = on_key.items_field("action");
    for action in ["api_key.created", "api_key.revoked", "access.denied"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let any_family = t.trail("?resource=%25").await;
    assert_eq!(any_family.body["total"], 0, "{}", any_family.body);
    for pattern in ["%25", "_", "%25-%25", &t.viewer_id[..8]] {
        let matched = t.trail(&format!("?resourceId={pattern}")).await;
        assert_eq!(matched.body["total"], 0, "{pattern}: {}", matched.body);
    }
    let by_viewer = t.trail(&format!("?actor={}", t.viewer_id)).await;
    assert_eq!(by_viewer.body["total"], 2);
    let system = t.trail("?category=system").await;
    assert!(system.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["action"] == "org.created"));
    assert_eq!(
        t.trail("?outcome=maybe").await.status,
        StatusCode::BAD_REQUEST
    );
}

async fn reading_the_trail_needs_an_admin_and_a_refusal_is_recorded(b: Backend) {
    let t = Trail::new(b).await;
    let analyst = t.app.key(&t.org, Role::Analyst).await;
    assert_eq!(
        t.app.get(&analyst, "/api/audit-log").await.status,
        StatusCode::FORBIDDEN
    );
    let denied_again = t.trail("?outcome=denied").await;
    assert_eq!(
        denied_again.body["total"], 3,
        "reading the trail without the role is refused too"
    );
}
