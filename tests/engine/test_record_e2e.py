"""``<Record>`` on a real call: baresip speaks (a tone) over plain RTP, the engine records it to a
WAV file, posts RecordingUrl, and serves the recording there with Basic auth only."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import pytest
import soundfile

from callxml.media.tone import goertzel_power
from support.baresip import BaresipFactory, BaresipOptions, tone_wav
from support.engine import API_AUTH, WebApp, engine_config, running_engine, sip_port
from support.waiting import until

pytestmark = pytest.mark.peer

TONE = 700.0


async def test_record_real_audio_and_serve_it(tmp_path: Path, baresip: BaresipFactory) -> None:
    wav = tone_wav(tmp_path / "tone.wav", TONE, 30_000, amplitude=0.3)
    app = WebApp(
        {
            "/voice": lambda form: (
                '<Response><Record maxLength="2" timeout="5" action="/recorded"/></Response>'
            ),
            "/recorded": lambda form: "<Response><Hangup/></Response>",
        }
    )
    await app.start()
    config = engine_config(tmp_path, [{"name": "127.0.0.1", "voice_url": app.url("/voice")}])
    try:
        async with running_engine(config) as engine:
            peer = await baresip(BaresipOptions(user="alice", mediaenc=None, play=wav, tls=False))
            await peer.dial(f"sip:ivr@127.0.0.1:{sip_port(engine, 'udp')}")
            await until(lambda: "/recorded" in app.paths(), timeout=15)
            form = next(form for path, form in app.requests if path == "/recorded")
            url = form["RecordingUrl"]
            async with aiohttp.ClientSession() as http:
                async with http.get(url) as resp:
                    anonymous = resp.status
                async with http.get(url, headers=API_AUTH) as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"] == "audio/x-wav"
                    audio = await resp.read()
                async with http.get(url + ".json", headers=API_AUTH) as resp:
                    meta = await resp.json()
    finally:
        await app.stop()
    assert anonymous == 401
    assert form["RecordingDuration"] == "2" and form["RecordingSid"] == meta["sid"]
    assert meta["call_sid"] == form["CallSid"] and meta["duration"] == "2"
    samples, rate = soundfile.read(io.BytesIO(audio), dtype="int16")
    assert rate == 8000 and 1.5 <= len(samples) / rate <= 2.1
    assert goertzel_power(samples.tobytes(), TONE) > 0.5  # the caller's tone was recorded
