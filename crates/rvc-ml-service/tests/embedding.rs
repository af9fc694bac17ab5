//! The embedder against the real EfficientNet-Lite0 model and real photos.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{cosine, embedder, embedder_config, fixture};
use image::{codecs::jpeg::JpegEncoder, DynamicImage, ImageFormat, Rgb, RgbImage};
use rvc_ml_service::{embedder::probe_input, Embedder, EmbedderConfig, MlError};
use std::io::Cursor;

fn decode(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).unwrap()
}

fn jpeg(img: &DynamicImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&img.to_rgb8())
        .unwrap();
    out
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img.to_rgb8())
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

#[test]
fn embedding_is_deterministic_unit_length_1280() {
    let e = embedder();
    assert_eq!(e.dimension(), 1280);
    assert_eq!(
        e.model_version(),
        "efficientnet-lite0-imagenet/r256-c224-v1"
    );
    let cat = fixture("cat.jpg");
    let a = e.embed(&cat).unwrap();
    let b = e.embed(&cat).unwrap();
    assert_eq!(a.len(), 1280);
    assert_eq!(a, b, "same bytes must give the identical vector");
    let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    assert!(a.iter().all(|x| x.is_finite()));
    // ReLU6 + average pooling: features are non-negative, and not all zero.
    assert!(a.iter().all(|x| *x >= 0.0));
    assert!(a.iter().filter(|x| **x > 0.0).count() > 100);
}

#[test]
fn tract_agrees_with_onnxruntime_on_the_probe() {
    let e = embedder();
    let expected = e
        .probe_embedding()
        .expect("the model carries onnxruntime's probe output (re-run scripts/setup-model.sh)");
    let got = e.forward(probe_input(224)).unwrap();
    assert_eq!(got.len(), expected.len());
    let max_diff = got
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0_f32, f32::max);
    assert!(
        max_diff <= 1e-4,
        "tract vs onnxruntime max |diff| = {max_diff}"
    );
}

#[test]
fn imagenet_head_recognises_the_photos() {
    // Same graph, classifier output: proves weights, padding and preprocessing are right.
    let logits = Embedder::load(EmbedderConfig {
        output_name: "logits".to_owned(),
        ..embedder_config()
    })
    .unwrap();
    assert_eq!(logits.dimension(), 1000);
    let top1 = |name: &str| {
        let v = logits.embed(&fixture(name)).unwrap();
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap()
    };
    // 281 tabby, 282 tiger cat, 283 Persian, 284 Siamese, 285 Egyptian cat.
    let cat = top1("cat.jpg");
    assert!((281..=285).contains(&cat), "cat.jpg top-1 = {cat}");
    let cat_rot = top1("cat-exif-rotated.jpg");
    assert!(
        (281..=285).contains(&cat_rot),
        "cat-exif-rotated.jpg top-1 = {cat_rot}"
    );
    // 504 coffee mug, 967 espresso, 968 cup.
    let coffee = top1("coffee.jpg");
    assert!(
        [504, 967, 968].contains(&coffee),
        "coffee.jpg top-1 = {coffee}"
    );
    // 657 missile, 744 projectile.
    let rocket = top1("rocket.jpg");
    assert!([657, 744].contains(&rocket), "rocket.jpg top-1 = {rocket}");
}

#[test]
fn same_photo_altered_stays_similar() {
    let e = embedder();
    let bytes = fixture("cat.jpg");
    let base = e.embed(&bytes).unwrap();
    let img = decode(&bytes);
    let (w, h) = (img.width(), img.height());

    let low_quality = jpeg(&img, 25);
    let half = jpeg(
        &img.resize_exact(w / 2, h / 2, image::imageops::FilterType::Triangle),
        90,
    );
    let double = jpeg(
        &img.resize_exact(w * 2, h * 2, image::imageops::FilterType::Triangle),
        90,
    );
    let dark = {
        let mut rgb = img.to_rgb8();
        rgb.pixels_mut().for_each(|p| {
            p.0.iter_mut()
                .for_each(|c| *c = (f32::from(*c) * 0.6) as u8)
        });
        jpeg(&DynamicImage::ImageRgb8(rgb), 90)
    };
    let covered = {
        // A grey sticker over the bottom-right ~12% of the photo.
        let mut rgb = img.to_rgb8();
        for y in (h * 65 / 100)..h {
            for x in (w * 65 / 100)..w {
                rgb.put_pixel(x, y, Rgb([128, 128, 128]));
            }
        }
        jpeg(&DynamicImage::ImageRgb8(rgb), 90)
    };
    let cases = [
        ("JPEG quality 25", low_quality, 0.9),
        ("resized to 50%", half, 0.9),
        ("resized to 200%", double, 0.9),
        ("darkened to 60%", dark, 0.9),
        ("12% covered", covered, 0.9),
        ("PNG", encode(&img, ImageFormat::Png), 0.999),
        ("WebP (lossless)", encode(&img, ImageFormat::WebP), 0.999),
        ("EXIF-rotated JPEG", fixture("cat-exif-rotated.jpg"), 0.97),
    ];
    let mut report = Vec::new();
    for (what, bytes, min) in cases {
        let v = e.embed(&bytes).unwrap();
        let c = cosine(&base, &v);
        report.push(format!("{what}: {c:.4}"));
        assert!(c >= min, "{what}: cosine {c:.4} < {min} ({report:?})");
    }
    eprintln!("same-photo cosines: {report:?}");
}

#[test]
fn different_photos_are_clearly_less_similar() {
    let e = embedder();
    let names = ["cat.jpg", "coffee.jpg", "rocket.jpg", "astronaut.jpg"];
    let vecs: Vec<Vec<f32>> = names
        .iter()
        .map(|n| e.embed(&fixture(n)).unwrap())
        .collect();
    let mut max = f32::MIN;
    for i in 0..names.len() {
        for j in (i + 1)..names.len() {
            let c = cosine(&vecs[i], &vecs[j]);
            eprintln!("{} vs {}: {c:.4}", names[i], names[j]);
            max = max.max(c);
        }
    }
    // Altered copies of one photo stay >= 0.9 (test above); different photos stay well below.
    assert!(
        max < 0.75,
        "different photos too similar: max cosine {max:.4}"
    );
}

#[test]
fn bad_bytes_are_invalid_image() {
    let e = embedder();
    let cat = fixture("cat.jpg");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text", b"hello, this is not an image".to_vec()),
        ("empty", Vec::new()),
        ("JPEG header only", cat[..64].to_vec()),
        (
            "GIF (unsupported)",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
        ),
        ("PNG signature + junk", {
            let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
            v.extend_from_slice(&[0xAB; 100]);
            v
        }),
    ];
    for (what, bytes) in cases {
        match e.embed(&bytes) {
            Err(MlError::InvalidImage(msg)) => assert!(!msg.is_empty(), "{what}"),
            other => panic!("{what}: expected InvalidImage, got {other:?}"),
        }
    }
}

#[test]
fn oversized_images_are_refused_before_decoding() {
    let small = Embedder::load(EmbedderConfig {
        max_image_pixels: 10_000,
        ..embedder_config()
    })
    .unwrap();
    let err = small.embed(&fixture("cat.jpg")).unwrap_err();
    assert!(
        matches!(&err, MlError::InvalidImage(m) if m.contains("pixels")),
        "{err}"
    );
    // A tiny image (smaller than the crop) is upscaled and works.
    let tiny = DynamicImage::ImageRgb8(RgbImage::from_pixel(20, 10, Rgb([200, 30, 30])));
    let v = small.embed(&encode(&tiny, ImageFormat::Png)).unwrap();
    assert_eq!(v.len(), 1280);
}

#[test]
fn missing_model_names_the_setup_script() {
    let err = Embedder::load(EmbedderConfig {
        model_path: "/nonexistent/model.onnx".into(),
        ..EmbedderConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("scripts/setup-model.sh"), "{err}");
}
