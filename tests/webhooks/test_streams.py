"""The Media Streams messages and the socket that never makes the call wait.

The message shapes are checked field by field against Twilio's protocol; the app's messages are
validated and bounded; :class:`StreamConnection` is driven with a socket that never accepts a
write (the seam below aiohttp), so its queue must stay bounded and every call return at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import aiohttp
import pytest

from callxml.errors import WebhookError
from callxml.webhooks.streams import (
    CLOSE_TIMEOUT,
    CONTROL_ROOM,
    PROTOCOL_ERROR,
    SEND_QUEUE,
    AppClear,
    AppMark,
    AppMedia,
    StreamConnection,
    StreamMessages,
    check_stream_url,
    open_stream,
    parse_app_message,
    status_callback_params,
)


def messages() -> StreamMessages:
    return StreamMessages(
        stream_sid="MZ1",
        account_sid="AC1",
        call_sid="CA1",
        tracks=("inbound", "outbound"),
        parameters=(("a", "1"), ("b", "2")),
    )


def test_messages_follow_twilios_protocol() -> None:
    m = messages()
    connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert json.loads(m.connected()) == connected
    start = json.loads(m.start())
    assert start == {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": "AC1",
            "streamSid": "MZ1",
            "callSid": "CA1",
            "tracks": ["inbound", "outbound"],
            "customParameters": {"a": "1", "b": "2"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": "MZ1",
    }
    first = json.loads(m.media("inbound", b"\xff" * 160, 20))
    other = json.loads(m.media("outbound", b"\x7f" * 160, 20))
    second = json.loads(m.media("inbound", b"\xff" * 160, 40))
    assert first["media"] == {
        "track": "inbound",
        "chunk": "1",
        "timestamp": "20",
        "payload": base64.b64encode(b"\xff" * 160).decode(),
    }
    assert (other["media"]["chunk"], second["media"]["chunk"]) == ("1", "2")  # per track
    assert [first["sequenceNumber"], other["sequenceNumber"], second["sequenceNumber"]] == [
        "2",
        "3",
        "4",
    ]
    assert json.loads(m.dtmf("7"))["dtmf"] == {"track": "inbound_track", "digit": "7"}
    assert json.loads(m.mark("x"))["mark"] == {"name": "x"}
    assert json.loads(m.stop()) == {
        "event": "stop",
        "sequenceNumber": "7",
        "stop": {"accountSid": "AC1", "callSid": "CA1"},
        "streamSid": "MZ1",
    }


def test_status_callback_parameters() -> None:
    params = dict(
        status_callback_params(
            account_sid="AC1",
            call_sid="CA1",
            stream_sid="MZ1",
            name="tap",
            event="stream-error",
            timestamp="2024-01-01T00:00:00.000Z",
            error="no answer",
        )
    )
    assert params == {
        "AccountSid": "AC1",
        "CallSid": "CA1",
        "StreamSid": "MZ1",
        "StreamName": "tap",
        "StreamEvent": "stream-error",
        "StreamError": "no answer",
        "Timestamp": "2024-01-01T00:00:00.000Z",
    }


def test_app_messages_are_parsed_and_checked() -> None:
    payload = base64.b64encode(b"\x01\x02").decode()
    media = {"event": "media", "streamSid": "MZ1", "media": {"payload": payload}}
    assert parse_app_message(json.dumps(media)) == AppMedia(b"\x01\x02")
    assert parse_app_message('{"event":"mark","mark":{"name":"m1"}}') == AppMark("m1")
    assert parse_app_message('{"event":"clear"}') == AppClear()
    for bad in (
        "not json",
        "[]",
        '{"event":"media","media":{"payload":"***"}}',
        '{"event":"media"}',
        '{"event":"mark","mark":{}}',
        '{"event":"dance"}',
        '{"event":"media","media":{"payload":"' + "A" * 600_000 + '"}}',
    ):
        with pytest.raises(WebhookError) as caught:
            parse_app_message(bad)
        assert caught.value.error_code == PROTOCOL_ERROR


def test_only_websocket_urls_are_opened() -> None:
    assert check_stream_url("wss://app.example.com/s") == "wss://app.example.com/s"
    for bad in ("https://app.example.com/s", "wss:///path", "stream"):
        with pytest.raises(WebhookError):
            check_stream_url(bad)


async def test_a_server_that_does_not_upgrade_is_a_handshake_error(serve: Any) -> None:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/s", hello)
    base = await serve(app)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(WebhookError) as caught:
            await open_stream(session, base.replace("http", "ws") + "/s", auth_token="t")
    assert caught.value.error_code == 31920


class StuckSocket:
    """A socket whose writes never complete: an app that stopped reading."""

    closed = False

    def __init__(self) -> None:
        self.writes = 0

    async def send_str(self, text: str) -> None:
        self.writes += 1
        await asyncio.sleep(3600)

    async def close(self) -> bool:
        self.closed = True
        return True


async def test_a_stuck_app_gets_a_bounded_queue_and_never_blocks() -> None:
    socket = StuckSocket()
    conn = StreamConnection(socket)  # type: ignore[arg-type]
    conn.start()
    started = time.monotonic()
    accepted = [conn.send(f"media {i}") for i in range(SEND_QUEUE + 300)]
    controls = [conn.send(f"mark {i}", control=True) for i in range(CONTROL_ROOM + 10)]
    assert time.monotonic() - started < 1.0  # every send returned at once
    await asyncio.sleep(0.05)
    # one message is stuck in the socket; the queue holds at most SEND_QUEUE media messages
    assert sum(accepted) <= SEND_QUEUE + 1 and conn.dropped >= 300
    assert sum(controls) >= CONTROL_ROOM - 1  # control messages have room of their own
    closing = time.monotonic()
    await conn.close("stop")
    assert time.monotonic() - closing < CLOSE_TIMEOUT + 2  # bounded, though nothing was written
    assert socket.closed and socket.writes == 1
    assert not conn.send("late")  # closed: nothing more is queued
