"""The playout of a bidirectional stream against a fake leg (the seam below RTP): the app's
audio plays in order, a mark is echoed only once the audio before it has played, ``clear``
drops what has not played (echoing its marks at once, as Twilio does) and the buffer is
bounded."""

from __future__ import annotations

import asyncio

from callxml.runtime.stream import MAX_PLAYOUT_OCTETS, _Playout
from support.fakes import FakeLeg
from support.waiting import until


async def test_marks_wait_for_the_audio_before_them() -> None:
    leg = FakeLeg(answered=True, play_seconds=0.2)
    echoed: list[str] = []
    playout = _Playout(leg, echoed.append)
    task = asyncio.ensure_future(playout.run())
    try:
        assert playout.media(b"\x01\x00" * 800)
        playout.mark("one")
        assert playout.media(b"\x02\x00" * 800)
        playout.mark("two")
        playout.mark("three")  # no audio between: echoed right after "two"
        await asyncio.sleep(0.1)
        assert echoed == []  # the first chunk is still playing
        await until(lambda: echoed == ["one", "two", "three"], 5)
        assert leg.played == [b"\x01\x00" * 800, b"\x02\x00" * 800]
    finally:
        task.cancel()


async def test_clear_drops_unplayed_audio_and_echoes_its_marks() -> None:
    leg = FakeLeg(answered=True, play_seconds=5.0)
    echoed: list[str] = []
    playout = _Playout(leg, echoed.append)
    task = asyncio.ensure_future(playout.run())
    try:
        playout.media(b"\x01\x00" * 8000)  # one second: playing now
        playout.mark("after-first")
        playout.media(b"\x02\x00" * 8000)
        playout.mark("after-second")
        await until(lambda: len(leg.played) == 1, 5)
        playout.clear()
        assert echoed == ["after-first", "after-second"]
        playout.media(b"\x03\x00" * 160)
        await until(lambda: len(leg.played) == 2, 5)
        assert leg.played[1] == b"\x03\x00" * 160  # the cleared second never played
    finally:
        task.cancel()


def test_the_playout_buffer_is_bounded() -> None:
    playout = _Playout(FakeLeg(answered=True), lambda name: None)
    assert playout.media(bytes(MAX_PLAYOUT_OCTETS))
    assert not playout.media(b"\x00\x00")
