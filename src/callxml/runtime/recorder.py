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
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from callxml.media.wav import write_wav

__all__ = [
    "SAMPLE_RATE",
    "SILENCE_RMS",
    "AudioTap",
    "BridgeRecorder",
    "RecordingMeter",
    "RecordingResult",
    "Taps",
    "save_recording",
]

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


def save_recording(directory: Path, sid: str, pcm: bytes, *, channels: int = 1) -> Path:
    """Write ``pcm`` as ``directory/sid.wav`` (8 kHz PCM16; ``channels`` interleaved)
    atomically; return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{sid}.wav"
    partial = directory / f".{sid}.wav.partial"
    if channels == 1:
        write_wav(partial, pcm, sample_rate=SAMPLE_RATE)
    else:
        with wave.open(str(partial), "wb") as out:
            out.setnchannels(channels)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(pcm)
    partial.replace(path)  # a crash never leaves a half-written file under the served name
    return path


class AudioTap(Protocol):
    """Hears a whole call: side ``a`` is the far end, ``b`` what callxml sends it (during a
    ``<Dial>``, the bridged party); ``now`` on the call's clock."""

    def audio(self, side: str, pcm: bytes, now: float) -> None: ...


class Taps:
    """Several taps as one: a call can be recorded (``Record=true``) and screened for an
    answering machine (``AsyncAmd``) at once."""

    def __init__(self, *taps: AudioTap) -> None:
        self.taps = taps

    def audio(self, side: str, pcm: bytes, now: float) -> None:
        for tap in self.taps:
            tap.audio(side, pcm, now)


class BridgeRecorder:
    """``<Dial record>``: the two sides of a bridge, each placed on the bridge's clock.

    Fed decoded 20 ms frames of side ``a`` (the caller) and ``b`` (the called party) with
    ``now``; a side that falls behind (silence suppression, loss) is padded with silence, so
    the two stay aligned. :meth:`result` gives mono (mixed) or dual (``a`` left, ``b`` right)
    PCM16, with only the sides ``track`` asks for (``both``, ``inbound`` = ``a``, ``outbound``
    = ``b``). Bounded by :data:`MAX_SECONDS`.
    """

    def __init__(self, started: float, *, dual: bool = False, track: str = "both") -> None:
        self.started = started
        self.dual = dual
        self.track = track
        self._sides = {"a": bytearray(), "b": bytearray()}
        self._limit = int(MAX_SECONDS * SAMPLE_RATE) * 2

    def audio(self, side: str, pcm: bytes, now: float) -> None:
        buffer = self._sides[side]
        due = round((now - self.started) * SAMPLE_RATE) * 2 - len(pcm)
        if due - len(buffer) > len(pcm):  # more than a frame behind: silence was not sent
            buffer.extend(bytes(min(due, self._limit) - len(buffer)))
        buffer.extend(pcm[: max(0, self._limit - len(buffer))])

    def result(self, now: float) -> tuple[bytes, int, int]:
        """(PCM16 bytes, channels, whole seconds) of the recording up to ``now``."""
        length = max(len(self._sides["a"]), len(self._sides["b"]))
        length = max(length, min(round((now - self.started) * SAMPLE_RATE) * 2, self._limit))
        length -= length % 2
        a, b = (
            np.frombuffer(bytes(self._sides[s].ljust(length, b"\0")[:length]), dtype="<i2")
            for s in ("a", "b")
        )
        if self.track == "inbound":
            b = np.zeros_like(b)
        elif self.track == "outbound":
            a = np.zeros_like(a)
        seconds = round(length / 2 / SAMPLE_RATE)
        if self.dual:
            return np.column_stack((a, b)).astype("<i2").tobytes(), 2, seconds
        mixed = np.clip(a.astype(np.int32) + b.astype(np.int32), -32768, 32767)
        return mixed.astype("<i2").tobytes(), 1, seconds
