"""The SQLite store: records, filters, events, recordings, and durability across ``kill -9``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from callxml.engine.store import (
    CallEvent,
    CallRecord,
    ConferenceRecord,
    RecordingRecord,
    SqliteStore,
)


def _call(sid: str, **kw: object) -> CallRecord:
    base: dict[str, object] = {
        "sid": sid,
        "account_sid": "AC1",
        "direction": "inbound",
        "from_": "sip:alice@a.example",
        "to": "sip:bob@b.example",
        "date_created": float(int(sid[-2:], 16)),
        "date_updated": 0.0,
    }
    base.update(kw)
    return CallRecord(**base)  # type: ignore[arg-type]


def test_create_update_get(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    store.create_call(_call("CA01"))
    updated = store.update_call("CA01", status="in-progress", start_time=10.0)
    assert updated.status == "in-progress"
    got = store.get_call("CA01")
    assert got == updated
    assert store.get_call("CA99") is None
    with pytest.raises(KeyError):
        store.update_call("CA99", status="failed")
    with pytest.raises(ValueError):
        store.update_call("CA01", bogus=1)


def test_wal_and_full_sync_are_on(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_list_filters_and_paging(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    for i in range(1, 8):
        status = "completed" if i % 2 else "busy"
        store.create_call(_call(f"CA{i:02x}", status=status, to=f"sip:{i}@b.example"))
    assert store.count_calls("AC1") == 7
    assert store.count_calls("AC1", status="completed") == 4
    assert [c.sid for c in store.list_calls("AC1", limit=3)] == ["CA07", "CA06", "CA05"]
    assert [c.sid for c in store.list_calls("AC1", limit=3, offset=3)] == ["CA04", "CA03", "CA02"]
    assert [c.sid for c in store.list_calls("AC1", to="sip:2@b.example")] == ["CA02"]
    assert store.list_calls("AC2") == []
    assert {c.sid for c in store.unfinished_calls()} == set()
    store.create_call(_call("CA10", status="ringing"))
    assert [c.sid for c in store.unfinished_calls()] == ["CA10"]


def test_events_keep_order_and_data(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    first = store.add_event(CallEvent("CA01", "webhook", 1.0, {"url": "http://x/", "status": 200}))
    store.add_event(CallEvent("CA01", "warning", 2.0, {"message": "secure=maybe"}))
    store.add_event(CallEvent("CA02", "verb", 3.0, {"verb": "Say"}))
    events = store.list_events("CA01")
    assert [e.kind for e in events] == ["webhook", "warning"]
    assert events[0].data == {"url": "http://x/", "status": 200}
    assert events[0].seq == first.seq < events[1].seq
    assert [e.kind for e in store.list_events("CA01", kind="warning")] == ["warning"]


def test_recordings(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    rec = RecordingRecord("RE01", "CA01", "AC1", "/tmp/x.wav", 4, 5.0)
    store.add_recording(rec)
    assert store.get_recording("RE01") == rec
    assert store.list_recordings("CA01") == [rec]
    assert store.get_recording("RE02") is None


def test_records_survive_kill_9(tmp_path: Path) -> None:
    """A writer killed with SIGKILL mid-stream loses nothing it had reported as committed."""
    db = tmp_path / "crash.db"
    script = textwrap.dedent(
        f"""
        import sys
        from callxml.engine.store import CallRecord, CallEvent, SqliteStore
        store = SqliteStore({str(db)!r})
        i = 0
        while True:
            sid = "CA%032x" % i
            store.create_call(CallRecord(sid=sid, account_sid="AC1", direction="inbound",
                                         from_="a", to="b", status="ringing"))
            store.add_event(CallEvent(sid, "verb", 1.0, {{"verb": "Say"}}))
            store.update_call(sid, status="completed", duration=3)
            print(sid, flush=True)
            i += 1
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert proc.stdout is not None
    completed = [proc.stdout.readline().strip() for _ in range(25)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    completed += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]

    store = SqliteStore(db)
    for sid in completed:
        record = store.get_call(sid)
        assert record is not None and record.status == "completed" and record.duration == 3
        assert [e.kind for e in store.list_events(sid)] == ["verb"]
    # Whatever was in flight is either absent or a consistent, unfinished record.
    for record in store.unfinished_calls():
        assert record.status == "ringing"


def test_conferences(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    try:
        first = ConferenceRecord("CF1", "AC1", "room", "init", 1.0, 1.0)
        second = ConferenceRecord("CF2", "AC1", "other", "in-progress", 2.0, 2.0)
        store.create_conference(first)
        store.create_conference(second)
        store.create_conference(ConferenceRecord("CF3", "AC2", "room", "init", 3.0, 3.0))
        ended = store.update_conference(
            "CF1",
            status="completed",
            date_updated=5.0,
            reason_conference_ended="last-participant-left",
            call_sid_ending_conference="CA1",
        )
        assert store.get_conference("CF1") == ended
        assert ended.reason_conference_ended == "last-participant-left"
        assert [c.sid for c in store.list_conferences("AC1")] == ["CF2", "CF1"]  # newest first
        assert [c.sid for c in store.list_conferences("AC1", status="completed")] == ["CF1"]
        assert [c.sid for c in store.list_conferences("AC1", friendly_name="room")] == ["CF1"]
        assert store.count_conferences("AC1") == 2 and store.count_conferences("AC2") == 1
        with pytest.raises(KeyError):
            store.update_conference("CF9", status="completed")
        with pytest.raises(ValueError):
            store.update_conference("CF1", nonsense=1)
    finally:
        store.close()
