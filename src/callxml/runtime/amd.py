"""Answering machine detection on a live leg (REST ``MachineDetection``).

:class:`~callxml.media.amd.MachineDetector` decides from audio and a clock; this module gives it
both on a real call. Twilio has two ways, and so does callxml:

* synchronous (:func:`detect`): right after the answer, before the flow's first webhook, the
  leg's audio goes to the detector alone; the webhook then carries ``AnsweredBy``. The far end
  hears our continuous silence meanwhile, as on Twilio.
* asynchronous (:class:`AmdListener`, ``AsyncAmd=true``): the flow starts at once and the
  detector listens beside it as a tap on the whole call's audio
  (:class:`~callxml.runtime.recorder.AudioTap`), so it never takes the leg from ``<Gather>`` or
  ``<Record>``; the result goes to ``AsyncAmdStatusCallback``.

The timers tick every 100 ms as well as on each frame, so a far end that sends no packets
(silence suppression) still reaches ``unknown`` or ``human``.
"""

from __future__ import annotations

import asyncio
import contextlib

from callxml.media.amd import AmdSettings, MachineDetector
from callxml.runtime.leg import Leg

__all__ = ["AmdListener", "detect"]

TICK = 0.1


async def detect(leg: Leg, settings: AmdSettings) -> tuple[str, int]:
    """Listen to ``leg`` until the detector decides; ``(AnsweredBy, duration in ms)``. A leg
    that ends first is ``unknown``."""
    listener = AmdListener(settings, asyncio.get_running_loop().time())

    def heard(pcm: bytes) -> None:
        listener.audio("a", pcm, asyncio.get_running_loop().time())

    leg.set_consumer(heard, None)
    try:
        return await listener.result(leg.ended)
    finally:
        leg.set_consumer(None, None)


class AmdListener:
    """A detector fed as an :class:`~callxml.runtime.recorder.AudioTap` (only side ``a``, the
    far end, counts); :meth:`result` waits for the decision."""

    def __init__(self, settings: AmdSettings, now: float) -> None:
        self.detector = MachineDetector(settings, now)
        self._decided = asyncio.Event()

    def audio(self, side: str, pcm: bytes, now: float) -> None:
        if side == "a" and not self.detector.done and self.detector.audio(pcm, now) is not None:
            self._decided.set()

    async def result(self, ended: asyncio.Event) -> tuple[str, int]:
        """Wait for the decision (or for ``ended``: ``unknown``)."""
        loop = asyncio.get_running_loop()
        while self.detector.check(loop.time()) is None and not ended.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._decided.wait(), TICK)
        detector = self.detector
        if detector.result is None:  # the call ended first
            return "unknown", round((loop.time() - detector.started) * 1000)
        return detector.result, round(detector.duration * 1000)
