"""Call legs between our own phones on loopback: SIP over UDP/TLS, RTP and SRTP, the secure-media
policy both ways, dial outcomes (busy, no-answer, cancel, refused answers) and bridging."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from callxml.engine.devcert import DevCertificate
from callxml.errors import LocalProtocolError, SecureMediaError
from callxml.media.tone import goertzel_power, sine
from callxml.runtime import CallLeg, IncomingCall, Phone, bridge, dial_status
from callxml.sdp import build_offer
from callxml.sip.aio.tls import TlsConfig
from callxml.sip.aio.transport import ListenerConfig
from support.waiting import until

WAIT = 10.0  # bound on every wait in this file


@dataclass
class Box:
    """A phone plus the incoming calls it was offered."""

    phone: Phone
    incoming: asyncio.Queue[IncomingCall] = field(default_factory=asyncio.Queue)

    def uri(self, transport: str = "udp", *, user: str = "bob", secure: bool = False) -> str:
        port = self.phone.user_agent.local("tls" if secure else transport).port
        if secure:
            return f"sip:{user}@127.0.0.1:{port};secure=true"
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{user}@127.0.0.1:{port}{suffix}"

    async def next_call(self) -> IncomingCall:
        return await asyncio.wait_for(self.incoming.get(), WAIT)


PhoneFactory = Callable[..., Awaitable[Box]]


@pytest.fixture
async def phones(dev_cert: DevCertificate) -> AsyncIterator[PhoneFactory]:
    made: list[Box] = []

    async def make(*, ca: bool = True, rtp_timeout: float | None = 60.0) -> Box:
        queue: asyncio.Queue[IncomingCall] = asyncio.Queue()

        async def on_incoming(call: IncomingCall) -> None:
            await queue.put(call)

        phone = await Phone.start(
            listeners=[
                ListenerConfig("udp", "127.0.0.1", 0),
                ListenerConfig("tls", "127.0.0.1", 0),
            ],
            tls=TlsConfig(
                ca_file=str(dev_cert.ca) if ca else None,
                cert_file=str(dev_cert.cert),
                key_file=str(dev_cert.key),
            ),
            on_incoming=on_incoming,
            rtp_timeout=rtp_timeout,
        )
        box = Box(phone, queue)
        made.append(box)
        return box

    try:
        yield make
    finally:
        for box in made:
            await asyncio.wait_for(box.phone.close(), WAIT)


class Ear:
    """Collects what a leg hears."""

    def __init__(self, leg: CallLeg) -> None:
        self.pcm = bytearray()
        self.digits: list[str] = []
        leg.set_consumer(self.pcm.extend, self.digits.append)

    async def heard(self, seconds: float) -> bytes:
        await until(lambda: len(self.pcm) >= int(seconds * 16000), timeout=WAIT, step=0.01)
        return bytes(self.pcm)


async def _connect(
    a: Box, b: Box, uri: str, *, secure_media_enabled: bool = False
) -> tuple[CallLeg, CallLeg]:
    dial = asyncio.ensure_future(a.phone.dial(uri, timeout=WAIT))
    incoming = await b.next_call()
    b_leg = await incoming.accept(secure_media_enabled=secure_media_enabled)
    result = await asyncio.wait_for(dial, WAIT)
    assert result.status == "answered", result
    assert result.leg is not None
    return result.leg, b_leg


# -- plain and secure calls --------------------------------------------------------------------


async def test_plain_call_carries_audio_both_ways_and_reports_remote_hangup(
    phones: PhoneFactory,
) -> None:
    a, b = await phones(), await phones()
    a_leg, b_leg = await _connect(a, b, b.uri("udp"))
    assert (a_leg.direction, b_leg.direction) == ("outbound", "inbound")
    assert a_leg.transport == b_leg.transport == "udp"
    assert not a_leg.secure and a_leg.suite is None and a_leg.codec == "PCMU"
    assert a_leg.sip_call_id == b_leg.sip_call_id
    a_ear, b_ear = Ear(a_leg), Ear(b_leg)
    await asyncio.gather(a_leg.play(sine(1000, 600)), b_leg.play(sine(440, 600)))
    assert goertzel_power(await b_ear.heard(0.5), 1000) > 0.8
    assert goertzel_power(await a_ear.heard(0.5), 440) > 0.8
    # Plain RTP: 12-octet header + 160 octets of PCMU, nothing more.
    assert a_leg.stats.octets_sent == a_leg.stats.packets_sent * 172

    await b_leg.hangup()
    assert b_leg.end_reason == "local hangup"
    assert await a_leg.wait_ended(WAIT) == "remote hangup"
    assert a_leg.ended.is_set()


async def test_secure_call_uses_tls_and_srtp_both_ways(phones: PhoneFactory) -> None:
    a, b = await phones(), await phones()
    dial = asyncio.ensure_future(a.phone.dial(b.uri(secure=True), timeout=WAIT))
    incoming = await b.next_call()
    assert incoming.transport == "tls"
    assert "secure" not in incoming.request_uri  # our instruction, not the callee's business
    assert incoming.request_uri.endswith(";transport=tls")  # proxies keep it on TLS
    b_leg = await incoming.accept(secure_media_enabled=True)
    result = await asyncio.wait_for(dial, WAIT)
    assert result.status == "answered" and result.transport == "tls"
    a_leg = result.leg
    assert a_leg is not None
    assert a_leg.secure and b_leg.secure
    assert a_leg.suite == b_leg.suite == "AES_CM_128_HMAC_SHA1_80"
    # RFC 4568 §6.1: each side sends with its own key; never the other's.
    assert a_leg.media.our_crypto is not None and b_leg.media.our_crypto is not None
    assert a_leg.media.our_crypto.keying_material() != b_leg.media.our_crypto.keying_material()
    a_ear, b_ear = Ear(a_leg), Ear(b_leg)
    await asyncio.gather(a_leg.play(sine(1000, 600)), b_leg.play(sine(440, 600)))
    assert goertzel_power(await b_ear.heard(0.5), 1000) > 0.8
    assert goertzel_power(await a_ear.heard(0.5), 440) > 0.8
    # On the wire every packet carries the 10-octet HMAC-SHA1-80 tag (RFC 3711 §4.2).
    assert a_leg.stats.octets_sent == a_leg.stats.packets_sent * 182
    assert a_leg.stats.dropped_auth == b_leg.stats.dropped_auth == 0
    await a_leg.hangup()
    assert await b_leg.wait_ended(WAIT) == "remote hangup"


async def test_digits_reach_the_far_end(phones: PhoneFactory) -> None:
    a, b = await phones(), await phones()
    a_leg, b_leg = await _connect(a, b, b.uri("udp"))
    ear = Ear(b_leg)
    await asyncio.wait_for(a_leg.send_digits("19#"), WAIT)
    await until(lambda: len(ear.digits) == 3, timeout=WAIT, step=0.01)
    assert ear.digits == ["1", "9", "#"]
    await a_leg.hangup()


# -- the secure-media policy -------------------------------------------------------------------


async def test_domain_requiring_secure_media_refuses_a_plain_call(phones: PhoneFactory) -> None:
    a, b = await phones(), await phones()
    dial = asyncio.ensure_future(a.phone.dial(b.uri("udp"), timeout=WAIT))
    incoming = await b.next_call()
    with pytest.raises(SecureMediaError, match="did not arrive over TLS"):
        await incoming.accept(secure_media_enabled=True)
    result = await asyncio.wait_for(dial, WAIT)
    assert (result.status, result.sip_response_code, result.leg) == ("failed", 488, None)
    assert "Secure media required: request did not arrive over TLS" in result.reason


async def test_domain_without_secure_media_refuses_an_srtp_offer(phones: PhoneFactory) -> None:
    a, b = await phones(), await phones()
    dial = asyncio.ensure_future(a.phone.dial(b.uri(secure=True), timeout=WAIT))
    incoming = await b.next_call()
    with pytest.raises(SecureMediaError):
        await incoming.accept(secure_media_enabled=False)
    result = await asyncio.wait_for(dial, WAIT)
    assert result.status == "failed" and result.sip_response_code == 488
    assert "refused our secure media offer" in result.reason
    assert "Secure media disabled for this domain" in result.reason  # from the Warning


async def test_plain_answer_to_a_secure_offer_fails_the_dial_with_ack_and_bye(
    phones: PhoneFactory,
) -> None:
    a, b = await phones(), await phones()
    dial = asyncio.ensure_future(a.phone.dial(b.uri(secure=True), timeout=WAIT))
    incoming = await b.next_call()
    # A broken peer: answers our RTP/SAVP offer with plain RTP/AVP.
    plain = build_offer(address="127.0.0.1", port=40000, secure=False).sdp
    incoming._inbound.accept(bytes(plain))
    result = await asyncio.wait_for(dial, WAIT)
    assert result.status == "failed" and result.leg is None
    assert result.sip_response_code == 200
    assert result.reason == "Secure media answer refused: answer is RTP/AVP"
    # The 2xx was ACKed (dialog confirmed) and then ended with our BYE.
    await incoming._inbound.confirmed(WAIT)
    assert await incoming._inbound.wait_ended(WAIT) == "BYE"


async def test_secure_dial_refuses_an_untrusted_certificate(phones: PhoneFactory) -> None:
    a, b = await phones(ca=False), await phones()
    result = await a.phone.dial(b.uri(secure=True), timeout=WAIT)
    assert result.status == "failed" and result.sip_response_code == 503
    assert "not trusted" in result.reason
    assert b.incoming.empty()


# -- dial outcomes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"), [(486, "busy"), (603, "busy"), (404, "failed"), (480, "no-answer")]
)
async def test_rejections_map_to_dial_call_status(
    phones: PhoneFactory, status: int, expected: str
) -> None:
    a, b = await phones(), await phones()
    dial = asyncio.ensure_future(a.phone.dial(b.uri("udp"), timeout=WAIT))
    incoming = await b.next_call()
    await incoming.reject(status, "Nope")
    result = await asyncio.wait_for(dial, WAIT)
    assert (result.status, result.sip_response_code) == (expected, status)
    assert result.reason.startswith(f"{status} Nope")


async def test_ring_timeout_cancels_and_reports_no_answer(phones: PhoneFactory) -> None:
    a, b = await phones(), await phones()
    rings: list[int] = []
    dial = asyncio.ensure_future(
        a.phone.dial(b.uri("udp"), timeout=0.5, on_ringing=lambda: rings.append(1))
    )
    incoming = await b.next_call()
    await incoming.ring()
    result = await asyncio.wait_for(dial, WAIT)
    assert result.status == "no-answer"
    assert result.reason.startswith("no answer within 0.5 s")
    assert rings == [1]
    await until(lambda: incoming.ended, timeout=WAIT, step=0.01)  # the callee saw our CANCEL


async def test_cancelling_the_dial_task_cancels_the_invite(phones: PhoneFactory) -> None:
    a, b = await phones(), await phones()
    dial = asyncio.ensure_future(a.phone.dial(b.uri("udp"), timeout=WAIT))
    incoming = await b.next_call()
    await incoming.ring()
    await asyncio.sleep(0.05)  # let the 180 arrive so the CANCEL can go out (RFC 3261 §9.1)
    dial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dial
    await until(lambda: incoming.ended, timeout=WAIT, step=0.01)


async def test_uri_headers_become_request_headers(phones: PhoneFactory) -> None:
    a, b = await phones(), await phones()
    uri = b.uri("udp") + "?X-Case=42&Call-ID=evil&Via=evil"
    dial = asyncio.ensure_future(a.phone.dial(uri, timeout=WAIT, headers=[("X-Extra", "1")]))
    incoming = await b.next_call()
    assert ("X-Case", "42") in incoming.headers and ("X-Extra", "1") in incoming.headers
    assert incoming.request.call_id == incoming.sip_call_id != "evil"
    assert all("evil" not in v for v in incoming.request.headers.get_all("Via"))
    assert incoming.domain == "127.0.0.1"
    leg = await incoming.accept(secure_media_enabled=False, answer=False)
    assert not leg.answered
    await leg.reject(486, "Busy Here")
    assert (await asyncio.wait_for(dial, WAIT)).status == "busy"


async def test_invalid_uri_fails_without_sending() -> None:
    phone = await Phone.start(listeners=[ListenerConfig("udp", "127.0.0.1", 0)])
    try:
        result = await phone.dial("tel:+15551234567")
        assert result.status == "failed" and result.sip_response_code is None
        assert "invalid SIP URI" in result.reason
    finally:
        await phone.close()


def test_dial_status_table() -> None:
    assert dial_status(200) == "answered"
    assert dial_status(200, timed_out=True) == "no-answer"
    assert dial_status(487) == "canceled"
    assert dial_status(487, timed_out=True) == "no-answer"
    assert dial_status(600) == "busy"
    assert dial_status(408) == "no-answer"
    assert dial_status(503) == "failed"


# -- bridging ----------------------------------------------------------------------------------


async def test_bridge_relays_srtp_to_rtp_both_ways_with_digits_and_star(
    phones: PhoneFactory,
) -> None:
    caller, middle, callee = await phones(), await phones(), await phones()
    # caller --TLS/SRTP--> middle --UDP/RTP--> callee
    caller_leg, inbound = await _connect(
        caller, middle, middle.uri(secure=True), secure_media_enabled=True
    )
    outbound, callee_leg = await _connect(middle, callee, callee.uri("udp"))
    assert inbound.secure and not outbound.secure
    keys: list[str] = []
    stars: list[int] = []
    joined = bridge(inbound, outbound, keys.append, on_star=lambda: stars.append(1))
    assert joined.active
    caller_ear, callee_ear = Ear(caller_leg), Ear(callee_leg)
    await asyncio.gather(caller_leg.play(sine(1000, 600)), callee_leg.play(sine(440, 600)))
    assert goertzel_power(await callee_ear.heard(0.5), 1000) > 0.8
    assert goertzel_power(await caller_ear.heard(0.5), 440) > 0.8

    await asyncio.wait_for(caller_leg.send_digits("5*"), WAIT)
    await until(lambda: len(keys) == 2 and len(callee_ear.digits) == 1, timeout=WAIT, step=0.01)
    assert keys == ["5", "*"] and stars == [1]
    assert callee_ear.digits == ["5"]  # the star ends the bridge; it is not relayed

    joined.stop()
    assert not joined.active
    middle_ear = Ear(inbound)
    await caller_leg.play(sine(1000, 300))
    assert goertzel_power(await middle_ear.heard(0.2), 1000) > 0.8  # back to normal delivery
    for leg in (caller_leg, callee_leg):
        await leg.hangup()


async def test_bridge_needs_answered_legs(phones: PhoneFactory) -> None:
    a, b = await phones(), await phones()
    dial = asyncio.ensure_future(a.phone.dial(b.uri("udp"), timeout=WAIT))
    incoming = await b.next_call()
    pending = await incoming.accept(secure_media_enabled=False, answer=False)
    with pytest.raises(LocalProtocolError):
        bridge(pending, pending)
    await pending.answer()
    result = await asyncio.wait_for(dial, WAIT)
    assert result.status == "answered"
    await pending.hangup()


async def test_play_returns_when_the_call_ends_and_cancel_stops_sending(
    phones: PhoneFactory,
) -> None:
    a, b = await phones(), await phones()
    a_leg, b_leg = await _connect(a, b, b.uri("udp"))
    ear = Ear(b_leg)
    # Barge-in: cancelling the task that plays stops the prompt at once; the stream goes on
    # with silence (an answered leg never falls silent on the wire).
    playing = asyncio.ensure_future(a_leg.play(sine(1000, 5000)))
    await until(lambda: goertzel_power(bytes(ear.pcm[-1600:]), 1000) > 0.5, timeout=WAIT)
    playing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await playing
    sent = a_leg.stats.packets_sent
    heard = len(ear.pcm)
    await asyncio.sleep(0.3)
    assert a_leg.stats.packets_sent >= sent + 10  # still sending, every 20 ms...
    after = bytes(ear.pcm[heard + 1600 :])  # ...past what was in flight and in the jitter buffer
    assert after and not any(after)  # ...silence, not the rest of the prompt
    # A long prompt ends, without an error, when the far end hangs up.
    playing = asyncio.ensure_future(a_leg.play(sine(1000, 5000)))
    await until(lambda: a_leg.stats.packets_sent >= sent + 5, timeout=WAIT, step=0.01)
    await b_leg.hangup()
    await asyncio.wait_for(playing, WAIT)
    assert a_leg.end_reason == "remote hangup"
    await a_leg.play(sine(1000, 100))  # after the end: returns at once
    await a_leg.send_digits("1")
    await a_leg.hangup()  # idempotent
    assert a_leg.end_reason == "remote hangup"


async def test_keys_never_reach_the_logs(
    phones: PhoneFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A whole secure call with every logger at DEBUG: neither side's SRTP key, in base64 (as in
    ``a=crypto``) or hex, nor the leg's ``repr``, shows up anywhere in the log records."""
    caplog.set_level(logging.DEBUG)
    a, b = await phones(), await phones()
    a_leg, b_leg = await _connect(a, b, b.uri(secure=True), secure_media_enabled=True)
    await asyncio.gather(a_leg.play(sine(1000, 200)), b_leg.play(sine(440, 200)))
    await a_leg.hangup()
    await b_leg.wait_ended(WAIT)
    secrets: list[str] = []
    for leg in (a_leg, b_leg):
        for crypto in (leg.media.our_crypto, leg.media.their_crypto):
            assert crypto is not None
            material = crypto.keying_material()
            secrets += [base64.b64encode(material).decode(), material.hex()]
            secrets += [base64.b64encode(material[:16]).decode()[:16], material[:16].hex()]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    logged += "\n".join(repr(x) for x in (a_leg, b_leg, a_leg.media, b_leg.media))
    assert caplog.records  # the call did log (SIP, media): the check is not vacuous
    for secret in secrets:
        assert secret not in logged


async def test_a_peer_gone_silent_is_hung_up_after_the_rtp_timeout(phones: PhoneFactory) -> None:
    a, b = await phones(rtp_timeout=1.0), await phones()
    a_leg, b_leg = await _connect(a, b, b.uri("udp"))
    await until(lambda: a_leg.stats.packets_received > 5, timeout=WAIT)  # b's silence arrives
    await b_leg.endpoint.close()  # b's media vanishes without a BYE (a crashed phone, a NAT)
    reason = await a_leg.wait_ended(WAIT)
    assert reason == "no RTP or RTCP for 1 s"
    assert await b_leg.wait_ended(WAIT) == "remote hangup"  # our BYE reached b


async def test_hold_is_not_silence_and_held_legs_stop_sending(phones: PhoneFactory) -> None:
    a, b = await phones(rtp_timeout=1.0), await phones(rtp_timeout=1.0)
    a_leg, b_leg = await _connect(a, b, b.uri("udp"))
    await until(lambda: a_leg.stats.packets_received > 5, timeout=WAIT)
    b_leg.hold()  # b re-INVITEs sendonly: a is held and must stop sending (RFC 3264 §6.1)
    b_leg.endpoint.keep_sending(False)  # and b sends nothing either, as many phones on hold do
    await until(lambda: a_leg.on_hold, timeout=WAIT)
    await asyncio.sleep(0.1)
    sent, heard = a_leg.stats.packets_sent, a_leg.stats.packets_received
    await asyncio.sleep(1.8)  # longer than both RTP timeouts, in silence both ways...
    assert a_leg.stats.packets_received <= heard + 1
    assert not a_leg.ended.is_set() and not b_leg.ended.is_set()  # ...yet nobody hangs up
    assert a_leg.stats.packets_sent <= sent + 1  # and a no longer fills the line
    b_leg.endpoint.keep_sending(True)
    b_leg.resume()
    await until(lambda: not a_leg.on_hold, timeout=WAIT)
    await until(lambda: a_leg.stats.packets_sent > sent + 10, timeout=WAIT)  # a talks again
    await a_leg.hangup()


async def test_bridge_audio_tap_hears_both_sides_while_relaying(phones: PhoneFactory) -> None:
    """``<Dial record>``'s tap: every relayed audio packet of each side, decoded, while the
    relay still carries the audio through (SRTP on one side, RTP on the other)."""
    caller, middle, callee = await phones(), await phones(), await phones()
    caller_leg, inbound = await _connect(
        caller, middle, middle.uri(secure=True), secure_media_enabled=True
    )
    outbound, callee_leg = await _connect(middle, callee, callee.uri("udp"))
    heard: dict[str, bytearray] = {"a": bytearray(), "b": bytearray()}
    joined = bridge(inbound, outbound, on_audio=lambda side, pcm: heard[side].extend(pcm))
    callee_ear = Ear(callee_leg)
    await asyncio.gather(caller_leg.play(sine(1000, 600)), callee_leg.play(sine(440, 600)))
    assert goertzel_power(await callee_ear.heard(0.5), 1000) > 0.8  # still relayed
    await until(lambda: len(heard["a"]) > 6000 and len(heard["b"]) > 6000, timeout=WAIT)
    assert goertzel_power(bytes(heard["a"]), 1000) > 0.8
    assert goertzel_power(bytes(heard["b"]), 440) > 0.8
    joined.stop()
    for leg in (caller_leg, callee_leg):
        await leg.hangup()


# -- ZRTP legs (RFC 6189) ------------------------------------------------------------------------


async def _connect_zrtp(a: Box, b: Box, uri: str) -> tuple[CallLeg, CallLeg]:
    from callxml.sip.target import Target

    dial = asyncio.ensure_future(
        a.phone.dial(Target.parse(uri).with_media_encryption("zrtp"), timeout=WAIT)
    )
    incoming = await b.next_call()
    b_leg = await incoming.accept(secure_media_enabled=False, zrtp=True)
    result = await asyncio.wait_for(dial, WAIT)
    assert result.status == "answered", result
    assert result.leg is not None
    await asyncio.wait_for(b_leg.wait_secure(), WAIT)
    return result.leg, b_leg


async def test_zrtp_call_keys_srtp_in_band_both_ways(phones: PhoneFactory) -> None:
    a, b = await phones(), await phones()
    a_leg, b_leg = await _connect_zrtp(a, b, b.uri("udp"))
    ra, rb = a_leg.zrtp_result, b_leg.zrtp_result
    assert ra is not None and rb is not None and ra.sas == rb.sas
    assert a_leg.encryption == b_leg.encryption == "zrtp" and a_leg.secure and b_leg.secure
    assert a_leg.suite == b_leg.suite == "AES_CM_128_HMAC_SHA1_80"
    assert "RTP/AVP" in str(a_leg.media.local_sdp) and "a=zrtp-hash:1.10 " in str(
        a_leg.media.local_sdp
    )
    a_ear, b_ear = Ear(a_leg), Ear(b_leg)
    await asyncio.gather(a_leg.play(sine(1000, 600)), b_leg.play(sine(440, 600)))
    assert goertzel_power(await b_ear.heard(0.5), 1000) > 0.8
    assert goertzel_power(await a_ear.heard(0.5), 440) > 0.8
    # SRTP: 12 + 160 + the 10-octet tag; ZRTP packets were counted, never decoded as audio
    assert a_leg.stats.octets_sent == a_leg.stats.packets_sent * 182
    assert a_leg.stats.zrtp_received >= 3 and b_leg.stats.zrtp_received >= 3
    assert "sas=" in repr(a_leg)
    await a_leg.hangup()
    await b_leg.wait_ended(WAIT)
    # the second call between the same two phones is keyed with the retained secret
    a_leg, b_leg = await _connect_zrtp(a, b, b.uri("udp"))
    assert a_leg.zrtp_result is not None and a_leg.zrtp_result.cache_match
    assert b_leg.zrtp_result is not None and b_leg.zrtp_result.cache_match
    await a_leg.hangup()


async def test_zrtp_leg_without_a_zrtp_peer_ends_with_the_reason(phones: PhoneFactory) -> None:
    """The callee answers RTP/AVP but never speaks ZRTP: nothing flows in the clear, and the
    dial fails with the ZRTP timeout as its reason once the Hello retransmissions run out."""
    from callxml.sip.target import Target

    a, b = await phones(), await phones()
    dial = asyncio.ensure_future(
        a.phone.dial(Target.parse(b.uri("udp")).with_media_encryption("zrtp"), timeout=WAIT)
    )
    incoming = await b.next_call()
    b_leg = await incoming.accept(secure_media_enabled=False)  # a plain answer, no ZRTP
    b_ear = Ear(b_leg)
    playing = asyncio.ensure_future(b_leg.play(sine(440, 6000)))
    result = await asyncio.wait_for(dial, 3 * WAIT)
    playing.cancel()
    assert result.status == "failed" and "ZRTP timeout" in result.reason, result
    assert result.leg is None
    assert not b_ear.pcm  # not one RTP packet from the ZRTP leg reached the callee
    await b_leg.wait_ended(WAIT)


async def test_zrtp_secrets_never_reach_the_logs(
    phones: PhoneFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A whole ZRTP call at DEBUG: neither direction's SRTP master key or salt, nor the new
    retained secret, in hex or base64, is in any log record or repr."""
    caplog.set_level(logging.DEBUG)
    a, b = await phones(), await phones()
    a_leg, b_leg = await _connect_zrtp(a, b, b.uri("udp"))
    await asyncio.gather(a_leg.play(sine(1000, 200)), b_leg.play(sine(440, 200)))
    await a_leg.hangup()
    await b_leg.wait_ended(WAIT)
    secrets: list[str] = []
    for leg in (a_leg, b_leg):
        result = leg.zrtp_result
        assert result is not None and result.cache_update.rs1 is not None
        for material in (result.our_key, result.their_key, result.cache_update.rs1):
            secrets += [base64.b64encode(material).decode()[:16], material.hex()[:24]]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    logged += "\n".join(
        repr(x) for leg in (a_leg, b_leg) for x in (leg, leg.zrtp, leg.zrtp_result, leg.media)
    )
    assert "ZRTP secure" in logged  # the exchange did log (with its SAS): not vacuous
    for secret in secrets:
        assert secret not in logged


@pytest.mark.parametrize(
    "suite",
    ["AEAD_AES_256_GCM", "AEAD_AES_128_GCM", "AES_256_CM_HMAC_SHA1_80", "AES_256_CM_HMAC_SHA1_32"],
)
async def test_wider_suites_end_to_end_between_two_phones(phones: PhoneFactory, suite: str) -> None:
    """``srtpSuites`` offered over TLS to a callee that allows only ``suite``: the answer takes
    that line, both legs run it, the tone crosses both ways, the tags are the suite's."""
    from callxml.media.suites import SUITES
    from callxml.sip.target import Target

    a, b = await phones(), await phones()
    target = Target.parse(b.uri(secure=True)).with_srtp_suites(
        ("AES_CM_128_HMAC_SHA1_80", suite) if suite != "AEAD_AES_256_GCM" else (suite,)
    )
    dial = asyncio.ensure_future(a.phone.dial(target, timeout=WAIT))
    incoming = await b.next_call()
    b_leg = await incoming.accept(secure_media_enabled=True, srtp_suites=(suite,))
    result = await asyncio.wait_for(dial, WAIT)
    assert result.leg is not None, result
    a_leg = result.leg
    assert a_leg.suite == b_leg.suite == suite
    a_ear, b_ear = Ear(a_leg), Ear(b_leg)
    await asyncio.gather(a_leg.play(sine(1000, 600)), b_leg.play(sine(440, 600)))
    assert goertzel_power(await b_ear.heard(0.5), 1000) > 0.8
    assert goertzel_power(await a_ear.heard(0.5), 440) > 0.8
    tag = SUITES[suite].srtp_tag_octets
    assert a_leg.stats.octets_sent == a_leg.stats.packets_sent * (12 + 160 + tag)
    await a_leg.hangup()
    await b_leg.wait_ended(WAIT)


async def test_an_unknown_srtp_suite_fails_the_dial_with_the_reason(phones: PhoneFactory) -> None:
    from callxml.sip.target import Target

    a, b = await phones(), await phones()
    target = Target.parse(b.uri(secure=True)).with_srtp_suites(("ROT13_HMAC_MD5",))
    result = await a.phone.dial(target, timeout=WAIT)
    assert result.status == "failed" and result.reason.startswith("srtpSuites: 'ROT13_HMAC_MD5'")
