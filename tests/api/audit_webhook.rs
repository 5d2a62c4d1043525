//! The organization's audit log webhook (`/api/settings/audit-webhook`) end to end: set up apart
//! from the regular endpoints, it forwards every accepted command as a signed `audit.*` message,
//! rotates its secret, is tested and keeps its delivery log when removed, and is for owners on
//! plans with the audit log. On SQLite, and on PostgreSQL with NATS.

use crate::delivery::{Setup, WAIT};
use crate::helpers::*;
use crate::on_sqlite_and_nats;
use crate::receiver::{Received, Receiver};
use easm_api::AppState;
use easm_domain::Plan;
use easm_store::Db;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};

on_sqlite_and_nats!(
    the_audit_webhook_is_set_up_apart_from_the_regular_endpoints,
    the_audit_webhook_forwards_every_accepted_command,
    the_audit_webhook_rotates_is_tested_and_keeps_its_log_when_removed,
    the_audit_webhook_is_for_owners_on_plans_with_the_audit_log,
    mcp_tool_calls_reach_the_audit_webhook,
);

const PATH: &str = "/api/settings/audit-webhook";

/// An organization whose audit webhook points at a receiver.
struct AuditHook {
    s: Setup,
    receiver: Receiver,
    secret: String,
    /// The answer that created it.
    created: Answer,
}

impl AuditHook {
    async fn new(b: Backend, nats: bool) -> AuditHook {
        let s = Setup::start(b, nats, &[]).await;
        let receiver = Receiver::start().await;
        assert_eq!(s.get(PATH).await.status, StatusCode::NOT_FOUND);
        let no_url = s
            .call(Method::PUT, PATH, Some(json!({"enabled": true})))
            .await;
        // Nothing to change yet, and nothing to create it from: the OpenAPI document cannot
        // call that body invalid, since the same body changes an existing webhook.
        assert_eq!(no_url.status, StatusCode::NOT_FOUND, "{}", no_url.body);
        let created = s
            .call(
                Method::PUT,
                PATH,
                Some(json!({"url": receiver.url, "enabled": true})),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let secret = created.body["secret"].as_str().unwrap().to_string();
        AuditHook {
            s,
            receiver,
            secret,
            created,
        }
    }

    /// A group created with the request id `request_id`; answers its id.
    async fn group(&self, request_id: &str) -> String {
        let url = self.s.server.as_ref().unwrap().url("/api/groups");
        let g = answer(
            self.s
                .http
                .post(url)
                .header("X-API-Key", &self.s.key)
                .header("X-Request-Id", request_id)
                .json(&json!({"name": "Audited"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(g.status, StatusCode::CREATED);
        g.id()
    }

    /// The first message of `kind` the receiver got.
    async fn message(&self, kind: &str) -> Received {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self
                .receiver
                .received()
                .into_iter()
                .find(|r| r.json()["type"] == kind);
            if let Some(r) = found {
                return r;
            }
            assert!(Instant::now() < deadline, "no {kind}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn the_audit_webhook_is_set_up_apart_from_the_regular_endpoints(b: Backend, nats: bool) {
    let h = AuditHook::new(b, nats).await;
    assert!(h.secret.starts_with("whsec_") && h.secret.len() > 40);
    assert_eq!(h.created.body["events"], json!(["audit.*"]));
    let shown = h.s.get(PATH).await;
    assert_eq!(
        shown.body["secret"],
        format!("whsec_...{}", &h.secret[h.secret.len() - 4..])
    );
    // Not one of the regular endpoints.
    assert_eq!(h.s.get("/api/webhooks").await.body["total"], 0);
    let hidden = h.s.get(&format!("/api/webhooks/audit-{}", h.s.org)).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
}

async fn the_audit_webhook_forwards_every_accepted_command(b: Backend, nats: bool) {
    let h = AuditHook::new(b, nats).await;
    let group = h.group("audit-req-1").await;
    let audit = h.message("audit.group.created").await;
    let id = audit.header("webhook-id");
    assert!(id.starts_with("aud_"));
    let ts: i64 = audit.header("webhook-timestamp").parse().unwrap();
    assert_eq!(
        audit.header("webhook-signature"),
        easm_delivery::sign(
            std::slice::from_ref(&h.secret),
            id,
            ts,
            audit.body.as_bytes()
        )
        .unwrap()
    );
    let data = &audit.json()["data"];
    assert_eq!(data["action"], "group.created");
    assert_eq!(data["actor"]["kind"], "api_key");
    assert_eq!(data["actor"]["role"], "owner");
    assert_eq!(data["actor"]["sourceIp"], "127.0.0.1");
    assert_eq!(data["requestId"], "audit-req-1");
    assert_eq!(data["resource"], json!({"type": "group", "id": group}));
    assert_eq!(data["details"]["name"], "Audited");
    assert_eq!(data["orgId"], h.s.org.as_str());
}

async fn the_audit_webhook_rotates_is_tested_and_keeps_its_log_when_removed(
    b: Backend,
    nats: bool,
) {
    let h = AuditHook::new(b, nats).await;
    h.group("audit-req-2").await;
    h.message("audit.group.created").await;
    let rotated =
        h.s.call(Method::PUT, PATH, Some(json!({"regenerateSecret": true})))
            .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new_secret = rotated.body["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != h.secret);
    // The test answers what the receiver answered.
    let test = h.s.post(&format!("{PATH}/test"), json!({})).await;
    assert_eq!(test.status, StatusCode::OK, "{}", test.body);
    assert_eq!(test.body["status"], "succeeded", "{}", test.body);
    assert_eq!(test.body["attempts"][0]["statusCode"], 200, "{}", test.body);
    let deliveries = h.s.get(&format!("{PATH}/deliveries?perPage=100")).await;
    assert_eq!(deliveries.status, StatusCode::OK);
    assert!(deliveries.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["eventType"] == "audit.group.created"));
    let removed = h.s.call(Method::DELETE, PATH, None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(h.s.get(PATH).await.status, StatusCode::NOT_FOUND);
    // Its delivery log stays.
    let kept = h.s.get(&format!("{PATH}/deliveries")).await;
    assert!(kept.body["total"].as_i64().unwrap() >= 2);
}

async fn the_audit_webhook_is_for_owners_on_plans_with_the_audit_log(b: Backend, nats: bool) {
    let h = AuditHook::new(b, nats).await;
    let db = Db::connect(&h.s.store.config).await.unwrap();
    let commands = AppState::new(db.clone()).commands;
    let admin = commands
        .create_key(
            &system_meta(),
            &h.s.org,
            easm_app::KeyOrder::rest(Some(easm_domain::Role::Admin), "admin", None),
        )
        .await
        .unwrap();
    let (_, free_owner) = commands
        .create_org(&system_meta(), "Free", Plan::Free)
        .await
        .unwrap();
    db.close().await;
    for (key, status) in [
        (admin.secret, StatusCode::FORBIDDEN),
        (free_owner.secret, StatusCode::PAYMENT_REQUIRED),
    ] {
        let a = answer(
            h.s.http
                .get(h.s.server.as_ref().unwrap().url(PATH))
                .header("X-API-Key", key)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, status, "{}", a.body);
    }
}

async fn mcp_tool_calls_reach_the_audit_webhook(b: Backend, nats: bool) {
    let h = AuditHook::new(b, nats).await;
    let made = h.s.post("/api/mcp-keys", json!({"name": "claude"})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let url = h.s.server.as_ref().unwrap().url("/mcp");
    let mcp = crate::mcp::Mcp::new(url, made.body["key"].as_str().unwrap());
    let answer = mcp
        .call("count_findings", json!({"severity": "high"}))
        .await;
    assert!(answer["result"].is_object(), "{answer}");
    let audit = h.message("audit.mcp.tool_called").await;
    let data = &audit.json()["data"];
    assert_eq!(data["actor"]["kind"], "mcp_key");
    assert_eq!(data["actor"]["id"], made.id().as_str());
    assert_eq!(
        data["resource"],
        json!({"type": "mcp", "id": "count_findings"})
    );
    assert_eq!(data["details"]["arguments"], json!({"severity": "high"}));
    assert_eq!(data["details"]["outcome"], "success");
}
