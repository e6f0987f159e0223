"""End to end with two real baresip softphones, TLS + SRTP on both legs.

baresip "alice" calls a SIP domain with ``secure_media = true`` over TLS with SRTP; the webhook
(a real local aiohttp app) answers with Say + Gather; alice sends 1 as an RFC 4733 event; the next
document dials ``sip:jack@…;secure=true``, a second baresip; a tone played by each peer is found in
what the other received through the engine's bridge; the Dial action is posted with
``DialCallStatus=completed``. The same flow runs with a plain-RTP caller on a plain domain
(bridge RTP↔SRTP). Also: the secure domain refuses a TLS call offering plain RTP.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callxml.engine.devcert import ensure_dev_certificate
from support.baresip import BaresipFactory, BaresipOptions, best_window, tone_wav
from support.engine import WebApp, engine_config, running_engine, sip_port
from support.waiting import until

pytestmark = pytest.mark.peer

ALICE_TONE = 440.0
JACK_TONE = 1300.0


def tone_file(path: Path, frequency: float) -> Path:
    return tone_wav(path, frequency, 30_000, amplitude=0.3)


@pytest.mark.parametrize(
    "caller",
    ["tls-srtp", "udp-rtp"],
    ids=["caller-tls-srtp", "caller-udp-plain-rtp"],
)
async def test_secure_call_gather_dial_bridge(
    tmp_path: Path, baresip: BaresipFactory, caller: str
) -> None:
    """Caller on a secure domain over TLS+SRTP (or, the other way, a plain RTP caller on a plain
    domain); the dialled leg is always TLS+SRTP, so the bridge relays SRTP↔SRTP or RTP↔SRTP."""
    secure_caller = caller == "tls-srtp"
    dev = ensure_dev_certificate(tmp_path / "data" / "tls")
    jack = await baresip(
        BaresipOptions(user="jack", play=tone_file(tmp_path / "jack.wav", JACK_TONE), cert=dev),
        name="jack",
    )
    app = WebApp(
        {
            "/voice": lambda form: (
                '<Response><Gather numDigits="1" action="/menu" timeout="10">'
                "<Say>Press 1 to talk to Jack.</Say></Gather></Response>"
            ),
            "/menu": lambda form: (
                '<Response><Dial action="/dialed" timeout="10">'
                f"<Sip>{jack.uri(secure=True)}</Sip></Dial></Response>"
                if form.get("Digits") == "1"
                else "<Response><Hangup/></Response>"
            ),
            "/dialed": lambda form: "<Response><Hangup/></Response>",
        }
    )
    await app.start()
    config = engine_config(
        tmp_path,
        [{"name": "127.0.0.1", "voice_url": app.url("/voice"), "secure_media": secure_caller}],
        transports=("udp", "tcp", "tls"),
        extra={"tls": {"ca_bundle": str(dev.ca)}},
    )
    try:
        async with running_engine(config) as engine:
            alice = await baresip(
                BaresipOptions(
                    user="alice",
                    play=tone_file(tmp_path / "alice.wav", ALICE_TONE),
                    cert=dev,
                    transport="tls" if secure_caller else None,
                    mediaenc="srtp-mand" if secure_caller else None,
                ),
                name="alice",
            )
            if secure_caller:
                await alice.dial(f"sip:ivr@127.0.0.1:{sip_port(engine, 'tls')};transport=tls")
            else:
                await alice.dial(f"sip:ivr@127.0.0.1:{sip_port(engine, 'udp')}")
            await alice.wait_event("CALL_ESTABLISHED")
            await until(lambda: "/voice" in app.paths())
            await asyncio.sleep(0.5)  # the prompt is playing
            await alice.command("sndcode", "1")
            await jack.wait_event("CALL_ESTABLISHED", timeout=15)
            await asyncio.sleep(3)  # both tones flow through the bridge
            await alice.hangup()
            await until(lambda: "/dialed" in app.paths(), timeout=15)
            store = engine.store
            assert store is not None
            sid = config.accounts[0].sid
            await until(  # the parent ends once its last webhook exchange is logged
                lambda: any(
                    c.direction == "inbound" for c in store.list_calls(sid, status="completed")
                )
            )
            calls = store.list_calls(sid)
            events = {c.sid: engine.store.list_events(c.sid, kind="webhook") for c in calls}
        await alice.stop()
        await jack.stop()
    finally:
        await app.stop()

    menu = next(form for path, form in app.requests if path == "/menu")
    assert menu["Digits"] == "1"
    dialed = next(form for path, form in app.requests if path == "/dialed")
    assert dialed["DialCallStatus"] == "completed", dialed
    assert dialed["DialSipResponseCode"] == "200" and dialed["DialSipCallId"]
    assert int(dialed["DialCallDuration"]) >= 2

    parent = next(c for c in calls if c.direction == "inbound")
    child = next(c for c in calls if c.direction == "outbound-dial")
    assert child.parent_call_sid == parent.sid and child.status == "completed"
    logged = [e.data["parameters"].get("DialCallStatus") for e in events[parent.sid]]
    assert "completed" in logged  # the call record shows the Dial outcome

    heard_by_alice = alice.received_audio()
    heard_by_jack = jack.received_audio()
    assert best_window(heard_by_alice, JACK_TONE) > 0.5, "alice did not hear jack's tone"
    assert best_window(heard_by_jack, ALICE_TONE) > 0.5, "jack did not hear alice's tone"


async def test_secure_domain_refuses_tls_call_with_plain_rtp(
    tmp_path: Path, baresip: BaresipFactory
) -> None:
    dev = ensure_dev_certificate(tmp_path / "data" / "tls")
    app = WebApp({"/voice": lambda form: "<Response><Say>Hi</Say></Response>"})
    await app.start()
    config = engine_config(
        tmp_path,
        [{"name": "127.0.0.1", "voice_url": app.url("/voice"), "secure_media": True}],
        transports=("udp", "tcp", "tls"),
        extra={"tls": {"ca_bundle": str(dev.ca)}},
    )
    try:
        async with running_engine(config) as engine:
            alice = await baresip(
                BaresipOptions(user="alice", mediaenc=None, cert=dev, transport="tls"),
                name="alice",
            )
            await alice.dial(f"sip:ivr@127.0.0.1:{sip_port(engine, 'tls')};transport=tls")
            event = await alice.wait_event("CALL_CLOSED")
            store = engine.store
            assert store is not None
            sid = config.accounts[0].sid
            await until(lambda: store.list_calls(sid)[0].status == "failed")
            calls = store.list_calls(sid)
    finally:
        await app.stop()
    assert "488" in str(event), event
    assert "/voice" not in app.paths()
    assert [(c.status, c.sip_response_code) for c in calls] == [("failed", 488)]
