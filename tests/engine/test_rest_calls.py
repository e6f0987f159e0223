"""REST-originated calls (``POST Calls.json``) to a SIPp callee: the flow runs on the answered
call, the record moves through its statuses, status callbacks are posted in order, and
Events.json shows the webhook exchanges; a busy callee ends the call ``busy``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from callxml.engine.api import OutboundCall
from callxml.engine.calls import InvalidTarget
from callxml.engine.server import Engine
from support.engine import (
    ACCOUNT_SID,
    API_AUTH,
    WebApp,
    engine_config,
    originate_twiml,
    running_engine,
    wait_status,
)
from support.sipp import Sipp

pytestmark = pytest.mark.peer


def api(engine: Engine, path: str) -> str:
    return f"http://127.0.0.1:{engine.http_port}/2010-04-01/Accounts/{ACCOUNT_SID}/{path}"


@pytest.fixture
async def app() -> WebApp:
    web_app = WebApp(
        {
            "/voice": lambda form: "<Response><Say>Hello from the API</Say><Hangup/></Response>",
            "/status": lambda form: "",
        }
    )
    await web_app.start()
    yield web_app  # type: ignore[misc]
    await web_app.stop()


async def test_rest_call_runs_its_flow_and_posts_status_callbacks(
    tmp_path: Path, sipp: Sipp, app: WebApp
) -> None:
    callee = await sipp.uas("uas_answer", media_port=True)
    async with running_engine(engine_config(tmp_path, [])) as engine:
        form = [
            ("To", f"sip:bob@127.0.0.1:{callee.port}?X-Ticket=7"),
            ("From", "sip:alice@example.com"),
            ("Url", app.url("/voice")),
            ("StatusCallback", app.url("/status")),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing answered"),
            ("StatusCallbackEvent", "completed"),
            ("Timeout", "10"),
        ]
        async with aiohttp.ClientSession(headers=API_AUTH) as http:
            async with http.post(api(engine, "Calls.json"), data=form) as resp:
                body = await resp.json()
                assert resp.status == 201, body
            sid = body["sid"]
            assert body["status"] == "queued" and body["direction"] == "outbound-api"
            record = await wait_status(engine, sid, {"completed", "failed", "busy", "no-answer"})
            outcome = await callee.result()
            async with http.get(api(engine, f"Calls/{sid}.json")) as resp:
                call = await resp.json()
            async with http.get(api(engine, f"Calls/{sid}/Events.json")) as resp:
                events = (await resp.json())["events"]
    # SIPp saw X-Ticket, answered, and got our BYE
    assert outcome.returncode == 0, outcome.explain()
    assert record.status == "completed", record
    assert call["status"] == "completed" and call["sip_response_code"] == 200
    assert int(call["duration"]) >= 0
    voice = next(form for path, form in app.requests if path == "/voice")
    assert voice["CallStatus"] == "in-progress" and voice["Direction"] == "outbound-api"
    assert voice["CallSid"] == sid
    callbacks = [form for path, form in app.requests if path == "/status"]
    assert [c["CallStatus"] for c in callbacks] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert [c["SequenceNumber"] for c in callbacks] == ["0", "1", "2", "3"]
    assert callbacks[-1]["SipResponseCode"] == "200" and "CallDuration" in callbacks[-1]
    assert events[0]["request"]["url"] == app.url("/voice")
    assert events[0]["request"]["parameters"]["CallSid"] == sid
    assert events[0]["response"]["response_code"] == 200


async def test_rest_call_to_busy_callee(tmp_path: Path, sipp: Sipp, app: WebApp) -> None:
    callee = await sipp.uas("uas_busy", media_port=True)
    async with running_engine(engine_config(tmp_path, [])) as engine:
        form = {
            "To": f"sip:bob@127.0.0.1:{callee.port}",
            "From": "+15550100",
            "Twiml": "<Response><Say>never</Say></Response>",
            "StatusCallback": app.url("/status"),
        }
        async with aiohttp.ClientSession(headers=API_AUTH) as http:
            async with http.post(api(engine, "Calls.json"), data=form) as resp:
                sid = (await resp.json())["sid"]
            record = await wait_status(engine, sid, {"busy", "failed", "completed"})
            outcome = await callee.result()
            async with http.post(
                api(engine, f"Calls/{sid}.json"), data={"Url": app.url("/x")}
            ) as resp:
                redirect = await resp.json()
    assert outcome.returncode == 0, outcome.explain()
    assert record.status == "busy" and record.sip_response_code == 486
    assert "/voice" not in app.paths()
    assert [form["CallStatus"] for path, form in app.requests if path == "/status"] == ["busy"]
    assert redirect["code"] == 21220  # not in progress: cannot redirect


async def test_invalid_to_is_400(tmp_path: Path) -> None:
    answers = []
    async with (
        running_engine(engine_config(tmp_path, [])) as engine,
        aiohttp.ClientSession(headers=API_AUTH) as http,
    ):
        for to in ("sip:", "+15550100", "client:", "client:a@b"):
            form = {"To": to, "From": "x", "Twiml": "<Response/>"}
            async with http.post(api(engine, "Calls.json"), data=form) as resp:
                answers.append((resp.status, await resp.json()))
        assert engine.store is not None
        assert engine.store.count_calls(ACCOUNT_SID) == 0
    (bad_status, bad), (no_trunk_status, no_trunk), *clients = answers
    assert bad_status == 400 and bad["code"] == 21211
    assert no_trunk_status == 400 and no_trunk["code"] == 21211 and "trunk" in no_trunk["message"]
    for status, body in clients:  # a client identity is a user name
        assert status == 400 and body["code"] == 21211 and "client identity" in body["message"]


async def test_a_client_not_registered_is_no_answer(tmp_path: Path) -> None:
    """REST ``To=client:…`` with no registered device: 480 Temporarily Unavailable, as a
    registrar answers for an address of record without bindings (RFC 3261 §10.3)."""
    async with running_engine(engine_config(tmp_path, [])) as engine:
        sid = await originate_twiml(engine, "client:nobody", "<Response/>")
        record = await wait_status(engine, sid, {"no-answer"})
    assert record.sip_response_code == 480 and record.to == "client:nobody"


@pytest.mark.parametrize("how", ["ring-timeout", "rest-cancel"])
async def test_rest_call_not_answered(tmp_path: Path, sipp: Sipp, app: WebApp, how: str) -> None:
    callee = await sipp.uas("uas_ring", media_port=True)
    async with running_engine(engine_config(tmp_path, [])) as engine:
        form = {
            "To": f"sip:carol@127.0.0.1:{callee.port}",
            "From": "sip:alice@example.com",
            "Url": app.url("/voice"),
            "Timeout": "1" if how == "ring-timeout" else "30",
        }
        async with aiohttp.ClientSession(headers=API_AUTH) as http:
            async with http.post(api(engine, "Calls.json"), data=form) as resp:
                sid = (await resp.json())["sid"]
            await wait_status(engine, sid, {"ringing"})
            if how == "rest-cancel":
                url = api(engine, f"Calls/{sid}.json")
                async with http.post(url, data={"Status": "canceled"}) as resp:
                    assert resp.status == 200, await resp.text()
            record = await wait_status(engine, sid, {"no-answer", "canceled", "failed", "busy"})
            outcome = await callee.result()
    assert outcome.returncode == 0, outcome.explain()  # SIPp saw our CANCEL and its 487 was ACKed
    assert record.status == ("no-answer" if how == "ring-timeout" else "canceled")
    assert "/voice" not in app.paths()


async def test_originate_from_python(tmp_path: Path, sipp: Sipp) -> None:
    """An embedding program starts a call without the REST API; the call is live (``live``)
    from the moment ``originate`` returns until the engine is done with it."""
    callee = await sipp.uas("uas_answer", media_port=True)
    async with running_engine(engine_config(tmp_path, [])) as engine:
        account = engine.config.accounts[0]
        with pytest.raises(InvalidTarget):
            await engine.originate(
                account, OutboundCall(to="+15550100", from_="x", url=None, twiml="<Response/>")
            )
        record = await engine.originate(
            account,
            OutboundCall(
                to=f"sip:bob@127.0.0.1:{callee.port}?X-Ticket=7",
                from_="sip:alice@example.com",
                url=None,
                twiml="<Response><Say>Hi</Say><Hangup/></Response>",
                timeout=10,
            ),
        )
        live = engine.live(record.sid)
        assert record.status == "queued" and live is not None
        await asyncio.wait_for(live.ended.wait(), 20)
        outcome = await callee.result()
        assert engine.live(record.sid) is None
        assert engine.store is not None
        final = engine.store.get_call(record.sid)
        assert engine.store.count_calls(ACCOUNT_SID) == 1  # the refused target left no record
    assert outcome.returncode == 0, outcome.explain()
    assert final is not None and final.status == "completed" and final.sip_response_code == 200
