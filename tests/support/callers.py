"""Real callers for engine tests: callxml Phones that call the engine, play a tone, listen.

A :class:`ToneCaller` is one answered call from a test Phone to the engine (plain RTP over UDP,
or TLS + SRTP): it plays a steady tone for as long as asked, keeps every frame it hears (so a
test measures, with Goertzel, which tones reached it and when) and presses keys. It is the
caller side of the conference, queue and media-stream tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from callxml.engine.devcert import DevCertificate
from callxml.media.tone import goertzel_power, sine
from callxml.runtime import CallLeg, IncomingCall, Phone
from callxml.sip.aio.tls import TlsConfig
from callxml.sip.aio.transport import ListenerConfig
from support.waiting import until

__all__ = [
    "ToneCaller",
    "answering_phone",
    "best_window",
    "call_engine",
    "caller_phone",
    "dev_ca_tls",
]

WAIT = 15.0


def tone_frames(frequency: float, amplitude: float = 0.3) -> Iterator[bytes]:
    """An endless tone in 20 ms frames, without clicks between them."""
    index = 0
    while True:
        yield sine(frequency, 20, amplitude=amplitude, phase_samples=index * 160)
        index += 1


def best_window(pcm: bytes, frequency: float, seconds: float = 0.5) -> float:
    """The strongest presence of ``frequency`` in any window of ``pcm`` (Goertzel)."""
    step = int(8000 * seconds) * 2
    windows = [pcm[i : i + step] for i in range(0, max(0, len(pcm) - step) + 1, step // 2)]
    return max((goertzel_power(w, frequency) for w in windows if len(w) == step), default=0.0)


class ToneCaller:
    """An answered call to the engine, from the caller's side (see the module docstring)."""

    def __init__(self, leg: CallLeg) -> None:
        self.leg = leg
        self.heard = bytearray()
        self.digits: list[str] = []
        self._tone: asyncio.Task[int] | None = None
        leg.set_consumer(self.heard.extend, self.digits.append)

    def play_tone(self, frequency: float, amplitude: float = 0.3) -> None:
        """Play ``frequency`` until :meth:`stop_tone` (or the end of the call)."""
        self.stop_tone()
        self._tone = asyncio.ensure_future(
            self.leg.endpoint.play(tone_frames(frequency, amplitude))
        )

    def stop_tone(self) -> None:
        if self._tone is not None:
            self._tone.cancel()
            self._tone = None

    def mark(self) -> int:
        """Where the audio heard so far ends (for :meth:`heard_since`)."""
        return len(self.heard)

    def heard_since(self, mark: int) -> bytes:
        return bytes(self.heard[mark:])

    async def hear(self, seconds: float) -> bytes:
        """Wait until ``seconds`` more audio has been heard; returns it."""
        start = self.mark()
        await until(lambda: len(self.heard) - start >= seconds * 16000, WAIT, step=0.01)
        return self.heard_since(start)

    async def press(self, digits: str) -> None:
        await self.leg.send_digits(digits)

    async def hangup(self) -> None:
        self.stop_tone()
        await self.leg.hangup()


@contextlib.asynccontextmanager
async def caller_phone(
    *,
    tls: TlsConfig | None = None,
    on_incoming: Callable[[IncomingCall], Awaitable[None]] | None = None,
) -> AsyncIterator[Phone]:
    """A Phone on UDP (and TLS when ``tls`` is given: ``ca_file`` to trust the engine), with
    ``on_incoming`` for calls to it; closed on exit."""
    listeners = [ListenerConfig("udp", "127.0.0.1", 0)]
    if tls is not None:
        listeners.append(ListenerConfig("tls", "127.0.0.1", 0))
    phone = await Phone.start(listeners=listeners, tls=tls, on_incoming=on_incoming)
    try:
        yield phone
    finally:
        await asyncio.wait_for(phone.close(), WAIT)


async def call_engine(
    phone: Phone, uri: str, *, proxy: str | None = None, from_uri: str | None = None
) -> ToneCaller:
    """Call ``uri`` (through ``proxy``, e.g. ``sip:127.0.0.1:5060``; as ``from_uri``) and wait
    for the answer."""
    result = await phone.dial(uri, proxy=proxy, timeout=WAIT, from_uri=from_uri)
    assert result.status == "answered" and result.leg is not None, result.reason
    return ToneCaller(result.leg)


def dev_ca_tls(dev: DevCertificate) -> TlsConfig:
    """A Phone's TLS settings that trust the engine's development CA (and present its
    certificate on the Phone's own TLS listener)."""
    return TlsConfig(ca_file=str(dev.ca), cert_file=str(dev.cert), key_file=str(dev.key))


@contextlib.asynccontextmanager
async def answering_phone() -> AsyncIterator[tuple[Phone, asyncio.Queue[ToneCaller]]]:
    """A Phone that answers every call (plain RTP); each answered call arrives in the queue as
    a :class:`ToneCaller`."""
    answered: asyncio.Queue[ToneCaller] = asyncio.Queue()

    async def answer(incoming: IncomingCall) -> None:
        leg = await incoming.accept(secure_media_enabled=False)
        await answered.put(ToneCaller(leg))

    async with caller_phone(on_incoming=answer) as phone:
        yield phone, answered
