-- Calls, their events, recordings and the ZRTP cache. Times are Unix seconds in DOUBLE
-- PRECISION (PostgreSQL's REAL is 4 bytes: it would round a timestamp to minutes).
CREATE TABLE calls (
    sid TEXT PRIMARY KEY,
    account_sid TEXT NOT NULL,
    direction TEXT NOT NULL,
    from_ TEXT NOT NULL,
    "to" TEXT NOT NULL,
    status TEXT NOT NULL,
    parent_call_sid TEXT,
    date_created DOUBLE PRECISION NOT NULL,
    date_updated DOUBLE PRECISION NOT NULL,
    start_time DOUBLE PRECISION,
    end_time DOUBLE PRECISION,
    duration INTEGER,
    sip_response_code INTEGER,
    sip_call_id TEXT,
    answered_by TEXT,
    caller_name TEXT,
    error TEXT,
    node TEXT
);
CREATE INDEX calls_account ON calls (account_sid, date_created);
CREATE INDEX calls_parent ON calls (parent_call_sid);
CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_sid TEXT NOT NULL,
    kind TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX events_call ON events (call_sid, seq);
CREATE TABLE recordings (
    sid TEXT PRIMARY KEY,
    call_sid TEXT NOT NULL,
    account_sid TEXT NOT NULL,
    path TEXT NOT NULL,
    duration INTEGER NOT NULL,
    date_created DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL,
    channels INTEGER NOT NULL
);
CREATE INDEX recordings_call ON recordings (call_sid);
CREATE TABLE zrtp_identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    zid BYTEA NOT NULL
);
CREATE TABLE zrtp_peers (
    peer_zid BYTEA PRIMARY KEY,
    rs1 BYTEA,
    rs2 BYTEA,
    verified INTEGER NOT NULL,
    date_updated DOUBLE PRECISION NOT NULL
);
