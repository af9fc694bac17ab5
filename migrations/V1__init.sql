-- Retail Vision Catalog: initial schema.
-- Postgres is the single source of truth; every external side effect (S3, vector index,
-- Kafka) is driven from the outbox table below and keyed deterministically.

CREATE TABLE categories (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE products (
    id           UUID PRIMARY KEY,
    sku          TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    category_id  BIGINT NOT NULL REFERENCES categories (id),
    price_minor  BIGINT NOT NULL CHECK (price_minor > 0),
    currency     CHAR(3) NOT NULL,
    version      INTEGER NOT NULL DEFAULT 1 CHECK (version > 0),
    -- sha256 over the canonical fields and the ordered photo hashes: tells a re-POST
    -- that changes nothing from one that needs a new version.
    content_hash TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'registered'
                 CHECK (status IN ('registered', 'images_stored', 'vectorized', 'indexed', 'failed')),
    archived     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE product_images (
    product_id    UUID NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    ordinal       SMALLINT NOT NULL CHECK (ordinal >= 0),
    sha256        TEXT NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    content_type  TEXT NOT NULL,
    width         INTEGER NOT NULL CHECK (width > 0),
    height        INTEGER NOT NULL CHECK (height > 0),
    size_bytes    INTEGER NOT NULL CHECK (size_bytes > 0),
    -- the photo bytes live here until the uploader has put them in object storage
    staged_bytes  BYTEA,
    object_key    TEXT,
    point_id      UUID,
    model_version TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, version, ordinal),
    CHECK (staged_bytes IS NOT NULL OR object_key IS NOT NULL)
);
CREATE INDEX product_images_object_key ON product_images (object_key) WHERE object_key IS NOT NULL;

CREATE TABLE outbox (
    event_id         UUID PRIMARY KEY,
    product_id       UUID NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    product_version  INTEGER NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('upload_images', 'vectorize', 'publish')),
    payload          JSONB NOT NULL DEFAULT '{}'::jsonb,
    state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'leased', 'done', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 10 CHECK (max_attempts > 0),
    -- when the row may be claimed: for 'pending' the retry time, for 'leased' the lease expiry,
    -- so one condition (next_attempt_at <= now()) finds both new work and abandoned leases.
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_owner      TEXT,
    lease_token      UUID,
    lease_expires_at TIMESTAMPTZ,
    last_error       TEXT,
    traceparent      TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at     TIMESTAMPTZ,
    CHECK ((state = 'leased') = (lease_token IS NOT NULL))
);
-- Only claimable rows are indexed: the index stays small however many done rows wait for pruning.
CREATE INDEX outbox_claimable ON outbox (kind, next_attempt_at) WHERE state IN ('pending', 'leased');
CREATE INDEX outbox_product ON outbox (product_id, product_version);
CREATE INDEX outbox_dead ON outbox (kind, updated_at) WHERE state = 'dead';
CREATE INDEX outbox_done ON outbox (completed_at) WHERE state = 'done';
-- The outbox churns: vacuum it far more eagerly than the default 20 % of the table.
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
                        autovacuum_analyze_scale_factor = 0.02, fillfactor = 80);

CREATE TABLE idempotency_keys (
    idempotency_key  TEXT PRIMARY KEY,
    request_hash     TEXT NOT NULL,
    response_status  SMALLINT NOT NULL,
    response_headers JSONB NOT NULL DEFAULT '[]'::jsonb,
    response_body    BYTEA NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Who did what to an outbox row by hand (rvcctl replay / cancel).
CREATE TABLE outbox_audit (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    UUID NOT NULL,
    action      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT,
    details     JSONB NOT NULL DEFAULT '{}'::jsonb,
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX outbox_audit_event ON outbox_audit (event_id);
