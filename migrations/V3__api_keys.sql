-- API keys (issue #15). A key is `rvc_<id>_<secret>`: `id` is public (it appears in logs,
-- `rvcctl apikey list` and the audit of who wrote what); only the SHA-256 of the whole key is
-- stored. The secret is 40 random alphanumerics (~238 bits), so a fast hash is enough: there is
-- nothing to brute-force that a slow password hash would protect.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY CHECK (id ~ '^[a-z0-9]{12}$'),
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    key_sha256    BYTEA NOT NULL CHECK (length(key_sha256) = 32),
    scopes        TEXT[] NOT NULL
                  CHECK (cardinality(scopes) > 0
                         AND scopes <@ ARRAY['catalog:write', 'catalog:read', 'recognize', 'admin']::TEXT[]),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- updated at most once a minute per key (the API skips the write in between)
    last_used_at  TIMESTAMPTZ,
    expires_at    TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);
CREATE INDEX api_keys_name ON api_keys (name);
