-- Conference rooms and call queues (issue 12): the records behind the Conferences and Queues
-- REST resources. A room's participants and a queue's members are live state of the engine
-- that runs them, not rows.
CREATE TABLE conferences (
    sid TEXT PRIMARY KEY,
    account_sid TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    status TEXT NOT NULL,
    date_created DOUBLE PRECISION NOT NULL,
    date_updated DOUBLE PRECISION NOT NULL,
    reason_conference_ended TEXT,
    call_sid_ending_conference TEXT,
    node TEXT
);
CREATE INDEX conferences_account ON conferences (account_sid, date_created);
CREATE TABLE queues (
    sid TEXT PRIMARY KEY,
    account_sid TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    max_size INTEGER NOT NULL,
    date_created DOUBLE PRECISION NOT NULL,
    date_updated DOUBLE PRECISION NOT NULL,
    UNIQUE (account_sid, friendly_name)
);
