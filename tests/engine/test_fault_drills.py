"""Fault drills (issue 16 §4), each a test on a real engine: the webhook server failing in every
way it can, and connections that stall, idle or pile up. The call follows the fallback rules,
ends cleanly, and its record says why; the engine keeps serving everyone else."""

from __future__ import annotations

import asyncio
import resource
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from callxml.engine.server import Engine
from support.engine import ACCOUNT_SID, engine_config, running_engine, sip_port
from support.rawsip import RawPeer, request
from support.sipp import Sipp
from support.waiting import until
from support.web import serve_app

HANGUP = "<Response><Say>Sorry</Say><Hangup/></Response>"
TIMEOUT = 1.0  # webhooks.timeout for these drills


class FailingApp:
    """A webhook app whose ``/voice`` fails as told; ``/fallback`` answers."""

    def __init__(self, failure: str) -> None:
        self.failure = failure
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def voice(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, dict(await request.post())))  # type: ignore[arg-type]
        if self.failure == "500":
            return web.Response(status=500, text="boom")
        if self.failure == "slow":
            await asyncio.sleep(TIMEOUT * 3)
            return web.Response(text=HANGUP, content_type="text/xml")
        # "streams": a 200 whose body never ends (a byte now and then)
        response = web.StreamResponse(headers={"Content-Type": "text/xml"})
        await response.prepare(request)
        for _ in range(100):
            await response.write(b" ")
            await asyncio.sleep(0.1)
        return response

    async def fallback(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(await request.post())))  # type: ignore[arg-type]
        return web.Response(text=HANGUP, content_type="text/xml")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/voice", self.voice)
        app.router.add_post("/fallback", self.fallback)
        self._runner, self.port = await serve_app(app, access_log=None)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def records(engine: Engine) -> list[Any]:
    assert engine.store is not None
    return list(engine.store.list_calls(ACCOUNT_SID))


@pytest.mark.peer
@pytest.mark.parametrize("failure", ["500", "slow", "streams", "dead"])
async def test_the_webhook_server_failing_leads_to_the_fallback_and_a_clean_end(
    tmp_path: Path, sipp: Sipp, failure: str
) -> None:
    app = FailingApp(failure)
    await app.start()
    try:
        voice = f"http://127.0.0.1:{app.port}/voice"
        if failure == "dead":
            await app.stop()  # nobody listens any more...
            fallback_app = FailingApp("500")
            await fallback_app.start()  # ...and the fallback lives elsewhere
            fallback, requests = fallback_app, fallback_app.requests
        else:
            fallback, requests = app, app.requests
        domain = {
            "name": "plain.test",
            "voice_url": voice,
            "fallback_url": f"http://127.0.0.1:{fallback.port}/fallback",
        }
        config = engine_config(tmp_path, [domain], extra={"webhooks": {"timeout": TIMEOUT}})
        async with running_engine(config) as engine:
            target = f"127.0.0.1:{sip_port(engine, 'udp')}"
            caller = await sipp.uac(
                "uac_answered", "udp", target, "ivr", keys={"domain": "plain.test"}
            )
            outcome = await caller.result()
            assert outcome.returncode == 0, outcome.explain()  # answered by the fallback, BYE
            calls = await until(lambda: [c for c in records(engine) if c.status == "completed"])
            assert engine.store is not None
            events = engine.store.list_events(calls[0].sid)
        form = dict(requests)["/fallback"]
        assert form["ErrorCode"] in ("11200", "11205", "11210"), form
        failed = next(e for e in events if e.kind == "webhook" and e.data.get("error"))
        assert failed.data["url"] == voice  # the record says which fetch failed, and why
        if fallback is not app:
            await fallback.stop()
    finally:
        await app.stop()


async def test_a_tls_peer_that_stalls_mid_handshake_is_cut_off(tmp_path: Path) -> None:
    config = engine_config(
        tmp_path, [], transports=("udp", "tls"), extra={"sip": {"connect_timeout": 0.5}}
    )
    async with running_engine(config) as engine:
        reader, writer = await asyncio.open_connection("127.0.0.1", sip_port(engine, "tls"))
        writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # half a ClientHello
        data = await asyncio.wait_for(reader.read(), 10)  # ...then nothing: we are cut off
        assert data == b"" or data.startswith(b"\x15")  # closed (perhaps after a TLS alert)
        writer.close()
        # meanwhile a real TLS client is served
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        _, tls = await asyncio.open_connection("127.0.0.1", sip_port(engine, "tls"), ssl=context)
        tls.close()


def rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def test_a_thousand_idle_connections_are_bounded_and_timed_out(tmp_path: Path) -> None:
    config = engine_config(
        tmp_path,
        [],
        extra={"sip": {"connection_idle_timeout": 3, "max_inbound_connections": 1000}},
    )
    async with running_engine(config) as engine:
        port = sip_port(engine, "tcp")
        before = rss_kib()
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(1000)]
        # the 1001st is refused at once; everyone else is still served (UDP and outbound)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        async with RawPeer("udp", "127.0.0.1", sip_port(engine, "udp")) as peer:
            peer.send(request("OPTIONS", "sip:x@127.0.0.1", port=peer.port))
            assert (await peer.response()).status == 200
        assert rss_kib() - before < 64 * 1024  # bounded: well under 64 KiB a connection
        # then the idle timeout closes every one of them
        results = await asyncio.wait_for(asyncio.gather(*(r.read() for r, _ in idle)), timeout=30)
        assert set(results) == {b""}
        for _, w in idle:
            w.close()
        assert engine.counters["sip.transport.timed_out"] >= 1000
        async with RawPeer("tcp", "127.0.0.1", port) as peer:  # and new clients get in again
            peer.send(request("OPTIONS", "sip:x@127.0.0.1", port=peer.port, transport="tcp"))
            assert (await peer.response()).status == 200


# -- kill -9 with 50 calls in progress --------------------------------------------------------


@pytest.mark.peer
async def test_kill_9_with_fifty_calls_up_loses_nothing(tmp_path: Path, sipp: Sipp) -> None:
    import os
    import signal
    import sqlite3

    import aiohttp

    from callxml.engine.config import load_config
    from callxml.engine.store import TERMINAL_STATUSES
    from support.engine import WebApp, serve_process, write_config

    app = WebApp(
        {
            "/quick": lambda form: "<Response><Hangup/></Response>",
            "/long": lambda form: '<Response><Play digits="1"/><Pause length="60"/></Response>',
        }
    )
    await app.start()
    domains = f"""
[[domains]]
name = "quick.test"
account = "{ACCOUNT_SID}"
voice_url = "{app.url("/quick")}"
[[domains]]
name = "long.test"
account = "{ACCOUNT_SID}"
voice_url = "{app.url("/long")}"
"""
    path, ports = write_config(tmp_path, domains=domains)
    database = tmp_path / "callxml.db"
    proc = await serve_process(
        path, cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{ports['http']}/healthz") as r:
                        return r.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await until(healthy, timeout=30)
        target = f"127.0.0.1:{ports['sip']}"
        quick = await sipp.uac(
            "uac_answered", "udp", target, "ivr", keys={"domain": "quick.test"},
            args=["-m", "10", "-r", "20"],
        )  # fmt: skip
        assert (await quick.result()).returncode == 0

        def count(where: str) -> int:
            with sqlite3.connect(database, timeout=5) as db:
                return int(db.execute(f"SELECT COUNT(*) FROM calls WHERE {where}").fetchone()[0])

        await until(lambda: count("status = 'completed'") == 10, timeout=20)
        long = await sipp.uac(
            "uac_answered", "udp", target, "ivr", keys={"domain": "long.test"},
            args=["-m", "50", "-r", "25", "-l", "50"], timeout=120,
        )  # fmt: skip
        try:
            await until(lambda: count("status = 'in-progress'") == 50, timeout=60)
        except TimeoutError:
            raise AssertionError((await long.result(1)).explain()) from None
        os.kill(proc.pid, signal.SIGKILL)  # under load, 50 calls up
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await sipp.close()
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    async with running_engine(load_config(path)) as engine:  # the restart recovers
        assert engine.store is not None
        calls = engine.store.list_calls(ACCOUNT_SID, limit=100)
    await app.stop()
    assert len(calls) == 60
    assert all(c.status in TERMINAL_STATUSES for c in calls)  # one final status each
    assert sum(c.status == "completed" for c in calls) == 10  # no completed call missing
    assert sum(c.status == "failed" and "engine stopped" in (c.error or "") for c in calls) == 50
