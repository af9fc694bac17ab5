//! Helpers of the end-to-end tests: locate the workspace's binaries (and refuse stale ones),
//! run them as child processes with their logs in a temp dir, wait for their ports, and make
//! product photos from the real fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use rvc_test_support::process::ChildGuard;

/// The workspace root (`crates/rvc-e2e/../..`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The directory holding the workspace's binaries: `RVC_BIN_DIR` when set (needed when cargo's
/// `build-dir` is not the target dir), else one level above the test executable, which lives
/// in `target/<profile>/deps/`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RVC_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("exe dir");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("profile dir").to_path_buf()
    } else {
        deps.to_path_buf()
    };
    // With a cargo build-dir outside the workspace (CARGO_BUILD_BUILD_DIR), test executables
    // are built there while the binaries still land in the workspace's own target dir.
    let root = repo_root();
    if std::env::var_os("CARGO_TARGET_DIR").is_none() && !dir.starts_with(&root) {
        if let Some(profile) = dir.file_name() {
            return root.join("target").join(profile);
        }
    }
    dir
}

const BUILD_HINT: &str =
    "run `cargo build --workspace --bins` (make test does) before the e2e tests";

/// The path of workspace binary `name`; panics when it is missing or older than any source
/// file cargo's dep-info (`<name>.d`) lists for it.
pub fn binary(name: &str) -> PathBuf {
    let dir = bin_dir();
    let bin = dir.join(name);
    assert!(bin.is_file(), "{} is missing: {BUILD_HINT}", bin.display());
    let built = mtime(&bin).expect("binary mtime");
    let depinfo = dir.join(format!("{name}.d"));
    if let Ok(text) = std::fs::read_to_string(&depinfo) {
        if let Some(stale) = stale_source(&text, built) {
            panic!(
                "{} is older than {}: {BUILD_HINT}",
                bin.display(),
                stale.display()
            );
        }
    }
    bin
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The first file of a dep-info text that is newer than `built` (paths with `\ ` escapes).
fn stale_source(depinfo: &str, built: SystemTime) -> Option<PathBuf> {
    let line = depinfo.lines().next()?;
    let (_, deps) = line.split_once(": ")?;
    let mut files = Vec::new();
    let mut cur = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                cur.push(' ');
                chars.next();
            }
            ' ' => {
                if !cur.is_empty() {
                    files.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        files.push(cur);
    }
    files
        .into_iter()
        .map(PathBuf::from)
        .find(|f| mtime(f).is_some_and(|m| m > built))
}

/// A running binary, its output in `<log_dir>/<name>.log`.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    pub child: ChildGuard,
}

impl Proc {
    /// Starts workspace binary `bin` with `env` (RUST_LOG defaults to warn).
    pub fn start(bin: &str, log_dir: &Path, env: &[(&str, String)]) -> Self {
        let path = binary(bin);
        let log = log_dir.join(format!("{bin}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(&path);
        cmd.current_dir(log_dir)
            .env("RUST_LOG", "warn")
            .env("LOG_FORMAT", "pretty")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = ChildGuard::spawn(bin, &mut cmd)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        Self {
            name: bin.to_owned(),
            log,
            child,
        }
    }

    /// The last lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = s.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Panics with the log when the process is not running.
    pub fn assert_running(&mut self) {
        if !self.child.is_running() {
            panic!("{} exited; log:\n{}", self.name, self.log_tail(40));
        }
    }

    /// Waits until `addr` accepts connections (panics with the log after `timeout`).
    pub async fn wait_port(&mut self, addr: SocketAddr, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.assert_running();
            if rvc_test_support::net::wait_for_port(addr, Duration::from_millis(200)).await {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{} did not listen on {addr} within {timeout:?}; log:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
        }
    }
}

/// The real photos of `crates/rvc-ml-service/tests/fixtures/`.
pub fn fixture_photos() -> Vec<(String, Vec<u8>)> {
    let dir = repo_root().join("crates/rvc-ml-service/tests/fixtures");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A small variation of a real photo: cropped by a few pixels (depending on `seed`) and
/// re-encoded as JPEG, so every product gets photos with their own bytes and sha256.
pub fn vary(photo: &[u8], seed: u32) -> Vec<u8> {
    let img = image::load_from_memory(photo).expect("fixture decodes");
    let (w, h) = (img.width(), img.height());
    let dx = seed % 7;
    let dy = (seed / 7) % 7;
    let cropped = img.crop_imm(dx, dy, w - 8, h - 8).to_rgb8();
    let mut out = std::io::Cursor::new(Vec::new());
    cropped
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode jpeg");
    out.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_paths_with_escaped_spaces_are_read() {
        let dir = tempfile_dir();
        let a = dir.join("a b.rs");
        std::fs::write(&a, "x").unwrap();
        let text = format!(
            "/x/bin: {} /nonexistent.rs\n",
            a.display().to_string().replace(' ', "\\ ")
        );
        let past = SystemTime::UNIX_EPOCH;
        assert_eq!(stale_source(&text, past), Some(a.clone()));
        let future = SystemTime::now() + Duration::from_secs(3600);
        assert_eq!(stale_source(&text, future), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("rvc-e2e-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

pub mod stack;

/// `POST {base}/api/v1/recognize` of `photo` (a JPEG) to rvc-catalog: the JSON answer, or the
/// status and body (or the transport error) of a failure.
pub async fn recognize(
    http: &reqwest::Client,
    base: &str,
    photo: &[u8],
) -> Result<serde_json::Value, String> {
    let part = reqwest::multipart::Part::bytes(photo.to_vec())
        .file_name("photo.jpg")
        .mime_str("image/jpeg")
        .map_err(|e| e.to_string())?;
    let resp = http
        .post(format!("{base}/api/v1/recognize"))
        .multipart(reqwest::multipart::Form::new().part("image", part))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {body}"));
    }
    Ok(body)
}
