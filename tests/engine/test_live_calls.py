"""Live calls from outside: the REST API redirects or ends an inbound call in progress, and
SIGTERM's drain hangs up (BYE) a call still running after the grace period."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callxml.engine.api import OutboundCall
from callxml.engine.calls import EngineStopping
from callxml.engine.server import Engine
from callxml.engine.store import SqliteStore
from support.engine import ACCOUNT_SID, API_AUTH, WebApp, engine_config, running_engine, sip_port
from support.sipp import Sipp, SippRun
from support.waiting import until

pytestmark = pytest.mark.peer
LONG = '<Response><Say>Hi</Say><Pause length="60"/></Response>'


@pytest.fixture
async def app() -> WebApp:
    web_app = WebApp(
        {
            "/voice": lambda form: LONG,
            "/bye": lambda form: "<Response><Hangup/></Response>",
        }
    )
    await web_app.start()
    yield web_app  # type: ignore[misc]
    await web_app.stop()


def plain_domain(tmp_path: Path, app: WebApp, *, grace: float = 2) -> Any:
    """An engine with the domain ``plain.test`` running the long ``/voice`` document."""
    return engine_config(
        tmp_path,
        [{"name": "plain.test", "voice_url": app.url("/voice")}],
        extra={"engine": {"shutdown_grace": grace}},
    )


async def live_sid(engine: Engine) -> str:
    """The sid of the call in progress, found as a client would: in the records."""
    store = engine.store
    assert store is not None
    records = await until(
        lambda: store.list_calls(ACCOUNT_SID, status="in-progress"), what="a call in progress"
    )
    return records[0].sid


async def caller(sipp: Sipp, engine: Engine) -> SippRun:
    """A SIPp caller on the domain ``plain.test``, started."""
    target = f"127.0.0.1:{sip_port(engine, 'udp')}"
    return await sipp.uac("uac_answered", "udp", target, "ivr", keys={"domain": "plain.test"})


async def test_rest_redirect_of_a_live_call(tmp_path: Path, sipp: Sipp, app: WebApp) -> None:
    config = plain_domain(tmp_path, app)
    async with running_engine(config) as engine:
        sipp_caller = await caller(sipp, engine)
        sid = await live_sid(engine)
        url = f"http://127.0.0.1:{engine.http_port}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json"
        async with aiohttp.ClientSession(headers=API_AUTH) as http:
            async with http.post(url, data={"Url": app.url("/bye")}) as resp:
                assert resp.status == 200, await resp.text()
            outcome = await sipp_caller.result()
            # the redirected document hung up: SIPp got our BYE
            assert outcome.returncode == 0, outcome.explain()

            async def record_ended() -> Any:
                async with http.get(url) as resp:
                    record = await resp.json()
                return record if record["status"] != "in-progress" else None

            # the final status is written just after the BYE
            record = await until(record_ended, timeout=5)
    assert app.paths()[-1] == "/bye"
    assert record["status"] == "completed"


async def test_rest_status_completed_ends_a_live_call(
    tmp_path: Path, sipp: Sipp, app: WebApp
) -> None:
    config = plain_domain(tmp_path, app)
    async with running_engine(config) as engine:
        sipp_caller = await caller(sipp, engine)
        sid = await live_sid(engine)
        live = engine.live(sid)
        assert live is not None and live.sid == sid and not live.ended.is_set()
        url = f"http://127.0.0.1:{engine.http_port}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json"
        async with aiohttp.ClientSession(headers=API_AUTH) as http:
            async with http.post(url, data={"Status": "completed"}) as resp:
                body = await resp.json()
            gone = engine.live(sid)  # the answer comes once the engine is done with the call
            async with http.post(url, data={"Status": "completed"}) as resp:
                again = (resp.status, await resp.json())
            outcome = await sipp_caller.result()
    assert outcome.returncode == 0, outcome.explain()
    assert body["status"] == "completed"
    assert gone is None and live.ended.is_set()
    assert again[0] == 200 and again[1]["status"] == "completed"  # ending it again: no change


async def test_shutdown_hangs_up_calls_after_the_grace_period(
    tmp_path: Path, sipp: Sipp, app: WebApp
) -> None:
    config = plain_domain(tmp_path, app, grace=0.5)
    async with running_engine(config) as engine:
        sipp_caller = await caller(sipp, engine)
        sid = await live_sid(engine)
        await engine.stop()  # the context manager's stop() is then a no-op
        assert not engine.accepting
    outcome = await sipp_caller.result()
    assert outcome.returncode == 0, outcome.explain()  # BYE after the grace period
    store = SqliteStore(config.database)
    try:
        record = store.get_call(sid)
    finally:
        store.close()
    assert record is not None and record.status == "completed" and record.end_time


async def test_during_the_drain_new_calls_are_refused_and_live_ones_still_reachable(
    tmp_path: Path, sipp: Sipp, app: WebApp
) -> None:
    config = plain_domain(tmp_path, app, grace=1)
    async with running_engine(config) as engine:
        sipp_caller = await caller(sipp, engine)
        sid = await live_sid(engine)
        stopping = asyncio.create_task(engine.stop())
        await asyncio.sleep(0.1)  # stop() has begun: the grace period runs
        account = config.accounts[0]
        with pytest.raises(EngineStopping):
            await engine.originate(
                account,
                OutboundCall(to="sip:x@127.0.0.1", from_="a", url=None, twiml="<Response/>"),
            )
        base = f"http://127.0.0.1:{engine.http_port}/2010-04-01/Accounts/{ACCOUNT_SID}"
        async with aiohttp.ClientSession(headers=API_AUTH) as http:
            form = {"To": "sip:x@127.0.0.1", "From": "a", "Twiml": "<Response/>"}
            async with http.post(f"{base}/Calls.json", data=form) as resp:
                refused = (resp.status, await resp.json())
        during = engine.live(sid)
        await stopping
        after = engine.live(sid)
    outcome = await sipp_caller.result()
    # hung up (BYE) once the grace period was over
    assert outcome.returncode == 0, outcome.explain()
    assert refused[0] == 503 and refused[1]["code"] == 20503
    assert during is not None and after is None
    store = SqliteStore(config.database)
    try:
        assert [r.sid for r in store.list_calls(ACCOUNT_SID)] == [sid]  # refusals left no record
    finally:
        store.close()
