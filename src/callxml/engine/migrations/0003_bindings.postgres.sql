-- The registrar's bindings (devices registered to our domains), kept across restarts and shared
-- by every engine on the database.
CREATE TABLE bindings (
    aor TEXT NOT NULL,
    key TEXT NOT NULL,
    contact TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    q DOUBLE PRECISION NOT NULL,
    call_id TEXT NOT NULL,
    cseq BIGINT NOT NULL,
    instance TEXT,
    reg_id INTEGER,
    transport TEXT NOT NULL,
    source_host TEXT NOT NULL,
    source_port INTEGER NOT NULL,
    registered_at DOUBLE PRECISION NOT NULL,
    user_agent TEXT NOT NULL,
    PRIMARY KEY (aor, key)
);
CREATE INDEX bindings_expiry ON bindings (expires_at);
