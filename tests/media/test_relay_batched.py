"""The bridged relay on every socket path: batched (recvmmsg/sendmmsg, the Linux default), the
batched socket read one datagram at a time (what call rates look like: ``_relay_one``) and the
asyncio datagram transport. Bursts bigger than a batch, oversized and multiplexed RTCP
datagrams, replays, SRTP re-latching (NAT rebinding) and plain-RTP latch-once must behave the
same on all of them."""

from __future__ import annotations

import asyncio
import socket
import struct
import sys

import pytest

from callxml.errors import MediaError
from callxml.media import mmsg, srtp
from callxml.media.mmsg import BATCH
from callxml.media.relay import MediaRelay
from callxml.media.srtp import SrtpSession, generate_key_salt
from callxml.media.stream import RtpConfig, RtpEndpoint, SrtpKeys
from callxml.media.suites import AES_CM_128_HMAC_SHA1_80
from support.rtp import RtpPeer, normalized, rtp_packet
from support.waiting import until

SUITE = AES_CM_128_HMAC_SHA1_80
PATHS = pytest.mark.parametrize("path", ["batched", "single", "transport"])


def _reading(path: str, *legs: RtpEndpoint) -> None:
    """On the "single" path every read of a batched socket takes one datagram (recvfrom_into),
    as at call rates, instead of starting with recvmmsg."""
    for leg in legs:
        assert (leg._io is not None) is (path != "transport" and sys.platform.startswith("linux"))
        if path == "single" and leg._io is not None:
            leg._io.single_reads = 10**9


async def _bridge(
    path: str, secure_a: bool, secure_b: bool
) -> tuple[RtpEndpoint, RtpEndpoint, RtpPeer, RtpPeer]:
    """caller peer <-> leg A ==relay== leg B <-> callee peer."""
    config = RtpConfig(rtcp=False, batched_io=path != "transport")
    caller_keys = (generate_key_salt(SUITE), generate_key_salt(SUITE)) if secure_a else None
    callee_keys = (generate_key_salt(SUITE), generate_key_salt(SUITE)) if secure_b else None
    caller, callee = RtpPeer(caller_keys), RtpPeer(callee_keys)
    leg_a = await RtpEndpoint.open(
        config, srtp=SrtpKeys(SUITE, caller_keys[1], caller_keys[0]) if caller_keys else None
    )
    leg_b = await RtpEndpoint.open(
        config, srtp=SrtpKeys(SUITE, callee_keys[1], callee_keys[0]) if callee_keys else None
    )
    _reading(path, leg_a, leg_b)
    leg_a.set_remote(caller.address)
    leg_b.set_remote(callee.address)
    MediaRelay(leg_a, leg_b).start()
    return leg_a, leg_b, caller, callee


async def _teardown(*items: RtpEndpoint | RtpPeer) -> None:
    for item in items:
        if isinstance(item, RtpEndpoint):
            await item.close()
        else:
            item.close()


def test_batched_io_is_available_on_linux() -> None:
    if sys.platform.startswith("linux"):
        assert mmsg.mmsg_api() is not None  # the self-test passed: the fast path is in use


@PATHS
@pytest.mark.parametrize(
    ("secure_a", "secure_b"),
    [(True, True), (True, False), (False, True), (False, False)],
    ids=["srtp-srtp", "srtp-rtp", "rtp-srtp", "rtp-rtp"],
)
async def test_burst_bigger_than_a_batch_arrives_whole_and_in_order(
    path: str, secure_a: bool, secure_b: bool
) -> None:
    leg_a, leg_b, caller, callee = await _bridge(path, secure_a, secure_b)
    try:
        total = 3 * BATCH + 5
        for seq in range(total):  # all queued before the loop runs: several full batches
            caller.send_media(rtp_packet(seq), leg_a.local_address)
        got: list[bytes] = []
        await until(lambda: len(got.__iadd__(callee.received())) >= total, timeout=3.0)
        assert normalized(got) == normalized(
            [rtp_packet(seq) for seq in range(total)]
        )  # same bytes, same order, re-keyed
        assert leg_a.stats.packets_received == leg_b.stats.packets_sent == total
        assert leg_a.stats.octets_received == total * (172 + 10 * secure_a)
        assert leg_b.stats.octets_sent == total * (172 + 10 * secure_b)
        # and back the other way, one packet: the caller hears the callee
        callee.send_media(rtp_packet(7, ssrc=99), leg_b.local_address)
        back: list[bytes] = []
        await until(lambda: bool(back.__iadd__(caller.received())), timeout=3.0)
        assert normalized(back) == normalized([rtp_packet(7, ssrc=99)])
    finally:
        await _teardown(leg_a, leg_b, caller, callee)


@PATHS
async def test_bad_datagrams_in_a_batch_are_dropped_and_counted(path: str) -> None:
    leg_a, leg_b, caller, callee = await _bridge(path, True, True)
    intruder = RtpPeer(None)
    try:
        to = leg_a.local_address
        caller.send_media(rtp_packet(1), to)
        intruder.sock.sendto(rtp_packet(2), to)  # plain RTP on an SRTP leg: fails authentication
        intruder.sock.sendto(bytes(2000), to)  # longer than any RTP packet we accept
        first = caller.srtp.protect(rtp_packet(3)) if caller.srtp else b""
        caller.sock.sendto(first, to)
        caller.sock.sendto(first, to)  # the same packet again: a replay (RFC 3711 §3.3.2)
        caller.send_media(rtp_packet(4), to)
        got: list[bytes] = []
        await until(lambda: len(got.__iadd__(callee.received())) >= 3, timeout=3.0)
        await asyncio.sleep(0.05)
        got += callee.received()
        assert normalized(got) == normalized([rtp_packet(1), rtp_packet(3), rtp_packet(4)])
        stats = leg_a.stats
        assert (stats.dropped_auth, stats.dropped_replay, stats.dropped_invalid) == (1, 1, 1)
        assert leg_a.remote_address == caller.address  # nothing moved the latch
    finally:
        await _teardown(leg_a, leg_b, caller, callee, intruder)


@PATHS
async def test_srtp_leg_follows_an_authenticated_new_source(path: str) -> None:
    """NAT rebinding: the caller's packets now come from another port; replies follow them."""
    leg_a, leg_b, caller, callee = await _bridge(path, True, True)
    moved = RtpPeer(None)
    moved.srtp = caller.srtp  # same keys and crypto context, new address
    try:
        caller.send_media(rtp_packet(1), leg_a.local_address)
        await until(lambda: leg_b.stats.packets_sent == 1, timeout=3.0)
        moved.send_media(rtp_packet(2), leg_a.local_address)
        await until(lambda: leg_a.remote_address == moved.address, timeout=3.0)
        callee.send_media(rtp_packet(9, ssrc=5), leg_b.local_address)
        back: list[bytes] = []
        await until(lambda: bool(back.__iadd__(moved.received())), timeout=3.0)
        assert normalized(back) == normalized([rtp_packet(9, ssrc=5)])
        assert caller.received() == []
    finally:
        await _teardown(leg_a, leg_b, caller, callee, moved)


@PATHS
async def test_plain_rtp_leg_latches_once(path: str) -> None:
    leg_a, leg_b, caller, callee = await _bridge(path, False, False)
    other = RtpPeer(None)
    try:
        caller.send_media(rtp_packet(1), leg_a.local_address)
        await until(lambda: leg_b.stats.packets_sent == 1, timeout=3.0)
        other.send_media(
            rtp_packet(2), leg_a.local_address
        )  # relayed (plain RTP cannot be checked)...
        await until(lambda: leg_b.stats.packets_sent == 2, timeout=3.0)
        assert leg_a.remote_address == caller.address  # ...but the latch stays put
    finally:
        await _teardown(leg_a, leg_b, caller, callee, other)


@PATHS
async def test_plain_to_srtp_repeat_is_dropped_not_raised(path: str) -> None:
    """libsrtp refuses to protect a sequence number twice; the relay drops that packet."""
    leg_a, leg_b, caller, callee = await _bridge(path, False, True)
    try:
        for seq in (1, 1, 2):
            caller.send_media(rtp_packet(seq), leg_a.local_address)
        got: list[bytes] = []
        await until(lambda: len(got.__iadd__(callee.received())) >= 2, timeout=3.0)
        assert normalized(got) == normalized([rtp_packet(1), rtp_packet(2)])
        assert leg_a.stats.dropped_invalid == 1
    finally:
        await _teardown(leg_a, leg_b, caller, callee)


@PATHS
async def test_multiplexed_rtcp_in_a_bridged_batch_is_not_relayed(path: str) -> None:
    config = RtpConfig(rtcp=False, rtcp_mux=True, batched_io=path != "transport")
    leg_a = await RtpEndpoint.open(config)
    leg_b = await RtpEndpoint.open(config)
    _reading(path, leg_a, leg_b)
    caller, callee = RtpPeer(None), RtpPeer(None)
    try:
        leg_a.set_remote(caller.address)
        leg_b.set_remote(callee.address)
        MediaRelay(leg_a, leg_b).start()
        receiver_report = struct.pack("!BBHI", 0x80, 201, 1, 0x4321)  # RR, no blocks
        caller.send_media(rtp_packet(1), leg_a.local_address)
        caller.send_media(receiver_report, leg_a.local_address)
        caller.send_media(rtp_packet(2), leg_a.local_address)
        got: list[bytes] = []
        await until(lambda: len(got.__iadd__(callee.received())) >= 2, timeout=3.0)
        assert normalized(got) == normalized([rtp_packet(1), rtp_packet(2)])
        await until(lambda: leg_a.stats.rtcp_received == 1, timeout=3.0)
    finally:
        await _teardown(leg_a, leg_b, caller, callee)


async def test_unbridged_batched_leg_delivers_like_the_transport() -> None:
    """Without a bridge the batched reader hands each datagram to datagram_received."""
    seen: list[tuple[bytes, tuple[str, int]]] = []
    ep = await RtpEndpoint.open(RtpConfig(rtcp=False))
    peer = RtpPeer(None)
    ep.set_forward(lambda data: seen.append((data, ep.remote_address or ("", 0))))
    try:
        for seq in range(BATCH + 3):
            peer.send_media(rtp_packet(seq), ep.local_address)
        await until(lambda: len(seen) == BATCH + 3, timeout=3.0)
        assert [data for data, _ in seen] == [rtp_packet(seq) for seq in range(BATCH + 3)]
        assert ep.remote_address == peer.address  # latched from the kernel's sockaddr
    finally:
        await _teardown(ep, peer)


def test_sockaddr_round_trip() -> None:
    raw4 = mmsg.build_sockaddr(("127.0.0.1", 5004), socket.AF_INET)
    assert raw4 is not None and len(raw4) == 16
    assert mmsg.parse_sockaddr(raw4) == ("127.0.0.1", 5004)
    raw6 = mmsg.build_sockaddr(("::1", 40000), socket.AF_INET6)
    assert raw6 is not None and len(raw6) == 28
    assert mmsg.parse_sockaddr(raw6) == ("::1", 40000)
    assert mmsg.build_sockaddr(("example.com", 5004), socket.AF_INET) is None  # not numeric
    assert mmsg.build_sockaddr(("127.0.0.1", 70000), socket.AF_INET) is None


async def test_quiet_leg_reads_singly_then_batches_a_burst() -> None:
    """After a recvmmsg finds one datagram the leg reads one per wakeup for a while; a burst
    arriving then is still relayed whole and in order, and recvmmsg takes over again."""
    leg_a, leg_b, caller, callee = await _bridge(True, True, True)
    try:
        io = leg_a._io
        if io is None:
            pytest.skip(reason="batched I/O needs Linux recvmmsg")
        caller.send_media(rtp_packet(0), leg_a.local_address)
        await until(lambda: leg_b.stats.packets_sent == 1, timeout=3.0)
        assert io.single_reads == mmsg.SINGLE_READS  # one datagram found: read singly next
        counts: list[int] = []
        receive = io.batch.receive

        def counting(fd: int, family: int) -> int:
            counts.append(receive(fd, family))
            return counts[-1]

        io.batch.receive = counting  # type: ignore[method-assign]
        total = 1 + 4 * BATCH
        for seq in range(1, total):  # all queued before the loop runs again
            caller.send_media(rtp_packet(seq), leg_a.local_address)
        got: list[bytes] = []
        await until(lambda: len(got.__iadd__(callee.received())) >= total, timeout=3.0)
        assert normalized(got) == normalized([rtp_packet(seq) for seq in range(total)])
        assert leg_b.stats.packets_sent == total
        # the first SINGLE_READS datagrams came one per wakeup; recvmmsg took the rest in batches
        assert counts[:4] == [BATCH, BATCH, BATCH, total - 1 - mmsg.SINGLE_READS - 3 * BATCH]
    finally:
        if leg_a._io is not None:
            del leg_a._io.batch.receive  # the per-thread batch is shared: restore its method
        await _teardown(leg_a, leg_b, caller, callee)


@PATHS
async def test_ipv6_burst_is_relayed_and_the_leg_follows_a_new_source(path: str) -> None:
    """IPv6 sources are compared as whole sockaddr_in6 (IPv4 ones as one integer word)."""
    keys = [generate_key_salt(SUITE) for _ in range(4)]  # caller, leg A, callee, leg B
    config = RtpConfig(host="::1", rtcp=False, batched_io=path != "transport")
    leg_a = await RtpEndpoint.open(config, srtp=SrtpKeys(SUITE, keys[1], keys[0]))
    leg_b = await RtpEndpoint.open(config, srtp=SrtpKeys(SUITE, keys[3], keys[2]))
    socks = [socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) for _ in range(3)]
    caller, moved, callee = socks
    for sock in socks:
        sock.bind(("::1", 0))
        sock.setblocking(False)
    to_a = SrtpSession(SUITE, our_key=keys[0], their_key=None)
    from_b = SrtpSession(SUITE, our_key=None, their_key=keys[3])
    try:
        _reading(path, leg_a, leg_b)
        leg_a.set_remote(caller.getsockname()[:2])
        leg_b.set_remote(callee.getsockname()[:2])
        MediaRelay(leg_a, leg_b).start()
        total = 2 * BATCH + 3
        for seq in range(total):
            (caller if seq < BATCH + 1 else moved).sendto(
                to_a.protect(rtp_packet(seq)), leg_a.local_address
            )
        got: list[bytes] = []

        def arrived() -> bool:
            while True:
                try:
                    plain = from_b.unprotect(callee.recv(4096))
                except BlockingIOError:
                    return len(got) >= total
                assert plain is not None
                got.append(plain)

        await until(arrived, timeout=3.0)
        assert normalized(got) == normalized([rtp_packet(seq) for seq in range(total)])
        assert leg_a.stats.packets_received == leg_b.stats.packets_sent == total
        assert leg_a.remote_address == moved.getsockname()[:2]  # RFC 4961: followed the source
    finally:
        await _teardown(leg_a, leg_b)
        for sock in socks:
            sock.close()


def test_in_place_calls_are_relay_in_place_unrolled() -> None:
    """SrtpSession.in_place_calls (the batched loop's libsrtp calls) does what relay_in_place
    does: same bytes out, same counters on a failure."""
    assert srtp.in_place_available()  # pylibsrtp's cffi binding, as pinned
    k_in, k_out = generate_key_salt(SUITE), generate_key_salt(SUITE)
    sender = SrtpSession(SUITE, our_key=k_in, their_key=None)
    a = SrtpSession(SUITE, our_key=None, their_key=k_in)
    b = SrtpSession(SUITE, our_key=None, their_key=k_in)
    out_a = SrtpSession(SUITE, our_key=k_out, their_key=None)
    out_b = SrtpSession(SUITE, our_key=k_out, their_key=None)
    slots = [srtp._ffi.new("char[]", srtp.IN_PLACE_BUFFER_OCTETS) for _ in range(2)]
    unprotect, rx_ctx, protect, tx_ctx, length, size = b.in_place_calls(out_b)
    for packet in [sender.protect(rtp_packet(seq)) for seq in range(3)] + [rtp_packet(9)]:
        for slot in slots:
            slot[0 : len(packet)] = packet
        expected = a.relay_in_place(slots[0], len(packet), out_a)
        size[0] = len(packet)
        status = unprotect(rx_ctx, slots[1], length)
        if status:
            b.count_status(status)
            got = -1
        else:
            assert not protect(tx_ctx, slots[1], length)
            got = size[0]
        assert got == expected
        if got > 0:
            assert srtp._ffi.buffer(slots[0], got)[:] == srtp._ffi.buffer(slots[1], got)[:]
    assert (b.auth_failures, b.replays, b.other_failures) == (1, 0, 0)
    assert (a.auth_failures, a.replays, a.other_failures) == (1, 0, 0)
    with pytest.raises(MediaError):
        out_a.in_place_calls(None)  # no receiving key
