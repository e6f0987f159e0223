"""A secure dial through a real Kamailio TLS proxy to a real baresip: the proxy hop keeps TLS.

callxml sends the INVITE to Kamailio (an outbound proxy) over TLS; Kamailio record-routes and
relays it by its Request-URI. Because a secure target's Request-URI carries ``;transport=tls``
(and never our own ``secure`` parameter), Kamailio forwards over TLS too, baresip answers with
SRTP, tones go through both ways, and the BYE follows the Record-Route back through the proxy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callxml.engine.devcert import DevCertificate
from callxml.media.tone import goertzel_power, sine
from callxml.runtime import Phone
from callxml.sip.aio.tls import TlsConfig
from callxml.sip.aio.transport import ListenerConfig
from support.baresip import THEIR_TONE, BaresipFactory, BaresipOptions
from support.kamailio import KamailioConfig, kamailio
from support.waiting import until

pytestmark = pytest.mark.peer

WAIT = 10.0
OUR_TONE = 1000


@pytest.fixture
async def phone(dev_cert: DevCertificate) -> AsyncIterator[Phone]:
    made = await Phone.start(
        listeners=[ListenerConfig("udp", "127.0.0.1", 0), ListenerConfig("tls", "127.0.0.1", 0)],
        tls=TlsConfig(
            ca_file=str(dev_cert.ca), cert_file=str(dev_cert.cert), key_file=str(dev_cert.key)
        ),
    )
    try:
        yield made
    finally:
        await asyncio.wait_for(made.close(), WAIT)


async def test_secure_dial_through_kamailio_keeps_tls_and_srtp(
    tmp_path: Path,
    baresip: BaresipFactory,
    phone: Phone,
    dev_cert: DevCertificate,
    their_tone: Path,
) -> None:
    peer = await baresip(BaresipOptions(mediaenc="srtp-mand", play=their_tone, cert=dev_cert))
    async with kamailio(KamailioConfig(cert=dev_cert), tmp_path / "kamailio") as proxy:
        result = await phone.dial(peer.uri(secure=True), proxy=proxy.uri("tls"), timeout=WAIT)
        assert result.status == "answered", result.reason
        leg = result.leg
        assert leg is not None and leg.secure and result.transport == "tls"
        heard = bytearray()
        leg.set_consumer(heard.extend)
        await asyncio.wait_for(leg.play(sine(OUR_TONE, 1500, amplitude=0.4)), WAIT)
        await until(lambda: len(heard) >= 16000, timeout=WAIT)
        await leg.hangup()
        await peer.wait_event("CALL_CLOSED", timeout=WAIT)
        routed, sent = proxy.requests(), proxy.sent()
    ruri = f"sip:peer@127.0.0.1:{peer.tls_port};transport=tls"  # secure= never leaks
    assert ("INVITE", ruri, "tls") in routed  # it reached Kamailio over TLS...
    assert ("INVITE", ruri, "tls") in sent  # ...and left it over TLS, by the Request-URI
    assert any(m == "BYE" and p == "tls" for m, _, p in routed)  # BYE via the Record-Route
    assert any(m == "BYE" and p == "tls" for m, _, p in sent)
    assert "SRTP is Enabled" in peer.log()
    assert goertzel_power(bytes(heard)[4000:], THEIR_TONE) > 0.8
    assert goertzel_power(peer.received_audio()[4000:], OUR_TONE) > 0.8
