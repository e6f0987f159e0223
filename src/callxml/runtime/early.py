"""What the caller hears while a ``<Dial>`` rings: the far end's early media, or a ringback.

A called party's gateway often plays something before it answers — its own ringback, "the
number you have dialled is not available", a queue announcement — as early media (a 183 with
SDP, RFC 3960). A caller who hears nothing at all, or the wrong country's ringback, hangs up
sooner. This module owns the choice, for one dial:

* the far end's early media when a dialled leg sends some (the first one that does): relayed to
  the caller through the bridge seam, as a bridge does after the answer;
* otherwise ``ringTone``'s ringback, generated (:mod:`callxml.media.ringback`), when the
  document asked for one;
* otherwise nothing is added: an answered caller keeps its silence, an unanswered one
  (``answerOnBridge``) keeps the 180 it got and its phone's own ringback.

When the caller is not answered yet (``answerOnBridge``) and there is something to hear, it is
sent a 183 with our SDP answer first (:meth:`CallLeg.early_media`; reliable when it requires
100rel). A relayed leg that ends (it failed after its 183) gives the caller back the ringback.

``<Dial record="record-from-ringing...">`` hears the same as the caller: ``on_audio`` gets the
relayed early audio and every ringback frame sent, as side ``b`` (what the dialled side sends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from callxml.errors import CallXmlError
from callxml.media.ringback import RINGBACKS, ringback_frames
from callxml.runtime.leg import CallLeg

__all__ = ["DialRingback"]

log = logging.getLogger(__name__)


class _Handle(Protocol):
    def stop(self) -> None: ...


class DialRingback:
    """One ``<Dial>``'s early audio for ``caller``: :meth:`start` before dialling,
    :meth:`far_end_media` as each attempt's ``on_early_media``, :meth:`stop` before bridging
    the winner (or when the dial is over)."""

    def __init__(
        self,
        caller: CallLeg,
        ring_tone: str | None,
        bridge: Callable[..., Any],
        *,
        on_audio: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.caller = caller
        self.on_audio = on_audio
        self.ring_tone = ring_tone if ring_tone in RINGBACKS else None
        self._bridge = bridge
        self._tone: asyncio.Task[None] | None = None
        self._relay: _Handle | None = None
        self._source: CallLeg | None = None
        self._watch: asyncio.Task[None] | None = None
        self._done = False

    @property
    def relaying(self) -> CallLeg | None:
        """The dialled leg whose early media the caller hears, if any."""
        return self._source if self._relay is not None else None

    async def start(self) -> None:
        """Start the ringback, if ``ringTone`` asked for one."""
        self._ring()

    def far_end_media(self, leg: CallLeg) -> None:
        """A dialled leg is in early media: the caller hears it instead of the ringback (only
        the first one: with several targets ringing at once, one is heard)."""
        if self._done or self._relay is not None or self.caller.ended.is_set():
            return
        self._stop_tone()
        if not self._caller_media():
            return
        try:
            if self.on_audio is not None:
                self._relay = self._bridge(self.caller, leg, on_audio=self.on_audio)
            else:
                self._relay = self._bridge(self.caller, leg)
        except CallXmlError as exc:
            log.info("early media of %s not relayed: %s", leg.sid, exc)
            self._ring()
            return
        self._source = leg
        self._watch = asyncio.ensure_future(self._when_gone(leg))

    async def stop(self) -> None:
        """The dial is over or answered: no more ringback, no more early relay."""
        self._done = True
        self._stop_tone()
        self._stop_relay()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    # -- inside -------------------------------------------------------------------------------

    def _caller_media(self) -> bool:
        """Make sure the caller has media to hear it in: a 183 with our SDP when unanswered."""
        caller = self.caller
        if caller.media_started:
            return True
        try:
            caller.early_media()
        except CallXmlError as exc:
            log.info("no early media to caller %s: %s", caller.sid, exc)
            return False
        return True

    def _ring(self) -> None:
        if self._done or self.ring_tone is None or self._tone is not None:
            return
        if not self._caller_media():
            return
        self._tone = asyncio.ensure_future(self._play(self.ring_tone))

    async def _play(self, country: str) -> None:
        with contextlib.suppress(CallXmlError):
            frames = ringback_frames(country)
            if self.on_audio is not None:
                frames = _heard(frames, self.on_audio)
            await self.caller.play_frames(frames)

    def _stop_tone(self) -> None:
        if self._tone is not None:
            self._tone.cancel()
            self._tone = None
            self.caller.stop_playing()

    def _stop_relay(self) -> None:
        if self._relay is not None:
            self._relay.stop()
            self._relay = None

    async def _when_gone(self, leg: CallLeg) -> None:
        """The relayed leg ended before anyone answered: back to the ringback."""
        await leg.ended.wait()
        if self._done or self._source is not leg:
            return
        self._stop_relay()
        self._source = None
        self._ring()


def _heard(frames: Iterator[bytes], on_audio: Callable[[str, bytes], None]) -> Iterator[bytes]:
    """The ringback frames, each also given to ``on_audio`` (as side ``b``) as it is sent."""
    for frame in frames:
        on_audio("b", frame)
        yield frame
