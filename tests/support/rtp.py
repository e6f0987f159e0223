"""RTP in tests: far ends on raw sockets, test packets, and comparing relayed RTP with what was
sent, as a receiver would.

A bridge renumbers every relayed packet into the outgoing leg's own stream (its SSRC, its
sequence numbers and timestamps: :class:`callxml.media.rtp.RelayNumbering`), so a relayed packet
is not byte for byte the packet sent. What must survive is what a receiver relies on: the
payloads and payload types in order, the gaps between sequence numbers and between timestamps,
and one SSRC per stream. :func:`normalized` keeps exactly that, so tests compare
``normalized(got) == normalized(sent)``.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence

from callxml.media.srtp import SrtpSession
from callxml.media.suites import AES_CM_128_HMAC_SHA1_80

__all__ = ["RtpPeer", "normalized", "rtp_packet"]

SUITE = AES_CM_128_HMAC_SHA1_80


def normalized(packets: Sequence[bytes]) -> list[bytes]:
    """``packets`` with sequence numbers and timestamps made relative to the first packet, the
    SSRC zeroed and the first packet's marker bit cleared (a renumbered stream marks its start).

    Raises AssertionError when the packets do not share one SSRC.
    """
    if not packets:
        return []
    ssrcs = {struct.unpack_from("!I", p, 8)[0] for p in packets}
    assert len(ssrcs) == 1, f"one stream expected, saw SSRCs {sorted(ssrcs)}"
    seq0, ts0 = struct.unpack_from("!HI", packets[0], 2)
    out = []
    for index, packet in enumerate(packets):
        seq, ts = struct.unpack_from("!HI", packet, 2)
        first = packet[1] & 0x7F if index == 0 else packet[1]
        header = struct.pack(
            "!BBHII", packet[0], first, (seq - seq0) & 0xFFFF, (ts - ts0) & 0xFFFFFFFF, 0
        )
        out.append(header + packet[12:])
    return out


def rtp_packet(seq: int, ssrc: int = 0x1234, payload: bytes | None = None) -> bytes:
    """A PCMU packet: sequence ``seq``, timestamp 160 per packet, 160 octets of ``seq``'s low
    byte (or ``payload``) — distinct payloads, so order and identity can be checked."""
    body = payload if payload is not None else bytes([seq & 0xFF]) * 160
    return struct.pack("!BBHII", 0x80, 0, seq, 160 * seq, ssrc) + body


class RtpPeer:
    """A raw loopback UDP socket playing one far end of a leg; with ``keys`` (ours, theirs) it
    speaks SRTP/SRTCP. ``send`` puts a datagram on the wire as it is; ``send_media`` protects an
    RTP packet first; ``received`` drains what arrived (unprotected on an SRTP peer, asserting
    every packet authenticates)."""

    def __init__(self, keys: tuple[bytes, bytes] | None = None, suite: str = SUITE) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.srtp = SrtpSession(suite, our_key=keys[0], their_key=keys[1]) if keys else None

    def media(self, packet: bytes) -> bytes:
        return self.srtp.protect(packet) if self.srtp is not None else packet

    def control(self, packet: bytes) -> bytes:
        return self.srtp.protect_rtcp(packet) if self.srtp is not None else packet

    def send(self, datagram: bytes, to: tuple[str, int]) -> None:
        self.sock.sendto(datagram, to)

    def send_media(self, packet: bytes, to: tuple[str, int]) -> None:
        self.sock.sendto(self.media(packet), to)

    def received(self) -> list[bytes]:
        out: list[bytes] = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return out
            if self.srtp is not None:
                plain = self.srtp.unprotect(data)
                assert plain is not None, "a packet that does not authenticate arrived"
                data = plain
            out.append(data)

    def close(self) -> None:
        self.sock.close()
