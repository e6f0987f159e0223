"""RTCP compound packets (RFC 3550 §6) and receiver statistics (App. A.3, A.8)."""

from __future__ import annotations

import pytest

from callxml.media.rtcp import (
    Bye,
    ReceiverReport,
    ReceptionStats,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    build_compound,
    ntp_timestamp,
    parse_compound,
)

BLOCK = ReportBlock(0x1234, 25, -3, 0x10005, 80, 0xAABBCCDD, 65536)


def test_compound_round_trip() -> None:
    packets: list[RtcpPacket] = [
        SenderReport(0xCAFEBABE, ntp_timestamp(1_700_000_000.5), 160, 10, 1600, (BLOCK,)),
        SourceDescription(0xCAFEBABE, "alice@example.com"),
        Bye((0xCAFEBABE,), "bye now"),
    ]
    assert parse_compound(build_compound(*packets)) == packets
    rr: list[RtcpPacket] = [ReceiverReport(1, (BLOCK, BLOCK)), SourceDescription(1, "x")]
    assert parse_compound(build_compound(*rr)) == rr


def test_ffmpeg_receiver_report_bytes() -> None:
    """The RR in FFmpeg's SRTCP test (plaintext of packets.json ffmpeg-srtcp-aes128-80)."""
    data = bytes.fromhex("81c90007123456788765432100000000000012340000069ec73069ba000001fd")
    (report,) = parse_compound(data)
    assert isinstance(report, ReceiverReport)
    assert report.ssrc == 0x12345678
    (block,) = report.reports
    assert block.ssrc == 0x87654321 and block.highest_sequence == 0x1234
    assert block.jitter == 0x69E and block.last_sr == 0xC73069BA
    assert bytes(report) == data


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\xc9",
        bytes.fromhex("40c90001deadbeef"),  # version 1
        bytes.fromhex("80c90005deadbeef"),  # length past the end
        bytes.fromhex("81c90001deadbeef"),  # one report block announced, none there
        bytes.fromhex("80c90000") * 17,  # too many packets
    ],
)
def test_malformed_rtcp_is_rejected(data: bytes) -> None:
    with pytest.raises(RtcpError):
        parse_compound(data)


def test_unknown_types_are_kept() -> None:
    (app,) = parse_compound(bytes.fromhex("80cc0001") + b"abcd")
    assert app == UnknownRtcp(204, b"abcd")


def test_ntp_timestamp() -> None:
    assert ntp_timestamp(0.0) == 2_208_988_800 << 32
    assert ntp_timestamp(0.5) & 0xFFFFFFFF == 1 << 31


def test_reception_stats_loss_and_wrap() -> None:
    stats = ReceptionStats()
    arrival = 0
    for seq in [65530, 65531, 65533, 65534, 0, 1, 3]:  # 65532 and 2 are lost
        stats.update(9, seq, seq * 160, arrival)
        arrival += 160
    assert stats.expected == 10 and stats.received == 7 and stats.lost == 3
    block = stats.report_block(now=1.0)
    assert block is not None
    assert block.highest_sequence == 0x10003  # one wrap
    assert block.packets_lost == 3
    assert block.fraction_lost == (3 << 8) // 10
    stats.update(9, 4, 0, arrival)
    again = stats.report_block(now=2.0)
    assert again is not None and again.fraction_lost == 0  # nothing lost since the last report


def test_jitter_follows_rfc3550_estimator() -> None:
    stats = ReceptionStats()
    # Transit alternates by 80 units: |D| = 80 each time, J += (80 - J) / 16.
    expected = 0.0
    for n in range(20):
        stats.update(5, n, n * 160, n * 160 + (80 if n % 2 else 0))
        if n:
            expected += (80 - expected) / 16
    assert stats.jitter == pytest.approx(expected)
    stats.sender_report_received(0x1122334455667788, now=10.0)
    block = stats.report_block(now=10.5)
    assert block is not None
    assert block.last_sr == 0x33445566 and block.delay_since_last_sr == 32768
