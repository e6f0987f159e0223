"""RFC 4733 telephone-events (DTMF) in RTP: payload format, sender and receiver state machines.

Owns the 4-octet event payload (RFC 4733 §2.3), the sender schedule (§2.5.1: marker bit on the
first packet of an event, every packet of the event carries the event's start timestamp, the
duration grows with each update, the end packet is sent three times) and the receiver's
de-duplication (§2.5.2: an event is identified by its RTP timestamp, so a digit is reported once
however many packets of it arrive or get lost, including all end packets).

Sans-IO: the sender yields payloads for the stream to send one per packet interval; the receiver
takes the fields of a received packet. Neither reads a clock.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from callxml.errors import LocalProtocolError, RemoteProtocolError

DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2 events 0-15
DEFAULT_PAYLOAD_TYPE = 101  # conventional dynamic PT for telephone-event/8000
END_REPEATS = 3  # RFC 4733 §2.5.1.4
MAX_DURATION = 0xFFFF  # §2.5.1.3: longer events need segments; we cap digits below this
_PAYLOAD = struct.Struct("!BBH")


def digit_to_event(digit: str) -> int:
    """Map a DTMF character to its RFC 4733 event code (``a``-``d`` accepted as ``A``-``D``)."""
    index = DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise LocalProtocolError(f"not a DTMF digit: {digit!r}")
    return index


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 §2.3 payload: event code, end bit, volume (-dBm0), duration (in samples)."""

    event: int
    end: bool
    volume: int
    duration: int

    def __bytes__(self) -> bytes:
        return _PAYLOAD.pack(
            self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration
        )

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        # §2.3: a packet may carry redundant events after the first; we read the first only.
        if len(payload) < 4:
            raise RemoteProtocolError("telephone-event payload shorter than 4 octets")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    @property
    def digit(self) -> str | None:
        return DIGITS[self.event] if self.event < len(DIGITS) else None


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    """What the stream must send for one packet interval of an event."""

    payload: bytes
    marker: bool
    timestamp_offset: int  # 0: every packet of an event reuses the start timestamp


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A digit the far end pressed (reported once per event)."""

    digit: str
    timestamp: int  # RTP timestamp of the event (its identity, RFC 4733 §2.5.2.1)


def dtmf_packets(
    digit: str,
    *,
    duration_ms: int = 100,
    volume: int = 10,
    packet_ms: int = 20,
    clock_rate: int = 8000,
) -> list[DtmfPacket]:
    """The packets for one key press, one per ``packet_ms`` interval (RFC 4733 §2.5.1).

    The first packet carries the marker bit and a duration of one interval; each following one
    reports the duration so far; the last interval's duration is then sent with the E bit three
    times. The caller advances its media clock by the returned list's total duration afterwards.
    """
    event = digit_to_event(digit)
    if not 0 <= volume <= 63:
        raise LocalProtocolError("DTMF volume must be 0..63 (-dBm0)")
    if not packet_ms <= duration_ms <= 5000 or packet_ms <= 0:
        raise LocalProtocolError("DTMF duration must be between one packet and 5 seconds")
    step = clock_rate * packet_ms // 1000
    updates = -(-duration_ms // packet_ms)  # ceil
    packets = [
        DtmfPacket(bytes(TelephoneEvent(event, False, volume, step * i)), i == 1, 0)
        for i in range(1, updates + 1)
    ]
    final = bytes(TelephoneEvent(event, True, volume, step * updates))
    packets.extend(DtmfPacket(final, False, 0) for _ in range(END_REPEATS))
    return packets


def dtmf_duration_samples(packets: list[DtmfPacket]) -> int:
    """The event's final duration in timestamp units (how far the media clock must move)."""
    return TelephoneEvent.parse(packets[-1].payload).duration if packets else 0


class DtmfReceiver:
    """Reports each received key press once (RFC 4733 §2.5.2).

    A new event is recognised by a new RTP timestamp (or a new event code on the same timestamp);
    the first packet of it that arrives — start, update or end — reports the digit, and later
    packets of the same event are ignored. Only the last few event identities are remembered,
    which is bounded and enough for retransmitted end packets.
    """

    __slots__ = ("_recent",)

    _MEMORY = 8

    def __init__(self) -> None:
        self._recent: list[tuple[int, int]] = []

    def receive(self, timestamp: int, payload: bytes) -> DtmfDigit | None:
        """Feed one telephone-event packet; return the digit if this starts a new event."""
        try:
            event = TelephoneEvent.parse(payload)
        except RemoteProtocolError:
            return None
        digit = event.digit
        if digit is None:  # §3.2 defines 16 DTMF events; others (flash, tones) are ignored
            return None
        key = (timestamp, event.event)
        if key in self._recent:
            return None
        self._recent.append(key)
        if len(self._recent) > self._MEMORY:
            del self._recent[0]
        return DtmfDigit(digit, timestamp)
