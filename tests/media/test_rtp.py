"""RTP packet parse/serialize (RFC 3550 §5.1) and the sender's numbering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callxml.errors import LocalProtocolError
from callxml.media.rtp import RtpError, RtpPacket, RtpSender, is_rtcp

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


def test_rtcp_demultiplexing() -> None:
    assert is_rtcp(bytes.fromhex("80c8"))  # SR
    assert is_rtcp(bytes.fromhex("80c9"))  # RR
    assert not is_rtcp(bytes.fromhex("8000"))  # PCMU
    assert not is_rtcp(bytes.fromhex("80e5"))  # marker + PT 101
    assert not is_rtcp(b"\x80")
