//! `rvc-recognition-eval`: runs the real recognition pipeline over the evaluation set written by
//! `scripts/eval_recognition.py build` and writes one JSON line per query for its `score`.
//!
//! Starts the ML service in-process (the model file, port 0) and the `rvc-vector-index` binary
//! (a temporary directory, a free port), indexes the gallery the way the vectorizer does (one
//! point per view of each photo, deterministic ids), then recognises every query with
//! `min_score = -1` so the scorer can sweep the threshold. The product catalog is the gallery
//! manifest (an in-memory `ProductLookup`: there is no Postgres in this loop).
use anyhow::{bail, Context};
use async_trait::async_trait;
use clap::Parser;
use rvc_recognition::{
    BoxF, MlRegionsClient, ProductInfo, ProductLookup, RecognitionError, Recognizer,
    RecognizerConfig,
};
use rvc_vectors::{PointPayload, PointRecord, VectorIndex};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(name = "rvc-recognition-eval")]
struct Args {
    /// Directory written by `eval_recognition.py build` (manifest.json, gallery/, queries/).
    #[arg(long, default_value = "var/eval/data")]
    data: PathBuf,
    /// Output JSON lines.
    #[arg(long, default_value = "var/eval/results.jsonl")]
    out: PathBuf,
    /// The `rvc-vector-index` binary.
    #[arg(long, default_value = "target/debug/rvc-vector-index")]
    vector_index_bin: PathBuf,
    /// Use only every n-th query (a quick run).
    #[arg(long, default_value_t = 1)]
    every: usize,
    /// Gallery views indexed per photo: whole (the vectorizer's point) and/or centre (the
    /// central 60 % square, a second point).
    #[arg(long, value_delimiter = ',', default_value = "whole,centre")]
    views: Vec<String>,
    #[command(flatten)]
    recognizer: RecognizerConfig,
    #[command(flatten)]
    ml: rvc_ml_service::ServiceConfig,
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

fn centre() -> BoxF {
    BoxF {
        x: 0.2,
        y: 0.2,
        width: 0.6,
        height: 0.6,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(args.data.join("manifest.json")).context("reading manifest.json")?,
    )?;

    // ML service, in-process.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ml_url = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ml_cfg = args.ml.clone();
    let ml_task = tokio::spawn(rvc_ml_service::serve(listener, ml_cfg, async move {
        let _ = stop_rx.await;
    }));

    // Vector index binary.
    let dir = std::env::temp_dir().join(format!("rvc-eval-index-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let _index_proc = Child(
        Command::new(&args.vector_index_bin)
            .env("VECTOR_ADDR", format!("127.0.0.1:{port}"))
            .env("VECTOR_DATA_DIR", &dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", args.vector_index_bin.display()))?,
    );
    let index = VectorIndex::connect(&format!("http://127.0.0.1:{port}"), "eval")?;
    let ml = MlRegionsClient::new(&ml_url, Duration::from_secs(120))?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let model_version = loop {
        match (index.health_check().await, ml.model_version().await) {
            (Ok(_), Ok(v)) => break v,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            (a, b) => bail!("services did not come up: index {a:?}, ml {b:?}"),
        }
    };
    index.ensure_collection(1280).await?;

    // Gallery.
    let t0 = Instant::now();
    let mut catalog = HashMap::new();
    for (i, g) in manifest.gallery.iter().enumerate() {
        let pid = Uuid::new_v5(
            &Uuid::NAMESPACE_URL,
            format!("urn:rvc:eval:{}", g.sku).as_bytes(),
        );
        let bytes = std::fs::read(args.data.join(&g.file))?;
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        let views: Vec<(&str, BoxF)> = args
            .views
            .iter()
            .filter_map(|v| match v.as_str() {
                "whole" => Some(("whole", BoxF::WHOLE)),
                "centre" | "center" => Some(("centre", centre())),
                _ => None,
            })
            .collect();
        let boxes: Vec<BoxF> = views.iter().map(|(_, b)| *b).collect();
        let r = ml.regions(bytes, &boxes, &[]).await?;
        let points = views
            .iter()
            .zip(r.crops)
            .map(|((name, _), vector)| PointRecord {
                id: rvc_vectors::point_id(pid, &sha, &format!("{model_version}#{name}")),
                vector,
                payload: PointPayload {
                    product_id: pid,
                    sku: g.sku.clone(),
                    product_version: 1,
                    image_key: g.file.clone(),
                    model_version: model_version.clone(),
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
            eprintln!("indexed {} / {}", i + 1, manifest.gallery.len());
        }
    }
    eprintln!(
        "gallery: {} products x {} views in {:.1} s",
        manifest.gallery.len(),
        args.views.len(),
        t0.elapsed().as_secs_f64()
    );

    let recognizer = Recognizer::new(
        ml,
        index,
        Arc::new(MemoryLookup(catalog)),
        args.recognizer.clone(),
    );
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args.out)?);
    let queries: Vec<&Query> = manifest.queries.iter().step_by(args.every.max(1)).collect();
    let t1 = Instant::now();
    for (i, q) in queries.iter().enumerate() {
        let bytes = std::fs::read(args.data.join(&q.file))?;
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
            out,
            "{}",
            serde_json::json!({"id": q.id, "objects": objects, "millis": millis})
        )?;
        if i % 25 == 24 {
            eprintln!("{} / {} queries", i + 1, queries.len());
        }
    }
    out.flush()?;
    eprintln!(
        "{} queries in {:.1} s ({:?})",
        queries.len(),
        t1.elapsed().as_secs_f64(),
        args.recognizer.approach
    );
    let _ = stop_tx.send(());
    let _ = ml_task.await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
