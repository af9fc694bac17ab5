//! `rvcctl outbox …` and `rvcctl product status` against a real Postgres (a fresh database per
//! test), through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{drain, dump, photo, product, row, rvcctl, state_of, status_of};
use futures::StreamExt;
use rvc_domain::OutboxKind;
use rvc_test_support::TestDb;
use std::time::Duration;
use tokio_postgres::AsyncMessage;

/// A LISTEN connection on the outbox channel; notifications arrive on the receiver for as
/// long as the returned client is kept.
async fn listen(
    url: &str,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (client, mut conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(async move {
        while let Some(Ok(m)) = messages.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", rvc_outbox::NOTIFY_CHANNEL))
        .await
        .unwrap();
    (client, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_dead_rows_go_pending_and_real_workers_take_products_to_indexed() {
    let db = TestDb::new().await;
    let c = db.client().await;
    // A: uploaded, vectorize died. B: upload died. C: healthy, indexed, untouched.
    let a = product(&c, "SKU-A", 1, "failed").await;
    row(&c, a, 1, OutboxKind::UploadImages, "done").await;
    let a_dead = row(&c, a, 1, OutboxKind::Vectorize, "dead").await;
    let b = product(&c, "SKU-B", 1, "failed").await;
    let b_dead = row(&c, b, 1, OutboxKind::UploadImages, "dead").await;
    let cc = product(&c, "SKU-C", 1, "indexed").await;
    row(&c, cc, 1, OutboxKind::Publish, "done").await;

    let (_listening, mut notes) = listen(&db.url).await;
    let out = rvcctl(
        &db.url,
        &[
            "outbox",
            "replay",
            "--dead",
            "--reason",
            "ML service fixed (INC-42)",
            "--actor",
            "alice",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("replayed 2 dead row(s)"), "{out:?}");

    for id in [a_dead, b_dead] {
        let r = c
            .query_one(
                "SELECT state, attempts, next_attempt_at <= now(), lease_owner IS NULL,
                        lease_token IS NULL, lease_expires_at IS NULL
                 FROM outbox WHERE event_id = $1",
                &[&id],
            )
            .await
            .unwrap();
        assert_eq!(r.get::<_, String>(0), "pending");
        assert_eq!(r.get::<_, i32>(1), 0);
        assert!(r.get::<_, bool>(2) && r.get::<_, bool>(3));
        assert!(r.get::<_, bool>(4) && r.get::<_, bool>(5));
    }
    // out of failed, back to the status before the replayed step
    assert_eq!(status_of(&c, a).await, "images_stored");
    assert_eq!(status_of(&c, b).await, "registered");
    assert_eq!(status_of(&c, cc).await, "indexed");

    // one audit row per replayed row, with who and why
    let audit = c
        .query(
            "SELECT event_id, action, actor, reason, details->>'attempts_before',
                    details->>'product_status_after'
             FROM outbox_audit ORDER BY event_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(audit.len(), 2);
    for r in &audit {
        assert_eq!(r.get::<_, String>(1), "replay");
        assert_eq!(r.get::<_, String>(2), "alice");
        assert_eq!(
            r.get::<_, Option<String>>(3).as_deref(),
            Some("ML service fixed (INC-42)")
        );
        assert_eq!(r.get::<_, Option<String>>(4).as_deref(), Some("10"));
    }

    // the workers of both kinds were woken
    let mut woken = Vec::new();
    while woken.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(5), notes.recv())
            .await
            .expect("NOTIFY after replay")
            .unwrap();
        woken.push(n);
    }
    woken.sort();
    assert_eq!(woken, ["upload_images", "vectorize"]);

    // real workers take them the rest of the way
    drain(&db.pool).await;
    assert_eq!(status_of(&c, a).await, "indexed");
    assert_eq!(status_of(&c, b).await, "indexed");
    assert_eq!(state_of(&c, a_dead).await.0, "done");
    assert_eq!(state_of(&c, b_dead).await.0, "done");
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state <> 'done'")
            .await,
        0
    );
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_changes_nothing() {
    let db = TestDb::new().await;
    let c = db.client().await;
    let a = product(&c, "SKU-A", 1, "failed").await;
    row(&c, a, 1, OutboxKind::UploadImages, "done").await;
    let dead = row(&c, a, 1, OutboxKind::Vectorize, "dead").await;
    let before = dump(&c).await;

    let out = rvcctl(&db.url, &["outbox", "replay", "--dead", "--dry-run"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("would replay 1 dead row(s)"), "{out:?}");
    assert!(out.stdout.contains(&dead.to_string()), "{out:?}");
    assert!(out.stdout.contains("dead -> pending"), "{out:?}");
    assert!(
        out.stdout.contains("would move failed -> images_stored"),
        "{out:?}"
    );
    assert!(out.stdout.contains("nothing changed"), "{out:?}");

    let out = rvcctl(
        &db.url,
        &[
            "outbox",
            "replay",
            &dead.to_string(),
            "--dry-run",
            "--reason",
            "check",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    assert_eq!(j["dry_run"], true);
    assert_eq!(j["actor"], "ci-user");
    assert_eq!(j["rows"][0]["event_id"], dead.to_string());
    assert_eq!(j["rows"][0]["state_before"], "dead");
    assert_eq!(j["rows"][0]["state_after"], "pending");
    assert_eq!(j["rows"][0]["attempts_before"], 10);
    assert_eq!(j["products"][0]["status_after"], "images_stored");
    assert_eq!(j["notified_kinds"][0], "vectorize");

    assert_eq!(dump(&c).await, before, "a dry run changed the database");
}

#[tokio::test]
async fn replaying_rows_that_are_not_dead_is_refused_and_changes_nothing() {
    let db = TestDb::new().await;
    let c = db.client().await;
    let a = product(&c, "SKU-A", 1, "registered").await;
    let pending = row(&c, a, 1, OutboxKind::UploadImages, "pending").await;
    let b = product(&c, "SKU-B", 1, "images_stored").await;
    let leased = row(&c, b, 1, OutboxKind::Vectorize, "leased").await;
    let done = row(&c, b, 1, OutboxKind::UploadImages, "done").await;
    let d = product(&c, "SKU-D", 1, "failed").await;
    let dead = row(&c, d, 1, OutboxKind::UploadImages, "dead").await;
    let before = dump(&c).await;

    let out = rvcctl(
        &db.url,
        &["outbox", "replay", &pending.to_string(), "--reason", "x"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("row {pending} is pending: it will run by itself")),
        "{out:?}"
    );
    assert!(out.stderr.contains("nothing to replay"), "{out:?}");

    let out = rvcctl(
        &db.url,
        &["outbox", "replay", &leased.to_string(), "--reason", "x"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("leased by worker-1") && out.stderr.contains("running it now"),
        "{out:?}"
    );

    // a mix of dead and done: all refused, the dead one included
    let out = rvcctl(
        &db.url,
        &[
            "outbox",
            "replay",
            &dead.to_string(),
            &done.to_string(),
            "--reason",
            "x",
        ],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("row {done} is done")),
        "{out:?}"
    );
    assert!(out.stderr.contains("nothing changed"), "{out:?}");

    // a product without dead rows
    let out = rvcctl(
        &db.url,
        &["outbox", "replay", "--sku", "SKU-A", "--reason", "x"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("has no dead rows"), "{out:?}");

    // cancel refuses the same way
    let out = rvcctl(
        &db.url,
        &["outbox", "cancel", &pending.to_string(), "--reason", "x"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("only dead rows can be cancelled"),
        "{out:?}"
    );

    assert_eq!(dump(&c).await, before);
}

#[tokio::test]
async fn replay_by_sku_touches_only_that_product() {
    let db = TestDb::new().await;
    let c = db.client().await;
    let a = product(&c, "SKU-A", 1, "failed").await;
    let a_dead = row(&c, a, 1, OutboxKind::Publish, "dead").await;
    let b = product(&c, "SKU-B", 1, "failed").await;
    let b_dead = row(&c, b, 1, OutboxKind::Publish, "dead").await;

    let out = rvcctl(
        &db.url,
        &[
            "outbox",
            "replay",
            "--sku",
            "SKU-A",
            "--reason",
            "broker back",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(state_of(&c, a_dead).await, ("pending".into(), 0));
    assert_eq!(status_of(&c, a).await, "vectorized");
    assert_eq!(state_of(&c, b_dead).await, ("dead".into(), 10));
    assert_eq!(status_of(&c, b).await, "failed");
    // default actor: $USER
    let actor: String = c
        .query_one("SELECT actor FROM outbox_audit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(actor, "ci-user");
}

#[tokio::test]
async fn above_the_threshold_without_a_terminal_replay_needs_yes() {
    let db = TestDb::new().await;
    let c = db.client().await;
    for i in 0..3 {
        let p = product(&c, &format!("SKU-{i}"), 1, "failed").await;
        row(&c, p, 1, OutboxKind::Vectorize, "dead").await;
    }
    let before = dump(&c).await;
    let out = rvcctl(
        &db.url,
        &[
            "outbox",
            "replay",
            "--dead",
            "--reason",
            "x",
            "--confirm-above",
            "2",
        ],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("no terminal") && out.stderr.contains("--yes"),
        "{out:?}"
    );
    assert_eq!(dump(&c).await, before);

    let out = rvcctl(
        &db.url,
        &[
            "outbox",
            "replay",
            "--dead",
            "--reason",
            "x",
            "--confirm-above",
            "2",
            "--yes",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["rows"].as_array().unwrap().len(), 3);
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'pending'")
            .await,
        3
    );
}

#[tokio::test]
async fn cancel_resolves_a_dead_row_without_running_it() {
    let db = TestDb::new().await;
    let c = db.client().await;
    let a = product(&c, "SKU-A", 1, "failed").await;
    let dead = row(&c, a, 1, OutboxKind::UploadImages, "dead").await;
    let out = rvcctl(
        &db.url,
        &[
            "outbox",
            "cancel",
            &dead.to_string(),
            "--reason",
            "product withdrawn",
            "--actor",
            "bob",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    assert_eq!(j["state_after"], "done");
    let r = c
        .query_one(
            "SELECT state, completed_at IS NOT NULL, last_error FROM outbox WHERE event_id = $1",
            &[&dead],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "done");
    assert!(r.get::<_, bool>(1));
    assert_eq!(
        r.get::<_, String>(2),
        "cancelled by bob: product withdrawn | boom: the ML service said 503"
    );
    let a_row = c
        .query_one("SELECT action, actor, reason FROM outbox_audit", &[])
        .await
        .unwrap();
    assert_eq!(a_row.get::<_, String>(0), "cancel");
    assert_eq!(a_row.get::<_, String>(1), "bob");
    assert_eq!(a_row.get::<_, String>(2), "product withdrawn");
    // the product is untouched (the step did not run) and a second cancel is refused
    assert_eq!(status_of(&c, a).await, "failed");
    let again = rvcctl(
        &db.url,
        &["outbox", "cancel", &dead.to_string(), "--reason", "again"],
    );
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("is done"), "{again:?}");
}

#[tokio::test]
async fn unknown_ids_are_usage_errors_that_say_what_to_do() {
    let db = TestDb::new().await;
    let c = db.client().await;
    let before = dump(&c).await;
    let ghost = uuid::Uuid::now_v7().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["outbox", "show", &ghost], "rvcctl outbox list"),
        (
            vec!["outbox", "replay", &ghost, "--reason", "x"],
            "rvcctl outbox list",
        ),
        (
            vec!["outbox", "cancel", &ghost, "--reason", "x"],
            "rvcctl outbox list",
        ),
        (vec!["product", "status", "NO-SUCH-SKU"], "case-sensitive"),
        (vec!["product", "status", &ghost], "no product with id"),
        (vec!["outbox", "list", "--sku", "NO-SUCH-SKU"], "no product"),
        (
            vec!["outbox", "replay", "--product", &ghost, "--reason", "x"],
            "--sku",
        ),
    ];
    for (args, hint) in cases {
        let out = rvcctl(&db.url, &args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(hint), "{args:?}: {out:?}");
    }
    assert_eq!(dump(&c).await, before);
}

#[tokio::test]
async fn bad_arguments_and_filters_are_usage_errors() {
    let db = TestDb::new().await;
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["outbox", "list", "--state", "nope"],
            "pending, leased, done, dead",
        ),
        (vec!["outbox", "list", "--kind", "nope"], "upload_images"),
        (vec!["outbox", "list", "--since", "yesterday"], "RFC 3339"),
        (vec!["outbox", "list", "--limit", "0"], "--limit"),
        (vec!["outbox", "list", "--product", "SKU-1"], "--sku SKU-1"),
        (vec!["outbox", "show", "not-a-uuid"], "outbox list"),
        (vec!["outbox", "replay", "--dead"], "--reason"),
        (vec!["outbox", "replay", "--reason", "x"], "--dead"),
        (
            vec!["outbox", "replay", "--dead", "--sku", "A", "--reason", "x"],
            "cannot be used with",
        ),
        (vec!["outbox", "cancel", "--reason", "x"], "EVENT_ID"),
        (
            vec!["outbox", "stats", "--output", "yaml"],
            "possible values",
        ),
    ];
    for (args, hint) in cases {
        let out = rvcctl(&db.url, &args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(hint), "{args:?}: {out:?}");
    }
}

#[tokio::test]
async fn inspection_commands_print_tables_and_documented_json() {
    let db = TestDb::new().await;
    let c = db.client().await;
    let a = product(&c, "SKU-A", 1, "failed").await;
    photo(&c, a, 1, 0, Some("products/a/0.jpg"), None).await;
    let up = row(&c, a, 1, OutboxKind::UploadImages, "done").await;
    let dead = row(&c, a, 1, OutboxKind::Vectorize, "dead").await;
    let b = product(&c, "SKU-B", 1, "registered").await;
    photo(&c, b, 1, 0, None, None).await;
    row(&c, b, 1, OutboxKind::UploadImages, "pending").await;

    // stats
    let out = rvcctl(&db.url, &["outbox", "stats"]);
    assert_eq!(out.code, 0, "{out:?}");
    let header = out.stdout.lines().next().unwrap();
    assert!(header.starts_with("KIND") && header.contains("OLDEST CLAIMABLE"));
    assert!(out.stdout.contains("1 dead row(s)"), "{out:?}");
    let j = rvcctl(&db.url, &["outbox", "stats", "-o", "json"]).json();
    assert_eq!(j["dead_total"], 1);
    let kinds = j["kinds"].as_array().unwrap();
    // the three pipeline steps, then a model migration's `embed`
    assert_eq!(kinds.len(), 4);
    assert_eq!(kinds[0]["kind"], "upload_images");
    assert_eq!(kinds[3]["kind"], "embed");
    assert_eq!(kinds[0]["pending"], 1);
    assert_eq!(kinds[0]["done"], 1);
    assert!(kinds[0]["oldest_claimable_age_secs"].as_f64().unwrap() >= 59.0);
    assert_eq!(kinds[1]["dead"], 1);
    assert!(kinds[1]["oldest_claimable_age_secs"].is_null());
    for key in ["leased", "done", "dead", "pending"] {
        assert!(kinds[2][key].is_i64(), "{key}");
    }

    // list: table aligned, filters, json
    let out = rvcctl(&db.url, &["outbox", "list", "--state", "dead"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("EVENT_ID"), "{out:?}");
    assert!(lines[1].starts_with(&dead.to_string()), "{out:?}");
    assert_eq!(
        lines[0].find("KIND"),
        lines[1].find("vectorize"),
        "columns aligned: {out:?}"
    );
    assert!(!out.stdout.contains(&up.to_string()));
    let j = rvcctl(
        &db.url,
        &[
            "outbox", "list", "--sku", "SKU-A", "--since", "1h", "-o", "json",
        ],
    )
    .json();
    assert_eq!(j["total_matching"], 2);
    assert_eq!(j["limit"], 50);
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for key in [
        "event_id",
        "product_id",
        "sku",
        "product_version",
        "kind",
        "state",
        "attempts",
        "max_attempts",
        "next_attempt_at",
        "lease_owner",
        "lease_expires_at",
        "last_error",
        "traceparent",
        "payload",
        "created_at",
        "updated_at",
        "completed_at",
    ] {
        assert!(rows[0].get(key).is_some(), "list row lacks {key}");
    }
    let j = rvcctl(&db.url, &["outbox", "list", "--limit", "1", "-o", "json"]).json();
    assert_eq!(j["rows"].as_array().unwrap().len(), 1);
    assert_eq!(j["total_matching"], 3);
    let since_future = rvcctl(
        &db.url,
        &[
            "outbox",
            "list",
            "--since",
            "2999-01-01T00:00:00Z",
            "-o",
            "json",
        ],
    )
    .json();
    assert_eq!(since_future["total_matching"], 0);

    // show
    let out = rvcctl(&db.url, &["outbox", "show", &dead.to_string()]);
    assert_eq!(out.code, 0, "{out:?}");
    for needle in [
        "attempts     10 of 10",
        "boom: the ML service said 503",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "timeline of product SKU-A",
        &up.to_string(),
        "outbox replay",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {out:?}");
    }
    let j = rvcctl(
        &db.url,
        &["outbox", "show", &dead.to_string(), "-o", "json"],
    )
    .json();
    assert_eq!(j["row"]["state"], "dead");
    assert_eq!(j["row"]["attempts"], 10);
    assert_eq!(j["row"]["last_error"], "boom: the ML service said 503");
    assert!(j["row"]["traceparent"].as_str().unwrap().starts_with("00-"));
    assert_eq!(j["product"]["sku"], "SKU-A");
    assert_eq!(j["product"]["status"], "failed");
    assert_eq!(j["timeline"].as_array().unwrap().len(), 2);
    assert_eq!(j["timeline"][0]["kind"], "upload_images");
    assert!(j["audit"].as_array().unwrap().is_empty());

    // product status
    let out = rvcctl(&db.url, &["product", "status", "SKU-A"]);
    assert_eq!(out.code, 0, "{out:?}");
    for needle in ["status    failed", "products/a/0.jpg", "vectorize", "dead"] {
        assert!(out.stdout.contains(needle), "{needle}: {out:?}");
    }
    let j = rvcctl(
        &db.url,
        &["product", "status", &a.to_string(), "-o", "json"],
    )
    .json();
    assert_eq!(j["sku"], "SKU-A");
    assert_eq!(j["status"], "failed");
    assert_eq!(j["version"], 1);
    assert_eq!(j["photos"][0]["object_key"], "products/a/0.jpg");
    assert!(j["photos"][0]["point_id"].is_null());
    assert_eq!(j["photos"][0]["staged"], false);
    assert_eq!(j["timeline"][1]["state"], "dead");
}

#[test]
fn every_command_has_help_with_examples() {
    for args in [
        vec!["--help"],
        vec!["migrate", "--help"],
        vec!["outbox", "stats", "--help"],
        vec!["outbox", "list", "--help"],
        vec!["outbox", "show", "--help"],
        vec!["outbox", "replay", "--help"],
        vec!["outbox", "cancel", "--help"],
        vec!["product", "status", "--help"],
        vec!["reconcile", "--help"],
    ] {
        let out = rvcctl("postgres://x@127.0.0.1:1/x", &args);
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        assert!(out.stdout.contains("Examples:"), "{args:?}: {out:?}");
    }
}
