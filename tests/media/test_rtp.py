"""RTP packet parse/serialize (RFC 3550 §5.1), the sender's numbering, and :func:`classify`, the
one rule for what a datagram on an RTP port is (RFC 7983 §7, RFC 5761 §4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callxml.errors import LocalProtocolError
from callxml.media.rtp import (
    MAX_PACKET_SIZE,
    PacketKind,
    RtpError,
    RtpPacket,
    RtpSender,
    classify,
)

packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=16).map(lambda b: b[: len(b) // 4 * 4])),
    padding=st.sampled_from([0, 1, 4, 7]),
)


@given(packets)
def test_round_trip(packet: RtpPacket) -> None:
    assert RtpPacket.parse(bytes(packet)) == packet


@given(st.binary(max_size=64))
def test_garbage_never_crashes(data: bytes) -> None:
    try:
        RtpPacket.parse(data)
    except RtpError:
        pass


def test_known_bytes() -> None:
    # The plaintext of libsrtp's srtp_validate() vector: V=2, PT 15, SEQ 0x1234.
    data = bytes.fromhex("800f1234decafbadcafebabeabababababababababababababababab")
    packet = RtpPacket.parse(data)
    assert (packet.payload_type, packet.sequence_number) == (15, 0x1234)
    assert (packet.timestamp, packet.ssrc) == (0xDECAFBAD, 0xCAFEBABE)
    assert packet.payload == b"\xab" * 16 and not packet.marker
    assert bytes(packet) == data


@pytest.mark.parametrize(
    "data",
    [
        bytes(11),  # too short
        bytes.fromhex("400f1234decafbadcafebabe"),  # version 1
        bytes.fromhex("820f1234decafbadcafebabe"),  # two CSRCs announced, none present
        bytes.fromhex("900f1234decafbadcafebabe0001"),  # truncated extension header
        bytes.fromhex("900f1234decafbadcafebabe00010002"),  # extension longer than packet
        bytes.fromhex("a00f1234decafbadcafebabe00"),  # padding count 0
        bytes.fromhex("a00f1234decafbadcafebabe0009"),  # padding longer than packet
        bytes(1501),
    ],
)
def test_malformed_packets_are_rejected(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


def test_version_check_can_be_skipped_for_foreign_vectors() -> None:
    packet = RtpPacket.parse(bytes.fromhex("0000138800000000000000000001"), check_version=False)
    assert packet.version == 0 and packet.sequence_number == 5000


def test_building_refuses_out_of_range_fields() -> None:
    with pytest.raises(LocalProtocolError):
        RtpPacket(128, 0, 0, 0)
    with pytest.raises(LocalProtocolError):
        RtpPacket(0, 0x10000, 0, 0)
    with pytest.raises(LocalProtocolError):
        RtpPacket(0, 0, 0, 0, csrc=tuple(range(16)))
    with pytest.raises(LocalProtocolError):
        RtpPacket(0, 0, 0, 0, extension=(1, b"abc"))


def test_sender_numbering_wraps_and_starts_random() -> None:
    sender = RtpSender(ssrc=7, sequence_number=0xFFFF, timestamp=0xFFFFFF00)
    first = RtpPacket.parse(sender.build(0, b"x", marker=True))
    sender.advance(0x100)
    second = RtpPacket.parse(sender.build(0, b"y"))
    assert (first.sequence_number, second.sequence_number) == (0xFFFF, 0)
    assert (first.timestamp, second.timestamp) == (0xFFFFFF00, 0)
    assert first.marker and not second.marker and second.ssrc == 7
    assert sender.packets_sent == 2 and sender.octets_sent == 2
    starts = {(s.ssrc, s.sequence_number, s.timestamp) for s in (RtpSender() for _ in range(8))}
    assert len(starts) == 8  # RFC 3550 §5.1: random initial values


# -- classify ------------------------------------------------------------------------------

RTP_PCMU = bytes(RtpPacket(0, 1, 160, 0x1234, bytes(160)))
RTP_DTMF = bytes(RtpPacket(101, 2, 320, 0x1234, bytes(4), marker=True))  # second octet 0xE5
RTCP_RR = bytes.fromhex("80c90001") + bytes(4)  # an empty receiver report: 8 octets
RTCP_SR = bytes.fromhex("80c80006") + bytes(24)
STUN = bytes.fromhex("0001 0000 2112a442") + bytes(12)  # binding request, no attributes
ZRTP = bytes.fromhex("1000 0001 5a525450") + bytes(4) + b"Hello   " + bytes(8)  # RFC 6189 §5
DTLS = bytes.fromhex("16fefd 0000 000000000000 0010") + bytes(16)  # handshake record, DTLS 1.2
K = PacketKind

CASES = [
    ("rtp", RTP_PCMU, K.RTP),
    ("rtp-marker-pt101", RTP_DTMF, K.RTP),
    ("rtp-header-only", RTP_PCMU[:12], K.RTP),
    ("rtp-largest", RTP_PCMU[:12] + bytes(MAX_PACKET_SIZE - 12), K.RTP),
    ("rtcp-rr", RTCP_RR, K.RTCP),
    ("rtcp-sr", RTCP_SR, K.RTCP),
    ("rtcp-pt-223", bytes.fromhex("80df0001") + bytes(4), K.RTCP),  # RFC 5761 §4 range ends
    ("rtcp-too-short", RTCP_RR[:7], K.INVALID),
    ("stun", STUN, K.STUN),
    ("stun-first-octet-3", b"\x03" + STUN[1:], K.STUN),
    ("stun-without-cookie", STUN[:4] + bytes(16), K.INVALID),
    ("stun-too-short", STUN[:19], K.INVALID),
    ("zrtp", ZRTP, K.ZRTP),
    ("zrtp-without-cookie", ZRTP[:4] + b"ZRTQ" + ZRTP[8:], K.INVALID),
    ("zrtp-too-short", ZRTP[:11], K.INVALID),
    ("dtls", DTLS, K.DTLS),
    ("dtls-too-short", DTLS[:12], K.INVALID),
    ("version-0", bytes(20), K.INVALID),
    ("version-1", b"\x40" + RTP_PCMU[1:], K.INVALID),
    ("version-3", b"\xc0" + RTP_PCMU[1:], K.INVALID),
    ("turn-channel", b"\x40\x00\x00\x10" + bytes(16), K.INVALID),
    ("rtp-too-short", RTP_PCMU[:11], K.INVALID),
    ("rtp-too-long", RTP_PCMU[:12] + bytes(MAX_PACKET_SIZE - 11), K.INVALID),
    ("one-octet", b"\x80", K.INVALID),
    ("empty", b"", K.INVALID),
]


@pytest.mark.parametrize(("data", "kind"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify(data: bytes, kind: PacketKind) -> None:
    assert classify(data, len(data)) is kind
    # The batched reader classifies a datagram where it lies: in a longer slot full of stale
    # octets, of which only the first ``size`` count.
    slot = bytearray(b"\xff" * 2048)
    slot[: len(data)] = data
    assert classify(memoryview(slot), len(data)) is kind


@given(st.binary(max_size=40), st.integers(0, 2048))
def test_classify_never_raises_and_reads_only_the_datagram(data: bytes, stale: int) -> None:
    slot = bytearray(data) + bytes([stale % 256]) * (2048 - len(data))
    assert classify(data, len(data)) is classify(memoryview(slot), len(data))
