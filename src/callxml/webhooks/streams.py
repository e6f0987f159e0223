"""Media streams: Twilio's Media Streams messages, and the WebSocket that carries them.

Owns the talk with the developer's WebSocket app, as Twilio's Media Streams protocol defines it
so that apps written for Twilio work unchanged:

* to the app: ``connected``, ``start`` (``streamSid``, ``callSid``, ``tracks``,
  ``customParameters``, ``mediaFormat`` audio/x-mulaw 8000 Hz mono), ``media`` (base64 μ-law,
  ``chunk`` and ``timestamp`` per track), ``dtmf``, ``mark`` (a mark the app sent, once its audio
  has played) and ``stop`` — every message numbered by ``sequenceNumber``;
* from the app (bidirectional streams): ``media`` (audio to play to the caller), ``mark`` and
  ``clear`` (:func:`parse_app_message`, bounded and validated);
* opening the socket (:func:`open_stream`): ``ws(s)://`` only, signed with
  ``X-Twilio-Signature`` like every webhook, through the caller's aiohttp session (the engine's
  passes every connection through the SSRF guard and verifies TLS), failures mapped to Twilio's
  stream error codes;
* :class:`StreamConnection`: a socket that never makes its caller wait — :meth:`~StreamConnection.
  send` puts the message in a bounded queue (a slow or dead app loses media, counted, and never
  holds up the call), one task writes the queue to the socket.

Audio here is μ-law bytes: encoding PCM is the caller's (the runtime's codecs live in
``callxml.media``). The status callbacks' parameters are :func:`status_callback_params`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import aiohttp

from callxml.errors import WebhookError
from callxml.signature import HEADER as SIGNATURE_HEADER
from callxml.signature import sign
from callxml.webhooks.guard import NetworkRefused

__all__ = [
    "CLOSE_ERROR",
    "CONNECTION_TIMEOUT",
    "HANDSHAKE_ERROR",
    "MEDIA_FORMAT",
    "PROTOCOL_ERROR",
    "TLS_ERROR",
    "AppClear",
    "AppMark",
    "AppMedia",
    "AppMessage",
    "StreamClient",
    "StreamConnection",
    "StreamMessages",
    "check_stream_url",
    "open_stream",
    "parse_app_message",
    "status_callback_params",
]

log = logging.getLogger(__name__)

# Twilio's error numbering for streams (https://www.twilio.com/docs/api/errors).
CONNECTION_TIMEOUT = 31901  # no answer from the server, unreachable, refused
TLS_ERROR = 31910  # the TLS handshake or the certificate failed
HANDSHAKE_ERROR = 31920  # the server answered, but not with 101 Switching Protocols
CLOSE_ERROR = 31921  # the socket failed or closed abnormally
PROTOCOL_ERROR = 31924  # the app sent something that is not a valid message

#: What the app receives in ``start.mediaFormat``: the only format callxml streams.
MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
#: The longest message an app may send (a ``media`` of ~30 s of μ-law is ~320 KB of base64).
MAX_APP_MESSAGE = 512 * 1024
#: The most μ-law octets one ``media`` message from the app may carry (30 s).
MAX_APP_PAYLOAD = 30 * 8000
#: Longest mark name kept (marks are echoed back).
MAX_MARK_NAME = 256
#: Messages waiting for a slow app before media is dropped (10 s of one 20 ms track).
SEND_QUEUE = 500
#: Extra room in the queue for control messages (start, dtmf, mark, stop) over media.
CONTROL_ROOM = 64
#: How long opening the socket may take (DNS, TCP, TLS, the upgrade).
OPEN_TIMEOUT = 10.0
#: How long a closing stream waits for its queue to drain and the close handshake.
CLOSE_TIMEOUT = 3.0
#: Ping the app this often; no pong in time closes the stream (a dead app is noticed).
HEARTBEAT = 10.0


# ----------------------------------------------------------------------- to the app


class StreamMessages:
    """The messages of one stream to the app, numbered and timed as Twilio numbers them.

    ``sequenceNumber`` counts every message after ``connected`` from 1; ``chunk`` counts media
    messages per track from 1; ``timestamp`` (milliseconds since the stream started) is given
    by the caller, which owns the clock.
    """

    def __init__(
        self,
        *,
        stream_sid: str,
        account_sid: str,
        call_sid: str,
        tracks: tuple[str, ...],
        parameters: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.stream_sid = stream_sid
        self.account_sid = account_sid
        self.call_sid = call_sid
        self.tracks = tracks
        self.parameters = parameters
        self._sequence = 0
        self._chunks: dict[str, int] = {}

    def _next(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    def _dump(self, message: dict[str, Any]) -> str:
        return json.dumps(message, separators=(",", ":"))

    def connected(self) -> str:
        return self._dump({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self) -> str:
        return self._dump(
            {
                "event": "start",
                "sequenceNumber": self._next(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": list(self.tracks),
                    "customParameters": dict(self.parameters),
                    "mediaFormat": dict(MEDIA_FORMAT),
                },
                "streamSid": self.stream_sid,
            }
        )

    def media(self, track: str, mulaw: bytes, timestamp_ms: int) -> str:
        chunk = self._chunks.get(track, 0) + 1
        self._chunks[track] = chunk
        return self._dump(
            {
                "event": "media",
                "sequenceNumber": self._next(),
                "media": {
                    "track": track,
                    "chunk": str(chunk),
                    "timestamp": str(max(0, timestamp_ms)),
                    "payload": base64.b64encode(mulaw).decode("ascii"),
                },
                "streamSid": self.stream_sid,
            }
        )

    def dtmf(self, digit: str) -> str:
        return self._dump(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def mark(self, name: str) -> str:
        return self._dump(
            {
                "event": "mark",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    def stop(self) -> str:
        return self._dump(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                "streamSid": self.stream_sid,
            }
        )


def status_callback_params(
    *,
    account_sid: str,
    call_sid: str,
    stream_sid: str,
    name: str,
    event: str,
    timestamp: str,
    error: str = "",
) -> tuple[tuple[str, str], ...]:
    """A ``<Stream statusCallback>`` request's parameters (``StreamEvent`` is stream-started,
    stream-stopped or stream-error, with ``StreamError`` for the last)."""
    params = [
        ("AccountSid", account_sid),
        ("CallSid", call_sid),
        ("StreamSid", stream_sid),
        ("StreamName", name),
        ("StreamEvent", event),
    ]
    if error:
        params.append(("StreamError", error))
    params.append(("Timestamp", timestamp))
    return tuple(params)


# ----------------------------------------------------------------------- from the app


@dataclass(frozen=True, slots=True)
class AppMedia:
    """Audio the app sends to be played to the caller: μ-law octets."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class AppMark:
    """A mark the app placed after the audio it sent: echoed back once that audio played."""

    name: str


@dataclass(frozen=True, slots=True)
class AppClear:
    """The app asks to drop the audio not played yet (barge-in)."""


AppMessage: TypeAlias = AppMedia | AppMark | AppClear


def parse_app_message(text: str | bytes) -> AppMessage:
    """One message from the app; :class:`WebhookError` (31924) when it is not a valid one."""

    def invalid(why: str) -> WebhookError:
        message = f"invalid stream message from the app: {why}"
        return WebhookError(message, error_code=PROTOCOL_ERROR)

    if len(text) > MAX_APP_MESSAGE:
        raise invalid(f"longer than {MAX_APP_MESSAGE} octets")
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise invalid("not JSON") from None
    if not isinstance(message, dict):
        raise invalid("not a JSON object")
    event = message.get("event")
    if event == "media":
        media = message.get("media")
        payload = media.get("payload") if isinstance(media, dict) else None
        if not isinstance(payload, str):
            raise invalid("media without a payload")
        if len(payload) > (MAX_APP_PAYLOAD * 4) // 3 + 4:
            raise invalid(f"media payload longer than {MAX_APP_PAYLOAD} octets")
        try:
            return AppMedia(base64.b64decode(payload, validate=True))
        except (binascii.Error, ValueError):
            raise invalid("media payload is not base64") from None
    if event == "mark":
        mark = message.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        if not isinstance(name, str) or len(name) > MAX_MARK_NAME:
            raise invalid(f"mark without a name (at most {MAX_MARK_NAME} characters)")
        return AppMark(name)
    if event == "clear":
        return AppClear()
    raise invalid(f"unknown event {str(event)[:40]!r} (media, mark or clear)")


# ------------------------------------------------------------------------- the socket


def check_stream_url(url: str) -> str:
    """``url`` if it is a ``wss://`` or ``ws://`` URL with a host, else 31920 (nothing to
    upgrade)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("wss", "ws") or not parts.hostname:
        raise WebhookError(
            f"not a wss:// URL: {url[:200]!r}", error_code=HANDSHAKE_ERROR, url=url[:200]
        )
    return url


async def open_stream(
    session: aiohttp.ClientSession,
    url: str,
    *,
    auth_token: str,
    timeout: float = OPEN_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
) -> aiohttp.ClientWebSocketResponse:
    """Open the app's WebSocket at ``url``, signed like a webhook (``X-Twilio-Signature``: the
    URL as written, no parameters), within ``timeout`` seconds; raise :class:`WebhookError`
    with Twilio's stream error code when it cannot (31901 unreachable, or refused by the
    network policy; 31910 TLS; 31920 the server did not upgrade)."""
    check_stream_url(url)
    # The signature covers the URL as written, with no parameters (a GET handshake).
    headers = {SIGNATURE_HEADER: sign(auth_token, url, ()), "User-Agent": "callxml/0.1"}
    try:
        return await asyncio.wait_for(
            session.ws_connect(
                url,
                headers=headers,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT),
                heartbeat=HEARTBEAT,
                max_msg_size=MAX_APP_MESSAGE,
                ssl=ssl_context if ssl_context is not None else True,
            ),
            timeout,
        )
    except TimeoutError:
        raise WebhookError(
            f"no answer within {timeout:g} s", error_code=CONNECTION_TIMEOUT, url=url
        ) from None
    except aiohttp.WSServerHandshakeError as exc:
        raise WebhookError(
            f"the server did not accept the WebSocket: HTTP {exc.status} {exc.message}",
            error_code=HANDSHAKE_ERROR,
            url=url,
        ) from None
    except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
        raise WebhookError(f"TLS failure: {exc}", error_code=TLS_ERROR, url=url) from None
    except aiohttp.ClientConnectorDNSError as exc:
        why = str(exc.os_error) if isinstance(exc.os_error, NetworkRefused) else str(exc)
        raise WebhookError(why, error_code=CONNECTION_TIMEOUT, url=url) from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise WebhookError(
            f"connection failed: {exc}", error_code=CONNECTION_TIMEOUT, url=url
        ) from None


class StreamConnection:
    """An open stream socket whose writes never wait: see the module docstring.

    :meth:`send` queues a message (media is dropped past :data:`SEND_QUEUE` waiting messages,
    control messages past ``CONTROL_ROOM`` more; ``dropped`` counts them); :meth:`messages`
    yields what the app sends until it closes; :meth:`close` writes what is queued (bounded by
    :data:`CLOSE_TIMEOUT`) and closes. Call :meth:`start` once, in a running loop.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, *, queue: int = SEND_QUEUE) -> None:
        self.ws = ws
        self.dropped = 0
        self.sent = 0
        self._limit = queue
        self._queue: deque[str] = deque()
        self._ready = asyncio.Event()
        self._closing = False
        self._writer: asyncio.Task[None] | None = None
        self.error: str = ""

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write(), name="stream-writer")

    @property
    def closed(self) -> bool:
        return self._closing or self.ws.closed

    def send(self, text: str, *, control: bool = False) -> bool:
        """Queue ``text``; False (and counted in ``dropped``) when the app is too far behind."""
        if self.closed:
            return False
        limit = self._limit + (CONTROL_ROOM if control else 0)
        if len(self._queue) >= limit:
            self.dropped += 1
            return False
        self._queue.append(text)
        self._ready.set()
        return True

    async def _write(self) -> None:
        ws = self.ws
        try:
            while True:
                while not self._queue:
                    if self._closing:
                        return
                    self._ready.clear()
                    await self._ready.wait()
                text = self._queue.popleft()
                await ws.send_str(text)
                self.sent += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the socket broke under us: the reader sees the close
            self.error = self.error or f"write failed: {exc}"
            self._queue.clear()

    async def messages(self) -> AsyncIterator[str | bytes]:
        """What the app sends (text or binary frames) until the socket closes."""
        ws = self.ws
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                yield msg.data
                continue
            if msg.type == aiohttp.WSMsgType.ERROR:
                self.error = self.error or f"socket error: {ws.exception()}"
            return

    async def close(self, last: str | None = None) -> None:
        """Send ``last`` (the ``stop`` message) after what is queued, then close; bounded."""
        if last is not None and not self.closed:
            self._queue.append(last)
        self._closing = True
        self._ready.set()
        writer = self._writer
        try:
            if writer is not None:
                with contextlib.suppress(TimeoutError, Exception):
                    await asyncio.wait_for(asyncio.shield(writer), CLOSE_TIMEOUT)
        finally:
            if writer is not None and not writer.done():
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writer
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), CLOSE_TIMEOUT)


class StreamClient:
    """Opens an account's media streams: :func:`open_stream` through ``session`` (the engine's
    is guarded against SSRF and verifies TLS), signed with ``auth_token``; each socket comes
    back as a started :class:`StreamConnection`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        auth_token: str,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = OPEN_TIMEOUT,
    ) -> None:
        self.session = session
        self.auth_token = auth_token
        self.ssl_context = ssl_context
        self.timeout = timeout

    async def open(self, url: str) -> StreamConnection:
        ws = await open_stream(
            self.session,
            url,
            auth_token=self.auth_token,
            timeout=self.timeout,
            ssl_context=self.ssl_context,
        )
        connection = StreamConnection(ws)
        connection.start()
        return connection
