"""The conference mixer: every participant hears the sum of the others, never itself.

Sans-IO: fed one 20 ms frame of 8 kHz 16-bit PCM per participant per tick (:meth:`Mixer.push`),
it returns each listener's frame on :meth:`Mixer.mix`; whoever runs the conference owns the
20 ms clock, the codecs and the sockets. It knows nothing of RTP, SIP or webhooks.

What a listener hears (Twilio's conference semantics):

* everyone who is neither muted nor on hold, except itself ("minus one" — one sum for the room,
  minus each speaker's own frame, so the cost grows linearly with the participants);
* plus any *coach* whispering to it (``coach_of``): a coach is heard by that one participant
  only, and hears everyone;
* plus what is announced to the room (:meth:`announce`: beeps, ``announceUrl`` audio), once;
* nothing while on hold (the room plays hold music to it instead).

The sum is done in 32 bits and clipped to 16 (saturation, not wrap-around: a loud room distorts
instead of turning into noise). A participant that sent nothing for a tick counts as silent.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from callxml.errors import LocalProtocolError

__all__ = ["FRAME_SAMPLES", "Mixer", "Participant"]

#: 20 ms at 8 kHz.
FRAME_SAMPLES = 160
#: The most participants one mixer takes (Twilio's maxParticipants ceiling).
MAX_PARTICIPANTS = 250
_INT16 = np.dtype("<i2")


@dataclass
class Participant:
    """One listener/speaker of a room, as the mixer sees it."""

    key: Hashable
    muted: bool = False
    on_hold: bool = False
    coach_of: Hashable | None = None


class Mixer:
    """One room's mixer. ``push`` frames, then ``mix()`` once per 20 ms tick."""

    def __init__(self, frame_samples: int = FRAME_SAMPLES) -> None:
        self.frame_samples = frame_samples
        self._frame_octets = 2 * frame_samples
        self._participants: dict[Hashable, Participant] = {}
        self._frames: dict[Hashable, bytes] = {}
        self._announcements: list[npt.NDArray[np.int32]] = []
        self._silence = bytes(self._frame_octets)

    # -- membership ------------------------------------------------------------------------

    def add(
        self,
        key: Hashable,
        *,
        muted: bool = False,
        on_hold: bool = False,
        coach_of: Hashable | None = None,
    ) -> Participant:
        if key in self._participants:
            raise LocalProtocolError(f"participant {key!r} is already in the room")
        if len(self._participants) >= MAX_PARTICIPANTS:
            raise LocalProtocolError(f"a room holds at most {MAX_PARTICIPANTS} participants")
        participant = Participant(key, muted, on_hold, coach_of)
        self._participants[key] = participant
        return participant

    def remove(self, key: Hashable) -> None:
        self._participants.pop(key, None)
        self._frames.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._participants

    def __len__(self) -> int:
        return len(self._participants)

    def participant(self, key: Hashable) -> Participant:
        try:
            return self._participants[key]
        except KeyError:
            raise LocalProtocolError(f"no participant {key!r}") from None

    @property
    def keys(self) -> list[Hashable]:
        return list(self._participants)

    # -- audio -----------------------------------------------------------------------------

    def push(self, key: Hashable, pcm: bytes) -> None:
        """The participant's frame for this tick (a later push in the same tick replaces it).
        Frames of the wrong length are padded or cut: a peer's odd packet must not stop the
        room."""
        if key not in self._participants:
            return
        size = self._frame_octets
        if len(pcm) != size:
            pcm = pcm[:size].ljust(size, b"\x00")
        self._frames[key] = pcm

    def announce(self, pcm: bytes) -> None:
        """Play ``pcm`` (8 kHz 16-bit) to everyone not on hold, over as many ticks as it lasts,
        mixed over the conversation (beeps, ``announceUrl``)."""
        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype=_INT16).astype(np.int32)
        size = self.frame_samples
        for start in range(0, len(samples), size):
            chunk = samples[start : start + size]
            if len(chunk) < size:
                chunk = np.pad(chunk, (0, size - len(chunk)))
            self._announcements.append(chunk)

    def mix(self) -> dict[Hashable, bytes]:
        """One tick: each listener not on hold → its 20 ms frame. Consumes the pushed frames."""
        listeners = [p for p in self._participants.values() if not p.on_hold]
        frames, self._frames = self._frames, {}
        announcement = self._announcements.pop(0) if self._announcements else None
        if not listeners:
            return {}
        size = self.frame_samples
        speakers = [p for p in listeners if not p.muted and p.key in frames and p.coach_of is None]
        total = np.zeros(size, dtype=np.int32)
        if speakers:
            stacked = np.frombuffer(
                b"".join(frames[p.key] for p in speakers), dtype=_INT16
            ).reshape(len(speakers), size)
            own = stacked.astype(np.int32)
            total += own.sum(axis=0)
        else:
            own = np.zeros((0, size), dtype=np.int32)
        if announcement is not None:
            total += announcement
        whispers: dict[Hashable, npt.NDArray[np.int32]] = {}
        for coach in listeners:
            if coach.coach_of is not None and not coach.muted and coach.key in frames:
                voice = np.frombuffer(frames[coach.key], dtype=_INT16).astype(np.int32)
                whispers[coach.coach_of] = whispers.get(coach.coach_of, 0) + voice
        out: dict[Hashable, bytes] = {}
        # Everyone who did not speak this tick hears the same room sum: computed once. The
        # speakers' minus-one frames are one array operation for all of them.
        plain = np.clip(total, -32768, 32767).astype(_INT16).tobytes()
        if speakers:
            heard = np.clip(total - own, -32768, 32767).astype(_INT16)
            for index, speaker in enumerate(speakers):
                out[speaker.key] = heard[index].tobytes()
        for listener in listeners:
            if listener.key not in out:
                out[listener.key] = plain
        for key, whisper in whispers.items():  # rare: a coach's voice for one listener
            if key in out:
                mixed = np.frombuffer(out[key], dtype=_INT16).astype(np.int32) + whisper
                out[key] = np.clip(mixed, -32768, 32767).astype(_INT16).tobytes()
        return out

    def mix_frames(self, frames: Iterable[tuple[Hashable, bytes]]) -> dict[Hashable, bytes]:
        """Push every ``(key, frame)`` and mix: one tick in one call (tests, benchmarks)."""
        for key, pcm in frames:
            self.push(key, pcm)
        return self.mix()
