-- Where a call came from and where a recording was made, as Twilio's Call and Recording
-- resources report them: the forwarding number (Diversion / History-Info) of an inbound call,
-- and which part of the engine recorded (RecordVerb, DialVerb, OutboundAPI).
ALTER TABLE calls ADD COLUMN forwarded_from TEXT;
ALTER TABLE recordings ADD COLUMN source TEXT NOT NULL DEFAULT 'RecordVerb';
