//! The outbox relay against real NATS JetStream: the machine's server on 127.0.0.1:4222 with a
//! stream per test, or a nats-server the test runs itself on its own port.

use crate::helpers::*;
use crate::on_both_backends;
use async_nats::jetstream;
use easm_bus::{BusConfig, Relay};
use easm_domain::Plan;
use easm_events::RecordedEvent;
use easm_store::{EventLog, Lease};
use std::time::{Duration, Instant};

on_both_backends!(
    serve_relays_when_given_a_nats_url,
    relay_publishes_every_event_once_in_log_order,
    relay_waits_out_a_nats_outage,
    one_process_holds_the_relay_lease,
);

fn config(url: &str) -> BusConfig {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut c = BusConfig::new(url, format!("test-{id}"));
    c.stream = format!("TEST_{id}");
    c.subject_prefix = format!("test.{id}");
    c.lease_ttl = Duration::from_secs(1);
    c.idle = Duration::from_millis(20);
    c
}

/// The machine's nats-server outlives the tests: a test's stream goes when it passes.
async fn drop_stream(cfg: &BusConfig) {
    let js = jetstream::new(async_nats::connect(&cfg.url).await.unwrap());
    js.delete_stream(&cfg.stream).await.unwrap();
}

async fn outbox_len(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(app.db.reader())
        .await
        .unwrap()
}

async fn wait_until_empty(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while outbox_len(app).await > 0 {
        assert!(Instant::now() < deadline, "outbox never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything in the stream, in stream order.
async fn published(url: &str, stream: &str) -> Vec<(String, String, RecordedEvent)> {
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    let mut s = js.get_stream(stream).await.unwrap();
    let n = s.info().await.unwrap().state.messages;
    let mut out = vec![];
    for seq in 1..=n {
        let m = s.get_raw_message(seq).await.unwrap();
        let id = m.headers.get("Nats-Msg-Id").unwrap().to_string();
        out.push((
            m.subject.to_string(),
            id,
            serde_json::from_slice(&m.payload).unwrap(),
        ));
    }
    out
}

async fn some_events(app: &TestApp, key: &str, n: usize) {
    let g = app.group(key, "bus").await;
    for i in 0..n {
        app.asset(
            key,
            &g,
            &format!("bus{i}-{}.example.com", uuid::Uuid::new_v4().simple()),
            "subdomain",
        )
        .await;
    }
}

fn spawn_relay(
    relay: Relay,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(relay.run(async {
        let _ = rx.await;
    }));
    (tx, handle)
}

async fn relay_publishes_every_event_once_in_log_order(b: Backend) {
    let url = "nats://127.0.0.1:4222";
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    some_events(&app, &key, 5).await;
    let cfg = config(url);
    let (stop, handle) = spawn_relay(Relay::connect(app.db.clone(), cfg.clone()).await.unwrap());
    wait_until_empty(&app).await;
    some_events(&app, &key, 3).await;
    wait_until_empty(&app).await;

    let log = EventLog::new(app.db.clone());
    let all = log.read_all_after(0, 10_000).await.unwrap();
    let got = published(url, &cfg.stream).await;
    assert_eq!(got.len(), all.len(), "every committed event, once");
    for ((subject, msg_id, e), want) in got.iter().zip(&all) {
        assert_eq!(e, want, "in log order, as recorded");
        assert_eq!(msg_id, &want.event_id.to_string());
        assert_eq!(
            subject,
            &format!("{}.{}.{}", cfg.subject_prefix, want.org_id, want.event_type)
        );
    }

    // A relay that died after publishing and before marking the outbox publishes again: the
    // stream keeps one copy per event id.
    sqlx::query("INSERT INTO outbox (position, event_id, org_id, event_type, created_at) SELECT position, event_id, org_id, event_type, 0 FROM events")
        .execute(app.db.writer())
        .await
        .unwrap();
    wait_until_empty(&app).await;
    assert_eq!(published(url, &cfg.stream).await.len(), all.len());
    stop.send(()).unwrap();
    handle.await.unwrap();
    drop_stream(&cfg).await;
}

async fn relay_waits_out_a_nats_outage(b: Backend) {
    let nats = NatsServer::start();
    let url = nats.url();
    let app = spawn_app(b).await;
    let (_, key) = app.org(Plan::Pro).await;
    let cfg = config(&url);
    let (stop, handle) = spawn_relay(Relay::connect(app.db.clone(), cfg.clone()).await.unwrap());
    some_events(&app, &key, 2).await;
    wait_until_empty(&app).await;

    let (port, dir) = nats.stop();
    some_events(&app, &key, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        outbox_len(&app).await >= 4,
        "events wait in the outbox while NATS is down"
    );

    let nats = NatsServer::start_on(port, dir);
    wait_until_empty(&app).await;
    let all = EventLog::new(app.db.clone())
        .read_all_after(0, 10_000)
        .await
        .unwrap();
    let got = published(&nats.url(), &cfg.stream).await;
    let ids: Vec<String> = got.iter().map(|(_, id, _)| id.clone()).collect();
    let want: Vec<String> = all.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(ids, want, "nothing lost, nothing doubled, in order");
    stop.send(()).unwrap();
    handle.await.unwrap();
}

async fn one_process_holds_the_relay_lease(b: Backend) {
    let app = spawn_app(b).await;
    let ttl = Duration::from_millis(400);
    let a = Lease::new(app.db.clone(), "outbox-relay", "a", ttl);
    let other = Lease::new(app.db.clone(), "outbox-relay", "b", ttl);
    assert!(a.acquire().await.unwrap());
    assert!(!other.acquire().await.unwrap(), "held by a");
    assert!(a.acquire().await.unwrap(), "the holder renews");
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(
        other.acquire().await.unwrap(),
        "taken over once a stops renewing"
    );
    assert!(!a.acquire().await.unwrap());
    other.release().await.unwrap();
    assert!(
        a.acquire().await.unwrap(),
        "released at once on a clean stop"
    );
}

async fn serve_relays_when_given_a_nats_url(b: Backend) {
    let store = TestStore::new(b).await;
    let cfg = config("nats://127.0.0.1:4222");
    let (mut server, addr) = crate::cli::serve(
        &store,
        &[
            "--nats-url",
            &cfg.url,
            "--nats-stream",
            &cfg.stream,
            "--nats-subject-prefix",
            &cfg.subject_prefix,
        ],
    );
    let text = crate::cli::read_until(&mut server, "curl");
    let key = text
        .split_whitespace()
        .find(|w| w.starts_with("ag_sk_"))
        .unwrap()
        .to_string();
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/groups"))
        .header("X-API-Key", &key)
        .json(&serde_json::json!({"name": "relayed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let js = jetstream::new(async_nats::connect(&cfg.url).await.unwrap());
        let types: Vec<String> = match js.get_stream(&cfg.stream).await {
            Ok(_) => published(&cfg.url, &cfg.stream)
                .await
                .into_iter()
                .map(|(_, _, e)| e.event_type)
                .collect(),
            Err(_) => vec![],
        };
        if types == ["org.created", "api_key.created", "group.created"] {
            break;
        }
        assert!(Instant::now() < deadline, "published so far: {types:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().unwrap();
    let _ = server.wait();
    drop_stream(&cfg).await;
}
