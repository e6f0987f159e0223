"""Durable call records: calls, their events, recordings, conferences and queues.

Owns the :class:`Store` seam and its embedded implementation on SQLite. It is a seam (a
Protocol the engine, the REST API and status callbacks use, never SQLite itself) because where
records live is a deployment choice: one node embeds a SQLite file, several nodes share a
database server (a PostgreSQL store would implement the same Protocol), and the rest of the
engine must not change between the two. The rule it exists for: *no call record is lost*.
Every state change is its own committed transaction, the database runs in WAL mode with
``synchronous=FULL``, so a ``kill -9`` at any moment leaves every committed call readable after
restart, and nothing half-written.

It must not know about SIP, media or HTTP: it stores plain records.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "CALL_STATUSES",
    "CONFERENCE_STATUSES",
    "TERMINAL_STATUSES",
    "CallEvent",
    "CallRecord",
    "ConferenceRecord",
    "QueueRecord",
    "RecordingRecord",
    "SqliteStore",
    "Store",
    "TimeRange",
]

#: Statuses of Twilio's Calls resource; the terminal ones end a call for good.
CALL_STATUSES = (
    "queued",
    "initiated",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "failed",
    "no-answer",
    "canceled",
)
TERMINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call leg, as Twilio's Calls resource describes it (times are Unix seconds)."""

    sid: str
    account_sid: str
    direction: str  # inbound | outbound-api | outbound-dial
    from_: str
    to: str
    status: str = "queued"
    parent_call_sid: str | None = None
    date_created: float = 0.0
    date_updated: float = 0.0
    start_time: float | None = None
    end_time: float | None = None
    duration: int | None = None
    sip_response_code: int | None = None
    sip_call_id: str | None = None
    answered_by: str | None = None
    caller_name: str | None = None
    error: str | None = None
    node: str | None = None


@dataclass(frozen=True, slots=True)
class CallEvent:
    """Something that happened on a call: a webhook exchange, a verb, a warning, a SIP step."""

    call_sid: str
    kind: str  # webhook | verb | warning | error | sip | status-callback
    at: float
    data: Mapping[str, Any] = field(default_factory=dict)
    seq: int = 0


@dataclass(frozen=True, slots=True)
class RecordingRecord:
    sid: str
    call_sid: str
    account_sid: str
    path: str
    duration: int
    date_created: float
    status: str = "completed"
    channels: int = 1


@dataclass(frozen=True, slots=True)
class ConferenceRecord:
    """A conference room, as Twilio's Conference resource describes it: ``status`` is ``init``
    (waiting for a participant who starts it), ``in-progress`` or ``completed``."""

    sid: str
    account_sid: str
    friendly_name: str
    status: str = "init"
    date_created: float = 0.0
    date_updated: float = 0.0
    reason_conference_ended: str | None = None
    call_sid_ending_conference: str | None = None


@dataclass(frozen=True, slots=True)
class QueueRecord:
    """A call queue, as Twilio's Queue resource describes it (its members are live only)."""

    sid: str
    account_sid: str
    friendly_name: str
    max_size: int = 100
    date_created: float = 0.0
    date_updated: float = 0.0


#: Statuses of a conference; ``completed`` is final.
CONFERENCE_STATUSES = ("init", "in-progress", "completed")


#: A time window for list filters: (from, inclusive; until, exclusive) in Unix seconds, either
#: end open (None).
TimeRange = tuple[float | None, float | None]


class Store(Protocol):
    """Where call records live. Each write is durable when the method returns."""

    def create_call(self, record: CallRecord) -> None: ...

    def update_call(self, sid: str, **changes: Any) -> CallRecord: ...

    def get_call(self, sid: str) -> CallRecord | None: ...

    def list_calls(
        self,
        account_sid: str,
        *,
        status: str | None = None,
        to: str | None = None,
        from_: str | None = None,
        parent_call_sid: str | None = None,
        start_time: TimeRange = (None, None),
        end_time: TimeRange = (None, None),
        limit: int = 50,
        offset: int = 0,
    ) -> list[CallRecord]: ...

    def count_calls(
        self,
        account_sid: str,
        *,
        status: str | None = None,
        to: str | None = None,
        from_: str | None = None,
        parent_call_sid: str | None = None,
        start_time: TimeRange = (None, None),
        end_time: TimeRange = (None, None),
    ) -> int: ...

    def delete_call(self, sid: str) -> bool:
        """Delete a call and its events (not its recordings, as Twilio); False if unknown."""
        ...

    def add_event(self, event: CallEvent) -> CallEvent: ...

    def list_events(self, call_sid: str, *, kind: str | None = None) -> list[CallEvent]: ...

    def add_recording(self, recording: RecordingRecord) -> None: ...

    def get_recording(self, sid: str) -> RecordingRecord | None: ...

    def list_recordings(self, call_sid: str) -> list[RecordingRecord]: ...

    def list_account_recordings(
        self, account_sid: str, *, call_sid: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[RecordingRecord]: ...

    def count_account_recordings(self, account_sid: str, *, call_sid: str | None = None) -> int: ...

    def delete_recording(self, sid: str) -> bool:
        """Delete a recording's record (the caller removes its file); False if unknown."""
        ...

    def unfinished_calls(self) -> list[CallRecord]: ...

    def create_conference(self, record: ConferenceRecord) -> None: ...

    def update_conference(self, sid: str, **changes: Any) -> ConferenceRecord: ...

    def get_conference(self, sid: str) -> ConferenceRecord | None: ...

    def list_conferences(
        self,
        account_sid: str,
        *,
        status: str | None = None,
        friendly_name: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ConferenceRecord]: ...

    def count_conferences(
        self, account_sid: str, *, status: str | None = None, friendly_name: str | None = None
    ) -> int: ...

    def create_queue(self, record: QueueRecord) -> None:
        """Raises ValueError when the account has a queue of that name already."""
        ...

    def update_queue(self, sid: str, **changes: Any) -> QueueRecord: ...

    def get_queue(self, sid: str) -> QueueRecord | None: ...

    def find_queue(self, account_sid: str, friendly_name: str) -> QueueRecord | None: ...

    def list_queues(
        self, account_sid: str, *, limit: int = 50, offset: int = 0
    ) -> list[QueueRecord]: ...

    def count_queues(self, account_sid: str) -> int: ...

    def delete_queue(self, sid: str) -> bool: ...

    def close(self) -> None: ...


_SCHEMA = """
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
CREATE TABLE IF NOT EXISTS conferences (
    sid TEXT PRIMARY KEY,
    account_sid TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    status TEXT NOT NULL,
    date_created REAL NOT NULL,
    date_updated REAL NOT NULL,
    reason_conference_ended TEXT,
    call_sid_ending_conference TEXT
);
CREATE INDEX IF NOT EXISTS conferences_account ON conferences (account_sid, date_created);
CREATE TABLE IF NOT EXISTS queues (
    sid TEXT PRIMARY KEY,
    account_sid TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    max_size INTEGER NOT NULL,
    date_created REAL NOT NULL,
    date_updated REAL NOT NULL,
    UNIQUE (account_sid, friendly_name)
);
"""

_CALL_COLUMNS = tuple(f.name for f in fields(CallRecord))
_RECORDING_COLUMNS = tuple(f.name for f in fields(RecordingRecord))
_CONFERENCE_COLUMNS = tuple(f.name for f in fields(ConferenceRecord))
_QUEUE_COLUMNS = tuple(f.name for f in fields(QueueRecord))


def _quoted(column: str) -> str:
    return f'"{column}"'


class SqliteStore:
    """The embedded store: one SQLite file in WAL mode, every write its own durable commit.

    Safe to call from several threads (the engine runs writes off the event loop); a lock
    serialises access to the one connection, which is simpler and, for a single node, as fast as
    a pool because SQLite serialises writers anyway.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    # -- calls ----------------------------------------------------------------------------------

    def _insert(self, table: str, columns: tuple[str, ...], row: Any) -> None:
        """Insert the dataclass ``row`` as one committed transaction."""
        values = asdict(row)
        names = ", ".join(_quoted(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO {table} ({names}) VALUES ({marks})", [values[c] for c in columns]
            )

    def create_call(self, record: CallRecord) -> None:
        self._insert("calls", _CALL_COLUMNS, record)

    def update_call(self, sid: str, **changes: Any) -> CallRecord:
        unknown = set(changes) - set(_CALL_COLUMNS) - {"sid"}
        if unknown or "sid" in changes:
            raise ValueError(f"cannot update call fields {sorted(unknown or {'sid'})}")
        with self._transaction() as db:
            row = db.execute("SELECT * FROM calls WHERE sid = ?", (sid,)).fetchone()
            if row is None:
                raise KeyError(sid)
            record = replace(_call_from_row(row), **changes)
            assignments = ", ".join(f"{_quoted(c)} = ?" for c in changes)
            if assignments:
                db.execute(
                    f"UPDATE calls SET {assignments} WHERE sid = ?",
                    [*changes.values(), sid],
                )
        return record

    def get_call(self, sid: str) -> CallRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM calls WHERE sid = ?", (sid,)).fetchone()
        return None if row is None else _call_from_row(row)

    def _filters(
        self,
        account_sid: str,
        status: str | None,
        to: str | None,
        from_: str | None,
        parent_call_sid: str | None,
        start_time: TimeRange = (None, None),
        end_time: TimeRange = (None, None),
    ) -> tuple[str, list[Any]]:
        clauses = ["account_sid = ?"]
        args: list[Any] = [account_sid]
        for column, value in (
            ("status", status),
            ("to", to),
            ("from_", from_),
            ("parent_call_sid", parent_call_sid),
        ):
            if value is not None:
                clauses.append(f"{_quoted(column)} = ?")
                args.append(value)
        for column, (since, until) in (("start_time", start_time), ("end_time", end_time)):
            if since is not None:
                clauses.append(f"{column} >= ?")
                args.append(since)
            if until is not None:
                clauses.append(f"{column} < ?")
                args.append(until)
        return " AND ".join(clauses), args

    def list_calls(
        self,
        account_sid: str,
        *,
        status: str | None = None,
        to: str | None = None,
        from_: str | None = None,
        parent_call_sid: str | None = None,
        start_time: TimeRange = (None, None),
        end_time: TimeRange = (None, None),
        limit: int = 50,
        offset: int = 0,
    ) -> list[CallRecord]:
        where, args = self._filters(
            account_sid, status, to, from_, parent_call_sid, start_time, end_time
        )
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM calls WHERE {where} "
                "ORDER BY date_created DESC, sid DESC LIMIT ? OFFSET ?",
                [*args, max(0, min(limit, 1000)), max(0, offset)],
            ).fetchall()
        return [_call_from_row(row) for row in rows]

    def count_calls(
        self,
        account_sid: str,
        *,
        status: str | None = None,
        to: str | None = None,
        from_: str | None = None,
        parent_call_sid: str | None = None,
        start_time: TimeRange = (None, None),
        end_time: TimeRange = (None, None),
    ) -> int:
        where, args = self._filters(
            account_sid, status, to, from_, parent_call_sid, start_time, end_time
        )
        with self._lock:
            row = self._db.execute(f"SELECT COUNT(*) FROM calls WHERE {where}", args).fetchone()
        return int(row[0])

    def delete_call(self, sid: str) -> bool:
        with self._transaction() as db:
            gone = db.execute("DELETE FROM calls WHERE sid = ?", (sid,)).rowcount
            db.execute("DELETE FROM events WHERE call_sid = ?", (sid,))
        return bool(gone)

    def unfinished_calls(self) -> list[CallRecord]:
        """Calls not in a terminal state: after a crash, the engine marks these failed."""
        marks = ", ".join("?" for _ in TERMINAL_STATUSES)
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM calls WHERE status NOT IN ({marks})", sorted(TERMINAL_STATUSES)
            ).fetchall()
        return [_call_from_row(row) for row in rows]

    # -- events ---------------------------------------------------------------------------------

    def add_event(self, event: CallEvent) -> CallEvent:
        payload = json.dumps(dict(event.data), default=str, separators=(",", ":"))
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO events (call_sid, kind, at, data) VALUES (?, ?, ?, ?)",
                (event.call_sid, event.kind, event.at, payload),
            )
            seq = cursor.lastrowid or 0
        return replace(event, seq=seq)

    def list_events(self, call_sid: str, *, kind: str | None = None) -> list[CallEvent]:
        query = "SELECT * FROM events WHERE call_sid = ?"
        args: list[Any] = [call_sid]
        if kind is not None:
            query += " AND kind = ?"
            args.append(kind)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", args).fetchall()
        return [
            CallEvent(
                call_sid=row["call_sid"],
                kind=row["kind"],
                at=row["at"],
                data=json.loads(row["data"]),
                seq=row["seq"],
            )
            for row in rows
        ]

    # -- recordings -----------------------------------------------------------------------------

    def add_recording(self, recording: RecordingRecord) -> None:
        self._insert("recordings", _RECORDING_COLUMNS, recording)

    def get_recording(self, sid: str) -> RecordingRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM recordings WHERE sid = ?", (sid,)).fetchone()
        return None if row is None else _recording_from_row(row)

    def list_recordings(self, call_sid: str) -> list[RecordingRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM recordings WHERE call_sid = ? ORDER BY date_created", (call_sid,)
            ).fetchall()
        return [_recording_from_row(row) for row in rows]

    def list_account_recordings(
        self, account_sid: str, *, call_sid: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[RecordingRecord]:
        where, args = self._recording_filters(account_sid, call_sid)
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM recordings WHERE {where} "
                "ORDER BY date_created DESC, sid DESC LIMIT ? OFFSET ?",
                [*args, max(0, min(limit, 1000)), max(0, offset)],
            ).fetchall()
        return [_recording_from_row(row) for row in rows]

    def count_account_recordings(self, account_sid: str, *, call_sid: str | None = None) -> int:
        where, args = self._recording_filters(account_sid, call_sid)
        with self._lock:
            row = self._db.execute(f"SELECT COUNT(*) FROM recordings WHERE {where}", args)
            return int(row.fetchone()[0])

    @staticmethod
    def _recording_filters(account_sid: str, call_sid: str | None) -> tuple[str, list[Any]]:
        if call_sid is None:
            return "account_sid = ?", [account_sid]
        return "account_sid = ? AND call_sid = ?", [account_sid, call_sid]

    def delete_recording(self, sid: str) -> bool:
        with self._transaction() as db:
            return bool(db.execute("DELETE FROM recordings WHERE sid = ?", (sid,)).rowcount)

    # -- conferences ----------------------------------------------------------------------------

    def create_conference(self, record: ConferenceRecord) -> None:
        self._insert("conferences", _CONFERENCE_COLUMNS, record)

    def update_conference(self, sid: str, **changes: Any) -> ConferenceRecord:
        unknown = set(changes) - set(_CONFERENCE_COLUMNS) - {"sid"}
        if unknown or "sid" in changes:
            raise ValueError(f"cannot update conference fields {sorted(unknown or {'sid'})}")
        with self._transaction() as db:
            row = db.execute("SELECT * FROM conferences WHERE sid = ?", (sid,)).fetchone()
            if row is None:
                raise KeyError(sid)
            record = replace(_conference_from_row(row), **changes)
            assignments = ", ".join(f"{_quoted(c)} = ?" for c in changes)
            if assignments:
                db.execute(
                    f"UPDATE conferences SET {assignments} WHERE sid = ?",
                    [*changes.values(), sid],
                )
        return record

    def get_conference(self, sid: str) -> ConferenceRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM conferences WHERE sid = ?", (sid,)).fetchone()
        return None if row is None else _conference_from_row(row)

    @staticmethod
    def _conference_filters(
        account_sid: str, status: str | None, friendly_name: str | None
    ) -> tuple[str, list[Any]]:
        clauses, args = ["account_sid = ?"], [account_sid]
        for column, value in (("status", status), ("friendly_name", friendly_name)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        return " AND ".join(clauses), args

    def list_conferences(
        self,
        account_sid: str,
        *,
        status: str | None = None,
        friendly_name: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ConferenceRecord]:
        where, args = self._conference_filters(account_sid, status, friendly_name)
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM conferences WHERE {where} "
                "ORDER BY date_created DESC, sid DESC LIMIT ? OFFSET ?",
                [*args, max(0, min(limit, 1000)), max(0, offset)],
            ).fetchall()
        return [_conference_from_row(row) for row in rows]

    def count_conferences(
        self, account_sid: str, *, status: str | None = None, friendly_name: str | None = None
    ) -> int:
        where, args = self._conference_filters(account_sid, status, friendly_name)
        with self._lock:
            row = self._db.execute(f"SELECT COUNT(*) FROM conferences WHERE {where}", args)
            return int(row.fetchone()[0])

    # -- queues ---------------------------------------------------------------------------------

    def create_queue(self, record: QueueRecord) -> None:
        try:
            self._insert("queues", _QUEUE_COLUMNS, record)
        except sqlite3.IntegrityError:
            raise ValueError(f"a queue named {record.friendly_name!r} exists") from None

    def update_queue(self, sid: str, **changes: Any) -> QueueRecord:
        unknown = set(changes) - set(_QUEUE_COLUMNS) - {"sid"}
        if unknown or "sid" in changes:
            raise ValueError(f"cannot update queue fields {sorted(unknown or {'sid'})}")
        try:
            with self._transaction() as db:
                row = db.execute("SELECT * FROM queues WHERE sid = ?", (sid,)).fetchone()
                if row is None:
                    raise KeyError(sid)
                record = replace(_queue_from_row(row), **changes)
                assignments = ", ".join(f"{_quoted(c)} = ?" for c in changes)
                if assignments:
                    db.execute(
                        f"UPDATE queues SET {assignments} WHERE sid = ?", [*changes.values(), sid]
                    )
        except sqlite3.IntegrityError:
            raise ValueError(f"a queue named {changes.get('friendly_name')!r} exists") from None
        return record

    def get_queue(self, sid: str) -> QueueRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM queues WHERE sid = ?", (sid,)).fetchone()
        return None if row is None else _queue_from_row(row)

    def find_queue(self, account_sid: str, friendly_name: str) -> QueueRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM queues WHERE account_sid = ? AND friendly_name = ?",
                (account_sid, friendly_name),
            ).fetchone()
        return None if row is None else _queue_from_row(row)

    def list_queues(
        self, account_sid: str, *, limit: int = 50, offset: int = 0
    ) -> list[QueueRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM queues WHERE account_sid = ? "
                "ORDER BY date_created DESC, sid DESC LIMIT ? OFFSET ?",
                (account_sid, max(0, min(limit, 1000)), max(0, offset)),
            ).fetchall()
        return [_queue_from_row(row) for row in rows]

    def count_queues(self, account_sid: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM queues WHERE account_sid = ?", (account_sid,)
            ).fetchone()
        return int(row[0])

    def delete_queue(self, sid: str) -> bool:
        with self._transaction() as db:
            return bool(db.execute("DELETE FROM queues WHERE sid = ?", (sid,)).rowcount)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _call_from_row(row: sqlite3.Row) -> CallRecord:
    return CallRecord(**{c: row[c] for c in _CALL_COLUMNS})


def _recording_from_row(row: sqlite3.Row) -> RecordingRecord:
    return RecordingRecord(**{c: row[c] for c in _RECORDING_COLUMNS})


def _conference_from_row(row: sqlite3.Row) -> ConferenceRecord:
    return ConferenceRecord(**{c: row[c] for c in _CONFERENCE_COLUMNS})


def _queue_from_row(row: sqlite3.Row) -> QueueRecord:
    return QueueRecord(**{c: row[c] for c in _QUEUE_COLUMNS})
