//! Request metrics of the gRPC server: a tower layer that counts every call and records its
//! duration by gRPC method (`rvc_vector_requests_total{method}`,
//! `rvc_vector_request_seconds{method}`). Only the Qdrant services' paths become label values
//! (anything else is `other`), so a client cannot grow the label set.
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// The layer to put on the tonic server.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsLayer;

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered { inner }
    }
}

/// A service whose calls are counted and timed.
#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
}

/// The label of a request path: `Points/Search` for `/qdrant.Points/Search`.
pub fn method_label(path: &str) -> String {
    match path.strip_prefix("/qdrant.") {
        Some(m)
            if m.len() <= 64
                && m.split('/').count() == 2
                && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '/') =>
        {
            m.to_owned()
        }
        _ => "other".to_owned(),
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for Metered<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_label(req.uri().path());
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            metrics::counter!("rvc_vector_requests_total", "method" => method.clone()).increment(1);
            metrics::histogram!("rvc_vector_request_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_qdrant_methods_become_labels() {
        assert_eq!(method_label("/qdrant.Points/Search"), "Points/Search");
        assert_eq!(method_label("/qdrant.Collections/Get"), "Collections/Get");
        assert_eq!(method_label("/evil.Service/X"), "other");
        assert_eq!(method_label("/qdrant.Points/Search/../x"), "other");
        assert_eq!(
            method_label(&format!("/qdrant.{}", "A/".repeat(50))),
            "other"
        );
    }
}
