"""Voice-like test audio for answering machine detection: what matters there is the shape of a
greeting (how long someone talks, then silence or a beep), and that no single band dominates a
frame, as in real speech (a pure sine would be taken for a beep)."""

from __future__ import annotations

import numpy as np

__all__ = ["silence", "speech"]


def speech(seconds: float, seed: int = 1) -> bytes:
    """PCM16 at 8 kHz: a 140 Hz glottal series with flat-ish harmonics, a 3 Hz syllable
    envelope and breath noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 8000)) / 8000
    voice = sum(np.sin(2 * np.pi * 140 * k * t + k) / np.sqrt(k) for k in range(1, 16))
    voice *= 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)
    voice += rng.normal(0, 0.3, t.size)
    voice = voice / np.abs(voice).max() * 8000
    return voice.astype("<i2").tobytes()


def silence(seconds: float) -> bytes:
    return bytes(int(seconds * 8000) * 2)
