"""Audio for calls: text to speech, audio files from URLs, beeps — all as 8 kHz mono PCM.

Owns turning ``<Say>`` text (espeak-ng) and ``<Play>`` URLs (WAV, MP3, FLAC... via soundfile,
resampled with soxr) into what the media layer sends: signed 16-bit little-endian PCM at 8 kHz,
mono. Both are cached (TTS per text/voice/language, downloads per URL) because IVR menus repeat
the same prompts on every call, and both are bounded (text length, download size, duration).

It must not know about RTP or SIP: callers get PCM bytes and pace them themselves.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

import aiohttp
import numpy as np
import soundfile
import soxr

from callxml.errors import MediaError

__all__ = [
    "SAMPLE_RATE",
    "AudioCache",
    "beep",
    "decode_audio",
    "espeak_voice",
    "silence",
    "synthesize",
]

SAMPLE_RATE = 8000
MAX_TEXT = 4096  # characters of one <Say>
MAX_DOWNLOAD = 50 * 1024 * 1024  # bytes of one <Play> file
MAX_SECONDS = 3600  # of decoded audio
TTS_TIMEOUT = 30.0

# Twilio's language codes -> espeak-ng voices (espeak-ng picks a default for unknown ones).
_LANGUAGES = {
    "en-us": "en-us",
    "en-gb": "en-gb",
    "en-au": "en",
    "en-in": "en",
    "es-es": "es",
    "es-mx": "es-419",
    "es-us": "es-419",
    "fr-fr": "fr-fr",
    "fr-ca": "fr-fr",
    "de-de": "de",
    "it-it": "it",
    "pt-br": "pt-br",
    "pt-pt": "pt",
    "nl-nl": "nl",
    "ja-jp": "ja",
    "zh-cn": "cmn",
    "sv-se": "sv",
    "da-dk": "da",
    "nb-no": "nb",
    "pl-pl": "pl",
    "ru-ru": "ru",
}


def espeak_voice(language: str | None, voice: str | None) -> str:
    """The espeak-ng voice for Twilio's ``language`` and ``voice`` attributes."""
    name = _LANGUAGES.get((language or "en-US").lower(), "en-us")
    # Twilio's man/woman voices: espeak-ng variants give a rough equivalent.
    if (voice or "").lower() in ("woman", "alice") or (voice or "").startswith("Polly."):
        return f"{name}+f3"
    return name


def to_pcm16(samples: np.ndarray, rate: int) -> bytes:
    """Mix down to mono, resample to 8 kHz and clip to int16 little-endian bytes."""
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    samples = samples.astype(np.float64, copy=False)
    if rate != SAMPLE_RATE:
        samples = soxr.resample(samples, rate, SAMPLE_RATE)
    clipped = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    return clipped.tobytes()


def decode_audio(data: bytes) -> bytes:
    """Decode a WAV/MP3/FLAC/OGG file's bytes into 8 kHz mono PCM16."""
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float64", always_2d=False)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise MediaError(f"cannot decode audio: {exc}") from None
    if len(samples) > MAX_SECONDS * rate:
        raise MediaError(f"audio longer than {MAX_SECONDS} seconds")
    return to_pcm16(np.asarray(samples), int(rate))


def silence(seconds: float) -> bytes:
    return bytes(2 * int(SAMPLE_RATE * seconds))


def beep(seconds: float = 0.5, frequency: float = 1000.0, level: float = 0.4) -> bytes:
    """The beep ``<Record>`` plays before recording."""
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    return to_pcm16(level * np.sin(2 * math.pi * frequency * t), SAMPLE_RATE)


async def synthesize(text: str, *, language: str | None = None, voice: str | None = None) -> bytes:
    """Speak ``text`` with espeak-ng into 8 kHz PCM16. Needs the ``espeak-ng`` program."""
    if len(text) > MAX_TEXT:
        raise MediaError(f"<Say> text longer than {MAX_TEXT} characters")
    program = shutil.which("espeak-ng")
    if program is None:
        raise MediaError("espeak-ng is not installed (Debian package espeak-ng)")
    with tempfile.TemporaryDirectory(prefix="callxml-tts-") as tmp:
        out = Path(tmp) / "say.wav"
        # Text goes on stdin, never on the command line: no option injection, no length limit.
        proc = await asyncio.create_subprocess_exec(
            program,
            "-v",
            espeak_voice(language, voice),
            "-w",
            str(out),
            "--stdin",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(text.encode("utf-8")), TTS_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise MediaError("espeak-ng timed out") from None
        if proc.returncode != 0 or not out.is_file():
            raise MediaError(f"espeak-ng failed: {err.decode(errors='replace').strip()[:200]}")
        return decode_audio(out.read_bytes())


class AudioCache:
    """Caches synthesized speech on disk and downloaded audio in memory (LRU, bounded)."""

    def __init__(
        self, directory: Path, *, session: aiohttp.ClientSession | None = None, max_items: int = 64
    ) -> None:
        self.directory = directory
        self.session = session
        self.max_items = max_items
        self._downloads: OrderedDict[str, bytes] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def speech(self, text: str, *, language: str | None, voice: str | None) -> bytes:
        key = hashlib.sha256(f"{language}\0{voice}\0{text}".encode()).hexdigest()
        path = self.directory / "tts" / f"{key}.pcm"
        async with self._lock(key):
            if path.is_file():
                return path.read_bytes()
            pcm = await synthesize(text, language=language, voice=voice)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pcm)
            os.replace(tmp, path)  # atomic: a crash never leaves half a prompt in the cache
            return pcm

    async def url(self, url: str) -> bytes:
        """Fetch (once) and decode an audio URL; ``file:`` and plain paths read local files."""
        async with self._lock(url):
            if url in self._downloads:
                self._downloads.move_to_end(url)
                return self._downloads[url]
            if url.startswith(("http://", "https://")):
                data = await self._download(url)
            else:
                path = Path(url.removeprefix("file://").removeprefix("file:"))
                try:
                    if path.stat().st_size > MAX_DOWNLOAD:
                        raise MediaError(f"{url}: larger than {MAX_DOWNLOAD} bytes")
                    data = path.read_bytes()
                except OSError as exc:
                    raise MediaError(f"{url}: {exc.strerror}") from None
            pcm = await asyncio.to_thread(decode_audio, data)
            self._downloads[url] = pcm
            while len(self._downloads) > self.max_items:
                self._downloads.popitem(last=False)
            return pcm

    async def _download(self, url: str) -> bytes:
        session = self.session or aiohttp.ClientSession()
        try:
            timeout = aiohttp.ClientTimeout(total=60)
            async with session.get(url, timeout=timeout, max_redirects=5) as resp:
                if resp.status != 200:
                    raise MediaError(f"{url}: HTTP {resp.status}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > MAX_DOWNLOAD:
                        raise MediaError(f"{url}: larger than {MAX_DOWNLOAD} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MediaError(f"{url}: {exc.__class__.__name__}: {exc}") from None
        finally:
            if self.session is None:
                await session.close()
