"""linphonec and callxml key calls with ZRTP (RFC 6189), both directions, with continuity.

* linphonec (``media_encryption=zrtp``, mandatory) calls a domain with ``media_encryption =
  "zrtp"``: answered, the SAS linphonec prints equals the SAS in our call log and in the
  webhook (``ZrtpSas``), our tone reaches linphonec and its tone is in our ``<Record>``ing --
  both through the SRTP keys ZRTP gave. Both sides then mark the SAS verified; the second call
  from the same linphonec matches the retained secret on both sides (our log says ``cache:
  match`` and the webhook ``ZrtpSasVerified=true``; linphonec says ``previously verified yes``).
* callxml dials linphonec with a ZRTP target (``<Sip mediaEncryption="zrtp">`` in markup):
  linphonec is the called party (UAS), the SAS is the same on both sides, tones both ways --
  from a Phone, from ``callxml call --zrtp``, and from the engine's ``<Dial>`` bridging a
  plain-RTP baresip caller to it;
* a caller that never does ZRTP is hung up with the reason, with no RTP sent to it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from callxml.engine.zrtpcache import StoreZrtpCache
from callxml.media.tone import goertzel_power, sine
from callxml.media.wav import read_audio
from callxml.runtime import Phone
from callxml.sip.target import Target
from support.baresip import BaresipFactory, BaresipOptions, tone_wav
from support.engine import WebApp, engine_config, running_engine, sip_port
from support.linphone import LinphoneFactory, LinphoneOptions
from support.waiting import until

pytestmark = pytest.mark.peer

THEIR_TONE = 440.0
OUR_TONE = 1300.0


def best_window(pcm: bytes, frequency: float, seconds: float = 0.5) -> float:
    step = int(8000 * seconds) * 2
    windows = [pcm[i : i + step] for i in range(0, max(0, len(pcm) - step) + 1, step // 2)]
    return max((goertzel_power(w, frequency) for w in windows if len(w) == step), default=0.0)


def media_event(store: Any, sid: str) -> dict[str, Any]:
    (event,) = [e.data for e in store.list_events(sid, kind="media")]
    return dict(event)


async def test_linphone_calls_a_zrtp_domain_twice_with_continuity(
    tmp_path: Path, linphone: LinphoneFactory
) -> None:
    ours = tone_wav(tmp_path / "ours.wav", OUR_TONE, 2_500, amplitude=0.3)
    app = WebApp(
        {
            "/voice": lambda form: (
                f"<Response><Play>{ours.as_uri()}</Play>"
                '<Record maxLength="2" timeout="5" action="/recorded"/></Response>'
            ),
            "/recorded": lambda form: "<Response><Hangup/></Response>",
        }
    )
    await app.start()
    domain = {"name": "127.0.0.1", "voice_url": app.url("/voice"), "media_encryption": "zrtp"}
    config = engine_config(tmp_path, [domain])
    sases: list[str] = []
    heard: list[bytes] = []
    try:
        async with running_engine(config) as engine:
            store = engine.store
            assert store is not None
            sid = config.accounts[0].sid
            peer = await linphone(
                LinphoneOptions(
                    user="alice",
                    play=tone_wav(tmp_path / "theirs.wav", THEIR_TONE, 60_000, amplitude=0.3),
                ),
            )
            for n in (1, 2):
                await peer.call(f"sip:ivr@127.0.0.1:{sip_port(engine, 'udp')}")
                sases.append(
                    (await peer.wait_output(rf"Call {n} is fully encrypted", timeout=20))
                    .string.rstrip(".")
                    .rsplit(" ", 1)[1]
                )
                if n == 1:  # a person compared the SAS: linphonec is told during the call...
                    await peer.command("zrtp-set-verified")
                await peer.wait_output(r"Call \d+ with .* ended", timeout=30, nth=n)
                await until(
                    lambda n=n: len(store.list_calls(sid, status="completed")) >= n, timeout=15
                )
                heard.append(peer.received_audio())
                if n == 1:  # ...and so are we, through the store
                    call = store.list_calls(sid)[0]
                    peer_zid = bytes.fromhex(media_event(store, call.sid)["peer_zid"])
                    assert StoreZrtpCache(store).set_verified(peer_zid)
            calls = sorted(store.list_calls(sid), key=lambda c: c.date_created)
            events = [media_event(store, c.sid) for c in calls]
            recordings = [store.list_recordings(c.sid) for c in calls]
            cache_lines = peer.zrtp_cache()
            algorithms = peer.zrtp_algorithms()
    finally:
        await app.stop()
    forms = [form for path, form in app.requests if path == "/voice"]
    for n in range(2):
        assert events[n]["sas"] == sases[n], (events, sases)
        assert forms[n]["ZrtpSas"] == sases[n]
        assert events[n]["suite"] == "AES_CM_128_HMAC_SHA1_80"
        assert best_window(heard[n], OUR_TONE) > 0.5, f"call {n + 1}: linphonec missed our tone"
        (recording,) = recordings[n]
        assert best_window(read_audio(recording.path), THEIR_TONE) > 0.5, "we missed theirs"
    assert [e["cache"] for e in events] == ["new", "match"]
    assert [f["ZrtpSasVerified"] for f in forms] == ["false", "true"]
    assert events[1]["peer_sas_verified"] is True  # linphonec's V flag in its Confirm
    assert cache_lines == [(sases[0], "no"), (sases[1], "yes")], cache_lines
    assert "KeyAgreement: DHM-3072" in algorithms and "Sas Rendering: Base32" in algorithms


async def test_callxml_dials_linphone_with_zrtp(tmp_path: Path, linphone: LinphoneFactory) -> None:
    peer = await linphone(
        LinphoneOptions(
            user="bob", play=tone_wav(tmp_path / "theirs.wav", THEIR_TONE, 60_000, amplitude=0.3)
        ),
    )
    phone = await Phone.start()
    heard = bytearray()
    try:
        target = Target.parse(peer.uri()).with_media_encryption("zrtp")
        result = await phone.dial(target, timeout=15)
        assert result.leg is not None, result.reason
        leg = result.leg
        leg.set_consumer(heard.extend)
        zrtp = leg.zrtp_result
        assert zrtp is not None and leg.secure and leg.encryption == "zrtp"
        their_sas = await peer.wait_sas(timeout=10)
        await leg.play(sine(OUR_TONE, 3000, amplitude=0.3))
        await leg.hangup()
        await peer.wait_output(r"Call \d+ with .* ended", timeout=10)
    finally:
        await phone.close()
    assert zrtp.sas == their_sas
    assert zrtp.suite == "AES_CM_128_HMAC_SHA1_80" and not zrtp.cache_match
    assert best_window(bytes(heard), THEIR_TONE) > 0.5, "we did not hear linphonec's tone"
    assert best_window(peer.received_audio(), OUR_TONE) > 0.5, "linphonec missed our tone"
    assert peer.zrtp_cache() == [(their_sas, "no")]


async def test_a_phone_without_zrtp_cannot_reach_a_zrtp_domain(
    tmp_path: Path, baresip: BaresipFactory
) -> None:
    """No clear media on a ZRTP leg: a caller that never answers ZRTP (baresip without its
    zrtp module; linphonec would do ZRTP opportunistically on seeing our a=zrtp-hash) is hung
    up with the reason recorded, the flow never runs, and no RTP reached it."""
    app = WebApp({"/voice": lambda form: "<Response><Say>secret</Say></Response>"})
    await app.start()
    domain = {"name": "127.0.0.1", "voice_url": app.url("/voice"), "media_encryption": "zrtp"}
    config = engine_config(tmp_path, [domain])
    try:
        async with running_engine(config) as engine:
            store = engine.store
            assert store is not None
            sid = config.accounts[0].sid
            peer = await baresip(BaresipOptions(user="carol", mediaenc=None, tls=False))
            await peer.dial(f"sip:ivr@127.0.0.1:{sip_port(engine, 'udp')}")
            await until(lambda: store.list_calls(sid, status="failed"), timeout=30)
            (call,) = store.list_calls(sid)
            event = media_event(store, call.sid)
            await peer.wait_event("CALL_CLOSED", timeout=10)
            await peer.stop()
    finally:
        await app.stop()
    assert "ZRTP timeout" in (call.error or ""), call
    assert event == {"encryption": "zrtp", "failure": call.error}
    assert "/voice" not in app.paths()
    files = peer.recordings("dec")
    heard = read_audio(files[-1]) if files else b""
    assert not any(heard), "RTP reached the caller before ZRTP completed"


async def test_callxml_call_reports_the_zrtp_sas(tmp_path: Path, linphone: LinphoneFactory) -> None:
    """``callxml call --zrtp`` against linphonec: the report carries the SAS linphonec shows."""
    from callxml.cli.call import EXIT_OK, place_call

    peer = await linphone(LinphoneOptions(user="dave"))
    report = await place_call(
        peer.uri(), pcm=sine(OUR_TONE, 2000, amplitude=0.3), duration=2.0, zrtp=True
    )
    their_sas = await peer.wait_sas(timeout=10)
    assert report.exit_code == EXIT_OK, report.lines()
    assert report.encryption == "zrtp" and report.zrtp_sas == their_sas
    assert report.suite == "AES_CM_128_HMAC_SHA1_80" and report.zrtp_cache == "new"
    text = "\n".join(report.lines())
    assert f"SAS {their_sas}" in text and "keyed by ZRTP" in text


async def test_dial_sip_media_encryption_zrtp_bridges_to_linphone(
    tmp_path: Path, linphone: LinphoneFactory, baresip: BaresipFactory
) -> None:
    """``<Dial><Sip mediaEncryption="zrtp">``: a plain-RTP caller (baresip) is bridged to
    linphonec over a ZRTP-keyed leg; the dial's call-log note has linphonec's SAS, and the
    tones cross the bridge both ways."""
    bob = await linphone(
        LinphoneOptions(
            user="bob", play=tone_wav(tmp_path / "bob.wav", THEIR_TONE, 60_000, amplitude=0.3)
        ),
        name="bob",
    )
    app = WebApp(
        {
            "/voice": lambda form: (
                '<Response><Dial action="/dialed" timeout="10">'
                f'<Sip mediaEncryption="zrtp">{bob.uri()}</Sip></Dial></Response>'
            ),
            "/dialed": lambda form: "<Response><Hangup/></Response>",
        }
    )
    await app.start()
    config = engine_config(tmp_path, [{"name": "127.0.0.1", "voice_url": app.url("/voice")}])
    try:
        async with running_engine(config) as engine:
            store = engine.store
            assert store is not None
            sid = config.accounts[0].sid
            alice = await baresip(
                BaresipOptions(
                    user="alice",
                    mediaenc=None,
                    tls=False,
                    play=tone_wav(tmp_path / "alice.wav", OUR_TONE, 30_000, amplitude=0.3),
                ),
                name="alice",
            )
            await alice.dial(f"sip:ivr@127.0.0.1:{sip_port(engine, 'udp')}")
            sas = await bob.wait_sas(timeout=20)
            await asyncio.sleep(3)  # both tones through the bridge
            await alice.hangup()
            await until(lambda: "/dialed" in app.paths(), timeout=15)
            parent = next(c for c in store.list_calls(sid) if c.direction == "inbound")
            notes = [e.data for e in store.list_events(parent.sid, kind="dial")]
            await bob.wait_output(r"Call \d+ with .* ended", timeout=15)  # its WAV is closed
        heard_by_alice = alice.received_audio()
        await alice.stop()
    finally:
        await app.stop()
    (note,) = notes
    assert note["zrtp_sas"] == sas and note["suite"] == "AES_CM_128_HMAC_SHA1_80", note
    assert note["zrtp_algorithms"] == "DH3k/S256/AES1/HS80/B32"
    dialed = next(form for path, form in app.requests if path == "/dialed")
    assert dialed["DialCallStatus"] == "completed"
    assert best_window(heard_by_alice, THEIR_TONE) > 0.5, "alice did not hear bob"
    assert best_window(bob.received_audio(), OUR_TONE) > 0.5, "bob did not hear alice"
