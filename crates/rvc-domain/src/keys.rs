//! Keys the catalog hands out or accepts: the object key of a photo and the client's
//! `Idempotency-Key`. Each has one place that formats and parses it.
use crate::{DomainError, ImageFormat};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// The object key of a product photo: `products/{product_id}/{sha256}.{ext}`.
///
/// The key depends only on the product and the photo's content (lower-case hex sha256 and
/// the extension of its format), so an upload can be repeated and the object GC can tell
/// from a key which product and photo it belongs to. This type is the one place that writes
/// ([`fmt::Display`]) and reads ([`ImageKey::parse`]) that format: the uploader, the object
/// GC and `rvcctl reconcile` go through it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageKey {
    product_id: Uuid,
    sha256: String,
    format: ImageFormat,
}

impl ImageKey {
    /// Every photo object lives under this prefix (what the GC and reconcile list).
    pub const PREFIX: &'static str = "products/";

    /// The key of the photo of `product_id` whose content hashes to `sha256` (64 lower-case
    /// hex digits, as [`crate::sha256_hex`] writes it).
    pub fn new(product_id: Uuid, sha256: &str, format: ImageFormat) -> Result<Self, DomainError> {
        if !is_sha256_hex(sha256) {
            return Err(DomainError::invalid(
                "image_key",
                "the sha256 must be 64 lower-case hex digits",
            ));
        }
        Ok(Self {
            product_id,
            sha256: sha256.to_owned(),
            format,
        })
    }

    /// Reads `products/{uuid}/{sha256}.{jpg|png|webp}`; anything else is refused.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let bad = |why: &str| {
            DomainError::invalid(
                "image_key",
                format!("{why}; expected products/{{product id}}/{{sha256}}.{{jpg|png|webp}}"),
            )
        };
        let rest = raw
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| bad("the key does not start with products/"))?;
        let (id, file) = rest
            .split_once('/')
            .ok_or_else(|| bad("the key has no file name"))?;
        // The canonical (hyphenated, lower-case) form only, so that parse(k).to_string() == k.
        let product_id = Uuid::parse_str(id)
            .ok()
            .filter(|u| u.hyphenated().to_string() == id)
            .ok_or_else(|| bad("the product id is not a UUID"))?;
        let (sha, ext) = file
            .split_once('.')
            .ok_or_else(|| bad("the file name has no extension"))?;
        if !is_sha256_hex(sha) {
            return Err(bad("the file name is not a lower-case hex sha256"));
        }
        let format = ImageFormat::from_extension(ext)
            .ok_or_else(|| bad("the extension is not jpg, png or webp"))?;
        Ok(Self {
            product_id,
            sha256: sha.to_owned(),
            format,
        })
    }

    /// The prefix of every photo key of one product (`products/{product_id}/`).
    pub fn product_prefix(product_id: Uuid) -> String {
        format!("{}{product_id}/", Self::PREFIX)
    }

    pub fn product_id(&self) -> Uuid {
        self.product_id
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn format(&self) -> ImageFormat {
        self.format
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl fmt::Display for ImageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}/{}.{}",
            Self::PREFIX,
            self.product_id,
            self.sha256,
            self.format.extension()
        )
    }
}

impl std::str::FromStr for ImageKey {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ImageKey {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        Self::parse(&s)
    }
}

impl From<ImageKey> for String {
    fn from(k: ImageKey) -> String {
        k.to_string()
    }
}

/// A client's `Idempotency-Key`: 1-255 visible ASCII characters (surrounding blanks trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim();
        if s.is_empty() || s.len() > Self::MAX_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DomainError::invalid(
                "Idempotency-Key",
                format!("must be 1-{} visible ASCII characters", Self::MAX_LEN),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        Self::parse(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha() -> String {
        "0a".repeat(32)
    }

    #[test]
    fn image_key_formats_and_parses_the_one_layout() {
        let id = Uuid::parse_str("0190c3f2-7c1e-7a2b-9d3e-0123456789ab").unwrap();
        let k = ImageKey::new(id, &sha(), ImageFormat::Png).unwrap();
        let text = k.to_string();
        assert_eq!(
            text,
            format!(
                "products/0190c3f2-7c1e-7a2b-9d3e-0123456789ab/{}.png",
                sha()
            )
        );
        assert!(text.starts_with(&ImageKey::product_prefix(id)));
        let back = ImageKey::parse(&text).unwrap();
        assert_eq!(back, k);
        assert_eq!(
            (back.product_id(), back.sha256(), back.format()),
            (id, sha().as_str(), ImageFormat::Png)
        );
    }

    #[test]
    fn image_key_refuses_other_keys() {
        let id = Uuid::now_v7();
        let s = sha();
        for bad in [
            String::new(),
            format!("other/{id}/{s}.png"),
            format!("products/{id}/short.png"),
            format!("products/nope/{s}.png"),
            format!("products/{id}/{s}"),
            format!("products/{id}/{s}.gif"),
            format!("products/{id}/{s}.png.bak"),
            format!("products/{id}/{}.png", s.to_uppercase()),
            format!("products/{}/{s}.png", id.to_string().to_uppercase()),
            format!("products/{}/{s}.png", id.simple()),
            format!("products/{id}/x/{s}.png"),
            format!("products/{id}/{s}.png/"),
            "products/not-a-uuid/leftover.bin".to_owned(),
        ] {
            assert!(ImageKey::parse(&bad).is_err(), "{bad:?} was accepted");
        }
        assert!(ImageKey::new(id, "ABC", ImageFormat::Jpeg).is_err());
        assert!(ImageKey::new(id, &s.to_uppercase(), ImageFormat::Jpeg).is_err());
    }

    #[test]
    fn image_key_deserializes_through_parse() {
        let k = ImageKey::new(Uuid::now_v7(), &sha(), ImageFormat::Webp).unwrap();
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(json, format!("\"{k}\""));
        assert_eq!(serde_json::from_str::<ImageKey>(&json).unwrap(), k);
        assert!(serde_json::from_str::<ImageKey>("\"products/x/y.png\"").is_err());
    }

    #[test]
    fn idempotency_key_is_visible_ascii() {
        assert_eq!(IdempotencyKey::parse(" abc-1 ").unwrap().as_str(), "abc-1");
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        for bad in ["", "   ", "a b", "é", "a\u{0}", &"k".repeat(256)] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(serde_json::from_str::<IdempotencyKey>("\"\"").is_err());
    }
}
