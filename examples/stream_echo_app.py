"""An example voice agent on a WebSocket for callxml (aiohttp): Twilio's Media Streams protocol.

``/voice`` answers ``<Connect><Stream url="ws://…/media">``: callxml opens the socket, sends
``connected`` and ``start``, then the caller's audio as μ-law ``media`` messages, and plays back
whatever ``media`` the app sends. This app greets the caller with a two-note chime followed by a
``mark`` (callxml sends the mark back once the chime has played), then echoes the caller's
voice back half a second late — where a real agent would answer with synthesised speech. The
caller's keys arrive as ``dtmf``: ``*`` drops the audio not yet played (``clear``), ``#`` ends
the conversation by closing the socket, after which the ``<Connect action>`` (``/goodbye``) runs.
Webhooks and the WebSocket handshake must carry a valid ``X-Twilio-Signature`` (the handshake's
signs the stream URL as written, with no parameters).

Run it::

    python examples/stream_echo_app.py --port 8090 --auth-token secret
    callxml simulate http://127.0.0.1:8090/voice --auth-token secret --digits '#'

In production serve it behind a TLS proxy and pass ``--stream-base wss://agent.example.com``:
callxml verifies the certificate (over plain ``ws://`` it warns ``insecure-stream``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import sys
from collections import deque
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from aiohttp import WSMsgType, web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from webhook_kit import signature_required, twiml

from callxml.media.g711 import ulaw_encode
from callxml.media.tone import sine

DEFAULT_TOKEN = "example-auth-token"
ECHO_DELAY = 0.5  # seconds between hearing the caller and playing it back
CHIME = ((660.0, 800), (880.0, 800))  # (Hz, ms): the greeting

#: Where callxml reaches the socket from outside (``wss://agent.example.com``), or "" for this
#: server itself over ``ws://`` (fine on loopback; callxml warns ``insecure-stream``).
STREAM_BASE: web.AppKey[str] = web.AppKey("stream_base", str)
#: Every message callxml sent, per stream (streamSid -> messages), for a look afterwards.
STREAMS: web.AppKey[dict[str, list[dict[str, Any]]]] = web.AppKey("streams", dict)


def stream_url(request: web.Request) -> str:
    """The socket's URL as written in the document (and so as signed): under ``--stream-base``
    behind a TLS proxy, else this server over ``ws://``."""
    base = request.app[STREAM_BASE] or f"ws://{request.host}"
    return base.rstrip("/") + "/media"


async def voice(request: web.Request) -> web.Response:
    params = await request.post() if request.method == "POST" else request.query
    caller = str(params.get("From", ""))
    return twiml(
        f'<Connect action="/goodbye"><Stream url={quoteattr(stream_url(request))}>'
        f'<Parameter name="caller" value={quoteattr(caller)}/></Stream></Connect>',
        "<Say>The agent could not be reached.</Say>",  # not reached: <Connect> has an action
    )


async def goodbye(request: web.Request) -> web.Response:
    return twiml("<Say>Thank you for talking to the echo agent. Goodbye.</Say>", "<Hangup/>")


def media(stream_sid: str, payload: bytes) -> str:
    return json.dumps(
        {
            "event": "media",
            "streamSid": stream_sid,
            "media": {"payload": base64.b64encode(payload).decode()},
        }
    )


class EchoAgent:
    """One conversation: greet, then echo the caller ``ECHO_DELAY`` late until ``#``."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.stream_sid = ""
        self.greeted = False  # the greeting's mark came back: the chime has played
        self._pending: deque[tuple[float, bytes]] = deque()  # (when to send, μ-law)
        self._wake = asyncio.Event()

    async def greet(self) -> None:
        for frequency, ms in CHIME:
            pcm = sine(frequency, ms, amplitude=0.3)
            for start in range(0, len(pcm), 320):  # 20 ms per message, like Twilio's
                await self.ws.send_str(
                    media(self.stream_sid, ulaw_encode(pcm[start : start + 320]))
                )
        mark = {"event": "mark", "streamSid": self.stream_sid, "mark": {"name": "greeting"}}
        await self.ws.send_str(json.dumps(mark))

    def heard(self, payload: bytes) -> None:
        """The caller's audio: played back later (not while the greeting plays)."""
        if self.greeted:
            self._pending.append((asyncio.get_running_loop().time() + ECHO_DELAY, payload))
            self._wake.set()

    async def echo(self) -> None:
        """Send each heard frame back once its delay is over."""
        loop = asyncio.get_running_loop()
        while not self.ws.closed:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, payload = self._pending[0]
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
                continue
            self._pending.popleft()
            await self.ws.send_str(media(self.stream_sid, payload))

    async def on_message(self, message: dict[str, Any]) -> bool:
        """Handle one message from callxml; False to end the conversation."""
        event = message.get("event")
        if event == "start":
            self.stream_sid = str(message["start"]["streamSid"])
            await self.greet()
        elif event == "media":
            self.heard(base64.b64decode(message["media"]["payload"]))
        elif event == "mark" and message["mark"]["name"] == "greeting":
            self.greeted = True
        elif event == "dtmf":
            digit = message["dtmf"]["digit"]
            if digit == "#":
                return False
            if digit == "*":  # drop what has not played yet, here and in callxml
                self._pending.clear()
                await self.ws.send_str(json.dumps({"event": "clear", "streamSid": self.stream_sid}))
        elif event == "stop":
            return False
        return True


async def media_socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    agent = EchoAgent(ws)
    echo = asyncio.ensure_future(agent.echo())
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            sid = str(message.get("streamSid", ""))
            request.app[STREAMS].setdefault(sid, []).append(message)
            if not await agent.on_message(message):
                break
    finally:
        echo.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await echo
        await ws.close()  # callxml then runs the <Connect action>
    return ws


def make_app(auth_token: str = DEFAULT_TOKEN, *, stream_base: str = "") -> web.Application:
    """Build the echo agent; ``auth_token`` must be the one callxml signs with,
    ``stream_base`` the public ``wss://`` origin of the socket (see :data:`STREAM_BASE`)."""
    # the WebSocket handshake is signed over the stream URL as written in the document
    app = web.Application(
        middlewares=[
            signature_required(
                auth_token, lambda r: stream_url(r) if r.path == "/media" else str(r.url)
            )
        ]
    )
    app[STREAM_BASE] = stream_base
    app[STREAMS] = {}
    for path, handler in (("/voice", voice), ("/goodbye", goodbye)):
        app.router.add_get(path, handler, allow_head=False)
        app.router.add_post(path, handler)
    app.router.add_get("/media", media_socket)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--auth-token", default=os.environ.get("CALLXML_AUTH_TOKEN", DEFAULT_TOKEN))
    parser.add_argument(
        "--stream-base", default="", help="public wss:// origin, e.g. wss://agent.example.com"
    )
    args = parser.parse_args()
    app = make_app(args.auth_token, stream_base=args.stream_base)
    web.run_app(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
