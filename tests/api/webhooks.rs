use crate::helpers::*;
use crate::on_both_backends;
use base64::Engine;
use easm_domain::{Plan, Role};
use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(
    a_new_endpoint_shows_its_secret_once,
    a_patch_changes_what_it_names,
    a_rotated_secret_signs_beside_the_old_one_for_a_grace_period,
    endpoints_need_an_admin_and_stay_in_their_organization,
    a_deleted_endpoint_forgets_its_secrets,
    webhook_targets_are_guarded_against_ssrf
);

/// An enterprise organization with one endpoint for `finding.*` and `scan.completed`.
struct Endpoint {
    t: Tenant,
    id: String,
    secret: String,
    created: Answer,
}

impl Endpoint {
    async fn new(b: Backend) -> Endpoint {
        let t = Tenant::new(b, Plan::Enterprise, "Hooks").await;
        let created = t
            .post("/api/webhooks", json!({"url": "https://93.184.216.34/hook", "events": ["finding.*", "scan.completed"], "description": "SIEM"}))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        Endpoint {
            id: created.id(),
            secret: created.body["secret"].as_str().unwrap().to_string(),
            created,
            t,
        }
    }

    fn path(&self) -> String {
        format!("/api/webhooks/{}", self.id)
    }

    async fn rotate(&self) -> Answer {
        self.t
            .post(&format!("{}/rotate-secret", self.path()), json!({}))
            .await
    }
}

async fn a_new_endpoint_shows_its_secret_once(b: Backend) {
    let e = Endpoint::new(b).await;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(e.secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    assert_eq!(raw.len(), 32);
    assert_eq!(
        e.created.body["events"],
        json!(["finding.*", "scan.completed"])
    );
    assert_eq!(e.created.body["enabled"], true);
    let got = e.t.get(&e.path()).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body.get("secret").is_none(), "the secret is shown once");
    let list = e.t.get("/api/webhooks").await;
    assert_eq!(list.body["total"], 1);
    assert!(!list.body.to_string().contains(&e.secret));
    e.rotate().await;
    let in_log: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE data LIKE '%whsec_%'")
        .fetch_one(e.t.app.db.reader())
        .await
        .unwrap();
    assert_eq!(in_log, 0, "secrets never enter the event log");
}

async fn a_patch_changes_what_it_names(b: Backend) {
    let e = Endpoint::new(b).await;
    let patched =
        e.t.patch(&e.path(), json!({"enabled": false, "events": ["*"]}))
            .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["enabled"], false);
    assert_eq!(patched.body["events"], json!(["*"]));
    assert_eq!(patched.body["description"], "SIEM");
}

/// Receivers verify with the Standard Webhooks library, with either secret while both sign.
async fn a_rotated_secret_signs_beside_the_old_one_for_a_grace_period(b: Backend) {
    let e = Endpoint::new(b).await;
    let (app, id, secret) = (&e.t.app, &e.id, &e.secret);
    let rotated = e.rotate().await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new_secret = rotated.body["secret"].as_str().unwrap().to_string();
    assert_ne!(&new_secret, secret);
    assert!(rotated.body["secretRotatedAt"].is_string());
    let active = app
        .state
        .commands
        .secrets()
        .active(&id.as_str().into())
        .await
        .unwrap();
    assert_eq!(
        active,
        vec![new_secret.clone(), secret.clone()],
        "both sign during the grace period"
    );
    // The organization's own feed: the global one waits for every open transaction of the
    // cluster (other tests' too).
    let created_event = easm_store::EventLog::new(app.db.clone())
        .org_after(&e.t.org, 0, 1000, &Default::default())
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_type == "webhook.created")
        .unwrap();
    let body = easm_events::payload(&created_event).to_string();
    let msg_id = easm_events::message_id(&created_event, id);
    let ts = chrono::Utc::now().timestamp();
    let header = easm_delivery::sign(&active, &msg_id, ts, body.as_bytes()).unwrap();
    for s in [secret, &new_secret] {
        assert_eq!(
            verify_with_standardwebhooks(s, &msg_id, ts, &header, &body),
            "ok"
        );
    }
    assert_ne!(
        verify_with_standardwebhooks(secret, &msg_id, ts, &header, &body.replace("SIEM", "x")),
        "ok"
    );
}

async fn endpoints_need_an_admin_and_stay_in_their_organization(b: Backend) {
    let e = Endpoint::new(b).await;
    let analyst = e.t.key_of(Role::Analyst).await;
    let app = &e.t.app;
    assert_eq!(
        app.get(&analyst, "/api/webhooks").await.status,
        StatusCode::FORBIDDEN
    );
    let (_, other) = app.org(Plan::Pro).await;
    assert_eq!(
        app.get(&other, &e.path()).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&other, &e.path()).await.status,
        StatusCode::NOT_FOUND
    );
}

/// The read model rebuilds to the same rows; a deleted endpoint takes its secrets with it.
async fn a_deleted_endpoint_forgets_its_secrets(b: Backend) {
    let e = Endpoint::new(b).await;
    e.t.patch(&e.path(), json!({"enabled": false})).await;
    e.rotate().await;
    let app = &e.t.app;
    let before = app.state.read().dump().await.unwrap();
    app.state.commands.projector().rebuild().await.unwrap();
    assert_eq!(app.state.read().dump().await.unwrap(), before);

    assert_eq!(e.t.delete(&e.path()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(e.t.get(&e.path()).await.status, StatusCode::NOT_FOUND);
    assert!(app
        .state
        .commands
        .secrets()
        .active(&e.id.as_str().into())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(e.rotate().await.status, StatusCode::NOT_FOUND);
}

async fn webhook_targets_are_guarded_against_ssrf(b: Backend) {
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Enterprise).await;
    let refused = [
        (
            json!({"url": "https://127.0.0.1/hook", "events": ["scan.completed"]}),
            "url",
        ),
        (
            json!({"url": "https://10.1.2.3/hook", "events": ["scan.completed"]}),
            "url",
        ),
        (
            json!({"url": "https://169.254.169.254/latest", "events": ["scan.completed"]}),
            "url",
        ),
        (
            json!({"url": "https://[::1]/hook", "events": ["scan.completed"]}),
            "url",
        ),
        (
            json!({"url": "https://localhost/hook", "events": ["scan.completed"]}),
            "url",
        ),
        (
            json!({"url": "http://93.184.216.34/hook", "events": ["scan.completed"]}),
            "url",
        ),
        (json!({"events": ["scan.completed"]}), "url"),
        (
            json!({"url": "https://93.184.216.34/hook", "events": ["planet.exploded"]}),
            "events",
        ),
        (
            json!({"url": "https://93.184.216.34/hook", "events": []}),
            "events",
        ),
        (
            json!({"url": "https://93.184.216.34/hook", "events": ["scan.*"], "enabled": "yes"}),
            "enabled",
        ),
    ];
    for (body, field) in refused {
        let r = app.post(&key, "/api/webhooks", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert_eq!(r.body["field"], field, "{body}: {}", r.body);
    }
    assert_eq!(app.get(&key, "/api/webhooks").await.body["total"], 0);
    let ok = app
        .post(
            &key,
            "/api/webhooks",
            json!({"url": "https://93.184.216.34/hook", "events": ["scan.*"]}),
        )
        .await;
    let id = ok.id();
    let moved = app
        .patch(
            &key,
            &format!("/api/webhooks/{id}"),
            json!({"url": "https://192.168.0.10/"}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.get(&key, &format!("/api/webhooks/{id}")).await.body["url"],
        "https://93.184.216.34/hook"
    );

    // EASM_WEBHOOK_ALLOW_PRIVATE lets tests and local receivers use http on 127.0.0.1.
    let store = app.stop().await;
    let app = spawn_configured(store, |s| s.webhook_allow_private = true).await;
    let local = app
        .post(
            &key,
            "/api/webhooks",
            json!({"url": "http://127.0.0.1:9/hook", "events": ["asset.added"]}),
        )
        .await;
    assert_eq!(local.status, StatusCode::CREATED, "{}", local.body);
}

/// Run the `standardwebhooks` Python package (installed by .ci/run) as a receiver would.
fn verify_with_standardwebhooks(
    secret: &str,
    id: &str,
    ts: i64,
    signature: &str,
    body: &str,
) -> String {
    let script = r#"
import sys
from standardwebhooks import Webhook
secret, id, ts, sig, body = sys.argv[1:6]
try:
    Webhook(secret).verify(body, {"webhook-id": id, "webhook-timestamp": ts, "webhook-signature": sig})
    print("ok")
except Exception as e:
    print("rejected:", e)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, secret, id, &ts.to_string(), signature, body])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
