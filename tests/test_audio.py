"""Text to speech through the real espeak-ng, and audio files decoded/resampled to 8 kHz PCM."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
from aiohttp import web
from aiohttp.test_utils import TestServer

from callxml.audio import SAMPLE_RATE, AudioCache, beep, decode_audio, espeak_voice, synthesize
from callxml.errors import MediaError


def _power_at(pcm: bytes, frequency: float) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    t = np.arange(len(samples)) / SAMPLE_RATE
    return float(abs(np.dot(samples, np.exp(-2j * math.pi * frequency * t))) / len(samples))


def _wav(frequency: float, rate: int, seconds: float = 0.5, fmt: str = "WAV") -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    buf = io.BytesIO()
    soundfile.write(buf, 0.5 * np.sin(2 * math.pi * frequency * t), rate, format=fmt)
    return buf.getvalue()


def test_decode_resamples_to_8k_and_keeps_the_tone() -> None:
    pcm = decode_audio(_wav(440.0, 44100))
    assert len(pcm) == 2 * 4000
    assert _power_at(pcm, 440.0) > 20 * _power_at(pcm, 1000.0)


def test_decode_rejects_garbage() -> None:
    with pytest.raises(MediaError, match="cannot decode"):
        decode_audio(b"definitely not audio")


def test_beep_is_a_1k_tone() -> None:
    pcm = beep(0.25)
    assert len(pcm) == 2 * 2000
    assert _power_at(pcm, 1000.0) > 100 * _power_at(pcm, 300.0)


def test_voice_mapping() -> None:
    assert espeak_voice("en-GB", "man") == "en-gb"
    assert espeak_voice("de-DE", "woman") == "de+f3"
    assert espeak_voice(None, None) == "en-us"


async def test_espeak_speaks_text() -> None:
    pcm = await synthesize("Press one for sales.", language="en-US", voice="woman")
    samples = np.frombuffer(pcm, dtype="<i2")
    assert 0.5 * SAMPLE_RATE < len(samples) < 5 * SAMPLE_RATE
    assert np.abs(samples).max() > 1000  # not silence


async def test_cache_speech_on_disk_and_urls_in_memory(tmp_path: Path) -> None:
    hits = {"n": 0}

    async def tone(request: web.Request) -> web.Response:
        hits["n"] += 1
        return web.Response(body=_wav(800.0, 16000), content_type="audio/wav")

    app = web.Application()
    app.router.add_get("/tone.wav", tone)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        cache = AudioCache(tmp_path)
        url = str(server.make_url("/tone.wav"))
        first = await cache.url(url)
        assert await cache.url(url) == first and hits["n"] == 1
        assert _power_at(first, 800.0) > 20 * _power_at(first, 300.0)
        with pytest.raises(MediaError, match="HTTP 404"):
            await cache.url(str(server.make_url("/missing.wav")))
        spoken = await cache.speech("Hello", language="en-US", voice=None)
        assert list((tmp_path / "tts").iterdir())
        assert await cache.speech("Hello", language="en-US", voice=None) == spoken
    finally:
        await server.close()


async def test_local_files(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(_wav(500.0, 8000))
    cache = AudioCache(tmp_path)
    pcm = await cache.url(str(tmp_path / "a.wav"))
    assert len(pcm) == 2 * 4000
    with pytest.raises(MediaError):
        await cache.url(str(tmp_path / "nope.wav"))
