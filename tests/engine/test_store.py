"""The store contract, run against both backends (SQLite and a real PostgreSQL server): records,
filters, events, recordings, the ZRTP cache, schema migrations; and SQLite's durability across
``kill -9`` (PostgreSQL's is the cluster test's: engines killed mid-calls)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from callxml.engine.store import (
    BindingRecord,
    CallEvent,
    CallRecord,
    ConferenceRecord,
    QueueRecord,
    RecordingRecord,
    SqliteStore,
    SqlStore,
)
from support.postgres import PostgresServer


class Stores:
    """Opens stores of one backend: :meth:`open` the test's database (again, after a close:
    a restart), :meth:`other` a second, empty one."""

    def __init__(self, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.backend = backend
        self._tmp = tmp_path
        self._request = request
        self._main: str | None = None
        self._opened: list[SqlStore] = []

    def _new(self) -> str:
        if self.backend == "sqlite":
            return str(self._tmp / f"c{len(self._opened)}-{id(self)}.db")
        server: PostgresServer = self._request.getfixturevalue("postgres_server")
        return server.create_database()

    def _store(self, where: str) -> SqlStore:
        if self.backend == "sqlite":
            store: SqlStore = SqliteStore(where)
        else:
            from callxml.engine.pgstore import PostgresStore

            store = PostgresStore(where)
        self._opened.append(store)
        return store

    def open(self) -> SqlStore:
        if self._main is None:
            self._main = self._new()
        return self._store(self._main)

    def other(self) -> SqlStore:
        return self._store(self._new())

    def close_all(self) -> None:
        for store in self._opened:
            store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    opened = Stores(request.param, tmp_path, request)
    try:
        yield opened
    finally:
        opened.close_all()


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


def test_create_update_get(stores: Stores) -> None:
    store = stores.open()
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


def test_list_filters_and_paging(stores: Stores) -> None:
    store = stores.open()
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


def test_events_keep_order_and_data(stores: Stores) -> None:
    store = stores.open()
    first = store.add_event(CallEvent("CA01", "webhook", 1.0, {"url": "http://x/", "status": 200}))
    store.add_event(CallEvent("CA01", "warning", 2.0, {"message": "secure=maybe"}))
    store.add_event(CallEvent("CA02", "verb", 3.0, {"verb": "Say"}))
    events = store.list_events("CA01")
    assert [e.kind for e in events] == ["webhook", "warning"]
    assert events[0].data == {"url": "http://x/", "status": 200}
    assert events[0].seq == first.seq < events[1].seq
    assert [e.kind for e in store.list_events("CA01", kind="warning")] == ["warning"]


def test_recordings(stores: Stores) -> None:
    store = stores.open()
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


def test_conferences(stores: Stores) -> None:
    store = stores.open()
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
    store.close()
    assert stores.open().get_conference("CF1") == ended  # durable across a restart


def test_rooms_a_stopped_engine_left_open_are_ended(stores: Stores) -> None:
    """Rooms are mixed in one engine: when it stops, its open rooms end — its own (stamped
    with the store's node) and, at its own restart, rooms made before rooms named an engine;
    a peer reaping it ends only that engine's; completed rooms keep their reason."""
    store = stores.open()
    store.node = "a"
    store.create_conference(ConferenceRecord("CF1", "AC1", "r1", "in-progress", 1.0, 1.0))
    store.create_conference(ConferenceRecord("CF2", "AC1", "r2", "init", 2.0, 2.0, node="b"))
    store.create_conference(ConferenceRecord("CF3", "AC1", "r3", "completed", 3.0, 3.0))
    store.update_conference("CF3", node=None, reason_conference_ended="last-participant-left")
    store.create_conference(ConferenceRecord("CF4", "AC1", "r4", "in-progress", 4.0, 4.0))
    store.update_conference("CF4", node=None)  # from before rooms named their engine
    assert store.end_conferences("b", now=9.0, reason="engine b stopped") == 1
    assert store.end_conferences("a", now=9.0, reason="restart", unowned=True) == 2
    rooms = {c.sid: c for c in store.list_conferences("AC1")}
    assert rooms["CF1"].node == "a" and rooms["CF2"].node == "b"
    assert {sid: (c.status, c.reason_conference_ended) for sid, c in rooms.items()} == {
        "CF1": ("completed", "restart"),
        "CF2": ("completed", "engine b stopped"),
        "CF3": ("completed", "last-participant-left"),
        "CF4": ("completed", "restart"),
    }
    assert store.end_conferences(None, now=10.0, reason="x") == 0


def test_queues(stores: Stores) -> None:
    """A queue's name is unique in its account (checked by the database, so two engines on
    one PostgreSQL cannot both create it); renaming onto another queue's name is refused."""
    store = stores.open()
    store.create_queue(QueueRecord("QU1", "AC1", "support", 100, 1.0, 1.0))
    store.create_queue(QueueRecord("QU2", "AC1", "sales", 10, 2.0, 2.0))
    store.create_queue(QueueRecord("QU3", "AC2", "support", 100, 3.0, 3.0))  # another account
    with pytest.raises(ValueError):
        store.create_queue(QueueRecord("QU4", "AC1", "support", 5, 4.0, 4.0))
    assert store.find_queue("AC1", "support") == store.get_queue("QU1")
    resized = store.update_queue("QU1", max_size=20, date_updated=5.0)
    assert resized.max_size == 20 and store.get_queue("QU1") == resized
    with pytest.raises(ValueError):
        store.update_queue("QU2", friendly_name="support")
    assert store.update_queue("QU2", friendly_name="leads").friendly_name == "leads"
    with pytest.raises(KeyError):
        store.update_queue("QU9", max_size=1)
    assert [q.sid for q in store.list_queues("AC1")] == ["QU2", "QU1"]
    assert store.count_queues("AC1") == 2 and store.count_queues("AC2") == 1
    assert store.delete_queue("QU2") and not store.delete_queue("QU2")
    assert store.find_queue("AC1", "leads") is None


def test_zrtp_zid_is_made_once_and_survives_a_restart(stores: Stores) -> None:
    store = stores.open()
    zid = store.zrtp_zid()
    assert len(zid) == 12 and store.zrtp_zid() == zid
    store.close()
    again = stores.open()
    assert again.zrtp_zid() == zid
    assert stores.other().zrtp_zid() != zid


def test_zrtp_peer_records_round_trip_and_hide_secrets(stores: Stores) -> None:
    from callxml.engine.store import ZrtpPeerRecord

    store = stores.open()
    peer = b"\xaa" * 12
    assert store.get_zrtp_peer(peer) is None
    record = ZrtpPeerRecord(peer, b"\x01" * 32, None, False, 5.0)
    store.put_zrtp_peer(record)
    assert store.get_zrtp_peer(peer) == record
    store.put_zrtp_peer(ZrtpPeerRecord(peer, b"\x02" * 32, b"\x01" * 32, True, 6.0))
    store.close()
    again = stores.open()
    got = again.get_zrtp_peer(peer)
    assert got is not None and (got.rs1, got.rs2, got.verified) == (
        b"\x02" * 32,
        b"\x01" * 32,
        True,
    )
    assert "0202" not in repr(got) and "\\x02" not in repr(got)


def test_the_store_backed_zrtp_cache_keeps_continuity_across_restarts(stores: Stores) -> None:
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
    store = stores.open()
    first, _ = call(StoreZrtpCache(store), phone)
    assert first.result is not None and not first.result.cache_match
    assert StoreZrtpCache(store).set_verified(phone.zrtp_zid())
    phone.set_verified(StoreZrtpCache(store).zrtp_zid())
    store.close()
    store = stores.open()  # the engine restarted
    second, peer = call(StoreZrtpCache(store), phone)
    assert second.result is not None and peer.result is not None
    assert second.result.cache_match and peer.result.cache_match
    assert second.result.verified and second.result.sas == peer.result.sas
    assert not StoreZrtpCache(store).set_verified(bytes(12))


def test_timestamps_keep_full_precision(stores: Stores) -> None:
    store = stores.open()
    store.create_call(_call("CA01", date_created=1_796_000_000.123456, start_time=1.5e9 + 0.25))
    got = store.get_call("CA01")
    assert got is not None
    assert got.date_created == 1_796_000_000.123456 and got.start_time == 1.5e9 + 0.25


def test_finish_call_changes_an_unfinished_call_exactly_once(stores: Stores) -> None:
    """Two engines finalising the same dead engine's call: one succeeds, the other finds it
    already terminal and changes nothing."""
    from callxml.engine.store import TERMINAL_STATUSES

    store = stores.open()
    store.create_call(_call("CA01", status="in-progress", node="b"))
    store.create_call(_call("CA02", status="ringing", node="a"))
    assert [c.sid for c in store.unfinished_calls(node="b")] == ["CA01"]
    first = store.finish_call("CA01", unless=TERMINAL_STATUSES, status="failed", error="x")
    second = store.finish_call("CA01", unless=TERMINAL_STATUSES, status="completed")
    assert (first, second) == (True, False)
    got = store.get_call("CA01")
    assert got is not None and (got.status, got.error) == ("failed", "x")
    assert store.unfinished_calls(node="b") == []


def test_concurrent_writers_lose_nothing(stores: Stores) -> None:
    """The engine calls the store from worker threads: 8 threads x 25 calls, each created,
    updated and given an event, are all there afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    store = stores.open()

    def work(worker: int) -> None:
        for i in range(25):
            sid = f"CA{worker:02x}{i:030x}"
            store.create_call(_call(sid, date_created=float(i)))
            store.add_event(CallEvent(sid, "verb", 1.0, {"verb": "Say"}))
            store.update_call(sid, status="completed")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    assert store.count_calls("AC1", status="completed") == 200
    assert len({e.seq for w in range(8) for e in store.list_events(f"CA{w:02x}{0:030x}")}) == 8


def test_migrations_are_applied_once_and_recorded(stores: Stores) -> None:
    from callxml.engine.migrations import latest

    store = stores.open()
    assert store.migrated == list(range(1, latest() + 1))
    assert store.schema_version == latest()
    store.close()
    again = stores.open()
    assert again.migrated == [] and again.schema_version == latest()


def test_a_database_newer_than_the_code_is_refused(stores: Stores) -> None:
    from callxml.engine.migrations import SchemaTooNew, latest

    store = stores.open()
    with store.backend.transaction() as db:
        db.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (latest() + 1, "from_the_future", 0.0),
        )
    store.close()
    with pytest.raises(SchemaTooNew, match=f"schema version {latest() + 1}, newer"):
        stores.open()


def test_a_sqlite_file_from_before_migrations_is_adopted(tmp_path: Path) -> None:
    """A database made by a callxml without versioned migrations (its tables, no
    schema_migrations) opens with its rows intact and is brought up to date."""
    import sqlite3

    from callxml.engine.migrations import MIGRATIONS, latest

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[0].sql["sqlite"])
    old.execute(
        'INSERT INTO calls (sid, account_sid, direction, from_, "to", status, date_created,'
        " date_updated) VALUES ('CA01', 'AC1', 'inbound', 'a', 'b', 'completed', 1, 1)"
    )
    old.commit()
    old.close()
    store = SqliteStore(path)
    assert store.migrated == list(range(1, latest() + 1))
    got = store.get_call("CA01")
    assert got is not None and got.status == "completed"
    store.close()


def test_an_unreachable_postgres_is_a_config_error(tmp_path: Path) -> None:
    from callxml.engine.pgstore import PostgresStore
    from callxml.errors import ConfigError
    from support.ports import free_port

    url = f"postgresql://callxml:secret-password@127.0.0.1:{free_port('tcp')}/callxml"
    with pytest.raises(ConfigError, match="cannot connect") as caught:
        PostgresStore(url + "?connect_timeout=1")
    assert "secret-password" not in str(caught.value)


def test_node_leases(stores: Stores) -> None:
    """One instance holds a node id while its lease runs; another takes it only once the lease
    has run out, after which the first can no longer renew (it was taken for dead)."""
    from callxml.engine.store import NodeRecord

    store = stores.open()
    first = NodeRecord("b", "http://127.0.0.3:8080", "run-1", 100.0, 100.0, 110.0)
    assert store.claim_node(first) is None
    assert store.claim_node(first) is None  # our own row: renewed in place
    second = NodeRecord("b", "http://127.0.0.3:8080", "run-2", 105.0, 105.0, 115.0)
    held = store.claim_node(second)
    assert held is not None and held.instance == "run-1"
    assert store.renew_node("b", "run-1", 109.0, 119.0)
    assert store.claim_node(second) is not None
    late = NodeRecord("b", "http://127.0.0.3:8080", "run-2", 120.0, 120.0, 130.0)
    assert store.claim_node(late) is None  # run-1's lease ran out at 119
    assert not store.renew_node("b", "run-1", 121.0, 131.0)
    node = store.get_node("b")
    assert node is not None and node.instance == "run-2"
    assert [n.node_id for n in store.list_nodes()] == ["b"]
    assert not store.release_node("b", before=125.0)  # lease still running at 125
    assert store.release_node("b", before=131.0)
    assert store.get_node("b") is None


def test_calls_are_stamped_with_the_store_node(stores: Stores) -> None:
    store = stores.open()
    store.node = "a"
    store.create_call(_call("CA01"))
    store.create_call(_call("CA02", node="b"))
    assert [(c.sid, c.node) for c in store.list_calls("AC1")] == [("CA02", "b"), ("CA01", "a")]


def test_bindings_are_written_together_and_expire(stores: Stores) -> None:
    store = stores.open()
    a = BindingRecord("alice@d.test", "contact:a", "sip:alice@10.0.0.1", expires_at=100.0)
    b = BindingRecord("alice@d.test", "contact:b", "sip:alice@10.0.0.2", expires_at=50.0)
    store.update_bindings([a, b], [])
    assert store.list_bindings(now=60.0) == [a]  # an expired binding is never listed
    moved = BindingRecord("alice@d.test", "contact:a", "sip:alice@10.0.0.9", expires_at=200.0)
    store.update_bindings([moved], [("alice@d.test", "contact:b")])
    assert store.list_bindings(now=0.0) == [moved]  # replaced by (aor, key); b deleted
    store.update_bindings([b], [])
    assert store.purge_bindings(60.0) == 1 and store.list_bindings(now=0.0) == [moved]
    store.close()
    again = stores.open()  # durable across a restart
    assert again.list_bindings(now=0.0) == [moved]


def _binding(contact: str, expires_at: float, aor: str = "alice@d.test") -> BindingRecord:
    return BindingRecord(aor, f"contact:{contact}", f"sip:{contact}", expires_at=expires_at)


def test_the_change_log_names_every_key_saved_deleted_or_purged(stores: Stores) -> None:
    """Each write to the bindings logs the keys it touched, in its transaction; reading the log
    past a position gives each such key's binding as it is now, or its absence."""
    store = stores.open()
    empty = store.binding_changes(0, now=0.0)
    assert (empty.last_seq, empty.seqs, empty.present, empty.absent) == (0, frozenset(), (), ())
    a, b, c = _binding("a", 100.0), _binding("b", 100.0), _binding("c", 50.0)
    store.update_bindings([a, b], [], now=10.0)
    first = store.binding_changes(0, now=0.0)
    assert len(first.seqs) == 2 and first.last_seq == max(first.seqs)
    assert set(first.present) == {a, b} and first.absent == () and not first.behind

    moved = BindingRecord(a.aor, a.key, "sip:a-moved", expires_at=200.0, source_port=5070)
    store.update_bindings([moved, c], [(b.aor, b.key)], now=20.0)
    second = store.binding_changes(first.last_seq, now=0.0)
    assert len(second.seqs) == 3 and min(second.seqs) > first.last_seq
    assert set(second.present) == {moved, c} and second.absent == ((b.aor, b.key),)
    # Read from the start, a key changed twice is named once, as it is now.
    again = store.binding_changes(0, now=0.0)
    assert set(again.present) == {moved, c} and again.absent == ((b.aor, b.key),)
    # An expired binding reads as absent; the holes asked for are read again.
    late = store.binding_changes(second.last_seq, holes=[min(second.seqs)], now=60.0)
    assert late.seqs == {min(second.seqs)} and late.last_seq == second.last_seq
    assert store.binding_changes(first.last_seq, now=60.0).absent == (
        (b.aor, b.key),
        (c.aor, c.key),
    )

    assert store.purge_bindings(60.0) == 1  # c
    purged = store.binding_changes(second.last_seq, now=0.0)
    assert len(purged.seqs) == 1 and purged.present == () and purged.absent == ((c.aor, c.key),)


def test_the_change_log_is_pruned_from_its_oldest_and_a_reader_behind_it_knows(
    stores: Stores,
) -> None:
    store = stores.open()
    for at in (10.0, 20.0, 30.0):
        store.update_bindings([_binding(f"x{at:.0f}", 1000.0)], [], now=at)
    seqs = sorted(store.binding_changes(0, now=0.0).seqs)
    assert store.binding_log_head(settled_before=0.0) == 0  # nothing settled: read it all
    assert store.binding_log_head(settled_before=25.0) == seqs[1]  # the newest settled
    assert store.binding_log_head(settled_before=100.0) == seqs[2]
    assert store.prune_binding_changes(5.0) == 0
    assert store.prune_binding_changes(25.0) == 2
    assert store.binding_changes(seqs[0], now=0.0).behind  # seqs[1] is gone: missed
    kept = store.binding_changes(seqs[1], now=0.0)
    assert not kept.behind and kept.seqs == {seqs[2]}
    assert store.binding_log_head(settled_before=0.0) == seqs[1]  # never below the mark
    assert store.prune_binding_changes(100.0) == 1
    assert store.binding_changes(seqs[1], now=0.0).behind
    assert not store.binding_changes(seqs[2], now=0.0).behind
    assert store.binding_log_head(settled_before=100.0) == seqs[2]
    assert store.prune_binding_changes(5.0) == 0  # an older prune does not lower the mark
    assert store.binding_changes(seqs[1], now=0.0).behind


def test_migration_6_adds_the_change_log_to_a_database_with_bindings(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at version 5 (bindings stored before the log existed) gets 0006 alone, keeps
    its bindings, and logs from then on, with seqs that grow."""
    from callxml.engine import migrations

    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:5])
    old = stores.open()
    assert old.migrated == [1, 2, 3, 4, 5]
    a = _binding("a", 100.0)
    with old.backend.transaction() as db:  # as a callxml of schema 5 wrote it: no log
        db.execute(
            "INSERT INTO bindings (aor, key, contact, expires_at, q, call_id, cseq, transport,"
            " source_host, source_port, registered_at, user_agent)"
            " VALUES (?, ?, ?, ?, 1.0, '', 0, 'udp', '', 0, 0.0, '')",
            (a.aor, a.key, a.contact, a.expires_at),
        )
    old.close()
    monkeypatch.undo()

    store = stores.open()
    assert store.migrated == [6] and store.schema_version == 6
    assert store.list_bindings(now=0.0) == [a]
    assert store.binding_changes(0, now=0.0).seqs == frozenset()
    assert store.binding_log_head(settled_before=0.0) == 0
    store.update_bindings([_binding("b", 100.0)], [(a.aor, a.key)], now=1.0)
    store.update_bindings([_binding("c", 100.0)], [], now=2.0)
    changes = store.binding_changes(0, now=0.0)
    assert len(changes.seqs) == 3 and changes.absent == ((a.aor, a.key),)
    assert sorted(changes.seqs) == list(range(min(changes.seqs), min(changes.seqs) + 3))
