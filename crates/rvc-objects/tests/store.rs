//! One suite, run against both backends: the local directory (`FsStore`) and a real
//! S3-protocol server (`S3Store` against s3s-fs started per test on a free port).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use rvc_objects::{
    from_config, product_image_key, product_prefix, FsStore, Metadata, ObjectStore,
    ObjectStoreConfig, ObjectStoreError, S3Config, S3Store,
};
use rvc_test_support::s3::TestS3;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A temp directory removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("rvc-objects-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store under test plus whatever keeps its server/directory alive.
struct Backend {
    store: Arc<dyn ObjectStore>,
    s3: Option<TestS3>,
    dir: Option<TempDir>,
}

async fn fs_backend() -> Backend {
    let dir = TempDir::new();
    let store = FsStore::new(dir.0.join("objects"));
    store.ensure_bucket().await.unwrap();
    Backend {
        store: Arc::new(store),
        s3: None,
        dir: Some(dir),
    }
}

async fn s3_backend() -> Backend {
    rvc_test_support::init_tracing();
    let s3 = TestS3::start().await;
    let store = S3Store::connect(s3.config()).await.unwrap();
    Backend {
        store: Arc::new(store),
        s3: Some(s3),
        dir: None,
    }
}

/// Runs `$name(backend)` once per backend, as two separate tests.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fs() {
                super::$name(super::fs_backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3() {
                super::$name(super::s3_backend().await).await;
            }
        }
    )*};
}

both_backends!(
    round_trip_keeps_bytes_content_type_and_metadata,
    put_same_key_twice_leaves_one_object,
    list_by_prefix_follows_every_page,
    delete_is_idempotent,
    missing_objects_read_as_none,
    invalid_keys_and_metadata_are_permanent_errors,
    missing_bucket_is_a_permanent_error,
    ensure_bucket_creates_a_missing_bucket,
);

fn image_bytes(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

async fn round_trip_keeps_bytes_content_type_and_metadata(b: Backend) {
    let product = Uuid::now_v7();
    let key = product_image_key(product, &"a1".repeat(32), "jpg");
    let bytes = image_bytes(200 * 1024 + 7, 3);
    let meta: Metadata = [
        ("sha256".to_owned(), "a1".repeat(32)),
        ("product-id".to_owned(), product.to_string()),
    ]
    .into();
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    b.store
        .put(&key, bytes.clone(), "image/jpeg", &meta)
        .await
        .unwrap();

    let got = b.store.get(&key).await.unwrap().expect("object exists");
    assert_eq!(got.bytes, bytes);
    assert_eq!(got.meta.key, key);
    assert_eq!(got.meta.size, bytes.len() as u64);
    assert_eq!(got.meta.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(got.meta.metadata, meta);

    let head = b.store.head(&key).await.unwrap().expect("object exists");
    assert_eq!(head.size, bytes.len() as u64);
    assert_eq!(head.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(head.metadata, meta);
    assert!(head.last_modified >= before, "{:?}", head.last_modified);
    assert!(head.last_modified <= chrono::Utc::now() + chrono::Duration::seconds(5));

    let listed = b.store.list(&product_prefix(product)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, key);
    assert_eq!(listed[0].size, bytes.len() as u64);
    assert!(listed[0].last_modified >= before);

    // On S3 the object really sits in the server's bucket directory.
    if let Some(s3) = &b.s3 {
        let on_disk = std::fs::read(s3.object_path(&s3.bucket, &key)).unwrap();
        assert_eq!(on_disk, bytes.as_ref());
    }
}

async fn put_same_key_twice_leaves_one_object(b: Backend) {
    let product = Uuid::now_v7();
    let key = product_image_key(product, &"b2".repeat(32), "png");
    let first = image_bytes(1000, 1);
    let second = image_bytes(1500, 2);
    b.store
        .put(&key, first, "image/png", &Metadata::new())
        .await
        .unwrap();
    let meta: Metadata = [("attempt".to_owned(), "2".to_owned())].into();
    b.store
        .put(&key, second.clone(), "image/webp", &meta)
        .await
        .unwrap();

    let listed = b.store.list(&product_prefix(product)).await.unwrap();
    assert_eq!(
        listed.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
        vec![key.as_str()]
    );
    let got = b.store.get(&key).await.unwrap().unwrap();
    assert_eq!(got.bytes, second);
    assert_eq!(got.meta.content_type.as_deref(), Some("image/webp"));
    assert_eq!(got.meta.metadata, meta);
}

async fn list_by_prefix_follows_every_page(b: Backend) {
    // More than one S3 page (1000 keys per ListObjectsV2 answer).
    const N: usize = 1100;
    let store = b.store.clone();
    let sem = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let store = store.clone();
        let permit = sem.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            let key = format!("many/{:02}/obj-{i:05}.bin", i % 7);
            store
                .put(
                    &key,
                    Bytes::from(vec![1u8; i % 10]),
                    "application/octet-stream",
                    &Metadata::new(),
                )
                .await
                .unwrap();
            drop(permit);
        });
    }
    // Decoys that share a string prefix but not the listed one.
    store
        .put(
            "manyother/x.bin",
            Bytes::from_static(b"x"),
            "text/plain",
            &Metadata::new(),
        )
        .await
        .unwrap();
    store
        .put(
            "other/x.bin",
            Bytes::from_static(b"x"),
            "text/plain",
            &Metadata::new(),
        )
        .await
        .unwrap();
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }

    let listed = store.list("many/").await.unwrap();
    assert_eq!(listed.len(), N);
    let mut expected: Vec<String> = (0..N)
        .map(|i| format!("many/{:02}/obj-{i:05}.bin", i % 7))
        .collect();
    expected.sort();
    let keys: Vec<String> = listed.iter().map(|m| m.key.clone()).collect();
    assert_eq!(
        keys, expected,
        "listing is complete, sorted and free of duplicates"
    );
    let probe = listed
        .iter()
        .find(|m| m.key == "many/03/obj-00017.bin")
        .unwrap();
    assert_eq!(probe.size, 7);

    // A prefix that ends mid-segment.
    let partial = store.list("many/03/obj-0001").await.unwrap();
    let want: Vec<String> = (10..20)
        .filter(|i| i % 7 == 3)
        .map(|i| format!("many/03/obj-{i:05}.bin"))
        .collect();
    assert_eq!(
        partial.iter().map(|m| m.key.clone()).collect::<Vec<_>>(),
        want
    );

    assert_eq!(store.list("many").await.unwrap().len(), N + 1);
    assert_eq!(store.list("").await.unwrap().len(), N + 2);
    assert!(store.list("nothing-here/").await.unwrap().is_empty());
}

async fn delete_is_idempotent(b: Backend) {
    let key = "del/one.txt";
    b.store.delete(key).await.unwrap(); // never existed
    b.store
        .put(
            key,
            Bytes::from_static(b"hello"),
            "text/plain",
            &Metadata::new(),
        )
        .await
        .unwrap();
    b.store
        .put(
            "del/two.txt",
            Bytes::from_static(b"keep"),
            "text/plain",
            &Metadata::new(),
        )
        .await
        .unwrap();
    assert!(b.store.head(key).await.unwrap().is_some());
    b.store.delete(key).await.unwrap();
    assert!(b.store.head(key).await.unwrap().is_none());
    assert!(b.store.get(key).await.unwrap().is_none());
    b.store.delete(key).await.unwrap(); // already gone
    let left = b.store.list("del/").await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key, "del/two.txt");
}

async fn missing_objects_read_as_none(b: Backend) {
    assert!(b.store.get("no/such/key.jpg").await.unwrap().is_none());
    assert!(b.store.head("no/such/key.jpg").await.unwrap().is_none());
}

async fn invalid_keys_and_metadata_are_permanent_errors(b: Backend) {
    for key in ["", "/abs", "a/../b", "trailing/"] {
        let err = b
            .store
            .put(
                key,
                Bytes::from_static(b"x"),
                "text/plain",
                &Metadata::new(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, ObjectStoreError::InvalidKey { .. }),
            "{key:?}: {err}"
        );
        assert!(!err.is_retryable());
    }
    let bad: Metadata = [("Not Lower".to_owned(), "x".to_owned())].into();
    let err = b
        .store
        .put("ok.txt", Bytes::from_static(b"x"), "text/plain", &bad)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ObjectStoreError::InvalidMetadata { .. }),
        "{err}"
    );
    assert!(!err.is_retryable());
}

/// A store whose bucket (or directory) was never created.
fn store_with_missing_bucket(b: &Backend) -> Arc<dyn ObjectStore> {
    match &b.s3 {
        Some(s3) => Arc::new(S3Store::new(s3.config_for(&s3.missing_bucket())).unwrap()),
        None => Arc::new(FsStore::new(
            b.dir
                .as_ref()
                .unwrap()
                .0
                .join(format!("missing-{}", Uuid::new_v4().simple())),
        )),
    }
}

async fn missing_bucket_is_a_permanent_error(b: Backend) {
    let store = store_with_missing_bucket(&b);
    let err = store.list("").await.unwrap_err();
    assert!(
        matches!(err, ObjectStoreError::NoSuchBucket { .. }),
        "list: {err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(err.http_status(), Some(404));
    let err = store.delete("k.bin").await.unwrap_err();
    assert!(
        matches!(err, ObjectStoreError::NoSuchBucket { .. }),
        "delete: {err:?}"
    );
    assert!(!err.is_retryable());
    if b.s3.is_none() {
        // s3s-fs (unlike AWS) answers NoSuchKey to a GET and creates the bucket directory
        // on a PUT into a missing bucket, so these two are checked on the directory backend.
        let err = store.get("k.bin").await.unwrap_err();
        assert!(
            matches!(err, ObjectStoreError::NoSuchBucket { .. }),
            "get: {err:?}"
        );
        let err = store
            .put(
                "k.bin",
                Bytes::from_static(b"x"),
                "application/octet-stream",
                &Metadata::new(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, ObjectStoreError::NoSuchBucket { .. }),
            "put: {err:?}"
        );
        assert!(!err.is_retryable());
    }
}

async fn ensure_bucket_creates_a_missing_bucket(b: Backend) {
    let store = store_with_missing_bucket(&b);
    store.ensure_bucket().await.unwrap();
    store.ensure_bucket().await.unwrap(); // idempotent
    store
        .put(
            "k.bin",
            Bytes::from_static(b"x"),
            "application/octet-stream",
            &Metadata::new(),
        )
        .await
        .unwrap();
    assert_eq!(store.list("").await.unwrap().len(), 1);
}

// ---- S3-only failure modes ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_wrong_credentials_are_a_permanent_auth_error() {
    let s3 = TestS3::start().await;
    let mut cfg = s3.config();
    cfg.secret_access_key = Some("not-the-secret".to_owned().into());
    let store = S3Store::new(cfg).unwrap();
    let err = store
        .put(
            "k.bin",
            Bytes::from_static(b"x"),
            "application/octet-stream",
            &Metadata::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ObjectStoreError::Auth { status: 403, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let err = store.head("k.bin").await.unwrap_err();
    assert!(
        matches!(err, ObjectStoreError::Auth { .. }),
        "head: {err:?}"
    );
    let err = store.ensure_bucket().await.unwrap_err();
    assert!(
        matches!(err, ObjectStoreError::Auth { .. }),
        "ensure_bucket: {err:?}"
    );
    // The error text never carries the secrets.
    assert!(!format!("{err} {err:?}").contains(&s3.secret_key));

    let mut cfg = s3.config();
    cfg.access_key_id = Some("UNKNOWNKEY".to_owned().into());
    let err = S3Store::new(cfg).unwrap().list("").await.unwrap_err();
    assert!(matches!(err, ObjectStoreError::Auth { .. }), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_is_retryable_and_recovers_after_restart() {
    let mut s3 = TestS3::start().await;
    let store = S3Store::new(s3.config()).unwrap();
    store
        .put(
            "before.bin",
            Bytes::from_static(b"1"),
            "application/octet-stream",
            &Metadata::new(),
        )
        .await
        .unwrap();

    s3.stop();
    let err = store
        .put(
            "during.bin",
            Bytes::from_static(b"2"),
            "application/octet-stream",
            &Metadata::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ObjectStoreError::Transport { .. }), "{err:?}");
    assert!(err.is_retryable());
    let err = store.get("before.bin").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let err = store.list("").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    s3.restart().await;
    // Same port, same data: the old object is still there and writes work again.
    let got = store.get("before.bin").await.unwrap().unwrap();
    assert_eq!(got.bytes.as_ref(), b"1");
    store
        .put(
            "during.bin",
            Bytes::from_static(b"2"),
            "application/octet-stream",
            &Metadata::new(),
        )
        .await
        .unwrap();
    assert_eq!(store.list("").await.unwrap().len(), 2);
}

/// A loopback server that accepts connections and never answers.
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    (format!("http://{addr}"), handle)
}

/// A loopback server that answers every request with the given status and S3 error code.
async fn answering_server(
    status_line: &'static str,
    code: &'static str,
) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                // Read the request head (GET requests carry no body).
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code></Error>");
                let resp = format!(
                    "HTTP/1.1 {status_line}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_timeout_is_retryable() {
    let (endpoint, server) = silent_server().await;
    let mut cfg = S3Config::new(endpoint, "us-east-1", "b", "ak", "sk");
    cfg.request_timeout = Duration::from_millis(300);
    let err = S3Store::new(cfg).unwrap().get("k").await.unwrap_err();
    assert!(matches!(err, ObjectStoreError::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_5xx_is_retryable_and_4xx_is_not() {
    let (endpoint, server) = answering_server("503 Service Unavailable", "SlowDown").await;
    let store = S3Store::new(S3Config::new(endpoint, "us-east-1", "b", "ak", "sk")).unwrap();
    let err = store.get("k").await.unwrap_err();
    assert!(
        matches!(err, ObjectStoreError::Http { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let err = store.list("").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    server.abort();

    let (endpoint, server) = answering_server("400 Bad Request", "InvalidArgument").await;
    let store = S3Store::new(S3Config::new(endpoint, "us-east-1", "b", "ak", "sk")).unwrap();
    let err = store.get("k").await.unwrap_err();
    assert!(
        matches!(&err, ObjectStoreError::Http { status: 400, code, .. } if code == "InvalidArgument"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    server.abort();
}

// ---- configuration ----

#[tokio::test]
async fn from_config_uses_the_directory_without_s3_endpoint() {
    let dir = TempDir::new();
    let store = from_config(&ObjectStoreConfig::dir(dir.0.join("objs")))
        .await
        .unwrap();
    assert_eq!(store.backend(), "fs");
    store
        .put(
            "a/b.txt",
            Bytes::from_static(b"hi"),
            "text/plain",
            &Metadata::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(dir.0.join("objs/data/a/b.txt")).unwrap(),
        b"hi"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_config_uses_s3_when_endpoint_is_set_and_creates_the_bucket() {
    let s3 = TestS3::start().await;
    let mut cfg = ObjectStoreConfig::dir("unused");
    cfg.s3_endpoint = Some(s3.endpoint.clone());
    cfg.s3_bucket = s3.missing_bucket();
    cfg.s3_access_key_id = Some(s3.access_key.clone().into());
    cfg.s3_secret_access_key = Some(s3.secret_key.clone().into());
    let store = from_config(&cfg).await.unwrap();
    assert_eq!(store.backend(), "s3");
    assert!(
        s3.data_dir().join(&cfg.s3_bucket).is_dir(),
        "bucket created at start"
    );
    store
        .put(
            "x.bin",
            Bytes::from_static(b"x"),
            "application/octet-stream",
            &Metadata::new(),
        )
        .await
        .unwrap();
    assert!(s3.object_path(&cfg.s3_bucket, "x.bin").is_file());
    assert!(!format!("{cfg:?}").contains(&s3.secret_key));
}

#[test]
fn config_reads_the_contract_variables() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        objects: ObjectStoreConfig,
    }
    let cli = Cli::parse_from([
        "x",
        "--s3-endpoint",
        "http://127.0.0.1:9",
        "--s3-bucket",
        "imgs",
        "--s3-access-key-id",
        "AK",
        "--s3-secret-access-key",
        "SK",
    ]);
    let s3 = cli.objects.s3().unwrap();
    assert_eq!(s3.endpoint, "http://127.0.0.1:9");
    assert_eq!(s3.bucket, "imgs");
    assert_eq!(s3.region, "us-east-1");
    let cli = Cli::parse_from(["x"]);
    assert!(cli.objects.s3().is_none() || std::env::var_os("S3_ENDPOINT").is_some());
    assert_eq!(
        cli.objects.object_store_dir,
        PathBuf::from(std::env::var("OBJECT_STORE_DIR").unwrap_or_else(|_| "var/objects".into()))
    );
}
