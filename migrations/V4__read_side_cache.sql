-- Read side (rvc-catalog): a per-product revision and a coalescing cache-invalidation outbox.
--
-- `revision` changes on every committed change of a product row (new version, status move,
-- archive, price ...): the read cache stamps entries with it and refuses to overwrite a newer
-- revision or tombstone with an older one (see docs/decisions.md, "Read side cache").
ALTER TABLE products ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;

CREATE FUNCTION products_bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := OLD.revision + 1;
    RETURN NEW;
END
$$;

CREATE TRIGGER products_revision BEFORE UPDATE ON products
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION products_bump_revision();

-- One row per product whose cache entry must be invalidated, written by the trigger below in
-- the transaction that changes the product (so it exists exactly when the change does), and
-- coalesced per product: a burst of changes leaves one row carrying the newest revision.
-- rvc-catalog deletes a row (only up to the revision it applied) after Redis acknowledged
-- the tombstone, so a crash at any point leaves the row for the next pass.
CREATE TABLE cache_invalidations (
    product_id  UUID PRIMARY KEY,
    revision    BIGINT NOT NULL,
    enqueued_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX cache_invalidations_enqueued ON cache_invalidations (enqueued_at);

CREATE FUNCTION products_enqueue_cache_invalidation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pid UUID;
    rev BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        pid := OLD.id;
        rev := OLD.revision + 1;
    ELSE
        pid := NEW.id;
        rev := NEW.revision;
    END IF;
    INSERT INTO cache_invalidations (product_id, revision) VALUES (pid, rev)
    ON CONFLICT (product_id) DO UPDATE
        SET revision = GREATEST(cache_invalidations.revision, EXCLUDED.revision),
            enqueued_at = now();
    -- a wake-up only (delivered at commit, coalesced per transaction); polling is the net
    PERFORM pg_notify('rvc_cache_invalidate', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER products_cache_invalidation AFTER UPDATE OR DELETE ON products
    FOR EACH ROW
    EXECUTE FUNCTION products_enqueue_cache_invalidation();

-- The read API lists products by id (keyset pagination) filtered by category and status.
CREATE INDEX products_category_id ON products (category_id, id);
CREATE INDEX products_status_id ON products (status, id);
