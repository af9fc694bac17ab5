//! `cp .env.example .env` must give a configuration that the shell scripts (bash `source`, as
//! scripts/run-local.sh does) and every binary (dotenvy) read the same way, with no warning;
//! a `.env` that cannot be parsed must stop a binary with an error naming the line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use rvc_e2e::{binary, repo_root};

/// Every binary a user starts with a `.env` in its working directory.
const BINARIES: &[&str] = &[
    "rvc-ingest-api",
    "rvc-image-uploader",
    "rvc-vectorizer",
    "rvc-relay",
    "rvc-maintenance",
    "rvc-ml-service",
    "rvc-vector-index",
    "rvc-catalog",
    "rvcctl",
];

fn dir_with_env_example() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo_root().join(".env.example"), dir.path().join(".env")).unwrap();
    dir
}

/// The variables bash sees after `set -a; . ./.env` (the way run-local.sh loads it), minus
/// the ones the shell had before.
fn sourced_by_bash(dir: &Path) -> BTreeMap<String, String> {
    let out = Command::new("bash")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .args(["-c", "set -euo pipefail; set -a; . ./.env; set +a; env -0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash could not source .env.example: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = ["PATH", "PWD", "SHLVL", "_", "OLDPWD"];
    out.stdout
        .split(|b| *b == 0)
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            (!before.contains(&k)).then(|| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

#[test]
fn env_example_reads_the_same_in_bash_and_dotenvy() {
    let dir = dir_with_env_example();
    let bash = sourced_by_bash(dir.path());
    let dotenv: BTreeMap<String, String> = dotenvy::from_path_iter(dir.path().join(".env"))
        .unwrap()
        .collect::<Result<_, _>>()
        .expect("dotenvy parses .env.example");
    assert!(dotenv.len() > 20, "only {} variables parsed", dotenv.len());
    assert_eq!(bash, dotenv, "bash and dotenvy disagree on .env.example");
    assert_eq!(dotenv["GC_SCHEDULE"], "0 */15 * * * *");
}

#[test]
fn every_binary_reads_env_example_without_a_warning() {
    let dir = dir_with_env_example();
    for name in BINARIES {
        let out = Command::new(binary(name))
            .current_dir(dir.path())
            .arg("--help")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name} --help failed: {stderr}");
        assert!(
            stderr.contains("loaded environment from"),
            "{name} did not load .env: {stderr}"
        );
        assert!(
            !stderr.contains("warning") && !stderr.contains("error"),
            "{name} complained about .env.example: {stderr}"
        );
    }
}

#[test]
fn an_unparsable_env_is_an_error_naming_the_line_not_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "RUST_LOG=info\nS3_SECRET_ACCESS_KEY=hunter2\nGC_SCHEDULE=0 */15 * * * *\n",
    )
    .unwrap();
    for name in BINARIES {
        let out = Command::new(binary(name))
            .current_dir(dir.path())
            .arg("--help")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} accepted a broken .env");
        assert!(
            stderr.contains("line 3 (GC_SCHEDULE)"),
            "{name} did not name the line: {stderr}"
        );
        assert!(
            !stderr.contains("hunter2") && !stderr.contains("*/15"),
            "{name} printed a value: {stderr}"
        );
    }
}
