-- Calls, their events, recordings and the ZRTP cache. IF NOT EXISTS: a database made before
-- versioned migrations already has these tables and is adopted as version 1 unchanged.
CREATE TABLE IF NOT EXISTS calls (
    sid TEXT PRIMARY KEY,
    account_sid TEXT NOT NULL,
    direction TEXT NOT NULL,
    from_ TEXT NOT NULL,
    "to" TEXT NOT NULL,
    status TEXT NOT NULL,
    parent_call_sid TEXT,
    date_created REAL NOT NULL,
    date_updated REAL NOT NULL,
    start_time REAL,
    end_time REAL,
    duration INTEGER,
    sip_response_code INTEGER,
    sip_call_id TEXT,
    answered_by TEXT,
    caller_name TEXT,
    error TEXT,
    node TEXT
);
CREATE INDEX IF NOT EXISTS calls_account ON calls (account_sid, date_created);
CREATE INDEX IF NOT EXISTS calls_parent ON calls (parent_call_sid);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_sid TEXT NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_call ON events (call_sid, seq);
CREATE TABLE IF NOT EXISTS recordings (
    sid TEXT PRIMARY KEY,
    call_sid TEXT NOT NULL,
    account_sid TEXT NOT NULL,
    path TEXT NOT NULL,
    duration INTEGER NOT NULL,
    date_created REAL NOT NULL,
    status TEXT NOT NULL,
    channels INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_call ON recordings (call_sid);
CREATE TABLE IF NOT EXISTS zrtp_identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    zid BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS zrtp_peers (
    peer_zid BLOB PRIMARY KEY,
    rs1 BLOB,
    rs2 BLOB,
    verified INTEGER NOT NULL,
    date_updated REAL NOT NULL
);
