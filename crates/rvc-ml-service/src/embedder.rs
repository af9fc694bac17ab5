//! Image → L2-normalised embedding: decode (EXIF orientation applied), resize the short side,
//! centre crop, normalise, run the ONNX network with tract on the CPU.
use crate::error::MlError;
use image::{imageops::FilterType, DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tract_onnx::prelude::*;

/// Metadata key under which `scripts/convert_efficientnet.py` stores onnxruntime's embedding of
/// the deterministic probe input (see [`probe_input`]).
pub const PROBE_PROPERTY: &str = "onnx.metadata_props.rvc.probe.embedding";

/// What the embedder loads and how it prepares pixels. Defaults match the EfficientNet-Lite0
/// model written by `scripts/setup-model.sh`.
#[derive(Debug, Clone, clap::Args)]
pub struct EmbedderConfig {
    /// ONNX model file (written by scripts/setup-model.sh).
    #[arg(
        long,
        env = "ML_MODEL_PATH",
        default_value = "var/models/efficientnet-lite0.onnx"
    )]
    pub model_path: PathBuf,
    /// Model name reported by GetModelInfo and used in the model version.
    #[arg(
        long,
        env = "ML_MODEL_NAME",
        default_value = "efficientnet-lite0-imagenet"
    )]
    pub model_name: String,
    /// Model version override. Unset: derived from the name and the preprocessing, e.g.
    /// "efficientnet-lite0-imagenet/r256-c224-v1". Vectors of different versions never mix.
    #[arg(long, env = "ML_MODEL_VERSION")]
    pub model_version: Option<String>,
    /// Side of the square network input (centre crop), in pixels.
    #[arg(long, env = "ML_INPUT_SIZE", default_value_t = 224)]
    pub input_size: u32,
    /// The image's short side is resized to this many pixels before the centre crop.
    #[arg(long, env = "ML_RESIZE_SHORT_SIDE", default_value_t = 256)]
    pub resize_short_side: u32,
    /// Normalisation: input = (pixel - mean) / std, pixel in 0..=255, same for R, G, B.
    #[arg(long, env = "ML_NORM_MEAN", default_value_t = 127.5)]
    pub norm_mean: f32,
    /// Normalisation divisor (see ML_NORM_MEAN).
    #[arg(long, env = "ML_NORM_STD", default_value_t = 127.5)]
    pub norm_std: f32,
    /// Name of the graph output that holds the embedding.
    #[arg(long, env = "ML_OUTPUT_NAME", default_value = "embedding")]
    pub output_name: String,
    /// Largest accepted image, in pixels (width × height), checked before decoding. Capped at
    /// the catalog's one limit (`rvc_domain::MAX_IMAGE_PIXELS`), which ingest enforces too.
    #[arg(long, env = "ML_MAX_IMAGE_PIXELS", default_value_t = rvc_domain::MAX_IMAGE_PIXELS)]
    pub max_image_pixels: u64,
}

impl Default for EmbedderConfig {
    /// The defaults of the `#[arg]` attributes above (stated once, there).
    fn default() -> Self {
        rvc_runtime::args::defaults()
    }
}

impl EmbedderConfig {
    /// The version string that names the weights and the preprocessing.
    pub fn effective_model_version(&self) -> String {
        if let Some(v) = &self.model_version {
            return v.clone();
        }
        let norm = if self.norm_mean == 127.5 && self.norm_std == 127.5 {
            String::new()
        } else {
            format!("-m{}-s{}", self.norm_mean, self.norm_std)
        };
        format!(
            "{}/r{}-c{}{norm}-v1",
            self.model_name, self.resize_short_side, self.input_size
        )
    }

    fn validate(&self) -> Result<(), MlError> {
        if self.input_size == 0 || self.input_size > 4096 {
            return Err(MlError::Config(format!(
                "ML_INPUT_SIZE={} must be in 1..=4096",
                self.input_size
            )));
        }
        if self.resize_short_side < self.input_size {
            return Err(MlError::Config(format!(
                "ML_RESIZE_SHORT_SIDE={} must be >= ML_INPUT_SIZE={}",
                self.resize_short_side, self.input_size
            )));
        }
        if !(self.norm_std.is_finite() && self.norm_std != 0.0 && self.norm_mean.is_finite()) {
            return Err(MlError::Config(
                "ML_NORM_MEAN must be finite and ML_NORM_STD finite and non-zero".to_owned(),
            ));
        }
        Ok(())
    }
}

/// A loaded, optimised network plus its preprocessing. Cheap to share (`Arc`), `Send + Sync`.
pub struct Embedder {
    plan: Arc<TypedRunnableModel>,
    cfg: EmbedderConfig,
    dimension: usize,
    model_version: String,
    probe: Option<Vec<f32>>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("model_path", &self.cfg.model_path)
            .field("model_version", &self.model_version)
            .field("dimension", &self.dimension)
            .finish()
    }
}

/// One tract execution state, reused across runs by a worker thread.
pub struct EmbedderState(TypedSimpleState);

fn load_err(path: &Path, e: impl std::fmt::Display) -> MlError {
    MlError::ModelLoad {
        path: path.to_owned(),
        message: format!("{e:#}"),
    }
}

impl Embedder {
    /// Loads and optimises the model. Fails with a message naming `scripts/setup-model.sh`
    /// when the file is missing.
    pub fn load(cfg: EmbedderConfig) -> Result<Self, MlError> {
        cfg.validate()?;
        let path = cfg.model_path.clone();
        if !path.is_file() {
            return Err(load_err(&path, "file not found"));
        }
        let s = cfg.input_size as usize;
        let model = tract_onnx::onnx()
            .model_for_path(&path)
            .map_err(|e| load_err(&path, e))?;
        let probe = model.properties.get(PROBE_PROPERTY).and_then(|t| {
            t.try_as_plain_ram()
                .ok()
                .and_then(|view| view.to_scalar::<String>().ok().and_then(|v| parse_probe(v)))
        });
        let model = model
            .with_input_fact(0, f32::fact([1, 3, s, s]).into())
            .and_then(|m| m.with_outputs_by_name([cfg.output_name.as_str()]))
            .map_err(|e| load_err(&path, e))?;
        let typed = model.into_optimized().map_err(|e| load_err(&path, e))?;
        let out_fact = typed.output_fact(0).map_err(|e| load_err(&path, e))?;
        let shape = out_fact
            .shape
            .as_concrete()
            .ok_or_else(|| {
                MlError::ModelShape(format!("output shape {:?} is not concrete", out_fact.shape))
            })?
            .to_vec();
        let dimension: usize = shape.iter().product();
        if dimension == 0 || shape.first().is_some_and(|b| *b != 1) {
            return Err(MlError::ModelShape(format!(
                "output {:?} has shape {shape:?}; expected [1, D]",
                cfg.output_name
            )));
        }
        let plan = typed.into_runnable().map_err(|e| load_err(&path, e))?;
        let model_version = cfg.effective_model_version();
        tracing::info!(
            path = %path.display(),
            %model_version,
            dimension,
            input_size = cfg.input_size,
            "model loaded"
        );
        Ok(Self {
            plan,
            cfg,
            dimension,
            model_version,
            probe,
        })
    }

    pub fn config(&self) -> &EmbedderConfig {
        &self.cfg
    }

    /// Length of the embedding vector (1280 for EfficientNet-Lite0).
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    pub fn model_version(&self) -> &str {
        &self.model_version
    }

    pub fn model_name(&self) -> &str {
        &self.cfg.model_name
    }

    pub fn input_size(&self) -> u32 {
        self.cfg.input_size
    }

    /// onnxruntime's raw output for [`probe_input`], recorded by the converter (if present).
    pub fn probe_embedding(&self) -> Option<&[f32]> {
        self.probe.as_deref()
    }

    /// A fresh execution state (one per worker thread).
    pub fn new_state(&self) -> Result<EmbedderState, MlError> {
        TypedSimpleState::new(&self.plan)
            .map(EmbedderState)
            .map_err(|e| MlError::Inference(format!("{e:#}")))
    }

    /// Decodes, preprocesses and embeds one image: a unit-length vector of [`Self::dimension`].
    pub fn embed(&self, bytes: &[u8]) -> Result<Vec<f32>, MlError> {
        let mut state = self.new_state()?;
        self.embed_with(&mut state, bytes)
    }

    /// [`Self::embed`] with a reused execution state.
    pub fn embed_with(&self, state: &mut EmbedderState, bytes: &[u8]) -> Result<Vec<f32>, MlError> {
        let input = self.preprocess(bytes)?;
        let mut v = self.forward_with(state, input)?;
        l2_normalize(&mut v)?;
        Ok(v)
    }

    /// Embeds an already preprocessed NCHW input (see [`to_input`]) with a reused state:
    /// unit length, same space as [`Self::embed`].
    pub fn embed_input_with(
        &self,
        state: &mut EmbedderState,
        input: Vec<f32>,
    ) -> Result<Vec<f32>, MlError> {
        let mut v = self.forward_with(state, input)?;
        l2_normalize(&mut v)?;
        Ok(v)
    }

    /// The network input for `bytes`: NCHW float32, `3 × input_size × input_size` values.
    pub fn preprocess(&self, bytes: &[u8]) -> Result<Vec<f32>, MlError> {
        let img = decode(bytes, self.cfg.max_image_pixels)?;
        Ok(to_input(
            &img,
            self.cfg.resize_short_side,
            self.cfg.input_size,
            self.cfg.norm_mean,
            self.cfg.norm_std,
        ))
    }

    /// Runs the network on an NCHW input and returns the raw (not normalised) output.
    pub fn forward(&self, input: Vec<f32>) -> Result<Vec<f32>, MlError> {
        let mut state = self.new_state()?;
        self.forward_with(&mut state, input)
    }

    fn forward_with(
        &self,
        state: &mut EmbedderState,
        input: Vec<f32>,
    ) -> Result<Vec<f32>, MlError> {
        let s = self.cfg.input_size as usize;
        let tensor = tract_ndarray::Array4::from_shape_vec((1, 3, s, s), input)
            .map_err(|e| MlError::Inference(format!("input tensor: {e}")))?;
        let outputs = state
            .0
            .run(tvec!(Tensor::from(tensor).into()))
            .map_err(|e| MlError::Inference(format!("{e:#}")))?;
        let out = outputs
            .first()
            .ok_or_else(|| MlError::Inference("the model produced no output".to_owned()))?;
        let plain = out
            .try_as_plain_ram()
            .map_err(|e| MlError::Inference(format!("output is not readable: {e:#}")))?;
        let view = plain
            .as_slice::<f32>()
            .map_err(|e| MlError::Inference(format!("output is not f32: {e:#}")))?;
        if view.len() != self.dimension {
            return Err(MlError::Inference(format!(
                "output has {} values, expected {}",
                view.len(),
                self.dimension
            )));
        }
        Ok(view.to_vec())
    }
}

fn parse_probe(s: &str) -> Option<Vec<f32>> {
    s.split(',').map(|x| x.trim().parse::<f32>().ok()).collect()
}

/// The deterministic probe input of `scripts/convert_efficientnet.py` (NCHW, `size`×`size`):
/// `((c*7 + h*3 + w*5) % 255) / 127.5 - 1`, computed in f32 exactly as numpy does.
pub fn probe_input(size: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(3 * size * size);
    for c in 0..3 {
        for h in 0..size {
            for w in 0..size {
                let x = ((c * 7 + h * 3 + w * 5) % 255) as f32;
                v.push(x / 127.5_f32 - 1.0_f32);
            }
        }
    }
    v
}

/// Scales `v` to unit L2 norm; a zero or non-finite vector is an inference error.
pub fn l2_normalize(v: &mut [f32]) -> Result<(), MlError> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if !norm.is_finite() || norm <= f64::EPSILON {
        return Err(MlError::Inference(format!(
            "embedding has norm {norm}; cannot normalise"
        )));
    }
    let inv = (1.0 / norm) as f32;
    v.iter_mut().for_each(|x| *x *= inv);
    Ok(())
}

/// Decodes JPEG, PNG or WebP bytes (sniffed, not trusted from the request), applying the EXIF
/// orientation. Images larger than `max_pixels` are refused before their pixels are allocated.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage, MlError> {
    if bytes.is_empty() {
        return Err(MlError::InvalidImage("no image bytes".to_owned()));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| MlError::InvalidImage(format!("cannot read the image: {e}")))?;
    match reader.format() {
        Some(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP) => {}
        Some(other) => {
            return Err(MlError::InvalidImage(format!(
                "unsupported format {other:?}; expected JPEG, PNG or WebP"
            )))
        }
        None => {
            return Err(MlError::InvalidImage(
                "unrecognised data; expected JPEG, PNG or WebP image bytes".to_owned(),
            ))
        }
    }
    let format = reader.format();
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| MlError::InvalidImage(format!("cannot decode {format:?}: {e}")))?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels == 0 {
        return Err(MlError::InvalidImage("image has no pixels".to_owned()));
    }
    // The catalog's one pixel and aspect-ratio limit (ingest refuses the same images).
    rvc_domain::check_pixels_and_aspect(
        w,
        h,
        max_pixels.min(rvc_domain::MAX_IMAGE_PIXELS),
        rvc_domain::MAX_ASPECT_RATIO,
    )
    .map_err(|e| MlError::InvalidImage(e.to_string()))?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder)
        .map_err(|e| MlError::InvalidImage(format!("cannot decode {format:?}: {e}")))?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Resize the short side to `resize` (triangle filter), centre crop `crop`×`crop`, normalise
/// `(p - mean) / std`, lay out as NCHW RGB. The resized buffer is bounded by the catalog's
/// aspect-ratio limit (`rvc_domain::MAX_ASPECT_RATIO`, checked in [`decode`]): at most
/// `resize × resize·ratio` pixels. (Cropping the long side before resizing would bound it
/// further but changes the sampling grid, so stored gallery vectors would no longer match.)
pub fn to_input(img: &DynamicImage, resize: u32, crop: u32, mean: f32, std: f32) -> Vec<f32> {
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let (nw, nh) = if w <= h {
        (resize, scaled(h, resize, w))
    } else {
        (scaled(w, resize, h), resize)
    };
    let resized = image::imageops::resize(&rgb, nw.max(crop), nh.max(crop), FilterType::Triangle);
    let (rw, rh) = resized.dimensions();
    let left = (rw - crop) / 2;
    let top = (rh - crop) / 2;
    let c = crop as usize;
    let mut out = vec![0.0_f32; 3 * c * c];
    let inv = 1.0 / std;
    for y in 0..c {
        for x in 0..c {
            let p = resized.get_pixel(left + x as u32, top + y as u32).0;
            for ch in 0..3 {
                out[ch * c * c + y * c + x] = (f32::from(p[ch]) - mean) * inv;
            }
        }
    }
    out
}

/// `long * target / short`, rounded, at least `target`.
fn scaled(long: u32, target: u32, short: u32) -> u32 {
    let v = (u64::from(long) * u64::from(target) + u64::from(short) / 2) / u64::from(short.max(1));
    u32::try_from(v).unwrap_or(u32::MAX).max(target)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn version_names_preprocessing() {
        let cfg = EmbedderConfig::default();
        assert_eq!(
            cfg.effective_model_version(),
            "efficientnet-lite0-imagenet/r256-c224-v1"
        );
        let cfg = EmbedderConfig {
            norm_mean: 0.0,
            norm_std: 255.0,
            ..EmbedderConfig::default()
        };
        assert_eq!(
            cfg.effective_model_version(),
            "efficientnet-lite0-imagenet/r256-c224-m0-s255-v1"
        );
    }

    #[test]
    fn input_shape_and_range() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(500, 300, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 255])
        }));
        let v = to_input(&img, 256, 224, 127.5, 127.5);
        assert_eq!(v.len(), 3 * 224 * 224);
        assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
        // Blue channel is constant 255 -> 1.0 everywhere.
        assert!(v[2 * 224 * 224..].iter().all(|x| (*x - 1.0).abs() < 1e-6));
    }

    /// Issue 11, item 6: a thin strip is refused before its pixels are decoded (it made a
    /// ~2-gigapixel resize buffer), and an elongated but accepted photo (at most 20:1, so its
    /// resize buffer is bounded) still gives the model's input shape.
    #[test]
    fn thin_strips_are_refused_and_long_photos_still_give_the_input_shape() {
        let png = |w: u32, h: u32| {
            let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 200, 30]));
            let mut buf = Vec::new();
            img.write_to(&mut Cursor::new(&mut buf), ImageFormat::Png)
                .unwrap();
            buf
        };
        let err = decode(&png(8192, 1), 50_000_000).unwrap_err();
        assert!(
            matches!(&err, MlError::InvalidImage(m) if m.contains("aspect ratio")),
            "{err}"
        );
        // The pixel limit goes through the same shared check.
        let err = decode(&png(300, 300), 10_000).unwrap_err();
        assert!(
            matches!(&err, MlError::InvalidImage(m) if m.contains("pixels")),
            "{err}"
        );

        // 20:1 is accepted; the output is the same shape and the constant colour survives.
        let img = decode(&png(4000, 200), 50_000_000).unwrap();
        let v = to_input(&img, 256, 224, 127.5, 127.5);
        assert_eq!(v.len(), 3 * 224 * 224);
        let g = (200.0 - 127.5) / 127.5;
        assert!(v[224 * 224..2 * 224 * 224]
            .iter()
            .all(|x| (*x - g).abs() < 1e-6));
    }

    #[test]
    fn garbage_is_invalid_image() {
        let err = decode(b"definitely not an image", 1_000_000).unwrap_err();
        assert!(matches!(err, MlError::InvalidImage(_)), "{err}");
        let err = decode(&[], 1_000_000).unwrap_err();
        assert!(matches!(err, MlError::InvalidImage(_)), "{err}");
    }

    #[test]
    fn normalize_unit_and_rejects_zero() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert!(l2_normalize(&mut [0.0, 0.0]).is_err());
    }
}
