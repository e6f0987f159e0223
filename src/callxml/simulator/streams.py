"""Media streams in the simulator: the app's WebSocket is reached for real.

Owns what a simulated call does with ``StartStream``/``StopStream``: it opens the app's socket
for real (:mod:`callxml.webhooks.streams`, signed like the simulator's webhooks) and speaks
Twilio's Media Streams protocol to it, so an app can be tried with ``callxml simulate`` before
any phone rings. Simulated audio has no samples, so no ``media`` flows to the app; it gets
``connected``, ``start`` (with the ``customParameters``) and ``stop``, and on a bidirectional
stream (``<Connect>``) the caller's scripted keys as ``dtmf``. What the app sends back is read:
its ``media`` is counted as seconds the caller heard, each ``mark`` is echoed once the audio
before it has "played" (at once: the audio is virtual), ``clear`` is noted.

A ``<Connect>`` holds the simulated call for as long as the app keeps the socket open (real
time, bounded by ``hangup_after`` or :data:`MAX_CONNECT_SECONDS`), which is the time it takes
on the virtual clock too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from callxml.errors import WebhookError
from callxml.interpreter import actions as act
from callxml.webhooks.streams import (
    AppClear,
    AppMark,
    AppMedia,
    StreamClient,
    StreamConnection,
    StreamMessages,
    parse_app_message,
)

__all__ = ["MAX_CONNECT_SECONDS", "SimulatedStreams", "StreamRecord"]

#: The longest a simulated ``<Connect><Stream>`` waits for the app to close the socket.
MAX_CONNECT_SECONDS = 60.0


@dataclass(slots=True)
class StreamRecord:
    """One media stream of a simulated call.

    ``sent`` are the events sent to the app in order (``connected``, ``start``, ``dtmf``...,
    ``stop``); ``heard`` the seconds of audio the app sent (μ-law, 8000 octets a second);
    ``marks`` the marks echoed back; ``error`` why the stream failed (empty if it did not) and
    ``code`` Twilio's number for it.
    """

    sid: str
    name: str
    url: str
    bidirectional: bool
    tracks: tuple[str, ...]
    parameters: tuple[tuple[str, str], ...] = ()
    sent: list[str] = field(default_factory=list)
    heard: float = 0.0
    marks: list[str] = field(default_factory=list)
    clears: int = 0
    error: str = ""
    code: int | None = None  # Twilio's error code when the stream failed
    closed_by_app: bool = False


class SimulatedStreams:
    """The streams of one simulated call. ``say(text)`` writes the transcript."""

    def __init__(
        self,
        *,
        account_sid: str,
        call_sid: str,
        auth_token: str,
        say: Callable[[str], None],
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.call_sid = call_sid
        self.auth_token = auth_token
        self.records: list[StreamRecord] = []
        self._say = say
        self._session = session
        self._owns_session = session is None
        self._open: dict[str, tuple[StreamRecord, StreamConnection, StreamMessages]] = {}

    def _client(self) -> StreamClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return StreamClient(self._session, auth_token=self.auth_token)

    async def start(self, action: act.StartStream) -> StreamRecord:
        """Open the stream; for a fork, it stays open until :meth:`stop` or :meth:`close`."""
        record = StreamRecord(
            action.sid,
            action.name,
            action.url,
            action.bidirectional,
            action.tracks,
            action.parameters,
        )
        self.records.append(record)
        kind = "bidirectional stream" if action.bidirectional else "stream"
        self._say(f"Stream {action.name}: {kind} to {action.url} ({', '.join(action.tracks)})")
        messages = StreamMessages(
            stream_sid=action.sid,
            account_sid=self.account_sid,
            call_sid=self.call_sid,
            tracks=action.tracks,
            parameters=action.parameters,
        )
        try:
            conn = await self._client().open(action.url)
        except WebhookError as exc:
            record.error, record.code = str(exc), exc.error_code
            self._say(f"  ✗ stream failed: {exc} (error {exc.error_code})")
            return record
        for name, text in (("connected", messages.connected()), ("start", messages.start())):
            conn.send(text, control=True)
            record.sent.append(name)
        self._open[action.sid] = (record, conn, messages)
        self._say("  connected; start sent")
        return record

    async def converse(self, record: StreamRecord, keys: str, limit: float) -> float:
        """Hold a ``<Connect>`` stream until the app closes it (at most ``limit`` real
        seconds): send ``keys`` as ``dtmf``, read what the app sends. Returns the seconds it
        took, and closes the stream."""
        entry = self._open.get(record.sid)
        if entry is None:
            return 0.0
        _, conn, messages = entry
        for key in keys:
            conn.send(messages.dtmf(key), control=True)
            record.sent.append("dtmf")
        started = time.monotonic()
        octets = 0

        async def read() -> None:
            nonlocal octets
            async for data in conn.messages():
                try:
                    message = parse_app_message(data)
                except WebhookError as exc:
                    record.error, record.code = str(exc), exc.error_code
                    return
                match message:
                    case AppMedia(payload=payload):
                        octets += len(payload)
                        record.heard = octets / 8000
                    case AppMark(name=name):
                        record.marks.append(name)
                        conn.send(messages.mark(name), control=True)
                        record.sent.append("mark")
                    case AppClear():
                        record.clears += 1
            record.closed_by_app = not conn.error

        try:
            await asyncio.wait_for(read(), max(0.0, limit))
        except TimeoutError:
            self._say(f"  the app kept the stream open {limit:g} s; the simulator stops it")
        elapsed = time.monotonic() - started
        heard = f", {record.heard:.1f} s of audio" if record.heard else ""
        marks = f", marks {', '.join(record.marks)}" if record.marks else ""
        self._say(f"  stream ended after {elapsed:.1f} s{heard}{marks}")
        await self.stop(record.sid)
        return elapsed

    async def stop(self, name: str | None) -> list[StreamRecord]:
        """Stop the stream called ``name`` (name or sid); ``None``: every fork. Returns the
        streams stopped."""
        stopped = []
        for sid, (record, conn, messages) in list(self._open.items()):
            if (name is None and not record.bidirectional) or name in (sid, record.name):
                del self._open[sid]
                if not record.closed_by_app:
                    record.sent.append("stop")
                await conn.close(None if record.closed_by_app else messages.stop())
                if not record.bidirectional:
                    self._say(f"Stream {record.name} stopped")
                stopped.append(record)
        return stopped

    async def close(self) -> list[StreamRecord]:
        """The call is over: stop every stream, release the session; returns those stopped."""
        stopped = []
        for sid in list(self._open):
            stopped += await self.stop(sid)
        if self._owns_session and self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()
            self._session = None
        return stopped
