"""Test tones: a sine generator and a Goertzel detector for 16-bit PCM at 8 kHz.

Owns producing a pure tone (the 1 kHz test tone or any other frequency) as 16-bit signed
little-endian PCM, and measuring how much of a signal's energy sits at one frequency (the
Goertzel algorithm, a single-bin DFT). Tests, the baresip tone test and ``callxml call`` use them
to prove that audio crossed a call; this module does no I/O.
"""

from __future__ import annotations

import math

import numpy as np

SAMPLE_RATE = 8000
MAX_SECONDS = 600  # bound generated audio


def sine(
    frequency: float,
    duration_ms: int,
    *,
    amplitude: float = 0.5,
    sample_rate: int = SAMPLE_RATE,
    phase_samples: int = 0,
) -> bytes:
    """A sine tone as 16-bit signed little-endian PCM; ``amplitude`` is a fraction of full scale.

    ``phase_samples`` continues a tone from a previous chunk without a click.
    """
    if not 0 < frequency < sample_rate / 2:
        raise ValueError("frequency must be between 0 and the Nyquist frequency")
    if not 0 <= duration_ms <= MAX_SECONDS * 1000:
        raise ValueError(f"duration must be 0..{MAX_SECONDS} s")
    if not 0.0 <= amplitude <= 1.0:
        raise ValueError("amplitude must be between 0 and 1")
    count = sample_rate * duration_ms // 1000
    n = np.arange(phase_samples, phase_samples + count, dtype=np.float64)
    wave = amplitude * 32767.0 * np.sin(2.0 * math.pi * frequency * n / sample_rate)
    return np.round(wave).astype("<i2").tobytes()


def sine_frames(
    frequency: float,
    duration_ms: int,
    *,
    frame_ms: int = 20,
    amplitude: float = 0.5,
    sample_rate: int = SAMPLE_RATE,
) -> list[bytes]:
    """The same tone cut into packet-sized frames (a source for :class:`RtpEndpoint.play`)."""
    pcm = sine(frequency, duration_ms, amplitude=amplitude, sample_rate=sample_rate)
    step = 2 * sample_rate * frame_ms // 1000
    return [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]


def goertzel_power(pcm: bytes, frequency: float, *, sample_rate: int = SAMPLE_RATE) -> float:
    """Relative power of ``frequency`` in ``pcm``: 1.0 for a pure tone, ~0 when it is absent.

    The Goertzel bin power is normalised by the signal's total energy (Parseval), so the result
    does not depend on loudness or length; silence gives 0.0.
    """
    if len(pcm) % 2:
        raise ValueError("16-bit PCM must have an even number of octets")
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    n = len(x)
    energy = float(np.dot(x, x))
    if n == 0 or energy == 0.0:
        return 0.0
    coeff = 2.0 * math.cos(2.0 * math.pi * frequency / sample_rate)
    s1 = s2 = 0.0
    for sample in x.tolist():
        s0 = sample + coeff * s1 - s2
        s2, s1 = s1, s0
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    # A pure sine of N samples puts N/2 * energy into |X(k)|^2 over the positive bin.
    return min(1.0, 2.0 * power / (n * energy))
