-- Engines sharing one database (docs/deploy.md): each heartbeats its row; a row whose lease
-- ran out is a dead engine whose unfinished calls a live one may finalise.
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY,
    api_url TEXT NOT NULL,
    instance TEXT NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    lease_until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_node_status ON calls (node, status);
