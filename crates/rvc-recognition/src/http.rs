//! actix-web `POST /api/v1/recognize`: multipart field `image` (JPEG/PNG/WebP), optional
//! `top_k` and `min_score`; answers [`Recognition`] as JSON, errors as RFC 7807
//! `application/problem+json` with the ingest API's limits and status codes (400 invalid or
//! missing field, 413 too large, 415 not a supported image, 422 dimensions over the limit,
//! 503 a dependency is down).
use crate::error::RecognitionError;
use crate::recognizer::{Recognition, Recognizer, MAX_TOP_K};
use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use futures::TryStreamExt;
use rvc_domain::{DomainError, ImageLimits, SniffedImage};
use serde::Serialize;
use std::sync::Arc;

/// Request limits (the ingest API's defaults).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_image_bytes: usize,
    pub max_image_dimension: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_image_bytes: 10 * 1024 * 1024,
            max_image_dimension: 8192,
        }
    }
}

/// Shared state of the handler.
#[derive(Debug, Clone)]
pub struct RecognizeState {
    pub recognizer: Arc<Recognizer>,
    pub limits: HttpLimits,
}

/// The path of the endpoint.
pub const PATH: &str = "/api/v1/recognize";

/// Mounts `POST /api/v1/recognize`: `App::new().configure(rvc_recognition::http::configure(state))`.
pub fn configure(state: RecognizeState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.service(resource(state));
    }
}

/// The endpoint as one actix resource with its state, for a server that wraps it in
/// middleware (authentication): `App::new().service(resource(state).wrap(auth))`. Register it
/// before any scope whose prefix also matches `/api/v1/recognize`.
pub fn resource(state: RecognizeState) -> actix_web::Resource {
    web::resource(PATH)
        .app_data(web::Data::new(state))
        .route(web::post().to(recognize))
}

/// The multipart form of `POST /api/v1/recognize` (documentation only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RecognizeForm {
    /// The photo: JPEG, PNG or WebP, at most 10 MiB and 8192 pixels a side.
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    /// Candidates per object, 1..=20 (default 5).
    #[schema(minimum = 1, maximum = 20)]
    top_k: Option<u32>,
    /// Open-set threshold (cosine similarity, -1..=1): objects scoring less are left out.
    /// Default: the calibrated `RECOGNITION_MIN_SCORE`.
    #[schema(minimum = -1.0, maximum = 1.0)]
    min_score: Option<f32>,
}

/// An RFC 7807 problem.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    fn field(mut self, f: &str) -> Self {
        self.field = Some(f.to_owned());
        self
    }

    fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-field",
            "Invalid field",
            detail,
        )
        .field(field)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type("application/problem+json")
            .json(self)
    }
}

impl From<RecognitionError> for Problem {
    fn from(e: RecognitionError) -> Self {
        match &e {
            RecognitionError::InvalidImage(d) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                d.clone(),
            )
            .field("image"),
            RecognitionError::InvalidRequest(d) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
                d.clone(),
            ),
            _ => {
                tracing::error!(error = %e, "recognition failed");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Service unavailable",
                    "recognition is unavailable (ML service, vector index or catalog); retry later",
                )
            }
        }
    }
}

const MAX_TEXT_FIELD: usize = 64;

struct Form {
    image: Vec<u8>,
    top_k: usize,
    min_score: Option<f32>,
}

async fn read_form(mut payload: Multipart, limits: HttpLimits) -> Result<Form, Problem> {
    let mut image: Option<Vec<u8>> = None;
    let mut top_k = 0usize;
    let mut min_score = None;
    while let Some(mut field) = payload.try_next().await.map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            format!("malformed multipart body: {e}"),
        )
    })? {
        let name = field.name().unwrap_or_default().to_owned();
        let cap = if name == "image" {
            limits.max_image_bytes
        } else {
            MAX_TEXT_FIELD
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = field.try_next().await.map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
                format!("malformed multipart body: {e}"),
            )
        })? {
            if bytes.len() + chunk.len() > cap {
                return Err(if name == "image" {
                    Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too-large",
                        "Payload too large",
                        format!("image: at most {} bytes", limits.max_image_bytes),
                    )
                    .field("image")
                } else {
                    Problem::invalid(&name, format!("{name}: at most {cap} bytes"))
                });
            }
            if name == "image" && bytes.is_empty() && chunk.len() >= 12 {
                // Refuse non-images on the first bytes, before reading the rest.
                if rvc_domain::ImageFormat::sniff(&chunk).is_none() {
                    return Err(unsupported());
                }
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = || String::from_utf8_lossy(&bytes).trim().to_owned();
        match name.as_str() {
            "image" => {
                if image.is_some() {
                    return Err(Problem::invalid("image", "image: send exactly one photo"));
                }
                image = Some(bytes);
            }
            "top_k" => {
                let t = text();
                top_k = t
                    .parse::<usize>()
                    .ok()
                    .filter(|k| (1..=MAX_TOP_K).contains(k))
                    .ok_or_else(|| {
                        Problem::invalid(
                            "top_k",
                            format!("top_k: {t:?} is not an integer in 1..={MAX_TOP_K}"),
                        )
                    })?;
            }
            "min_score" => {
                let t = text();
                min_score = Some(
                    t.parse::<f32>()
                        .ok()
                        .filter(|s| s.is_finite() && (-1.0..=1.0).contains(s))
                        .ok_or_else(|| {
                            Problem::invalid(
                                "min_score",
                                format!("min_score: {t:?} is not a number in -1..=1"),
                            )
                        })?,
                );
            }
            _ => {}
        }
    }
    let image = image.ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "missing-field",
            "Missing field",
            "image: is required",
        )
        .field("image")
    })?;
    SniffedImage::inspect(
        &image,
        ImageLimits {
            max_width: limits.max_image_dimension,
            max_height: limits.max_image_dimension,
            ..ImageLimits::default()
        },
    )
    .map_err(|e| match e {
        DomainError::ImageTooLarge(d) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "image-dimensions",
            "Unprocessable request",
            d,
        )
        .field("image"),
        DomainError::UnsupportedImage(d) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            d,
        )
        .field("image"),
        other => Problem::invalid("image", other.to_string()),
    })?;
    Ok(Form {
        image,
        top_k,
        min_score,
    })
}

fn unsupported() -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported media type",
        "image: not a supported image: only JPEG, PNG and WebP are accepted",
    )
    .field("image")
}

/// Recognise the catalog products in a photo: one object per product, best score first; an
/// empty list when nothing from the catalog is there. Only products currently indexed and not
/// archived are returned, with their current price.
#[utoipa::path(
    post,
    path = "/api/v1/recognize",
    request_body(content = RecognizeForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The products found", body = Recognition),
        (status = 400, description = "Missing or invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The photo is over the size limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not multipart, or the photo is not JPEG, PNG or WebP", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The photo's dimensions are over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A recognition backend (ML service, vector index) or the catalog is unavailable; retry", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn recognize(
    state: web::Data<RecognizeState>,
    req: actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<web::Json<Recognition>, Problem> {
    let ct = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with("multipart/form-data") {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send multipart/form-data with a field `image`",
        ));
    }
    let multipart = Multipart::new(req.headers(), payload);
    let form = read_form(multipart, state.limits).await?;
    let out = state
        .recognizer
        .recognize(form.image, form.top_k, form.min_score)
        .await?;
    Ok(web::Json(out))
}
