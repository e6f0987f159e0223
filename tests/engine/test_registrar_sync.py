"""Registrars sharing a store follow each other's bindings through its change log, on SQLite
(two stores on one file stand for two engines on one database; tests/engine/test_cluster.py
does it on PostgreSQL). Clocks are fake: the wall clock the bindings expire by, and the
monotonic one the sync's own intervals (holes given up, the periodic full read) run on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callxml.engine.registrar import (
    CHANGE_RETENTION,
    FULL_SYNC_INTERVAL,
    HOLE_TIMEOUT,
    RegistrarService,
)
from callxml.engine.store import BindingRecord, SqliteStore, SqlStore
from callxml.sip.events import Address
from support.engine import engine_config
from support.registrar import Register

DOMAIN = "reg.test"
USERS = ("alice", "bob", "carol", "dave", "erin", "frank")


class Clocks:
    def __init__(self) -> None:
        self.wall = 1_000_000.0
        self.mono = 0.0


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[SqlStore, SqlStore]]:
    path = tmp_path / "shared.db"
    opened = (SqliteStore(path, node="a"), SqliteStore(path, node="b"))
    try:
        yield opened
    finally:
        for store in opened:
            store.close()


@pytest.fixture
def pair(
    tmp_path: Path, stores: tuple[SqlStore, SqlStore], clocks: Clocks
) -> tuple[RegistrarService, RegistrarService]:
    """Engines a and b's registrars on the shared store (not started: each test syncs)."""
    domain = {
        "name": DOMAIN,
        "voice_url": "http://127.0.0.1:9/v",
        "credentials": [{"username": u, "password": f"{u}-Secret-9"} for u in USERS],
    }
    config = engine_config(tmp_path, [domain])
    a, b = (
        RegistrarService(
            config,
            store,
            clock=lambda: clocks.wall,
            monotonic=lambda: clocks.mono,
            shared_sync=1.0,
        )
        for store in stores
    )
    return a, b


def contacts(service: RegistrarService, user: str, now: float) -> list[tuple[str, int]]:
    return [(b.contact, b.source_port) for b in service.registrar.lookup(f"{user}@{DOMAIN}", now)]


async def register(
    service: RegistrarService,
    user: str,
    port: int = 5099,
    *,
    source_port: int | None = None,
    expires: int = 3600,
    cseq: int = 1,
    call_id: str = "reg-1@ua",
) -> None:
    """``user``'s device at ``port`` registering with ``service`` (from ``source_port``:
    behind a NAT)."""
    request = Register(
        user,
        DOMAIN,
        f"sip:{user}@127.0.0.1:{port}",
        expires=expires,
        cseq=cseq,
        call_id=call_id,
        source=Address("udp", "127.0.0.1", source_port or port),
    )
    await service(request)
    assert request.status == 200, request.warning


def move_newest_change(store: SqlStore, seq: int) -> None:
    """Give the newest log row the number ``seq``: as if its transaction had taken ``seq`` and
    committed in its own time (out of order, as PostgreSQL's concurrent writers do)."""
    with store.backend.transaction() as db:
        db.execute(
            "UPDATE binding_changes SET seq = ? WHERE seq = (SELECT MAX(seq) FROM binding_changes)",
            (seq,),
        )


def newest_seq(store: SqlStore) -> int:
    with store.backend.read() as db:
        return int(db.execute("SELECT MAX(seq) AS s FROM binding_changes").fetchone()["s"] or 0)


async def test_register_refresh_unregister_and_purge_reach_the_other_engine_incrementally(
    pair: tuple[RegistrarService, RegistrarService], clocks: Clocks
) -> None:
    a, b = pair
    assert (b.full_reads, b.log_reads) == (1, 0)  # the read at start
    await register(a, "alice")
    await register(a, "bob", port=5098, expires=120)
    assert await b.sync()
    assert contacts(b, "alice", clocks.wall) == [(f"sip:alice@127.0.0.1:{5099}", 5099)]
    assert len(b.registrar.over_flow("udp", "127.0.0.1", 5098, clocks.wall)) == 1  # bob's flow

    clocks.wall += 10
    await register(a, "alice", cseq=2, expires=0)  # un-REGISTER
    assert await b.sync()
    assert contacts(b, "alice", clocks.wall) == []

    clocks.wall += 200  # bob lapsed; a's purge deletes him and logs it
    await a.expire()
    assert b.registrar.next_expiry() is not None  # b still holds bob's lapsed binding...
    assert await b.sync()
    assert b.registrar.next_expiry() is None  # ...until it reads the purge
    assert b.registrar.over_flow("udp", "127.0.0.1", 5098, 0.0) == []
    assert (b.full_reads, b.log_reads) == (1, 3)


async def test_a_seq_seen_missing_is_asked_for_again_until_it_commits(
    pair: tuple[RegistrarService, RegistrarService], stores: tuple[SqlStore, SqlStore]
) -> None:
    a, b = pair
    store = stores[0]
    start = newest_seq(store)
    await register(a, "bob")
    move_newest_change(store, start + 2)  # bob's write took start+2; start+1 is still open
    assert await b.sync()
    assert contacts(b, "bob", a.clock()) != []
    await register(a, "carol")
    move_newest_change(store, start + 1)  # ...and commits now, below what b has read
    assert await b.sync()
    assert contacts(b, "carol", a.clock()) != []
    assert b.full_reads == 1


async def test_a_hole_is_given_up_after_its_timeout_and_the_periodic_full_read_catches_it(
    pair: tuple[RegistrarService, RegistrarService],
    stores: tuple[SqlStore, SqlStore],
    clocks: Clocks,
) -> None:
    a, b = pair
    store = stores[0]
    start = newest_seq(store)
    await register(a, "bob")
    move_newest_change(store, start + 2)
    assert await b.sync()
    clocks.mono += HOLE_TIMEOUT  # start+1 never appeared: taken as rolled back
    assert await b.sync()
    await register(a, "carol")
    move_newest_change(store, start + 1)  # a transaction older than any REGISTER's
    assert await b.sync()
    assert contacts(b, "carol", clocks.wall) == [] and b.full_reads == 1
    clocks.mono += FULL_SYNC_INTERVAL - HOLE_TIMEOUT  # the safety net
    assert await b.sync()
    assert contacts(b, "carol", clocks.wall) != [] and b.full_reads == 2
    assert await b.sync()
    assert b.full_reads == 2  # and back to the log


async def test_an_engine_behind_the_logs_retention_reads_every_binding(
    pair: tuple[RegistrarService, RegistrarService], clocks: Clocks
) -> None:
    a, b = pair
    assert await b.sync()
    # b's syncs fail for minutes (say, its database link is down) while a takes REGISTERs...
    await register(a, "dave")
    await register(a, "erin")
    clocks.wall += CHANGE_RETENTION + 60
    await register(a, "frank")
    await a.expire()  # ...and prunes the log's rows older than its retention: dave's, erin's
    assert await b.sync()
    assert b.full_reads == 2
    for user in ("dave", "erin", "frank"):
        assert contacts(b, user, clocks.wall) != [], user


async def test_a_register_here_during_a_sync_is_not_overwritten_by_what_the_sync_read(
    pair: tuple[RegistrarService, RegistrarService], clocks: Clocks
) -> None:
    """b reads alice's binding as a stored it (from port 5099) while alice's REGISTER from a
    new port (her NAT rebound) reaches b: the sync must not put the older binding back over
    the newer one."""
    a, b = pair
    await register(a, "alice", call_id="a@ua")
    reading = asyncio.create_task(b.sync())
    await asyncio.sleep(0)  # the sync is reading the store (and holds b's store lock)...
    refresh = asyncio.create_task(register(b, "alice", source_port=6000, call_id="b@ua"))
    await asyncio.sleep(0)  # ...when the REGISTER changes b's bindings in memory
    assert not await reading
    await refresh
    assert contacts(b, "alice", clocks.wall) == [("sip:alice@127.0.0.1:5099", 6000)]
    assert await b.sync()  # read again from the same place: both writes, the newest wins
    assert contacts(b, "alice", clocks.wall) == [("sip:alice@127.0.0.1:5099", 6000)]
    assert b.full_reads == 1


def test_a_binding_saved_without_a_clock_is_logged_now(stores: tuple[SqlStore, SqlStore]) -> None:
    store = stores[0]
    record = BindingRecord("x@reg.test", "contact:x", "sip:x@127.0.0.1", expires_at=9e9)
    before = time.time()
    store.update_bindings([record], [])
    with store.backend.read() as db:
        [row] = db.execute("SELECT changed_at FROM binding_changes").fetchall()
    assert before <= row["changed_at"] <= time.time()
