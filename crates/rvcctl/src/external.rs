//! The reconcile checks' view of the real object store (rvc-objects) and vector index
//! (rvc-vectors, over qdrant-client).
use crate::reconcile::{CheckError, ObjectStore, VectorIndex};
use async_trait::async_trait;
use futures::StreamExt;
use std::sync::Arc;
use uuid::Uuid;

/// Object checks through any `rvc_objects::ObjectStore` (S3 or the local directory).
pub struct Objects(pub Arc<dyn rvc_objects::ObjectStore>);

#[async_trait]
impl ObjectStore for Objects {
    async fn missing(&self, keys: &[String]) -> Result<Vec<String>, CheckError> {
        let heads: Vec<(String, Result<bool, String>)> =
            futures::stream::iter(keys.iter().cloned())
                .map(|key| async move {
                    let r = self
                        .0
                        .head(&key)
                        .await
                        .map(|m| m.is_some())
                        .map_err(|e| e.to_string());
                    (key, r)
                })
                .buffer_unordered(16)
                .collect()
                .await;
        let mut missing = Vec::new();
        for (key, found) in heads {
            match found {
                Ok(true) => {}
                Ok(false) => missing.push(key),
                Err(message) => {
                    return Err(CheckError {
                        check: "object_missing",
                        message,
                    })
                }
            }
        }
        missing.sort();
        Ok(missing)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, CheckError> {
        self.0
            .list(prefix)
            .await
            .map(|objs| objs.into_iter().map(|o| o.key).collect())
            .map_err(|e| CheckError {
                check: "object_unreferenced",
                message: e.to_string(),
            })
    }
}

/// Point checks against the vector index.
pub struct Vectors(pub rvc_vectors::VectorIndex);

#[async_trait]
impl VectorIndex for Vectors {
    async fn missing_points(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, CheckError> {
        let mut missing = Vec::new();
        for chunk in ids.chunks(256) {
            let found = self.0.vectors(chunk).await.map_err(|e| CheckError {
                check: "point_missing",
                message: e.to_string(),
            })?;
            missing.extend(chunk.iter().filter(|id| !found.contains_key(id)).copied());
        }
        Ok(missing)
    }
}
