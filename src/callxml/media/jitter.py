"""A small reorder buffer for received RTP, keyed by sequence number (RFC 3550 §5.1, App. A.1).

Owns putting packets back in order across the 16-bit sequence wrap, dropping duplicates and
packets that arrive after their slot was played or skipped ("late"), and giving up on a missing
packet once ``depth`` later packets are waiting ("lost"). It counts in packets, not time: the
stream's packet interval turns depth into delay (depth 3 at 20 ms ≈ 60 ms at most).

Sans-IO and generic over the item type; it never looks at a clock or the payload.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

MAX_DEPTH = 64
_RESYNC_JUMP = 3000  # RFC 3550 App. A.1 MAX_DROPOUT: treat bigger jumps as a restarted sender


class JitterBuffer(Generic[T]):
    """Put items back in sequence order; return what is ready after each :meth:`push`."""

    __slots__ = ("_buffer", "_next", "delivered", "depth", "duplicates", "late", "lost")

    def __init__(self, depth: int = 3) -> None:
        if not 0 <= depth <= MAX_DEPTH:
            raise ValueError(f"jitter buffer depth must be 0..{MAX_DEPTH}")
        self.depth = depth
        self._buffer: dict[int, T] = {}
        self._next: int | None = None  # extended sequence number expected next
        self.late = 0
        self.duplicates = 0
        self.lost = 0
        self.delivered = 0

    def push(self, sequence_number: int, item: T) -> list[T]:
        """Add one packet's item; return the items now ready, in order (maybe none)."""
        if self._next is None:
            self._next = sequence_number
        delta = (sequence_number - self._next) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        if delta < -_RESYNC_JUMP or delta > _RESYNC_JUMP:
            # The sender restarted or jumped: play what we hold, then follow the new numbering.
            ready = self.flush()
            self._next = sequence_number
            return ready + self.push(sequence_number, item)
        if delta < 0:
            self.late += 1
            return []
        ext = self._next + delta
        if ext in self._buffer:
            self.duplicates += 1
            return []
        self._buffer[ext] = item
        return self._drain()

    def _drain(self) -> list[T]:
        assert self._next is not None
        ready: list[T] = []
        buffer = self._buffer
        while True:
            while self._next in buffer:
                ready.append(buffer.pop(self._next))
                self._next += 1
            if len(buffer) <= self.depth:
                break
            first = min(buffer)
            self.lost += first - self._next
            self._next = first
        self.delivered += len(ready)
        return ready

    def flush(self) -> list[T]:
        """Give up on every gap and return all buffered items in order (end of stream)."""
        if not self._buffer:
            return []
        assert self._next is not None
        ready: list[T] = []
        for ext in sorted(self._buffer):
            self.lost += ext - self._next
            ready.append(self._buffer[ext])
            self._next = ext + 1
        self._buffer.clear()
        self.delivered += len(ready)
        return ready

    def __len__(self) -> int:
        return len(self._buffer)
