"""Answering machine detection: who picked up an outbound call, from the first seconds of audio.

A Twilio app that calls people out (reminders, campaigns) asks ``MachineDetection`` to learn
whether a person or a voicemail answered, so it can talk to the one and leave a message on the
other. The cue is the shape of the greeting, not its words: a person answers with a short
"Hello?" and waits; a machine talks on ("Hi, you've reached ... leave a message after the
tone") and ends in a beep or silence. :class:`MachineDetector` applies Twilio's documented
knobs to that shape:

* speech longer than ``speech_threshold`` (Twilio's ``MachineDetectionSpeechThreshold``,
  default 2.4 s) is a machine; an utterance that ends — silence for ``speech_end_threshold``
  (default 1.2 s) — before that is a person;
* no speech at all for ``silence_timeout`` (default 5 s) is ``unknown``, as is reaching
  ``timeout`` (default 30 s) undecided;
* ``detect_message_end`` (``DetectMessageEnd``) waits, once a machine is known, for the end of
  its greeting: a beep (``machine_end_beep``), silence (``machine_end_silence``) or the timeout
  (``machine_end_other``), so the app's message lands after the tone;
* a fax's calling tone (CNG, 1100 Hz, ITU-T T.30) is ``fax``.

Sans-IO: fed 20 ms PCM frames with ``now`` (:meth:`MachineDetector.audio`) and asked at any
time (:meth:`MachineDetector.check`), so a far end that sends no packets at all (silence
suppression) still reaches its timeouts, and every rule is tested on a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ANSWERED_BY", "AmdSettings", "MachineDetector", "frame_kind"]

#: Every ``AnsweredBy`` value the detector gives.
ANSWERED_BY = (
    "human",
    "machine_start",
    "machine_end_beep",
    "machine_end_silence",
    "machine_end_other",
    "fax",
    "unknown",
)
SAMPLE_RATE = 8000
#: A frame louder than this RMS (about -36 dBFS) counts as voice: above a quiet line's noise,
#: below soft speech.
VOICE_RMS = 500.0
#: A frame whose energy sits this much within one narrow band is a tone (a beep, a fax CNG).
TONE_PURITY = 0.8
#: The shortest beep: shorter tonal bits are parts of a voice.
BEEP_SECONDS = 0.12
#: The shortest CNG burst taken as a fax (the tone lasts 0.5 s).
FAX_SECONDS = 0.3
FAX_HZ = (1050.0, 1150.0)
BEEP_HZ = (300.0, 3000.0)


@dataclass(frozen=True, slots=True)
class AmdSettings:
    """Twilio's ``MachineDetection*`` parameters, in seconds."""

    detect_message_end: bool = False
    timeout: float = 30.0
    speech_threshold: float = 2.4
    speech_end_threshold: float = 1.2
    silence_timeout: float = 5.0

    @classmethod
    def from_twilio(
        cls, mode: str, timeout: int, speech_ms: int, speech_end_ms: int, silence_ms: int
    ) -> AmdSettings:
        """From Twilio's units (``MachineDetection`` mode, the timeout in s, the rest in ms),
        as both the REST parameters and the ``<Number>``/``<Sip>`` attributes give them."""
        return cls(
            detect_message_end=mode == "DetectMessageEnd",
            timeout=float(timeout),
            speech_threshold=speech_ms / 1000,
            speech_end_threshold=speech_end_ms / 1000,
            silence_timeout=silence_ms / 1000,
        )


def frame_kind(pcm: bytes) -> tuple[str, float]:
    """``("silence" | "voice" | "tone", dominant Hz)`` for one PCM16 frame.

    A tone has most of its energy in the strongest frequency bin and its two neighbours (a
    voice spreads over harmonics and formants)."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return "silence", 0.0
    rms = float(np.sqrt(np.mean(samples * samples)))
    if rms < VOICE_RMS:
        return "silence", 0.0
    window = samples * np.hanning(samples.size)
    power = np.abs(np.fft.rfft(window, n=max(256, samples.size))) ** 2
    power[0] = 0.0
    peak = int(np.argmax(power))
    total = float(power.sum())
    near = float(power[max(0, peak - 2) : peak + 3].sum())
    hz = peak * SAMPLE_RATE / max(256, samples.size)
    if total > 0 and near / total >= TONE_PURITY:
        return "tone", hz
    return "voice", hz


class MachineDetector:
    """One call's detection; ``result`` is the ``AnsweredBy`` once known, ``duration`` the
    seconds it took (Twilio's ``MachineDetectionDuration``, in ms on the wire)."""

    def __init__(self, settings: AmdSettings, now: float) -> None:
        self.settings = settings
        self.started = now
        self.result: str | None = None
        self.duration = 0.0
        self._speech_start: float | None = None  # the current utterance
        self._last_voice: float | None = None
        self._machine_at: float | None = None  # DetectMessageEnd: waiting for the end
        self._tone_start: float | None = None
        self._tone_hz = 0.0
        self._tone_end: float | None = None

    @property
    def done(self) -> bool:
        return self.result is not None

    def audio(self, pcm: bytes, now: float) -> str | None:
        """Take one frame heard at ``now``; returns the result when this frame decides it."""
        if self.result is not None:
            return self.result
        kind, hz = frame_kind(pcm)
        if kind == "tone":
            if self._tone_start is None or abs(hz - self._tone_hz) > 60:
                self._tone_start, self._tone_hz = now, hz
            self._tone_end = now
            held = now - self._tone_start
            if FAX_HZ[0] <= hz <= FAX_HZ[1] and held >= FAX_SECONDS and self._machine_at is None:
                return self._decide("fax", now)
        elif self._tone_start is not None:
            beep = self._beep_ended()
            self._tone_start = None
            if beep and self._machine_at is not None:
                return self._decide("machine_end_beep", now)
        if kind != "silence":
            if self._speech_start is None:
                self._speech_start = now
            self._last_voice = now
        return self.check(now)

    def check(self, now: float) -> str | None:
        """Apply the timers at ``now`` (call it every 100 ms or so, audio or not)."""
        if self.result is not None:
            return self.result
        s = self.settings
        elapsed = now - self.started
        if self._machine_at is not None:  # a machine: waiting for the end of its greeting
            if self._last_voice is not None and now - self._last_voice >= s.speech_end_threshold:
                if self._tone_start is not None and self._beep_ended():
                    return self._decide("machine_end_beep", now)
                return self._decide("machine_end_silence", now)
            if elapsed >= s.timeout:
                return self._decide("machine_end_other", now)
            return None
        if self._speech_start is not None and self._last_voice is not None:
            if self._last_voice - self._speech_start >= s.speech_threshold:
                if not s.detect_message_end:
                    return self._decide("machine_start", now)
                self._machine_at = now
                return None
            if now - self._last_voice >= s.speech_end_threshold:
                return self._decide("human", now)
        elif elapsed >= s.silence_timeout:
            return self._decide("unknown", now)
        if elapsed >= s.timeout:
            return self._decide("unknown", now)
        return None

    def _beep_ended(self) -> bool:
        """The tone that just stopped was long enough, and pitched, to be a beep."""
        if self._tone_start is None or self._tone_end is None:
            return False
        held = self._tone_end - self._tone_start
        return held >= BEEP_SECONDS and BEEP_HZ[0] <= self._tone_hz <= BEEP_HZ[1]

    def _decide(self, result: str, now: float) -> str:
        self.result = result
        self.duration = now - self.started
        return result
