"""``<Record>`` on a real call: when a recording ends, what audio it keeps, and the WAV file.

Owns the media rules the interpreter leaves to the driver (:class:`~callxml.interpreter.actions.
StartRecording`): the recording ends after ``timeout`` seconds of silence, after ``max_length``
seconds, when the caller presses a key in ``finish_on_key``, or when the caller hangs up;
``trim-silence`` drops the silence before the first and after the last spoken frame.

:class:`RecordingMeter` is sans-IO, so its timeouts are tested on a fake clock: it is fed 20 ms
PCM frames, keys and ``now``, and says when it wants :meth:`~RecordingMeter.handle_timer`;
wall-clock timers matter because a caller whose phone suppresses silence sends no frames at all.
:func:`save_recording` writes the WAV file.
It knows nothing of SIP or of the call log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callxml.media.wav import write_wav

__all__ = ["SAMPLE_RATE", "SILENCE_RMS", "RecordingMeter", "RecordingResult", "save_recording"]

SAMPLE_RATE = 8000
#: A frame whose RMS level is below this (about -40 dBFS) counts as silence.
SILENCE_RMS = 330.0
#: The longest recording kept in memory (Twilio's own maxLength cap is 4 hours).
MAX_SECONDS = 4 * 3600.0
#: Silence kept around speech when trimming, so words are not clipped.
TRIM_MARGIN_SECONDS = 0.2


def frame_rms(pcm: bytes) -> float:
    """RMS level of 16-bit little-endian PCM (0 for an empty frame)."""
    if len(pcm) < 2:
        return 0.0
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float64)
    return float(math.sqrt(float(np.mean(samples * samples))))


@dataclass(frozen=True, slots=True)
class RecordingResult:
    """What a finished recording kept: ``pcm`` (8 kHz mono PCM16), and the key that ended it
    (``""`` on silence or maxLength, ``"hangup"`` when the caller hung up)."""

    pcm: bytes
    digits: str

    @property
    def duration(self) -> int:
        """Whole seconds of kept audio, rounded (Twilio's ``RecordingDuration``)."""
        return round(len(self.pcm) / (2 * SAMPLE_RATE))


class RecordingMeter:
    """Decides when a ``<Record>`` ends and keeps its audio. Feed it frames, keys and ``now``.

    ``started`` is when recording began (after the beep). Audio after the end is ignored.
    """

    def __init__(
        self,
        *,
        started: float,
        timeout: float,
        max_length: float,
        finish_on_key: str,
        trim: bool = True,
        silence_rms: float = SILENCE_RMS,
    ) -> None:
        self._started = started
        self._timeout = max(0.0, timeout)
        self._max_length = min(max(0.0, max_length), MAX_SECONDS)
        self._finish_on_key = finish_on_key
        self._trim = trim
        self._silence_rms = silence_rms
        self._frames: list[bytes] = []
        self._bytes = 0
        self._max_bytes = int(self._max_length * SAMPLE_RATE) * 2
        self._first_voice: int | None = None  # byte offsets of spoken audio
        self._last_voice_end = 0
        self._last_voice_at = started  # wall clock of the last spoken frame (or the start)
        self.done = False
        self.digits = ""

    # -- inputs ---------------------------------------------------------------------------------

    def audio(self, pcm: bytes, now: float) -> None:
        """One received frame (any length, PCM16)."""
        if self.done:
            return
        room = self._max_bytes - self._bytes
        pcm = pcm[: max(0, room - room % 2)]
        if pcm:
            if frame_rms(pcm) >= self._silence_rms:
                if self._first_voice is None:
                    self._first_voice = self._bytes
                self._last_voice_end = self._bytes + len(pcm)
                self._last_voice_at = now
            self._frames.append(pcm)
            self._bytes += len(pcm)
        if self._bytes >= self._max_bytes:
            self._finish("")
        else:
            self.handle_timer(now)

    def digit(self, key: str, now: float) -> None:
        """A DTMF key: ends the recording if it is in ``finish_on_key`` (the key is not kept)."""
        if not self.done and key and key in self._finish_on_key:
            self._finish(key)

    def hang_up(self) -> None:
        """The caller hung up (or the call was redirected): stop now."""
        if not self.done:
            self._finish("hangup")

    def next_timer(self) -> float | None:
        if self.done:
            return None
        silence_end = self._last_voice_at + self._timeout if self._timeout > 0 else math.inf
        return min(silence_end, self._started + self._max_length)

    def handle_timer(self, now: float) -> None:
        due = self.next_timer()
        if due is not None and now >= due:
            self._finish("")

    # -- result ---------------------------------------------------------------------------------

    def _finish(self, digits: str) -> None:
        self.done = True
        self.digits = digits

    def result(self) -> RecordingResult:
        """The kept audio; empty if nobody spoke (with trimming) or nothing arrived."""
        pcm = b"".join(self._frames)
        if self._trim:
            if self._first_voice is None:
                pcm = b""
            else:
                margin = int(TRIM_MARGIN_SECONDS * SAMPLE_RATE) * 2
                start = max(0, self._first_voice - margin)
                end = min(len(pcm), self._last_voice_end + margin)
                pcm = pcm[start:end]
        return RecordingResult(pcm, self.digits)


def save_recording(directory: Path, sid: str, pcm: bytes) -> Path:
    """Write ``pcm`` as ``directory/sid.wav`` (8 kHz mono PCM16) atomically; return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{sid}.wav"
    partial = directory / f".{sid}.wav.partial"
    write_wav(partial, pcm, sample_rate=SAMPLE_RATE)
    partial.replace(path)  # a crash never leaves a half-written file under the served name
    return path
