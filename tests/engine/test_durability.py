"""Records survive ``kill -9``: a finished call is there after a restart, and a call the crash
left unfinished is marked failed."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from callxml.engine.store import SqliteStore
from support.engine import ACCOUNT_SID, API_AUTH, serve_process, write_config
from support.sipp import Sipp
from support.waiting import until

pytestmark = pytest.mark.peer


async def start(config: Path, cwd: Path, port: int) -> asyncio.subprocess.Process:
    proc = await serve_process(
        config, cwd=cwd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("the engine did not start")


async def call(http: aiohttp.ClientSession, port: int, to: str) -> str:
    url = f"http://127.0.0.1:{port}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    form = {"To": to, "From": "sip:a@example.com", "Twiml": "<Response><Hangup/></Response>"}
    async with http.post(url, data=form) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["sid"])


async def status(http: aiohttp.ClientSession, port: int, sid: str) -> str:
    url = f"http://127.0.0.1:{port}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json"
    async with http.get(url) as resp:
        return str((await resp.json())["status"])


async def is_status(http: aiohttp.ClientSession, port: int, sid: str, expected: str) -> bool:
    return await status(http, port, sid) == expected


async def test_records_survive_kill_9(tmp_path: Path, sipp: Sipp) -> None:
    config, ports = write_config(tmp_path)
    busy = await sipp.uas("uas_busy", media_port=True)
    ringing = await sipp.uas("uas_ring", media_port=True, timeout=8)
    proc = await start(config, tmp_path, ports["http"])
    try:
        async with aiohttp.ClientSession(headers=API_AUTH) as http:
            done = await call(http, ports["http"], f"sip:bob@127.0.0.1:{busy.port}")
            await until(lambda: is_status(http, ports["http"], done, "busy"), timeout=6)
            live = await call(http, ports["http"], f"sip:carol@127.0.0.1:{ringing.port}")
            await until(lambda: is_status(http, ports["http"], live, "ringing"), timeout=6)
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await busy.result(5)
        ringing.kill()
        await ringing.result(5)

    store = SqliteStore(tmp_path / "callxml.db")  # as the crash left it
    try:
        assert store.get_call(done).status == "busy"  # type: ignore[union-attr]
        assert store.get_call(live).status == "ringing"  # type: ignore[union-attr]
    finally:
        store.close()

    proc = await start(config, tmp_path, ports["http"])
    try:
        async with aiohttp.ClientSession(headers=API_AUTH) as http:
            assert await status(http, ports["http"], done) == "busy"
            assert await status(http, ports["http"], live) == "failed"
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0
