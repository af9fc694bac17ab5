//! What the API-key middleware adds to every `/api/v1` operation of the read side's OpenAPI
//! document: the bearer security scheme, the scope each operation needs, and the answers
//! rvc-auth gives (401, 403, 429 with `Retry-After`, 503), so the document matches the server
//! (schemathesis checks it in `make fuzz-api`).
use rvc_auth::Scope;
use utoipa::openapi::OpenApi as Doc;

/// The scope an HTTP operation needs (`method` lower-case). `None`: open (health, metrics,
/// the document itself, Swagger UI).
pub fn http_scope(method: &str, path: &str) -> Option<Scope> {
    match (method, path) {
        ("post", rvc_recognition::http::PATH) => Some(Scope::Recognize),
        (_, p) if p.starts_with("/api/v1/") => Some(Scope::CatalogRead),
        _ => None,
    }
}

/// The scope a gRPC method needs (`/package.Service/Method`). Health checks and reflection are
/// open; every other service needs a key.
pub fn grpc_scope(path: &str) -> Option<Scope> {
    if path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.") {
        None
    } else if path.starts_with("/rvc.catalog.v1.RecognitionService/") {
        Some(Scope::Recognize)
    } else {
        Some(Scope::CatalogRead)
    }
}

/// The modifier (`#[openapi(modifiers(&Security))]`).
pub struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut Doc) {
        rvc_auth::openapi::document(doc, http_scope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_of_routes_and_methods() {
        assert_eq!(
            http_scope("get", "/api/v1/products"),
            Some(Scope::CatalogRead)
        );
        assert_eq!(
            http_scope("post", "/api/v1/products:batchGet"),
            Some(Scope::CatalogRead)
        );
        assert_eq!(
            http_scope("post", "/api/v1/recognize"),
            Some(Scope::Recognize)
        );
        assert_eq!(http_scope("get", "/healthz"), None);
        assert_eq!(
            grpc_scope("/rvc.catalog.v1.ProductService/GetProductsInfo"),
            Some(Scope::CatalogRead)
        );
        assert_eq!(
            grpc_scope("/rvc.catalog.v1.RecognitionService/Recognize"),
            Some(Scope::Recognize)
        );
        assert_eq!(grpc_scope("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            grpc_scope("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            None
        );
        assert_eq!(grpc_scope("/some.Other/Thing"), Some(Scope::CatalogRead));
    }
}
