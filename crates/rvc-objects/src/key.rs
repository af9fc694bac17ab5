//! Object keys: the deterministic product-image key and the validation every backend applies.
use crate::error::{ObjectStoreError, Result};
use crate::Metadata;
use uuid::Uuid;

/// Longest key S3 accepts (bytes).
pub const MAX_KEY_LEN: usize = 1024;
/// Largest total user metadata S3 accepts (sum of names and values, bytes).
pub const MAX_METADATA_BYTES: usize = 2048;

/// The deterministic key of a product image: `products/{product_id}/{sha256}.{ext}`, from
/// raw parts (the layout is [`rvc_domain::ImageKey`]'s; code that has a photo's format uses
/// `ImageKey` itself, which also parses keys back).
///
/// The same product and content always map to the same key, so re-uploading after a
/// crash overwrites the same object instead of leaving a duplicate.
pub fn product_image_key(product_id: Uuid, sha256: &str, ext: &str) -> String {
    format!("{}{sha256}.{ext}", product_prefix(product_id))
}

/// The prefix under which all images of one product live (for `list`).
pub fn product_prefix(product_id: Uuid) -> String {
    rvc_domain::ImageKey::product_prefix(product_id)
}

/// Rejects keys that would be unsafe or ambiguous on either backend: empty, longer than
/// 1024 bytes, starting or ending with `/`, empty / `.` / `..` segments, control characters
/// or backslashes.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason| {
        Err(ObjectStoreError::InvalidKey {
            key: key.chars().take(200).collect(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("longer than 1024 bytes");
    }
    if key.starts_with('/') || key.ends_with('/') {
        return bad("starts or ends with '/'");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return bad("contains a control character or a backslash");
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad("has an empty, '.' or '..' segment");
    }
    Ok(())
}

/// Prefixes follow the key rules except that they may be empty and may end with `/`.
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        if prefix.is_empty() {
            return Ok(());
        }
        return Err(ObjectStoreError::InvalidKey {
            key: prefix.to_owned(),
            reason: "prefix '/' is not allowed (use \"\")",
        });
    }
    if prefix.starts_with('/') || prefix.chars().any(|c| c.is_control() || c == '\\') {
        return Err(ObjectStoreError::InvalidKey {
            key: prefix.chars().take(200).collect(),
            reason: "prefix starts with '/' or contains a control character or backslash",
        });
    }
    Ok(())
}

fn is_header_value(v: &str) -> bool {
    v.bytes().all(|b| (0x20..0x7f).contains(&b)) && v.trim() == v
}

/// Content type and user metadata must survive a round trip through HTTP headers:
/// names are lowercase `[a-z0-9-]` (S3 lowercases them anyway), values are printable
/// ASCII without leading/trailing spaces, 2 KiB in total.
pub fn validate_metadata(content_type: &str, metadata: &Metadata) -> Result<()> {
    if content_type.is_empty() || !is_header_value(content_type) {
        return Err(ObjectStoreError::InvalidMetadata {
            name: "content-type".to_owned(),
            reason: "empty or not printable ASCII",
        });
    }
    let mut total = 0usize;
    for (name, value) in metadata {
        let bad = |reason| {
            Err(ObjectStoreError::InvalidMetadata {
                name: name.chars().take(100).collect(),
                reason,
            })
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad("name must be non-empty lowercase [a-z0-9-]");
        }
        if !is_header_value(value) {
            return bad("value must be printable ASCII without surrounding spaces");
        }
        total += name.len() + value.len();
    }
    if total > MAX_METADATA_BYTES {
        return Err(ObjectStoreError::InvalidMetadata {
            name: "*".to_owned(),
            reason: "user metadata larger than 2 KiB",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn product_image_key_is_deterministic() {
        let id = Uuid::parse_str("0190c3f2-7c1e-7a2b-9d3e-0123456789ab").unwrap();
        let sha = "ab".repeat(32);
        let k = product_image_key(id, &sha, "jpg");
        assert_eq!(
            k,
            format!("products/0190c3f2-7c1e-7a2b-9d3e-0123456789ab/{sha}.jpg")
        );
        assert_eq!(k, product_image_key(id, &sha, "jpg"));
        assert!(k.starts_with(&product_prefix(id)));
        validate_key(&k).unwrap();
    }

    #[test]
    fn rejects_unsafe_keys() {
        for k in [
            "", "/a", "a/", "a//b", "../x", "a/../b", "a/./b", "a\\b", "a\nb", "..",
        ] {
            assert!(validate_key(k).is_err(), "{k:?} accepted");
        }
        assert!(validate_key(&"x".repeat(1025)).is_err());
        for k in ["a", "a/b.c", "products/x/y.jpg", "a b", "ünï", ".hidden/x"] {
            validate_key(k).unwrap();
        }
    }

    #[test]
    fn prefixes() {
        for p in ["", "a", "a/", "products/x/"] {
            validate_prefix(p).unwrap();
        }
        for p in ["/", "/a", "a\0"] {
            assert!(validate_prefix(p).is_err(), "{p:?} accepted");
        }
    }

    #[test]
    fn metadata_rules() {
        let ok: Metadata = [("sha256".to_owned(), "abc".to_owned())].into();
        validate_metadata("image/jpeg", &ok).unwrap();
        assert!(validate_metadata("", &ok).is_err());
        assert!(validate_metadata("image/jpeg\r\n", &ok).is_err());
        let upper: Metadata = [("Sha".to_owned(), "x".to_owned())].into();
        assert!(validate_metadata("a/b", &upper).is_err());
        let nonascii: Metadata = [("x".to_owned(), "é".to_owned())].into();
        assert!(validate_metadata("a/b", &nonascii).is_err());
        let big: Metadata = [("x".to_owned(), "y".repeat(3000))].into();
        assert!(validate_metadata("a/b", &big).is_err());
    }

    #[test]
    fn retryable_classification() {
        let e = ObjectStoreError::Http {
            op: "put",
            key: "k".into(),
            status: 503,
            code: "SlowDown".into(),
        };
        assert!(e.is_retryable());
        let e = ObjectStoreError::Http {
            op: "put",
            key: "k".into(),
            status: 400,
            code: "InvalidArgument".into(),
        };
        assert!(!e.is_retryable());
        assert!(!ObjectStoreError::Auth {
            op: "put",
            status: 403,
            code: "AccessDenied".into()
        }
        .is_retryable());
        assert!(ObjectStoreError::Timeout { op: "get" }.is_retryable());
    }
}
