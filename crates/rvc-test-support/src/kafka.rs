//! A real Kafka-protocol broker for tests: `tansu` (crates.io) on a free loopback port.
//!
//! Storage is `memory://` (tansu built with `--features dynostore`): fast and isolated, but a
//! [`TestKafka::restart`] comes back EMPTY (topics and records are gone). This tansu build has
//! no file-backed engine (its `s3://` engine needs an S3 server with conditional puts, and
//! `postgres://` / `sqlite://` need other cargo features), so outage tests must re-create
//! their topic after a restart (`rvc_kafka::KafkaOptions::auto_create_topic` does that).
//!
//! The binary comes from `TANSU_BIN`, else `~/.cargo/bin/tansu`, else `PATH`;
//! `scripts/setup-kafka.sh` installs it.
use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{net::free_port, process::ChildGuard};

/// How long a fresh tansu gets to answer a metadata request.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A tansu broker process, killed on drop.
pub struct TestKafka {
    port: u16,
    cluster_id: String,
    log_path: PathBuf,
    child: Option<ChildGuard>,
}

impl TestKafka {
    /// Starts tansu on a free loopback port with in-memory storage and waits until an rskafka
    /// client gets cluster metadata from it.
    pub async fn start() -> Self {
        crate::init_tracing();
        let port = free_port();
        let cluster_id = format!("rvc-test-{}", uuid::Uuid::new_v4().simple());
        let log_path = std::env::temp_dir().join(format!(
            "rvc-tansu-{}-{port}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let mut me = Self {
            port,
            cluster_id,
            log_path,
            child: None,
        };
        me.spawn_and_wait().await;
        me
    }

    /// `127.0.0.1:PORT`, the bootstrap address (what `KAFKA_BROKERS` should hold).
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The bootstrap address as a one-element broker list.
    pub fn brokers(&self) -> Vec<String> {
        vec![self.bootstrap()]
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where tansu's stdout/stderr go (removed on drop).
    pub fn log_path(&self) -> &std::path::Path {
        &self.log_path
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// Kills the broker (SIGKILL, like a crash). Clients see connection errors until
    /// [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    /// Starts the broker again on the same port. With memory storage the new broker is EMPTY:
    /// topics and records from before the stop are lost.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait().await;
    }

    async fn spawn_and_wait(&mut self) {
        let bin = tansu_bin();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("create tansu log file");
        let log_err = log.try_clone().expect("clone tansu log file handle");
        let mut cmd = Command::new(&bin);
        cmd.arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .args(["--cluster-id", &self.cluster_id])
            // tansu reads these from the environment too: keep the test's own settings out.
            .env_remove("CLUSTER_ID")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env(
                "RUST_LOG",
                std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let mut child = ChildGuard::spawn("tansu", &mut cmd).unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}; run scripts/setup-kafka.sh",
                bin.display()
            )
        });

        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !child.is_running() {
                panic!(
                    "tansu exited during startup on port {}; log:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            if crate::net::wait_for_port(addr, Duration::from_millis(200)).await
                && metadata_ok(&self.bootstrap()).await
            {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "tansu on port {} did not answer metadata within {START_TIMEOUT:?}; log:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::debug!(port = self.port, pid = ?child.pid(), "tansu ready");
        self.child = Some(child);
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for TestKafka {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// True when an rskafka client can fetch cluster metadata (and list topics) from `bootstrap`.
async fn metadata_ok(bootstrap: &str) -> bool {
    let builder = rskafka::client::ClientBuilder::new(vec![bootstrap.to_owned()]).backoff_config(
        rskafka::BackoffConfig {
            init_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            base: 2.0,
            deadline: Some(Duration::from_millis(500)),
        },
    );
    let probe = async {
        let client = builder.build().await.ok()?;
        client.list_topics().await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Some(_))
    )
}

/// The tansu binary: `TANSU_BIN`, else `~/.cargo/bin/tansu`, else `tansu` on `PATH`.
/// Panics with the install hint if none exists.
pub fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "TANSU_BIN={} does not exist; run scripts/setup-kafka.sh",
            p.display()
        );
        return p;
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(p) = cargo_home.map(|h| h.join("bin").join("tansu")) {
        if p.is_file() {
            return p;
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("tansu");
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("tansu (Kafka-protocol broker) not found; run scripts/setup-kafka.sh");
}
