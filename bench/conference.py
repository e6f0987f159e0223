"""Conference mixing cost: CPU per participant-frame for rooms of 3, 10 and 50 participants.

Each round mixes the same frames two ways in the same process, interleaved so that the shared,
noisy machine treats both alike: callxml's :class:`~callxml.media.mixer.Mixer` (minus-one sums,
mute/hold/coach rules, saturation, one output frame per listener), and a reference that only
sums the frames with numpy (the least any mixer must do). It prints the CPU microseconds per
participant-frame, the ratio mixer/reference, and what that means for capacity: participants one
core mixes in real time (50 frames a second each). Goal (issue 12): >= 500 participants per
core in total.

    python bench/conference.py [--rounds 3] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from callxml.media.mixer import FRAME_SAMPLES, Mixer

SIZES = (3, 10, 50)
GOAL_PARTICIPANTS = 500


def _frames(count: int) -> list[bytes]:
    rng = np.random.default_rng(count)
    return [
        rng.integers(-8000, 8000, FRAME_SAMPLES, dtype=np.int16).astype("<i2").tobytes()
        for _ in range(count)
    ]


def _cpu_per_tick(run: object, seconds: float) -> float:
    """CPU seconds per call of ``run`` over about ``seconds`` of CPU."""
    assert callable(run)
    calls = 0
    start = time.process_time()
    while True:
        for _ in range(50):
            run()
        calls += 50
        spent = time.process_time() - start
        if spent >= seconds:
            return spent / calls


def bench(size: int, seconds: float) -> tuple[float, float]:
    """(mixer, reference) CPU seconds per participant-frame for a room of ``size``."""
    frames = _frames(size)
    mixer = Mixer()
    for key in range(size):
        mixer.add(key)
    pairs = list(enumerate(frames))

    def with_mixer() -> None:
        mixer.mix_frames(pairs)

    def reference() -> None:
        stacked = np.frombuffer(b"".join(frames), dtype="<i2").reshape(size, FRAME_SAMPLES)
        stacked.astype(np.int32).sum(axis=0)

    ours = _cpu_per_tick(with_mixer, seconds / 2)
    theirs = _cpu_per_tick(reference, seconds / 2)
    return ours / size, theirs / size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per case")
    args = parser.parse_args()
    print(f"conference mixing, {args.rounds} rounds, CPU µs per participant-frame (median)")
    print(f"{'room':>5} {'mixer':>9} {'numpy sum':>10} {'ratio':>7} {'participants/core':>18}")
    capacities = []
    for size in SIZES:
        ours, theirs = [], []
        for _ in range(max(1, args.rounds)):
            a, b = bench(size, args.seconds)
            ours.append(a)
            theirs.append(b)
        mixer_us, ref_us = statistics.median(ours) * 1e6, statistics.median(theirs) * 1e6
        capacity = 1e6 / (mixer_us * 50)
        capacities.append(capacity)
        print(
            f"{size:>5} {mixer_us:>9.2f} {ref_us:>10.2f} {mixer_us / ref_us:>7.2f} "
            f"{capacity:>18,.0f}"
        )
    worst = min(capacities)
    verdict = "met" if worst >= GOAL_PARTICIPANTS else "NOT met"
    print(
        f"goal: >= {GOAL_PARTICIPANTS} participants per core in real time: {verdict} "
        f"(worst room size gives {worst:,.0f})"
    )


if __name__ == "__main__":
    main()
