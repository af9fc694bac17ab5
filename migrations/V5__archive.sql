-- Product archive (issue 14): when the current archive began. `archived` (V1) says whether the
-- product is archived; `archived_at` dates it, so object GC keeps an archived product's photos
-- for ARCHIVE_RETENTION_SECS (an un-archive within it re-uses them) and collects them after.
-- NULL while not archived (and on rows archived by hand before this migration: their objects
-- are past any retention).
ALTER TABLE products ADD COLUMN archived_at TIMESTAMPTZ;
