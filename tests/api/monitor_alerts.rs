//! A monitor end to end through `easm serve`: its scheduled and manual scans of real servers on
//! 127.0.0.1 raise alerts when what answers changes, delivered as signed `alert.created` webhooks,
//! then acknowledged and resolved. On SQLite, and on PostgreSQL with NATS; each behaviour watches
//! the same change anew.

use crate::delivery::{Setup, WAIT};
use crate::helpers::Backend;
use crate::on_sqlite_and_nats;
use crate::receiver::Receiver;
use crate::targets;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

on_sqlite_and_nats!(
    a_monitor_runs_on_its_schedule_and_alerts_on_what_changed,
    alerts_reach_webhooks_signed,
    an_alert_is_acknowledged_then_resolved_once_and_audited,
    an_assistant_allowed_writes_acknowledges_an_alert_over_mcp,
);

/// A monitor of an IP that ran on schedule while a web server answered on `open`, then by hand
/// once the web server was gone and an SSH-like service answered on `later`.
struct Watched {
    s: Setup,
    receiver: Receiver,
    asset: String,
    monitor: String,
    open: u16,
    later: u16,
    /// The scan of the scheduled run.
    first: String,
    /// The scan of the run by hand.
    second: String,
    /// The monitor's record after its scheduled run.
    scheduled: Value,
}

impl Watched {
    async fn new(b: Backend, nats: bool) -> Watched {
        let s = Setup::start(
            b,
            nats,
            &[
                ("EASM_SCAN_ALLOW_PRIVATE", "true"),
                ("EASM_MONITOR_INTERVAL", "200ms"),
            ],
        )
        .await;
        let receiver = Receiver::start().await;
        s.webhook(&receiver.url, &["alert.created"]).await;
        let web = targets::http(
            None,
            Arc::new(|_| (200, vec![], "<title>Shop</title>".to_string())),
        )
        .await;
        let (open, later) = (web.port, free_port());
        let g = s.post("/api/groups", json!({"name": "Edge"})).await;
        let asset = s
            .post(
                &format!("/api/groups/{}/assets", g.id()),
                json!({"value": "127.0.0.1", "type": "ip"}),
            )
            .await
            .id();
        let m = s
            .post(
                "/api/monitors",
                json!({"assetId": asset, "frequencyHours": 1, "ports": [open, later]}),
            )
            .await;
        assert_eq!(m.status, StatusCode::CREATED, "{}", m.body);
        let monitor = m.id();
        let scheduled = monitor_when(&s, &monitor, |m| m["runCount"] == 1).await;
        let first = scheduled["lastScanJobIds"][0].as_str().unwrap().to_string();
        completed(&s, &first).await;
        let mut w = Watched {
            s,
            receiver,
            asset,
            monitor,
            open,
            later,
            first,
            second: String::new(),
            scheduled,
        };
        w.after_a_change(web).await;
        w
    }

    /// The web server goes away and an SSH-like service opens on the other port; the monitor
    /// is run by hand.
    async fn after_a_change(&mut self, web: targets::Target) {
        // The scheduler does not run it again within the hour.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let runs = self.s.get(&format!("/api/monitors/{}", self.monitor)).await;
        assert_eq!(runs.body["runCount"], 1);
        // A first observation has nothing to compare with.
        assert_eq!(self.s.get("/api/monitors/alerts").await.body["total"], 0);
        drop(web);
        let ssh = tokio::net::TcpListener::bind(("127.0.0.1", self.later))
            .await
            .unwrap();
        let banner = tokio::spawn(async move {
            while let Ok((mut c, _)) = ssh.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = c.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
            }
        });
        let path = format!("/api/monitors/{}/run", self.monitor);
        let run = self.s.post(&path, json!({})).await;
        assert_eq!(run.status, StatusCode::ACCEPTED, "{}", run.body);
        self.second = run.body["scanJobIds"][0].as_str().unwrap().to_string();
        completed(&self.s, &self.second).await;
        banner.abort();
    }

    /// The monitor's alert of `kind`.
    async fn alert(&self, kind: &str) -> Value {
        let path = format!("/api/monitors/alerts?monitorId={}", self.monitor);
        let alerts = self.s.get(&path).await;
        assert_eq!(alerts.body["total"], 2, "{}", alerts.body);
        alerts.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind}: {}", alerts.body))
            .clone()
    }
}

/// The monitor's record once `done` holds of it.
async fn monitor_when(s: &Setup, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = s.get(&format!("/api/monitors/{id}")).await;
        assert_eq!(m.status, StatusCode::OK, "{}", m.body);
        if done(&m.body) {
            return m.body;
        }
        assert!(
            Instant::now() < deadline,
            "monitor never got there: {}",
            m.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn completed(s: &Setup, job: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let j = s.get(&format!("/api/scan-jobs/{job}")).await;
        match j.body["status"].as_str() {
            Some("completed") => return,
            Some("queued" | "running") => {}
            other => panic!("job ended {other:?}: {}", j.body),
        }
        assert!(Instant::now() < deadline, "job never completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A port free now, for a server started later.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn a_monitor_runs_on_its_schedule_and_alerts_on_what_changed(b: Backend, nats: bool) {
    let w = Watched::new(b, nats).await;
    assert_eq!(w.scheduled["lastScanJobIds"][0], w.first.as_str());
    let new_port = w.alert("new_port").await;
    assert_eq!(new_port["details"]["port"], w.later);
    assert_eq!(new_port["details"]["service"], "ssh");
    assert_eq!(new_port["severity"], "medium");
    assert_eq!(new_port["scanJobId"], w.second.as_str());
    assert_eq!(new_port["assetId"], w.asset.as_str());
    assert_eq!(new_port["status"], "open");
    let closed = w.alert("port_closed").await;
    assert_eq!(closed["details"]["port"], w.open);
    assert_eq!(closed["severity"], "low");
}

async fn alerts_reach_webhooks_signed(b: Backend, nats: bool) {
    let w = Watched::new(b, nats).await;
    let got = w.receiver.wait_for(2, WAIT).await;
    let mut delivered: Vec<String> = got
        .iter()
        .map(|r| {
            assert!(r.header("webhook-signature").starts_with("v1,"));
            let body = r.json();
            assert_eq!(body["type"], "alert.created");
            body["data"]["alertId"].as_str().unwrap().to_string()
        })
        .collect();
    delivered.sort();
    let mut ids = vec![];
    for kind in ["new_port", "port_closed"] {
        ids.push(w.alert(kind).await["id"].as_str().unwrap().to_string());
    }
    ids.sort();
    assert_eq!(delivered, ids);
}

async fn an_alert_is_acknowledged_then_resolved_once_and_audited(b: Backend, nats: bool) {
    let w = Watched::new(b, nats).await;
    let s = &w.s;
    let (new_port, closed) = (w.alert("new_port").await, w.alert("port_closed").await);
    // Acknowledged (who and when recorded), then resolved, each once.
    let ack_path = format!(
        "/api/monitors/alerts/{}/acknowledge",
        new_port["id"].as_str().unwrap()
    );
    let ack = s.post(&ack_path, json!({"notes": "planned SSH"})).await;
    assert_eq!(ack.status, StatusCode::OK, "{}", ack.body);
    assert_eq!(ack.body["status"], "acknowledged");
    assert_eq!(ack.body["notes"], "planned SSH");
    assert!(ack.body["acknowledgedAt"].is_string() && ack.body["acknowledgedBy"].is_string());
    assert_eq!(
        s.post(&ack_path, json!({})).await.status,
        StatusCode::CONFLICT
    );
    let resolve = |a: &Value| format!("/api/monitors/alerts/{}/resolve", a["id"].as_str().unwrap());
    let done = s.post(&resolve(&new_port), json!({})).await;
    assert_eq!(
        (done.status, done.body["status"].as_str()),
        (StatusCode::OK, Some("resolved"))
    );
    assert_eq!(
        s.post(&resolve(&new_port), json!({})).await.status,
        StatusCode::CONFLICT
    );
    // Without a body too, from open.
    let closed_done = s.call(Method::POST, &resolve(&closed), None).await;
    assert_eq!(closed_done.status, StatusCode::OK, "{}", closed_done.body);
    for (query, total) in [
        ("status=open", 0),
        ("status=resolved", 2),
        ("type=port_closed", 1),
        ("severity=medium&status=resolved", 1),
    ] {
        let listed = s.get(&format!("/api/monitors/alerts?{query}")).await;
        assert_eq!(listed.body["total"], total, "{query}: {}", listed.body);
    }
    let audit = s.get("/api/audit-log?action=alert.acknowledged").await;
    assert_eq!(audit.body["total"], 1, "{}", audit.body);
    assert_eq!(
        audit.body["items"][0]["resource"],
        json!({"type": "alert", "id": new_port["id"]})
    );
}

async fn an_assistant_allowed_writes_acknowledges_an_alert_over_mcp(b: Backend, nats: bool) {
    let w = Watched::new(b, nats).await;
    let s = &w.s;
    let alert = w.alert("new_port").await;
    let made = s
        .post(
            "/api/mcp-keys",
            json!({"name": "claude", "role": "analyst", "allowWrites": true}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let url = s.server.as_ref().unwrap().url("/mcp");
    let mcp = crate::mcp::Mcp::new(url, made.body["key"].as_str().unwrap());
    let args = json!({"id": alert["id"], "notes": "expected: new bastion"});
    let done = mcp.call("acknowledge_alert", args.clone()).await;
    assert_eq!(done["result"]["isError"], false, "{done}");
    assert_eq!(
        done["result"]["structuredContent"]["status"],
        "acknowledged"
    );
    assert_eq!(
        done["result"]["structuredContent"]["acknowledgedBy"],
        made.id().as_str()
    );
    // A second time is the REST conflict, as a tool error.
    let again = mcp.call("acknowledge_alert", args).await;
    assert_eq!(again["result"]["isError"], true, "{again}");
    let audit = s.get("/api/audit-log?action=alert.acknowledged").await;
    assert_eq!(audit.body["total"], 1, "{}", audit.body);
    assert_eq!(audit.body["items"][0]["category"], "mcp");
    assert_eq!(audit.body["items"][0]["actor"]["kind"], "mcp_key");
}
