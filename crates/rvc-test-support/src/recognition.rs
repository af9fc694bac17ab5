//! The backends of recognition, real, for the tests and the bench of rvc-recognition and
//! rvc-catalog:
//! - the ML service in-process with the real model;
//! - the `rvc-vector-index` binary;
//! - gallery photos indexed as the vectorizer indexes them: one point per
//!   [`rvc_vectors::GalleryView`] (the whole photo and its central 60 %).
use crate::process::ChildGuard;
use rvc_proto::ml::machine_learning_service_client::MachineLearningServiceClient;
use rvc_proto::ml::{Box as PbBox, EmbedRegionsRequest, GetModelInfoRequest};
use rvc_vectors::{GalleryView, PointPayload, PointRecord, VectorIndex};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub struct RecognitionBackends {
    pub ml_url: String,
    pub qdrant_url: String,
    /// The collection (1280-d), created.
    pub index: VectorIndex,
    pub model_version: String,
    _index_proc: ChildGuard,
    dir: PathBuf,
    _stop_ml: tokio::sync::oneshot::Sender<()>,
}

impl Drop for RecognitionBackends {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RecognitionBackends {
    /// Starts both on free loopback ports and waits until they answer (up to 3 minutes: the
    /// first model load of a debug build is slow). `beside` is a binary of the calling crate
    /// (`env!("CARGO_BIN_EXE_…")`); `rvc-vector-index` is taken from its directory.
    pub async fn start(beside: &Path, collection: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ml_url = format!("http://{}", listener.local_addr().unwrap());
        let (stop_ml, rx) = tokio::sync::oneshot::channel::<()>();
        let ml_cfg = rvc_ml_service::ServiceConfig {
            embedder: rvc_ml_service::EmbedderConfig {
                model_path: crate::paths::model_path(),
                ..Default::default()
            },
            workers: 2,
            shutdown_grace_secs: 1,
            ..Default::default()
        };
        tokio::spawn(rvc_ml_service::serve(listener, ml_cfg, async move {
            let _ = rx.await;
        }));
        let dir = std::env::temp_dir().join(format!("rvc-rec-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = crate::net::free_port();
        let index_proc = ChildGuard::spawn(
            "rvc-vector-index",
            Command::new(crate::paths::vector_index_bin(beside))
                .env("VECTOR_ADDR", format!("127.0.0.1:{port}"))
                .env("VECTOR_DATA_DIR", &dir)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        )
        .unwrap();
        let qdrant_url = format!("http://127.0.0.1:{port}");
        let index = VectorIndex::connect(&qdrant_url, collection).unwrap();
        let deadline = Instant::now() + Duration::from_secs(180);
        let model_version = loop {
            if index.health_check().await.is_ok() {
                if let Ok(mut ml) = MachineLearningServiceClient::connect(ml_url.clone()).await {
                    if let Ok(info) = ml.get_model_info(GetModelInfoRequest {}).await {
                        break info.into_inner().model_version;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "ML service or vector index did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        index.ensure_collection(1280).await.unwrap();
        Self {
            ml_url,
            qdrant_url,
            index,
            model_version,
            _index_proc: index_proc,
            dir,
            _stop_ml: stop_ml,
        }
    }

    /// Indexes `photo` as the gallery photo of product `product_id` (version 1): one point per
    /// view, embedded by the ML service like a catalog photo.
    pub async fn index_photo(&self, product_id: Uuid, sku: &str, photo: &[u8]) {
        let mut ml = MachineLearningServiceClient::connect(self.ml_url.clone())
            .await
            .unwrap()
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let crops = GalleryView::ALL
            .iter()
            .map(|v| PbBox::from(v.frac_box()))
            .collect();
        let r = ml
            .embed_regions(EmbedRegionsRequest {
                image_data: photo.to_vec(),
                image_type: String::new(),
                crops,
                pooled: Vec::new(),
                pooling_input_size: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let sha = hex::encode(sha2::Sha256::digest(photo));
        let mv = &self.model_version;
        let points = r
            .crops
            .into_iter()
            .zip(GalleryView::ALL)
            .map(|(e, view)| PointRecord {
                id: view.point_id(rvc_vectors::point_id(product_id, &sha, mv)),
                vector: e.vector,
                payload: PointPayload {
                    product_id,
                    sku: sku.to_owned(),
                    product_version: 1,
                    image_key: format!("products/{product_id}/{sha}.jpg"),
                    model_version: mv.clone(),
                    created_at: chrono::Utc::now(),
                },
            })
            .collect();
        self.index.upsert(points).await.unwrap();
    }
}
