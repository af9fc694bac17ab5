-- Staged photos are JPEG, PNG or WebP: already compressed. With the default storage
-- (EXTENDED), Postgres runs pglz over every ~200 KB photo before giving up, because the first
-- kilobyte of a JPEG (its headers and tables) does compress; measured with the ingest's own
-- writes (crates/rvc-ingest-api/benches/same-writes.sql, 8 clients, two 197 KB JPEGs):
-- 180-211 transactions/s with EXTENDED, 456-510 with EXTERNAL (issue 17, item 1;
-- docs/benchmarks.md). EXTERNAL still moves the bytes out of line into TOAST, uncompressed.
-- Rows already stored keep their form; new rows are stored this way.
ALTER TABLE product_images ALTER COLUMN staged_bytes SET STORAGE EXTERNAL;
