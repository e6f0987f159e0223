"""Ringback tones per country (ITU-T E.180): the table covers every ``ringTone`` value, and the
generated audio has the right frequencies and the right on/off cadence."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest

from callxml.markup.verbs import RING_TONES
from callxml.media.ringback import RINGBACKS, ringback_frames, ringback_pcm
from callxml.media.tone import goertzel_power


def test_every_ring_tone_value_has_a_ringback() -> None:
    assert set(RINGBACKS) == RING_TONES
    assert RINGBACKS["gb"] == RINGBACKS["uk"]


def windows(pcm: bytes, ms: int = 100) -> list[bytes]:
    step = 16 * ms
    return [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]


def on_off(pcm: bytes) -> str:
    """``#`` for a 100 ms window with sound, ``.`` for silence."""
    return "".join(
        "#" if np.abs(np.frombuffer(w, "<i2")).max() > 1000 else "." for w in windows(pcm)
    )


@pytest.mark.parametrize(
    ("country", "cadence", "frequencies"),
    [
        ("us", "#" * 20 + "." * 40, (440, 480)),
        ("gb", "####..####" + "." * 20, (400, 450)),
        ("de", "#" * 10 + "." * 40, (425,)),
        ("fr", "#" * 15 + "." * 35, (440,)),
        ("es", "#" * 15 + "." * 30, (425,)),
        ("jp", "#" * 10 + "." * 20, (384, 400, 416)),  # 400 Hz modulated at 16 Hz
    ],
)
def test_cadence_and_frequencies(country: str, cadence: str, frequencies: tuple[int, ...]) -> None:
    period = len(cadence) / 10
    pcm = ringback_pcm(country, 2 * period)
    assert on_off(pcm) == cadence * 2
    burst = windows(pcm)[0] + windows(pcm)[1]
    total = sum(goertzel_power(burst, f) for f in frequencies)
    assert total > 0.8, (country, total)
    assert goertzel_power(burst, 1000) < 0.01


def test_frames_repeat_the_cycle_forever_in_20_ms() -> None:
    frames = list(islice(ringback_frames("de"), 260))  # 5.2 s: one 5 s cycle and a bit
    assert {len(f) for f in frames} == {320}
    assert frames[250] == frames[0] and frames[0] != frames[60]
    assert b"".join(frames[:250]) == ringback_pcm("de", 5)
    with pytest.raises(KeyError):
        ringback_frames("xx")
