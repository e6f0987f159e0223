"""A real peer moves the media of an answered call: SIPp re-INVITEs (or UPDATEs) with a new port
and codec, then — through a real Kamailio TLS proxy — with a new port and new SRTP keys; and we
re-INVITE a SIPp caller to align a bridge's codecs.

SIPp does the signalling; the far end's media is played by the test on raw sockets
(:class:`~support.rtp.RtpPeer`) at the ports the scenarios put in their SDP, so the test sees
exactly where callxml's packets go and with which keys they authenticate. What is proved:

* the answer to a re-offer is a real answer (PCMA when only PCMA is offered), from the leg's own
  offer/answer under its policy;
* after it, callxml's packets arrive at the new port, in the new codec, in the same RTP stream
  (one SSRC, sequence numbers carrying on) — the audio did not stop — and what the peer sends
  in the new codec is decoded as such;
* with SRTP, a re-offer with a new key (RFC 4568 §7.1.4) is answered with a fresh key of ours,
  packets at the new port authenticate with it, and the peer's packets under its new key are
  accepted.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import struct
from pathlib import Path

import pytest

from callxml.engine.devcert import DevCertificate
from callxml.media.g711 import G711Codec
from callxml.media.rtp import RtpPacket
from callxml.media.srtp import SrtpSession
from callxml.media.tone import goertzel_power, sine
from callxml.runtime import CallLeg, IncomingCall, Phone, bridge
from callxml.sip.aio.transport import ListenerConfig
from support.kamailio import PROXY_ROUTE, KamailioConfig, kamailio
from support.phones import PhoneBox, PhoneFactory
from support.rtp import SUITE, RtpPeer
from support.sipp import Sipp
from support.waiting import until

pytestmark = pytest.mark.peer

WAIT = 10.0


@pytest.fixture
async def callee(phone_boxes: PhoneFactory) -> PhoneBox:
    return await phone_boxes()


def header(packet: bytes) -> tuple[int, int, int]:
    """(payload type, sequence number, SSRC) of an RTP packet."""
    pt, seq = packet[1] & 0x7F, struct.unpack_from("!H", packet, 2)[0]
    return pt, seq, struct.unpack_from("!I", packet, 8)[0]


def tone_packets(codec: str, pt: int, frequency: float, count: int, ssrc: int) -> list[bytes]:
    """``count`` 20 ms packets of a tone in ``codec`` (payload type ``pt``)."""
    pcm = sine(frequency, 20 * count, amplitude=0.4)
    encode = G711Codec(codec).encode
    return [
        bytes(
            RtpPacket(
                payload_type=pt,
                sequence_number=i,
                timestamp=160 * i,
                ssrc=ssrc,
                payload=encode(pcm[320 * i : 320 * (i + 1)]),
            )
        )
        for i in range(count)
    ]


async def play(peer: RtpPeer, packets: list[bytes], to: tuple[str, int]) -> None:
    for packet in packets:
        peer.send_media(packet, to)
        await asyncio.sleep(0.02)


async def gather(peer: RtpPeer, into: list[bytes], count: int) -> None:
    def enough() -> bool:
        into.extend(peer.received())
        return len(into) >= count

    await until(enough, WAIT, what=f"{count} packets at {peer.address}")


@pytest.mark.parametrize("scenario", ["uac_reinvite_media", "uac_update_media"])
async def test_peer_moves_port_and_codec_and_the_audio_carries_on(
    sipp: Sipp, callee: PhoneBox, scenario: str
) -> None:
    far_a, far_b = RtpPeer(), RtpPeer()
    try:
        keys = {"port_a": str(far_a.address[1]), "port_b": str(far_b.address[1])}
        run = await sipp.uac(
            scenario,
            "udp",
            f"127.0.0.1:{callee.port('udp')}",
            "bob",
            keys=keys,
        )
        leg = await (await callee.next_call()).accept(secure_media_enabled=False)
        heard = bytearray()
        leg.set_consumer(heard.extend)
        ours = leg.endpoint.local_address
        before: list[bytes] = []
        await gather(far_a, before, 20)  # our continuous stream, to the first port
        assert {header(p)[0] for p in before} == {0} and leg.codec == "PCMU"

        await until(lambda: leg.codec == "PCMA", WAIT, what="the re-offer applied")
        far_a.received()
        after: list[bytes] = []
        await gather(far_b, after, 20)  # now to the new port, in the new codec
        assert {header(p)[0] for p in after} == {8}
        assert {header(p)[2] for p in before + after} == {header(before[0])[2]}  # one stream
        gap = (header(after[0])[1] - header(before[-1])[1]) & 0xFFFF
        assert 0 < gap < 100  # the sequence carried on across the move (20 ms a packet)
        assert not far_a.received()  # nothing goes to the old port any more

        heard.clear()
        await play(far_b, tone_packets("PCMA", 8, 440, 25, 0x4242), ours)
        await until(lambda: len(heard) >= 16000 * 0.4, WAIT, what="the peer's PCMA tone")
        assert goertzel_power(bytes(heard)[1600:], 440) > 0.8  # decoded as PCMA
        outcome = await run.result()
        assert outcome.returncode == 0, outcome.explain()
        assert await leg.wait_ended(WAIT) == "remote hangup"
    finally:
        far_a.close()
        far_b.close()


def crypto_key() -> tuple[bytes, str]:
    material = secrets.token_bytes(30)
    return material, base64.b64encode(material).decode()


async def test_secure_reinvite_with_new_port_and_keys_through_kamailio(
    sipp: Sipp, callee: PhoneBox, dev_cert: DevCertificate, tmp_path: Path
) -> None:
    """SIPp → Kamailio (UDP) → callxml (TLS, SDES SRTP): the re-INVITE brings a new port and a new
    key; we answer with a fresh key; both directions authenticate under the new keys."""
    (their_1, b64_1), (their_2, b64_2) = crypto_key(), crypto_key()
    tls_port = callee.port("tls")
    route = (
        f'if (is_method("INVITE") && !has_totag()) {{ '
        f'$ru = "sip:bob@127.0.0.1:{tls_port};transport=tls"; }}\n' + PROXY_ROUTE
    )
    far_a, far_b = RtpPeer(), RtpPeer()
    try:
        async with kamailio(KamailioConfig(cert=dev_cert, route=route), tmp_path / "k") as proxy:
            keys = {
                "port_a": str(far_a.address[1]),
                "port_b": str(far_b.address[1]),
                "key_a": b64_1,
                "key_b": b64_2,
            }
            run = await sipp.uac(
                "uac_reinvite_srtp", "udp", f"127.0.0.1:{proxy.port('udp')}", "bob", keys=keys
            )
            incoming = await callee.next_call()
            assert incoming.transport == "tls"
            leg = await incoming.accept(secure_media_enabled=True)
            assert leg.secure
            first_key = our_key(leg)
            far_a.srtp = SrtpSession(SUITE, our_key=their_1, their_key=first_key)
            before: list[bytes] = []
            await gather(far_a, before, 15)  # RtpPeer asserts that every packet authenticates

            await until(lambda: leg.media.their_port == far_b.address[1], WAIT)
            second_key = our_key(leg)
            assert second_key != first_key  # the peer rekeyed, so did we
            far_b.srtp = SrtpSession(SUITE, our_key=their_2, their_key=second_key)
            after: list[bytes] = []
            await gather(far_b, after, 15)
            assert {header(p)[2] for p in before + after} == {header(before[0])[2]}
            dropped, received = leg.stats.dropped_auth, leg.stats.packets_received
            await play(far_b, tone_packets("PCMU", 0, 440, 25, 0x5151), leg.endpoint.local_address)
            await until(lambda: leg.stats.packets_received >= received + 20, WAIT)
            assert leg.stats.dropped_auth == dropped  # the peer's new key is the one in use
            outcome = await run.result()
            assert outcome.returncode == 0, outcome.explain()
            routed = [method for method, _, _ in proxy.requests()]
    finally:
        far_a.close()
        far_b.close()
    assert routed.count("INVITE") == 2 and "BYE" in routed  # both offers went through Kamailio


def our_key(leg: CallLeg) -> bytes:
    crypto = leg.media.our_crypto
    assert crypto is not None
    return crypto.keying_material()


async def test_a_bridge_aligns_codecs_with_our_own_reinvite(sipp: Sipp, callee: PhoneBox) -> None:
    """The caller (SIPp) prefers PCMA but also offers PCMU; the leg we dial answers PCMU, so the
    relay transcodes. The bridge re-INVITEs the caller offering only PCMU, SIPp accepts, and the
    relay passes packets through from then on; the caller's audio still reaches the callee."""
    far = RtpPeer()
    answered: asyncio.Queue[CallLeg] = asyncio.Queue()

    async def accept(call: IncomingCall) -> None:
        await answered.put(await call.accept(secure_media_enabled=False))

    other = await Phone.start(listeners=[ListenerConfig("udp", "127.0.0.1", 0)], on_incoming=accept)
    try:
        run = await sipp.uac(
            "uac_accepts_reinvite",
            "udp",
            f"127.0.0.1:{callee.port('udp')}",
            "bob",
            keys={"port_a": str(far.address[1])},
        )
        caller = await (await callee.next_call()).accept(secure_media_enabled=False)
        assert caller.codec == "PCMA"
        result = await callee.phone.dial(
            f"sip:carol@127.0.0.1:{other.user_agent.local('udp').port}", timeout=WAIT
        )
        child = result.leg
        assert child is not None and child.codec == "PCMU"
        carol = await asyncio.wait_for(answered.get(), WAIT)
        heard = bytearray()
        carol.set_consumer(heard.extend)
        made = bridge(caller, child)
        assert caller.endpoint._forward is not None  # transcoding PCMA → PCMU
        assert made.align_codecs() is caller
        await until(lambda: caller.codec == "PCMU", WAIT, what="the caller moved to PCMU")
        assert caller.endpoint._forward_ep is child.endpoint  # pass-through, both ways
        assert child.endpoint._forward_ep is caller.endpoint
        heard.clear()
        await play(far, tone_packets("PCMU", 0, 440, 25, 0x6161), caller.endpoint.local_address)
        await until(lambda: len(heard) >= 16000 * 0.4, WAIT, what="the caller's tone at carol")
        assert goertzel_power(bytes(heard)[1600:], 440) > 0.8
        outcome = await run.result()
        assert outcome.returncode == 0, outcome.explain()
        made.stop()
    finally:
        far.close()
        await asyncio.wait_for(other.close(), WAIT)
