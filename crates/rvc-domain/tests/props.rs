//! Property tests: the parsers of untrusted input never panic and either parse or return the
//! documented error; the classic image bombs are refused from their headers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use rvc_domain::{
    Currency, DomainError, IdempotencyKey, ImageFormat, ImageKey, ImageLimits, Price, Sku,
    SniffedImage,
};

fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    v
}

/// A WebP extended header (VP8X) claiming `w`×`h` (24-bit fields, so up to 16777216).
fn webp_vp8x(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00".to_vec();
    v.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
    v.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
    v
}

/// JPEG: SOI, then a baseline SOF0 claiming `w`×`h`, and nothing after it.
fn jpeg_sof(w: u16, h: u16) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    v
}

fn limits() -> ImageLimits {
    ImageLimits::default()
}

#[test]
fn png_claiming_a_million_pixels_square_is_refused_from_the_header() {
    let r = SniffedImage::inspect(&png_header(1_000_000, 1_000_000), limits());
    assert!(matches!(r, Err(DomainError::ImageTooLarge(_))), "{r:?}");
    let r = SniffedImage::inspect(&png_header(u32::MAX, u32::MAX), limits());
    assert!(matches!(r, Err(DomainError::ImageTooLarge(_))), "{r:?}");
}

#[test]
fn webp_claiming_huge_dimensions_is_refused_from_the_header() {
    let r = SniffedImage::inspect(&webp_vp8x(16_000_000, 16_000_000), limits());
    assert!(matches!(r, Err(DomainError::ImageTooLarge(_))), "{r:?}");
    let ok = SniffedImage::inspect(&webp_vp8x(640, 480), limits()).unwrap();
    assert_eq!(
        (ok.width, ok.height, ok.format),
        (640, 480, ImageFormat::Webp)
    );
}

#[test]
fn truncated_jpegs_are_refused_or_read_from_the_header_only() {
    // SOI + the start of an APP0 segment, cut short: no dimensions to read
    let cut = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F'];
    assert!(matches!(
        SniffedImage::inspect(&cut, limits()),
        Err(DomainError::UnsupportedImage(_))
    ));
    // a header claiming 65535x65535 with no scan data: refused by its dimensions
    let r = SniffedImage::inspect(&jpeg_sof(65535, 65535), limits());
    assert!(matches!(r, Err(DomainError::ImageTooLarge(_))), "{r:?}");
    // a plausible header without a body: dimensions read, the pixels are never decoded here
    let r = SniffedImage::inspect(&jpeg_sof(64, 48), limits()).unwrap();
    assert_eq!((r.width, r.height), (64, 48));
}

fn check_inspect(bytes: &[u8]) {
    match SniffedImage::inspect(bytes, limits()) {
        Ok(img) => {
            assert_eq!(Some(img.format), ImageFormat::sniff(bytes));
            assert!(img.width >= 1 && img.width <= 8192);
            assert!(img.height >= 1 && img.height <= 8192);
            assert_eq!(img.sha256.len(), 64);
        }
        Err(DomainError::UnsupportedImage(m) | DomainError::ImageTooLarge(m)) => {
            assert!(!m.is_empty())
        }
        // A photo longer than the aspect-ratio limit: a 400 on the `images` field.
        Err(DomainError::Invalid {
            field: "images",
            reason,
        }) => {
            assert!(reason.contains("aspect ratio"), "{reason}")
        }
        Err(e) => panic!("undocumented error {e:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn inspect_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_inspect(&bytes);
    }

    /// Past the magic bytes, so the header readers themselves see arbitrary input.
    #[test]
    fn inspect_never_panics_behind_each_magic(
        magic in prop_oneof![
            Just(b"\xFF\xD8\xFF".to_vec()),
            Just(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec()),
            Just(b"RIFF\x00\x00\x00\x00WEBPVP8X".to_vec()),
            Just(b"RIFF\x00\x00\x00\x00WEBPVP8 ".to_vec()),
            Just(b"RIFF\x00\x00\x00\x00WEBPVP8L".to_vec()),
        ],
        tail in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = magic;
        bytes.extend_from_slice(&tail);
        check_inspect(&bytes);
    }

    #[test]
    fn sniff_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
        let _ = ImageFormat::sniff(&bytes);
    }

    #[test]
    fn sku_parse_is_total(s in "\\PC{0,80}|[A-Za-z0-9._-]{0,70}") {
        match Sku::parse(&s) {
            Ok(sku) => {
                prop_assert!(!sku.as_str().is_empty() && sku.as_str().len() <= 64);
                prop_assert!(sku.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
            }
            Err(DomainError::Invalid { field, .. }) => prop_assert_eq!(field, "sku"),
            Err(e) => prop_assert!(false, "undocumented error {e:?}"),
        }
    }

    #[test]
    fn price_parse_is_total_and_round_trips(s in "\\PC{0,30}|[0-9]{0,20}(\\.[0-9]{0,4})?|-?[0-9]{1,3}[.,][0-9]{1,3}") {
        match Price::parse(&s) {
            Ok(p) => {
                prop_assert!(p.minor_units() > 0);
                let again = Price::parse(&p.to_string()).unwrap();
                prop_assert_eq!(again.minor_units(), p.minor_units());
            }
            Err(DomainError::Invalid { field, .. }) => prop_assert_eq!(field, "price"),
            Err(e) => prop_assert!(false, "undocumented error {e:?}"),
        }
    }

    #[test]
    fn currency_parse_is_total(s in "\\PC{0,8}|[A-Za-z]{3}") {
        match Currency::parse(&s) {
            Ok(c) => prop_assert!(c.as_str().len() == 3 && c.as_str().bytes().all(|b| b.is_ascii_uppercase())),
            Err(DomainError::Invalid { field, .. }) => prop_assert_eq!(field, "currency"),
            Err(e) => prop_assert!(false, "undocumented error {e:?}"),
        }
    }

    /// The one key layout: every key the uploader can write parses back to itself.
    #[test]
    fn image_key_round_trips(
        id in any::<u128>(),
        sha in "[0-9a-f]{64}",
        format in prop_oneof![Just(ImageFormat::Jpeg), Just(ImageFormat::Png), Just(ImageFormat::Webp)],
    ) {
        let k = ImageKey::new(uuid::Uuid::from_u128(id), &sha, format).unwrap();
        let text = k.to_string();
        prop_assert_eq!(ImageKey::parse(&text).unwrap(), k);
    }

    /// Anything else either is refused with the documented error or formats back to itself.
    #[test]
    fn image_key_parse_is_total(s in "\\PC{0,120}|products/[0-9a-f-]{36}/[0-9a-fA-F]{60,66}\\.[a-z]{2,5}") {
        match ImageKey::parse(&s) {
            Ok(k) => prop_assert_eq!(k.to_string(), s),
            Err(DomainError::Invalid { field, .. }) => prop_assert_eq!(field, "image_key"),
            Err(e) => prop_assert!(false, "undocumented error {e:?}"),
        }
    }

    #[test]
    fn idempotency_key_parse_is_total(s in "\\PC{0,300}|[!-~]{1,300}") {
        match IdempotencyKey::parse(&s) {
            Ok(k) => {
                prop_assert!(!k.as_str().is_empty() && k.as_str().len() <= 255);
                prop_assert!(k.as_str().bytes().all(|b| b.is_ascii_graphic()));
            }
            Err(DomainError::Invalid { field, .. }) => prop_assert_eq!(field, "Idempotency-Key"),
            Err(e) => prop_assert!(false, "undocumented error {e:?}"),
        }
    }
}
