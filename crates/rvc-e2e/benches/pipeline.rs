//! registered → indexed latency for a burst of products through every real binary (the
//! binaries next to this bench's executable: build them with the same profile and target dir,
//! see scripts/bench.d/relay.sh). Per product, the time from the product row's creation to
//! the completion of each step's outbox row, so the ML (vectorize) step's share is visible.
//!
//! Usage: `cargo bench -p rvc-e2e --bench pipeline -- [PRODUCTS]` (default 500, 2 photos each).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use rvc_e2e::stack::Stack;
use rvc_e2e::{fixture_photos, vary};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let n: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(500);
    let mut stack = Stack::start(&[("OUTBOX_BATCH_SIZE", "32".to_owned())]).await;
    let fixtures = fixture_photos();
    let forms: Vec<(String, Vec<Vec<u8>>)> = (0..n)
        .map(|i| {
            let photos = (0..2)
                .map(|k| vary(&fixtures[(i + k) % fixtures.len()].1, (i * 2 + k) as u32))
                .collect();
            (format!("BENCH-{i:05}"), photos)
        })
        .collect();

    let start = Instant::now();
    let _: Vec<_> = futures::stream::iter(forms.iter())
        .map(|(sku, photos)| {
            let stack = &stack;
            async move { stack.post_product(sku, "1.99", photos).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let posted = start.elapsed();
    loop {
        stack.assert_all_running();
        let st = stack.statuses().await;
        let indexed = st
            .iter()
            .find(|(k, _)| k == "indexed")
            .map_or(0, |(_, c)| *c);
        assert!(!st.iter().any(|(k, _)| k == "failed"), "{st:?}");
        if indexed == n as i64 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1800), "{st:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let total = start.elapsed();

    let db = stack.db.pool.get().await.unwrap();
    let rows = db
        .query(
            "SELECT extract(epoch FROM u.completed_at - p.created_at)::float8,
                    extract(epoch FROM v.completed_at - u.completed_at)::float8,
                    extract(epoch FROM r.completed_at - v.completed_at)::float8,
                    extract(epoch FROM r.completed_at - p.created_at)::float8
             FROM products p
             JOIN outbox u ON u.product_id = p.id AND u.kind = 'upload_images'
             JOIN outbox v ON v.product_id = p.id AND v.kind = 'vectorize'
             JOIN outbox r ON r.product_id = p.id AND r.kind = 'publish'",
            &[],
        )
        .await
        .unwrap();
    let col = |i: usize| -> Vec<f64> { rows.iter().map(|r| r.get::<_, f64>(i)).collect() };
    let (mut up, mut ml, mut rel, mut all) = (col(0), col(1), col(2), col(3));
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    let share = sum(&ml) / sum(&all) * 100.0;
    println!(
        "{n} products x 2 photos POSTed in {:.1} s (8 concurrent); all indexed {:.1} s after the first POST = {:.1} products/s",
        posted.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
    println!("| stage | p50 | p99 |\n| --- | --- | --- |");
    for (name, v) in [
        ("registered → images_stored (upload)", &mut up),
        ("images_stored → vectorized (ML step)", &mut ml),
        ("vectorized → indexed (relay)", &mut rel),
        ("registered → indexed", &mut all),
    ] {
        println!("| {name} | {:.2} s | {:.2} s |", pct(v, 0.5), pct(v, 0.99));
    }
    println!("ML step's share of registered → indexed (sum over products): {share:.0} %");
}
