//! The tonic interceptor, as a tower layer (a key lookup may need Postgres, and tonic's
//! `Interceptor` trait is synchronous): `Server::builder().layer(auth.grpc_layer(policy))`.
//! `policy` maps the gRPC path (`/package.Service/Method`) to the scope it needs; `None` lets
//! the call through unauthenticated (health checks, reflection). The key comes from the
//! `authorization` metadata as `Bearer <key>`. Refusals are UNAUTHENTICATED,
//! PERMISSION_DENIED, RESOURCE_EXHAUSTED (with `retry-after`) or UNAVAILABLE; on success the
//! [`Principal`] is in the request's extensions (`request.extensions().get::<Principal>()`).
use crate::authenticator::{Authenticator, Principal};
use crate::scope::Scope;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::task::{Context, Poll};

pub type Policy = Arc<dyn Fn(&str) -> Option<Scope> + Send + Sync>;

/// The tower layer; see the module docs.
#[derive(Clone)]
pub struct GrpcAuthLayer {
    auth: Authenticator,
    policy: Policy,
}

impl Authenticator {
    /// The gRPC interceptor layer with a path → scope policy.
    pub fn grpc_layer<F>(&self, policy: F) -> GrpcAuthLayer
    where
        F: Fn(&str) -> Option<Scope> + Send + Sync + 'static,
    {
        GrpcAuthLayer {
            auth: self.clone(),
            policy: Arc::new(policy),
        }
    }
}

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcAuth {
            inner,
            auth: self.auth.clone(),
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcAuth<S> {
    inner: S,
    auth: Authenticator,
    policy: Policy,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcAuth<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        // the clone is not ready; use the one that is (tower's documented pattern)
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let needed = (self.policy)(req.uri().path());
        let auth = self.auth.clone();
        Box::pin(async move {
            let Some(scope) = needed else {
                return inner.call(req).await;
            };
            let value = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec());
            match auth.check(value.as_deref(), scope).await {
                Ok(principal) => {
                    req.extensions_mut().insert::<Principal>(principal);
                    inner.call(req).await
                }
                Err(e) => Ok(e.grpc_status().into_http()),
            }
        })
    }
}
