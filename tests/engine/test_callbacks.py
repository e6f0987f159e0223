"""Status callbacks against a real local HTTP server: parameters, signing, retries, filtering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from callxml import signature
from callxml.engine.callbacks import CallbackTarget, StatusCallbacks
from callxml.engine.store import CallRecord, SqliteStore
from callxml.webhooks import WebhookClient

TOKEN = "callback-token-123456"


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[dict[str, str]], list[int]]]:
    received: list[dict[str, str]] = []
    fail_first: list[int] = [1]  # how many requests to fail with 500 first

    async def handler(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        url = str(request.url)
        assert signature.validate(TOKEN, url, form, request.headers["X-Twilio-Signature"])
        if fail_first[0] > 0:
            fail_first[0] -= 1
            return web.Response(status=500)
        received.append(form)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/status", handler)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    try:
        yield str(srv.make_url("/status")), received, fail_first
    finally:
        await srv.close()


async def test_callbacks_are_retried_and_carry_twilio_parameters(
    server: tuple[str, list[dict[str, str]], list[int]], tmp_path: Path
) -> None:
    url, received, _ = server
    store = SqliteStore(tmp_path / "cb.db")
    record = CallRecord(
        "CA" + "1" * 32, "AC" + "2" * 32, "outbound-api", "+1555", "sip:b@x", "initiated"
    )
    store.create_call(record)
    async with WebhookClient(auth_token=TOKEN, timeout=5) as client:
        callbacks = StatusCallbacks(client, store, retries=2, backoff=0.01)
        callbacks.start()
        target = CallbackTarget(url, "POST", ("initiated", "answered", "completed"))
        assert callbacks.notify(target, record)
        assert not callbacks.notify(
            target, record.__class__(**{**_fields(record), "status": "ringing"})
        )
        assert callbacks.notify(target, _with(record, status="in-progress"))
        assert callbacks.notify(
            target, _with(record, status="completed", duration=7, sip_response_code=200)
        )
        await callbacks.close()

    assert [r["CallStatus"] for r in received] == ["initiated", "in-progress", "completed"]
    assert [r["SequenceNumber"] for r in received] == ["0", "1", "2"]
    assert received[2]["CallDuration"] == "7" and received[2]["SipResponseCode"] == "200"
    assert received[0]["CallSid"] == record.sid and received[0]["Timestamp"].endswith("+0000")
    attempts = store.list_events(record.sid, kind="status-callback")
    assert [e.data.get("status") for e in attempts] == [None, 204, 204, 204]
    assert attempts[0].data["error_code"]


async def test_notify_never_waits_for_a_dead_endpoint(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "cb.db")
    record = CallRecord("CA" + "3" * 32, "AC" + "2" * 32, "inbound", "a", "b", "completed")
    async with WebhookClient(auth_token=TOKEN, timeout=1) as client:
        callbacks = StatusCallbacks(client, store, retries=1, backoff=0.01)
        callbacks.start()
        # Port 9 on loopback: connection refused. notify returns at once regardless.
        assert callbacks.notify(CallbackTarget("http://127.0.0.1:9/x"), record)
        await asyncio.wait_for(callbacks.close(drain_timeout=10), 20)
    attempts = store.list_events(record.sid, kind="status-callback")
    assert len(attempts) == 2 and all("error" in e.data for e in attempts)


def _fields(record: CallRecord) -> dict[str, object]:
    return {f: getattr(record, f) for f in record.__dataclass_fields__}


def _with(record: CallRecord, **changes: object) -> CallRecord:
    return CallRecord(**{**_fields(record), **changes})  # type: ignore[arg-type]
