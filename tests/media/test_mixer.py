"""The conference mixer: minus-one sums, mute, hold, coaching, announcements, clipping."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callxml.errors import LocalProtocolError
from callxml.media.mixer import FRAME_SAMPLES, MAX_PARTICIPANTS, Mixer
from callxml.media.tone import goertzel_power, sine


def frame(value: int) -> bytes:
    return np.full(FRAME_SAMPLES, value, dtype="<i2").tobytes()


def level(pcm: bytes) -> int:
    samples = np.frombuffer(pcm, dtype="<i2")
    assert (samples == samples[0]).all()
    return int(samples[0])


def test_each_hears_the_others_not_itself() -> None:
    mixer = Mixer()
    for key in "abc":
        mixer.add(key)
    out = mixer.mix_frames([("a", frame(100)), ("b", frame(20)), ("c", frame(3))])
    assert {k: level(v) for k, v in out.items()} == {"a": 23, "b": 103, "c": 120}


def test_tones_cross_and_do_not_echo() -> None:
    """With real tones: each participant hears the other two's frequencies and not its own."""
    mixer = Mixer()
    tones = {"a": 400, "b": 1000, "c": 1600}
    for key in tones:
        mixer.add(key)
    pcm = {k: sine(f, 20, amplitude=0.2) for k, f in tones.items()}
    out = mixer.mix_frames(pcm.items())
    for key, heard in out.items():
        for other, hz in tones.items():
            share = goertzel_power(heard, hz)
            assert share > 0.3 if other != key else share < 0.01, (key, other, share)


def test_silent_muted_and_held_participants() -> None:
    mixer = Mixer()
    mixer.add("a")
    mixer.add("b", muted=True)
    mixer.add("c", on_hold=True)
    mixer.add("d")  # sends nothing this tick: silent
    out = mixer.mix_frames([("a", frame(10)), ("b", frame(500)), ("c", frame(7000))])
    assert set(out) == {"a", "b", "d"}  # hold: no mix (the room plays hold music instead)
    assert {k: level(v) for k, v in out.items()} == {"a": 0, "b": 10, "d": 10}
    mixer.participant("b").muted = False
    mixer.participant("c").on_hold = False
    out = mixer.mix_frames([("a", frame(10)), ("b", frame(500)), ("c", frame(7))])
    assert level(out["d"]) == 517 and level(out["c"]) == 510


def test_a_coach_is_heard_only_by_the_one_it_coaches() -> None:
    mixer = Mixer()
    mixer.add("agent")
    mixer.add("caller")
    mixer.add("supervisor", coach_of="agent")
    out = mixer.mix_frames([("agent", frame(1)), ("caller", frame(10)), ("supervisor", frame(100))])
    assert level(out["agent"]) == 110  # the caller and the whisper
    assert level(out["caller"]) == 1  # the agent only
    assert level(out["supervisor"]) == 11  # the coach hears everyone


def test_sums_saturate_instead_of_wrapping() -> None:
    mixer = Mixer()
    for key in range(4):
        mixer.add(key)
    out = mixer.mix_frames([(k, frame(30000)) for k in range(4)])
    assert all(level(v) == 32767 for v in out.values())
    out = mixer.mix_frames([(k, frame(-30000)) for k in range(4)])
    assert all(level(v) == -32768 for v in out.values())


def test_announcements_reach_everyone_once_over_their_length() -> None:
    mixer = Mixer()
    mixer.add("a")
    mixer.add("b", on_hold=True)
    mixer.announce(np.full(FRAME_SAMPLES * 2 + 10, 50, dtype="<i2").tobytes())
    levels = []
    for _ in range(4):
        out = mixer.mix()
        assert set(out) == {"a"}
        samples = np.frombuffer(out["a"], dtype="<i2")
        levels.append((int(samples[0]), int(samples[-1])))
    assert levels == [(50, 50), (50, 50), (50, 0), (0, 0)]


def test_bounds_and_odd_input() -> None:
    mixer = Mixer()
    mixer.add("a")
    with pytest.raises(LocalProtocolError):
        mixer.add("a")
    mixer.add("b")
    out = mixer.mix_frames([("a", b"\x01\x00" * 10), ("zz", frame(5))])  # short frame, stranger
    assert len(out["b"]) == 2 * FRAME_SAMPLES
    mixer.remove("a")
    assert "a" not in mixer and len(mixer) == 1
    full = Mixer()
    for key in range(MAX_PARTICIPANTS):
        full.add(key)
    with pytest.raises(LocalProtocolError):
        full.add("one more")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=12))
def test_minus_one_matches_a_reference_sum(levels: list[int]) -> None:
    mixer = Mixer()
    for key in range(len(levels)):
        mixer.add(key)
    out = mixer.mix_frames([(k, frame(v)) for k, v in enumerate(levels)])
    total = sum(levels)
    for key, value in enumerate(levels):
        assert level(out[key]) == max(-32768, min(32767, total - value))
