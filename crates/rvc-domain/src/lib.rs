//! Domain types of the Retail Vision Catalog.
//!
//! Every value that comes from outside (HTTP form fields, CLI arguments) is parsed once
//! into one of these newtypes; code that holds a `Sku` never re-validates it.

mod image;
mod keys;
mod product;
mod status;

pub use image::{
    check_pixels_and_aspect, ImageFormat, ImageLimits, SniffedImage, MAX_ASPECT_RATIO,
    MAX_IMAGE_PIXELS,
};
pub use keys::{IdempotencyKey, ImageKey};
pub use product::{CategoryName, Currency, Price, ProductName, Sku};
pub use status::{ModelState, OutboxKind, OutboxState, ProductStatus, VersionChange};

/// Why a value was rejected. The message is written for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    UnsupportedImage(String),
    #[error("{0}")]
    ImageTooLarge(String),
}

impl DomainError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// The input field the error is about, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
