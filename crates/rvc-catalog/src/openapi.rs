//! What the API-key middleware adds to every `/api/v1` operation of the read side's OpenAPI
//! document: the bearer security scheme, the scope each operation needs, and the answers
//! rvc-auth gives (401, 403, 429 with `Retry-After`, 503), so the document matches the server
//! (schemathesis checks it in `make fuzz-api`).
use rvc_auth::Scope;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Doc, Ref, ResponseBuilder};

/// The name of the security scheme in the document.
pub const SCHEME: &str = "api_key";

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

fn problem(description: &str, retry_after: bool) -> utoipa::openapi::Response {
    let mut r = ResponseBuilder::new().description(description).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    if retry_after {
        r = r.header(
            "Retry-After",
            utoipa::openapi::HeaderBuilder::new()
                .schema(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::Type::Integer),
                )
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    r.build()
}

/// The modifier (`#[openapi(modifiers(&Security))]`).
pub struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut Doc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("rvc_<id>_<secret>")
                    .description(Some(
                        "An API key from `rvcctl apikey create`, sent as `Authorization: Bearer <key>`",
                    ))
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, op) in [
                ("get", item.get.as_mut()),
                ("post", item.post.as_mut()),
                ("put", item.put.as_mut()),
                ("delete", item.delete.as_mut()),
            ] {
                let (Some(op), Some(scope)) = (op, http_scope(method, path)) else {
                    continue;
                };
                op.security = Some(vec![SecurityRequirement::new(SCHEME, [scope.as_str()])]);
                let r = &mut op.responses.responses;
                r.insert(
                    "401".into(),
                    problem(
                        "No API key, or one that is unknown, expired or revoked",
                        false,
                    )
                    .into(),
                );
                r.insert(
                    "403".into(),
                    problem(&format!("The API key lacks the `{scope}` scope"), false).into(),
                );
                r.insert(
                    "429".into(),
                    problem("The API key's rate limit is exceeded", true).into(),
                );
                // the operation's own 503 (a recognition backend) keeps its description
                r.entry("503".into()).or_insert_with(|| {
                    problem(
                        "The database (or the key store) is unavailable; retry",
                        true,
                    )
                    .into()
                });
            }
        }
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
