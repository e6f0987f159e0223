"""Fakes at the runtime's seams: an in-memory call leg, audio source and call log.

The fake leg records what the driver did to it (answered, played, sent digits, hung up) and lets
a test act as the caller: press keys, speak frames, hang up. Playback takes no time unless the
test asks for it, so driver tests never wait on wall time for prompts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from callxml.errors import MediaError


class FakeLeg:
    def __init__(
        self,
        *,
        sid: str = "CAfake",
        answered: bool = False,
        on_play: Callable[[FakeLeg, bytes], Awaitable[None]] | None = None,
        play_seconds: float = 0.0,
    ) -> None:
        self.sid = sid
        self.answered = answered
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.on_play = on_play
        self.play_seconds = play_seconds
        self.played: list[bytes] = []
        self.digits_sent: list[str] = []
        self.rejected: tuple[int, str] | None = None
        self.hung_up: str | None = None
        self.stops = 0
        self.on_audio: Callable[[bytes], None] | None = None
        self.on_digit: Callable[[str], None] | None = None
        self.answer_count = 0

    async def answer(self) -> None:
        self.answer_count += 1
        self.answered = True

    async def reject(self, status: int, reason: str, *, warning: str | None = None) -> None:
        self.rejected = (status, reason)
        self.end_reason = f"rejected {status}"
        self.ended.set()

    async def hangup(self, reason: str = "") -> None:
        self.hung_up = reason
        self.end_reason = reason
        self.ended.set()

    async def play(self, pcm: bytes) -> None:
        self.played.append(pcm)
        if self.on_play is not None:
            await self.on_play(self, pcm)
        await asyncio.sleep(self.play_seconds)

    def stop_playing(self) -> None:
        self.stops += 1

    async def send_digits(self, digits: str) -> None:
        self.digits_sent.append(digits)

    def set_consumer(
        self,
        on_audio: Callable[[bytes], None] | None,
        on_digit: Callable[[str], None] | None,
    ) -> None:
        self.on_audio = on_audio
        self.on_digit = on_digit

    # -- the caller -------------------------------------------------------------------------------

    def press(self, keys: str) -> None:
        assert self.on_digit is not None, "nobody listens for keys"
        for key in keys:
            self.on_digit(key)

    def speak(self, frames: int, level: int = 8000) -> None:
        assert self.on_audio is not None
        frame = int(level).to_bytes(2, "little", signed=True) * 160
        for _ in range(frames):
            self.on_audio(frame)

    def caller_hangs_up(self) -> None:
        self.end_reason = "caller hung up"
        self.ended.set()


class FakeAudio:
    """Speech is ``b"SAY:" + text``; URLs are ``b"PLAY:" + url``; URLs with "bad" fail."""

    def __init__(self) -> None:
        self.spoken: list[str] = []

    async def speech(self, text: str, *, language: str | None, voice: str | None) -> bytes:
        self.spoken.append(text)
        return b"SAY:" + text.encode()

    async def url(self, url: str) -> bytes:
        if "bad" in url:
            raise MediaError(f"{url}: cannot decode audio")
        return b"PLAY:" + url.encode()


class MemoryCallLog:
    def __init__(self, base_url: str = "http://engine.test") -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.statuses: list[tuple[str, dict[str, Any]]] = []
        self.recordings: list[tuple[str, Path, int]] = []
        self.base_url = base_url

    async def event(self, kind: str, data: Mapping[str, Any]) -> None:
        self.events.append((kind, dict(data)))

    async def status(self, status: str, **changes: Any) -> None:
        self.statuses.append((status, changes))

    async def recording(self, sid: str, path: Path, duration: int) -> str:
        self.recordings.append((sid, path, duration))
        return f"{self.base_url}/Recordings/{sid}"

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [data for k, data in self.events if k == kind]
