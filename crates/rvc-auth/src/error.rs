//! Why a request was refused, and how that looks on HTTP (problem+json) and gRPC (status).
//! The texts are public: they never carry the key, a hash, SQL or a driver error.
use crate::scope::Scope;
use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` (or `authorization` metadata on gRPC).
    #[error("an API key is required: send `Authorization: Bearer <key>`")]
    Missing,
    /// Malformed, unknown, or a hash mismatch: one answer for all, so the answer tells an
    /// attacker nothing about which ids exist.
    #[error("the API key is not valid")]
    Invalid,
    #[error("the API key has expired; ask for a new one")]
    Expired,
    #[error("the API key has been revoked; ask for a new one")]
    Revoked,
    #[error("this API key lacks the `{0}` scope needed here")]
    Forbidden(Scope),
    #[error("rate limit of this API key exceeded; retry after {} s", retry_secs(*.0))]
    RateLimited(Duration),
    /// The key store could not be read (the cause is logged, not shown).
    #[error("keys cannot be checked right now; retry later")]
    Unavailable,
}

fn retry_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl AuthError {
    /// A short stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Invalid => "invalid",
            AuthError::Expired => "expired",
            AuthError::Revoked => "revoked",
            AuthError::Forbidden(_) => "forbidden",
            AuthError::RateLimited(_) => "rate_limited",
            AuthError::Unavailable => "unavailable",
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::Invalid | AuthError::Expired | AuthError::Revoked => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
            AuthError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            AuthError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// `(type slug, title)` of the problem document.
    fn problem(&self) -> (&'static str, &'static str) {
        match self {
            AuthError::Missing | AuthError::Invalid | AuthError::Expired | AuthError::Revoked => {
                ("unauthenticated", "Unauthenticated")
            }
            AuthError::Forbidden(_) => ("permission-denied", "Permission denied"),
            AuthError::RateLimited(_) => ("rate-limited", "Too many requests"),
            AuthError::Unavailable => ("unavailable", "Service unavailable"),
        }
    }

    /// The RFC 7807 body, the shape every rvc HTTP error has.
    pub fn problem_json(&self) -> serde_json::Value {
        let (slug, title) = self.problem();
        serde_json::json!({
            "type": format!("/problems/{slug}"),
            "title": title,
            "status": self.http_status().as_u16(),
            "detail": self.to_string(),
        })
    }

    /// The HTTP answer: problem+json, `WWW-Authenticate` on 401/403 (RFC 6750), `Retry-After`
    /// on 429.
    pub fn http_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.http_status());
        r.content_type("application/problem+json");
        match self {
            AuthError::Missing => {
                r.insert_header((header::WWW_AUTHENTICATE, r#"Bearer realm="rvc""#));
            }
            AuthError::Invalid | AuthError::Expired | AuthError::Revoked => {
                r.insert_header((
                    header::WWW_AUTHENTICATE,
                    r#"Bearer realm="rvc", error="invalid_token""#,
                ));
            }
            AuthError::Forbidden(scope) => {
                r.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!(r#"Bearer realm="rvc", error="insufficient_scope", scope="{scope}""#),
                ));
            }
            AuthError::RateLimited(d) => {
                r.insert_header((header::RETRY_AFTER, retry_secs(*d).to_string()));
            }
            AuthError::Unavailable => {
                r.insert_header((header::RETRY_AFTER, "1"));
            }
        }
        r.body(self.problem_json().to_string())
    }

    /// The gRPC answer: UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED (with
    /// `retry-after` metadata in seconds) or UNAVAILABLE.
    pub fn grpc_status(&self) -> tonic::Status {
        match self {
            AuthError::Missing | AuthError::Invalid | AuthError::Expired | AuthError::Revoked => {
                tonic::Status::unauthenticated(self.to_string())
            }
            AuthError::Forbidden(_) => tonic::Status::permission_denied(self.to_string()),
            AuthError::RateLimited(d) => {
                let mut s = tonic::Status::resource_exhausted(self.to_string());
                if let Ok(v) = retry_secs(*d).to_string().parse() {
                    s.metadata_mut().insert("retry-after", v);
                }
                s
            }
            AuthError::Unavailable => tonic::Status::unavailable(self.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(AuthError::Missing.http_status(), 401);
        assert_eq!(AuthError::Revoked.http_status(), 401);
        assert_eq!(AuthError::Forbidden(Scope::CatalogWrite).http_status(), 403);
        let rl = AuthError::RateLimited(Duration::from_millis(1200));
        assert_eq!(rl.http_status(), 429);
        assert_eq!(
            rl.problem_json()["detail"],
            "rate limit of this API key exceeded; retry after 2 s"
        );
        assert_eq!(rl.grpc_status().code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            rl.grpc_status()
                .metadata()
                .get("retry-after")
                .map(|v| v.to_str().ok()),
            Some(Some("2"))
        );
        assert_eq!(
            AuthError::Expired.grpc_status().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            AuthError::Forbidden(Scope::Recognize).grpc_status().code(),
            tonic::Code::PermissionDenied
        );
    }
}
