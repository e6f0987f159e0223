"""Ringback tones by country (ITU-T E.180 and its national supplements), as 16-bit PCM at 8 kHz.

``<Dial ringTone="de">`` asks for the ringback a caller in Germany expects while the call rings
(425 Hz, 1 s on and 4 s off) instead of whatever the far end sends. This module owns the table of
tones — frequencies (summed, or one amplitude-modulated by another) and the on/off cadence —
under the country codes Twilio's ``ringTone`` takes (``gb`` is accepted for ``uk``), and turns
one into an endless run of 20 ms frames for :meth:`RtpEndpoint.play
<callxml.media.stream.RtpEndpoint.play>`. It does no I/O: one cadence cycle is computed once and
repeated.

The values are the national ones published with ITU-T Recommendation E.180 (the same ones PBXs
ship in their tone tables).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from itertools import cycle

import numpy as np

__all__ = ["RINGBACKS", "Ringback", "ringback_frames", "ringback_pcm"]

SAMPLE_RATE = 8000
#: Each component's peak, a fraction of full scale (two summed stay below -6 dBFS).
AMPLITUDE = 0.22


@dataclass(frozen=True, slots=True)
class Ringback:
    """One country's ringback: ``frequencies`` (Hz) summed, or the first amplitude-modulated at
    ``modulation`` Hz (E.180's ``f*m``); ``cadence`` the on/off milliseconds, repeated."""

    frequencies: tuple[float, ...]
    cadence: tuple[int, ...]
    modulation: float | None = None

    def __post_init__(self) -> None:
        if not self.frequencies or len(self.cadence) % 2 or min(self.cadence) <= 0:
            raise ValueError("a ringback needs frequencies and on/off pairs of milliseconds")

    @property
    def period_ms(self) -> int:
        return sum(self.cadence)


def _r(freqs: str, cadence: str) -> Ringback:
    """``"440+480"`` / ``"400*25"`` and ``"2000,4000"``, as the national tables write them."""
    if "*" in freqs:
        carrier, modulation = freqs.split("*")
        return Ringback((float(carrier),), _ms(cadence), float(modulation))
    return Ringback(tuple(float(f) for f in freqs.split("+")), _ms(cadence))


def _ms(cadence: str) -> tuple[int, ...]:
    return tuple(int(part) for part in cadence.split(","))


_TWO_BURSTS = "400,200,400,2000"

#: Ringback tone per ``ringTone`` country code (Twilio's list), plus ``gb`` for ``uk``.
RINGBACKS: dict[str, Ringback] = {
    "at": _r("420", "1000,5000"),
    "au": _r("413+438", _TWO_BURSTS),
    "be": _r("425", "1000,3000"),
    "bg": _r("425", "1000,4000"),
    "br": _r("425", "1000,4000"),
    "ch": _r("425", "1000,4000"),
    "cl": _r("400", "1000,3000"),
    "cn": _r("450", "1000,4000"),
    "cz": _r("425", "1000,4000"),
    "de": _r("425", "1000,4000"),
    "dk": _r("425", "1000,4000"),
    "ee": _r("425", "1000,4000"),
    "es": _r("425", "1500,3000"),
    "fi": _r("425", "1000,4000"),
    "fr": _r("440", "1500,3500"),
    "gb": _r("400+450", _TWO_BURSTS),
    "gr": _r("425", "1000,4000"),
    "hu": _r("425", "1250,3750"),
    "il": _r("414", "1000,3000"),
    "in": _r("400*25", _TWO_BURSTS),
    "it": _r("425", "1000,4000"),
    "jp": _r("400*16", "1000,2000"),
    "lt": _r("425", "1000,4000"),
    "mx": _r("425", "1000,4000"),
    "my": _r("425", _TWO_BURSTS),
    "nl": _r("425", "1000,4000"),
    "no": _r("425", "1000,4000"),
    "nz": _r("400+450", _TWO_BURSTS),
    "ph": _r("425+480", "1000,4000"),
    "pl": _r("425", "1000,4000"),
    "pt": _r("425", "1000,5000"),
    "ru": _r("425", "1000,4000"),
    "se": _r("425", "1000,5000"),
    "sg": _r("425*24", _TWO_BURSTS),
    "th": _r("420", "1000,5000"),
    "tw": _r("440+480", "1000,2000"),
    "uk": _r("400+450", _TWO_BURSTS),
    "us": _r("440+480", "2000,4000"),
    "us-old": _r("420*40", "2000,4000"),
    "ve": _r("425", "1000,4000"),
    "za": _r("400*33", _TWO_BURSTS),
}


def _tone(ringback: Ringback, samples: int) -> np.typing.NDArray[np.float64]:
    t = np.arange(samples, dtype=np.float64) / SAMPLE_RATE
    wave = sum(np.sin(2.0 * math.pi * f * t) for f in ringback.frequencies)
    assert isinstance(wave, np.ndarray)
    if ringback.modulation is not None:
        wave = wave * (0.55 + 0.45 * np.sin(2.0 * math.pi * ringback.modulation * t))
    return wave * AMPLITUDE


@cache
def _cycle(country: str) -> bytes:
    """One whole cadence cycle of ``country``'s ringback as PCM (computed once)."""
    ringback = RINGBACKS[country]
    parts: list[np.typing.NDArray[np.float64]] = []
    for index, duration in enumerate(ringback.cadence):
        samples = SAMPLE_RATE * duration // 1000
        parts.append(_tone(ringback, samples) if index % 2 == 0 else np.zeros(samples))
    pcm = np.round(np.concatenate(parts) * 32767.0).astype("<i2")
    return pcm.tobytes()


def ringback_pcm(country: str, seconds: float) -> bytes:
    """``seconds`` of ``country``'s ringback from the start of a cycle (for tests and files).
    Raises KeyError for a country not in :data:`RINGBACKS`."""
    one = _cycle(country)
    wanted = 2 * int(seconds * SAMPLE_RATE)
    repeats = -(-wanted // len(one))
    return (one * repeats)[:wanted]


def ringback_frames(country: str, *, frame_ms: int = 20) -> Iterator[bytes]:
    """``country``'s ringback as an endless run of ``frame_ms`` PCM frames (a source for
    :meth:`RtpEndpoint.play <callxml.media.stream.RtpEndpoint.play>`; stop it by stopping the
    playback). Raises KeyError for a country not in :data:`RINGBACKS`."""
    one = _cycle(country)
    step = 2 * SAMPLE_RATE * frame_ms // 1000
    frames = [one[i : i + step] for i in range(0, len(one) - step + 1, step)]
    return cycle(frames)
