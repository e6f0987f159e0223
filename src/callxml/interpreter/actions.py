"""What the interpreter asks a driver to do: the outputs of :class:`CallSession`.

This module owns the glossary of actions. Each is a frozen dataclass of plain values that a driver
carries out with its own means: the simulator by advancing a virtual clock and writing a
transcript, the engine with SIP transactions and RTP streams. Nothing here knows how.

Actions that start something long (``Speak``, ``Play``, ``SendDigits``, ``StartRecording``,
``StartDial``, ``Fetch``, ``Answer``) are answered by the matching event
(:mod:`callxml.interpreter.events`): ``PlaybackFinished(id)``, ``RecordingFinished``,
``DialFinished``, ``DocumentFetched``/``FetchFailed``, ``Answered``; a bidirectional
``StartStream`` by ``StreamEnded``. ``Pause`` and
``CollectDigits`` are notices only: the session keeps their time on its own clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from callxml.markup.verbs import Conference, DialNoun, Queue, Verb
from callxml.webhooks.base import WebhookRequest

__all__ = [
    "Action",
    "Answer",
    "Callback",
    "CollectDigits",
    "Dequeue",
    "DigitsCollected",
    "Enqueue",
    "Fetch",
    "Hangup",
    "JoinConference",
    "LeaveQueue",
    "Log",
    "Pause",
    "Play",
    "Reject",
    "SendDigits",
    "Speak",
    "StartDial",
    "StartRecording",
    "StartStream",
    "StopDial",
    "StopPlayback",
    "StopRecording",
    "StopStream",
    "VerbStarted",
]


@dataclass(frozen=True, slots=True)
class VerbStarted:
    """Notice for the call log: ``verb`` of the document at ``url`` starts now."""

    verb: Verb
    url: str


@dataclass(frozen=True, slots=True)
class Fetch:
    """Fetch a document; answer with ``DocumentFetched`` or ``FetchFailed``.

    ``final`` is true for the request made after the caller hung up (a ``<Record>`` or ``<Dial>``
    action): Twilio still posts it, but the document it returns is not run.
    """

    request: WebhookRequest
    final: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer the caller's leg (SIP 200 OK); answer with ``Answered``."""


@dataclass(frozen=True, slots=True)
class Speak:
    """Say ``text`` with text-to-speech, ``loop`` times; answer with ``PlaybackFinished(id)``.

    ``ssml`` is the raw SSML when the document had some; ``text`` is always the plain text.
    ``barge_in`` is true inside ``<Gather>``: a digit will stop it (``StopPlayback``).
    """

    id: int
    text: str
    voice: str | None = None
    language: str | None = None
    loop: int = 1
    ssml: str | None = None
    barge_in: bool = False


@dataclass(frozen=True, slots=True)
class Play:
    """Play the audio at ``url`` ``loop`` times; answer with ``PlaybackFinished(id)``."""

    id: int
    url: str
    loop: int = 1
    barge_in: bool = False


@dataclass(frozen=True, slots=True)
class SendDigits:
    """Send DTMF ``digits`` to the caller (``w`` waits 0.5 s); answer with ``PlaybackFinished``."""

    id: int
    digits: str


@dataclass(frozen=True, slots=True)
class StopPlayback:
    """Stop the playback ``id`` now (barge-in); no ``PlaybackFinished`` is needed."""

    id: int


@dataclass(frozen=True, slots=True)
class Pause:
    """Notice: silence for ``length`` seconds starts now (the session times it)."""

    length: float


@dataclass(frozen=True, slots=True)
class CollectDigits:
    """Notice: a ``<Gather>`` starts; forward the caller's keys as ``DigitReceived``.

    The session applies ``timeout`` (seconds between keys, counted after the prompts end),
    ``finish_on_key`` and ``num_digits`` (None: unlimited) on its own clock.
    """

    timeout: float
    finish_on_key: str
    num_digits: int | None


@dataclass(frozen=True, slots=True)
class DigitsCollected:
    """Notice: the ``<Gather>`` ended with ``digits`` (empty: no input); stop forwarding keys.

    ``finished_on_key`` is the key that ended it, if one did.
    """

    digits: str
    finished_on_key: str = ""


@dataclass(frozen=True, slots=True)
class StartRecording:
    """Record the caller; answer with ``RecordingFinished``.

    The driver ends the recording on ``timeout`` seconds of silence, after ``max_length`` seconds,
    or when the caller presses a key in ``finish_on_key``; it plays a beep first if ``play_beep``.
    ``trim`` is ``"trim-silence"`` or ``"do-not-trim"``.
    """

    timeout: float
    finish_on_key: str
    max_length: float
    play_beep: bool = True
    trim: str = "trim-silence"
    sid: str = ""  # the recording's RE… sid, chosen by the interpreter (empty: the driver's)


@dataclass(frozen=True, slots=True)
class StopRecording:
    """Stop the current recording now (the caller hung up); ``RecordingFinished`` still follows."""


@dataclass(frozen=True, slots=True)
class StartDial:
    """Call ``targets`` (at once, or in order if ``sequential``) and bridge the first to answer.

    Answer with ``DialFinished``. ``timeout`` is the ring time in seconds, ``time_limit`` the
    longest bridged time; ``caller_id`` is already resolved (the caller's number by default).
    With ``answer_on_bridge`` the caller's leg is still unanswered: answer it (and send
    ``Answered``) only when a target answers. ``hangup_on_star`` lets the caller leave the bridge
    with ``*``.
    """

    targets: tuple[DialNoun, ...]
    timeout: float = 30
    time_limit: float = 14400
    caller_id: str | None = None
    answer_on_bridge: bool = False
    hangup_on_star: bool = False
    record: str = "do-not-record"
    ring_tone: str | None = None
    sequential: bool = False
    recording_sid: str = ""  # with ``record``: the RE… sid the recording is saved under
    recording_track: str = "both"  # both | inbound (the caller) | outbound (the called party)


@dataclass(frozen=True, slots=True)
class JoinConference:
    """Put the caller in the conference room ``conference.name`` (``<Dial><Conference>``) until
    it leaves: the room ends, the caller is removed, presses ``*`` with ``hangup_on_star``, or
    ``time_limit`` seconds pass. Answered by ``DialFinished`` (``completed`` with the seconds
    spent in the room, or ``failed`` when the room could not be joined). The noun's URLs
    (``wait_url``, ``status_callback``, ``recording_status_callback``) are already resolved.
    ``StopDial`` takes the caller out at once.
    """

    conference: Conference
    time_limit: float = 14400
    hangup_on_star: bool = False


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Put the caller in the queue ``name`` (created with ``max_queue_size`` if new) until it
    leaves: answered by ``QueueLeft``. While it waits, the document at ``wait_url`` (resolved;
    None: the hold tone) runs on it in a loop, with the queue's parameters."""

    name: str
    wait_url: str | None = None
    wait_url_method: str = "POST"
    max_queue_size: int | None = None


@dataclass(frozen=True, slots=True)
class LeaveQueue:
    """Take the caller out of its queue now (it hung up); ``QueueLeft`` still follows."""


@dataclass(frozen=True, slots=True)
class Dequeue:
    """``<Dial><Queue>``: bridge the caller to the one who waited longest in ``queue.name``
    (waiting up to ``timeout`` seconds for one); ``queue.url`` (resolved) runs on the dequeued
    caller first. Answered by ``DialFinished`` (``completed`` with the dequeued call's sid, or
    ``no-answer`` when nobody came, ``failed`` when there is no such queue). ``StopDial``
    ends it."""

    queue: Queue
    timeout: float = 30
    time_limit: float = 14400
    hangup_on_star: bool = False


@dataclass(frozen=True, slots=True)
class StopDial:
    """End the dial now (the caller hung up): cancel ringing legs, hang up a bridged one.

    ``DialFinished`` still follows.
    """


@dataclass(frozen=True, slots=True)
class StartStream:
    """Open a media stream to the WebSocket app at ``url`` (Twilio's Media Streams protocol).

    ``sid`` is its ``MZ…`` StreamSid, ``name`` what ``<Stop>`` and REST call it (the sid when
    the document gave none); ``tracks`` are ``inbound`` (the caller) and/or ``outbound`` (what
    the caller hears); ``parameters`` go to the app as ``customParameters``. A
    ``bidirectional`` stream (``<Connect>``) plays the app's audio to the caller and is
    answered with ``StreamEnded(sid)`` when it closes; a fork (``<Start>``) is not answered.
    ``status_callback`` (already resolved) gets stream-started/stopped/error.
    """

    sid: str
    url: str
    name: str
    tracks: tuple[str, ...] = ("inbound",)
    parameters: tuple[tuple[str, str], ...] = ()
    status_callback: str | None = None
    status_callback_method: str = "POST"
    bidirectional: bool = False


@dataclass(frozen=True, slots=True)
class StopStream:
    """Stop the stream called ``name`` (a name or a StreamSid); ``None``: every fork."""

    name: str | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the unanswered call: SIP ``status`` 486 (Busy Here) or 603 (Decline)."""

    status: Literal[486, 603]
    reason: str


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the call (BYE if answered; a final error response if not). ``reason`` is for logs."""

    reason: str


@dataclass(frozen=True, slots=True)
class Callback:
    """Send ``request`` (signed, like every webhook request) and move on: a status callback
    whose answer is not a document (``<Record recordingStatusCallback>``...). Its failure is
    logged; it never changes the call."""

    request: WebhookRequest


@dataclass(frozen=True, slots=True)
class Log:
    """A line for the call log: ``level`` is ``info``, ``warning`` or ``error``; ``code`` is a
    Twilio error/warning number when one applies."""

    level: Literal["info", "warning", "error"]
    message: str
    code: int | None = None


Action: TypeAlias = (
    VerbStarted
    | Fetch
    | Answer
    | Speak
    | Play
    | SendDigits
    | StopPlayback
    | Pause
    | CollectDigits
    | DigitsCollected
    | StartRecording
    | StopRecording
    | StartDial
    | JoinConference
    | Enqueue
    | LeaveQueue
    | Dequeue
    | StopDial
    | StartStream
    | StopStream
    | Reject
    | Hangup
    | Callback
    | Log
)
