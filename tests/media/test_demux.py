"""What arrives on an RTP port, on real sockets, on both receive paths.

Every datagram goes through one classifier (:func:`callxml.media.rtp.classify`) and one decision
on the endpoint, whether it was read by the batched reader (recvmmsg; bridged legs handle it in
the batch loop) or by the asyncio transport (``RtpConfig(batched_io=False)``). Each kind --
RTP/SRTP good and failing authentication, RTCP multiplexed on the port, STUN, ZRTP and DTLS
datagrams, wrong versions, too short, too long -- must end up in the same place with the same
counters on both, and only authenticated media may move the symmetric-RTP latch.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import sys
from collections.abc import Callable

import pytest

from callxml.media.relay import MediaRelay
from callxml.media.rtp import PacketKind
from callxml.media.srtp import SrtpSession, generate_key_salt
from callxml.media.stream import RtpConfig, RtpEndpoint, SrtpKeys
from callxml.media.suites import AES_CM_128_HMAC_SHA1_80
from support.rtp import RtpPeer, normalized, rtp_packet
from support.waiting import until

SUITE = AES_CM_128_HMAC_SHA1_80
PATHS = pytest.mark.parametrize("batched", [True, False], ids=["batched", "transport"])
SECURITY = pytest.mark.parametrize("secure", [True, False], ids=["srtp", "rtp"])

STUN = bytes.fromhex("0001 0000 2112a442") + bytes(12)  # RFC 5389 binding request
ZRTP = bytes.fromhex("1000 0001 5a525450") + bytes(4) + b"Hello   " + bytes(8)  # RFC 6189 §5
DTLS = bytes.fromhex("16fefd 0000 000000000000 0010") + bytes(16)  # a DTLS 1.2 handshake record
WRONG_VERSION = b"\xc0\x00" + bytes(38)  # RTP version 3
TOO_SHORT = b"\x80\x00\x00\x01\x00\x00"  # six octets: no RTP header fits
TOO_LONG = b"\x80\x00" + bytes(1598)  # longer than any packet we accept (1500)
RECEIVER_REPORT = struct.pack("!BBHI", 0x80, 201, 1, 0x4321)  # RR, no blocks: 8 octets


def _keys(secure: bool) -> tuple[bytes, bytes] | None:
    return (generate_key_salt(SUITE), generate_key_salt(SUITE)) if secure else None


async def _leg(batched: bool, peer_keys: tuple[bytes, bytes] | None) -> RtpEndpoint:
    config = RtpConfig(rtcp=False, batched_io=batched)
    keys = SrtpKeys(SUITE, peer_keys[1], peer_keys[0]) if peer_keys else None
    leg = await RtpEndpoint.open(config, srtp=keys)
    assert (leg._io is not None) is (batched and sys.platform.startswith("linux"))
    return leg


def _burst(caller: RtpPeer, intruder: RtpPeer, to: tuple[str, int], *, secure: bool) -> None:
    """One of every kind, all queued before the endpoint reads (one batch when batched)."""
    caller.send(caller.media(rtp_packet(1)), to)
    caller.send(caller.control(RECEIVER_REPORT), to)  # RTCP multiplexed on the RTP port
    intruder.send(STUN, to)
    caller.send(caller.media(rtp_packet(2)), to)
    intruder.send(ZRTP, to)
    intruder.send(DTLS, to)
    intruder.send(WRONG_VERSION, to)
    intruder.send(TOO_SHORT, to)
    intruder.send(TOO_LONG, to)
    if secure:
        intruder.send(rtp_packet(9), to)  # plain RTP on an SRTP leg: fails authentication
    caller.send(caller.media(rtp_packet(3)), to)


def _check_counts(leg: RtpEndpoint, *, secure: bool) -> None:
    stats = leg.stats
    assert stats.packets_received == 3
    assert stats.octets_received == 3 * (172 + 10 * secure)
    assert stats.rtcp_received == 1
    assert (stats.stun_received, stats.zrtp_received, stats.dtls_received) == (1, 1, 1)
    # wrong version, too short, too long: not RTP, before any SRTP check (so not "auth")
    assert stats.dropped_invalid == 3
    assert (stats.dropped_auth, stats.dropped_replay) == (int(secure), 0)


@PATHS
@SECURITY
async def test_bridged_leg_relays_only_media_and_hands_other_protocols_to_their_handlers(
    batched: bool, secure: bool
) -> None:
    caller_keys, callee_keys = _keys(secure), _keys(secure)
    caller, callee, intruder = RtpPeer(caller_keys), RtpPeer(callee_keys), RtpPeer()
    leg_a, leg_b = await _leg(batched, caller_keys), await _leg(batched, callee_keys)
    handed: dict[PacketKind, list[tuple[bytes, tuple[str, int]]]] = {}

    def keep(kind: PacketKind) -> Callable[[bytes, tuple[str, int]], None]:
        return lambda data, addr: handed.setdefault(kind, []).append((data, addr))

    for kind in (PacketKind.STUN, PacketKind.ZRTP):
        leg_a.set_packet_handler(kind, keep(kind))
    batches: list[int] = []
    relay_batch = leg_a._relay_batch

    def counting(batch: object, count: int, target: RtpEndpoint) -> None:
        batches.append(count)
        relay_batch(batch, count, target)  # type: ignore[arg-type]

    leg_a._relay_batch = counting  # type: ignore[method-assign]
    try:
        leg_a.set_remote(caller.address)
        leg_b.set_remote(callee.address)
        MediaRelay(leg_a, leg_b).start()
        _burst(caller, intruder, leg_a.local_address, secure=secure)
        got: list[bytes] = []
        await until(lambda: len(got.__iadd__(callee.received())) >= 3, timeout=3.0)
        await until(
            lambda: leg_a.stats.dropped_invalid == 3 and leg_a.stats.rtcp_received == 1, timeout=3.0
        )
        await asyncio.sleep(0.05)
        got += callee.received()
        assert normalized(got) == normalized(
            [rtp_packet(1), rtp_packet(2), rtp_packet(3)]
        )  # only media crossed, in order, re-keyed
        _check_counts(leg_a, secure=secure)
        assert leg_b.stats.packets_sent == 3
        assert handed == {
            PacketKind.STUN: [(STUN, intruder.address)],
            PacketKind.ZRTP: [(ZRTP, intruder.address)],
        }
        assert leg_a.remote_address == caller.address  # nothing but the caller's media latched
        if batched and leg_a._io is not None:
            assert batches and batches[0] >= 10  # the batch loop saw the burst, not recvfrom
        else:
            assert not batches
    finally:
        for leg in (leg_a, leg_b):
            await leg.close()
        for peer in (caller, callee, intruder):
            peer.close()


@PATHS
@SECURITY
async def test_unbridged_leg_delivers_only_media_and_counts_the_rest(
    batched: bool, secure: bool
) -> None:
    """No handler set: STUN/ZRTP/DTLS are counted and dropped, never given to the codec side."""
    caller_keys = _keys(secure)
    caller, intruder = RtpPeer(caller_keys), RtpPeer()
    leg = await _leg(batched, caller_keys)
    delivered: list[bytes] = []
    leg.set_forward(delivered.append)  # what would otherwise be decoded
    try:
        leg.set_remote(("127.0.0.1", 9))  # SDP's idea; the caller's media moves the latch
        _burst(caller, intruder, leg.local_address, secure=secure)
        await until(lambda: len(delivered) >= 3 and leg.stats.dropped_invalid == 3, timeout=3.0)
        await asyncio.sleep(0.05)
        assert delivered == [rtp_packet(1), rtp_packet(2), rtp_packet(3)]
        _check_counts(leg, secure=secure)
        assert leg.remote_address == caller.address
    finally:
        await leg.close()
        caller.close()
        intruder.close()


@PATHS
async def test_a_failing_handler_does_not_stop_the_media(
    batched: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caller = RtpPeer()
    leg = await _leg(batched, None)
    delivered: list[bytes] = []
    leg.set_forward(delivered.append)

    def broken(data: bytes, addr: tuple[str, int]) -> None:
        raise RuntimeError("consumer bug")

    leg.set_packet_handler(PacketKind.ZRTP, broken)
    try:
        caller.send(rtp_packet(1), leg.local_address)
        caller.send(ZRTP, leg.local_address)
        caller.send(rtp_packet(2), leg.local_address)
        await until(lambda: len(delivered) == 2, timeout=3.0)
        assert delivered == [rtp_packet(1), rtp_packet(2)]
        assert leg.stats.zrtp_received == 1
        assert "ZRTP handler failed" in caplog.text
        leg.set_packet_handler(PacketKind.ZRTP, None)  # back to counting and dropping
        caller.send(ZRTP, leg.local_address)
        await until(lambda: leg.stats.zrtp_received == 2, timeout=3.0)
    finally:
        await leg.close()
        caller.close()


@PATHS
async def test_a_handler_that_rekeys_the_leg_takes_effect_from_the_next_packet(
    batched: bool,
) -> None:
    """What a ZRTP consumer will do: the handshake ends inside a burst and the leg turns SRTP.
    The packets after it in the same batch must be unprotected with the new keys, as the
    per-packet path does, not relayed as the plain RTP the batch started with."""
    keys = _keys(True)
    assert keys is not None
    caller, callee = RtpPeer(), RtpPeer()
    leg_a, leg_b = await _leg(batched, None), await _leg(batched, None)
    to_a = SrtpSession(SUITE, our_key=keys[0], their_key=None)
    switched: list[bool] = []

    def handshake_done(data: bytes, addr: tuple[str, int]) -> None:
        leg_a.set_srtp(SrtpKeys(SUITE, keys[1], keys[0]))
        switched.append(True)

    leg_a.set_packet_handler(PacketKind.ZRTP, handshake_done)
    try:
        leg_a.set_remote(caller.address)
        leg_b.set_remote(callee.address)
        MediaRelay(leg_a, leg_b).start()
        to = leg_a.local_address
        for datagram in (
            rtp_packet(1),
            ZRTP,
            to_a.protect(rtp_packet(2)),
            to_a.protect(rtp_packet(3)),
        ):
            caller.send(datagram, to)
        got: list[bytes] = []
        await until(lambda: len(got.__iadd__(callee.received())) >= 3, timeout=3.0)
        assert normalized(got) == normalized([rtp_packet(1), rtp_packet(2), rtp_packet(3)])
        assert switched == [True] and leg_a.secure
        assert leg_a.stats.packets_received == 3 and leg_a.stats.dropped_auth == 0
    finally:
        for leg in (leg_a, leg_b):
            await leg.close()
        caller.close()
        callee.close()


async def test_only_other_protocols_take_a_handler() -> None:
    leg = await RtpEndpoint.open(RtpConfig(rtcp=False))
    try:
        for kind in (PacketKind.RTP, PacketKind.RTCP, PacketKind.INVALID):
            with pytest.raises(ValueError, match=kind.name):
                leg.set_packet_handler(kind, lambda data, addr: None)
    finally:
        await leg.close()


@PATHS
async def test_srtcp_drops_count_up_across_a_rekey(batched: bool) -> None:
    """Failed SRTCP counts like failed SRTP: one more each time, never reset by new keys."""
    keys = _keys(True)
    assert keys is not None
    caller = RtpPeer(keys)
    leg = await _leg(batched, keys)
    forged = RtpPeer((generate_key_salt(SUITE), generate_key_salt(SUITE)))  # wrong keys
    try:
        caller.send(caller.media(rtp_packet(1)), leg.local_address)
        await until(lambda: leg.stats.packets_received == 1, timeout=3.0)
        caller.send(forged.media(rtp_packet(2)), leg.local_address)
        caller.send(forged.control(RECEIVER_REPORT), leg.local_address)
        await until(lambda: leg.stats.dropped_auth == 2, timeout=3.0)
        new = (generate_key_salt(SUITE), generate_key_salt(SUITE))
        leg.set_srtp(SrtpKeys(SUITE, new[1], new[0]))  # re-keyed: a fresh session
        caller.send(forged.media(rtp_packet(3)), leg.local_address)
        await until(lambda: leg.stats.dropped_auth == 3, timeout=3.0)
        caller.send(forged.control(RECEIVER_REPORT), leg.local_address)
        await until(lambda: leg.stats.dropped_auth == 4, timeout=3.0)
        await asyncio.sleep(0.05)
        assert (leg.stats.dropped_auth, leg.stats.rtcp_received) == (4, 0)
    finally:
        await leg.close()
        caller.close()
        forged.close()


async def test_handler_failure_log_names_no_bytes(caplog: pytest.LogCaptureFixture) -> None:
    """The handler failure log says which kind failed, never the datagram (it may carry key
    exchange: a ZRTP or DTLS handshake)."""
    caplog.set_level(logging.DEBUG)
    leg = await RtpEndpoint.open(RtpConfig(rtcp=False))

    def broken(data: bytes, addr: tuple[str, int]) -> None:
        raise RuntimeError("boom")

    leg.set_packet_handler(PacketKind.DTLS, broken)
    try:
        leg._not_media(PacketKind.DTLS, DTLS, ("127.0.0.1", 9))
    finally:
        await leg.close()
    assert "DTLS handler failed" in caplog.text
    assert DTLS.hex() not in caplog.text and repr(DTLS) not in caplog.text
