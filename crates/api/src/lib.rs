//! The easm HTTP API. `router` builds every route together with its OpenAPI description, so the
//! document served at `/api/openapi.json` cannot leave a route out.

mod access_log;
pub mod audit_export;
mod auth;
pub mod error;
mod extract;
mod forwarded;
mod idempotency;
mod mcp;
pub mod metrics;
mod openapi;
mod routes;
mod schema_types;
pub mod snapshot;

pub use forwarded::TrustedProxies;
pub use mcp::{tools_markdown, CALLS_PER_MINUTE};
pub use openapi::openapi;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::{middleware, Router};
use easm_app::App;
use easm_projections::ReadModels;
use easm_store::{Db, DeliveryQueue, EventLog, IdempotencyStore};
use error::ApiError;
use routes::{
    assets, audit, audit_webhook, dashboard, deliveries, discovery, findings, groups, health, keys,
    monitors, org, scan_schedules, scans, webhooks,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// The command side: every change goes through it.
    pub commands: App,
    pub idempotency: IdempotencyStore,
    /// `EASM_WEBHOOK_ALLOW_PRIVATE`: allow http and private addresses as webhook targets.
    pub webhook_allow_private: bool,
    pub deliveries: DeliveryQueue,
    /// Woken when this process queues a delivery (test messages), so local workers start at once.
    pub delivery_wake: Arc<tokio::sync::Notify>,
    /// Point-in-time read models for `asOf` queries.
    pub snapshots: Arc<snapshot::Snapshots>,
    /// What rendering messages for native destinations and chat needs (test messages).
    pub rendering: easm_events::formats::Context,
    /// The Prometheus recorder's handle, when `/metrics` is served (`EASM_METRICS`).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// `EASM_TRUSTED_PROXIES`: whose forwarding headers name the client.
    pub trusted_proxies: TrustedProxies,
    /// Set when the server stops: event streams end then, instead of holding it open.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// What `/readyz` checks besides the database.
    pub dependencies: Vec<Dependency>,
    limiter: Arc<auth::RateLimiter>,
}

/// A dependency besides the database that `/readyz` reports on (the bus, in NATS mode). The
/// binary says how to tell it is up, so the API holds no client of its own.
#[derive(Clone)]
pub struct Dependency {
    pub name: &'static str,
    pub up: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl AppState {
    pub fn new(db: Db) -> Self {
        AppState {
            commands: App::new(db.clone()),
            idempotency: IdempotencyStore::new(db.clone()),
            webhook_allow_private: false,
            deliveries: DeliveryQueue::new(db.clone()),
            delivery_wake: Arc::default(),
            snapshots: Arc::default(),
            rendering: Default::default(),
            trusted_proxies: TrustedProxies::default(),
            metrics: None,
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
            dependencies: vec![],
            limiter: Arc::default(),
            db,
        }
    }

    pub fn read(&self) -> &ReadModels {
        self.commands.read()
    }

    pub fn log(&self) -> &EventLog {
        self.commands.log()
    }
}

/// `GET /docs`: Swagger UI over `/api/openapi.json`, its assets served from the binary.
fn docs() -> Router<AppState> {
    use utoipa_swagger_ui::{Config, SwaggerUi};
    SwaggerUi::new("/docs")
        .config(Config::from("/api/openapi.json").try_it_out_enabled(true))
        .into()
}

pub(crate) fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(org::get_org, org::delete_org))
        .routes(routes!(org::list_members, org::invite_member))
        .routes(routes!(org::change_member_role, org::remove_member))
        .routes(routes!(org::change_plan))
        .routes(routes!(dashboard::dashboard))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(keys::list_mcp_keys, keys::create_mcp_key))
        .routes(routes!(keys::revoke_mcp_key))
        .routes(routes!(groups::list_groups, groups::create_group))
        .routes(routes!(
            groups::get_group,
            groups::rename_group,
            groups::delete_group
        ))
        .routes(routes!(groups::group_summary))
        .routes(routes!(groups::group_assets, groups::add_asset))
        .routes(routes!(groups::add_assets_bulk))
        .routes(routes!(assets::list_assets))
        .routes(routes!(
            assets::get_asset,
            assets::update_asset,
            assets::delete_asset
        ))
        .routes(routes!(assets::asset_timeline))
        .routes(routes!(assets::asset_risk))
        .routes(routes!(assets::asset_coverage))
        .routes(routes!(assets::asset_health))
        .routes(routes!(scans::list_scan_jobs, scans::create_scan_job))
        .routes(routes!(scans::get_scan_job, scans::delete_scan_job))
        .routes(routes!(scans::rerun_scan_job))
        .routes(routes!(scans::cancel_scan_job))
        .routes(routes!(scans::import_results))
        .routes(routes!(scans::scan_job_findings))
        .routes(routes!(
            scan_schedules::list_scan_schedules,
            scan_schedules::create_scan_schedule
        ))
        .routes(routes!(
            scan_schedules::get_scan_schedule,
            scan_schedules::update_scan_schedule,
            scan_schedules::delete_scan_schedule
        ))
        .routes(routes!(scan_schedules::run_scan_schedule))
        .routes(routes!(discovery::run_discovery))
        .routes(routes!(discovery::list_discovery_jobs))
        .routes(routes!(discovery::get_discovery_job))
        .routes(routes!(discovery::cancel_discovery_job))
        .routes(routes!(discovery::add_discovered_assets))
        .routes(routes!(findings::list_findings))
        .routes(routes!(findings::export_findings))
        .routes(routes!(findings::count_findings))
        .routes(routes!(findings::bulk_status))
        .routes(routes!(findings::get_finding, findings::triage_finding))
        .routes(routes!(monitors::list_monitors, monitors::create_monitor))
        .routes(routes!(monitors::list_alerts))
        .routes(routes!(monitors::get_alert))
        .routes(routes!(monitors::acknowledge_alert))
        .routes(routes!(monitors::resolve_alert))
        .routes(routes!(
            monitors::get_monitor,
            monitors::update_monitor,
            monitors::delete_monitor
        ))
        .routes(routes!(monitors::run_monitor))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(
            webhooks::get_webhook,
            webhooks::update_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(deliveries::test_webhook))
        .routes(routes!(deliveries::list_deliveries))
        .routes(routes!(deliveries::get_delivery))
        .routes(routes!(deliveries::retry_delivery))
        .routes(routes!(deliveries::recover))
        .routes(routes!(
            audit_webhook::get_audit_webhook,
            audit_webhook::put_audit_webhook,
            audit_webhook::delete_audit_webhook
        ))
        .routes(routes!(audit_webhook::test_audit_webhook))
        .routes(routes!(audit::events))
        .routes(routes!(audit::audit_log))
        .routes(routes!(audit::export))
        .routes(routes!(audit::signing_key))
        .routes(routes!(audit_webhook::audit_webhook_deliveries))
}

pub(crate) fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(metrics::scrape))
}

pub fn router(state: AppState) -> Router {
    let (api, _) = api_routes().split_for_parts();
    let api = api
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotency,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    let (public, _) = public_routes().split_for_parts();
    let mcp = mcp::routes(&state, false);
    public
        .merge(api)
        .merge(mcp)
        .merge(docs())
        .fallback(no_route)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(extract::MAX_BODY))
        .layer(middleware::from_fn(access_log::access_log))
        .layer(middleware::from_fn(auth::request_id))
        .with_state(state)
}

async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "ROUTE_NOT_FOUND", "no such route")
}

/// The MCP server alone, for an address of its own (`--mcp-listen`): `/mcp`, and `/` too.
pub fn mcp_router(state: AppState) -> Router {
    mcp::routes(&state, true)
        .fallback(no_route)
        .layer(middleware::from_fn(access_log::access_log))
        .layer(middleware::from_fn(auth::request_id))
        .with_state(state)
}

/// Fold events that were appended without their read models (tools writing to a bare log) into
/// them; every append through the command side folds its own. An idle poll is one read of the chain
/// heads.
pub fn spawn_projector(state: &AppState) -> tokio::task::JoinHandle<()> {
    let projector = state.commands.projector().clone();
    tokio::spawn(async move {
        loop {
            if let Err(e) = projector.catch_up().await {
                tracing::warn!(error = %e, "projector catch-up failed; retrying");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Serve until `shutdown` resolves, then end event streams and the requests under way (the
/// caller bounds how long those may take). With `mcp`, the MCP server on that address too.
pub async fn serve(
    listener: TcpListener,
    mcp: Option<TcpListener>,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let projector = spawn_projector(&state);
    let mcp = mcp.map(|listener| {
        let mut stopping = state.stopping.subscribe();
        let app =
            mcp_router(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopping.wait_for(|stopping| *stopping).await;
                })
                .await
        })
    });
    let state_stopping = state.stopping.clone();
    let (stop_keys, keys_stopped) = tokio::sync::oneshot::channel::<()>();
    let keys = tokio::spawn({
        let app = state.commands.clone();
        async move {
            app.follow_key_changes(async {
                let _ = keys_stopped.await;
            })
            .await
        }
    });
    let result = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown({
        let stopping = state_stopping;
        async move {
            shutdown.await;
            stopping.send_replace(true);
        }
    })
    .await;
    projector.abort();
    let _ = stop_keys.send(());
    let _ = keys.await;
    if let Some(mcp) = mcp {
        match mcp.await {
            Ok(served) => served?,
            Err(e) => tracing::warn!(error = %e, "the MCP server stopped abnormally"),
        }
    }
    result
}
