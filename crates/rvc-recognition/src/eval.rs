//! The recognition evaluation (`make eval`): runs the real recognition pipeline over the
//! evaluation set written by `scripts/eval_recognition.py build` and writes one JSON line per
//! query for its `score`.
//!
//! Starts the ML service in-process (the model file, port 0) and the `rvc-vector-index` binary
//! (a temporary directory, a free port), indexes the gallery the way the vectorizer does (one
//! point per view of each photo, deterministic ids), then recognises every query with
//! `min_score = -1` so the scorer can sweep the threshold. The product catalog is the gallery
//! manifest (an in-memory [`ProductLookup`]: there is no Postgres in this loop).
use crate::{
    BoxF, MlRegionsClient, ProductInfo, ProductLookup, RecognitionError, Recognizer,
    RecognizerConfig,
};
use async_trait::async_trait;
use rvc_vectors::{GalleryView, PointPayload, PointRecord, VectorIndex, VectorIndexError};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Options of `rvc-recognition-eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Directory written by `eval_recognition.py build` (manifest.json, gallery/, queries/).
    #[arg(long, default_value = "var/eval/data")]
    pub data: PathBuf,
    /// Output JSON lines.
    #[arg(long, default_value = "var/eval/results.jsonl")]
    pub out: PathBuf,
    /// The `rvc-vector-index` binary.
    #[arg(long, default_value = "target/debug/rvc-vector-index")]
    pub vector_index_bin: PathBuf,
    /// Use only every n-th query (a quick run).
    #[arg(long, default_value_t = 1)]
    pub every: usize,
    /// Gallery views indexed per photo (`rvc_vectors::GalleryView`; the vectorizer indexes
    /// both): whole and/or centre (the central 60 %).
    #[arg(long, value_delimiter = ',', default_value = "whole,centre")]
    pub views: Vec<String>,
    #[command(flatten)]
    pub recognizer: RecognizerConfig,
    #[command(flatten)]
    pub ml: rvc_ml_service::ServiceConfig,
}

/// Why an evaluation run stopped.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("manifest.json: {0}")]
    Manifest(#[from] serde_json::Error),
    #[error(transparent)]
    Recognition(#[from] RecognitionError),
    #[error("vector index: {0}")]
    Index(#[from] VectorIndexError),
    #[error("ML service: {0}")]
    Ml(#[from] rvc_ml_service::MlError),
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> EvalError {
    move |source| EvalError::Io {
        what: what.to_string(),
        source,
    }
}

#[derive(Debug, Deserialize)]
struct Manifest {
    gallery: Vec<GalleryItem>,
    queries: Vec<Query>,
}

#[derive(Debug, Deserialize)]
struct GalleryItem {
    sku: String,
    file: String,
}

#[derive(Debug, Deserialize)]
struct Query {
    id: String,
    file: String,
}

/// The gallery as the catalog: every product indexed, none archived.
struct MemoryLookup(HashMap<Uuid, ProductInfo>);

#[async_trait]
impl ProductLookup for MemoryLookup {
    async fn products(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, ProductInfo>, RecognitionError> {
        Ok(ids
            .iter()
            .filter_map(|id| self.0.get(id).map(|p| (*id, p.clone())))
            .collect())
    }
}

/// Kills the child process when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The whole run: services up, gallery indexed, every query recognised into `args.out`.
pub async fn run(args: &EvalArgs) -> Result<(), EvalError> {
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(args.data.join("manifest.json")).map_err(io("reading manifest.json"))?,
    )?;

    // ML service, in-process.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io("binding the ML service"))?;
    let ml_url = format!(
        "http://{}",
        listener
            .local_addr()
            .map_err(io("binding the ML service"))?
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ml_task = tokio::spawn(rvc_ml_service::serve(
        listener,
        args.ml.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));

    // Vector index binary.
    let dir = std::env::temp_dir().join(format!("rvc-eval-index-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io(dir.display()))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io("picking a port for the vector index"))?
        .port();
    let _index_proc = Child(
        Command::new(&args.vector_index_bin)
            .env("VECTOR_ADDR", format!("127.0.0.1:{port}"))
            .env("VECTOR_DATA_DIR", &dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(io(format!("starting {}", args.vector_index_bin.display())))?,
    );
    let index = VectorIndex::connect(&format!("http://127.0.0.1:{port}"), "eval")?;
    let ml = MlRegionsClient::new(&ml_url, Duration::from_secs(120))?;
    let wait = Duration::from_secs(300);
    rvc_runtime::retry::until_deadline("vector index", wait, |_| true, || index.health_check())
        .await?;
    let model_version =
        rvc_runtime::retry::until_deadline("ML service", wait, |_| true, || ml.model_version())
            .await?;
    index.ensure_collection(1280).await?;

    let catalog = index_gallery(&ml, &index, args, &manifest.gallery, &model_version).await?;
    let recognizer = Recognizer::new(
        ml,
        index,
        Arc::new(MemoryLookup(catalog)),
        args.recognizer.clone(),
    );
    let queries: Vec<&Query> = manifest.queries.iter().step_by(args.every.max(1)).collect();
    let took = recognize_queries(&recognizer, &args.data, &queries, &args.out).await?;
    eprintln!(
        "{} queries in {:.1} s ({:?})",
        queries.len(),
        took.as_secs_f64(),
        args.recognizer.approach
    );
    let _ = stop_tx.send(());
    if let Ok(Err(e)) = ml_task.await {
        tracing::warn!(error = %e, "ML service stopped with an error");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Indexes every gallery photo (one point per view) and returns the catalog they form.
async fn index_gallery(
    ml: &MlRegionsClient,
    index: &VectorIndex,
    args: &EvalArgs,
    gallery: &[GalleryItem],
    model_version: &str,
) -> Result<HashMap<Uuid, ProductInfo>, EvalError> {
    let t0 = Instant::now();
    let views: Vec<GalleryView> = args
        .views
        .iter()
        .filter_map(|v| GalleryView::parse(v))
        .collect();
    let boxes: Vec<BoxF> = views
        .iter()
        .map(|v| {
            let (x, y, width, height) = v.frac_box();
            BoxF {
                x,
                y,
                width,
                height,
            }
        })
        .collect();
    let mut catalog = HashMap::new();
    for (i, g) in gallery.iter().enumerate() {
        let pid = Uuid::new_v5(
            &Uuid::NAMESPACE_URL,
            format!("urn:rvc:eval:{}", g.sku).as_bytes(),
        );
        let path = args.data.join(&g.file);
        let bytes = std::fs::read(&path).map_err(io(path.display()))?;
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        let r = ml.regions(bytes, &boxes, &[]).await?;
        let points = views
            .iter()
            .zip(r.crops)
            .map(|(view, vector)| PointRecord {
                id: view.point_id(rvc_vectors::point_id(pid, &sha, model_version)),
                vector,
                payload: PointPayload {
                    product_id: pid,
                    sku: g.sku.clone(),
                    product_version: 1,
                    image_key: g.file.clone(),
                    model_version: model_version.to_owned(),
                    created_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
                },
            })
            .collect();
        index.upsert(points).await?;
        catalog.insert(
            pid,
            ProductInfo {
                product_id: pid,
                sku: g.sku.clone(),
                name: g.sku.clone(),
                category: "eval".to_owned(),
                price: "1.00".to_owned(),
                currency: "EUR".to_owned(),
                version: 1,
                price_minor: 100,
            },
        );
        if i % 10 == 9 {
            eprintln!("indexed {} / {}", i + 1, gallery.len());
        }
    }
    eprintln!(
        "gallery: {} products x {} views in {:.1} s",
        gallery.len(),
        views.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(catalog)
}

/// Recognises each query (top 5, no threshold) and writes one JSON line per query to `out`;
/// returns how long that took.
async fn recognize_queries(
    recognizer: &Recognizer,
    data: &Path,
    queries: &[&Query],
    out: &Path,
) -> Result<Duration, EvalError> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent.display()))?;
    }
    let mut w = std::io::BufWriter::new(std::fs::File::create(out).map_err(io(out.display()))?);
    let t1 = Instant::now();
    for (i, q) in queries.iter().enumerate() {
        let path = data.join(&q.file);
        let bytes = std::fs::read(&path).map_err(io(path.display()))?;
        let started = Instant::now();
        let r = recognizer.recognize(bytes, 5, Some(-1.0)).await?;
        let millis = started.elapsed().as_secs_f64() * 1e3;
        let objects: Vec<serde_json::Value> = r
            .objects
            .iter()
            .map(|o| {
                serde_json::json!({
                    "sku": o.product.sku,
                    "score": o.score,
                    "box": [o.bbox.x, o.bbox.y, o.bbox.width, o.bbox.height],
                    "candidates": o.candidates.iter().map(|c| serde_json::json!({"sku": c.sku, "score": c.score})).collect::<Vec<_>>(),
                })
            })
            .collect();
        writeln!(
            w,
            "{}",
            serde_json::json!({"id": q.id, "objects": objects, "millis": millis})
        )
        .map_err(io(out.display()))?;
        if i % 25 == 24 {
            eprintln!("{} / {} queries", i + 1, queries.len());
        }
    }
    w.flush().map_err(io(out.display()))?;
    Ok(t1.elapsed())
}
