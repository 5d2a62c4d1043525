//! `easm-bench siem`: batched delivery to a Splunk HTTP Event Collector on 127.0.0.1 (a receiver
//! that parses every event of every request and answers as HEC does). Events are committed
//! first, then delivery starts as `easm serve` runs it (fan-out from the outbox or JetStream,
//! the delivery queue, the worker's batches): events per second from committed outbox to
//! receiver.

use anyhow::{bail, Result};
use axum::extract::State;
use easm::background::Background;
use easm::config::{DeliveryArgs, ScanArgs};
use easm_api::AppState;
use easm_domain::{NewAsset, OptionsSpec, Patch, Plan, WebhookSpec, WriteOnly};
use easm_events::{Actor, EndpointKind, EventMeta};
use easm_store::Db;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Events committed before delivery starts.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// The endpoint's `batchSize`.
    #[arg(long, default_value_t = 1_000)]
    batch_size: u32,
    /// The endpoint's `batchWindow`, in milliseconds.
    #[arg(long, default_value_t = 200)]
    batch_window: u32,
    #[command(flatten)]
    delivery: DeliveryArgs,
}

#[derive(Default)]
struct Hec {
    events: AtomicUsize,
    requests: AtomicUsize,
}

async fn collector(State(h): State<Arc<Hec>>, body: axum::body::Bytes) -> axum::Json<Value> {
    let n = serde_json::Deserializer::from_slice(&body)
        .into_iter::<serde::de::IgnoredAny>()
        .take_while(Result::is_ok)
        .count();
    h.events.fetch_add(n, Ordering::SeqCst);
    h.requests.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({"text": "Success", "code": 0}))
}

pub async fn run(args: Args, db: Db) -> Result<()> {
    let hec = Arc::new(Hec::default());
    let app = axum::Router::new()
        .route("/services/collector/event", axum::routing::post(collector))
        .with_state(hec.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let state = AppState::new(db.clone());
    let meta = EventMeta::new(Actor::system_part("bench"), "bench");
    let app = &state.commands;
    let (org, _) = app
        .create_org(&meta, "siem bench", Plan::Enterprise)
        .await?;
    let spec = WebhookSpec {
        url: Some(url),
        events: Some(vec!["asset.added".into()]),
        description: None,
        enabled: None,
        delivery: OptionsSpec {
            kind: Some(EndpointKind::SplunkHec),
            token: Some(WriteOnly::Set("bench-token".into())),
            batch_size: Patch::Set(args.batch_size),
            batch_window_ms: Patch::Set(args.batch_window),
            ..Default::default()
        },
    };
    app.create_webhook(&meta, &org, &spec, true).await?;
    let group = app.create_group(&meta, &org, "bench").await?;
    let committing = Instant::now();
    let items: Vec<NewAsset> = (0..args.events)
        .map(|i| NewAsset {
            value: format!("s{i}-{}.example.com", uuid::Uuid::now_v7().simple()),
            asset_type: "domain".into(),
            tags: None,
            criticality: None,
        })
        .collect();
    for chunk in items.chunks(1_000) {
        app.add_assets(&meta, &org, Plan::Enterprise, &group, chunk)
            .await?;
    }
    println!(
        "backend: {:?}, bus: {}; {} events committed in {:.1} s; endpoint batchSize {}, batchWindow {} ms",
        db.backend(),
        if args.delivery.nats_url.is_some() { "NATS JetStream" } else { "database" },
        args.events,
        committing.elapsed().as_secs_f64(),
        args.batch_size,
        args.batch_window
    );
    let mut delivery = args.delivery.clone();
    delivery.webhook_allow_private = true;
    let started = Instant::now();
    let background = Background::start(&state, &delivery, &ScanArgs::disabled()).await?;
    let deadline = started + Duration::from_secs(600);
    let mut marks = vec![];
    let mut next_mark = Instant::now() + Duration::from_secs(1);
    while hec.events.load(Ordering::SeqCst) < args.events {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} events arrived",
                hec.events.load(Ordering::SeqCst),
                args.events
            );
        }
        if Instant::now() >= next_mark {
            marks.push(hec.events.load(Ordering::SeqCst));
            next_mark += Duration::from_secs(1);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    // Messages may arrive before their rows are written: the run ends when every one is
    // recorded as delivered and the outbox is empty.
    let recorded = loop {
        let (succeeded, outbox) = recorded(&db).await?;
        if succeeded >= args.events as i64 && outbox == 0 {
            break started.elapsed().as_secs_f64();
        }
        if Instant::now() > deadline {
            bail!(
                "{succeeded} of {} deliveries recorded, {outbox} events in the outbox",
                args.events
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    background.stop().await;
    let requests = hec.requests.load(Ordering::SeqCst);
    println!("| events | seconds | events/s | requests | events per request |");
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {secs:.2} | {:.0} | {requests} | {:.0} |",
        args.events,
        args.events as f64 / secs,
        args.events as f64 / requests.max(1) as f64
    );
    println!("events received by the end of each second: {marks:?}");
    println!(
        "every delivery recorded and the outbox empty after {recorded:.2} s: {:.0} events/s",
        args.events as f64 / recorded
    );
    Ok(())
}

/// Deliveries recorded as delivered, and events left in the outbox.
async fn recorded(db: &Db) -> Result<(i64, i64)> {
    let succeeded: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'")
            .fetch_one(db.reader())
            .await?;
    let outbox: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(db.reader())
        .await?;
    Ok((succeeded, outbox))
}
