"""What a simulated call did: the values :func:`callxml.simulator.simulate` returns.

Owns the result shapes only (no simulation logic), so app developers' tests can read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from callxml.interpreter.actions import Action
from callxml.interpreter.events import Event
from callxml.webhooks.base import WebhookRequest, WebhookResponse

if TYPE_CHECKING:
    from callxml.simulator.queues import QueueRecord
    from callxml.simulator.rooms import RoomRecord
    from callxml.simulator.streams import StreamRecord

__all__ = ["DialRecord", "RecordingRecord", "RequestRecord", "SimulationResult"]


@dataclass(frozen=True, slots=True)
class DialRecord:
    """One target of a ``<Dial>`` as the simulator resolved it.

    ``transport`` (``udp``/``tcp``/``tls``) and ``port`` are set for ``<Sip>`` targets;
    ``srtp_suite`` is the SDES suite offered for a secure target (``sips:`` or ``;secure=true``),
    else None. ``outcome`` is the ``DialCallStatus`` the dial ended with (the same for every target
    of one ``<Dial>``); ``answered`` says whether this target is the one that answered.
    """

    target: str
    kind: str  # number, sip, client, conference, queue
    transport: str | None
    port: int | None
    srtp_suite: str | None
    outcome: str
    answered: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One webhook request and what came back: a response, or the error text."""

    request: WebhookRequest
    response: WebhookResponse | None
    error: str | None = None

    @property
    def params(self) -> dict[str, str]:
        return dict(self.request.params)


@dataclass(frozen=True, slots=True)
class RecordingRecord:
    url: str
    duration: int
    digits: str


@dataclass(slots=True)
class SimulationResult:
    """Everything a simulated call did, in order.

    ``status`` is the final Twilio ``CallStatus``; ``error`` is set when the flow broke (fetch
    failure without fallback, redirect loop...). ``said``/``played`` are what the caller heard,
    ``gathered`` the digits each ``<Gather>`` collected (``""`` for no input), ``callbacks`` the
    status callbacks sent (``<Record recordingStatusCallback>``...), ``streams`` the media
    streams opened (:class:`~callxml.simulator.streams.StreamRecord`), ``rooms`` the
    conference rooms of the simulation (:class:`~callxml.simulator.rooms.RoomRecord`),
    ``queues`` its call queues (:class:`~callxml.simulator.queues.QueueRecord`),
    ``transcript`` the printed lines, ``events``/``actions`` the raw interpreter traffic with
    simulated times, and ``duration`` the simulated length of the call in seconds.
    """

    status: str = "ringing"
    error: str | None = None
    said: list[str] = field(default_factory=list)
    played: list[str] = field(default_factory=list)
    gathered: list[str] = field(default_factory=list)
    dials: list[DialRecord] = field(default_factory=list)
    recordings: list[RecordingRecord] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    callbacks: list[RequestRecord] = field(default_factory=list)
    streams: list[StreamRecord] = field(default_factory=list)
    rooms: list[RoomRecord] = field(default_factory=list)
    queues: list[QueueRecord] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    events: list[tuple[float, Event]] = field(default_factory=list)
    actions: list[tuple[float, Action]] = field(default_factory=list)
    duration: float = 0.0
    answered: bool = False
    call_sid: str = ""

    @property
    def ok(self) -> bool:
        """True when the call ended without an error."""
        return self.error is None

    @property
    def urls(self) -> list[str]:
        """The URL of every webhook request, in order."""
        return [r.request.url for r in self.requests]

    def __str__(self) -> str:
        return "\n".join(self.transcript)
