//! `rvcctl apikey …` through the real binary against a fresh database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::rvcctl;
use rvc_test_support::TestDb;
use std::io::Write;
use std::process::{Command, Stdio};

fn verify(url: &str, key: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rvcctl"))
        .env("DATABASE_URL", url)
        .env_remove("RUST_LOG")
        .args(["apikey", "verify"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn create_shows_the_key_once_list_never_and_revoke_disables_it() {
    let db = TestDb::new().await;
    let out = rvcctl(
        &db.url,
        &[
            "apikey",
            "create",
            "--name",
            "backoffice",
            "--scope",
            "catalog:write",
            "--scope",
            "catalog:read",
            "--expires",
            "30d",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let created = out.json();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "backoffice");
    assert_eq!(key, format!("rvc_{id}_{}", &key[17..]));
    assert_eq!(
        created["scopes"],
        serde_json::json!(["catalog:read", "catalog:write"])
    );
    assert!(created["expires_at"].is_string());
    // Only the hash is stored.
    let stored: Vec<u8> = db
        .client()
        .await
        .query_one("SELECT key_sha256 FROM api_keys WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, rvc_auth::key::hash(&key).to_vec());

    let list = rvcctl(&db.url, &["apikey", "list", "--output", "json"]);
    assert_eq!(list.code, 0, "{list:?}");
    assert!(!list.stdout.contains(&key[17..]), "list shows the secret");
    assert_eq!(list.json()[0]["state"], "active");
    let table = rvcctl(&db.url, &["apikey", "list"]);
    assert!(
        table.stdout.contains(&id) && table.stdout.contains("catalog:read,catalog:write"),
        "{table:?}"
    );

    assert_eq!(verify(&db.url, &key).0, 0);
    let revoke = rvcctl(&db.url, &["apikey", "revoke", &id]);
    assert_eq!(revoke.code, 0, "{revoke:?}");
    assert!(revoke.stdout.contains("revoked"), "{revoke:?}");
    let (code, text) = verify(&db.url, &key);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("revoked"), "{text}");
    assert_eq!(
        rvcctl(&db.url, &["apikey", "list", "-o", "json"]).json(),
        serde_json::json!([])
    );
    assert_eq!(
        rvcctl(&db.url, &["apikey", "list", "--all", "-o", "json"]).json()[0]["state"],
        "revoked"
    );
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let db = TestDb::new().await;
    for args in [
        vec!["apikey", "create", "--name", "x"],
        vec!["apikey", "create", "--name", "x", "--scope", "everything"],
        vec![
            "apikey",
            "create",
            "--name",
            "x",
            "--scope",
            "admin",
            "--expires",
            "soon",
        ],
        vec!["apikey", "revoke", "nosuchkey000"],
    ] {
        let out = rvcctl(&db.url, &args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
    }
    assert_eq!(db.count("SELECT count(*) FROM api_keys").await, 0);
    let (code, _) = verify(&db.url, "rvc_not_a_key");
    assert_eq!(code, 1);
}
