#![allow(clippy::unwrap_used, clippy::expect_used)]
use rvc_test_support::TestDb;
use std::process::Command;

fn rvcctl(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rvcctl"))
        .env("DATABASE_URL", url)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn migrate_applies_then_reports_up_to_date() {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .await
        .unwrap();
    let out = rvcctl(&db.url, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied migrations"));
    assert_eq!(db.count("SELECT count(*) FROM outbox").await, 0);
    let again = rvcctl(&db.url, &["migrate"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));
}

#[test]
fn unreachable_database_is_exit_1_with_a_hint() {
    let out = rvcctl("postgres://postgres@127.0.0.1:1/none", &["migrate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn unknown_subcommand_is_usage_exit_2() {
    let out = rvcctl("postgres://x@127.0.0.1:1/x", &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}
