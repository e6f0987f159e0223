"""Parts of the engine's rooms that need no call: speech detection across the drift between a
leg's packets and the room's clock, the trim of a room's recording, the looping wait audio."""

from __future__ import annotations

import asyncio

from callxml.engine import conference
from callxml.engine.conference import SPEECH_STOP, Participant, _fixed, _Loop, _trim
from callxml.media.tone import sine

TONE = sine(1200, 20, amplitude=0.3)
QUIET = bytes(320)


def speech_state() -> Participant:
    participant = object.__new__(Participant)
    participant.muted = False
    participant.speaking = False
    participant._loud = participant._quiet = participant._missing = 0
    return participant


def test_speech_survives_ticks_without_a_frame() -> None:
    p = speech_state()
    changes = [p.speech(frame) for frame in [TONE, None, TONE, None, TONE, TONE] * 3]
    assert changes.count("start") == 1  # ticks without a frame say nothing
    changes = [p.speech(frame) for frame in [QUIET, None] * SPEECH_STOP]
    assert changes.count("stop") == 1
    p.speech(TONE), p.speech(TONE), p.speech(TONE)
    assert p.speaking
    assert "stop" in [p.speech(None) for _ in range(2 * SPEECH_STOP)]  # frames stopped coming


def test_muted_speech_is_not_speech() -> None:
    p = speech_state()
    p.muted = True
    assert [p.speech(TONE) for _ in range(10)] == [None] * 10


def test_trim_keeps_the_audible_part_with_a_margin() -> None:
    pcm = QUIET * 100 + TONE * 50 + QUIET * 100
    trimmed = _trim(pcm)
    assert len(trimmed) == (50 + 2 * 10) * 320
    assert _trim(QUIET * 10) == b""


async def test_the_wait_audio_loops_and_never_waits() -> None:
    loop = _Loop(_fixed(TONE * 2))
    assert loop.frame() == conference.SILENT_FRAME  # not loaded yet: silence, at once
    loop.start()
    await asyncio.sleep(0.01)
    frames = []
    for _ in range(6):  # one frame per tick, the loop running in between (as on a leg)
        frames.append(loop.frame())
        await asyncio.sleep(0.001)
    await loop.close()
    assert frames == [TONE] * 6  # the next round was loaded while this one played
