//! The real `rvc-vector-index` binary as a child process: SIGKILL and restart on the same data
//! dir keep acknowledged points; SIGTERM shuts down cleanly; one process per data dir;
//! methods outside the subset answer UNIMPLEMENTED.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use qdrant_client::qdrant::{CreateAliasBuilder, Distance};
use rvc_vectors::{point_id, PointPayload, PointRecord, VectorIndex};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_rvc-vector-index");

struct Proc {
    child: Child,
    url: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use rvc_test_support::net::free_port;

fn spawn(data_dir: &Path) -> (Child, u16) {
    let port = free_port();
    let child = Command::new(BIN)
        .env("VECTOR_ADDR", format!("127.0.0.1:{port}"))
        .env("VECTOR_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, port)
}

/// Start the binary and wait until its health check answers.
async fn start(data_dir: &Path) -> Proc {
    for _attempt in 0..3 {
        // The port was free a moment ago; another test may grab it first, hence the retries.
        let (mut child, port) = spawn(data_dir);
        let url = format!("http://127.0.0.1:{port}");
        let index = VectorIndex::connect(&url, "probe").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                eprintln!("rvc-vector-index exited early ({status}): {err}");
                break;
            }
            if index.health_check().await.is_ok() {
                return Proc { child, url };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("rvc-vector-index did not become healthy");
}

fn record(product_id: Uuid, i: u64, dim: usize) -> PointRecord {
    let sha = format!("{i:064x}");
    PointRecord {
        id: point_id(product_id, &sha, "m@1"),
        vector: (0..dim)
            .map(|d| ((i as usize * 31 + d * 7) % 13) as f32 - 6.0)
            .collect(),
        payload: PointPayload {
            product_id,
            sku: format!("SKU-{i}"),
            product_version: 1,
            image_key: format!("products/{product_id}/{sha}.png"),
            model_version: "m@1".into(),
            created_at: Utc::now(),
        },
    }
}

#[tokio::test]
async fn acknowledged_points_survive_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("index");
    let collection = "products";
    let product = Uuid::now_v7();
    let points: Vec<_> = (0..20).map(|i| record(product, i, 24)).collect();
    let mut ids: Vec<Uuid> = points.iter().map(|p| p.id).collect();
    ids.sort();

    let mut first = start(&data).await;
    let index = VectorIndex::connect(&first.url, collection).unwrap();
    index.ensure_collection(24).await.unwrap();
    index.upsert(points[..10].to_vec()).await.unwrap();
    index.upsert(points[10..].to_vec()).await.unwrap();
    index
        .delete_product_versions_below(product, 0)
        .await
        .unwrap();
    assert_eq!(index.count(None).await.unwrap(), 20);

    // SIGKILL right after the acknowledgements: no chance to flush on shutdown.
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let second = start(&data).await;
    let index = VectorIndex::connect(&second.url, collection).unwrap();
    index.ensure_collection(24).await.unwrap();
    assert_eq!(index.count(None).await.unwrap(), 20);
    assert_eq!(index.product_point_ids(product).await.unwrap(), ids);
    let hits = index.search(points[7].vector.clone(), 1).await.unwrap();
    assert_eq!(hits[0].id, points[7].id);
    assert_eq!(hits[0].payload, points[7].payload);

    // Writes after the restart go on the same shard and survive another SIGKILL.
    index.delete_product(product).await.unwrap();
    index
        .upsert(vec![record(Uuid::now_v7(), 100, 24)])
        .await
        .unwrap();
    drop(second);
    let third = start(&data).await;
    let index = VectorIndex::connect(&third.url, collection).unwrap();
    assert_eq!(index.count(None).await.unwrap(), 1);
    assert_eq!(index.count(Some(product)).await.unwrap(), 0);
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_data_dir_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("index");
    let mut first = start(&data).await;
    let index = VectorIndex::connect(&first.url, "c").unwrap();
    index.ensure_collection(4).await.unwrap();

    // A second process on the same dir refuses to start.
    let (mut second, _) = spawn(&data);
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = second.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = second.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return (s, err);
            }
            if Instant::now() > deadline {
                let _ = second.kill();
                panic!("second process on a locked data dir kept running");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert!(!status.0.success());
    assert!(status.1.contains("locked"), "stderr: {}", status.1);

    let pid = first.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = first.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit}");

    let again = start(&data).await;
    let index = VectorIndex::connect(&again.url, "c").unwrap();
    index.ensure_collection(4).await.unwrap();
    assert_eq!(index.count(None).await.unwrap(), 0);
}

#[tokio::test]
async fn methods_outside_the_subset_are_unimplemented_and_collections_list_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let proc_ = start(&dir.path().join("index")).await;
    let client = qdrant_client::Qdrant::from_url(&proc_.url)
        .skip_compatibility_check()
        .build()
        .unwrap();

    client
        .create_collection(
            qdrant_client::qdrant::CreateCollectionBuilder::new("a").vectors_config(
                qdrant_client::qdrant::VectorParamsBuilder::new(3, Distance::Dot),
            ),
        )
        .await
        .unwrap();
    let err = client
        .create_alias(CreateAliasBuilder::new("a", "alias"))
        .await
        .unwrap_err();
    match err {
        qdrant_client::QdrantError::ResponseError { status } => {
            assert_eq!(status.code(), tonic::Code::Unimplemented);
            assert!(status.message().contains("aliases"), "{}", status.message());
        }
        e => panic!("unexpected {e:?}"),
    }

    let names: Vec<String> = client
        .list_collections()
        .await
        .unwrap()
        .collections
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["a".to_string()]);
    assert!(client.collection_exists("a").await.unwrap());
    assert!(client.delete_collection("a").await.unwrap().result);
    assert!(!client.collection_exists("a").await.unwrap());
    assert!(client.collection_info("a").await.is_err());

    // The adapter on a Dot collection reports the mismatch rather than using it.
    client
        .create_collection(
            qdrant_client::qdrant::CreateCollectionBuilder::new("dot").vectors_config(
                qdrant_client::qdrant::VectorParamsBuilder::new(3, Distance::Dot),
            ),
        )
        .await
        .unwrap();
    let err = VectorIndex::connect(&proc_.url, "dot")
        .unwrap()
        .ensure_collection(3)
        .await
        .unwrap_err();
    assert!(
        matches!(err, rvc_vectors::VectorIndexError::DistanceMismatch { .. }),
        "{err:?}"
    );
}

/// GET `path` on `addr` over plain HTTP/1.0 (the test has no HTTP client dependency).
fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[tokio::test]
async fn metrics_count_requests_by_grpc_method() {
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let child = Command::new(BIN)
        .env("VECTOR_ADDR", format!("127.0.0.1:{port}"))
        .env("VECTOR_DATA_DIR", dir.path())
        .env("METRICS_ADDR", &metrics_addr)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let index = VectorIndex::connect(&proc.url, "metered").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while index.health_check().await.is_err() {
        assert!(Instant::now() < deadline, "rvc-vector-index did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    index.ensure_collection(4).await.unwrap();
    index.search(vec![0.1, 0.2, 0.3, 0.4], 3).await.unwrap();
    index.search(vec![0.4, 0.3, 0.2, 0.1], 3).await.unwrap();
    let metrics = http_get(&metrics_addr, "/metrics").expect("metrics endpoint answers");
    let searches = metrics
        .lines()
        .find(|l| l.starts_with("rvc_vector_requests_total{method=\"Points/Query\"}"))
        .unwrap_or_else(|| panic!("no search counter in\n{metrics}"));
    assert!(searches.ends_with(" 2"), "{searches}");
    assert!(
        metrics.contains("rvc_vector_request_seconds_count{method=\"Qdrant/HealthCheck\"}"),
        "{metrics}"
    );
    assert!(http_get(&metrics_addr, "/readyz")
        .unwrap()
        .starts_with("HTTP/1.0 200"));
    drop(proc);
}
