//! The actix-web middleware: `.wrap(auth.require(Scope::CatalogWrite))` on a route, resource or
//! scope. It runs before the handler reads the body, so an unauthenticated upload is refused
//! without reading it. On success the [`Principal`] is in the request's extensions.
use crate::authenticator::{Authenticator, Principal};
use crate::scope::Scope;
use actix_web::body::EitherBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header;
use actix_web::{Error, HttpMessage};
use futures::future::{ready, LocalBoxFuture, Ready};
use std::rc::Rc;

/// Middleware factory requiring `scope` (build it with [`Authenticator::require`]).
#[derive(Clone)]
pub struct RequireScope {
    auth: Authenticator,
    scope: Scope,
}

impl Authenticator {
    /// The actix-web middleware for a route that needs `scope`.
    pub fn require(&self, scope: Scope) -> RequireScope {
        RequireScope {
            auth: self.clone(),
            scope,
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequireScope
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = RequireScopeMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequireScopeMiddleware {
            service: Rc::new(service),
            auth: self.auth.clone(),
            scope: self.scope,
        }))
    }
}

pub struct RequireScopeMiddleware<S> {
    service: Rc<S>,
    auth: Authenticator,
    scope: Scope,
}

impl<S, B> Service<ServiceRequest> for RequireScopeMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let auth = self.auth.clone();
        let scope = self.scope;
        Box::pin(async move {
            let value = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec());
            match auth.check(value.as_deref(), scope).await {
                Ok(principal) => {
                    tracing::Span::current().record("key_id", principal.key_id.as_str());
                    req.extensions_mut().insert::<Principal>(principal);
                    let res = service.call(req).await?;
                    Ok(res.map_into_left_body())
                }
                Err(e) => Ok(req.into_response(e.http_response()).map_into_right_body()),
            }
        })
    }
}
