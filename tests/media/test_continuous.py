"""An answered leg never falls silent on the wire: a packet every 20 ms, one continuous stream.

Silence fills every interval with nothing to say; prompts and DTMF take their place without a
gap; a bridge relays the other leg's audio *renumbered into this leg's stream* (same SSRC,
sequence numbers and timestamps carrying on), and silence resumes when it ends.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import AsyncIterator

import pytest

from callxml.media.relay import MediaRelay
from callxml.media.stream import RtpConfig, RtpEndpoint
from callxml.media.tone import sine_frames
from support.rtp import RtpPeer
from support.waiting import until

PCMU_SILENCE = b"\xff" * 160


class Peer(RtpPeer):
    """A far end that keeps everything it received, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.packets: list[bytes] = []

    def drain(self) -> list[bytes]:
        self.packets += self.received()
        return self.packets


def header(packet: bytes) -> tuple[bool, int, int, int, int]:
    """(marker, payload type, sequence, timestamp, SSRC)."""
    b1, seq, ts, ssrc = struct.unpack_from("!xBHII", packet)
    return bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc


def ahead(timestamp: int, other: int) -> int:
    """How far ``timestamp`` is after ``other`` (negative: before), modulo 2**32."""
    return (timestamp - other + 0x80000000) % 0x100000000 - 0x80000000


def assert_one_stream(packets: list[bytes]) -> None:
    """One SSRC, each sequence number one more than the last, timestamps 160 apart."""
    fields = [header(p) for p in packets]
    assert len({f[4] for f in fields}) == 1, "the SSRC changed"
    for (_, _, seq_a, ts_a, _), (_, _, seq_b, ts_b, _) in itertools.pairwise(fields):
        assert (seq_b - seq_a) & 0xFFFF == 1
        assert (ts_b - ts_a) & 0xFFFFFFFF == 160


@pytest.fixture
async def endpoint() -> AsyncIterator[RtpEndpoint]:
    ep = await RtpEndpoint.open(RtpConfig(rtcp=False))
    try:
        yield ep
    finally:
        await ep.close()


async def test_silence_prompt_silence_is_one_unbroken_stream(endpoint: RtpEndpoint) -> None:
    peer = Peer()
    endpoint.set_remote(peer.address)
    endpoint.keep_sending()
    await until(lambda: len(peer.drain()) >= 10, timeout=5)
    await endpoint.play(sine_frames(1000, 200))  # 10 frames of tone
    count = len(peer.drain())
    await until(lambda: len(peer.drain()) >= count + 10, timeout=5)
    packets = list(peer.drain())
    assert_one_stream(packets)
    payloads = [p[12:] for p in packets]
    first_tone = next(i for i, p in enumerate(payloads) if p != PCMU_SILENCE)
    assert header(packets[first_tone])[0]  # the prompt starts a talkspurt (marker bit)
    tone = payloads[first_tone : first_tone + 10]
    assert all(p != PCMU_SILENCE for p in tone)
    assert all(p == PCMU_SILENCE for p in payloads[:first_tone] + payloads[first_tone + 10 :])


async def test_dtmf_gaps_are_filled_with_silence(endpoint: RtpEndpoint) -> None:
    peer = Peer()
    endpoint.set_remote(peer.address)
    endpoint.keep_sending()
    await endpoint.send_dtmf("12", duration_ms=60, gap_ms=100)
    await until(lambda: len(peer.drain()) >= 20, timeout=5)
    packets = list(peer.drain())
    kinds = [header(p)[1] for p in packets]
    assert endpoint.dtmf_payload_type in kinds and 0 in kinds
    seqs = [header(p)[2] for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))


async def test_bridge_relays_renumbered_and_silence_resumes_after_it() -> None:
    config = RtpConfig(rtcp=False)
    async with await RtpEndpoint.open(config) as a, await RtpEndpoint.open(config) as b:
        caller, callee = Peer(), Peer()
        a.set_remote(caller.address)
        b.set_remote(callee.address)
        a.keep_sending()
        b.keep_sending()
        await until(lambda: len(callee.drain()) >= 5, timeout=5)
        relay = MediaRelay(a, b)
        relay.start()
        await asyncio.sleep(0.1)
        before = len(callee.drain())
        for seq in range(20):  # the caller's own stream: another SSRC, other numbers
            packet = struct.pack("!BBHII", 0x80, 0, 40000 + seq, 777 + 160 * seq, 0xCAFE)
            caller.send(packet + bytes([seq]) * 160, a.local_address)
            await asyncio.sleep(0.02)
        await until(lambda: len(callee.drain()) >= before + 20, timeout=5)
        during = callee.packets[before:]
        assert [p[12] for p in during] == list(range(20))  # only relayed audio, no silence
        assert header(during[0])[0]  # a new source: the marker says so
        relay.stop()
        count = len(callee.drain())
        await until(lambda: len(callee.drain()) >= count + 5, timeout=5)
        every = list(callee.drain())
        ssrcs = {header(p)[4] for p in every}
        assert len(ssrcs) == 1  # the callee saw one source all along
        seqs = [header(p)[2] for p in every]
        assert all((y - x) & 0xFFFF == 1 for x, y in itertools.pairwise(seqs))
        assert every[-1][12:] == PCMU_SILENCE  # silence again after the bridge


async def test_without_keep_sending_nothing_is_sent_between_prompts(endpoint: RtpEndpoint) -> None:
    peer = Peer()
    endpoint.set_remote(peer.address)
    await endpoint.play(sine_frames(1000, 100))
    sent = endpoint.stats.packets_sent
    await asyncio.sleep(0.2)
    assert endpoint.stats.packets_sent == sent == 5


async def test_bridged_legs_park_their_sender_and_their_clock_keeps_running() -> None:
    """While bridged a continuous leg's sender does not wake every 20 ms (the relay's packets
    are its stream), yet its RTP clock runs on: a new source mid-bridge, and our own silence
    after it, carry on from where the clock stands, never from where the bridge began."""
    config = RtpConfig(rtcp=False)
    async with await RtpEndpoint.open(config) as a, await RtpEndpoint.open(config) as b:
        caller, callee = Peer(), Peer()
        a.set_remote(caller.address)
        b.set_remote(callee.address)
        a.keep_sending()
        b.keep_sending()
        await until(lambda: len(callee.drain()) >= 5, timeout=5)
        relay = MediaRelay(a, b)
        relay.start()
        await until(lambda: a._tx_task is not None and a._tx_task.done(), timeout=5)
        await until(lambda: b._tx_task is not None and b._tx_task.done(), timeout=5)
        before = len(callee.drain())
        last_silence_ts = header(callee.packets[-1])[3]
        for seq in range(10):
            packet = struct.pack("!BBHII", 0x80, 0, 100 + seq, 5000 + 160 * seq, 0xCAFE)
            caller.send(packet + bytes([seq]) * 160, a.local_address)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # the clock runs on while nothing arrives
        packet = struct.pack("!BBHII", 0x80, 0, 9000, 123456, 0xBEEF)  # another source
        caller.send(packet + bytes([99]) * 160, a.local_address)
        await until(lambda: len(callee.drain()) >= before + 11, timeout=5)
        during = callee.packets[before:]
        assert [p[12] for p in during] == [*range(10), 99]  # relayed only, no silence
        first, last, new = (header(p)[3] for p in (during[0], during[9], during[10]))
        assert ahead(last, first) == 9 * 160  # the first source's own spacing
        # the new source starts from the running clock: after the first source's last
        # packet, by at least the 0.2 s of nothing in between (less a frame of rounding)
        assert ahead(new, last) >= 8000 * 0.2 - 160
        assert header(during[10])[0]  # a new source: marker
        assert ahead(first, last_silence_ts) > 0
        relay.stop()
        count = len(callee.drain())
        await until(lambda: len(callee.drain()) >= count + 3, timeout=5)
        after = callee.packets[count:]
        assert after[0][12:] == PCMU_SILENCE  # our own stream again
        assert ahead(header(after[0])[3], new) > 0
        seqs = [header(p)[2] for p in callee.packets]
        assert all((y - x) & 0xFFFF == 1 for x, y in itertools.pairwise(seqs))
