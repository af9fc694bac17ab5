//! Structured logs (`tracing`), OpenTelemetry spans and W3C `traceparent` propagation.
//!
//! The trace context captured at ingest is stored on each outbox row; every step starts its
//! span with a link to it and the relay passes it on as a Kafka header.
//!
//! Spans are traced independently of the log level: `RUST_LOG` filters the log lines only and
//! `TRACE_FILTER` (default `info`) chooses the spans that get an OpenTelemetry context. Before,
//! one global `RUST_LOG` filter also decided which spans existed, so with `RUST_LOG=warn` (the
//! level the end-to-end tests and many deployments use) the API's `http_request` span was never
//! created, `current_traceparent()` found no context and the outbox rows were written with a
//! NULL `traceparent`: no link from the steps, no `traceparent` Kafka header.
//!
//! JSON log lines written inside a traced span carry its `trace_id` and `span_id`, so a log
//! line leads to its trace (docs/operations.md, "Traces").
use crate::{LogFormat, RuntimeError, TelemetryArgs};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use tracing::{Event, Subscriber};
use tracing_opentelemetry::{OpenTelemetrySpanExt, OtelData};
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
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

/// Installs the global subscriber: JSON or pretty log lines on stdout filtered by `RUST_LOG`,
/// and an OpenTelemetry layer for the spans `TRACE_FILTER` selects (exported over OTLP/gRPC
/// only when an endpoint is configured; without one, spans still get trace ids, so the
/// `traceparent` of a request is stored and propagated either way).
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
    subscriber(service, args, &provider, std::io::stdout)?
        .try_init()
        .map_err(|e| RuntimeError::Tracing(e.to_string()))?;
    if let Some(endpoint) = &args.otel_exporter_otlp_endpoint {
        tracing::info!(%endpoint, "exporting traces over OTLP");
    }
    Ok(TelemetryGuard { provider })
}

/// The subscriber [`init`] installs, writing log lines to `writer` and spans to `provider`
/// (tests install it with `tracing::subscriber::with_default`).
///
/// Two per-layer filters: the log layer shows the events `RUST_LOG` enables, and also sees the
/// spans `TRACE_FILTER` enables (so a `warn` line inside a request names the request's span and
/// trace even with `RUST_LOG=warn`); the OpenTelemetry layer sees what `TRACE_FILTER` enables.
pub fn subscriber<W>(
    service: &'static str,
    args: &TelemetryArgs,
    provider: &SdkTracerProvider,
    writer: W,
) -> Result<impl Subscriber + Send + Sync + 'static, RuntimeError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let env_filter = |name: &str, value: &str| {
        EnvFilter::try_new(value)
            .map_err(|e| RuntimeError::Tracing(format!("{name}={value:?}: {e}")))
    };
    let log_filter =
        env_filter("RUST_LOG", &args.rust_log)?
            .or(env_filter("TRACE_FILTER", &args.trace_filter)?
                .and(filter_fn(|meta| meta.is_span())));
    let trace_filter = env_filter("TRACE_FILTER", &args.trace_filter)?;

    let fmt = match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .map_event_format(WithTraceIds)
            .with_writer(writer)
            .with_filter(log_filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_writer(writer)
            .with_filter(log_filter)
            .boxed(),
    };
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service))
        .with_filter(trace_filter);
    Ok(tracing_subscriber::registry().with(fmt).with(otel))
}

/// Formats an event with the inner (JSON) format and adds `"trace_id"` and `"span_id"` of the
/// innermost span that has an OpenTelemetry context.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let ids = ctx.event_scope().and_then(|scope| {
            scope.into_iter().find_map(|span| {
                let ext = span.extensions();
                let data = ext.get::<OtelData>()?;
                Some((data.trace_id()?, data.span_id()?))
            })
        });
        let Some((trace_id, span_id)) = ids else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // The JSON format writes one object and a newline: add the ids as its last members.
        match line.rfind('}') {
            Some(end) => {
                writer.write_str(&line[..end])?;
                write!(writer, r#","trace_id":"{trace_id}","span_id":"{span_id}""#)?;
                writer.write_str(&line[end..])
            }
            None => writer.write_str(&line),
        }
    }
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
