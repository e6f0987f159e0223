-- The log of binding changes: every write to bindings (a REGISTER's saves and deletes, the purge
-- of expired ones) adds one row per (aor, key) it touched, in the same transaction. Engines
-- sharing the database follow it to pick up each other's REGISTERs without re-reading every
-- binding; a row says only which key to look at again (the binding itself is read from
-- bindings). Rows older than a few minutes are pruned; binding_changes_pruned keeps the highest
-- seq pruned, so that a reader whose position is below it knows it missed changes.
CREATE TABLE binding_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    aor TEXT NOT NULL,
    key TEXT NOT NULL,
    changed_at REAL NOT NULL
);
CREATE INDEX binding_changes_time ON binding_changes (changed_at);
CREATE TABLE binding_changes_pruned (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO binding_changes_pruned (id, seq) VALUES (1, 0);
