-- The registrar's bindings (devices registered to our domains), kept across restarts and shared
-- by every engine on the database. IF NOT EXISTS: databases made before versioned migrations
-- by a callxml with the registrar already have the table.
CREATE TABLE IF NOT EXISTS bindings (
    aor TEXT NOT NULL,
    key TEXT NOT NULL,
    contact TEXT NOT NULL,
    expires_at REAL NOT NULL,
    q REAL NOT NULL,
    call_id TEXT NOT NULL,
    cseq INTEGER NOT NULL,
    instance TEXT,
    reg_id INTEGER,
    transport TEXT NOT NULL,
    source_host TEXT NOT NULL,
    source_port INTEGER NOT NULL,
    registered_at REAL NOT NULL,
    user_agent TEXT NOT NULL,
    PRIMARY KEY (aor, key)
);
CREATE INDEX IF NOT EXISTS bindings_expiry ON bindings (expires_at);
