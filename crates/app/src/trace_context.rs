//! W3C trace context (`traceparent`) between tracing's spans and what leaves or enters the
//! process: a request's header, the events a command appends, a delivery's request. With no
//! OpenTelemetry layer installed (no `OTEL_EXPORTER_OTLP_ENDPOINT`), spans carry no context, so
//! nothing is stored or sent.

use opentelemetry::trace::TraceContextExt;
use opentelemetry::{propagation::TextMapPropagator, Context};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashMap;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const HEADER: &str = "traceparent";

/// The `traceparent` of `span`, when it is part of a trace.
pub fn traceparent(span: &Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(HEADER)
}

/// The `traceparent` of the span the caller is in.
pub fn current() -> Option<String> {
    traceparent(&Span::current())
}

/// The remote context a `traceparent` names; `None` when it is not a valid one.
fn remote(traceparent: &str) -> Option<Context> {
    let carrier = HashMap::from([(HEADER.to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Make `span` a child of the span `traceparent` names (a client's, or the one an event was
/// appended in); an invalid or absent one leaves `span` a root.
pub fn continue_from(span: &Span, traceparent: Option<&str>) {
    if let Some(cx) = traceparent.and_then(remote) {
        // Fails only once the span has started its own trace, which the callers' new spans
        // have not.
        let _ = span.set_parent(cx);
    }
}

/// Link `span` to the spans `traceparents` name: work done for many traces at once (a relay
/// batch, a batch of SIEM messages).
pub fn link_to<'a>(span: &Span, traceparents: impl IntoIterator<Item = Option<&'a str>>) {
    for cx in traceparents.into_iter().flatten().filter_map(remote) {
        span.add_link(cx.span().span_context().clone());
    }
}
