"""Answering machine detection on a fake clock: each Twilio outcome from the shape of the audio
(a short hello, a long greeting, a beep, silence, a fax tone), and the timers reached without
any packet at all."""

from __future__ import annotations

import pytest

from callxml.media.amd import AmdSettings, MachineDetector, frame_kind
from callxml.media.tone import sine
from support.speech import silence, speech

FRAME = 320  # bytes: 20 ms of PCM16 at 8 kHz


def run(detector: MachineDetector, pcm: bytes, start: float) -> float:
    """Feed ``pcm`` frame by frame from ``start``; returns the time after the last frame."""
    now = start
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        now += 0.02
        if detector.audio(pcm[i : i + FRAME], now) is not None:
            break
    return now


def test_frames_are_told_apart() -> None:
    assert frame_kind(silence(0.02))[0] == "silence"
    assert frame_kind(speech(0.02))[0] == "voice"
    kind, hz = frame_kind(sine(1000, 20, amplitude=0.3))
    assert kind == "tone" and abs(hz - 1000) < 40


def test_a_short_hello_then_silence_is_a_human() -> None:
    amd = MachineDetector(AmdSettings(), 0.0)
    now = run(amd, silence(0.4) + speech(0.8) + silence(2.0), 0.0)
    assert amd.result == "human"
    assert 1.2 + 1.2 - 0.05 <= amd.duration <= now  # decided 1.2 s after the hello ended


def test_a_long_greeting_is_a_machine_as_soon_as_it_passes_the_threshold() -> None:
    amd = MachineDetector(AmdSettings(), 0.0)
    run(amd, silence(0.2) + speech(5.0), 0.0)
    assert amd.result == "machine_start"
    assert 2.55 <= amd.duration <= 2.75  # 0.2 s of silence + 2.4 s of speech


def test_detect_message_end_waits_for_the_beep() -> None:
    amd = MachineDetector(AmdSettings(detect_message_end=True), 0.0)
    pcm = speech(4.0) + silence(0.3) + sine(1400, 400, amplitude=0.4) + silence(2.0)
    run(amd, pcm, 0.0)
    assert amd.result == "machine_end_beep"
    assert 4.65 <= amd.duration <= 4.8  # the first frame after the beep


def test_detect_message_end_without_a_beep_ends_on_silence() -> None:
    amd = MachineDetector(AmdSettings(detect_message_end=True), 0.0)
    run(amd, speech(4.0) + silence(3.0), 0.0)
    assert amd.result == "machine_end_silence"
    assert 5.1 <= amd.duration <= 5.3


def test_a_greeting_that_never_ends_is_machine_end_other_at_the_timeout() -> None:
    amd = MachineDetector(AmdSettings(detect_message_end=True, timeout=6.0), 0.0)
    run(amd, speech(10.0), 0.0)
    assert amd.result == "machine_end_other" and 5.95 <= amd.duration <= 6.05


def test_nobody_speaking_is_unknown_after_the_silence_timeout() -> None:
    amd = MachineDetector(AmdSettings(silence_timeout=3.0), 0.0)
    run(amd, silence(5.0), 0.0)
    assert amd.result == "unknown" and 2.95 <= amd.duration <= 3.05


def test_timers_run_without_any_packet() -> None:
    """A far end that suppresses silence sends nothing: ``check`` alone decides."""
    amd = MachineDetector(AmdSettings(), 10.0)
    run(amd, speech(0.6), 10.0)
    assert amd.check(11.0) is None
    assert amd.check(11.9) == "human"
    quiet = MachineDetector(AmdSettings(), 0.0)
    assert quiet.check(4.9) is None and quiet.check(5.0) == "unknown"


def test_a_fax_calling_tone_is_a_fax() -> None:
    amd = MachineDetector(AmdSettings(), 0.0)
    run(amd, silence(0.5) + sine(1100, 500, amplitude=0.3) + silence(3.0), 0.0)
    assert amd.result == "fax"


@pytest.mark.parametrize("seed", range(5))
def test_speech_is_never_mistaken_for_a_tone(seed: int) -> None:
    pcm = speech(2.0, seed)
    kinds = {frame_kind(pcm[i : i + FRAME])[0] for i in range(0, len(pcm), FRAME)}
    assert kinds == {"voice"}
