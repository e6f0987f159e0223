-- Engines sharing one database (docs/deploy.md): each heartbeats its row; a row whose lease
-- ran out is a dead engine whose unfinished calls a live one may finalise.
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    api_url TEXT NOT NULL,
    instance TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    lease_until DOUBLE PRECISION NOT NULL
);
CREATE INDEX calls_node_status ON calls (node, status);
