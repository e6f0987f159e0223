"""Durable call records: calls, their events, recordings, conferences and queues; and the
registrar's bindings.

Owns the :class:`Store` seam and its embedded implementation on SQLite. It is a seam (a
Protocol the engine, the REST API and status callbacks use, never SQLite itself) because where
records live is a deployment choice: one node embeds a SQLite file, several nodes share a
database server (a PostgreSQL store would implement the same Protocol), and the rest of the
engine must not change between the two. The rule it exists for: *no call record is lost*.
Every state change is its own committed transaction, the database runs in WAL mode with
``synchronous=FULL``, so a ``kill -9`` at any moment leaves every committed call readable after
restart, and nothing half-written. The registrar's bindings (devices registered to our domains)
live here too, so a restart does not forget who is registered: one REGISTER's changes are one
transaction, and bindings past their expiry are never listed. Each write to the bindings also
logs the keys it touched (``binding_changes``, in the same transaction), so that engines sharing
the database can follow each other's REGISTERs without re-reading every binding.

It must not know about SIP, media or HTTP: it stores plain records.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

from callxml.engine.migrations import migrate

__all__ = [
    "CALL_STATUSES",
    "CONFERENCE_STATUSES",
    "TERMINAL_STATUSES",
    "BindingChanges",
    "BindingRecord",
    "CallEvent",
    "CallRecord",
    "ConferenceRecord",
    "NodeRecord",
    "QueueRecord",
    "RecordingRecord",
    "SqlStore",
    "SqliteBackend",
    "SqliteStore",
    "Store",
    "TimeRange",
    "ZrtpPeerRecord",
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
    forwarded_from: str | None = None


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
    source: str = "RecordVerb"  # Twilio's Recording source: RecordVerb, DialVerb, OutboundAPI


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """An engine sharing the database (docs/deploy.md): where its REST API answers, which run
    of it holds the row (``instance``, fresh at each start), and until when its lease holds
    (Unix seconds). Past ``lease_until`` without a renewal the engine counts as dead."""

    node_id: str
    api_url: str
    instance: str
    started_at: float
    heartbeat_at: float
    lease_until: float


@dataclass(frozen=True, slots=True)
class BindingRecord:
    """One registered contact of an address of record (``user@domain``): ``key`` identifies it
    within the address (its Contact, or its RFC 5626 instance and reg-id); ``expires_at`` is Unix
    seconds; ``transport``/``source_host``/``source_port`` where its REGISTER came from."""

    aor: str
    key: str
    contact: str
    expires_at: float
    q: float = 1.0
    call_id: str = ""
    cseq: int = 0
    instance: str | None = None
    reg_id: int | None = None
    transport: str = "udp"
    source_host: str = ""
    source_port: int = 0
    registered_at: float = 0.0
    user_agent: str = ""


@dataclass(frozen=True, slots=True)
class BindingChanges:
    """What the bindings' change log holds past a position: ``seqs`` the log rows read,
    ``last_seq`` the highest of them and the position asked from, and for each key they
    name, its binding as it is now (``present``) or its absence (``absent``: deleted, purged or
    expired). ``behind``: rows past the position were pruned from the log, so the changes read
    are not all of them (read every binding instead)."""

    last_seq: int
    seqs: frozenset[int] = frozenset()
    present: tuple[BindingRecord, ...] = ()
    absent: tuple[tuple[str, str], ...] = ()
    behind: bool = False


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
    node: str | None = None  # the engine whose mixer runs the room (None: a single engine)


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

    def unfinished_calls(self, *, node: str | None = None) -> list[CallRecord]: ...

    def finish_call(self, sid: str, *, unless: frozenset[str], **changes: Any) -> bool:
        """``changes`` only if the status is not in ``unless`` (atomically); True if applied."""
        ...

    # ZRTP (RFC 6189 §4.9): our ZID, made once and kept, and what we retained per peer ZID.
    def zrtp_zid(self) -> bytes: ...

    def get_zrtp_peer(self, peer_zid: bytes) -> ZrtpPeerRecord | None: ...

    def put_zrtp_peer(self, record: ZrtpPeerRecord) -> None: ...

    def update_bindings(
        self,
        save: Sequence[BindingRecord],
        delete: Sequence[tuple[str, str]],
        *,
        now: float | None = None,
    ) -> None:
        """Write one REGISTER's changes at once: ``save`` (insert or replace by aor and key)
        and ``delete`` (``(aor, key)`` pairs), each key logged as changed at ``now`` (default:
        the current time)."""
        ...

    def list_bindings(self, *, now: float) -> list[BindingRecord]:
        """Every binding that has not expired by ``now``."""
        ...

    def purge_bindings(self, now: float) -> int:
        """Delete the bindings expired by ``now``, each logged as changed; returns how many."""
        ...

    def binding_changes(
        self, after: int, *, holes: Collection[int] = (), now: float
    ) -> BindingChanges:
        """The keys the change log names past seq ``after`` (and at the seqs ``holes``, which
        were missing from an earlier read), with their bindings as of ``now``."""
        ...

    def binding_log_head(self, *, settled_before: float) -> int:
        """The log position to follow from after a full read of the bindings made next: the
        newest change older than ``settled_before`` (the newer ones are read again, so that a
        lower seq committing late among them shows as missing)."""
        ...

    def prune_binding_changes(self, before: float) -> int:
        """Drop the log's changes up to the newest one older than ``before``, and mark that
        seq pruned (a reader below it has missed changes); returns how many."""
        ...

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

    def end_conferences(
        self, node: str | None, *, now: float, reason: str, unowned: bool = False
    ) -> int:
        """Mark the rooms a stopped engine left open ``completed``; returns how many."""
        ...

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


@dataclass(frozen=True, slots=True)
class ZrtpPeerRecord:
    """What we retained for one ZRTP peer (RFC 6189 §4.9): its ZID, rs1 and rs2 (32 octets or
    None) and whether a person verified the SAS. ``repr`` hides the secrets."""

    peer_zid: bytes
    rs1: bytes | None = field(default=None, repr=False)
    rs2: bytes | None = field(default=None, repr=False)
    verified: bool = False
    date_updated: float = 0.0


_CALL_COLUMNS = tuple(f.name for f in fields(CallRecord))
_RECORDING_COLUMNS = tuple(f.name for f in fields(RecordingRecord))
_NODE_COLUMNS = tuple(f.name for f in fields(NodeRecord))
_BINDING_COLUMNS = tuple(f.name for f in fields(BindingRecord))
_CONFERENCE_COLUMNS = tuple(f.name for f in fields(ConferenceRecord))
_QUEUE_COLUMNS = tuple(f.name for f in fields(QueueRecord))
_KEYS = ("aor", "key")
_LOG_CHANGE = "INSERT INTO binding_changes (aor, key, changed_at) VALUES (?, ?, ?)"
_PRUNED = "SELECT seq FROM binding_changes_pruned WHERE id = 1"


def _quoted(column: str) -> str:
    return f'"{column}"'


class Cursor(Protocol):
    """What a backend's ``execute`` returns (sqlite3's and psycopg's cursors both are one).
    Rows are read by column name, which both drivers support."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Executor(Protocol):
    """One connection inside a transaction (or a read): SQL with ``?`` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor: ...


class Backend(Protocol):
    """A database the :class:`SqlStore` speaks portable SQL to: SQLite (:class:`SqliteBackend`)
    or PostgreSQL (:mod:`callxml.engine.pgstore`). Only the DDL differs between the two (the
    migrations come in one file per dialect); every query below runs on both."""

    dialect: str  # "sqlite" | "postgres"
    where: str  # the database, for errors (a path, or a URL without its password)

    def transaction(self) -> AbstractContextManager[Executor]:
        """One committed transaction (rolled back if the block raises)."""
        ...

    def read(self) -> AbstractContextManager[Executor]:
        """A connection for reads (no transaction needed: each read is one statement)."""
        ...

    def close(self) -> None: ...


class SqlStore:
    """The :class:`Store` on a SQL database: every method is one statement or one transaction,
    committed before it returns, with SQL both backends run unchanged (``?`` placeholders,
    ``RETURNING``, ``ON CONFLICT``). Opening it applies the schema migrations the database lacks
    (:mod:`callxml.engine.migrations`) and refuses a database newer than this code.

    Safe to call from several threads: the engine runs every store call off the event loop."""

    def __init__(self, backend: Backend, *, node: str | None = None) -> None:
        self.backend = backend
        #: Stamped on the calls this store creates without one: the engine that owns them.
        self.node = node
        try:
            self.migrated = migrate(backend.dialect, backend.transaction, where=backend.where)
        except BaseException:
            backend.close()
            raise

    @property
    def schema_version(self) -> int:
        with self.backend.read() as db:
            row = db.execute("SELECT MAX(version) AS v FROM schema_migrations").fetchone()
        return int(row["v"] or 0)

    # -- calls ----------------------------------------------------------------------------------

    def _insert(self, table: str, columns: tuple[str, ...], row: Any) -> None:
        """Insert the dataclass ``row`` as one committed transaction."""
        values = asdict(row)
        names = ", ".join(_quoted(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        with self.backend.transaction() as db:
            db.execute(
                f"INSERT INTO {table} ({names}) VALUES ({marks})", [values[c] for c in columns]
            )

    def create_call(self, record: CallRecord) -> None:
        if record.node is None and self.node is not None:
            record = replace(record, node=self.node)
        self._insert("calls", _CALL_COLUMNS, record)

    def update_call(self, sid: str, **changes: Any) -> CallRecord:
        unknown = set(changes) - set(_CALL_COLUMNS) - {"sid"}
        if unknown or "sid" in changes:
            raise ValueError(f"cannot update call fields {sorted(unknown or {'sid'})}")
        if not changes:
            record = self.get_call(sid)
            if record is None:
                raise KeyError(sid)
            return record
        assignments = ", ".join(f"{_quoted(c)} = ?" for c in changes)
        with self.backend.transaction() as db:
            row = db.execute(
                f"UPDATE calls SET {assignments} WHERE sid = ? RETURNING *",
                [*changes.values(), sid],
            ).fetchone()
        if row is None:
            raise KeyError(sid)
        return _call_from_row(row)

    def finish_call(self, sid: str, *, unless: frozenset[str], **changes: Any) -> bool:
        """Apply ``changes`` only if the call's status is not in ``unless``, atomically: True
        if this call changed it. Two engines finalising the same dead engine's call cannot both
        succeed (the second finds the status already terminal)."""
        assignments = ", ".join(f"{_quoted(c)} = ?" for c in changes)
        marks = ", ".join("?" for _ in unless)
        with self.backend.transaction() as db:
            cursor = db.execute(
                f"UPDATE calls SET {assignments} WHERE sid = ? AND status NOT IN ({marks})",
                [*changes.values(), sid, *sorted(unless)],
            )
            return cursor.rowcount == 1

    def get_call(self, sid: str) -> CallRecord | None:
        with self.backend.read() as db:
            row = db.execute("SELECT * FROM calls WHERE sid = ?", (sid,)).fetchone()
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
        with self.backend.read() as db:
            rows = db.execute(
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
        with self.backend.read() as db:
            row = db.execute(f"SELECT COUNT(*) AS n FROM calls WHERE {where}", args).fetchone()
        return int(row["n"])

    def delete_call(self, sid: str) -> bool:
        with self.backend.transaction() as db:
            gone = db.execute("DELETE FROM calls WHERE sid = ?", (sid,)).rowcount
            db.execute("DELETE FROM events WHERE call_sid = ?", (sid,))
        return bool(gone)

    def unfinished_calls(self, *, node: str | None = None) -> list[CallRecord]:
        """Calls not in a terminal state (of ``node`` only, when given): after a crash, the
        engine marks these failed."""
        marks = ", ".join("?" for _ in TERMINAL_STATUSES)
        query = f"SELECT * FROM calls WHERE status NOT IN ({marks})"
        args: list[Any] = sorted(TERMINAL_STATUSES)
        if node is not None:
            query += " AND node = ?"
            args.append(node)
        with self.backend.read() as db:
            rows = db.execute(query, args).fetchall()
        return [_call_from_row(row) for row in rows]

    # -- events ---------------------------------------------------------------------------------

    def add_event(self, event: CallEvent) -> CallEvent:
        payload = json.dumps(dict(event.data), default=str, separators=(",", ":"))
        with self.backend.transaction() as db:
            row = db.execute(
                "INSERT INTO events (call_sid, kind, at, data) VALUES (?, ?, ?, ?) RETURNING seq",
                (event.call_sid, event.kind, event.at, payload),
            ).fetchone()
        return replace(event, seq=int(row["seq"]))

    def list_events(self, call_sid: str, *, kind: str | None = None) -> list[CallEvent]:
        query = "SELECT * FROM events WHERE call_sid = ?"
        args: list[Any] = [call_sid]
        if kind is not None:
            query += " AND kind = ?"
            args.append(kind)
        with self.backend.read() as db:
            rows = db.execute(query + " ORDER BY seq", args).fetchall()
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
        with self.backend.read() as db:
            row = db.execute("SELECT * FROM recordings WHERE sid = ?", (sid,)).fetchone()
        return None if row is None else _recording_from_row(row)

    def list_recordings(self, call_sid: str) -> list[RecordingRecord]:
        with self.backend.read() as db:
            rows = db.execute(
                "SELECT * FROM recordings WHERE call_sid = ? ORDER BY date_created", (call_sid,)
            ).fetchall()
        return [_recording_from_row(row) for row in rows]

    def list_account_recordings(
        self, account_sid: str, *, call_sid: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[RecordingRecord]:
        where, args = self._recording_filters(account_sid, call_sid)
        with self.backend.read() as db:
            rows = db.execute(
                f"SELECT * FROM recordings WHERE {where} "
                "ORDER BY date_created DESC, sid DESC LIMIT ? OFFSET ?",
                [*args, max(0, min(limit, 1000)), max(0, offset)],
            ).fetchall()
        return [_recording_from_row(row) for row in rows]

    def count_account_recordings(self, account_sid: str, *, call_sid: str | None = None) -> int:
        where, args = self._recording_filters(account_sid, call_sid)
        with self.backend.read() as db:
            row = db.execute(f"SELECT COUNT(*) AS n FROM recordings WHERE {where}", args)
            return int(row.fetchone()["n"])

    @staticmethod
    def _recording_filters(account_sid: str, call_sid: str | None) -> tuple[str, list[Any]]:
        if call_sid is None:
            return "account_sid = ?", [account_sid]
        return "account_sid = ? AND call_sid = ?", [account_sid, call_sid]

    def delete_recording(self, sid: str) -> bool:
        with self.backend.transaction() as db:
            return bool(db.execute("DELETE FROM recordings WHERE sid = ?", (sid,)).rowcount)

    # -- conferences ----------------------------------------------------------------------------

    def create_conference(self, record: ConferenceRecord) -> None:
        if record.node is None and self.node is not None:
            record = replace(record, node=self.node)
        self._insert("conferences", _CONFERENCE_COLUMNS, record)

    def end_conferences(
        self, node: str | None, *, now: float, reason: str, unowned: bool = False
    ) -> int:
        """Rooms live in the engine that mixes them, so when it stops (a crash, or a peer found
        its lease expired) its open rooms are over: mark them ``completed`` with ``reason``.
        ``node`` None: every open room (a single engine); else that engine's, and with
        ``unowned`` also rooms made before rooms named their engine."""
        query = (
            "UPDATE conferences SET status = 'completed', date_updated = ?,"
            " reason_conference_ended = ? WHERE status <> 'completed'"
        )
        args: list[Any] = [now, reason]
        if node is not None:
            query += " AND (node = ? OR node IS NULL)" if unowned else " AND node = ?"
            args.append(node)
        with self.backend.transaction() as db:
            return int(db.execute(query, args).rowcount)

    def update_conference(self, sid: str, **changes: Any) -> ConferenceRecord:
        unknown = set(changes) - set(_CONFERENCE_COLUMNS) - {"sid"}
        if unknown or "sid" in changes:
            raise ValueError(f"cannot update conference fields {sorted(unknown or {'sid'})}")
        if not changes:
            found = self.get_conference(sid)
            if found is None:
                raise KeyError(sid)
            return found
        assignments = ", ".join(f"{_quoted(c)} = ?" for c in changes)
        with self.backend.transaction() as db:
            row = db.execute(
                f"UPDATE conferences SET {assignments} WHERE sid = ? RETURNING *",
                [*changes.values(), sid],
            ).fetchone()
        if row is None:
            raise KeyError(sid)
        return _conference_from_row(row)

    def get_conference(self, sid: str) -> ConferenceRecord | None:
        with self.backend.read() as db:
            row = db.execute("SELECT * FROM conferences WHERE sid = ?", (sid,)).fetchone()
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
        with self.backend.read() as db:
            rows = db.execute(
                f"SELECT * FROM conferences WHERE {where} "
                "ORDER BY date_created DESC, sid DESC LIMIT ? OFFSET ?",
                [*args, max(0, min(limit, 1000)), max(0, offset)],
            ).fetchall()
        return [_conference_from_row(row) for row in rows]

    def count_conferences(
        self, account_sid: str, *, status: str | None = None, friendly_name: str | None = None
    ) -> int:
        where, args = self._conference_filters(account_sid, status, friendly_name)
        with self.backend.read() as db:
            row = db.execute(f"SELECT COUNT(*) AS n FROM conferences WHERE {where}", args)
            return int(row.fetchone()["n"])

    # -- queues ---------------------------------------------------------------------------------

    def create_queue(self, record: QueueRecord) -> None:
        """Raises ValueError when the account has a queue of that name already. The name's
        uniqueness is checked by the database (``ON CONFLICT``), so two engines creating the
        same queue at once cannot both succeed, on SQLite or PostgreSQL alike."""
        values = asdict(record)
        names = ", ".join(_quoted(c) for c in _QUEUE_COLUMNS)
        marks = ", ".join("?" for _ in _QUEUE_COLUMNS)
        with self.backend.transaction() as db:
            row = db.execute(
                f"INSERT INTO queues ({names}) VALUES ({marks})"
                " ON CONFLICT (account_sid, friendly_name) DO NOTHING RETURNING sid",
                [values[c] for c in _QUEUE_COLUMNS],
            ).fetchone()
        if row is None:
            raise ValueError(f"a queue named {record.friendly_name!r} exists")

    def update_queue(self, sid: str, **changes: Any) -> QueueRecord:
        unknown = set(changes) - set(_QUEUE_COLUMNS) - {"sid"}
        if unknown or "sid" in changes:
            raise ValueError(f"cannot update queue fields {sorted(unknown or {'sid'})}")
        with self.backend.transaction() as db:
            row = db.execute("SELECT * FROM queues WHERE sid = ?", (sid,)).fetchone()
            if row is None:
                raise KeyError(sid)
            name = changes.get("friendly_name")
            taken = (
                name is not None
                and db.execute(
                    "SELECT sid FROM queues WHERE account_sid = ? AND friendly_name = ?"
                    " AND sid <> ?",
                    (row["account_sid"], name, sid),
                ).fetchone()
            )
            if taken:
                raise ValueError(f"a queue named {name!r} exists")
            if changes:
                assignments = ", ".join(f"{_quoted(c)} = ?" for c in changes)
                row = db.execute(
                    f"UPDATE queues SET {assignments} WHERE sid = ? RETURNING *",
                    [*changes.values(), sid],
                ).fetchone()
        return _queue_from_row(row)

    def get_queue(self, sid: str) -> QueueRecord | None:
        with self.backend.read() as db:
            row = db.execute("SELECT * FROM queues WHERE sid = ?", (sid,)).fetchone()
        return None if row is None else _queue_from_row(row)

    def find_queue(self, account_sid: str, friendly_name: str) -> QueueRecord | None:
        with self.backend.read() as db:
            row = db.execute(
                "SELECT * FROM queues WHERE account_sid = ? AND friendly_name = ?",
                (account_sid, friendly_name),
            ).fetchone()
        return None if row is None else _queue_from_row(row)

    def list_queues(
        self, account_sid: str, *, limit: int = 50, offset: int = 0
    ) -> list[QueueRecord]:
        with self.backend.read() as db:
            rows = db.execute(
                "SELECT * FROM queues WHERE account_sid = ? "
                "ORDER BY date_created DESC, sid DESC LIMIT ? OFFSET ?",
                (account_sid, max(0, min(limit, 1000)), max(0, offset)),
            ).fetchall()
        return [_queue_from_row(row) for row in rows]

    def count_queues(self, account_sid: str) -> int:
        with self.backend.read() as db:
            row = db.execute(
                "SELECT COUNT(*) AS n FROM queues WHERE account_sid = ?", (account_sid,)
            ).fetchone()
        return int(row["n"])

    def delete_queue(self, sid: str) -> bool:
        with self.backend.transaction() as db:
            return bool(db.execute("DELETE FROM queues WHERE sid = ?", (sid,)).rowcount)

    # -- nodes (engines sharing the database) ---------------------------------------------------

    def claim_node(self, node: NodeRecord) -> NodeRecord | None:
        """Take ``node.node_id`` for ``node.instance``, atomically: None when taken (the row
        was free, ours, or its lease had run out at ``node.heartbeat_at``), else the live row
        of another instance holding it (the caller waits for its lease, or refuses to start)."""
        with self.backend.transaction() as db:
            row = db.execute(
                "INSERT INTO nodes (node_id, api_url, instance, started_at, heartbeat_at,"
                " lease_until) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET"
                " api_url = excluded.api_url, instance = excluded.instance,"
                " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,"
                " lease_until = excluded.lease_until"
                " WHERE nodes.instance = excluded.instance"
                " OR nodes.lease_until < excluded.heartbeat_at RETURNING node_id",
                (
                    node.node_id,
                    node.api_url,
                    node.instance,
                    node.started_at,
                    node.heartbeat_at,
                    node.lease_until,
                ),
            ).fetchone()
            if row is not None:
                return None
            held = db.execute("SELECT * FROM nodes WHERE node_id = ?", (node.node_id,)).fetchone()
        return _node_from_row(held)

    def renew_node(self, node_id: str, instance: str, now: float, lease_until: float) -> bool:
        """Extend our lease; False when the row is no longer ours (we were taken for dead)."""
        with self.backend.transaction() as db:
            cursor = db.execute(
                "UPDATE nodes SET heartbeat_at = ?, lease_until = ?"
                " WHERE node_id = ? AND instance = ?",
                (now, lease_until, node_id, instance),
            )
            return cursor.rowcount == 1

    def get_node(self, node_id: str) -> NodeRecord | None:
        with self.backend.read() as db:
            row = db.execute("SELECT * FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
        return None if row is None else _node_from_row(row)

    def list_nodes(self) -> list[NodeRecord]:
        with self.backend.read() as db:
            rows = db.execute("SELECT * FROM nodes ORDER BY node_id").fetchall()
        return [_node_from_row(row) for row in rows]

    def release_node(self, node_id: str, instance: str | None = None, *, before: float = 0) -> bool:
        """Delete the node's row: ours at a clean stop (``instance``), or a dead one's after
        its calls were finalised (``before``: only if its lease ran out before then)."""
        query = "DELETE FROM nodes WHERE node_id = ?"
        args: list[Any] = [node_id]
        if instance is not None:
            query += " AND instance = ?"
            args.append(instance)
        if before:
            query += " AND lease_until < ?"
            args.append(before)
        with self.backend.transaction() as db:
            return db.execute(query, args).rowcount == 1

    # -- ZRTP cache ----------------------------------------------------------------------------

    def zrtp_zid(self) -> bytes:
        """Our ZID: 96 random bits made on first use and kept in the database (§4.9); engines
        sharing a database share it (the first to ask makes it, the others read it)."""
        with self.backend.transaction() as db:
            db.execute(
                "INSERT INTO zrtp_identity (id, zid) VALUES (1, ?) ON CONFLICT (id) DO NOTHING",
                (secrets.token_bytes(12),),
            )
            row = db.execute("SELECT zid FROM zrtp_identity WHERE id = 1").fetchone()
        return bytes(row["zid"])

    def get_zrtp_peer(self, peer_zid: bytes) -> ZrtpPeerRecord | None:
        with self.backend.read() as db:
            row = db.execute(
                "SELECT * FROM zrtp_peers WHERE peer_zid = ?", (bytes(peer_zid),)
            ).fetchone()
        if row is None:
            return None
        return ZrtpPeerRecord(
            peer_zid=bytes(row["peer_zid"]),
            rs1=bytes(row["rs1"]) if row["rs1"] is not None else None,
            rs2=bytes(row["rs2"]) if row["rs2"] is not None else None,
            verified=bool(row["verified"]),
            date_updated=row["date_updated"],
        )

    def put_zrtp_peer(self, record: ZrtpPeerRecord) -> None:
        """Insert or replace one peer's record as one committed transaction."""
        with self.backend.transaction() as db:
            db.execute(
                "INSERT INTO zrtp_peers (peer_zid, rs1, rs2, verified, date_updated)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (peer_zid) DO UPDATE SET"
                " rs1 = excluded.rs1, rs2 = excluded.rs2, verified = excluded.verified,"
                " date_updated = excluded.date_updated",
                (
                    bytes(record.peer_zid),
                    record.rs1,
                    record.rs2,
                    int(record.verified),
                    record.date_updated,
                ),
            )

    # -- registrar bindings ---------------------------------------------------------------------

    def update_bindings(
        self,
        save: Sequence[BindingRecord],
        delete: Sequence[tuple[str, str]],
        *,
        now: float | None = None,
    ) -> None:
        at = time.time() if now is None else now
        changed = dict.fromkeys([*delete, *((r.aor, r.key) for r in save)])
        names = ", ".join(_quoted(c) for c in _BINDING_COLUMNS)
        marks = ", ".join("?" for _ in _BINDING_COLUMNS)
        updates = ", ".join(
            f"{_quoted(c)} = excluded.{_quoted(c)}" for c in _BINDING_COLUMNS if c not in _KEYS
        )
        with self.backend.transaction() as db:
            for aor, key in delete:
                db.execute("DELETE FROM bindings WHERE aor = ? AND key = ?", (aor, key))
            for record in save:
                values = asdict(record)
                db.execute(
                    f"INSERT INTO bindings ({names}) VALUES ({marks})"
                    f" ON CONFLICT (aor, key) DO UPDATE SET {updates}",
                    [values[c] for c in _BINDING_COLUMNS],
                )
            for aor, key in changed:
                db.execute(_LOG_CHANGE, (aor, key, at))

    def list_bindings(self, *, now: float) -> list[BindingRecord]:
        with self.backend.read() as db:
            rows = db.execute(
                "SELECT * FROM bindings WHERE expires_at > ? ORDER BY aor, registered_at", (now,)
            ).fetchall()
        return [BindingRecord(**{c: row[c] for c in _BINDING_COLUMNS}) for row in rows]

    def purge_bindings(self, now: float) -> int:
        with self.backend.transaction() as db:
            gone = db.execute(
                "DELETE FROM bindings WHERE expires_at <= ? RETURNING aor, key", (now,)
            ).fetchall()
            for row in gone:
                db.execute(_LOG_CHANGE, (row["aor"], row["key"], now))
        return len(gone)

    def binding_changes(
        self, after: int, *, holes: Collection[int] = (), now: float
    ) -> BindingChanges:
        # One statement, so one snapshot: a change row is seen together with the binding its
        # transaction wrote (or deleted). The key's row as it is now stands for every change
        # of that key, so applying it twice, or late, is harmless.
        columns = ", ".join(f"b.{_quoted(c)}" for c in _BINDING_COLUMNS if c not in _KEYS)
        where, args = "c.seq > ?", [now, after]
        if holes:
            where += f" OR c.seq IN ({', '.join('?' for _ in holes)})"
            args.extend(holes)
        with self.backend.read() as db:
            rows = db.execute(
                f"SELECT c.seq, c.aor, c.key, {columns} FROM binding_changes c"
                " LEFT JOIN bindings b ON b.aor = c.aor AND b.key = c.key AND b.expires_at > ?"
                f" WHERE {where} ORDER BY c.seq",
                args,
            ).fetchall()
            # After the changes, not before: a prune between the two then reads as behind
            # (a full read too many), never as a change lost.
            pruned = int(db.execute(_PRUNED).fetchone()["seq"])
        current: dict[tuple[str, str], BindingRecord | None] = {}
        for row in rows:
            aor, key = row["aor"], row["key"]
            current[(aor, key)] = (
                None
                if row["contact"] is None
                else BindingRecord(
                    aor=aor, key=key, **{c: row[c] for c in _BINDING_COLUMNS if c not in _KEYS}
                )
            )
        seqs = frozenset(int(row["seq"]) for row in rows)
        return BindingChanges(
            last_seq=max(seqs | {after}),
            seqs=seqs,
            present=tuple(r for r in current.values() if r is not None),
            absent=tuple(k for k, r in current.items() if r is None),
            behind=after < pruned,
        )

    def binding_log_head(self, *, settled_before: float) -> int:
        with self.backend.read() as db:
            row = db.execute(
                "SELECT MAX(seq) AS seq FROM binding_changes WHERE changed_at < ?",
                (settled_before,),
            ).fetchone()
            pruned = int(db.execute(_PRUNED).fetchone()["seq"])
        # Never below the pruned mark: the reader would take itself for behind.
        return max(int(row["seq"] or 0), pruned)

    def prune_binding_changes(self, before: float) -> int:
        # A prefix of the log by seq, up to the newest old change, whatever the other rows'
        # times (engines' clocks differ a little): the mark then says exactly which positions
        # lost rows.
        with self.backend.transaction() as db:
            row = db.execute(
                "SELECT MAX(seq) AS seq FROM binding_changes WHERE changed_at < ?", (before,)
            ).fetchone()
            if row["seq"] is None:
                return 0
            upto = int(row["seq"])
            db.execute(
                "UPDATE binding_changes_pruned SET seq = ? WHERE id = 1 AND seq < ?", (upto, upto)
            )
            return int(db.execute("DELETE FROM binding_changes WHERE seq <= ?", (upto,)).rowcount)

    def close(self) -> None:
        self.backend.close()


class SqliteBackend:
    """One SQLite file in WAL mode with ``synchronous=FULL``, behind a lock: the engine calls
    the store from several threads, and one connection behind a lock is, for one node, as fast
    as a pool because SQLite serialises writers anyway."""

    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.where = str(path)
        if self.where != ":memory:":
            Path(self.where).parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.db = sqlite3.connect(self.where, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=5000")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            yield self.db

    def close(self) -> None:
        with self.lock:
            self.db.close()


class SqliteStore(SqlStore):
    """The embedded store: one SQLite file (``[store] path``), every write its own durable
    commit. The default; :class:`~callxml.engine.pgstore.PostgresStore` is the one several
    engines share."""

    def __init__(self, path: str | Path, *, node: str | None = None) -> None:
        self.path = str(path)
        self._sqlite = SqliteBackend(path)
        super().__init__(self._sqlite, node=node)

    @property
    def _db(self) -> sqlite3.Connection:
        return self._sqlite.db

    @property
    def _lock(self) -> threading.Lock:
        return self._sqlite.lock

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._sqlite.transaction()


def _call_from_row(row: Any) -> CallRecord:
    return CallRecord(**{c: row[c] for c in _CALL_COLUMNS})


def _recording_from_row(row: Any) -> RecordingRecord:
    return RecordingRecord(**{c: row[c] for c in _RECORDING_COLUMNS})


def _conference_from_row(row: Any) -> ConferenceRecord:
    return ConferenceRecord(**{c: row[c] for c in _CONFERENCE_COLUMNS})


def _queue_from_row(row: Any) -> QueueRecord:
    return QueueRecord(**{c: row[c] for c in _QUEUE_COLUMNS})


def _node_from_row(row: Any) -> NodeRecord:
    return NodeRecord(**{c: row[c] for c in _NODE_COLUMNS})
