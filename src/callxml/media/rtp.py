"""RTP packets (RFC 3550 §5.1), what arrives on an RTP port, and the per-stream sender state.

Owns the fixed header wire format, header extensions (§5.3.1), CSRC lists, padding,
:func:`classify` -- the one rule for what a datagram received on an RTP port is (RTP, RTCP
multiplexed on it, STUN, ZRTP, DTLS, or nothing we take), after RFC 7983 §7 and RFC 5761 §4 --
and :class:`RtpSender`, which numbers outgoing packets from random starting points (RFC 3550
§5.1: SSRC, sequence number and timestamp start random). Nothing here reads a clock or a socket.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from callxml.errors import LocalProtocolError, RemoteProtocolError

RTP_VERSION = 2
HEADER_SIZE = 12
MAX_PACKET_SIZE = 1500  # one Ethernet MTU; anything bigger is refused, never buffered

_HEADER = struct.Struct("!BBHII")

# Static payload types used by callxml (RFC 3551 §6, table 4).
PT_PCMU = 0
PT_PCMA = 8


class RtpError(RemoteProtocolError):
    """A datagram is not a well-formed RTP packet."""


class PacketKind(IntEnum):
    """What a datagram received on an RTP port is: :func:`classify`'s answer."""

    RTP = 0  # version 2, not RTCP: media for the codec, the relay or SRTP
    RTCP = 1  # RFC 5761 §4: RTCP multiplexed on the RTP port
    STUN = 2  # RFC 5389 (ICE connectivity checks, keepalives)
    ZRTP = 3  # RFC 6189 key agreement, in band on the media port
    DTLS = 4  # RFC 5764 DTLS-SRTP handshake records
    INVALID = 5  # none of these: wrong version, unknown first octet, too short or too long


RTP = PacketKind.RTP
RTCP = PacketKind.RTCP
STUN = PacketKind.STUN
ZRTP = PacketKind.ZRTP
DTLS = PacketKind.DTLS
INVALID = PacketKind.INVALID

RTCP_MIN_SIZE = 8  # RFC 3550 §6.4.2: an empty receiver report, the smallest RTCP packet
STUN_HEADER_SIZE = 20  # RFC 5389 §6
STUN_MAGIC_COOKIE = b"\x21\x12\xa4\x42"  # RFC 5389 §6: octets 4..7 of every STUN message
ZRTP_HEADER_SIZE = 12  # RFC 6189 §5: flags, sequence number, magic cookie, source identifier
ZRTP_MAGIC_COOKIE = b"ZRTP"  # RFC 6189 §5: 0x5A525450 at octets 4..7
DTLS_HEADER_SIZE = 13  # RFC 6347 §4.1: a DTLS record header


# classify's two octet rules as tables, each range written once: a tuple index is cheaper than
# a range comparison on the path every packet takes. RFC 7983 §7: first octet 128..191 is RTP
# or RTCP (version 2); RFC 5761 §4: of those, second octet 192..223 is RTCP.
_VERSION_2 = tuple(128 <= octet <= 191 for octet in range(256))
_RTP_OR_RTCP = tuple(RTCP if 192 <= octet <= 223 else RTP for octet in range(256))


def classify(packet: bytes | memoryview, size: int) -> PacketKind:
    """What the ``size``-octet datagram at the start of ``packet`` is.

    The one place this decision is made, for both receive paths of an endpoint (``packet`` is a
    received ``bytes``, or a view of a batched read's slot, longer than the datagram). The first
    octet decides (RFC 7983 §7): 128..191 RTP or RTCP -- RTCP when the second octet is 192..223
    (RFC 5761 §4) -- 0..3 STUN, 16..19 ZRTP, 20..63 DTLS; STUN and ZRTP must also carry their
    magic cookie. Anything else, and anything longer than :data:`MAX_PACKET_SIZE` or too short
    for its kind, is :attr:`PacketKind.INVALID`. No SRTP here: whether RTP authenticates is the
    caller's next step.

    Cost: every received packet comes through here, so an RTP packet is settled with two octet
    reads, two tuple look-ups and no allocation; the rest go to :func:`_classify_other`.
    """
    if HEADER_SIZE <= size <= MAX_PACKET_SIZE and _VERSION_2[packet[0]]:
        return _RTP_OR_RTCP[packet[1]]
    return _classify_other(packet, size)


def _classify_other(packet: bytes | memoryview, size: int) -> PacketKind:
    """:func:`classify` for what is not a full-sized RTP or RTCP packet."""
    if size < 2 or size > MAX_PACKET_SIZE:
        return INVALID
    first = packet[0]
    if _VERSION_2[first]:  # shorter than an RTP header: only RTCP can be this small
        return RTCP if size >= RTCP_MIN_SIZE and _RTP_OR_RTCP[packet[1]] is RTCP else INVALID
    if first <= 3:
        if size >= STUN_HEADER_SIZE and packet[4:8] == STUN_MAGIC_COOKIE:
            return STUN
        return INVALID
    if 16 <= first <= 19:
        if size >= ZRTP_HEADER_SIZE and packet[4:8] == ZRTP_MAGIC_COOKIE:
            return ZRTP
        return INVALID
    if 20 <= first <= 63:
        return DTLS if size >= DTLS_HEADER_SIZE else INVALID
    return INVALID  # RTP version 1 or 3, TURN channels (64..79, not relayed), unassigned octets


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1). ``extension`` is ``(profile, data)`` when X is set."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    padding: int = 0  # number of padding octets, including the count octet itself
    version: int = field(default=RTP_VERSION)

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise LocalProtocolError(f"RTP payload type out of range: {self.payload_type}")
        if not 0 <= self.sequence_number <= 0xFFFF:
            raise LocalProtocolError(f"RTP sequence number out of range: {self.sequence_number}")
        if not 0 <= self.timestamp <= 0xFFFFFFFF or not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise LocalProtocolError("RTP timestamp/SSRC out of range")
        if len(self.csrc) > 15:
            raise LocalProtocolError("at most 15 CSRCs fit in an RTP header")
        if not 0 <= self.padding <= 255:
            raise LocalProtocolError("RTP padding must be 0..255 octets")
        if self.extension is not None and len(self.extension[1]) % 4:
            raise LocalProtocolError("RTP header extension data must be a multiple of 4 octets")

    @classmethod
    def parse(cls, data: bytes, *, check_version: bool = True) -> RtpPacket:
        """Parse one RTP packet; raise :class:`RtpError` on anything malformed."""
        size = len(data)
        if size < HEADER_SIZE:
            raise RtpError(f"RTP packet too short ({size} octets)")
        if size > MAX_PACKET_SIZE:
            raise RtpError(f"RTP packet too long ({size} octets)")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        version = b0 >> 6
        if check_version and version != RTP_VERSION:
            raise RtpError(f"RTP version {version} is not 2")
        cc = b0 & 0x0F
        pos = HEADER_SIZE + 4 * cc
        if pos > size:
            raise RtpError("RTP CSRC list runs past the end of the packet")
        csrc = struct.unpack_from(f"!{cc}I", data, HEADER_SIZE) if cc else ()
        extension = None
        if b0 & 0x10:  # RFC 3550 §5.3.1
            if pos + 4 > size:
                raise RtpError("RTP header extension runs past the end of the packet")
            profile, words = struct.unpack_from("!HH", data, pos)
            end = pos + 4 + 4 * words
            if end > size:
                raise RtpError("RTP header extension runs past the end of the packet")
            extension = (profile, bytes(data[pos + 4 : end]))
            pos = end
        end = size
        padding = 0
        if b0 & 0x20:  # RFC 3550 §5.1 P bit: the last octet counts the padding
            padding = data[-1]
            if padding == 0 or pos + padding > size:
                raise RtpError("RTP padding count is invalid")
            end -= padding
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[pos:end]),
            marker=bool(b1 & 0x80),
            csrc=tuple(csrc),
            extension=extension,
            padding=padding,
            version=version,
        )

    def __bytes__(self) -> bytes:
        b0 = (self.version << 6) | len(self.csrc)
        if self.padding:
            b0 |= 0x20
        if self.extension is not None:
            b0 |= 0x10
        b1 = (0x80 if self.marker else 0) | self.payload_type
        parts = [_HEADER.pack(b0, b1, self.sequence_number, self.timestamp, self.ssrc)]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension is not None:
            profile, ext = self.extension
            parts.append(struct.pack("!HH", profile, len(ext) // 4) + ext)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def random_ssrc() -> int:
    """A random 32-bit SSRC (RFC 3550 §8.1: chosen randomly, unique within the session)."""
    return secrets.randbits(32)


class RtpSender:
    """Numbers the packets of one outgoing RTP stream.

    Sequence number and timestamp start at random values (RFC 3550 §5.1) and advance by one and by
    the frame's sample count respectively. Silence suppression or DTMF events may hold the
    timestamp (``advance=0``) or jump it (``skip``).
    """

    __slots__ = ("_header", "octets_sent", "packets_sent", "sequence_number", "ssrc", "timestamp")

    def __init__(
        self,
        *,
        ssrc: int | None = None,
        sequence_number: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        self.ssrc = random_ssrc() if ssrc is None else ssrc
        self.sequence_number = (
            secrets.randbits(16) if sequence_number is None else sequence_number & 0xFFFF
        )
        self.timestamp = secrets.randbits(32) if timestamp is None else timestamp & 0xFFFFFFFF
        self.packets_sent = 0
        self.octets_sent = 0
        self._header = struct.Struct("!BBHII")

    def build(
        self,
        payload_type: int,
        payload: bytes,
        *,
        marker: bool = False,
        timestamp: int | None = None,
    ) -> bytes:
        """Build the next packet (fixed header only) and advance the sequence number.

        ``timestamp`` overrides the stream's current timestamp (DTMF events keep their start
        timestamp for every packet of the event, RFC 4733 §2.5.1.2).
        """
        ts = self.timestamp if timestamp is None else timestamp & 0xFFFFFFFF
        header = self._header.pack(
            0x80, (0x80 if marker else 0) | payload_type, self.sequence_number, ts, self.ssrc
        )
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return header + payload

    def advance(self, samples: int) -> None:
        """Move the media clock forward by ``samples`` (one frame's worth after each frame)."""
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF


_SEQ_TS_SSRC = struct.Struct("!HII")  # octets 2..11 of the fixed header (RFC 3550 §5.1)
_unpack_header = _SEQ_TS_SSRC.unpack_from
_pack_header = _SEQ_TS_SSRC.pack_into


class RelayNumbering:
    """Renumbers relayed packets into one outgoing stream: our SSRC, our sequence numbers, our
    timestamps — so the peer of a bridged leg sees one continuous source from the answer to the
    hang-up, across prompts, silence and the bridge.

    Without it the peer would see the SSRC, sequence and timestamp jump when a bridge starts
    (and again when it stops). RFC 3550 allows that, but SRTP receivers keep replay state per
    stream and some (baresip's, seen in the tests) drop every packet whose index looks older
    than the last one they took, whatever its SSRC. An RTP translator may rewrite these fields
    (RFC 3550 §7.1, §7.3); the offsets are fixed per incoming SSRC, so gaps (loss), reordering and
    the shared timestamp of an RFC 4733 event survive, and a new incoming source sets the marker
    bit (a discontinuity, §5.1). :meth:`sync` hands the sender the sequence number after the
    newest relayed one, so its own packets continue after the bridge without a jump.

    :meth:`rewrite` is on the relay's per-packet hot path: one unpack, one pack, no allocation.
    """

    __slots__ = ("_clock", "_in_ssrc", "_last", "_seq_delta", "_ssrc", "_ts_delta", "sender")

    def __init__(self, sender: RtpSender, clock: Callable[[], None] | None = None) -> None:
        self.sender = sender
        self._clock = clock  # brings sender.timestamp up to now before a restart reads it
        self._ssrc = sender.ssrc
        self._in_ssrc = -1
        self._seq_delta = 0
        self._ts_delta = 0
        self._last = -1  # the newest sequence number sent out, -1 before any

    def rewrite(self, packet: bytearray | memoryview | Any) -> None:
        """Rewrite the header of one RTP packet in place (the caller checked it is RTP)."""
        seq, ts, ssrc = _unpack_header(packet, 2)
        if ssrc != self._in_ssrc:
            self._restart(packet, seq, ts, ssrc)
        seq = (seq + self._seq_delta) & 0xFFFF
        _pack_header(packet, 2, seq, (ts + self._ts_delta) & 0xFFFFFFFF, self._ssrc)
        last = self._last
        if last < 0 or (seq - last) & 0xFFFF < 0x8000:  # newer than the newest (RFC 3550 §A.1)
            self._last = seq

    def _restart(self, packet: bytearray | memoryview | Any, seq: int, ts: int, ssrc: int) -> None:
        """A new incoming source: continue our numbering from where it stands now."""
        if self._clock is not None:
            self._clock()
        self.sync()
        sender = self.sender
        self._in_ssrc = ssrc
        self._seq_delta = (sender.sequence_number - seq) & 0xFFFF
        self._ts_delta = (sender.timestamp - ts) & 0xFFFFFFFF
        packet[1] |= 0x80

    def sync(self) -> None:
        """Give the sender the sequence number after the newest relayed packet (call when the
        relay stops, before our own packets go out again)."""
        if self._last >= 0:
            self.sender.sequence_number = (self._last + 1) & 0xFFFF
            self._last = -1
            self._in_ssrc = -1  # whatever comes next is a new start
