"""The SQLite store: records, filters, events, recordings, and durability across ``kill -9``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from callxml.engine.store import CallEvent, CallRecord, RecordingRecord, SqliteStore


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


def test_zrtp_zid_is_made_once_and_survives_a_restart(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    zid = store.zrtp_zid()
    assert len(zid) == 12 and store.zrtp_zid() == zid
    store.close()
    again = SqliteStore(tmp_path / "c.db")
    assert again.zrtp_zid() == zid
    assert SqliteStore(tmp_path / "other.db").zrtp_zid() != zid


def test_zrtp_peer_records_round_trip_and_hide_secrets(tmp_path: Path) -> None:
    from callxml.engine.store import ZrtpPeerRecord

    store = SqliteStore(tmp_path / "c.db")
    peer = b"\xaa" * 12
    assert store.get_zrtp_peer(peer) is None
    record = ZrtpPeerRecord(peer, b"\x01" * 32, None, False, 5.0)
    store.put_zrtp_peer(record)
    assert store.get_zrtp_peer(peer) == record
    store.put_zrtp_peer(ZrtpPeerRecord(peer, b"\x02" * 32, b"\x01" * 32, True, 6.0))
    store.close()
    again = SqliteStore(tmp_path / "c.db")
    got = again.get_zrtp_peer(peer)
    assert got is not None and (got.rs1, got.rs2, got.verified) == (
        b"\x02" * 32,
        b"\x01" * 32,
        True,
    )
    assert "0202" not in repr(got) and "\\x02" not in repr(got)


def test_the_store_backed_zrtp_cache_keeps_continuity_across_restarts(tmp_path: Path) -> None:
    """Two ZRTP engines, one keeping its cache in the store: the second call after a restart
    matches the retained secret and keeps the verified flag (RFC 6189 §4.3.2, §7.1)."""
    from callxml.engine.zrtpcache import StoreZrtpCache
    from callxml.media.zrtp import MemoryZrtpCache, ZrtpSession

    def call(ours: StoreZrtpCache, theirs: MemoryZrtpCache) -> tuple[ZrtpSession, ZrtpSession]:
        a = ZrtpSession(zid=ours.zrtp_zid(), ssrc=1, lookup=ours.zrtp_secrets)
        b = ZrtpSession(zid=theirs.zrtp_zid(), ssrc=2, lookup=theirs.zrtp_secrets)
        queue = [("a", p) for p in a.start(0.0)] + [("b", p) for p in b.start(0.0)]
        while queue:
            sender, packet = queue.pop(0)
            target, name = (b, "b") if sender == "a" else (a, "a")
            queue += [(name, p) for p in target.receive(packet, 0.0)]
        assert a.result is not None and b.result is not None
        ours.save_zrtp_secrets(a.result.peer_zid, a.result.cache_update)
        theirs.save_zrtp_secrets(b.result.peer_zid, b.result.cache_update)
        return a, b

    phone = MemoryZrtpCache()
    store = SqliteStore(tmp_path / "c.db")
    first, _ = call(StoreZrtpCache(store), phone)
    assert first.result is not None and not first.result.cache_match
    assert StoreZrtpCache(store).set_verified(phone.zrtp_zid())
    phone.set_verified(StoreZrtpCache(store).zrtp_zid())
    store.close()
    store = SqliteStore(tmp_path / "c.db")  # the engine restarted
    second, peer = call(StoreZrtpCache(store), phone)
    assert second.result is not None and peer.result is not None
    assert second.result.cache_match and peer.result.cache_match
    assert second.result.verified and second.result.sas == peer.result.sas
    assert not StoreZrtpCache(store).set_verified(bytes(12))
