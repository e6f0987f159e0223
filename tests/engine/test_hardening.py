"""The engine under the defects probing found (issue 16): no media port → an immediate 503, a
record's writes applied in order however they race, a REST ``From`` with CR/LF refused, an
over-long HTTP request line answered without an ERROR traceback."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callxml.engine.calls import CallBook, new_call_record
from callxml.engine.server import Engine
from callxml.engine.store import CallRecord, SqliteStore
from support.engine import ACCOUNT_SID, API_AUTH, WebApp, engine_config, running_engine, sip_port
from support.rawsip import SDP, RawPeer, request
from support.waiting import until

HANGUP = "<Response><Hangup/></Response>"


@pytest.fixture
async def app() -> Any:
    web_app = WebApp({"/voice": lambda form: HANGUP})
    await web_app.start()
    yield web_app
    await web_app.stop()


def records(engine: Engine) -> list[CallRecord]:
    assert engine.store is not None
    return list(engine.store.list_calls(ACCOUNT_SID))


def taken_ports() -> tuple[list[socket.socket], int]:
    """Four ports from a multiple of 4 on 127.0.0.1 whose even ones (RTP) we hold: the
    engine's smallest media range, full."""
    for _ in range(200):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1] & ~3
        probe.close()
        held = []
        try:
            for port in (base, base + 2):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            for sock in held:
                sock.close()
            continue
        return held, base
    raise RuntimeError("no free block of four ports")


# -- defect 2: no RTP port → a final response at once ----------------------------------------


async def test_no_media_port_answers_503_at_once_and_records_why(
    tmp_path: Path, app: WebApp
) -> None:
    held, port = taken_ports()
    try:
        config = engine_config(
            tmp_path,
            [{"name": "plain.test", "voice_url": app.url("/voice")}],
            extra={"media": {"port_min": port, "port_max": port + 3}},
        )
        async with running_engine(config) as engine:
            target = sip_port(engine, "udp")
            async with RawPeer("udp", "127.0.0.1", target) as peer:
                peer.send(request("INVITE", "sip:ivr@plain.test", port=peer.port, body=SDP))
                response = await peer.response(timeout=5)
                assert response.status == 503
                assert response.headers.get("Retry-After")
                assert "media port" in (response.headers.get("Warning") or "")
            calls = await until(lambda: [c for c in records(engine) if c.status == "failed"])
        assert calls[0].sip_response_code == 503 and "media port" in (calls[0].error or "")
        assert "/voice" not in app.paths()  # no webhook for a call we cannot take
    finally:
        for sock in held:
            sock.close()


# -- defect 3: one call's writes land in the order they were made ------------------------------


class JitteryStore(SqliteStore):
    """The real SQLite store, with each update delayed a random moment in its thread: what a
    busy disk does to writes that race."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._random = random.Random(16)
        self._guard = threading.Lock()

    def update_call(self, sid: str, **changes: Any) -> CallRecord:
        with self._guard:
            delay = self._random.uniform(0, 0.01)
        time.sleep(delay)
        return super().update_call(sid, **changes)


async def test_status_writes_race_but_land_in_order(tmp_path: Path) -> None:
    store = JitteryStore(tmp_path / "calls.db")
    books = []
    for _ in range(40):
        record = new_call_record(
            account_sid=ACCOUNT_SID, direction="inbound", from_="a", to="b", status="ringing"
        )
        store.create_call(record)
        books.append(CallBook(store, None, None, record, lambda sid: sid))

    async def life(book: CallBook) -> None:
        # The runtime spawns the in-progress write as a task and may cancel it at the end of
        # the call, while the final status is written at once: the two race.
        started = asyncio.ensure_future(book.status("in-progress", start_time=time.time()))
        await asyncio.sleep(0)
        started.cancel()
        await book.status("completed", end_time=time.time(), duration=1)
        await book.status("in-progress")  # a straggler: a finished call stays finished

    await asyncio.gather(*(life(book) for book in books))
    for book in books:
        await book.flush()
    try:
        final = [store.get_call(book.sid) for book in books]
        assert {r.status for r in final if r is not None} == {"completed"}
        assert all(book.record.status == "completed" for book in books)
    finally:
        store.close()


# -- defect 7: REST and HTTP edges --------------------------------------------------------------


@pytest.mark.parametrize("field", ["From", "To"])
async def test_rest_create_with_crlf_in_an_address_is_400(
    tmp_path: Path, app: WebApp, field: str
) -> None:
    async with running_engine(engine_config(tmp_path, [])) as engine:
        form = {"To": "sip:bob@127.0.0.1", "From": "sip:alice@example.com", "Url": app.url("/v")}
        form[field] = form[field] + "\r\nX-Injected: 1"
        url = f"http://127.0.0.1:{engine.http_port}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, data=form, headers=API_AUTH) as r,
        ):
            assert r.status == 400
            assert field in (await r.json())["message"]
        assert records(engine) == []


async def test_an_overlong_http_request_line_is_not_an_error_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_engine(engine_config(tmp_path, [])) as engine:
        with caplog.at_level(logging.INFO):
            reader, writer = await asyncio.open_connection("127.0.0.1", engine.http_port)
            writer.write(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            status_line = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
    assert status_line.split()[1].startswith(b"4")
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- a bug in a call's driver ends that call cleanly, and the engine keeps serving ------------


class Boom(Exception):
    """The fault a test injects."""


async def test_a_fault_in_the_inbound_driver_answers_500_and_finishes_the_record(
    tmp_path: Path, app: WebApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = engine_config(tmp_path, [{"name": "plain.test", "voice_url": app.url("/voice")}])
    async with running_engine(config) as engine:
        real = engine._run_inbound
        faults = [Boom("injected")]

        async def faulty(*args: Any) -> None:
            if faults:
                raise faults.pop()
            await real(*args)

        monkeypatch.setattr(engine, "_run_inbound", faulty)
        async with RawPeer("udp", "127.0.0.1", sip_port(engine, "udp")) as peer:
            peer.send(request("INVITE", "sip:ivr@plain.test", port=peer.port, body=SDP))
            assert (await peer.response()).status == 500
        failed = await until(lambda: [c for c in records(engine) if c.status == "failed"])
        assert "internal error" in (failed[0].error or "")
        async with RawPeer("udp", "127.0.0.1", sip_port(engine, "udp")) as peer:
            peer.send(request("INVITE", "sip:ivr@plain.test", port=peer.port, body=SDP))
            assert (await peer.response()).status == 200  # the next call is taken as usual


async def test_a_fault_in_the_outbound_driver_finishes_the_record(
    tmp_path: Path, app: WebApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_engine(engine_config(tmp_path, [])) as engine:

        async def faulty(*args: Any) -> None:
            raise Boom("injected")

        monkeypatch.setattr(engine, "_ring", faulty)
        url = f"http://127.0.0.1:{engine.http_port}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
        form = {"To": "sip:bob@127.0.0.1:9", "From": "sip:a@example.com", "Url": app.url("/v")}
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, data=form, headers=API_AUTH) as r,
        ):
            assert r.status == 201
        failed = await until(lambda: [c for c in records(engine) if c.status == "failed"])
        assert "internal error" in (failed[0].error or "")
