use crate::DomainError;
use serde::{Deserialize, Serialize};

/// The photo formats the catalog accepts, told apart by their magic bytes (never by the
/// file name or the client's Content-Type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
}

impl ImageFormat {
    /// Sniffs the format from the first bytes of a file.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
        }
    }

    /// The format whose [`extension`](Self::extension) is `ext` (exactly: `jpg`, `png`, `webp`).
    pub fn from_extension(ext: &str) -> Option<Self> {
        [Self::Jpeg, Self::Png, Self::Webp]
            .into_iter()
            .find(|f| f.extension() == ext)
    }

    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct {
            "image/jpeg" => Some(Self::Jpeg),
            "image/png" => Some(Self::Png),
            "image/webp" => Some(Self::Webp),
            _ => None,
        }
    }
}

/// The one pixel limit of the catalog: ingest refuses a photo of more pixels (width × height)
/// and the ML service decodes none larger, so an accepted photo can always be embedded.
pub const MAX_IMAGE_PIXELS: u64 = 50_000_000;
/// The most elongated photo accepted, long side : short side. A thin strip (8192×1) would
/// otherwise pass every other check and make the ML service's resize (short side → 256)
/// allocate gigapixels; no product photo is this thin.
pub const MAX_ASPECT_RATIO: u32 = 20;

/// Limits on accepted photos.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    pub max_width: u32,
    pub max_height: u32,
    /// Width × height, at most [`MAX_IMAGE_PIXELS`] (the ML service's limit).
    pub max_pixels: u64,
    /// Long side / short side, at most [`MAX_ASPECT_RATIO`].
    pub max_aspect_ratio: u32,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_width: 8192,
            max_height: 8192,
            max_pixels: MAX_IMAGE_PIXELS,
            max_aspect_ratio: MAX_ASPECT_RATIO,
        }
    }
}

/// Checks the pixel count and the aspect ratio of a `width`×`height` image against the
/// catalog's limits (shared by ingest and the ML service). `Err` says why, for people.
pub fn check_pixels_and_aspect(
    width: u32,
    height: u32,
    max_pixels: u64,
    max_aspect_ratio: u32,
) -> Result<(), DomainError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(DomainError::ImageTooLarge(format!(
            "image is {width}x{height} = {pixels} pixels; at most {max_pixels} pixels are accepted"
        )));
    }
    let (long, short) = (width.max(height), width.min(height).max(1));
    if u64::from(long) > u64::from(short) * u64::from(max_aspect_ratio) {
        return Err(DomainError::invalid(
            "images",
            format!(
                "image is {width}x{height}, an aspect ratio over {max_aspect_ratio}:1; \
                 photos may be at most {max_aspect_ratio} times longer than wide"
            ),
        ));
    }
    Ok(())
}

/// A photo whose format and dimensions were read from its header (the pixels are not decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniffedImage {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub sha256: String,
}

impl SniffedImage {
    /// Checks the magic bytes and reads the dimensions from the header only.
    pub fn inspect(bytes: &[u8], limits: ImageLimits) -> Result<Self, DomainError> {
        let format = ImageFormat::sniff(bytes).ok_or_else(|| {
            DomainError::UnsupportedImage(
                "not a supported image: only JPEG, PNG and WebP are accepted".to_owned(),
            )
        })?;
        if format == ImageFormat::Png && bytes.get(12..16) != Some(b"IHDR".as_slice()) {
            return Err(DomainError::UnsupportedImage(
                "the png header could not be read: IHDR chunk missing".to_owned(),
            ));
        }
        let size = imagesize::blob_size(bytes).map_err(|e| {
            DomainError::UnsupportedImage(format!(
                "the {} header could not be read: {e}",
                format.extension()
            ))
        })?;
        let (width, height) = (
            u32::try_from(size.width).unwrap_or(u32::MAX),
            u32::try_from(size.height).unwrap_or(u32::MAX),
        );
        if width == 0 || height == 0 {
            return Err(DomainError::UnsupportedImage(
                "the image has a zero width or height".to_owned(),
            ));
        }
        if width > limits.max_width || height > limits.max_height {
            return Err(DomainError::ImageTooLarge(format!(
                "image is {width}x{height}; at most {}x{} is accepted",
                limits.max_width, limits.max_height
            )));
        }
        check_pixels_and_aspect(
            width,
            height,
            limits.max_pixels.min(MAX_IMAGE_PIXELS),
            limits.max_aspect_ratio.min(MAX_ASPECT_RATIO),
        )?;
        Ok(Self {
            format,
            width,
            height,
            sha256: crate::sha256_hex(bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PNG header with the given dimensions (IHDR only: enough for the header reader).
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        v
    }

    #[test]
    fn sniffs_by_magic_bytes() {
        assert_eq!(
            ImageFormat::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(
            ImageFormat::sniff(&png_header(1, 1)),
            Some(ImageFormat::Png)
        );
        assert_eq!(
            ImageFormat::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageFormat::Webp)
        );
        assert_eq!(ImageFormat::sniff(b"GIF89a"), None);
        assert_eq!(ImageFormat::sniff(b""), None);
    }

    #[test]
    fn reads_dimensions_and_enforces_limits() {
        let ok = SniffedImage::inspect(&png_header(640, 480), ImageLimits::default()).unwrap();
        assert_eq!(
            (ok.width, ok.height, ok.format),
            (640, 480, ImageFormat::Png)
        );
        let big = SniffedImage::inspect(&png_header(8193, 10), ImageLimits::default());
        assert!(matches!(big, Err(DomainError::ImageTooLarge(_))));
        let gif = SniffedImage::inspect(b"GIF89a\x01\x00\x01\x00", ImageLimits::default());
        assert!(matches!(gif, Err(DomainError::UnsupportedImage(_))));
    }

    /// Issue 11, item 6: an 8192×1 strip passed every check before.
    #[test]
    fn refuses_thin_strips_and_more_pixels_than_the_ml_service_decodes() {
        let strip = SniffedImage::inspect(&png_header(8192, 1), ImageLimits::default());
        match strip {
            Err(DomainError::Invalid { field, reason }) => {
                assert_eq!(field, "images");
                assert!(reason.contains("aspect ratio"), "{reason}");
            }
            other => panic!("accepted a strip: {other:?}"),
        }
        let tall = SniffedImage::inspect(&png_header(100, 2001), ImageLimits::default());
        assert!(matches!(tall, Err(DomainError::Invalid { .. })));
        SniffedImage::inspect(&png_header(2000, 100), ImageLimits::default()).unwrap();
        // 8192² passed the side limits but is more than the ML service decodes.
        let huge = SniffedImage::inspect(&png_header(8192, 8192), ImageLimits::default());
        assert!(matches!(huge, Err(DomainError::ImageTooLarge(_))));
    }
}
