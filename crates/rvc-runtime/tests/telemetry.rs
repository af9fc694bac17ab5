//! The subscriber every binary installs: spans are traced whatever `RUST_LOG` says, and JSON
//! log lines inside a traced span carry the trace id and span id of the span that is exported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use clap::Parser;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use rvc_runtime::TelemetryArgs;

/// Every span the provider exports.
#[derive(Clone, Debug, Default)]
struct Exported(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Exported {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

/// The log output.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Output {
    type Writer = Output;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

fn args(argv: &[&str]) -> TelemetryArgs {
    Cli::try_parse_from(std::iter::once("test").chain(argv.iter().copied()))
        .unwrap()
        .telemetry
}

/// Runs `f` under the binaries' subscriber; returns the log lines and the exported spans.
fn capture(argv: &[&str], f: impl FnOnce()) -> (Vec<serde_json::Value>, Vec<SpanData>) {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let exported = Exported::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exported.clone())
        .build();
    let out = Output::default();
    let subscriber =
        rvc_runtime::telemetry::subscriber("test", &args(argv), &provider, out.clone()).unwrap();
    tracing::subscriber::with_default(subscriber, f);
    provider.force_flush().unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let spans = exported.0.lock().unwrap().clone();
    (lines, spans)
}

#[test]
fn with_rust_log_warn_a_request_span_is_traced_and_its_warn_line_names_the_exported_trace() {
    let mut traceparent = None;
    let (lines, spans) = capture(&["--log-format", "json", "--rust-log", "warn"], || {
        tracing::warn!("outside any span");
        let span = tracing::info_span!("http_request", method = "POST");
        let _enter = span.enter();
        traceparent = rvc_runtime::telemetry::current_traceparent();
        tracing::info!("filtered out by RUST_LOG=warn");
        tracing::warn!(code = 7, "inside the request");
    });

    let span = spans
        .iter()
        .find(|s| s.name == "http_request")
        .unwrap_or_else(|| panic!("http_request not exported: {spans:?}"));
    let trace_id = span.span_context.trace_id().to_string();
    let span_id = span.span_context.span_id().to_string();
    assert_eq!(trace_id.len(), 32);
    assert_eq!(
        traceparent,
        Some(format!("00-{trace_id}-{span_id}-01")),
        "the request's traceparent names the exported span"
    );

    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["fields"]["message"], "outside any span");
    assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
    let inside = &lines[1];
    assert_eq!(
        inside["fields"]["message"], "inside the request",
        "{inside}"
    );
    assert_eq!(inside["fields"]["code"], 7, "{inside}");
    assert_eq!(inside["span"]["name"], "http_request", "{inside}");
    assert_eq!(inside["trace_id"], trace_id.as_str(), "{inside}");
    assert_eq!(inside["span_id"], span_id.as_str(), "{inside}");
}

#[test]
fn a_line_in_a_child_span_names_the_child_span_and_the_trace_of_its_root() {
    let (lines, spans) = capture(&["--log-format", "json", "--rust-log", "info"], || {
        let root = tracing::info_span!("outbox_step", kind = "vectorize");
        let _root = root.enter();
        let child = tracing::info_span!("embed");
        let _child = child.enter();
        tracing::info!("vectorized");
    });
    let root = spans.iter().find(|s| s.name == "outbox_step").unwrap();
    let child = spans.iter().find(|s| s.name == "embed").unwrap();
    assert_eq!(child.parent_span_id, root.span_context.span_id());
    let line = lines
        .iter()
        .find(|l| l["fields"]["message"] == "vectorized")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(
        line["trace_id"],
        root.span_context.trace_id().to_string().as_str(),
        "{line}"
    );
    assert_eq!(
        line["span_id"],
        child.span_context.span_id().to_string().as_str(),
        "{line}"
    );
}

#[test]
fn trace_filter_off_means_no_trace_context_and_no_ids_in_lines() {
    let mut traceparent = Some(String::new());
    let (lines, spans) = capture(
        &[
            "--log-format",
            "json",
            "--rust-log",
            "info",
            "--trace-filter",
            "off",
        ],
        || {
            let span = tracing::info_span!("http_request");
            let _enter = span.enter();
            traceparent = rvc_runtime::telemetry::current_traceparent();
            tracing::info!("untraced");
        },
    );
    assert!(spans.is_empty(), "{spans:?}");
    assert_eq!(traceparent, None);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
}

#[test]
fn a_bad_filter_is_an_error_naming_the_variable() {
    let provider = SdkTracerProvider::builder().build();
    let err = rvc_runtime::telemetry::subscriber(
        "test",
        &args(&["--trace-filter", "rvc=notalevel"]),
        &provider,
        Output::default(),
    )
    .err()
    .expect("an invalid TRACE_FILTER is refused");
    assert!(err.to_string().contains("TRACE_FILTER"), "{err}");
}
