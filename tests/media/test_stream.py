"""RtpEndpoint on real loopback sockets: audio and DTMF over RTP and SRTP, symmetric RTP latching,
drops of tampered and replayed packets, RTCP reports, and the relay between two legs."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from collections.abc import Iterator

import pytest

from callxml.errors import ConfigError, MediaError
from callxml.media.dtmf import DtmfDigit
from callxml.media.relay import MediaRelay
from callxml.media.rtcp import ReceiverReport, SenderReport, SourceDescription, parse_compound
from callxml.media.rtp import RtpPacket
from callxml.media.srtp import SrtpSession, generate_key_salt
from callxml.media.stream import RtpConfig, RtpEndpoint, SrtpKeys
from callxml.media.suites import AES_CM_128_HMAC_SHA1_80
from callxml.media.tone import goertzel_power, sine_frames
from callxml.media.wav import PcmRecorder

SUITE = AES_CM_128_HMAC_SHA1_80


def _keys(suite: str = SUITE) -> tuple[SrtpKeys, SrtpKeys]:
    a, b = generate_key_salt(suite), generate_key_salt(suite)
    return SrtpKeys(suite, a, b), SrtpKeys(suite, b, a)


async def _until(predicate: object, timeout: float = 3.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def _pair(
    *, secure: bool, config: RtpConfig | None = None
) -> tuple[RtpEndpoint, RtpEndpoint, PcmRecorder]:
    recorder = PcmRecorder()
    keys_a, keys_b = _keys() if secure else (None, None)
    a = await RtpEndpoint.open(config, srtp=keys_a)
    b = await RtpEndpoint.open(config, consumer=recorder, srtp=keys_b)
    a.set_remote(b.local_address)
    b.set_remote(a.local_address)
    return a, b, recorder


@pytest.mark.parametrize("secure", [False, True], ids=["rtp", "srtp"])
async def test_tone_and_dtmf_cross_the_link(secure: bool) -> None:
    a, b, recorder = await _pair(secure=secure)
    try:
        frames = sine_frames(1000, 400)
        assert await a.play(frames) == len(frames)
        await a.send_dtmf("1#", duration_ms=60, gap_ms=40)
        await _until(lambda: len(recorder.digits) == 2)
        b.flush_received()
        assert recorder.digits == ["1", "#"]
        assert goertzel_power(recorder.pcm, 1000) > 0.9
        assert goertzel_power(recorder.pcm, 1500) < 0.01
        assert b.stats.packets_received == a.stats.packets_sent
        assert a.stats.packets_sent == len(frames) + 2 * (3 + 3)  # 3 updates + 3 ends per digit
        assert b.stats.dropped_auth == b.stats.dropped_replay == 0
        assert b.stats.dtmf_digits == 2
        assert (await b.dtmf_events.get()).digit == "1"
        assert a.secure is secure and repr(a).count("srtp") == int(secure)
    finally:
        await a.close()
        await b.close()


async def test_paced_sender_numbers_packets_like_rfc3550() -> None:
    """Capture what the endpoint sends on a raw socket: sequence and timestamp steps, marker."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    ep = await RtpEndpoint.open(RtpConfig(rtcp=False))
    try:
        ep.set_remote(sink.getsockname())
        await ep.play(sine_frames(1000, 100))  # 5 frames
        await ep.send_dtmf("5", duration_ms=40)
        packets = [RtpPacket.parse(sink.recv(2048)) for _ in range(5 + 2 + 3)]
    finally:
        await ep.close()
        sink.close()
    audio, dtmf = packets[:5], packets[5:]
    assert [p.marker for p in audio] == [True, False, False, False, False]
    for prev, cur in itertools.pairwise(packets):
        assert cur.sequence_number == (prev.sequence_number + 1) & 0xFFFF
    assert {p.ssrc for p in packets} == {ep.ssrc}
    for prev, cur in itertools.pairwise(audio):
        assert cur.timestamp == (prev.timestamp + 160) & 0xFFFFFFFF
    assert all(len(p.payload) == 160 and p.payload_type == 0 for p in audio)
    # RFC 4733: one timestamp for the whole event, marker on its first packet, 3 end packets.
    assert {p.timestamp for p in dtmf} == {dtmf[0].timestamp}
    assert [p.marker for p in dtmf] == [True] + [False] * 4
    assert [p.payload[1] >> 7 for p in dtmf] == [0, 0, 1, 1, 1]
    assert [struct.unpack("!H", p.payload[2:4])[0] for p in dtmf] == [160, 320, 320, 320, 320]
    assert all(p.payload_type == 101 and p.payload[0] == 5 for p in dtmf)


async def test_srtp_tampered_and_replayed_packets_are_dropped_and_do_not_latch() -> None:
    keys_a, keys_b = _keys()
    recorder = PcmRecorder()
    b = await RtpEndpoint.open(RtpConfig(rtcp=False), consumer=recorder, srtp=keys_b)
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.1", 0))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    try:
        b.set_remote(("127.0.0.1", 9))  # what SDP said; the real peer sends from elsewhere
        tx = SrtpSession(SUITE, our_key=keys_a.our_key, their_key=None)
        good = [
            tx.protect(bytes(RtpPacket(0, 1000 + i, 160 * i, 77, bytes(160)))) for i in range(3)
        ]
        tampered = bytearray(good[1])
        tampered[-1] ^= 0xFF
        attacker.sendto(bytes(tampered), b.local_address)
        attacker.sendto(b"\x80\x00" + bytes(40), b.local_address)  # forged, wrong key
        await _until(lambda: b.stats.dropped_auth == 2)
        assert b.remote_address == ("127.0.0.1", 9)  # not latched to the attacker
        peer.sendto(good[0], b.local_address)
        await _until(lambda: b.stats.packets_received == 1)
        assert b.remote_address == peer.getsockname()  # latched on an authenticated packet
        attacker.sendto(good[0], b.local_address)  # a replay, even from the attacker
        await _until(lambda: b.stats.dropped_replay == 1)
        assert b.remote_address == peer.getsockname()
        assert b.stats.packets_received == 1
    finally:
        await b.close()
        attacker.close()
        peer.close()


async def test_plain_rtp_latches_once_and_refuses_junk() -> None:
    ep = await RtpEndpoint.open(RtpConfig(rtcp=False))
    first, second = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    try:
        for s in (first, second):
            s.bind(("127.0.0.1", 0))
        first.sendto(b"\x00" * 20, ep.local_address)  # version 0
        first.sendto(bytes(RtpPacket(0, 1, 0, 5, bytes(160))), ep.local_address)
        await _until(lambda: ep.stats.packets_received == 1)
        second.sendto(bytes(RtpPacket(0, 2, 160, 5, bytes(160))), ep.local_address)
        await _until(lambda: ep.stats.packets_received == 2)
        assert ep.remote_address == first.getsockname()
        assert ep.stats.dropped_invalid == 1
    finally:
        await ep.close()
        first.close()
        second.close()


async def test_rtcp_reports_are_sent_and_understood() -> None:
    config = RtpConfig(rtcp_interval=0.1, cname="test@callxml")
    a, b, _ = await _pair(secure=True, config=config)
    try:
        assert a.rtcp_address is not None and a.rtcp_address[1] == a.local_address[1] + 1
        await a.play(sine_frames(1000, 100))
        await _until(lambda: a.stats.rtcp_received >= 1 and b.stats.rtcp_received >= 1)
    finally:
        await a.close()
        await b.close()
    assert b._reception.last_sr != 0  # b saw a's SR


async def test_rtcp_packets_on_the_wire() -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    ep = await RtpEndpoint.open(RtpConfig(rtcp_interval=0.1, cname="me"))
    try:
        host, port = sink.getsockname()
        ep.set_remote((host, port + 1000), rtcp_address=(host, port))
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sink, 2048), 3)
        first = parse_compound(data)
        assert isinstance(first[0], ReceiverReport)  # nothing sent yet: RR
        assert first[1] == SourceDescription(ep.ssrc, "me")
        await ep.play(sine_frames(1000, 40))
        while True:
            data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sink, 2048), 3)
            packets = parse_compound(data)
            if isinstance(packets[0], SenderReport):
                break
        assert packets[0].packet_count == 2 and packets[0].octet_count == 320
    finally:
        await ep.close()
        sink.close()


async def test_relay_srtp_leg_to_rtp_leg_with_transcoding() -> None:
    """Caller (SRTP, PCMU) ⇄ relay leg A … relay leg B ⇄ callee (RTP, PCMA)."""
    keys_caller, keys_a = _keys()
    caller_rec, callee_rec = PcmRecorder(), PcmRecorder()
    caller = await RtpEndpoint.open(RtpConfig(rtcp=False), consumer=caller_rec, srtp=keys_caller)
    leg_a = await RtpEndpoint.open(RtpConfig(rtcp=False), srtp=keys_a)
    leg_b = await RtpEndpoint.open(RtpConfig(rtcp=False, codec="PCMA", dtmf_payload_type=96))
    callee = await RtpEndpoint.open(
        RtpConfig(rtcp=False, codec="PCMA", dtmf_payload_type=96), consumer=callee_rec
    )
    try:
        caller.set_remote(leg_a.local_address)
        leg_a.set_remote(caller.local_address)
        leg_b.set_remote(callee.local_address)
        callee.set_remote(leg_b.local_address)
        with MediaRelay(leg_a, leg_b) as relay:
            assert relay.active
            await asyncio.gather(
                caller.play(sine_frames(1000, 300)), callee.play(sine_frames(600, 300))
            )
            await caller.send_dtmf("9", duration_ms=40)
            await _until(lambda: callee_rec.digits == ["9"])
            await _until(lambda: caller.stats.packets_received >= 15)
        assert not relay.active
        callee.flush_received()
        caller.flush_received()
        assert goertzel_power(callee_rec.pcm, 1000) > 0.9
        assert goertzel_power(caller_rec.pcm, 600) > 0.9
        assert leg_a.stats.packets_received == caller.stats.packets_sent
        assert leg_b.stats.packets_sent == leg_a.stats.packets_received
    finally:
        for ep in (caller, leg_a, leg_b, callee):
            await ep.close()


async def test_port_range_binds_even_rtp_port_and_odd_rtcp_port() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    base = probe.getsockname()[1] & ~1
    probe.close()
    low, high = max(1024, base - 40), min(65535, base + 40)
    endpoints = [await RtpEndpoint.open(RtpConfig(port_range=(low, high))) for _ in range(3)]
    try:
        ports = [ep.local_address[1] for ep in endpoints]
        assert len(set(ports)) == 3
        for ep in endpoints:
            assert ep.local_address[1] % 2 == 0 and low <= ep.local_address[1] <= high
            assert ep.rtcp_address == ("127.0.0.1", ep.local_address[1] + 1)
    finally:
        for ep in endpoints:
            await ep.close()
    with pytest.raises(ConfigError):
        RtpConfig(port_range=(5000, 4000))


async def test_closed_endpoint_refuses_to_play_and_finishes_waiters() -> None:
    ep = await RtpEndpoint.open(RtpConfig(rtcp=False))
    ep.set_remote(("127.0.0.1", 9))

    def endless() -> object:
        while True:
            yield bytes(320)

    player = asyncio.create_task(ep.play(endless()))  # type: ignore[arg-type]
    await _until(lambda: ep.stats.packets_sent >= 3)
    await ep.close()
    assert await asyncio.wait_for(player, 1) >= 3
    with pytest.raises(MediaError):
        await ep.play([bytes(320)])


def test_srtp_keys_repr_hides_keys() -> None:
    keys = SrtpKeys(SUITE, bytes(range(30)), bytes(range(1, 31)))
    assert "our_key" not in repr(keys) and bytes(range(30)).hex() not in repr(keys)
    assert SUITE in repr(keys)


async def test_dtmf_digit_reported_once_when_end_packets_lost() -> None:
    recorder = PcmRecorder()
    ep = await RtpEndpoint.open(RtpConfig(rtcp=False), consumer=recorder)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    try:
        for i, (marker, flags, duration) in enumerate([(True, 0, 160), (False, 0, 320)]):
            event = bytes([3, flags, *struct.pack("!H", duration)])
            peer.sendto(bytes(RtpPacket(101, 50 + i, 8000, 9, event, marker)), ep.local_address)
        await _until(lambda: ep.stats.packets_received == 2)
        assert recorder.digits == ["3"]
        assert ep.dtmf_events.get_nowait() == DtmfDigit("3", 8000)
    finally:
        await ep.close()
        peer.close()


@pytest.mark.parametrize("secure_b", [True, False], ids=["srtp-srtp", "srtp-rtp"])
async def test_relay_pass_through_same_codec(secure_b: bool) -> None:
    """Same codec on both legs: packets pass untouched but for the keys, both directions."""
    keys_caller, keys_a = _keys()
    keys_b, keys_callee = _keys() if secure_b else (None, None)
    caller_rec, callee_rec = PcmRecorder(), PcmRecorder()
    config = RtpConfig(rtcp=False)
    caller = await RtpEndpoint.open(config, consumer=caller_rec, srtp=keys_caller)
    leg_a = await RtpEndpoint.open(config, srtp=keys_a)
    leg_b = await RtpEndpoint.open(config, srtp=keys_b)
    callee = await RtpEndpoint.open(config, consumer=callee_rec, srtp=keys_callee)
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder.bind(("127.0.0.1", 0))
    try:
        caller.set_remote(leg_a.local_address)
        leg_a.set_remote(caller.local_address)
        leg_b.set_remote(callee.local_address)
        callee.set_remote(leg_b.local_address)
        relay = MediaRelay(leg_a, leg_b)
        relay.start()
        assert leg_a._forward_ep is leg_b and leg_b._forward_ep is leg_a
        intruder.sendto(bytes(RtpPacket(0, 1, 0, 1, bytes(160))), leg_a.local_address)
        await asyncio.gather(
            caller.play(sine_frames(1000, 200)), callee.play(sine_frames(600, 200))
        )
        await caller.send_dtmf("4", duration_ms=40)
        await _until(lambda: callee_rec.digits == ["4"] and caller.stats.packets_received >= 10)
        assert leg_a.stats.dropped_auth == 1  # the intruder's plain RTP did not authenticate
        assert leg_a.remote_address == caller.local_address  # ...and did not move the latch
        relay.stop()
        callee.flush_received()
        caller.flush_received()
        assert goertzel_power(callee_rec.pcm, 1000) > 0.9
        assert goertzel_power(caller_rec.pcm, 600) > 0.9
        assert leg_b.stats.packets_sent == leg_a.stats.packets_received == 10 + 5
        assert callee.stats.dropped_auth == 0 and callee.stats.packets_received == 15
    finally:
        intruder.close()
        for ep in (caller, leg_a, leg_b, callee):
            await ep.close()


async def test_cancelling_play_stops_the_source() -> None:
    ep = await RtpEndpoint.open(RtpConfig(rtcp=False))
    ep.set_remote(("127.0.0.1", 9))

    def endless() -> Iterator[bytes]:
        while True:
            yield bytes(320)

    try:
        player = asyncio.create_task(ep.play(endless()))
        await _until(lambda: ep.stats.packets_sent >= 2)
        player.cancel()
        with pytest.raises(asyncio.CancelledError):
            await player
        sent = ep.stats.packets_sent
        await asyncio.sleep(0.1)
        assert ep.stats.packets_sent <= sent + 1
    finally:
        await ep.close()
