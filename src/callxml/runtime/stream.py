"""Media streams on a real call: the call's audio to the app's WebSocket, and back.

Owns carrying out ``StartStream``/``StopStream`` (and the REST ``Streams.json`` that does the
same from outside) for one call: opening each socket (:class:`StreamOpener`, the engine's
:class:`~callxml.webhooks.streams.StreamClient`), sending Twilio's Media Streams messages
(:class:`~callxml.webhooks.streams.StreamMessages`) — the caller's audio as it arrives
(``inbound``), what the caller hears paced at 20 ms (``outbound``), key presses on
bidirectional streams — and, for a bidirectional stream (``<Connect>``), playing the app's audio
to the caller in order, echoing each ``mark`` once the audio before it has played and dropping
what is not played yet on ``clear``. It also sends each stream's status callbacks
(stream-started, stream-stopped, stream-error).

Nothing here may hold up the call's media: the caller's frames reach a stream through
:meth:`StreamConnection.send`, which queues or drops, never waits; the app's audio waits in a
bounded playout buffer; every stream is one task of the call that releases its socket in
``finally``; a stream that fails ends alone (a ``<Connect>`` then goes on with its action), the
call goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from callxml.errors import CallXmlError, LocalProtocolError, MediaError, WebhookError
from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from callxml.media.g711 import ulaw_decode, ulaw_encode
from callxml.runtime.leg import Leg
from callxml.webhooks.base import WebhookRequest
from callxml.webhooks.streams import (
    PROTOCOL_ERROR,
    AppClear,
    AppMark,
    AppMedia,
    StreamConnection,
    StreamMessages,
    parse_app_message,
    status_callback_params,
)

__all__ = ["MAX_STREAMS", "CallStreams", "StreamInfo", "StreamOpener"]

log = logging.getLogger(__name__)

#: The most streams open at once on one call (Twilio allows four forks).
MAX_STREAMS = 4
#: 20 ms of 8 kHz 16-bit PCM.
FRAME_OCTETS = 320
FRAME_SECONDS = 0.02
#: What the caller hears, waiting to be paced out on an ``outbound`` track (60 s).
MAX_OUTBOUND_FRAMES = 3000
#: The app's audio waiting to be played to the caller (60 s of PCM).
MAX_PLAYOUT_OCTETS = 60 * 8000 * 2
#: Marks waiting to be echoed.
MAX_MARKS = 1000
#: The most audio played in one go, so marks and ``clear`` stay prompt.
PLAY_CHUNK_OCTETS = 8000 * 2


class StreamOpener(Protocol):
    """Opens the app's socket: :class:`callxml.webhooks.streams.StreamClient`. Raises
    :class:`~callxml.errors.WebhookError` with a stream error code when it cannot."""

    async def open(self, url: str) -> StreamConnection: ...


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream as the REST API shows it."""

    sid: str
    name: str
    status: str  # in-progress | stopped
    updated: float  # Unix time


Spawn = Callable[[Coroutine[Any, Any, Any], str], Any]


class CallStreams:
    """The media streams of one call (see the module docstring).

    ``spawn(coro, name)`` runs a task in the call's task group; ``note(kind, data)`` writes the
    call log; ``callback(request)`` sends a status callback; ``clock()`` is the call's clock.
    """

    def __init__(
        self,
        *,
        opener: StreamOpener | None,
        leg: Leg,
        account_sid: str,
        call_sid: str,
        spawn: Spawn,
        note: Callable[[str, Mapping[str, Any]], Awaitable[None]],
        callback: Callable[[WebhookRequest], object],
        clock: Callable[[], float],
    ) -> None:
        self.opener = opener
        self.leg = leg
        self.account_sid = account_sid
        self.call_sid = call_sid
        self._spawn = spawn
        self._note = note
        self._callback = callback
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        self._ended: dict[str, StreamInfo] = {}  # for REST: the last few streams that stopped

    # -- control ---------------------------------------------------------------------------

    def start(
        self, action: act.StartStream, on_end: Callable[[ev.StreamEnded], None] | None = None
    ) -> StreamInfo:
        """Open the stream ``action`` describes (in its own task); ``on_end`` hears when it is
        over. Raises :class:`LocalProtocolError` past :data:`MAX_STREAMS` or for a name in use."""
        if len(self._streams) >= MAX_STREAMS:
            raise LocalProtocolError(f"at most {MAX_STREAMS} streams at once on a call")
        if any(s.name == action.name for s in self._streams.values()):
            raise LocalProtocolError(f"a stream named {action.name!r} is already running")
        stream = _Stream(self, action, on_end)
        self._streams[action.sid] = stream
        try:
            self._spawn(stream.run(), f"stream-{action.sid}")
        except BaseException:
            del self._streams[action.sid]
            raise
        return stream.info()

    def stop(self, name: str | None) -> list[StreamInfo]:
        """Stop the stream called ``name`` (a name or a StreamSid); ``None``: every fork."""
        stopped = []
        for stream in list(self._streams.values()):
            if (name is None and not stream.bidirectional) or name in (stream.sid, stream.name):
                stream.stop()
                stopped.append(stream.info())
        return stopped

    def stop_bidirectional(self) -> None:
        """A redirect ends a ``<Connect>``'s stream (forks live on)."""
        for stream in list(self._streams.values()):
            if stream.bidirectional:
                stream.stop()

    def find(self, name: str) -> StreamInfo | None:
        """The stream called ``name`` (name or sid), running or recently stopped."""
        for stream in self._streams.values():
            if name in (stream.sid, stream.name):
                return stream.info()
        return self._ended.get(name)

    async def close(self) -> None:
        """End every stream (the call is over) and wait for them, bounded."""
        streams = list(self._streams.values())
        for stream in streams:
            stream.stop()
        waits = [asyncio.ensure_future(s.done.wait()) for s in streams]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=10)
            for waiter in pending:
                waiter.cancel()

    @property
    def wants_audio(self) -> bool:
        """Some stream takes the call's audio (the bridge must hand it over during a dial)."""
        return bool(self._streams)

    # -- audio -------------------------------------------------------------------------------

    def inbound(self, pcm: bytes) -> None:
        """A frame of the caller's audio, as it arrives."""
        for stream in self._streams.values():
            stream.send_audio("inbound", pcm)

    def outbound(self, pcm: bytes, *, paced: bool = False) -> None:
        """Audio the caller hears: a prompt about to play (paced here, 20 ms a frame) or, with
        ``paced``, a frame of the bridged party as it goes out."""
        for stream in self._streams.values():
            if paced:
                stream.send_audio("outbound", pcm)
            else:
                stream.queue_outbound(pcm)

    def dtmf(self, digit: str) -> None:
        for stream in self._streams.values():
            stream.send_dtmf(digit)

    def _forget(self, stream: _Stream) -> None:
        self._streams.pop(stream.sid, None)
        info = stream.info()
        self._ended[stream.sid] = info
        self._ended[stream.name] = info
        while len(self._ended) > 4 * MAX_STREAMS:
            self._ended.pop(next(iter(self._ended)))


class _Stream:
    """One stream's life: open, stream until stopped or closed by the app, report."""

    def __init__(
        self,
        owner: CallStreams,
        action: act.StartStream,
        on_end: Callable[[ev.StreamEnded], None] | None,
    ) -> None:
        self.owner = owner
        self.action = action
        self.sid = action.sid
        self.name = action.name
        self.bidirectional = action.bidirectional
        self.tracks = action.tracks
        self.on_end = on_end
        self.messages = StreamMessages(
            stream_sid=action.sid,
            account_sid=owner.account_sid,
            call_sid=owner.call_sid,
            tracks=action.tracks,
            parameters=action.parameters,
        )
        self.conn: StreamConnection | None = None
        self.status = "in-progress"
        self.updated = _wall()
        self.started_at = owner._clock()
        self.done = asyncio.Event()
        self._stop = asyncio.Event()
        self._outbound: deque[bytes] = deque()
        self._outbound_ready = asyncio.Event()
        self._playout: _Playout | None = None

    def info(self) -> StreamInfo:
        return StreamInfo(self.sid, self.name, self.status, self.updated)

    def stop(self) -> None:
        self._stop.set()

    # -- the call's side (never waits) ------------------------------------------------------

    def _ms(self) -> int:
        return round((self.owner._clock() - self.started_at) * 1000)

    def send_audio(self, track: str, pcm: bytes) -> None:
        conn = self.conn
        if conn is None or track not in self.tracks or not pcm:
            return
        try:
            mulaw = ulaw_encode(pcm[: len(pcm) - len(pcm) % 2])
        except (ValueError, MediaError):
            return
        conn.send(self.messages.media(track, mulaw, self._ms()))

    def queue_outbound(self, pcm: bytes) -> None:
        if self.conn is None or "outbound" not in self.tracks:
            return
        for start in range(0, len(pcm), FRAME_OCTETS):
            if len(self._outbound) >= MAX_OUTBOUND_FRAMES:
                break
            self._outbound.append(pcm[start : start + FRAME_OCTETS])
        self._outbound_ready.set()

    def send_dtmf(self, digit: str) -> None:
        if self.conn is not None and self.bidirectional:
            self.conn.send(self.messages.dtmf(digit), control=True)

    # -- the stream's task ----------------------------------------------------------------------

    async def run(self) -> None:
        error = ""
        code: int | None = None
        closed_by_app = False
        helpers: list[asyncio.Task[Any]] = []
        try:
            opener = self.owner.opener
            if opener is None:
                raise WebhookError("media streams are not configured", url=self.action.url)
            self.conn = conn = await opener.open(self.action.url)
            conn.send(self.messages.connected(), control=True)
            conn.send(self.messages.start(), control=True)
            await self._report("stream-started")
            loop = asyncio.get_running_loop()
            if "outbound" in self.tracks:
                helpers.append(loop.create_task(self._pace(conn), name=f"pace-{self.sid}"))
            if self.bidirectional:
                self._playout = _Playout(self.owner.leg, self._played_mark)
                helpers.append(loop.create_task(self._playout.run(), name=f"play-{self.sid}"))
            reader = loop.create_task(self._read(conn), name=f"read-{self.sid}")
            helpers.append(reader)
            stopper = loop.create_task(self._stop.wait())
            try:
                await asyncio.wait([reader, stopper], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
            if reader.done() and not reader.cancelled():
                error = reader.result()
                closed_by_app = not error
                if error:
                    code = PROTOCOL_ERROR if "invalid stream message" in error else None
            if conn.error and not error:
                error = conn.error
        except WebhookError as exc:
            error, code = str(exc), exc.error_code
        except (CallXmlError, OSError) as exc:
            error = f"stream failed: {exc}"
        finally:
            for helper in helpers:
                helper.cancel()
            for helper in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await helper
            opened, self.conn = self.conn, None
            if opened is not None:
                dropped = opened.dropped
                stop = None if closed_by_app else self.messages.stop()
                await asyncio.shield(opened.close(stop))
                if dropped:
                    await self._log(
                        "warning",
                        f"Stream {self.name}: the app was slow; {dropped} messages were dropped",
                    )
            self.status = "stopped"
            self.updated = _wall()
            self.owner._forget(self)
            if error:
                await self._log("error", f"Stream {self.name} ({self.action.url}): {error}", code)
                await self._report("stream-error", error)
            else:
                await self._report("stream-stopped")
            self.done.set()
            if self.on_end is not None:
                self.on_end(ev.StreamEnded(self.sid, error))

    async def _read(self, conn: StreamConnection) -> str:
        """What the app sends, until it closes the socket: '' or why the stream failed."""
        async for data in conn.messages():
            if not self.bidirectional:
                continue  # a fork is one-way: the app has nothing to say (Twilio ignores it)
            try:
                message = parse_app_message(data)
            except WebhookError as exc:
                return str(exc)
            playout = self._playout
            assert playout is not None
            match message:
                case AppMedia(payload=payload):
                    if not playout.media(ulaw_decode(payload)):
                        await self._log_once_full()
                case AppMark(name=name):
                    playout.mark(name)
                case AppClear():
                    playout.clear()
        return conn.error

    _full_logged = False

    async def _log_once_full(self) -> None:
        if not self._full_logged:
            self._full_logged = True
            seconds = MAX_PLAYOUT_OCTETS // 16000
            await self._log(
                "warning", f"Stream {self.name}: more than {seconds} s of audio queued; dropped"
            )

    def _played_mark(self, name: str) -> None:
        conn = self.conn
        if conn is not None:
            conn.send(self.messages.mark(name), control=True)

    async def _pace(self, conn: StreamConnection) -> None:
        """Send what the caller hears on the ``outbound`` track, one frame per 20 ms."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._outbound:
                self._outbound_ready.clear()
                await self._outbound_ready.wait()
            deadline = loop.time()
            while self._outbound:
                self.send_audio("outbound", self._outbound.popleft())
                deadline += FRAME_SECONDS
                await asyncio.sleep(max(0.0, deadline - loop.time()))

    # -- records ------------------------------------------------------------------------------

    async def _log(self, level: str, message: str, code: int | None = None) -> None:
        data: dict[str, Any] = {"message": message}
        if code is not None:
            data["code"] = code
        with contextlib.suppress(Exception):
            await self.owner._note(level, data)

    async def _report(self, event: str, error: str = "") -> None:
        """The stream event in the call log, and the status callback if one was asked for."""
        with contextlib.suppress(Exception):
            data = {"sid": self.sid, "name": self.name, "url": self.action.url, "event": event}
            await self.owner._note("stream", data)
        url = self.action.status_callback
        if url is None:
            return
        params = status_callback_params(
            account_sid=self.owner.account_sid,
            call_sid=self.owner.call_sid,
            stream_sid=self.sid,
            name=self.name,
            event=event,
            error=error,
            timestamp=_iso_now(),
        )
        try:
            request = WebhookRequest(url, self.action.status_callback_method, params)
            self.owner._callback(request)
        except (CallXmlError, RuntimeError) as exc:  # the call's task group is closing
            log.debug("stream %s: status callback not sent: %s", self.sid, exc)


class _Playout:
    """The app's audio on its way to the caller: played in order, in chunks of at most a
    second, each mark echoed once everything before it has played; ``clear`` drops what is
    left (echoing its marks, as Twilio does) and stops what is playing."""

    def __init__(self, leg: Leg, on_mark: Callable[[str], None]) -> None:
        self.leg = leg
        self.on_mark = on_mark
        self._items: deque[bytes | str] = deque()
        self._octets = 0
        self._marks = 0
        self._ready = asyncio.Event()
        self._playing: asyncio.Future[None] | None = None

    def media(self, pcm: bytes) -> bool:
        """Queue audio; False when the buffer is full (the audio is dropped)."""
        if self._octets + len(pcm) > MAX_PLAYOUT_OCTETS:
            return False
        self._items.append(pcm)
        self._octets += len(pcm)
        self._ready.set()
        return True

    def mark(self, name: str) -> None:
        if self._marks >= MAX_MARKS:
            return
        self._items.append(name)
        self._marks += 1
        self._ready.set()

    def clear(self) -> None:
        items, self._items = self._items, deque()
        self._octets = 0
        for item in items:
            if isinstance(item, str):
                self._marks -= 1
                self.on_mark(item)
        if self._playing is not None and not self._playing.done():
            self._playing.cancel()

    async def run(self) -> None:
        try:
            while True:
                if not self._items:
                    self._ready.clear()
                    await self._ready.wait()
                    continue
                head = self._items[0]
                if isinstance(head, str):
                    self._items.popleft()
                    self._marks -= 1
                    self.on_mark(head)
                    continue
                parts: list[bytes] = []
                size = 0
                while self._items and size < PLAY_CHUNK_OCTETS:
                    part = self._items[0]
                    if not isinstance(part, bytes):
                        break
                    self._items.popleft()
                    parts.append(part)
                    size += len(part)
                self._octets -= size
                self._playing = asyncio.ensure_future(self.leg.play(b"".join(parts)))
                try:
                    await asyncio.shield(self._playing)
                except asyncio.CancelledError:
                    if not self._playing.cancelled():
                        raise  # this task is being cancelled, not the chunk (clear)
                except (MediaError, CallXmlError) as exc:
                    log.debug("stream playout: %s", exc)
                    return
        finally:
            if self._playing is not None and not self._playing.done():
                self._playing.cancel()


def _wall() -> float:
    return datetime.datetime.now(datetime.UTC).timestamp()


def _iso_now() -> str:
    """Twilio's ``Timestamp`` of a stream status callback (ISO 8601, UTC)."""
    return (
        datetime.datetime.now(datetime.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
