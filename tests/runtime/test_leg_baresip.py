"""Call legs against a real peer: baresip on loopback, over SIP/TLS with SRTP and over UDP.

Proof that secure media works end to end with another implementation: each side plays its own
tone (we send 1 kHz, baresip 440 Hz) and each finds the other's tone in what it decoded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callxml.engine.devcert import DevCertificate
from callxml.errors import SecureMediaError
from callxml.media.g711 import G711Codec
from callxml.media.tone import goertzel_power, sine
from callxml.runtime import IncomingCall, Phone
from callxml.sip.aio.tls import TlsConfig
from callxml.sip.aio.transport import ListenerConfig
from support.baresip import THEIR_TONE, BaresipFactory, BaresipOptions
from support.waiting import until

pytestmark = pytest.mark.peer

WAIT = 10.0
OUR_TONE = 1000  # baresip plays THEIR_TONE (the their_tone fixture)


@pytest.fixture
async def phone(
    dev_cert: DevCertificate,
) -> AsyncIterator[tuple[Phone, asyncio.Queue[IncomingCall]]]:
    calls: asyncio.Queue[IncomingCall] = asyncio.Queue()

    async def on_incoming(call: IncomingCall) -> None:
        await calls.put(call)

    made = await Phone.start(
        listeners=[ListenerConfig("udp", "127.0.0.1", 0), ListenerConfig("tls", "127.0.0.1", 0)],
        tls=TlsConfig(
            ca_file=str(dev_cert.ca), cert_file=str(dev_cert.cert), key_file=str(dev_cert.key)
        ),
        on_incoming=on_incoming,
    )
    try:
        yield made, calls
    finally:
        await asyncio.wait_for(made.close(), WAIT)


async def _collect(pcm: bytearray, seconds: float) -> bytes:
    await until(lambda: len(pcm) >= int(seconds * 16000), timeout=WAIT)
    return bytes(pcm)


async def test_secure_dial_to_baresip_carries_srtp_both_ways(
    baresip: BaresipFactory,
    phone: tuple[Phone, asyncio.Queue[IncomingCall]],
    dev_cert: DevCertificate,
    their_tone: Path,
) -> None:
    peer = await baresip(BaresipOptions(mediaenc="srtp-mand", play=their_tone, cert=dev_cert))
    result = await phone[0].dial(peer.uri(secure=True), timeout=WAIT)
    assert result.status == "answered", result
    assert result.transport == "tls"
    leg = result.leg
    assert leg is not None and leg.secure and leg.suite == "AES_CM_128_HMAC_SHA1_80"
    heard = bytearray()
    leg.set_consumer(heard.extend)
    wire: list[bytes] = []  # what baresip's packets look like on the wire, before unprotect
    receive = leg.endpoint.datagram_received

    def tap(data: bytes, addr: tuple[str, int]) -> None:
        if len(wire) < 200 and len(data) > 12 and data[1] & 0x7F == 0:
            wire.append(data)
        receive(data, addr)

    leg.endpoint.datagram_received = tap  # type: ignore[method-assign]
    await asyncio.wait_for(leg.play(sine(OUR_TONE, 1500, amplitude=0.4)), WAIT)
    ours = await _collect(heard, 1.0)
    await leg.hangup()
    await peer.wait_event("CALL_CLOSED")
    # On the wire the payload is ciphertext: read as PCMU it holds no 440 Hz tone at all.
    assert len(wire) > 20
    assert all(len(packet) == 12 + 160 + 10 for packet in wire)
    as_if_plain = G711Codec("PCMU").decode(b"".join(p[12:172] for p in wire))
    assert goertzel_power(as_if_plain, THEIR_TONE) < 0.05

    assert goertzel_power(ours[4000:], THEIR_TONE) > 0.8  # skip the first 0.25 s
    theirs = peer.received_audio()
    assert len(theirs) > 16000
    assert goertzel_power(theirs[4000:], OUR_TONE) > 0.8
    # SRTP on the wire: baresip says so, and each packet we sent carried the 10-octet tag.
    assert "SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)" in peer.log()
    assert leg.stats.packets_sent > 50
    assert leg.stats.octets_sent == leg.stats.packets_sent * (12 + 160 + 10)
    assert leg.stats.dropped_auth == 0


async def test_secure_dial_to_plain_rtp_baresip_fails_with_a_reason(
    baresip: BaresipFactory,
    phone: tuple[Phone, asyncio.Queue[IncomingCall]],
    dev_cert: DevCertificate,
) -> None:
    peer = await baresip(BaresipOptions(mediaenc=None, cert=dev_cert))
    result = await phone[0].dial(peer.uri(secure=True), timeout=WAIT)
    assert (result.status, result.sip_response_code, result.leg) == ("failed", 488, None)
    assert "refused our secure media offer" in result.reason


async def test_plain_dial_to_baresip_over_udp(
    baresip: BaresipFactory,
    phone: tuple[Phone, asyncio.Queue[IncomingCall]],
    their_tone: Path,
) -> None:
    peer = await baresip(BaresipOptions(mediaenc=None, play=their_tone, tls=False))
    result = await phone[0].dial(peer.uri(), timeout=WAIT)
    assert result.status == "answered" and result.transport == "udp"
    leg = result.leg
    assert leg is not None and not leg.secure
    heard = bytearray()
    leg.set_consumer(heard.extend)
    await asyncio.wait_for(leg.send_digits("42"), WAIT)
    ours = await _collect(heard, 0.8)
    assert goertzel_power(ours[4000:], THEIR_TONE) > 0.8
    # baresip hangs up: we see the BYE.
    await peer.hangup()
    assert await leg.wait_ended(WAIT) == "remote hangup"


async def test_baresip_calls_a_secure_domain_over_tls_with_srtp(
    baresip: BaresipFactory,
    phone: tuple[Phone, asyncio.Queue[IncomingCall]],
    dev_cert: DevCertificate,
    their_tone: Path,
) -> None:
    ours, calls = phone
    peer = await baresip(
        BaresipOptions(user="alice", mediaenc="srtp-mand", play=their_tone, cert=dev_cert)
    )
    tls_port = ours.user_agent.local("tls").port
    await peer.dial(f"sip:bob@127.0.0.1:{tls_port};transport=tls")
    incoming = await asyncio.wait_for(calls.get(), WAIT)
    assert incoming.transport == "tls"
    leg = await incoming.accept(secure_media_enabled=True)
    assert leg.secure and leg.direction == "inbound"
    await peer.wait_event("CALL_ESTABLISHED", timeout=WAIT)
    heard = bytearray()
    leg.set_consumer(heard.extend)
    await asyncio.wait_for(leg.play(sine(OUR_TONE, 1500, amplitude=0.4)), WAIT)
    got = await _collect(heard, 1.0)
    await leg.hangup()
    await peer.wait_event("CALL_CLOSED")
    assert goertzel_power(got[4000:], THEIR_TONE) > 0.8
    assert goertzel_power(peer.received_audio()[4000:], OUR_TONE) > 0.8


async def test_plain_baresip_calling_a_secure_domain_gets_488(
    baresip: BaresipFactory,
    phone: tuple[Phone, asyncio.Queue[IncomingCall]],
) -> None:
    ours, calls = phone
    peer = await baresip(BaresipOptions(user="alice", mediaenc=None, tls=False))
    await peer.dial(f"sip:bob@127.0.0.1:{ours.user_agent.local('udp').port}")
    incoming = await asyncio.wait_for(calls.get(), WAIT)
    with pytest.raises(SecureMediaError, match="did not arrive over TLS"):
        await incoming.accept(secure_media_enabled=True)
    closed = await peer.wait_event("CALL_CLOSED")
    assert "488" in str(closed.get("param"))


async def test_baresip_hangs_up_our_secure_call(
    baresip: BaresipFactory,
    phone: tuple[Phone, asyncio.Queue[IncomingCall]],
    dev_cert: DevCertificate,
) -> None:
    peer = await baresip(BaresipOptions(mediaenc="srtp-mand", cert=dev_cert))
    result = await phone[0].dial(peer.uri(secure=True), timeout=WAIT)
    assert result.leg is not None
    await peer.wait_event("CALL_ESTABLISHED")
    await peer.hangup()
    assert await result.leg.wait_ended(WAIT) == "remote hangup"


@pytest.mark.parametrize(
    ("suites", "answered"),
    [
        (("AES_256_CM_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_80"), "AES_CM_128_HMAC_SHA1_80"),
        (("AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80"), "AEAD_AES_256_GCM"),
        (("AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80"), "AEAD_AES_128_GCM"),
    ],
    ids=["aes-256-first", "gcm-256-first", "gcm-128-first"],
)
async def test_srtp_suites_extension_offers_more_suites_to_baresip(
    baresip: BaresipFactory,
    phone: tuple[Phone, asyncio.Queue[IncomingCall]],
    dev_cert: DevCertificate,
    their_tone: Path,
    suites: tuple[str, ...],
    answered: str,
) -> None:
    """``<Sip srtpSuites>``: several crypto lines, in our order; baresip 1.0 answers the first
    it runs -- AEAD AES-GCM (RFC 7714) yes, AES-256 counter mode no -- and the leg keys SRTP
    with the suite of the line the answer took (RFC 4568 §7.1.2); the tone crosses both ways.
    This is the real-peer GCM interop (baresip offers only AES_CM_128_HMAC_SHA1_80 itself)."""
    from callxml.sip.target import Target

    peer = await baresip(BaresipOptions(mediaenc="srtp-mand", play=their_tone, cert=dev_cert))
    target = Target.parse(peer.uri(secure=True)).with_srtp_suites(suites)
    result = await phone[0].dial(target, timeout=WAIT)
    assert result.status == "answered", result
    leg = result.leg
    assert leg is not None and leg.secure and leg.suite in suites
    offered = leg.media.local_sdp.media[0].attributes_named("crypto")
    assert [line.split()[:2] for line in offered] == [
        [str(n), s] for n, s in enumerate(suites, start=1)
    ]
    assert leg.suite == answered
    heard = bytearray()
    leg.set_consumer(heard.extend)
    await asyncio.wait_for(leg.play(sine(OUR_TONE, 1500, amplitude=0.4)), WAIT)
    ours = await _collect(heard, 1.0)
    await leg.hangup()
    await peer.wait_event("CALL_CLOSED")
    assert goertzel_power(ours[4000:], THEIR_TONE) > 0.8
    assert goertzel_power(peer.received_audio()[4000:], OUR_TONE) > 0.8
    assert f"cryptosuite={leg.suite}" in peer.log()
