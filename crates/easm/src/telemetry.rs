//! What the process tells its operator: logs on standard error (standard output is for
//! answers), and traces over OTLP/HTTP when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, named by `OTEL_SERVICE_NAME` (default `easm`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// What has to be flushed before the process exits: spans not yet exported.
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

/// Logs filtered by `RUST_LOG`: as text, coloured only on a terminal (and not under
/// `NO_COLOR`), or with `EASM_LOG_FORMAT=json` one JSON object per line for log collectors.
/// With traces on, `RUST_LOG` filters the logs only (quieting them keeps the spans, all at
/// INFO); with them off, it filters globally, which costs the write path less (BENCHMARKS.md).
pub fn init() -> anyhow::Result<Telemetry> {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match std::env::var("EASM_LOG_FORMAT")
        .as_deref()
    {
        Ok("json") => fmt.json().flatten_event(true).boxed(),
        Ok("text") | Ok("") | Err(_) => fmt
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .boxed(),
        Ok(other) => anyhow::bail!("EASM_LOG_FORMAT is json or text, not {other:?}"),
    };
    let traces = tracer_provider()?;
    match &traces {
        None => tracing_subscriber::registry()
            .with(logs)
            .with(filter)
            .try_init()?,
        Some(p) => tracing_subscriber::registry()
            .with(logs.with_filter(filter))
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(p.tracer("easm"))
                    .with_filter(LevelFilter::INFO),
            )
            .try_init()?,
    }
    Ok(Telemetry { traces })
}

fn configured(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// The OTLP/HTTP exporter the standard variables describe (endpoint, headers, timeout), behind
/// a batch processor; none when no endpoint is set.
fn tracer_provider() -> anyhow::Result<Option<SdkTracerProvider>> {
    if !configured("OTEL_EXPORTER_OTLP_ENDPOINT")
        && !configured("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| anyhow::anyhow!("the OTLP exporter: {e}"))?;
    let named = configured("OTEL_SERVICE_NAME")
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    let mut resource = Resource::builder();
    if !named {
        resource = resource.with_service_name("easm");
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

impl Telemetry {
    /// Export the spans still held; bounded by the exporter's own timeout.
    pub fn flush(self) {
        if let Some(p) = self.traces {
            if let Err(e) = p.shutdown() {
                eprintln!("easm: exporting the last spans: {e}");
            }
        }
    }
}
