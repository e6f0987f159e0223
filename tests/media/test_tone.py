"""Tone generator and Goertzel detector."""

from __future__ import annotations

import os

import pytest

from callxml.media.g711 import ulaw_decode, ulaw_encode
from callxml.media.tone import goertzel_power, sine, sine_frames


def test_pure_tone_is_detected_at_its_frequency_only() -> None:
    tone = sine(1000, 200)
    assert len(tone) == 2 * 1600
    assert goertzel_power(tone, 1000) > 0.99
    assert goertzel_power(tone, 1500) < 0.001
    assert goertzel_power(sine(440, 200), 1000) < 0.001


def test_detection_survives_g711_and_mixing() -> None:
    tone = ulaw_decode(ulaw_encode(sine(1000, 200, amplitude=0.3)))
    assert goertzel_power(tone, 1000) > 0.95
    noise = os.urandom(3200)
    assert goertzel_power(noise, 1000) < 0.05
    assert goertzel_power(bytes(3200), 1000) == 0.0 == goertzel_power(b"", 1000)


def test_frames_and_arguments() -> None:
    frames = sine_frames(1000, 100)
    assert [len(f) for f in frames] == [320] * 5
    assert b"".join(frames) == sine(1000, 100)
    with pytest.raises(ValueError):
        sine(5000, 100)
    with pytest.raises(ValueError):
        sine(1000, 100, amplitude=2)
    with pytest.raises(ValueError):
        goertzel_power(b"\x00", 1000)
