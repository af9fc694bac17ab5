//! Embeddings of several regions of one image, for recognition (`EmbedRegions`).
//!
//! * **Crops**: each box is cut out of the decoded image and embedded exactly like a whole photo
//!   ([`Embedder::embed_with`]'s preprocessing), so the vectors live in the gallery's space.
//!   The crops of one request are spread over the inference threads.
//! * **Pooled**: one forward pass of the whole image, letterboxed into a square of
//!   `pooling_input_size` pixels, up to the last feature map (the input of the network's global
//!   average pool: 1280 × g × g for EfficientNet-Lite0, g = size / 32); each box is the mean of
//!   the cells whose centre lies in it (at least the nearest one), L2-normalised — regional
//!   pooling as in R-MAC (Tolias et al., ICLR 2016), without new weights. The full-map mean is
//!   the network's own pooled embedding at that input size.
//!
//! The 1280-d `embedding` output and its preprocessing are untouched: this reads an
//! intermediate tensor of the same ONNX file.
use crate::embedder::{decode, l2_normalize, to_input, Embedder, EmbedderConfig};
use crate::error::MlError;
use image::DynamicImage;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tract_onnx::prelude::*;

/// Node of `scripts/convert_efficientnet.py`'s graph whose input is the last feature map.
pub const POOL_NODE: &str = "pooled";

/// Settings of `EmbedRegions` (flattened into [`crate::ServiceConfig`]).
#[derive(Debug, Clone, clap::Args)]
pub struct RegionsConfig {
    /// Side of the square input of the pooled (R-MAC) pass, a multiple of 32; 0 disables it.
    #[arg(long, env = "ML_POOLING_INPUT_SIZE", default_value_t = 448)]
    pub pooling_input_size: usize,
    /// Most boxes (crops + pooled) in one EmbedRegions call.
    #[arg(long, env = "ML_MAX_REGIONS", default_value_t = 256)]
    pub max_regions: usize,
}

impl Default for RegionsConfig {
    /// The defaults of the `#[arg]` attributes above (stated once, there).
    fn default() -> Self {
        rvc_runtime::args::defaults()
    }
}

/// A fractional box as sent on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FracBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl FracBox {
    /// Checks the box lies in the unit square (a tolerance of 1e-3 for rounding) and has area.
    pub fn validate(&self) -> Result<(), String> {
        let ok = [self.x, self.y, self.width, self.height]
            .iter()
            .all(|v| v.is_finite())
            && self.x >= -1e-3
            && self.y >= -1e-3
            && self.width > 0.0
            && self.height > 0.0
            && self.x + self.width <= 1.001
            && self.y + self.height <= 1.001;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "box {{x: {}, y: {}, width: {}, height: {}}} is not inside the unit square",
                self.x, self.y, self.width, self.height
            ))
        }
    }

    /// Pixel rectangle (x, y, w, h) in a `w`×`h` image, at least 1×1, clamped to the image.
    fn pixels(&self, w: u32, h: u32) -> (u32, u32, u32, u32) {
        let fw = w as f32;
        let fh = h as f32;
        let x0 = (self.x.max(0.0) * fw).floor().min(fw - 1.0).max(0.0) as u32;
        let y0 = (self.y.max(0.0) * fh).floor().min(fh - 1.0).max(0.0) as u32;
        let x1 = ((self.x + self.width).min(1.0) * fw).ceil() as u32;
        let y1 = ((self.y + self.height).min(1.0) * fh).ceil() as u32;
        (x0, y0, x1.clamp(x0 + 1, w) - x0, y1.clamp(y0 + 1, h) - y0)
    }
}

/// What one `EmbedRegions` call produced.
#[derive(Debug, Clone)]
pub struct RegionEmbeddings {
    pub crops: Vec<Vec<f32>>,
    pub pooled: Vec<Vec<f32>>,
    pub image_width: u32,
    pub image_height: u32,
    pub pooling_grid: u32,
}

/// Where the image lies in the letterboxed input: (x, y, width, height) in input pixels.
type Content = (f32, f32, f32, f32);

/// The feature-map network at one square input size.
struct FeatureMapPlan {
    plan: Arc<TypedRunnableModel>,
    size: usize,
    grid: usize,
    channels: usize,
}

impl FeatureMapPlan {
    fn load(cfg: &EmbedderConfig, size: usize) -> Result<Self, MlError> {
        let path = &cfg.model_path;
        let err = |e: &dyn std::fmt::Display| MlError::ModelLoad {
            path: path.clone(),
            message: format!("feature map at {size}px: {e:#}"),
        };
        let mut model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| err(&e))?;
        let pool_input = model
            .node_by_name(POOL_NODE)
            .map_err(|e| err(&e))?
            .inputs
            .first()
            .copied()
            .ok_or_else(|| err(&"the pooling node has no input"))?;
        model
            .select_output_outlets(&[pool_input])
            .map_err(|e| err(&e))?;
        let model = model
            .with_input_fact(0, f32::fact([1, 3, size, size]).into())
            .map_err(|e| err(&e))?;
        let typed = model.into_optimized().map_err(|e| err(&e))?;
        let fact = typed.output_fact(0).map_err(|e| err(&e))?;
        let shape = fact
            .shape
            .as_concrete()
            .ok_or_else(|| err(&"feature map shape is not concrete"))?
            .to_vec();
        let [1, channels, gh, gw] = shape[..] else {
            return Err(err(&format!(
                "feature map shape {shape:?}; expected [1, C, g, g]"
            )));
        };
        if gh != gw || gh == 0 {
            return Err(err(&format!("feature map {gh}x{gw} is not square")));
        }
        let plan = typed.into_runnable().map_err(|e| err(&e))?;
        Ok(Self {
            plan,
            size,
            grid: gh,
            channels,
        })
    }

    /// Letterboxes `img` into the square input (centred, padded with the normalisation mean,
    /// i.e. zeros) and runs the network. Returns the feature map (C × g × g, row-major) and
    /// the content rectangle in input pixels (x, y, w, h).
    fn run(&self, img: &DynamicImage, mean: f32, std: f32) -> Result<(Vec<f32>, Content), MlError> {
        let s = self.size;
        let rgb = img.to_rgb8();
        let (w, h) = rgb.dimensions();
        let scale = s as f32 / w.max(h) as f32;
        let nw = ((w as f32 * scale).round() as u32).clamp(1, s as u32);
        let nh = ((h as f32 * scale).round() as u32).clamp(1, s as u32);
        let resized = image::imageops::resize(&rgb, nw, nh, image::imageops::FilterType::Triangle);
        let left = (s as u32 - nw) / 2;
        let top = (s as u32 - nh) / 2;
        let mut input = vec![0.0_f32; 3 * s * s];
        let inv = 1.0 / std;
        for (x, y, p) in resized.enumerate_pixels() {
            let (px, py) = ((x + left) as usize, (y + top) as usize);
            for ch in 0..3 {
                input[ch * s * s + py * s + px] = (f32::from(p.0[ch]) - mean) * inv;
            }
        }
        let tensor = tract_ndarray::Array4::from_shape_vec((1, 3, s, s), input)
            .map_err(|e| MlError::Inference(format!("input tensor: {e}")))?;
        let outputs = self
            .plan
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
        if view.len() != self.channels * self.grid * self.grid {
            return Err(MlError::Inference(format!(
                "feature map has {} values, expected {}",
                view.len(),
                self.channels * self.grid * self.grid
            )));
        }
        Ok((
            view.to_vec(),
            (left as f32, top as f32, nw as f32, nh as f32),
        ))
    }

    /// Mean of the cells whose centre lies inside `b` (image fractions mapped through the
    /// letterbox), at least the cell nearest the box centre; L2-normalised.
    fn pool(&self, fm: &[f32], content: Content, b: &FracBox) -> Result<Vec<f32>, MlError> {
        let g = self.grid;
        let cell = self.size as f32 / g as f32;
        let (cx, cy, cw, ch) = content;
        let x0 = cx + b.x * cw;
        let y0 = cy + b.y * ch;
        let x1 = cx + (b.x + b.width) * cw;
        let y1 = cy + (b.y + b.height) * ch;
        let in_range = |lo: f32, hi: f32| -> (usize, usize) {
            // cells i with lo <= (i + 0.5) * cell < hi
            let first = ((lo / cell) - 0.5).ceil().max(0.0) as usize;
            let last = ((hi / cell) - 0.5).ceil().max(0.0) as usize; // exclusive
            if last > first {
                (first.min(g - 1), last.min(g))
            } else {
                let mid = ((lo + hi) / 2.0 / cell).floor().clamp(0.0, (g - 1) as f32) as usize;
                (mid, mid + 1)
            }
        };
        let (i0, i1) = in_range(x0, x1);
        let (j0, j1) = in_range(y0, y1);
        let mut v = vec![0.0_f32; self.channels];
        for (c, out) in v.iter_mut().enumerate() {
            let plane = &fm[c * g * g..(c + 1) * g * g];
            let mut sum = 0.0_f32;
            for j in j0..j1 {
                for i in i0..i1 {
                    sum += plane[j * g + i];
                }
            }
            *out = sum;
        }
        l2_normalize(&mut v)?;
        Ok(v)
    }
}

/// Serves `EmbedRegions`: crops through the gallery's embedder, pooled boxes through one
/// feature-map pass. Work runs on tokio's blocking threads, at most `workers` images at once.
pub struct RegionEmbedder {
    embedder: Arc<Embedder>,
    feature_map: Option<Arc<FeatureMapPlan>>,
    default_pooling_size: usize,
    workers: usize,
    admission: Arc<Semaphore>,
    max_regions: usize,
}

impl std::fmt::Debug for RegionEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionEmbedder")
            .field("pooling_size", &self.default_pooling_size)
            .field("workers", &self.workers)
            .finish()
    }
}

impl RegionEmbedder {
    /// `pooling_size` 0 disables pooled boxes (only crops are served). The feature-map plan is
    /// built once here for that size.
    pub fn new(
        embedder: Arc<Embedder>,
        pooling_size: usize,
        workers: usize,
        max_regions: usize,
    ) -> Result<Self, MlError> {
        let feature_map = if pooling_size == 0 {
            None
        } else {
            if !pooling_size.is_multiple_of(32) || pooling_size > 2048 {
                return Err(MlError::Config(format!(
                    "ML_POOLING_INPUT_SIZE={pooling_size} must be a multiple of 32, at most 2048"
                )));
            }
            let plan = FeatureMapPlan::load(embedder.config(), pooling_size)?;
            tracing::info!(
                size = pooling_size,
                grid = plan.grid,
                "feature-map plan ready (EmbedRegions pooled boxes)"
            );
            Some(Arc::new(plan))
        };
        let workers = workers.max(1);
        Ok(Self {
            embedder,
            feature_map,
            default_pooling_size: pooling_size,
            workers,
            admission: Arc::new(Semaphore::new(workers)),
            max_regions: max_regions.max(1),
        })
    }

    pub fn max_regions(&self) -> usize {
        self.max_regions
    }

    /// Embeds the regions of `bytes`. Invalid boxes, sizes or images are
    /// [`MlError::InvalidRequest`] / [`MlError::InvalidImage`].
    pub async fn embed(
        &self,
        bytes: Vec<u8>,
        crops: Vec<FracBox>,
        pooled: Vec<FracBox>,
        pooling_size: usize,
    ) -> Result<RegionEmbeddings, MlError> {
        if crops.len() + pooled.len() > self.max_regions {
            return Err(MlError::InvalidRequest(format!(
                "{} regions in one call; at most {}",
                crops.len() + pooled.len(),
                self.max_regions
            )));
        }
        for (i, b) in crops.iter().enumerate() {
            b.validate()
                .map_err(|e| MlError::InvalidRequest(format!("crops[{i}]: {e}")))?;
        }
        for (i, b) in pooled.iter().enumerate() {
            b.validate()
                .map_err(|e| MlError::InvalidRequest(format!("pooled[{i}]: {e}")))?;
        }
        let fm = if pooled.is_empty() {
            None
        } else {
            match &self.feature_map {
                Some(p) if pooling_size == 0 || pooling_size == self.default_pooling_size => {
                    Some(Arc::clone(p))
                }
                Some(_) => {
                    return Err(MlError::InvalidRequest(format!(
                        "pooling_input_size {pooling_size} is not served; this service pools at {}",
                        self.default_pooling_size
                    )))
                }
                None => {
                    return Err(MlError::InvalidRequest(
                        "pooled boxes are disabled (ML_POOLING_INPUT_SIZE=0)".to_owned(),
                    ))
                }
            }
        };
        let _permit = Arc::clone(&self.admission)
            .acquire_owned()
            .await
            .map_err(|_| MlError::ShuttingDown)?;
        let cfg = self.embedder.config().clone();
        let img = Arc::new(
            tokio::task::spawn_blocking(move || decode(&bytes, cfg.max_image_pixels))
                .await
                .map_err(|e| MlError::Inference(format!("decode task: {e}")))??,
        );
        let (w, h) = (img.width(), img.height());

        // Crops: split over the workers; the pooled pass runs beside them.
        let mut tasks = Vec::new();
        let chunk = crops.len().div_ceil(self.workers).max(1);
        for part in crops.chunks(chunk) {
            let part = part.to_vec();
            let img = Arc::clone(&img);
            let emb = Arc::clone(&self.embedder);
            tasks.push(tokio::task::spawn_blocking(move || {
                let mut state = emb.new_state()?;
                let c = emb.config();
                part.iter()
                    .map(|b| {
                        let (x, y, bw, bh) = b.pixels(w, h);
                        let sub = img.crop_imm(x, y, bw, bh);
                        let input = to_input(
                            &sub,
                            c.resize_short_side,
                            c.input_size,
                            c.norm_mean,
                            c.norm_std,
                        );
                        emb.embed_input_with(&mut state, input)
                    })
                    .collect::<Result<Vec<_>, MlError>>()
            }));
        }
        let pooled_task = fm.map(|plan| {
            let img = Arc::clone(&img);
            let (mean, std) = (cfg_mean(&self.embedder), cfg_std(&self.embedder));
            tokio::task::spawn_blocking(move || {
                let (map, content) = plan.run(&img, mean, std)?;
                let vs = pooled
                    .iter()
                    .map(|b| plan.pool(&map, content, b))
                    .collect::<Result<Vec<_>, MlError>>()?;
                Ok::<_, MlError>((vs, plan.grid))
            })
        });
        let mut out_crops = Vec::with_capacity(crops.len());
        for t in tasks {
            out_crops.extend(
                t.await
                    .map_err(|e| MlError::Inference(format!("crop task: {e}")))??,
            );
        }
        let (out_pooled, grid) = match pooled_task {
            Some(t) => t
                .await
                .map_err(|e| MlError::Inference(format!("pooling task: {e}")))??,
            None => (Vec::new(), 0),
        };
        metrics::counter!("ml_regions_total", "kind" => "crop").increment(out_crops.len() as u64);
        metrics::counter!("ml_regions_total", "kind" => "pooled")
            .increment(out_pooled.len() as u64);
        Ok(RegionEmbeddings {
            crops: out_crops,
            pooled: out_pooled,
            image_width: w,
            image_height: h,
            pooling_grid: u32::try_from(grid).unwrap_or(0),
        })
    }
}

/// The gRPC `EmbedRegions` handler body (called from [`crate::MlService`]).
pub async fn handle(
    regions: &RegionEmbedder,
    model_version: &str,
    req: rvc_proto::ml::EmbedRegionsRequest,
) -> Result<rvc_proto::ml::EmbedRegionsResponse, tonic::Status> {
    if req.image_data.is_empty() {
        return Err(MlError::InvalidRequest("image_data is empty".to_owned()).into());
    }
    if req.crops.is_empty() && req.pooled.is_empty() {
        return Err(MlError::InvalidRequest("no crops and no pooled boxes".to_owned()).into());
    }
    let conv = |b: &rvc_proto::ml::Box| FracBox {
        x: b.x,
        y: b.y,
        width: b.width,
        height: b.height,
    };
    let crops = req.crops.iter().map(conv).collect();
    let pooled = req.pooled.iter().map(conv).collect();
    let size = usize::try_from(req.pooling_input_size).unwrap_or(usize::MAX);
    let out = regions.embed(req.image_data, crops, pooled, size).await;
    // One image per call, counted with VectorizeImage's (the error-rate alert sees both).
    let outcome = match &out {
        Ok(_) => Some("ok"),
        Err(MlError::InvalidImage(_)) => Some("invalid"),
        Err(MlError::InvalidRequest(_)) => None,
        Err(_) => Some("error"),
    };
    if let Some(outcome) = outcome {
        metrics::counter!("ml_images_total", "outcome" => outcome).increment(1);
    }
    let out = out?;
    let wrap = |v: Vec<Vec<f32>>| {
        v.into_iter()
            .map(|vector| rvc_proto::ml::Embedding { vector })
            .collect()
    };
    Ok(rvc_proto::ml::EmbedRegionsResponse {
        crops: wrap(out.crops),
        pooled: wrap(out.pooled),
        model_version: model_version.to_owned(),
        image_width: out.image_width,
        image_height: out.image_height,
        pooling_grid: out.pooling_grid,
    })
}

fn cfg_mean(e: &Embedder) -> f32 {
    e.config().norm_mean
}

fn cfg_std(e: &Embedder) -> f32 {
    e.config().norm_std
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn boxes_validate_and_map_to_pixels() {
        let b = FracBox {
            x: 0.25,
            y: 0.5,
            width: 0.5,
            height: 0.5,
        };
        b.validate().unwrap();
        assert_eq!(b.pixels(400, 200), (100, 100, 200, 100));
        let bad = FracBox {
            x: 0.8,
            y: 0.0,
            width: 0.5,
            height: 0.5,
        };
        assert!(bad.validate().is_err());
        let nan = FracBox { x: f32::NAN, ..b };
        assert!(nan.validate().is_err());
        // A sliver still maps to at least one pixel.
        let thin = FracBox {
            x: 0.999,
            y: 0.0,
            width: 0.001,
            height: 1.0,
        };
        let (x, _, w, _) = thin.pixels(10, 10);
        assert!(x < 10 && w >= 1);
    }
}
