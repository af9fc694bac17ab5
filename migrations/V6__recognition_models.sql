-- Recognition models (issue 14): which model recognition answers from, and the switch to a new
-- one with no downtime. Each model has its own vector collection; `rvcctl model migrate` adds
-- a `building` model and one `embed` outbox row per product; the vectorizers write the points
-- of every live model (active and building); when no `embed` row of the building model is left
-- to run, it becomes `active` and the previous one `retired` in one transaction; a retired
-- model's collection is dropped after a grace period (`dropped_at`).
CREATE TABLE recognition_models (
    model_version  TEXT PRIMARY KEY,
    collection     TEXT NOT NULL UNIQUE,
    -- gRPC URL of an rvc-ml-service that serves this model (vectorizers and rvc-catalog call it)
    ml_service_url TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('building', 'active', 'retired')),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    activated_at   TIMESTAMPTZ,
    retired_at     TIMESTAMPTZ,
    dropped_at     TIMESTAMPTZ
);
CREATE UNIQUE INDEX recognition_models_one_active ON recognition_models ((TRUE)) WHERE state = 'active';
CREATE UNIQUE INDEX recognition_models_one_building ON recognition_models ((TRUE)) WHERE state = 'building';

-- The points a building model has for a photo (written by the `embed` step and by `vectorize`
-- while the model builds). At activation they become the photos' `point_id`/`model_version`
-- and the rows are deleted.
CREATE TABLE model_points (
    model_version TEXT NOT NULL REFERENCES recognition_models (model_version) ON DELETE CASCADE,
    product_id    UUID NOT NULL,
    version       INTEGER NOT NULL,
    ordinal       SMALLINT NOT NULL,
    point_id      UUID NOT NULL,
    PRIMARY KEY (model_version, product_id, version, ordinal),
    FOREIGN KEY (product_id, version, ordinal)
        REFERENCES product_images (product_id, version, ordinal) ON DELETE CASCADE
);

ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('upload_images', 'vectorize', 'publish', 'embed'));
-- Progress of a migration counts its embed rows by state.
CREATE INDEX outbox_embed_model ON outbox ((payload ->> 'model_version'), state) WHERE kind = 'embed';
