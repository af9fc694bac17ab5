//! Where tests find what the repository's setup put in place: the model file, sibling
//! binaries and the local Redis. Each fails (never skips) with the command that fixes it.
use std::path::{Path, PathBuf};

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The ML model `scripts/setup-model.sh` writes (`ML_TEST_MODEL_PATH` overrides it); the
/// same file as `rvc_ml_service::DEFAULT_MODEL_PATH` under the repository root.
pub fn model_path() -> PathBuf {
    let path = std::env::var_os("ML_TEST_MODEL_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("var/models/efficientnet-lite0.onnx"));
    assert!(
        path.is_file(),
        "the ML model is missing at {}: run scripts/setup-model.sh first",
        path.display()
    );
    path
}

/// The `rvc-vector-index` binary in the directory of `beside` (a test's own
/// `env!("CARGO_BIN_EXE_…")`), or `VECTOR_INDEX_BIN`.
pub fn vector_index_bin(beside: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("VECTOR_INDEX_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let p = beside
        .parent()
        .map(|dir| dir.join("rvc-vector-index"))
        .unwrap_or_default();
    assert!(
        p.is_file(),
        "{} is missing: build it first (cargo build -p rvc-vector-server)",
        p.display()
    );
    p
}

/// The Redis the tests use: `TEST_REDIS_URL`, else `REDIS_URL`, else the local default.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .or_else(|_| std::env::var("REDIS_URL"))
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}
