//! A product's trace across every binary: one POST, then the spans each process exports over
//! OTLP/gRPC while the product goes to `indexed`, and the Kafka record's `traceparent`.
//! The receiver is an OTLP TraceService in this test (the opentelemetry-proto types served with
//! tonic): what the binaries send is exactly what a collector would get.
//!
//! The processes log at `warn` (the vectorizer at `debug`, in JSON): spans are traced whatever
//! `RUST_LOG` says (`TRACE_FILTER`), and the vectorizer's log line for the product names the
//! trace of the span the vectorizer exported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use rvc_e2e::fixture_photos;
use rvc_e2e::stack::{Stack, TOPIC};
use rvc_kafka::KafkaReader;
use rvc_relay::testing::decode_all;

/// Every span received, with the `service.name` of the process that sent it.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut out = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                out.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            Value::IntValue(i) => Some(i.to_string()),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_post_yields_the_ingest_span_a_linked_span_per_step_and_the_same_trace_on_kafka() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
        // export every 200 ms instead of 5 s, so the test waits less
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        // Log lines filtered as in production (the API at warn: its request span must still
        // be traced), JSON lines that carry the trace id.
        ("RUST_LOG", "warn,rvc_vectorizer=debug".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
    ];
    let mut stack = Stack::start_with(&env, &[]).await;
    let photo = fixture_photos().remove(0).1;
    let product = stack.post_product("TRACE-1", "3.49", &[photo]).await;
    let product_s = product.to_string();

    // Wait for indexed.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        stack.assert_all_running();
        let st = stack.statuses().await;
        if st.iter().any(|(s, n)| s == "indexed" && *n == 1) {
            break;
        }
        assert!(
            !st.iter().any(|(s, _)| s == "failed"),
            "{st:?}\n{}",
            stack.log_tails()
        );
        assert!(
            Instant::now() < deadline,
            "not indexed in 120 s: {st:?}\n{}",
            stack.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The trace the API stored with the product's first outbox row: the ingest trace.
    let db = stack.db.pool.get().await.unwrap();
    let stored: Option<String> = db
        .query_one(
            "SELECT traceparent FROM outbox WHERE product_id = $1 AND kind = 'upload_images'",
            &[&product],
        )
        .await
        .unwrap()
        .get(0);
    let stored = stored.unwrap_or_else(|| {
        panic!(
            "the API stored no traceparent on the product's first outbox row\n{}",
            stack.log_tails()
        )
    });
    let mut parts = stored.split('-');
    let (_, trace_id, parent_span) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());

    // Every process exports in the background: wait until the ingest span and one span per
    // step linked to the ingest trace have arrived.
    let steps = [
        ("rvc-image-uploader", "upload_images"),
        ("rvc-vectorizer", "vectorize"),
        ("rvc-relay", "publish"),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let (ingest, linked) = loop {
        let spans = receiver.spans.lock().unwrap().clone();
        let ingest: Vec<&(String, Span)> = spans
            .iter()
            .filter(|(svc, s)| svc == "rvc-ingest-api" && hex(&s.trace_id) == trace_id)
            .collect();
        // (service, the span's own trace id, the span its link names)
        let linked: Vec<(String, String, String)> = steps
            .iter()
            .filter_map(|(svc, kind)| {
                spans
                    .iter()
                    .find(|(sv, s)| {
                        sv == svc
                            && s.name == "outbox_step"
                            && attr(s, "kind").as_deref() == Some(*kind)
                            && attr(s, "product_id").as_deref() == Some(product_s.as_str())
                            && s.links.iter().any(|l| hex(&l.trace_id) == trace_id)
                    })
                    .map(|(sv, s)| {
                        let link = s.links.iter().find(|l| hex(&l.trace_id) == trace_id);
                        (
                            sv.clone(),
                            hex(&s.trace_id),
                            link.map(|l| hex(&l.span_id)).unwrap_or_default(),
                        )
                    })
            })
            .collect();
        if !ingest.is_empty() && linked.len() == steps.len() {
            break (ingest.into_iter().cloned().collect::<Vec<_>>(), linked);
        }
        assert!(
            Instant::now() < deadline,
            "after 30 s: {} ingest span(s) in trace {trace_id}, steps linked: {linked:?}; \
             spans received: {:?}",
            ingest.len(),
            spans
                .iter()
                .map(|(svc, s)| format!("{svc}/{} trace {}", s.name, hex(&s.trace_id)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The ingest span is the HTTP request's, and the stored traceparent names a span the API
    // exported in that trace: the steps link to a span that exists.
    assert!(
        ingest.iter().any(|(_, s)| s.name == "http_request"),
        "{:?}",
        ingest.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
    );
    assert!(
        ingest.iter().any(|(_, s)| hex(&s.span_id) == parent_span),
        "the stored traceparent's span {parent_span} was not exported by the API"
    );
    for (svc, _, link_span) in &linked {
        assert_eq!(link_span, parent_span, "{svc} links to the ingest span");
    }

    // The log leads to the trace: the vectorizer's JSON line for the product carries the trace
    // id of the step span it exported (whose link leads to the ingest trace).
    let vectorize_trace = &linked[1].1;
    let vectorizer_log = stack.workers[1].log.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let text = std::fs::read_to_string(&vectorizer_log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| {
                l["fields"]["message"] == "vectorized"
                    && l["fields"]["product_id"] == product_s.as_str()
            });
        if let Some(line) = found {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no `vectorized` JSON line for {product_s} in the vectorizer log:\n{}",
            stack.workers[1].log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        line["trace_id"].as_str(),
        Some(vectorize_trace.as_str()),
        "the log line names the vectorizer's step trace: {line}"
    );
    assert_eq!(line["span"]["name"], "outbox_step", "{line}");

    // Kafka: the product's record carries a traceparent of the same trace.
    let reader = KafkaReader::connect(stack.kafka.brokers(), Default::default())
        .await
        .unwrap();
    let records = reader.fetch_all(TOPIC).await.unwrap();
    let events = decode_all(&records).unwrap();
    let event = events
        .iter()
        .find(|e| e.product_id == product_s)
        .expect("the product's event");
    let header = String::from_utf8(
        event
            .headers
            .get("traceparent")
            .expect("traceparent header")
            .clone(),
    )
    .unwrap();
    assert_eq!(
        header.split('-').nth(1),
        Some(trace_id),
        "Kafka traceparent {header} vs ingest trace {trace_id}"
    );

    server.abort();
}
