//! The recognition pipeline: proposals → embeddings → vector search → one object per product.
use crate::error::RecognitionError;
use crate::geometry::{grid, BoxF};
use crate::lookup::{ProductInfo, ProductLookup};
use crate::ml::MlRegionsClient;
use rvc_vectors::VectorIndex;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// Default open-set threshold (cosine similarity), calibrated on `make eval` (docs/recognition.md):
/// the lowest value at which at most 5 % of photos of things not in the catalog got an object.
pub const DEFAULT_MIN_SCORE: f32 = 0.675;
/// Default and largest number of candidates per object.
pub const DEFAULT_TOP_K: usize = 5;
pub const MAX_TOP_K: usize = 20;

/// How regions are proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Approach {
    /// One forward pass; regional descriptors pooled over a multi-scale grid of the feature
    /// map; the best proposals verified by embedding their crops (second call).
    Pooled,
    /// Whole photo + multi-scale windows, every window cropped and embedded (slow baseline).
    Windows,
    /// The whole photo only (one object at most).
    Whole,
}

/// Recognition settings (the read-side binary flattens these into its arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct RecognizerConfig {
    /// Region proposals: pooled (one pass + verification), windows (crops), whole.
    #[arg(long, env = "RECOGNITION_APPROACH", value_enum, default_value_t = Approach::Pooled)]
    pub approach: Approach,
    /// Default open-set threshold (cosine) when a request gives no min_score.
    #[arg(long, env = "RECOGNITION_MIN_SCORE", default_value_t = DEFAULT_MIN_SCORE)]
    pub default_min_score: f32,
    /// Pooled approach: proposals verified by a crop embedding.
    #[arg(long, env = "RECOGNITION_VERIFY", default_value_t = 6)]
    pub verify: usize,
    /// Most objects returned for one photo.
    #[arg(long, env = "RECOGNITION_MAX_OBJECTS", default_value_t = 8)]
    pub max_objects: usize,
    /// The whole photo wins (one object) when its score is within this margin of the best region.
    #[arg(long, env = "RECOGNITION_WHOLE_MARGIN", default_value_t = 0.02)]
    pub whole_margin: f32,
}

impl Default for RecognizerConfig {
    /// The defaults of the `#[arg]` attributes above (stated once, there).
    fn default() -> Self {
        rvc_runtime::args::defaults()
    }
}

/// Region scales (side / the image's short side) of each approach, and the grid step.
const POOLED_SCALES: [f32; 4] = [0.3, 0.4, 0.5, 0.6];
const WINDOW_SCALES: [f32; 3] = [0.3, 0.45, 0.6];
const GRID_STEP: f32 = 0.5;

/// Another product the object's region resembles (the first is the object's own product).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Candidate {
    pub product_id: Uuid,
    pub sku: String,
    pub score: f32,
}

/// One product found in the photo.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RecognizedObject {
    /// Where the product is, in fractions of the image.
    #[serde(rename = "box")]
    pub bbox: BoxF,
    /// Cosine similarity to the product's gallery photo (at least `min_score`).
    pub score: f32,
    pub product: ProductInfo,
    /// The best matches of the object's region, best first, at most `top_k`.
    pub candidates: Vec<Candidate>,
}

/// The products found in one photo.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Recognition {
    pub model_version: String,
    /// One per product, best score first.
    pub objects: Vec<RecognizedObject>,
}

/// One searched region: its box and its products, best first (one score per product).
#[derive(Debug, Clone)]
struct Region {
    bbox: BoxF,
    hits: Vec<(Uuid, f32)>,
}

impl Region {
    fn top(&self) -> Option<(Uuid, f32)> {
        self.hits.first().copied()
    }
}

/// The ML service and the collection of one recognition model.
#[derive(Debug, Clone)]
pub struct Backend {
    pub ml: MlRegionsClient,
    pub index: VectorIndex,
}

/// The pipeline; cheap to share behind an `Arc`. Its backend (model) can be switched while it
/// serves ([`Recognizer::switch`]): a request uses the backend it started with throughout.
pub struct Recognizer {
    backend: std::sync::RwLock<Arc<Backend>>,
    lookup: Arc<dyn ProductLookup>,
    cfg: RecognizerConfig,
}

impl std::fmt::Debug for Recognizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recognizer")
            .field("index", &self.backend().index)
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl Recognizer {
    pub fn new(
        ml: MlRegionsClient,
        index: VectorIndex,
        lookup: Arc<dyn ProductLookup>,
        cfg: RecognizerConfig,
    ) -> Self {
        Self {
            backend: std::sync::RwLock::new(Arc::new(Backend { ml, index })),
            lookup,
            cfg,
        }
    }

    pub fn config(&self) -> &RecognizerConfig {
        &self.cfg
    }

    /// The backend requests start with now.
    pub fn backend(&self) -> Arc<Backend> {
        match self.backend.read() {
            Ok(b) => b.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Answers from `backend` from the next request on (a model switch).
    pub fn switch(&self, backend: Backend) {
        let mut b = match self.backend.write() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        *b = Arc::new(backend);
    }

    /// The vector index this recognizer searches.
    pub fn index(&self) -> VectorIndex {
        self.backend().index.clone()
    }

    /// The ML service client.
    pub fn ml(&self) -> MlRegionsClient {
        self.backend().ml.clone()
    }

    /// Recognises the products in `image`. `top_k` 0 = [`DEFAULT_TOP_K`]; `min_score` None =
    /// the configured default.
    pub async fn recognize(
        &self,
        image: Vec<u8>,
        top_k: usize,
        min_score: Option<f32>,
    ) -> Result<Recognition, RecognitionError> {
        let started = Instant::now();
        let top_k = if top_k == 0 { DEFAULT_TOP_K } else { top_k };
        if top_k > MAX_TOP_K {
            return Err(RecognitionError::InvalidRequest(format!(
                "top_k={top_k}: at most {MAX_TOP_K}"
            )));
        }
        let min_score = min_score.unwrap_or(self.cfg.default_min_score);
        if !min_score.is_finite() || !(-1.0..=1.0).contains(&min_score) {
            return Err(RecognitionError::InvalidRequest(format!(
                "min_score={min_score}: must be a number in -1..=1"
            )));
        }
        let (w, h) = match imagesize::blob_size(&image) {
            Ok(s) => (
                u32::try_from(s.width).unwrap_or(1),
                u32::try_from(s.height).unwrap_or(1),
            ),
            Err(e) => {
                return Err(RecognitionError::InvalidImage(format!(
                    "cannot read the image header: {e}"
                )))
            }
        };
        let limit = (top_k * 3).max(10) as u64;
        let mut known: HashMap<Uuid, ProductInfo> = HashMap::new();

        let (crop_boxes, pooled_boxes) = match self.cfg.approach {
            Approach::Pooled => (vec![BoxF::WHOLE], grid(w, h, &POOLED_SCALES, GRID_STEP)),
            Approach::Windows => {
                let mut c = vec![BoxF::WHOLE];
                c.extend(grid(w, h, &WINDOW_SCALES, GRID_STEP));
                (c, Vec::new())
            }
            Approach::Whole => (vec![BoxF::WHOLE], Vec::new()),
        };
        let needs_verify = self.cfg.approach == Approach::Pooled;
        let image_again = if needs_verify {
            Some(image.clone())
        } else {
            None
        };
        let backend = self.backend();
        let first = backend
            .ml
            .regions(image, &crop_boxes, &pooled_boxes)
            .await?;
        let model_version = first.model_version.clone();
        let mut vectors: Vec<(BoxF, Vec<f32>)> = crop_boxes.into_iter().zip(first.crops).collect();
        let n_crops = vectors.len();
        vectors.extend(pooled_boxes.into_iter().zip(first.pooled));
        let regions = self
            .search_all(&backend.index, vectors, limit, &mut known)
            .await?;
        let (whole, rest) = regions.split_at(1.min(regions.len()));
        let whole = whole.first().cloned();

        let regional: Vec<Region> = match (self.cfg.approach, image_again) {
            (Approach::Pooled, Some(image)) => {
                let proposals = pick(&rest[n_crops - 1..], self.cfg.verify);
                if proposals.is_empty() {
                    Vec::new()
                } else {
                    let boxes: Vec<BoxF> = proposals.iter().map(|r| r.bbox.expand(0.05)).collect();
                    let second = backend.ml.regions(image, &boxes, &[]).await?;
                    let v = boxes.into_iter().zip(second.crops).collect();
                    self.search_all(&backend.index, v, limit, &mut known)
                        .await?
                }
            }
            _ => rest.to_vec(),
        };

        let mut chosen = pick(&regional, self.cfg.max_objects);
        let best_regional = chosen.first().and_then(Region::top).map_or(-1.0, |t| t.1);
        if let Some(whole) = whole {
            if let Some((_, ws)) = whole.top() {
                if ws >= best_regional - self.cfg.whole_margin {
                    chosen = vec![whole];
                }
            }
        }
        let objects = chosen
            .into_iter()
            .filter_map(|r| {
                let (pid, score) = r.top()?;
                if score < min_score {
                    return None;
                }
                let product = known.get(&pid)?.clone();
                let candidates = r
                    .hits
                    .iter()
                    .take(top_k)
                    .filter_map(|(id, s)| {
                        known.get(id).map(|p| Candidate {
                            product_id: *id,
                            sku: p.sku.clone(),
                            score: *s,
                        })
                    })
                    .collect();
                Some(RecognizedObject {
                    bbox: r.bbox,
                    score,
                    product,
                    candidates,
                })
            })
            .collect::<Vec<_>>();
        let took = started.elapsed();
        metrics::histogram!("recognition_seconds").record(took.as_secs_f64());
        metrics::counter!("recognition_objects_total").increment(objects.len() as u64);
        tracing::debug!(
            objects = objects.len(),
            took_ms = took.as_secs_f64() * 1e3,
            "recognized"
        );
        Ok(Recognition {
            model_version,
            objects,
        })
    }

    /// Searches every vector (one batch request to the index), keeps each product's best score per region,
    /// and drops products the lookup does not know (not indexed, archived, deleted).
    async fn search_all(
        &self,
        index: &VectorIndex,
        vectors: Vec<(BoxF, Vec<f32>)>,
        limit: u64,
        known: &mut HashMap<Uuid, ProductInfo>,
    ) -> Result<Vec<Region>, RecognitionError> {
        let (boxes, vectors): (Vec<BoxF>, Vec<Vec<f32>>) = vectors.into_iter().unzip();
        let found = index.search_many(vectors, limit).await?;
        let results: Vec<(BoxF, Vec<(Uuid, f32)>)> = boxes
            .into_iter()
            .zip(found)
            .map(|(b, hits)| {
                let mut seen = HashSet::new();
                let per_product = hits
                    .into_iter()
                    .filter(|h| seen.insert(h.payload.product_id))
                    .map(|h| (h.payload.product_id, h.score))
                    .collect::<Vec<_>>();
                (b, per_product)
            })
            .collect();
        let missing: Vec<Uuid> = results
            .iter()
            .flat_map(|(_, h)| h.iter().map(|(id, _)| *id))
            .filter(|id| !known.contains_key(id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut absent: HashSet<Uuid> = HashSet::new();
        if !missing.is_empty() {
            let found = self.lookup.products(&missing).await?;
            for id in &missing {
                if !found.contains_key(id) {
                    absent.insert(*id);
                }
            }
            known.extend(found);
        }
        Ok(results
            .into_iter()
            .map(|(bbox, hits)| Region {
                bbox,
                hits: hits
                    .into_iter()
                    .filter(|(id, _)| known.contains_key(id) && !absent.contains(id))
                    .collect(),
            })
            .collect())
    }
}

/// One region per product (its best), best first, without regions that mostly overlap a better
/// one (non-maximum suppression across products: IoU > 0.5, or 70 % inside); at most `n`.
fn pick(regions: &[Region], n: usize) -> Vec<Region> {
    let mut best: HashMap<Uuid, &Region> = HashMap::new();
    for r in regions {
        if let Some((pid, s)) = r.top() {
            match best.get(&pid) {
                Some(b) if b.top().map_or(-1.0, |t| t.1) >= s => {}
                _ => {
                    best.insert(pid, r);
                }
            }
        }
    }
    let mut sorted: Vec<&Region> = best.into_values().collect();
    sorted.sort_by(|a, b| {
        let (sa, sb) = (a.top().map_or(-1.0, |t| t.1), b.top().map_or(-1.0, |t| t.1));
        sb.total_cmp(&sa)
    });
    let mut kept: Vec<Region> = Vec::new();
    for r in sorted {
        if kept.len() >= n {
            break;
        }
        let clash = kept.iter().any(|k| {
            r.bbox.iou(&k.bbox) > 0.5
                || r.bbox.inside(&k.bbox) > 0.7
                || k.bbox.inside(&r.bbox) > 0.7
        });
        if !clash {
            kept.push(r.clone());
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn region(x: f32, w: f32, pid: u128, s: f32) -> Region {
        Region {
            bbox: BoxF {
                x,
                y: 0.0,
                width: w,
                height: 0.5,
            },
            hits: vec![(Uuid::from_u128(pid), s)],
        }
    }

    #[test]
    fn pick_keeps_one_region_per_product_and_suppresses_overlaps() {
        let rs = vec![
            region(0.0, 0.4, 1, 0.9),
            region(0.05, 0.4, 1, 0.8),  // same product, worse
            region(0.02, 0.4, 2, 0.85), // overlaps product 1's box: suppressed
            region(0.6, 0.4, 3, 0.7),
        ];
        let p = pick(&rs, 10);
        let ids: Vec<u128> = p.iter().map(|r| r.top().unwrap().0.as_u128()).collect();
        assert_eq!(ids, vec![1, 3]);
        assert_eq!(pick(&rs, 1).len(), 1);
    }
}
