"""A Media Streams app for tests: a real aiohttp WebSocket server speaking Twilio's protocol.

Engine and simulator tests point ``<Connect><Stream>``/``<Start><Stream>`` at it. Every socket
it accepts becomes a :class:`StreamSession` that keeps each message the engine sent (parsed
JSON, in order), the handshake's headers, and the audio of each track decoded to PCM; the test's
``behaviour`` coroutine plays the app's part on it (send audio, marks, ``clear``, close...).
Served over ``wss://`` with a test certificate, or plain ``ws://``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from callxml.media.g711 import ulaw_decode, ulaw_encode
from support.waiting import until
from support.web import serve_app

__all__ = ["MediaStreamApp", "StreamSession", "media_stream_app"]

Behaviour = Callable[["StreamSession"], Awaitable[None]]


class StreamSession:
    """One accepted socket: what the engine sent, and the app's side of it."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.path = request.path
        self.headers = dict(request.headers)
        self.messages: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        self._arrived = asyncio.Event()

    # -- what the engine sent --------------------------------------------------------------

    def events(self) -> list[str]:
        return [m.get("event", "") for m in self.messages]

    def of(self, event: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("event") == event]

    @property
    def start(self) -> dict[str, Any]:
        return self.of("start")[0]

    def audio(self, track: str = "inbound") -> bytes:
        """The PCM of every ``media`` message of ``track``, in order."""
        payloads = [
            base64.b64decode(m["media"]["payload"])
            for m in self.of("media")
            if m["media"]["track"] == track
        ]
        return ulaw_decode(b"".join(payloads)) if payloads else b""

    async def wait(self, event: str, count: int = 1, timeout: float = 10.0) -> dict[str, Any]:
        """The ``count``-th message of ``event`` once it has arrived (bounded wait)."""
        await until(lambda: len(self.of(event)) >= count, timeout, what=f"{count} {event!r}")
        return self.of(event)[count - 1]

    async def wait_audio(self, seconds: float, track: str = "inbound") -> bytes:
        await until(
            lambda: len(self.audio(track)) >= seconds * 16000,
            15.0,
            what=f"{seconds} s of {track} audio",
        )
        return self.audio(track)

    # -- the app's side --------------------------------------------------------------------------

    @property
    def stream_sid(self) -> str:
        return str(self.start["streamSid"])

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def send_audio(self, pcm: bytes, *, chunk_ms: int = 20) -> None:
        """``pcm`` as μ-law ``media`` messages of ``chunk_ms`` each, sent at once."""
        step = 16 * chunk_ms
        for start in range(0, len(pcm), step):
            payload = base64.b64encode(ulaw_encode(pcm[start : start + step])).decode()
            await self.send(
                {"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}}
            )

    async def send_mark(self, name: str) -> None:
        await self.send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    async def send_clear(self) -> None:
        await self.send({"event": "clear", "streamSid": self.stream_sid})

    async def close(self) -> None:
        await self.ws.close()


class MediaStreamApp:
    """The server: each accepted socket is a :class:`StreamSession` in :attr:`sessions`, run by
    ``behaviour`` (default: just listen) while its messages are collected."""

    def __init__(self, behaviour: Behaviour | None = None, *, read: bool = True) -> None:
        self.behaviour = behaviour
        self.read = read  # False: a dead app that accepts the socket and never reads it
        self.sessions: list[StreamSession] = []
        self.port = 0
        self.scheme = "ws"
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, path: str = "/stream") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self.scheme = "wss" if ssl_context is not None else "ws"
        self._runner, self.port = await serve_app(
            app, ssl_context=ssl_context, access_log=None, shutdown_timeout=0.5
        )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def session(self, index: int = 0, timeout: float = 10.0) -> StreamSession:
        await until(lambda: len(self.sessions) > index, timeout, what=f"stream #{index + 1}")
        return self.sessions[index]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/not-a-socket":
            return web.Response(text="no websocket here")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        session = StreamSession(ws, request)
        self.sessions.append(session)
        behaviour = None
        if self.behaviour is not None:
            behaviour = asyncio.ensure_future(self.behaviour(session))
            self._tasks.add(behaviour)
            behaviour.add_done_callback(self._tasks.discard)
        try:
            if not self.read:
                await asyncio.sleep(3600)  # a dead app: never reads (cancelled at stop)
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    session.messages.append(json.loads(msg.data))
        finally:
            session.closed.set()
            if behaviour is not None and not behaviour.done():
                behaviour.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await behaviour
        return ws


@contextlib.asynccontextmanager
async def media_stream_app(
    behaviour: Behaviour | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    read: bool = True,
) -> AsyncIterator[MediaStreamApp]:
    """A started :class:`MediaStreamApp`, stopped on exit."""
    app = MediaStreamApp(behaviour, read=read)
    await app.start(ssl_context)
    try:
        yield app
    finally:
        await app.stop()
