//! A real S3-compatible server (`s3s-fs`) per test, on a free loopback port with its own
//! data directory and random credentials. Killed and its directory removed on drop.
//!
//! `stop()` / `restart()` keep the port and the data, for outage tests.
use crate::net::{free_port, wait_for_port};
use crate::process::ChildGuard;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The s3s-fs version scripts/setup-s3.sh installs.
pub const S3S_FS_VERSION: &str = "0.14.1";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `s3s-fs` with one bucket already created.
pub struct TestS3 {
    /// `http://127.0.0.1:{port}`
    pub endpoint: String,
    pub port: u16,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// Created before the server starts (each bucket is a directory under the data dir).
    pub bucket: String,
    base: PathBuf,
    child: ChildGuard,
}

impl std::fmt::Debug for TestS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestS3")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("data_dir", &self.data_dir())
            .finish_non_exhaustive()
    }
}

/// `S3S_FS_BIN`, else `~/.cargo/bin/s3s-fs`, else `s3s-fs` on PATH.
pub fn s3s_fs_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "S3S_FS_BIN={} does not exist: run scripts/setup-s3.sh",
            p.display()
        );
        return p;
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(p) = cargo_home.map(|h| h.join("bin").join("s3s-fs")) {
        if p.is_file() {
            return p;
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("s3s-fs");
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("s3s-fs not found (S3S_FS_BIN, ~/.cargo/bin, PATH): run scripts/setup-s3.sh");
}

impl TestS3 {
    /// Starts s3s-fs and waits until it accepts connections.
    pub async fn start() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let base = std::env::temp_dir().join(format!("rvc-s3-{id}"));
        let bucket = format!("test-{}", &id[..12]);
        std::fs::create_dir_all(base.join("data").join(&bucket)).unwrap();
        let access_key =
            format!("AK{}", &uuid::Uuid::new_v4().simple().to_string()[..18]).to_uppercase();
        let secret_key = uuid::Uuid::new_v4().simple().to_string();
        // The free port may be taken between probe and bind by a parallel test: retry.
        for attempt in 0..5 {
            let port = free_port();
            let mut child = spawn(&base, port, &access_key, &secret_key);
            if wait_ready(&mut child, port).await {
                return Self {
                    endpoint: format!("http://127.0.0.1:{port}"),
                    port,
                    region: "us-east-1".to_owned(),
                    access_key,
                    secret_key,
                    bucket,
                    base,
                    child,
                };
            }
            tracing::warn!(
                attempt,
                port,
                "s3s-fs did not come up, retrying on another port"
            );
        }
        panic!(
            "s3s-fs did not start; see {}",
            base.join("s3s-fs.log").display()
        );
    }

    /// The directory s3s-fs serves (one subdirectory per bucket).
    pub fn data_dir(&self) -> PathBuf {
        self.base.join("data")
    }

    /// The server's stdout/stderr.
    pub fn log_path(&self) -> PathBuf {
        self.base.join("s3s-fs.log")
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// SIGKILLs the server; the port and the data stay reserved for [`TestS3::restart`].
    pub fn stop(&mut self) {
        self.child.kill();
    }

    /// Starts the server again on the same port and data directory (stops it first if running).
    pub async fn restart(&mut self) {
        self.child.kill();
        // The old socket may linger briefly; retry the bind for a few seconds.
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            let mut child = spawn(&self.base, self.port, &self.access_key, &self.secret_key);
            if wait_ready(&mut child, self.port).await {
                self.child = child;
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "s3s-fs did not restart on port {}; see {}",
                self.port,
                self.log_path().display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A bucket name that does not exist on this server.
    pub fn missing_bucket(&self) -> String {
        format!(
            "missing-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )
    }

    /// The object-store environment for a child process (contract names from .env.example).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("S3_ENDPOINT", self.endpoint.clone()),
            ("S3_BUCKET", self.bucket.clone()),
            ("S3_REGION", self.region.clone()),
            ("S3_ACCESS_KEY_ID", self.access_key.clone()),
            ("S3_SECRET_ACCESS_KEY", self.secret_key.clone()),
        ]
    }

    /// Path of an object's bytes on disk (for assertions that bypass the S3 API).
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.data_dir().join(bucket).join(key)
    }

    /// A client's settings for this server's bucket.
    pub fn config(&self) -> rvc_objects::S3Config {
        self.config_for(&self.bucket)
    }

    /// A client's settings for another `bucket` of this server (it may not exist).
    pub fn config_for(&self, bucket: &str) -> rvc_objects::S3Config {
        let mut c = rvc_objects::S3Config::new(
            &self.endpoint,
            &self.region,
            bucket,
            &self.access_key,
            &self.secret_key,
        );
        c.request_timeout = Duration::from_secs(10);
        c
    }

    /// The object-store settings a worker reads from its environment ([`Self::env`]), as a
    /// value.
    pub fn store_config(&self) -> rvc_objects::ObjectStoreConfig {
        let mut cfg = rvc_objects::ObjectStoreConfig::dir("unused");
        cfg.s3_endpoint = Some(self.endpoint.clone());
        cfg.s3_bucket = self.bucket.clone();
        cfg.s3_region = self.region.clone();
        cfg.s3_access_key_id = Some(self.access_key.clone().into());
        cfg.s3_secret_access_key = Some(self.secret_key.clone().into());
        cfg
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.child.kill();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn spawn(base: &Path, port: u16, access_key: &str, secret_key: &str) -> ChildGuard {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(base.join("s3s-fs.log"))
        .unwrap();
    let mut cmd = Command::new(s3s_fs_bin());
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", access_key, "--secret-key", secret_key])
        .arg(base.join("data"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    ChildGuard::spawn("s3s-fs", &mut cmd).unwrap()
}

/// True once the port accepts connections while the child is still alive (a child that lost
/// the port race exits).
async fn wait_ready(child: &mut ChildGuard, port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if !child.is_running() {
            return false;
        }
        if wait_for_port(addr, Duration::from_millis(100)).await {
            // Someone else might own the port: make sure our child is the one alive.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return child.is_running();
        }
    }
    child.kill();
    false
}
