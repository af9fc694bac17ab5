-- The writes of one `POST /api/v1/products` (a new SKU, two photos) as a pgbench script: the
-- raw Postgres cost that benches/ingest.rs puts beside rvc-ingest-api (issue 17, item 1).
-- Statement for statement what rvc_store::products::ingest and rvc_outbox::enqueue send:
-- the category lookup-or-create, the product row, two staged photo rows, the upload_images
-- outbox row and its NOTIFY, in one transaction. The photo bytes come from the table
-- `bench_photos`, which the bench fills with the very JPEGs it POSTs (pgbench cannot send
-- binary parameters), so Postgres stores the same ~200 KB values.
\set cat random(0, 99)
BEGIN;
WITH existing AS (SELECT id FROM categories WHERE name = 'Bench-' || :cat),
     created AS (INSERT INTO categories (name)
                 SELECT 'Bench-' || :cat WHERE NOT EXISTS (SELECT 1 FROM existing)
                 ON CONFLICT (name) DO NOTHING RETURNING id)
SELECT id AS category_id FROM existing UNION ALL SELECT id FROM created
\gset
INSERT INTO products (id, sku, name, category_id, price_minor, currency, content_hash)
VALUES (gen_random_uuid(), 'pgbench-' || gen_random_uuid(), 'Bench product', :category_id, 999,
        'EUR', md5(random()::text) || md5(random()::text))
ON CONFLICT (sku) DO NOTHING RETURNING id AS product_id
\gset
INSERT INTO product_images (product_id, version, ordinal, sha256, content_type, width, height,
                            size_bytes, staged_bytes)
SELECT ':product_id', 1, ordinal, sha256, 'image/jpeg', 372, 372, length(bytes), bytes
FROM bench_photos WHERE ordinal = 0;
INSERT INTO product_images (product_id, version, ordinal, sha256, content_type, width, height,
                            size_bytes, staged_bytes)
SELECT ':product_id', 1, ordinal, sha256, 'image/jpeg', 372, 372, length(bytes), bytes
FROM bench_photos WHERE ordinal = 1;
INSERT INTO outbox (event_id, product_id, product_version, kind, payload, traceparent, max_attempts)
VALUES (gen_random_uuid(), ':product_id', 1, 'upload_images', '{}', NULL, 10);
SELECT pg_notify('rvc_outbox', 'upload_images');
END;
