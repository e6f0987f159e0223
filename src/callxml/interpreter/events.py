"""What happens to a call, as the interpreter hears it: the inputs of :class:`CallSession`.

This module owns the glossary of events a driver (the simulator, or the engine's SIP/RTP runtime)
feeds into :meth:`callxml.interpreter.CallSession.receive`. Events are frozen dataclasses holding
plain values; they say *what happened*, never how (no sockets, no audio, no clock: the time is the
separate ``now`` argument).

Events that arrive when nothing waits for them (a digit pressed outside ``<Gather>``, the end of a
playback that was already stopped) are ignored, as Twilio discards them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from callxml.errors import WebhookError
from callxml.webhooks.base import WebhookResponse

__all__ = [
    "Answered",
    "CallerHungUp",
    "DialFinished",
    "DigitReceived",
    "DocumentFetched",
    "Event",
    "FetchFailed",
    "PlaybackFinished",
    "QueueLeft",
    "RecordingFinished",
    "StreamEnded",
]

#: Values of ``DialCallStatus`` (Twilio's names).
DIAL_STATUSES = ("completed", "answered", "busy", "no-answer", "failed", "canceled")


@dataclass(frozen=True, slots=True)
class DocumentFetched:
    """The document asked for by the last :class:`~callxml.interpreter.actions.Fetch` arrived.

    The session parses ``response.body`` itself: a body that is not valid markup is a failure
    (Twilio error 12100) that may lead to the fallback URL.
    """

    response: WebhookResponse


@dataclass(frozen=True, slots=True)
class FetchFailed:
    """The last fetch failed: connect error, timeout, non-2xx status, oversized body..."""

    error: WebhookError


@dataclass(frozen=True, slots=True)
class Answered:
    """The caller's leg is answered (SIP 200 OK sent and ACKed; or bridged, for answerOnBridge)."""


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    """The ``Speak``/``Play``/``SendDigits`` action ``id`` finished playing (all its loops)."""

    id: int


@dataclass(frozen=True, slots=True)
class DigitReceived:
    """The caller pressed a DTMF key (RFC 4733 event, SIP INFO or in-band): ``0-9``, ``*``, ``#``,
    ``A-D``."""

    digit: str


@dataclass(frozen=True, slots=True)
class RecordingFinished:
    """The recording started by ``StartRecording`` ended.

    ``duration`` is whole seconds of kept audio (0: nothing was recorded); ``digits`` is the key
    that ended it (empty on silence or ``maxLength``, ``"hangup"`` when the caller hung up).
    ``sid`` is the recording's ``RE…`` identifier when the driver has one (else the session makes
    one).
    """

    url: str
    duration: int
    digits: str = ""
    sid: str = ""


@dataclass(frozen=True, slots=True)
class DialFinished:
    """The ``<Dial>`` ended: ``status`` is a ``DialCallStatus`` (completed, busy, no-answer,
    failed, canceled, answered). ``duration`` is the bridged time in seconds (0 if never answered).

    ``sip_call_id`` and ``sip_response_code`` are set when a ``<Sip>`` target was dialled: the
    Call-ID of the outbound leg and the final SIP response (200, 486, 487...);
    ``sip_headers`` the ``X-`` headers of that response (``DialSipHeader_X-…``).
    """

    status: str
    call_sid: str = ""
    duration: int = 0
    sip_call_id: str | None = None
    sip_response_code: int | None = None
    sip_headers: tuple[tuple[str, str], ...] = ()  # X- headers of the far end's final response
    recording_url: str = ""  # <Dial record>: the bridged call's recording, when one was made
    recording_duration: int = 0
    recording_channels: int = 1


@dataclass(frozen=True, slots=True)
class QueueLeft:
    """The caller is out of the queue ``Enqueue`` put it in: ``result`` is a ``QueueResult``
    (bridged, hangup, leave, redirected, error, queue-full, system-shutdown...), ``queue_time``
    the seconds it waited."""

    result: str
    queue_sid: str = ""
    queue_time: int = 0


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The bidirectional stream ``sid`` (``<Connect><Stream>``) is over: the app closed the
    socket, it was stopped, or it failed (``error`` says how; empty when it ended normally)."""

    sid: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class CallerHungUp:
    """The caller's leg ended (BYE received, or CANCEL before answer)."""


Event: TypeAlias = (
    DocumentFetched
    | FetchFailed
    | Answered
    | PlaybackFinished
    | DigitReceived
    | RecordingFinished
    | DialFinished
    | QueueLeft
    | StreamEnded
    | CallerHungUp
)
