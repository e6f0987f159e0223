"""Virtual conference rooms for the simulator: who is in which room, when, and what it reports.

Owns the conference rules as the engine applies them (:mod:`callxml.engine.conference`),
without audio: a room starts when a participant with ``startConferenceOnEnter`` joins (the
others wait, hearing ``waitUrl``), ends when a participant with ``endConferenceOnExit`` leaves
or the last one does (everyone else is taken out then), refuses a caller past
``maxParticipants``, and reports to the first participant's ``statusCallback``
(conference-start/end, participant-join/leave; speech, mute and hold need audio or REST, which a
simulation has not). The simulated calls that share a :class:`SimulatedRooms` — one call, or
several run together by :func:`callxml.simulator.simulate_conference` on one virtual clock —
join and leave at their own simulated times; a room tells the calls it takes out, and each call
schedules the end of its ``<Dial>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from callxml.interpreter import new_sid
from callxml.markup import verbs as v
from callxml.webhooks.base import WebhookRequest

__all__ = ["RoomRecord", "SimulatedRooms"]

#: ``statusCallbackEvent`` token -> what a simulation can report of it.
_EVENTS = {
    "start": ("conference-start",),
    "end": ("conference-end",),
    "join": ("participant-join",),
    "leave": ("participant-leave",),
}


@dataclass(slots=True)
class RoomRecord:
    """What happened in one virtual room: ``events`` are ``(time, event, CallSid)`` in order."""

    sid: str
    name: str
    events: list[tuple[float, str, str]] = field(default_factory=list)
    reason_ended: str = ""
    max_size: int = 0


@dataclass(slots=True)
class _Participant:
    call_sid: str
    noun: v.Conference
    joined: float
    kick: Callable[[float], None]


class _Room:
    def __init__(self, name: str, account_sid: str) -> None:
        self.record = RoomRecord(new_sid("CF"), name)
        self.account_sid = account_sid
        self.participants: dict[str, _Participant] = {}
        self.started = False
        self.ended = False
        self.callback: tuple[str, str, frozenset[str]] | None = None
        self.sequence = 0

    def _emit(
        self, now: float, event: str, participant: _Participant | None, **extra: str
    ) -> list[WebhookRequest]:
        self.record.events.append((now, event, participant.call_sid if participant else ""))
        if self.callback is None or event not in self.callback[2]:
            return []
        self.sequence += 1
        params: list[tuple[str, str]] = [
            ("AccountSid", self.account_sid),
            ("ConferenceSid", self.record.sid),
            ("FriendlyName", self.record.name),
        ]
        if participant is not None:
            noun = participant.noun
            params += [
                ("CallSid", participant.call_sid),
                ("Muted", "true" if noun.muted else "false"),
                ("Hold", "false"),
                ("Coaching", "true" if noun.coach else "false"),
                ("EndConferenceOnExit", "true" if noun.end_conference_on_exit else "false"),
                ("StartConferenceOnEnter", "true" if noun.start_conference_on_enter else "false"),
            ]
            if noun.participant_label:
                params.append(("ParticipantLabel", noun.participant_label))
        params += [
            *extra.items(),
            ("StatusCallbackEvent", event),
            ("SequenceNumber", str(self.sequence)),
            ("Timestamp", f"{now:.3f}"),
        ]
        url, method, _ = self.callback
        return [WebhookRequest(url, method, tuple(params))]


class SimulatedRooms:
    """The virtual rooms of one simulation (see the module docstring)."""

    def __init__(self, account_sid: str) -> None:
        self.account_sid = account_sid
        self.records: list[RoomRecord] = []
        self._rooms: dict[str, _Room] = {}

    def join(
        self,
        call_sid: str,
        noun: v.Conference,
        now: float,
        kick: Callable[[float], None],
    ) -> tuple[bool, bool, list[WebhookRequest]]:
        """``call_sid`` joins ``noun.name``: (joined, started, callbacks to send). ``kick(t)``
        is called if the room ends with the caller still in it."""
        room = self._rooms.get(noun.name)
        if room is None or room.ended:
            room = self._rooms[noun.name] = _Room(noun.name, self.account_sid)
            self.records.append(room.record)
        if len(room.participants) >= noun.max_participants:
            return False, room.started, []
        if room.callback is None and noun.status_callback:
            tokens = noun.status_callback_event or ("start", "end")
            wanted = frozenset(e for t in tokens for e in _EVENTS.get(t, ()))
            room.callback = (noun.status_callback, noun.status_callback_method, wanted)
        participant = _Participant(call_sid, noun, now, kick)
        room.participants[call_sid] = participant
        room.record.max_size = max(room.record.max_size, len(room.participants))
        requests = room._emit(now, "participant-join", participant)
        if noun.start_conference_on_enter and not room.started:
            room.started = True
            requests += room._emit(now, "conference-start", None)
        return True, room.started, requests

    def started(self, name: str) -> bool:
        room = self._rooms.get(name)
        return room is not None and room.started

    def sid(self, name: str) -> str:
        room = self._rooms.get(name)
        return room.record.sid if room is not None else ""

    def leave(self, call_sid: str, name: str, now: float, reason: str) -> list[WebhookRequest]:
        """``call_sid`` leaves ``name``; the room may end (taking the others out)."""
        room = self._rooms.get(name)
        if room is None or room.ended:
            return []
        participant = room.participants.pop(call_sid, None)
        if participant is None:
            return []
        requests = room._emit(now, "participant-leave", participant, Reason=reason)
        if participant.noun.end_conference_on_exit and room.started:
            requests += self._end(
                room, now, "participant-with-end-conference-on-exit-left", participant
            )
        elif not room.participants:
            requests += self._end(room, now, "last-participant-left", participant)
        return requests

    def _end(self, room: _Room, now: float, reason: str, by: _Participant) -> list[WebhookRequest]:
        room.ended = True
        room.record.reason_ended = reason
        requests: list[WebhookRequest] = []
        for other in list(room.participants.values()):
            room.participants.pop(other.call_sid)
            requests += room._emit(now, "participant-leave", other, Reason="Conference ended")
            other.kick(now)
        requests += room._emit(
            now,
            "conference-end",
            None,
            ReasonConferenceEnded=reason,
            CallSidEndingConference=by.call_sid,
        )
        return requests
