//! Structured logs (`tracing`), OpenTelemetry spans and W3C `traceparent` propagation.
//!
//! The trace context captured at ingest is stored on each outbox row; every step starts its
//! span with a link to it and the relay passes it on as a Kafka header.
use crate::{LogFormat, RuntimeError, TelemetryArgs};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

/// Flushes and shuts the tracer provider down when dropped (end of `main`).
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("tracer provider shutdown: {e}");
        }
    }
}

/// Installs the global subscriber: an env filter, JSON or pretty lines, and an OpenTelemetry
/// layer (exporting over OTLP/gRPC only when an endpoint is configured).
pub fn init(service: &'static str, args: &TelemetryArgs) -> Result<TelemetryGuard, RuntimeError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &args.otel_exporter_otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| RuntimeError::Tracing(format!("OTLP exporter: {e}")))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));

    let filter = EnvFilter::try_new(&args.rust_log)
        .map_err(|e| RuntimeError::Tracing(format!("RUST_LOG={:?}: {e}", args.rust_log)))?;
    let fmt = match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| RuntimeError::Tracing(e.to_string()))?;
    if let Some(endpoint) = &args.otel_exporter_otlp_endpoint {
        tracing::info!(%endpoint, "exporting traces over OTLP");
    }
    Ok(TelemetryGuard { provider })
}

/// The W3C `traceparent` of the current span, if it has a valid trace context.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier.remove("traceparent")
}

fn extract(traceparent: &str) -> opentelemetry::Context {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier))
}

/// Makes the remote context in `traceparent` the parent of `span` (an HTTP request's span).
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    let cx = extract(traceparent);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Adds a link from `span` to the trace in `traceparent` (a worker step to its ingest request).
pub fn link_to(span: &tracing::Span, traceparent: &str) {
    let cx = extract(traceparent);
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.add_link(sc);
    }
}
