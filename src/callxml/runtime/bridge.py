"""Bridging: relay audio and DTMF between two answered call legs, both ways.

This module owns what a bridge adds on top of the media relay (:mod:`callxml.media.relay`):
stopping whatever the legs were playing, and watching leg ``a``'s RFC 4733 key presses on their
way through — each reported once, and ``*`` swallowed for ``<Dial hangupOnStar>``. SRTP on one
side and RTP on the other is fine (each leg protects with its own keys); PCMU↔PCMA is transcoded
by the relay. When a leg's codec changes under the bridge (the peer re-INVITEd, or
:meth:`Bridge.align_codecs` moved it), the relay is rewired at once; new keys or addresses need
nothing (each endpoint applies its own).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from callxml.errors import LocalProtocolError
from callxml.media.relay import MediaRelay, make_forwarder
from callxml.media.rtp import RtpPacket
from callxml.runtime.leg import CallLeg
from callxml.sdp.negotiate import remote_codecs

__all__ = ["DTMF_EVENTS", "Bridge", "bridge"]

log = logging.getLogger(__name__)

DTMF_EVENTS = "0123456789*#ABCD"  # RFC 4733 §3.2: events 0-15


class Bridge:
    """Media relayed between two answered legs (see :func:`bridge`); :meth:`stop` undoes it."""

    def __init__(
        self,
        a: CallLeg,
        b: CallLeg,
        on_a_digit: Callable[[str], None] | None = None,
        on_star: Callable[[], None] | None = None,
        on_audio: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.a = a
        self.b = b
        self._relay = MediaRelay(a.endpoint, b.endpoint)
        self._on_a_digit = on_a_digit
        self._on_star = on_star
        self._on_audio = on_audio
        self._last_event: int | None = None

    @property
    def active(self) -> bool:
        return self._relay.active

    def start(self) -> None:
        self.a.stop_playing()
        self.b.stop_playing()
        self._wire()
        self.a.add_media_listener(self._renegotiated)
        self.b.add_media_listener(self._renegotiated)

    def _renegotiated(self, leg: CallLeg) -> None:
        """A leg's codec or payload types changed: the relay's forwarders (pass-through or
        transcoding) were chosen for the old ones, so choose again."""
        if self._relay.active:
            self._wire()

    def align_codecs(self) -> CallLeg | None:
        """When the legs run different codecs (the relay transcodes every packet), re-INVITE one
        of them offering only the other's codec, if its peer listed that codec in its SDP; the
        relay switches to pass-through when the answer comes (a refusal changes nothing).
        Returns the leg asked, or None when nothing was worth asking."""
        if self.a.codec == self.b.codec:
            return None
        for leg, other in ((self.b, self.a), (self.a, self.b)):
            if other.codec in remote_codecs(leg.media) and not leg.ended.is_set():
                leg.reoffer(codecs=[other.codec])
                return leg
        return None

    def _wire(self) -> None:
        self._relay.start()
        a, b = self.a.endpoint, self.b.endpoint
        a_forward = make_forwarder(a, b)
        if self._on_a_digit is not None or self._on_star is not None:
            a_forward = self._watch_digits(a_forward)
        if self._on_audio is not None:  # <Dial record>: decode both sides on their way
            a_forward = self._tap(a_forward, self.a, "a")
            b.set_forward(self._tap(make_forwarder(b, a), self.b, "b"))
        if a_forward is not None and (self._on_audio or self._on_a_digit or self._on_star):
            a.set_forward(a_forward)

    def _watch_digits(self, forward: Callable[[bytes], None]) -> Callable[[bytes], None]:
        dtmf_pt = self.a.endpoint.dtmf_payload_type

        def watch(data: bytes) -> None:
            # RFC 4733 §2.3: payload = event, E|R|volume, duration; all packets of one event
            # share its RTP timestamp (§2.5.1.2), so report each timestamp once.
            if len(data) >= 16 and data[1] & 0x7F == dtmf_pt and data[0] & 0x1F == 0:
                event = data[12]
                timestamp = int.from_bytes(data[4:8], "big")
                if event < len(DTMF_EVENTS) and timestamp != self._last_event:
                    self._last_event = timestamp
                    self._digit(DTMF_EVENTS[event])
                if event == 10 and self._on_star is not None:
                    return  # hangupOnStar: the star itself is not relayed
            forward(data)

        return watch

    def _tap(
        self, forward: Callable[[bytes], None], leg: CallLeg, side: str
    ) -> Callable[[bytes], None]:
        """Hand the audio of every relayed packet of ``leg`` (decoded to PCM) to the recorder."""
        endpoint = leg.endpoint
        on_audio = self._on_audio
        assert on_audio is not None

        def tap(data: bytes) -> None:
            forward(data)
            if len(data) > 12 and data[1] & 0x7F == endpoint.payload_type:
                try:
                    packet = RtpPacket.parse(data)
                    on_audio(side, endpoint.codec.decode(packet.payload))
                except Exception:
                    log.debug("recording tap: packet not decoded", exc_info=True)

        return tap

    def _digit(self, digit: str) -> None:
        try:
            if self._on_a_digit is not None:
                self._on_a_digit(digit)
            if digit == "*" and self._on_star is not None:
                self._on_star()
        except Exception:
            log.exception("bridge digit callback failed")

    def stop(self) -> None:
        self.a.remove_media_listener(self._renegotiated)
        self.b.remove_media_listener(self._renegotiated)
        self._relay.stop()


def bridge(
    a: CallLeg,
    b: CallLeg,
    on_a_digit: Callable[[str], None] | None = None,
    *,
    on_star: Callable[[], None] | None = None,
    on_audio: Callable[[str, bytes], None] | None = None,
) -> Bridge:
    """Relay audio and DTMF between two answered legs, both ways, until :meth:`Bridge.stop`.
    A leg in early media counts (a ringing ``<Dial>`` passes the far end's early audio on).

    SRTP on one side and RTP on the other is fine (each leg protects with its own keys);
    PCMU↔PCMA is transcoded. ``on_a_digit`` sees every key leg ``a`` presses (still relayed);
    ``on_star`` (``<Dial hangupOnStar>``) is called when ``a`` presses ``*``, which is then not
    relayed. ``on_audio(side, pcm)`` (``<Dial record>``) gets every relayed audio packet of
    side ``"a"`` and ``"b"``, decoded (the relay then decodes each packet: slower, so only when
    recording).
    """
    if not (a.media_started and b.media_started):
        raise LocalProtocolError("both legs must be answered (or in early media) to bridge")
    made = Bridge(a, b, on_a_digit, on_star, on_audio)
    made.start()
    return made
