"""Fault drills on the store (issue 16): a database held locked by something else, and a disk
that fills up. New calls are refused with 503 while records cannot be kept; a call already up
keeps its audio and its flow; its records land, in order, once the store takes writes again;
nothing committed is lost, and the database stays sound (``PRAGMA integrity_check``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callxml.engine.api import OutboundCall
from callxml.engine.server import Engine
from callxml.errors import CapacityError
from callxml.runtime import IncomingCall, Phone
from callxml.sip.aio.transport import ListenerConfig
from support.engine import engine_config, running_engine, wait_status
from support.waiting import until

pytestmark = pytest.mark.peer

# A flow long enough to outlive the fault: it keeps speaking (and so writing events) meanwhile.
FLOW = (
    "<Response><Say>One.</Say><Pause length='2'/><Say>Two.</Say><Pause length='2'/>"
    "<Say>Three.</Say><Hangup/></Response>"
)


class Callee:
    """A callxml phone answering every call: it measures the audio the engine sends it."""

    def __init__(self) -> None:
        self.legs: list[object] = []
        self.phone: Phone | None = None

    async def on_incoming(self, call: IncomingCall) -> None:
        self.legs.append(await call.accept(secure_media_enabled=False))

    @property
    def uri(self) -> str:
        assert self.phone is not None
        return f"sip:bob@127.0.0.1:{self.phone.user_agent.local('udp').port}"

    def heard(self) -> int:
        return sum(leg.stats.packets_received for leg in self.legs)  # type: ignore[attr-defined]


@pytest.fixture
async def callee() -> AsyncIterator[Callee]:
    made = Callee()
    made.phone = await Phone.start(
        listeners=[ListenerConfig("udp", "127.0.0.1", 0)], on_incoming=made.on_incoming
    )
    try:
        yield made
    finally:
        await made.phone.close()


def _call(to: str) -> OutboundCall:
    return OutboundCall(to=to, from_="sip:alice@example.com", url=None, twiml=FLOW, timeout=10)


async def _drill(engine: Engine, callee: Callee, fault: object, repair: object) -> None:
    """Start a call, break the store, check the engine, repair it, check again."""
    assert callable(fault) and callable(repair)
    account = engine.config.accounts[0]
    before = await engine.originate(account, _call(callee.uri))
    await wait_status(engine, before.sid, {"completed"})  # a call fully committed first
    live_record = await engine.originate(account, _call(callee.uri))
    await wait_status(engine, live_record.sid, {"in-progress"})
    await fault()
    await until(lambda: not engine.store_health.ok, timeout=20, what="the store failing")
    heard = callee.heard()
    with pytest.raises(CapacityError) as refused:
        await engine.originate(account, _call(callee.uri))
    assert refused.value.limit == "store"
    await until(lambda: callee.heard() > heard + 50, timeout=10, what="audio on the live call")
    await repair()
    await until(lambda: engine.store_health.ok, timeout=30, what="the store recovering")
    done = await wait_status(engine, live_record.sid, {"completed"})
    assert done.end_time is not None
    assert engine.store is not None
    verbs = [e.data.get("verb") for e in engine.store.list_events(live_record.sid, kind="verb")]
    assert verbs.count("Say") == 3  # the flow ran to its end, every event kept, in order
    assert engine.store.get_call(before.sid).status == "completed"  # type: ignore[union-attr]
    after = await engine.originate(account, _call(callee.uri))  # taken again
    await wait_status(engine, after.sid, {"completed"})


async def test_a_locked_database(tmp_path: Path, callee: Callee) -> None:
    async with running_engine(engine_config(tmp_path, [])) as engine:
        holder = sqlite3.connect(
            tmp_path / "callxml.db", isolation_level=None, timeout=30, check_same_thread=False
        )

        async def lock() -> None:
            await asyncio.to_thread(holder.execute, "BEGIN EXCLUSIVE")

        async def unlock() -> None:
            await asyncio.sleep(3)  # long enough to span a webhook-less verb or two
            holder.execute("COMMIT")

        try:
            await _drill(engine, callee, lock, unlock)
        finally:
            holder.close()
    check = sqlite3.connect(tmp_path / "callxml.db")
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()


def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.mark.skipif(
    not _can_mount() and not os.environ.get("CI"),
    reason="mounting a small tmpfs needs root (CI runs as root and must run this)",
)
async def test_a_full_disk(tmp_path: Path, callee: Callee) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        config = engine_config(tmp_path, [], extra={"store": {"path": str(disk / "callxml.db")}})
        filler = disk / "filler"

        async def fill() -> None:
            # Unbuffered: a buffered file would flush on close and raise ENOSPC there.
            with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
                while True:
                    out.write(bytes(65536))

        async def free() -> None:
            await asyncio.sleep(1)
            filler.unlink()

        async with running_engine(config) as engine:
            await _drill(engine, callee, fill, free)
        check = sqlite3.connect(disk / "callxml.db")
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        check.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
