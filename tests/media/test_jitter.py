"""The reorder buffer: ordering, wrap, duplicates, late and lost packets, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callxml.media.jitter import JitterBuffer


def test_in_order_passes_straight_through() -> None:
    jb: JitterBuffer[int] = JitterBuffer(3)
    assert [jb.push(s, s) for s in (10, 11, 12)] == [[10], [11], [12]]


def test_reorder_across_the_wrap() -> None:
    jb: JitterBuffer[int] = JitterBuffer(3)
    out: list[int] = []
    for seq in (65534, 0, 65535, 2, 1):
        out += jb.push(seq, seq)
    assert out == [65534, 65535, 0, 1, 2]
    assert (jb.lost, jb.late, jb.duplicates) == (0, 0, 0)


def test_duplicate_and_late_packets_are_dropped() -> None:
    jb: JitterBuffer[int] = JitterBuffer(2)
    assert jb.push(1, 1) == [1]
    assert jb.push(3, 3) == []
    assert jb.push(3, 3) == []  # duplicate while buffered
    assert jb.push(4, 4) == []
    assert jb.push(5, 5) == [3, 4, 5]  # gave up on 2 after depth was exceeded
    assert jb.push(2, 2) == []  # too late now
    assert jb.push(1, 1) == []
    assert (jb.lost, jb.late, jb.duplicates) == (1, 2, 1)


def test_flush_and_resync_after_a_jump() -> None:
    jb: JitterBuffer[int] = JitterBuffer(4)
    jb.push(100, 100)
    jb.push(102, 102)
    assert jb.push(40_000, 40_000) == [102, 40_000]  # the sender restarted its numbering
    assert jb.push(40_001, 40_001) == [40_001]
    jb.push(40_003, 40_003)
    assert jb.flush() == [40_003] and len(jb) == 0


def test_depth_is_bounded() -> None:
    with pytest.raises(ValueError):
        JitterBuffer(65)


@given(st.permutations(list(range(20))), st.integers(0, 0xFFFF))
def test_any_small_shuffle_comes_out_sorted(order: list[int], base: int) -> None:
    jb: JitterBuffer[int] = JitterBuffer(64)
    out: list[int] = []
    jb.push(base, -1)  # fix the start
    for n in order:
        out += jb.push((base + 1 + n) & 0xFFFF, n)
    out += jb.flush()
    assert out == list(range(20))
    assert len(jb) <= 64
