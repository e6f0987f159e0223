"""Real peers offering the wider SDES suites call a callxml domain over TLS.

linphonec offering only ``AES_256_CM_HMAC_SHA1_80`` (RFC 6188) reaches a domain whose
``srtp_suites`` allows it -- answered with that suite, our tone heard through SRTP -- and is
refused (488 with a ``Warning`` naming the suite) by a domain with the default suites.

AEAD AES-GCM (RFC 7714) has no real-peer test yet: linphonec 5.1 (Debian bookworm) cannot offer
it -- its mediastreamer2 logs ``Unsupported crypto suite 'AEAD_AES_256_GCM'`` and drops the audio
stream, pinned by :func:`test_linphone_5_1_cannot_offer_gcm` -- and baresip 1.0 offers only
``AES_CM_128_HMAC_SHA1_80``. The GCM suites are covered by libsrtp's published vector and the
RFC 7714 reference (tests/media/test_srtp_wider_suites.py) and by the policy tests.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callxml.engine.devcert import ensure_dev_certificate
from callxml.media.tone import goertzel_power
from support.baresip import tone_wav
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


SUITE = "AES_256_CM_HMAC_SHA1_80"


@pytest.mark.parametrize("allowed", [True, False], ids=["allowed", "not-allowed"])
async def test_linphone_aes_256_only_reaches_a_domain_that_allows_it(
    tmp_path: Path, linphone: LinphoneFactory, allowed: bool
) -> None:
    dev = ensure_dev_certificate(tmp_path / "data" / "tls")
    tone = tone_wav(tmp_path / "ours.wav", OUR_TONE, 20_000, amplitude=0.3)
    app = WebApp({"/voice": lambda form: f"<Response><Play>{tone.as_uri()}</Play></Response>"})
    await app.start()
    domain: dict[str, object] = {"name": "127.0.0.1", "voice_url": app.url("/voice")}
    domain["secure_media"] = True
    if allowed:
        domain["srtp_suites"] = [SUITE, "AES_CM_128_HMAC_SHA1_80"]
    config = engine_config(tmp_path, [domain], transports=("udp", "tcp", "tls"))
    try:
        async with running_engine(config) as engine:
            peer = await linphone(
                LinphoneOptions(
                    user="alice",
                    media_encryption="srtp",
                    srtp_suites=(SUITE,),
                    play=tone_wav(tmp_path / "theirs.wav", THEIR_TONE, 30_000, amplitude=0.3),
                    cert=dev,
                ),
            )
            await peer.call(f"sip:ivr@127.0.0.1:{sip_port(engine, 'tls')};transport=tls")
            store = engine.store
            assert store is not None
            sid = config.accounts[0].sid
            if allowed:
                await peer.wait_output(r"Call 1 with .* connected\.", timeout=20)
                await asyncio.sleep(3)  # tones both ways
                await peer.terminate()
                await peer.wait_output(r"Call 1 with .* ended", timeout=15)  # its WAV is closed
                await until(lambda: store.list_calls(sid, status="completed"), timeout=15)
                events = store.list_events(store.list_calls(sid)[0].sid)
            else:
                await peer.wait_output(r"Call 1 .*(error|ended|declined|failed)", timeout=20)
                await until(lambda: store.list_calls(sid)[0].status == "failed", timeout=15)
                events = store.list_events(store.list_calls(sid)[0].sid)
            calls = store.list_calls(sid)
        log = peer.log()
        heard = peer.received_audio() if allowed else b""
        await peer.stop()
    finally:
        await app.stop()
    text = " ".join(str(e.data) for e in events)
    if allowed:
        assert f"'suite': '{SUITE}'" in text, text
        assert f"a=crypto:1 {SUITE} inline:" in log  # what linphonec offered and got back
        assert best_window(heard, OUR_TONE) > 0.5, "linphonec did not hear our tone"
        assert [c.status for c in calls] == ["completed"]
    else:
        assert [(c.status, c.sip_response_code) for c in calls] == [("failed", 488)]
        assert f"{SUITE} (suite not allowed by this domain)" in text, text
        assert "488" in log and "Warning" in log


async def test_linphone_5_1_cannot_offer_gcm(tmp_path: Path, linphone: LinphoneFactory) -> None:
    """Why the GCM interop below uses baresip: this linphonec drops a GCM-only SDES stream.
    Should a newer linphonec offer it, this test fails and the GCM case can move to it."""
    peer = await linphone(
        LinphoneOptions(media_encryption="srtp", srtp_suites=("AEAD_AES_256_GCM",))
    )
    await peer.call("sip:nobody@127.0.0.1:9")
    await peer.wait_log("Unsupported crypto suite 'AEAD_AES_256_GCM'")
