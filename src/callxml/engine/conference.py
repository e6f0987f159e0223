"""Conference rooms on the engine: ``<Dial><Conference>``, the mix, the events, REST's hold on them.

Owns the rooms of one engine (:class:`Conferences`): a room per account and friendly name while
anyone is in it, its record in the store (``init`` → ``in-progress`` → ``completed``), and for
each room one 20 ms clock (:class:`Room`) that takes a frame of every participant's audio,
mixes it with :class:`callxml.media.mixer.Mixer` (everyone hears everyone else, never itself;
muted participants are heard by no one, held ones hear hold music, a coach is heard by the one it
coaches) and hands each participant its frame. Participants are real call legs, plain RTP and
SRTP alike: each leg decodes and encodes its own media, the room only sees PCM.

Twilio's rules live here: ``startConferenceOnEnter`` (until someone who starts it joins, the
others hear ``waitUrl`` — a document of ``<Play>``/``<Say>``/``<Pause>``/``<Redirect>`` played in
a loop, or audio; a hold tone by default, silence when empty), ``endConferenceOnExit``, the
last one out ends it, ``beep``, ``muted``, ``coach``, ``maxParticipants``, ``record`` from the
start (the room's mix, trimmed if asked), ``hangupOnStar`` and ``timeLimit`` of the ``<Dial>``,
and the status callbacks of the first participant's ``statusCallback`` (conference-start/end,
participant-join/leave/mute/unmute/hold/unhold/speech-start/speech-stop/modify,
announcement-end), sent in order by one task per room, never holding up the mix.

Nothing here waits on a peer inside the clock: a participant's audio reaches the room through
a bounded deque (a late frame is dropped, a missing one is silence), and each leg pulls its
frame from another (its own 20 ms sender). Every room's task releases what it owns in
``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from callxml.audio import beep, silence
from callxml.engine.store import ConferenceRecord, Store
from callxml.errors import CallXmlError, MarkupError, MediaError, WebhookError
from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from callxml.interpreter import new_sid
from callxml.markup import verbs as v
from callxml.media.mixer import Mixer
from callxml.runtime.leg import CallLeg, Leg
from callxml.runtime.recorder import SILENCE_RMS, frame_rms, save_recording
from callxml.runtime.session import AudioSource
from callxml.webhooks.base import (
    BODY_TOO_LARGE,
    Fetcher,
    WebhookRequest,
    fetch_outcome,
    resolve_url,
)

__all__ = [
    "CALLBACK_EVENTS",
    "CallNotes",
    "Conferences",
    "Participant",
    "ParticipantInfo",
    "Room",
    "hold_tone",
]

log = logging.getLogger(__name__)

TICK = 0.02
FRAME_OCTETS = 320
SILENT_FRAME = bytes(FRAME_OCTETS)
#: Frames kept per participant between two ticks, each way (100 ms): beyond, the oldest go.
DEPTH = 5
#: Speech detection for participant-speech-start/stop: a frame louder than this (RMS), for
#: :data:`SPEECH_START` frames in a row, starts speech; :data:`SPEECH_STOP` quiet frames end it.
SPEECH_RMS = 600.0
SPEECH_START = 3
SPEECH_STOP = 30
#: Status callbacks of a room waiting to be sent; beyond, the newest are dropped (logged).
MAX_QUEUED_CALLBACKS = 1000
CALLBACK_TIMEOUT = 10.0
#: The longest wait document round (its audio, all loops together) and announcement.
MAX_ROUND_SECONDS = 600.0
MAX_WAIT_REDIRECTS = 5
#: A room records at most this long (Twilio's own limit for a recording).
MAX_RECORDING_SECONDS = 4 * 3600
#: The key of the room's recorder in the mixer: a silent listener that hears everyone.
RECORDER = "\0recorder"

#: ``statusCallbackEvent`` token -> the ``StatusCallbackEvent`` values it asks for.
CALLBACK_EVENTS: Mapping[str, tuple[str, ...]] = {
    "start": ("conference-start",),
    "end": ("conference-end",),
    "join": ("participant-join",),
    "leave": ("participant-leave",),
    "mute": ("participant-mute", "participant-unmute"),
    "hold": ("participant-hold", "participant-unhold"),
    "speaker": ("participant-speech-start", "participant-speech-stop"),
    "modify": ("participant-modify",),
    "announcement": ("announcement-end",),
}
#: What is sent when a ``statusCallback`` is given without ``statusCallbackEvent``.
DEFAULT_EVENTS = ("start", "end")


def hold_tone(seconds: float = 6.0) -> bytes:
    """The default music on hold: a soft three-note chime, then quiet; loops cleanly."""
    rate = 8000
    notes = (523.25, 659.25, 783.99)
    pieces = []
    for frequency in notes:
        t = np.arange(int(rate * 0.4)) / rate
        envelope = np.minimum(1.0, t / 0.02) * np.exp(-3.0 * t)
        wave = 0.18 * envelope * np.sin(2 * math.pi * frequency * t)
        pieces.append((wave * 32767).astype("<i2").tobytes())
    chime = b"".join(pieces)
    return chime + silence(max(0.0, seconds - len(chime) / (2 * rate)))


class CallNotes(Protocol):
    """Where a participant's warnings go (its call's log) and where a recording is kept."""

    async def event(self, kind: str, data: Mapping[str, Any]) -> None: ...

    async def recording(
        self, sid: str, path: Path, duration: int, *, channels: int = 1, source: str = ...
    ) -> str: ...


# ------------------------------------------------------------------------- status callbacks


class _Callbacks:
    """One room's status callbacks, in order: :meth:`emit` queues (bounded) and returns at
    once; one task sends them, each signed by the account's fetcher and bounded in time."""

    def __init__(self, fetcher: Fetcher, url: str, method: str, events: tuple[str, ...]) -> None:
        self.fetcher = fetcher
        self.url = url
        self.method = method
        wanted = events or DEFAULT_EVENTS
        self.wanted = {name for token in wanted for name in CALLBACK_EVENTS.get(token, ())}
        self._queue: deque[WebhookRequest] = deque()
        self._ready = asyncio.Event()
        self._closing = False
        self.sequence = 0
        self.dropped = 0
        self._task = asyncio.get_running_loop().create_task(self._run(), name="conf-callbacks")

    def emit(self, event: str, params: list[tuple[str, str]]) -> None:
        if event not in self.wanted or self._closing:
            return
        if len(self._queue) >= MAX_QUEUED_CALLBACKS:
            self.dropped += 1
            return
        self.sequence += 1
        full = [
            *params,
            ("StatusCallbackEvent", event),
            ("SequenceNumber", str(self.sequence)),
            ("Timestamp", _rfc2822_now()),
        ]
        try:
            self._queue.append(WebhookRequest(self.url, self.method, tuple(full)))
        except CallXmlError:
            return
        self._ready.set()

    async def _run(self) -> None:
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._ready.clear()
                await self._ready.wait()
            request = self._queue.popleft()
            try:
                outcome = await asyncio.wait_for(
                    fetch_outcome(self.fetcher, request), CALLBACK_TIMEOUT
                )
            except TimeoutError:
                outcome = WebhookError("timed out", url=request.url)
            if isinstance(outcome, WebhookError):
                log.info("conference callback to %s failed: %s", request.url, outcome)

    async def close(self, timeout: float = CALLBACK_TIMEOUT) -> None:
        """Send what is queued (bounded), then stop."""
        self._closing = True
        self._ready.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except (TimeoutError, Exception):
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


# ------------------------------------------------------------------------------ wait audio


class _Loop:
    """An endless 20 ms frame source looping rounds of audio: :meth:`frame` never waits (it
    gives silence while the next round loads); ``load()`` makes each round (a wait document
    fetched again, or fixed audio)."""

    def __init__(self, load: Callable[[], Awaitable[bytes]] | None, *, repeat: bool = True) -> None:
        self._load = load
        self._repeat = repeat
        self._pcm = b""
        self._pos = 0
        self._next: bytes | None = None
        self._want = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.finished = asyncio.Event()  # a non-repeating loop played its one round

    def start(self) -> None:
        if self._load is not None and self._task is None:
            self._want.set()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="conf-audio")

    async def _run(self) -> None:
        assert self._load is not None
        while True:
            await self._want.wait()
            self._want.clear()
            try:
                pcm = await self._load()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken source must not break the room
                log.info("conference audio failed: %s", exc)
                pcm = silence(5.0)
            self._next = pcm or silence(1.0)
            if not self._repeat:
                return

    def frame(self) -> bytes:
        if self._pos >= len(self._pcm):
            if self._next is None:
                return SILENT_FRAME
            self._pcm, self._pos, self._next = self._next, 0, None
            if self._repeat:
                self._want.set()  # load the next round while this one plays
        chunk = self._pcm[self._pos : self._pos + FRAME_OCTETS]
        self._pos += FRAME_OCTETS
        if self._pos >= len(self._pcm) and not self._repeat:
            self.finished.set()
        return chunk.ljust(FRAME_OCTETS, b"\x00")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class _WaitDocument:
    """Loads one round of a ``waitUrl`` (or ``announceUrl``): the document's ``<Play>``,
    ``<Say>`` and ``<Pause>`` as audio, following ``<Redirect>``; or the audio the URL is."""

    def __init__(
        self,
        url: str,
        method: str,
        *,
        fetcher: Fetcher,
        audio: AudioSource,
        params: Callable[[], tuple[tuple[str, str], ...]],
        notes: CallNotes,
    ) -> None:
        self.url = url
        self.method = method
        self.fetcher = fetcher
        self.audio = audio
        self.params = params
        self.notes = notes
        self._audio_url: str | None = None  # the URL turned out to be audio: no document

    async def _warn(self, message: str) -> None:
        with contextlib.suppress(Exception):
            await self.notes.event("warning", {"message": message})

    async def __call__(self) -> bytes:
        if self._audio_url is not None:
            return await self.audio.url(self._audio_url)
        url, method = self.url, self.method
        for _ in range(MAX_WAIT_REDIRECTS + 1):
            try:
                request = WebhookRequest(url, method, self.params())
            except CallXmlError as exc:
                await self._warn(f"Conference waitUrl: {exc}")
                return silence(5.0)
            outcome = await fetch_outcome(self.fetcher, request)
            if isinstance(outcome, WebhookError):
                if outcome.error_code == BODY_TOO_LARGE:  # an audio file, not a document
                    self._audio_url = url
                    return await self.audio.url(url)
                await self._warn(f"Conference waitUrl {url}: {outcome}")
                return silence(5.0)
            if outcome.content_type.startswith("audio/"):
                self._audio_url = url
                return await self.audio.url(url)
            from callxml.markup.parser import parse_document  # lazily: lxml and the schema

            try:
                document = parse_document(outcome.body)
            except MarkupError as exc:
                await self._warn(f"Conference waitUrl {url}: {exc}")
                return silence(5.0)
            parts, redirect = await self._render(document.response.verbs, outcome.url or url)
            if redirect is None:
                return b"".join(parts)
            url, method = redirect
        await self._warn(f"Conference waitUrl: more than {MAX_WAIT_REDIRECTS} redirects")
        return silence(5.0)

    async def _render(
        self, verbs: tuple[v.Verb, ...], base: str
    ) -> tuple[list[bytes], tuple[str, str] | None]:
        parts: list[bytes] = []
        size = 0
        limit = int(MAX_ROUND_SECONDS * 16000)
        for verb in verbs:
            try:
                match verb:
                    case v.Say(text=text, language=language, voice=voice, loop=loop):
                        pcm = await self.audio.speech(text, language=language, voice=voice)
                        repeat = loop
                    case v.Play(url=str(audio_url), loop=loop):
                        pcm = await self.audio.url(resolve_url(base, audio_url))
                        repeat = loop
                    case v.Pause(length=length):
                        pcm, repeat = silence(length), 1
                    case v.Redirect(url=target, method=method):
                        return parts, (resolve_url(base, target), method)
                    case _:
                        name = getattr(verb, "name", type(verb).__name__)
                        await self._warn(
                            f"Conference waitUrl: <{name}> is not played while waiting "
                            "(only <Play>, <Say>, <Pause>, <Redirect>)"
                        )
                        continue
            except MediaError as exc:
                await self._warn(f"Conference waitUrl: {exc}")
                continue
            for _ in range(max(1, repeat)):
                if size + len(pcm) > limit:
                    return parts, None
                parts.append(pcm)
                size += len(pcm)
        return parts, None


# ---------------------------------------------------------------------------- participants


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    """A participant as the REST API shows it."""

    call_sid: str
    conference_sid: str
    label: str | None
    muted: bool
    hold: bool
    coaching: bool
    call_sid_to_coach: str | None
    start_conference_on_enter: bool
    end_conference_on_exit: bool
    status: str
    date_created: float
    date_updated: float


class Participant:
    """One call in a room: its audio to and from the mix, its state, why it left."""

    def __init__(
        self,
        room: Room,
        noun: v.Conference,
        leg: CallLeg,
        *,
        call_sid: str,
        wait: _Loop,
        notes: CallNotes,
        hangup_on_star: bool,
        on_audio: Callable[[str, bytes], None] | None,
    ) -> None:
        self.room = room
        self.noun = noun
        self.leg = leg
        self.call_sid = call_sid
        self.label = noun.participant_label
        self.muted = noun.muted
        self.hold = False
        self.coach = noun.coach
        self.start_on_enter = noun.start_conference_on_enter
        self.end_on_exit = noun.end_conference_on_exit
        self.notes = notes
        self.hangup_on_star = hangup_on_star
        self.on_audio = on_audio
        self.inbound: deque[bytes] = deque(maxlen=DEPTH)
        self.outbound: deque[bytes] = deque(maxlen=DEPTH)
        self.wait = wait
        self.holding = _Loop(_fixed(hold_tone()))
        self.announcement: _Loop | None = None
        self.created = self.updated = _wall()
        self.joined_at = time.monotonic()
        self.removed = asyncio.Event()
        self.leave_reason = ""
        self.star = asyncio.Event()
        self.speaking = False
        self._loud = 0
        self._quiet = 0
        self._missing = 0

    def info(self) -> ParticipantInfo:
        return ParticipantInfo(
            call_sid=self.call_sid,
            conference_sid=self.room.sid,
            label=self.label,
            muted=self.muted,
            hold=self.hold,
            coaching=self.coach is not None,
            call_sid_to_coach=self.coach,
            start_conference_on_enter=self.start_on_enter,
            end_conference_on_exit=self.end_on_exit,
            status="connected",
            date_created=self.created,
            date_updated=self.updated,
        )

    # -- the leg's side ----------------------------------------------------------------------

    def heard(self, pcm: bytes) -> None:
        """A frame from the caller (the leg's consumer)."""
        self.inbound.append(pcm)
        if self.on_audio is not None:
            self.on_audio("a", pcm)

    def pressed(self, digit: str) -> None:
        if digit == "*" and self.hangup_on_star:
            self.star.set()

    def frames(self) -> Iterator[bytes]:
        """What the caller hears, one frame per call (the leg's sender pulls it every 20 ms):
        hold music when held, the wait audio until the room starts, else the mix; with an
        announcement on top."""
        while True:
            if self.hold:
                frame = self.holding.frame()
            elif not self.room.started:
                frame = self.wait.frame()
            else:
                frame = self.outbound.popleft() if self.outbound else SILENT_FRAME
            announcement = self.announcement
            if announcement is not None:
                frame = _add(frame, announcement.frame())
                if announcement.finished.is_set():
                    self.announcement = None
                    self.room.announced(self)
            if self.on_audio is not None:
                self.on_audio("b", frame)
            yield frame

    def speech(self, frame: bytes | None) -> str | None:
        """Follow the caller's voice: ``start``/``stop`` when speech starts or ends. A tick
        without a frame (the leg's packets and the room's clock drift) says nothing, unless
        frames stop coming altogether."""
        if frame is None:
            self._missing += 1
            if self._missing < SPEECH_STOP:
                return None
            loud = False
        else:
            self._missing = 0
            loud = frame_rms(frame) >= SPEECH_RMS and not self.muted
        if loud:
            self._loud += 1
            self._quiet = 0
            if not self.speaking and self._loud >= SPEECH_START:
                self.speaking = True
                return "start"
        else:
            self._loud = 0
            self._quiet += 1
            if self.speaking and self._quiet >= SPEECH_STOP:
                self.speaking = False
                return "stop"
        return None

    async def close(self) -> None:
        await self.holding.close()
        if self.announcement is not None:
            await self.announcement.close()


# ------------------------------------------------------------------------------------ rooms


class Room:
    """One live conference (see the module docstring)."""

    def __init__(
        self,
        owner: Conferences,
        record: ConferenceRecord,
        *,
        fetcher: Fetcher,
    ) -> None:
        self.owner = owner
        self.record = record
        self.sid = record.sid
        self.name = record.friendly_name
        self.account_sid = record.account_sid
        self.fetcher = fetcher
        self.mixer = Mixer()
        self.participants: dict[str, Participant] = {}
        self.started = False
        self.ended = asyncio.Event()
        self.callbacks: _Callbacks | None = None
        self._clock: asyncio.Task[None] | None = None
        self._recording: _RoomRecording | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- records and events -------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _update(self, **changes: Any) -> None:
        """Write the record (off the loop, in order: one writer per room)."""
        changes["date_updated"] = _wall()
        self.record = replace(self.record, **changes)
        self.owner._write(self.sid, changes)

    def _emit(self, event: str, participant: Participant | None = None, **extra: str) -> None:
        if self.callbacks is None:
            return
        params: list[tuple[str, str]] = [
            ("AccountSid", self.account_sid),
            ("ConferenceSid", self.sid),
            ("FriendlyName", self.name),
        ]
        if participant is not None:
            params += [
                ("CallSid", participant.call_sid),
                ("Muted", _bool(participant.muted)),
                ("Hold", _bool(participant.hold)),
                ("Coaching", _bool(participant.coach is not None)),
                ("EndConferenceOnExit", _bool(participant.end_on_exit)),
                ("StartConferenceOnEnter", _bool(participant.start_on_enter)),
            ]
            if participant.label:
                params.append(("ParticipantLabel", participant.label))
            if participant.coach:
                params.append(("CallSidToCoach", participant.coach))
        params += list(extra.items())
        self.callbacks.emit(event, params)

    # -- membership ---------------------------------------------------------------------------

    def add(self, participant: Participant) -> None:
        noun = participant.noun
        if self.callbacks is None and noun.status_callback:
            self.callbacks = _Callbacks(
                self.fetcher,
                noun.status_callback,
                noun.status_callback_method,
                noun.status_callback_event,
            )
        coach_of = participant.coach if participant.coach in self.participants else None
        if participant.coach is not None and coach_of is None:
            message = (
                f"Conference {self.name}: coach {participant.coach} is not in the room; "
                "joined as an ordinary participant"
            )
            self._spawn(participant.notes.event("warning", {"message": message}), "note")
            participant.coach = None
        self.mixer.add(participant.call_sid, muted=participant.muted, coach_of=coach_of)
        self.participants[participant.call_sid] = participant
        if not self.started:
            participant.wait.start()
        if self._clock is None:
            self._clock = asyncio.get_running_loop().create_task(
                self._run_clock(), name=f"conference-{self.sid}"
            )
        self._emit("participant-join", participant)
        if participant.start_on_enter and not self.started:
            self._start(participant)
        elif self.started and noun.beep in ("true", "onEnter"):
            self.mixer.announce(_BEEP)

    def _start(self, by: Participant) -> None:
        self.started = True
        self._update(status="in-progress")
        self._emit("conference-start")
        if by.noun.beep in ("true", "onEnter"):
            self.mixer.announce(_BEEP)
        for participant in self.participants.values():
            participant.outbound.clear()
        recorder = next(
            (p for p in self.participants.values() if p.noun.record == "record-from-start"),
            None,
        )
        if recorder is not None:
            self.record_from(recorder)

    def record_from(self, participant: Participant) -> None:
        """Record the room's mix from now, with ``participant``'s recording options."""
        if self._recording is not None:
            return
        try:
            self.mixer.add(RECORDER, muted=True)
        except CallXmlError:
            self._spawn(
                participant.notes.event(
                    "warning", {"message": "Conference: too many participants to record"}
                ),
                "note",
            )
            return
        self._recording = _RoomRecording(self, participant)
        self._recording.callback("in-progress")

    def remove(self, participant: Participant, reason: str) -> None:
        """``participant`` leaves (``reason`` is Twilio's wording); the room may end."""
        if self.participants.pop(participant.call_sid, None) is None:
            return
        participant.leave_reason = participant.leave_reason or reason
        participant.removed.set()
        self.mixer.remove(participant.call_sid)
        for other in self.participants.values():  # whoever it coached speaks to no one now
            if other.coach == participant.call_sid:
                other.coach = None
                self.mixer.participant(other.call_sid).coach_of = None
        self._emit("participant-leave", participant, Reason=participant.leave_reason)
        if participant.end_on_exit and self.started:
            self.end(
                "participant-with-end-conference-on-exit-left",
                by=participant,
                why="Participant with endConferenceOnExit left the conference",
            )
        elif not self.participants:
            self.end("last-participant-left", by=participant, why="Last participant left")
        elif self.started and participant.noun.beep in ("true", "onExit"):
            self.mixer.announce(_BEEP)

    def end(self, reason: str, *, by: Participant | None = None, why: str = "") -> None:
        """End the room for everyone: each participant's ``<Dial>`` ends."""
        if self.ended.is_set():
            return
        self.ended.set()
        self.owner._forget(self)
        changes: dict[str, Any] = {"status": "completed", "reason_conference_ended": reason}
        if by is not None:
            changes["call_sid_ending_conference"] = by.call_sid
        self._update(**changes)
        extra: dict[str, str] = {"ReasonConferenceEnded": reason, "Reason": why or reason}
        if by is not None:
            extra["CallSidEndingConference"] = by.call_sid
            if by.label:
                extra["ParticipantLabelEndingConference"] = by.label
        for participant in list(self.participants.values()):
            self.remove(participant, "Conference ended")
        self._emit("conference-end", None, **extra)
        self._spawn(self._close(), f"conference-close-{self.sid}")

    async def _close(self) -> None:
        clock, self._clock = self._clock, None
        if clock is not None:
            clock.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await clock
        if self._recording is not None:
            await self._recording.finish()
        if self.callbacks is not None:
            await self.callbacks.close()

    # -- REST ---------------------------------------------------------------------------------

    def participant(self, key: str) -> Participant | None:
        """By CallSid or by label."""
        found = self.participants.get(key)
        if found is not None:
            return found
        return next((p for p in self.participants.values() if p.label == key), None)

    def set_muted(self, participant: Participant, muted: bool) -> None:
        if participant.muted == muted:
            return
        participant.muted = muted
        participant.updated = _wall()
        self.mixer.participant(participant.call_sid).muted = muted
        self._emit("participant-mute" if muted else "participant-unmute", participant)

    def set_hold(self, participant: Participant, hold: bool) -> None:
        if participant.hold == hold:
            return
        participant.hold = hold
        participant.updated = _wall()
        self.mixer.participant(participant.call_sid).on_hold = hold
        if hold:
            participant.holding.start()
        self._emit("participant-hold" if hold else "participant-unhold", participant)

    def modified(self, participant: Participant) -> None:
        participant.updated = _wall()
        self._emit("participant-modify", participant)

    def announced(self, participant: Participant) -> None:
        self._emit("announcement-end", participant)

    # -- the clock ------------------------------------------------------------------------------

    async def _run_clock(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += TICK
            delay = deadline - loop.time()
            if delay < -0.2:  # far behind (a stalled loop): start the schedule again
                deadline = loop.time()
                delay = 0.0
            await asyncio.sleep(max(0.0, delay))
            try:
                self.tick()
            except Exception:  # a bug in one tick must not end the room
                log.exception("conference %s: tick failed", self.sid)

    def tick(self) -> None:
        """One 20 ms step: take each participant's frame, mix, hand each its own."""
        mixer = self.mixer
        callbacks = self.callbacks
        speech = callbacks is not None and "participant-speech-start" in callbacks.wanted
        for participant in list(self.participants.values()):
            frame = participant.inbound.popleft() if participant.inbound else None
            if self.started and frame is not None:
                mixer.push(participant.call_sid, frame)
            if speech:  # only measured when someone asked for speaker events
                change = participant.speech(frame)
                if change is not None:
                    self._emit(f"participant-speech-{change}", participant)
        if not self.started:
            return
        out = mixer.mix()
        for participant in self.participants.values():
            mixed = out.get(participant.call_sid)
            if mixed is not None:
                participant.outbound.append(mixed)
        if self._recording is not None:
            self._recording.write(out.get(RECORDER, SILENT_FRAME))


class _RoomRecording:
    """The room's mix from the start, written to a file as it goes (bounded), saved as a WAV
    on the call of the participant that asked for it, with its recordingStatusCallback."""

    def __init__(self, room: Room, participant: Participant) -> None:
        self.room = room
        self.participant = participant
        self.noun = participant.noun
        self.sid = new_sid("RE")
        directory = room.owner.recordings_dir
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f".{self.sid}.pcm"
        self._file = self.path.open("wb")
        self.frames = 0
        self._limit = MAX_RECORDING_SECONDS * 50

    def write(self, frame: bytes) -> None:
        if self._file.closed or self.frames >= self._limit:
            return
        self._file.write(frame)  # buffered: a syscall every few KB
        self.frames += 1

    def callback(self, status: str, extra: tuple[tuple[str, str], ...] = ()) -> None:
        url = self.noun.recording_status_callback
        if url is None or status not in self.noun.recording_status_callback_event:
            return
        params = (
            ("AccountSid", self.room.account_sid),
            ("ConferenceSid", self.room.sid),
            ("CallSid", self.participant.call_sid),
            ("RecordingSid", self.sid),
            ("RecordingStatus", status),
            ("RecordingSource", "Conference"),
            ("RecordingChannels", "1"),
            *extra,
        )
        try:
            request = WebhookRequest(url, self.noun.recording_status_callback_method, params)
        except CallXmlError:
            return

        async def send() -> None:
            await asyncio.wait_for(fetch_outcome(self.room.fetcher, request), CALLBACK_TIMEOUT)

        self.room._spawn(send(), "conference-recording-callback")

    async def finish(self) -> None:
        self._file.close()
        trim = self.noun.trim != "do-not-trim"
        try:
            pcm = await asyncio.to_thread(_read_and_drop, self.path, trim)
            seconds = round(len(pcm) / 16000)
            if seconds <= 0:
                self.callback("absent")
                return
            path = await asyncio.to_thread(
                save_recording, self.room.owner.recordings_dir, self.sid, pcm
            )
            url = await self.participant.notes.recording(
                self.sid, path, seconds, source="Conference"
            )
        except Exception:
            log.exception("conference %s: recording not saved", self.room.sid)
            return
        self.callback("completed", (("RecordingUrl", url), ("RecordingDuration", str(seconds))))


# --------------------------------------------------------------------------------- registry


class Conferences:
    """The engine's conference rooms (see the module docstring)."""

    def __init__(self, store: Store, audio: AudioSource, recordings_dir: Path) -> None:
        self.store = store
        self.audio = audio
        self.recordings_dir = recordings_dir
        self._rooms: dict[tuple[str, str], Room] = {}
        self._by_sid: dict[str, Room] = {}
        self._writes: asyncio.Future[Any] | None = None

    def live(self, sid: str) -> Room | None:
        return self._by_sid.get(sid)

    def live_by_name(self, account_sid: str, name: str) -> Room | None:
        return self._rooms.get((account_sid, name))

    def _forget(self, room: Room) -> None:
        self._rooms.pop((room.account_sid, room.name), None)
        self._by_sid.pop(room.sid, None)

    def _write(self, sid: str, changes: dict[str, Any]) -> None:
        """Apply ``changes`` to the record of ``sid`` after every write asked for before."""
        previous = self._writes

        async def in_turn() -> None:
            if previous is not None:
                with contextlib.suppress(BaseException):
                    await previous
            try:
                await asyncio.to_thread(self.store.update_conference, sid, **changes)
            except Exception:
                log.exception("conference %s: record not updated", sid)

        self._writes = asyncio.ensure_future(in_turn())

    async def flush(self) -> None:
        """Wait until the records are written (tests, shutdown)."""
        if self._writes is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writes)

    async def _room(self, account_sid: str, name: str, fetcher: Fetcher) -> Room:
        room = self._rooms.get((account_sid, name))
        if room is not None and not room.ended.is_set():
            return room
        now = _wall()
        record = ConferenceRecord(
            sid=new_sid("CF"),
            account_sid=account_sid,
            friendly_name=name,
            status="init",
            date_created=now,
            date_updated=now,
        )
        await asyncio.to_thread(self.store.create_conference, record)
        room = self._rooms.get((account_sid, name))  # someone else made it meanwhile
        if room is not None and not room.ended.is_set():
            await asyncio.to_thread(self.store.update_conference, record.sid, status="completed")
            return room
        room = Room(self, record, fetcher=fetcher)
        self._rooms[(account_sid, name)] = room
        self._by_sid[room.sid] = room
        return room

    async def join(
        self,
        action: act.JoinConference,
        caller: Leg,
        *,
        stop: asyncio.Event,
        on_audio: Callable[[str, bytes], None] | None,
        account_sid: str,
        call_sid: str,
        fetcher: Fetcher,
        params: Callable[[], tuple[tuple[str, str], ...]],
        notes: CallNotes,
    ) -> ev.DialFinished:
        """Put ``caller`` in the room of ``action.conference`` until it leaves (see
        :class:`~callxml.runtime.session.ConferenceRunner`)."""
        noun = action.conference
        if not isinstance(caller, CallLeg):
            await notes.event("warning", {"message": "Conference: the call has no media leg"})
            return ev.DialFinished("failed")
        room = await self._room(account_sid, noun.name, fetcher)
        if len(room.participants) >= noun.max_participants:
            message = f"Conference {noun.name}: full ({noun.max_participants} participants)"
            await notes.event("warning", {"message": message})
            return ev.DialFinished("failed")
        if (
            room.callbacks is not None
            and noun.status_callback
            and noun.status_callback != room.callbacks.url
        ):
            message = (
                f"Conference {noun.name}: its events go to the first participant's "
                f"statusCallback ({room.callbacks.url}), not {noun.status_callback}"
            )
            await notes.event("warning", {"message": message})

        def wait_params() -> tuple[tuple[str, str], ...]:
            return (*params(), ("ConferenceSid", room.sid), ("FriendlyName", room.name))

        if noun.wait_url is None:
            wait = _Loop(_fixed(hold_tone()))
        elif noun.wait_url == "":
            wait = _Loop(None)
        else:
            wait = _Loop(
                _WaitDocument(
                    noun.wait_url,
                    noun.wait_method,
                    fetcher=fetcher,
                    audio=self.audio,
                    params=wait_params,
                    notes=notes,
                )
            )
        participant = Participant(
            room,
            noun,
            caller,
            call_sid=call_sid,
            wait=wait,
            notes=notes,
            hangup_on_star=action.hangup_on_star,
            on_audio=on_audio,
        )
        caller.stop_playing()
        caller.set_consumer(participant.heard, participant.pressed)
        player = asyncio.ensure_future(caller.endpoint.play(participant.frames()))
        try:
            room.add(participant)
        except CallXmlError as exc:
            player.cancel()
            await participant.wait.close()
            caller.set_consumer(None, None)
            await notes.event("warning", {"message": f"Conference {noun.name}: {exc}"})
            return ev.DialFinished("failed")
        await notes.event(
            "info", {"message": f"joined conference {noun.name}", "conference_sid": room.sid}
        )
        waits = [
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(caller.ended.wait()),
            asyncio.ensure_future(participant.removed.wait()),
            asyncio.ensure_future(participant.star.wait()),
        ]
        try:
            await asyncio.wait(
                waits, timeout=action.time_limit, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waits:
                waiter.cancel()
            if caller.ended.is_set():
                reason = "Participant hung up"
            elif participant.star.is_set():
                reason = "Participant pressed *"
            elif stop.is_set():
                reason = "Participant left the conference"
            elif participant.removed.is_set():
                reason = participant.leave_reason
            else:
                reason = "Participant reached its time limit"
            room.remove(participant, reason)
            player.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await player
            caller.set_consumer(None, None)
            await participant.wait.close()
            await participant.close()
        duration = max(0, round(time.monotonic() - participant.joined_at))
        await notes.event(
            "info",
            {"message": f"left conference {noun.name}: {reason}", "conference_sid": room.sid},
        )
        return ev.DialFinished("completed", call_sid="", duration=duration)

    async def announce(
        self,
        room: Room,
        participant: Participant,
        url: str,
        method: str,
        *,
        fetcher: Fetcher,
        notes: CallNotes,
    ) -> None:
        """Play ``url`` (audio, or a document of ``<Play>``/``<Say>``/``<Pause>``) to
        ``participant`` only, over what it hears; announcement-end when it is over."""
        loader = _WaitDocument(
            url,
            method,
            fetcher=fetcher,
            audio=self.audio,
            params=lambda: (
                ("AccountSid", room.account_sid),
                ("ConferenceSid", room.sid),
                ("CallSid", participant.call_sid),
            ),
            notes=notes,
        )
        old = participant.announcement
        participant.announcement = _Loop(loader, repeat=False)
        participant.announcement.start()
        if old is not None:
            await old.close()

    async def close(self) -> None:
        """The engine stops: every room ends."""
        for room in list(self._by_sid.values()):
            room.end("conference-ended-via-api", why="The engine is stopping")
        await self.flush()


_BEEP = beep(0.25, 880.0, 0.3)


def _fixed(pcm: bytes) -> Callable[[], Awaitable[bytes]]:
    async def load() -> bytes:
        return pcm

    return load


def _add(a: bytes, b: bytes) -> bytes:
    mixed = np.frombuffer(a, dtype="<i2").astype(np.int32) + np.frombuffer(b, dtype="<i2")
    out: bytes = np.clip(mixed, -32768, 32767).astype("<i2").tobytes()
    return out


def _read_and_drop(path: Path, trim: bool) -> bytes:
    try:
        pcm = path.read_bytes()
    finally:
        path.unlink(missing_ok=True)
    return _trim(pcm) if trim else pcm


def _trim(pcm: bytes) -> bytes:
    """Cut the silence before the first and after the last audible frame (trim-silence)."""
    frames = [pcm[i : i + FRAME_OCTETS] for i in range(0, len(pcm), FRAME_OCTETS)]
    loud = [i for i, frame in enumerate(frames) if frame_rms(frame) >= SILENCE_RMS]
    if not loud:
        return b""
    margin = 10  # 200 ms, so words are not clipped
    first, last = max(0, loud[0] - margin), min(len(frames), loud[-1] + 1 + margin)
    return b"".join(frames[first:last])


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _wall() -> float:
    return time.time()


def _rfc2822_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
