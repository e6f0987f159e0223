"""RTCP sender/receiver reports (RFC 3550 §6) and the receiver statistics that feed them.

Owns the SR, RR, SDES (CNAME only) and BYE wire formats, compound packet parse/build (§6.1),
NTP timestamps (§4), and :class:`ReceptionStats`: extended highest sequence number, cumulative
and fractional loss (App. A.3) and interarrival jitter (§6.4.1, App. A.8), computed from
explicit arrival times. The report interval is the caller's business (the stream sends one
every few seconds). No sockets, no clock reads.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from callxml.errors import RemoteProtocolError

PT_SR = 200
PT_RR = 201
PT_SDES = 202
PT_BYE = 203
MAX_COMPOUND_PACKETS = 16
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01

_BLOCK = struct.Struct("!IIIIII")


class RtcpError(RemoteProtocolError):
    """A datagram is not a well-formed (compound) RTCP packet."""


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp (RFC 3550 §4) for a Unix time in seconds."""
    seconds = unix_time + NTP_EPOCH_OFFSET
    return int(seconds * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int  # 0..255, fixed point /256
    packets_lost: int  # cumulative, signed 24-bit
    highest_sequence: int  # extended
    jitter: int  # timestamp units
    last_sr: int  # middle 32 bits of the last SR's NTP timestamp
    delay_since_last_sr: int  # 1/65536 s

    def __bytes__(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.packets_lost)) & 0xFFFFFF
        return _BLOCK.pack(
            self.ssrc,
            (self.fraction_lost & 0xFF) << 24 | lost,
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.last_sr & 0xFFFFFFFF,
            self.delay_since_last_sr & 0xFFFFFFFF,
        )

    @classmethod
    def parse(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        lost = word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, word >> 24, lost, highest, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderReport:
    """RTCP SR (RFC 3550 §6.4.1)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def __bytes__(self) -> bytes:
        body = struct.pack(
            "!IQIII",
            self.ssrc,
            self.ntp_timestamp,
            self.rtp_timestamp & 0xFFFFFFFF,
            self.packet_count & 0xFFFFFFFF,
            self.octet_count & 0xFFFFFFFF,
        ) + b"".join(bytes(r) for r in self.reports)
        return _header(len(self.reports), PT_SR, body) + body


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RTCP RR (RFC 3550 §6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def __bytes__(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(bytes(r) for r in self.reports)
        return _header(len(self.reports), PT_RR, body) + body


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """RTCP SDES with one chunk carrying CNAME (RFC 3550 §6.5.1), all a compound packet needs."""

    ssrc: int
    cname: str

    def __bytes__(self) -> bytes:
        name = self.cname.encode()[:255]
        chunk = struct.pack("!IBB", self.ssrc, 1, len(name)) + name + b"\x00"
        chunk += bytes(-len(chunk) % 4)
        return _header(1, PT_SDES, chunk) + chunk


@dataclass(frozen=True, slots=True)
class Bye:
    """RTCP BYE (RFC 3550 §6.6)."""

    sources: tuple[int, ...]
    reason: str = ""

    def __bytes__(self) -> bytes:
        body = b"".join(struct.pack("!I", s) for s in self.sources[:31])
        if self.reason:
            text = self.reason.encode()[:255]
            body += bytes([len(text)]) + text
            body += bytes(-len(body) % 4)
        return _header(min(len(self.sources), 31), PT_BYE, body) + body


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """An RTCP packet type we do not interpret (APP, feedback...), kept as raw bytes."""

    packet_type: int
    data: bytes


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | UnknownRtcp


def _header(count: int, packet_type: int, body: bytes) -> bytes:
    assert len(body) % 4 == 0
    return struct.pack("!BBH", 0x80 | count, packet_type, len(body) // 4)


def build_compound(*packets: RtcpPacket) -> bytes:
    """Concatenate packets into one compound RTCP packet (§6.1: report first, then SDES)."""
    return b"".join(bytes(p) for p in packets if not isinstance(p, UnknownRtcp))


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet; raise :class:`RtcpError` when it is malformed."""
    packets: list[RtcpPacket] = []
    pos = 0
    size = len(data)
    if size < 4:
        raise RtcpError("RTCP packet too short")
    while pos < size:
        if len(packets) >= MAX_COMPOUND_PACKETS:
            raise RtcpError("too many packets in one compound RTCP packet")
        if pos + 4 > size:
            raise RtcpError("truncated RTCP header")
        b0, pt, words = struct.unpack_from("!BBH", data, pos)
        if b0 >> 6 != 2:
            raise RtcpError("RTCP version is not 2")
        end = pos + 4 + 4 * words
        if end > size:
            raise RtcpError("RTCP length runs past the end of the datagram")
        count = b0 & 0x1F
        body = data[pos + 4 : end]
        if b0 & 0x20:  # padding only allowed on the last packet (§6.4.1 P bit)
            if end != size or not body or body[-1] == 0 or body[-1] > len(body):
                raise RtcpError("invalid RTCP padding")
            body = body[: -body[-1]]
        packets.append(_parse_one(pt, count, bytes(body)))
        pos = end
    return packets


def _parse_one(pt: int, count: int, body: bytes) -> RtcpPacket:
    if pt == PT_SR:
        if len(body) < 24 + 24 * count:
            raise RtcpError("truncated RTCP SR")
        ssrc, ntp, rtp_ts, pkts, octets = struct.unpack_from("!IQIII", body)
        blocks = tuple(ReportBlock.parse(body, 24 + 24 * i) for i in range(count))
        return SenderReport(ssrc, ntp, rtp_ts, pkts, octets, blocks)
    if pt == PT_RR:
        if len(body) < 4 + 24 * count:
            raise RtcpError("truncated RTCP RR")
        (ssrc,) = struct.unpack_from("!I", body)
        return ReceiverReport(
            ssrc, tuple(ReportBlock.parse(body, 4 + 24 * i) for i in range(count))
        )
    if pt == PT_SDES and count >= 1 and len(body) >= 6:
        (ssrc,) = struct.unpack_from("!I", body)
        pos = 4
        while pos + 2 <= len(body) and body[pos] != 0:
            item, length = body[pos], body[pos + 1]
            value = body[pos + 2 : pos + 2 + length]
            if item == 1:
                return SourceDescription(ssrc, value.decode("utf-8", "replace"))
            pos += 2 + length
        return UnknownRtcp(pt, body)
    if pt == PT_BYE:
        if len(body) < 4 * count:
            raise RtcpError("truncated RTCP BYE")
        sources = struct.unpack_from(f"!{count}I", body)
        reason = ""
        rest = body[4 * count :]
        if rest:
            reason = rest[1 : 1 + rest[0]].decode("utf-8", "replace")
        return Bye(tuple(sources), reason)
    return UnknownRtcp(pt, body)


class ReceptionStats:
    """Per-source receive statistics (RFC 3550 App. A.3 and A.8), fed explicit arrival times.

    ``arrival`` is in the stream's timestamp units (seconds times clock rate), so jitter comes
    out in the same units as the RFC wants. The sender's SSRC is learned from the first packet.
    """

    __slots__ = (
        "_base_ext",
        "_expected_prior",
        "_max_ext",
        "_received_prior",
        "_transit",
        "jitter",
        "last_sr",
        "last_sr_arrival",
        "received",
        "ssrc",
    )

    def __init__(self) -> None:
        self._reset(None)

    def _reset(self, ssrc: int | None) -> None:
        self.ssrc: int | None = ssrc
        self._base_ext = 0
        self._max_ext: int | None = None
        self.received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._transit: int | None = None
        self.jitter = 0.0
        self.last_sr = 0
        self.last_sr_arrival: float | None = None

    def update(self, ssrc: int, sequence_number: int, rtp_timestamp: int, arrival: int) -> None:
        """Account one received packet (after authentication)."""
        if self.ssrc != ssrc:
            self._reset(ssrc)  # a new source: start over (App. A.1 re-sync)
        if self._max_ext is None:
            self._base_ext = self._max_ext = sequence_number
        else:
            delta = (sequence_number - self._max_ext) & 0xFFFF
            if delta < 0x8000:
                self._max_ext += delta
        self.received += 1
        transit = (arrival - rtp_timestamp) & 0xFFFFFFFF
        if self._transit is not None:
            d = abs(((transit - self._transit + 0x80000000) & 0xFFFFFFFF) - 0x80000000)
            self.jitter += (d - self.jitter) / 16.0  # §6.4.1: J += (|D| - J) / 16
        self._transit = transit

    def sender_report_received(self, ntp_timestamp: int, now: float) -> None:
        """Remember an SR for LSR/DLSR (§6.4.1); ``now`` in seconds on any monotonic clock."""
        self.last_sr = (ntp_timestamp >> 16) & 0xFFFFFFFF
        self.last_sr_arrival = now

    @property
    def expected(self) -> int:
        return 0 if self._max_ext is None else self._max_ext - self._base_ext + 1

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def report_block(self, now: float) -> ReportBlock | None:
        """A report block for the next RR/SR, advancing the interval counters (App. A.3)."""
        if self.ssrc is None or self._max_ext is None:
            return None
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior, self._received_prior = expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        dlsr = 0
        if self.last_sr_arrival is not None:
            dlsr = int((now - self.last_sr_arrival) * 65536)
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=self.lost,
            highest_sequence=self._max_ext,
            jitter=int(self.jitter),
            last_sr=self.last_sr,
            delay_since_last_sr=dlsr,
        )
