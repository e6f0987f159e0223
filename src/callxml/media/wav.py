"""WAV/PCM helpers: load audio as 8 kHz mono 16-bit PCM, cut it into frames, record to WAV.

Owns the file side of ``<Play>``-style playback and of call recording: reading any format
libsndfile knows (resampled with soxr, mixed down to mono), framing PCM for a paced RTP sender,
and :class:`PcmRecorder`, a bounded :class:`~callxml.media.stream.MediaConsumer` that keeps the
received audio and writes it as a WAV file. No sockets; file I/O only where the names say so.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from os import PathLike

import numpy as np

from callxml.errors import MediaError
from callxml.media.dtmf import DtmfDigit

SAMPLE_RATE = 8000
MAX_RECORD_SECONDS = 4 * 3600  # bound memory held by one recorder


def read_audio(path: str | PathLike[str], *, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Any sound file → 16-bit signed little-endian mono PCM at ``sample_rate``."""
    import soundfile
    import soxr

    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as exc:  # libsndfile reports format errors as RuntimeError
        raise MediaError(f"cannot read audio file {path}: {exc}") from None
    mono = data.mean(axis=1)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate)
    pcm: bytes = np.clip(np.round(mono * 32767.0), -32768, 32767).astype("<i2").tobytes()
    return pcm


def pcm_frames(pcm: bytes, *, frame_samples: int = 160) -> Iterator[bytes]:
    """Cut PCM into frames of ``frame_samples``; the last one is padded with silence."""
    step = 2 * frame_samples
    for start in range(0, len(pcm), step):
        frame = pcm[start : start + step]
        if len(frame) < step:
            frame += bytes(step - len(frame))
        yield frame


def write_wav(path: str | PathLike[str], pcm: bytes, *, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit mono PCM as a WAV file."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm)


class PcmRecorder:
    """Collects received audio frames and DTMF digits (a ``MediaConsumer``), bounded in size."""

    def __init__(self, *, max_seconds: float = MAX_RECORD_SECONDS) -> None:
        self._pcm = bytearray()
        self._limit = int(max_seconds * SAMPLE_RATE) * 2
        self.digits: list[str] = []
        self.truncated = False

    def audio_received(self, pcm: bytes, timestamp: int) -> None:
        room = self._limit - len(self._pcm)
        if room <= 0:
            self.truncated = True
            return
        self._pcm += pcm[:room]

    def dtmf_received(self, digit: DtmfDigit) -> None:
        if len(self.digits) < 10_000:
            self.digits.append(digit.digit)

    @property
    def pcm(self) -> bytes:
        return bytes(self._pcm)

    def save(self, path: str | PathLike[str]) -> None:
        write_wav(path, bytes(self._pcm))
