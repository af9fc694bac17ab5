//! Real photos for tests: valid PNG and JPEG files of a given size whose content (and so
//! sha256) depends on a seed.
use std::io::Cursor;

fn noise(seed: u64, w: u32, h: u32) -> image::RgbImage {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    image::RgbImage::from_fn(w, h, |_, _| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        image::Rgb([s as u8, (s >> 8) as u8, (s >> 16) as u8])
    })
}

/// A real PNG of `w`×`h` noise pixels (noise does not compress: about 3·w·h bytes).
pub fn png(seed: u64, w: u32, h: u32) -> Vec<u8> {
    let mut buf = Vec::new();
    noise(seed, w, h)
        .write_to(&mut Cursor::new(&mut buf), image::ImageFormat::Png)
        .unwrap();
    buf
}

/// A real JPEG of `w`×`h` noise pixels.
pub fn jpeg(seed: u64, w: u32, h: u32) -> Vec<u8> {
    let mut buf = Vec::new();
    noise(seed, w, h)
        .write_to(&mut Cursor::new(&mut buf), image::ImageFormat::Jpeg)
        .unwrap();
    buf
}

/// [`jpeg`] at encoder `quality` (1-100): noise at 80 is about 1.4 bytes per pixel.
pub fn jpeg_with_quality(seed: u64, w: u32, h: u32, quality: u8) -> Vec<u8> {
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut Cursor::new(&mut buf), quality)
        .encode_image(&noise(seed, w, h))
        .unwrap();
    buf
}

/// A rectangle in fractions of an image: x, y, width, height.
pub type Frac = (f32, f32, f32, f32);

/// A 1024×768 checkout scene as a JPEG: a plain, slightly noisy counter with each photo resized
/// into its box (fractions of the frame) and pasted over it, later ones on top.
pub fn checkout_scene(photos: &[(&[u8], Frac)]) -> Vec<u8> {
    let (w, h) = (1024u32, 768u32);
    let mut canvas = image::RgbImage::from_fn(w, h, |x, y| {
        let n = ((x * 7919 + y * 104_729) % 23) as u8;
        image::Rgb([180 + n, 176 + n, 168 + n])
    });
    for (bytes, (x, y, bw, bh)) in photos {
        let img = image::load_from_memory(bytes).unwrap();
        let (pw, ph) = ((bw * w as f32) as u32, (bh * h as f32) as u32);
        let resized = img.resize_exact(pw, ph, image::imageops::FilterType::Triangle);
        image::imageops::overlay(
            &mut canvas,
            &resized.to_rgb8(),
            i64::from((x * w as f32) as u32),
            i64::from((y * h as f32) as u32),
        );
    }
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(canvas)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
        .unwrap();
    out
}

/// The pixels of `photo` inside `frac` as a PNG (lossless), cut as the ML service cuts a crop
/// (start rounded down, end rounded up).
pub fn crop_png(photo: &[u8], (x, y, bw, bh): Frac) -> Vec<u8> {
    let img = image::load_from_memory(photo).unwrap();
    let (w, h) = (img.width() as f32, img.height() as f32);
    let (x0, y0) = ((x * w).floor() as u32, (y * h).floor() as u32);
    let (x1, y1) = (((x + bw) * w).ceil() as u32, ((y + bh) * h).ceil() as u32);
    let mut out = Vec::new();
    img.crop_imm(x0, y0, x1 - x0, y1 - y0)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A box of [`checkout_scene`] square in pixels: `side` of the 768-px short side, at (x, y).
pub fn scene_square(x: f32, y: f32, side: f32) -> Frac {
    (x, y, side * 768.0 / 1024.0, side)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_decode_to_their_size_and_differ_by_seed() {
        for (bytes, format) in [
            (png(1, 7, 5), image::ImageFormat::Png),
            (jpeg(1, 7, 5), image::ImageFormat::Jpeg),
        ] {
            let img = image::load_from_memory_with_format(&bytes, format).unwrap();
            assert_eq!((img.width(), img.height()), (7, 5));
        }
        assert_ne!(png(1, 8, 8), png(2, 8, 8));
        assert_eq!(png(3, 8, 8), png(3, 8, 8));
    }
}
