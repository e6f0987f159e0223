"""Typed, immutable call-flow verbs: what a parsed document means.

This module owns the vocabulary the interpreter runs: one frozen, slotted dataclass per verb and
per ``<Dial>`` noun, with Python (snake_case) field names and Twilio's documented defaults. The
markup's camelCase spelling (``finishOnKey``) lives only in :mod:`callxml.markup.parser`; nothing
here knows about XML.

Conventions:

* every verb and noun carries ``line`` and ``column`` (1-based, where its start tag was);
* all fields are keyword-only, so adding a field never breaks a constructor call;
* ``action`` is ``None`` when absent (the runtime then uses the current document URL, or, for verbs
  where Twilio does so, simply continues with the next verb); HTTP methods default to ``"POST"``;
* ``loop="0"`` means "1000 times" in Twilio; the dataclasses store the *effective* count (1000);
* lists in the markup (``input="dtmf speech"``, ``statusCallbackEvent="initiated answered"``) are
  tuples of strings;
* verbs that callxml recognises but does not run (``<Pay>``, ``<Echo>``...) become
  :class:`Unsupported`, which the interpreter skips with a warning in the call log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeAlias

if TYPE_CHECKING:
    from callxml.sip.target import Target

#: Twilio's meaning of ``loop="0"``: repeat (up to) 1000 times.
LOOP_FOREVER = 1000

#: Default DTMF keys that end a ``<Record>``.
RECORD_FINISH_KEYS = "1234567890*#"

#: ``<Dial ringTone>`` values: Twilio's country codes (and ``gb``, the ISO code of ``uk``); the
#: tones themselves are in :mod:`callxml.media.ringback`.
RING_TONES = frozenset(
    {
        "at",
        "au",
        "be",
        "bg",
        "br",
        "ch",
        "cl",
        "cn",
        "cz",
        "de",
        "dk",
        "ee",
        "es",
        "fi",
        "fr",
        "gb",
        "gr",
        "hu",
        "il",
        "in",
        "it",
        "jp",
        "lt",
        "mx",
        "my",
        "nl",
        "no",
        "nz",
        "ph",
        "pl",
        "pt",
        "ru",
        "se",
        "sg",
        "th",
        "tw",
        "uk",
        "us",
        "us-old",
        "ve",
        "za",
    }
)

HttpMethod: TypeAlias = Literal["GET", "POST"]
RejectReason: TypeAlias = Literal["rejected", "busy"]


# --------------------------------------------------------------------------------- simple verbs


@dataclass(frozen=True, slots=True, kw_only=True)
class Say:
    """Speak ``text`` with text-to-speech.

    ``text`` is the plain text (SSML tags removed, their text kept); ``ssml`` is the raw inner
    markup (``<prosody rate="slow">Hi</prosody> there``) when the element had SSML children, else
    ``None``. ``loop`` is the effective repeat count (``loop="0"`` → 1000).
    """

    text: str
    voice: str | None = None
    language: str | None = None
    loop: int = 1
    ssml: str | None = None
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Play:
    """Play the audio at ``url``, or send ``digits`` as DTMF (``w`` = 0.5 s pause).

    Exactly one of ``url`` and ``digits`` is set. ``loop`` is effective (``loop="0"`` → 1000).
    """

    url: str | None = None
    loop: int = 1
    digits: str | None = None
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause:
    """Wait silently for ``length`` seconds (Twilio default 1)."""

    length: int = 1
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Gather:
    """Collect DTMF digits (and, in the markup, speech) while playing the nested prompts.

    ``num_digits`` ``None`` means unlimited; ``speech_timeout`` is ``None`` (use ``timeout``),
    ``"auto"`` or a number of seconds as text. callxml collects DTMF only; ``input`` containing
    ``speech`` is accepted and recorded so the interpreter can warn.
    """

    input: tuple[str, ...] = ("dtmf",)
    action: str | None = None
    method: HttpMethod = "POST"
    timeout: int = 5
    finish_on_key: str = "#"
    num_digits: int | None = None
    action_on_empty_result: bool = False
    speech_timeout: str | None = None
    language: str = "en-US"
    hints: str | None = None
    profanity_filter: bool = True
    speech_model: str | None = None
    enhanced: bool = False
    partial_result_callback: str | None = None
    partial_result_callback_method: HttpMethod = "POST"
    children: tuple[GatherChild, ...] = ()
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """Record the caller until silence (``timeout`` s), ``max_length`` s, or a ``finish_on_key``.

    ``trim`` is ``"trim-silence"`` (default) or ``"do-not-trim"``; ``finish_on_key`` may be empty
    (no key ends the recording).
    """

    action: str | None = None
    method: HttpMethod = "POST"
    timeout: int = 5
    finish_on_key: str = RECORD_FINISH_KEYS
    max_length: int = 3600
    play_beep: bool = True
    trim: str = "trim-silence"
    recording_status_callback: str | None = None
    recording_status_callback_method: HttpMethod = "POST"
    recording_status_callback_event: tuple[str, ...] = ("completed",)
    transcribe: bool = False
    transcribe_callback: str | None = None
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Redirect:
    """Fetch the document at ``url`` (relative to the current one) and run it instead."""

    url: str
    method: HttpMethod = "POST"
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """Refuse an unanswered call: ``rejected`` (SIP 603) or ``busy`` (SIP 486)."""

    reason: RejectReason = "rejected"
    parameters: tuple[tuple[str, str], ...] = ()
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup:
    """End the call. ``parameters`` are ``<Parameter>`` children (for Voice SDK clients in
    Twilio; callxml has none, so they are ignored with a warning)."""

    parameters: tuple[tuple[str, str], ...] = ()
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Leave:
    """Leave the queue the caller waits in (from a ``<Enqueue>`` wait document)."""

    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Enqueue:
    """Put the caller in the queue ``name`` (``None`` when a ``<Task>`` child routes instead)."""

    name: str | None = None
    action: str | None = None
    method: HttpMethod = "POST"
    wait_url: str | None = None
    wait_url_method: HttpMethod = "POST"
    workflow_sid: str | None = None
    max_queue_size: int | None = None
    task: str | None = None
    line: int = 0
    column: int = 0


# ------------------------------------------------------------------------- media streams

#: ``<Stream track>`` values (Twilio's spelling) -> the tracks streamed.
STREAM_TRACKS: dict[str, tuple[str, ...]] = {
    "inbound_track": ("inbound",),
    "outbound_track": ("outbound",),
    "both_tracks": ("inbound", "outbound"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Stream:
    """A media stream: the call's audio to (and, in ``<Connect>``, from) a WebSocket app.

    ``url`` is a ``wss://`` (or ``ws://``) URL; inside ``<Stop>`` only ``name`` matters (``None``
    there: every stream ``<Start>`` started). ``track`` is ``inbound_track`` (the caller),
    ``outbound_track`` (what the caller hears) or ``both_tracks``; ``parameters`` are the
    ``<Parameter name value>`` children, sent to the app as ``customParameters``.
    """

    url: str | None = None
    name: str | None = None
    track: str = "inbound_track"
    status_callback: str | None = None
    status_callback_method: HttpMethod = "POST"
    connector_name: str | None = None
    audio_format: str = "audio/x-mulaw"
    sample_rate: str = "8000"
    parameters: tuple[tuple[str, str], ...] = ()
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Start:
    """Start the ``streams`` (forks of the call's audio) and go on with the next verb at once.

    ``others`` names the children callxml does not run (``Siprec``, ``Transcription``...).
    """

    streams: tuple[Stream, ...] = ()
    others: tuple[str, ...] = ()
    action: str | None = None
    method: HttpMethod = "POST"
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop:
    """Stop the named ``streams`` that ``<Start>`` started."""

    streams: tuple[Stream, ...] = ()
    others: tuple[str, ...] = ()
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect:
    """Hold the call on a bidirectional ``stream`` until its socket closes, then request
    ``action`` (or run the next verb). ``others`` names children callxml cannot connect
    (``Room``, ``VirtualAgent``...)."""

    stream: Stream | None = None
    others: tuple[str, ...] = ()
    action: str | None = None
    method: HttpMethod = "POST"
    line: int = 0
    column: int = 0


# --------------------------------------------------------------------------------- dial nouns


@dataclass(frozen=True, slots=True, kw_only=True)
class MachineDetection:
    """The answering machine detection attributes a ``<Number>`` or ``<Sip>`` shares with the
    REST ``MachineDetection*`` parameters (thresholds in ms, the timeout in s, Twilio's
    defaults). ``machine_detection`` is ``Enable``, ``DetectMessageEnd`` or None (off); the
    verdict goes to ``amd_status_callback`` while the call is bridged."""

    machine_detection: str | None = None
    machine_detection_timeout: int = 30
    machine_detection_speech_threshold: int = 2400
    machine_detection_speech_end_threshold: int = 1200
    machine_detection_silence_timeout: int = 5000
    amd_status_callback: str | None = None
    amd_status_callback_method: HttpMethod = "POST"


@dataclass(frozen=True, slots=True, kw_only=True)
class Number(MachineDetection):
    """A telephone number to dial (E.164 or national digits, kept as written)."""

    number: str
    send_digits: str | None = None
    url: str | None = None
    method: HttpMethod = "POST"
    status_callback: str | None = None
    status_callback_event: tuple[str, ...] = ("completed",)
    status_callback_method: HttpMethod = "POST"
    byoc: str | None = None
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Sip(MachineDetection):
    """A SIP URI to dial.

    ``uri`` is the URI as written (the text, or the first ``<Uri>`` child by ``priority`` with
    the ``<Headers>`` added as URI headers; ``sip:`` prefixed when the author left the scheme
    out, as Twilio does); ``target`` is what it means, worked out once
    (:class:`callxml.sip.target.Target`: transport, next hop, media policy, X- headers —
    ``sips:`` or ``;secure=true`` → TLS on 5061 with SRTP required), and carried down to the
    transport unchanged. The parser always sets ``target`` for a valid document; it is optional
    only so tests can build nouns by hand.
    """

    uri: str
    target: Target | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    url: str | None = None
    method: HttpMethod = "POST"
    status_callback: str | None = None
    status_callback_event: tuple[str, ...] = ("completed",)
    status_callback_method: HttpMethod = "POST"
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    """A registered client identity to dial (``<Client>alice</Client>`` or ``<Identity>``).

    ``parameters`` are ``<Parameter name value>`` children, in order.
    """

    identity: str
    url: str | None = None
    method: HttpMethod = "POST"
    status_callback: str | None = None
    status_callback_event: tuple[str, ...] = ("completed",)
    status_callback_method: HttpMethod = "POST"
    parameters: tuple[tuple[str, str], ...] = ()
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Conference:
    """A named conference room to join.

    ``beep`` is ``"true"``, ``"false"``, ``"onEnter"`` or ``"onExit"``; ``wait_url`` ``None`` means
    the default hold music.
    """

    name: str
    muted: bool = False
    beep: str = "true"
    start_conference_on_enter: bool = True
    end_conference_on_exit: bool = False
    wait_url: str | None = None
    wait_method: HttpMethod = "POST"
    max_participants: int = 250
    record: str = "do-not-record"
    trim: str = "trim-silence"
    coach: str | None = None
    region: str | None = None
    participant_label: str | None = None
    jitter_buffer_size: str = "large"
    event_callback_url: str | None = None
    status_callback: str | None = None
    status_callback_event: tuple[str, ...] = ()
    status_callback_method: HttpMethod = "POST"
    recording_status_callback: str | None = None
    recording_status_callback_method: HttpMethod = "POST"
    recording_status_callback_event: tuple[str, ...] = ("completed",)
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Queue:
    """A queue to dequeue the first waiting caller from."""

    name: str
    url: str | None = None
    method: HttpMethod = "POST"
    reservation_sid: str | None = None
    post_work_activity_sid: str | None = None
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Sim:
    """A programmable SIM (recognised; callxml cannot dial it)."""

    sid: str
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class WhatsApp:
    """A WhatsApp number to call (recognised; callxml cannot dial it)."""

    number: str
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Application:
    """Another application to hand the call to (recognised; callxml cannot dial it)."""

    sid: str
    url: str | None = None
    method: HttpMethod = "POST"
    customer_id: str | None = None
    copy_parent_to: bool = False
    status_callback: str | None = None
    status_callback_event: tuple[str, ...] = ("completed",)
    status_callback_method: HttpMethod = "POST"
    parameters: tuple[tuple[str, str], ...] = ()
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Dial:
    """Call one or more targets and bridge the first to answer with the caller.

    ``targets`` holds the nouns in document order; a bare number (``<Dial>+15551234567</Dial>``) is
    stored as a single :class:`Number`. ``record`` is ``do-not-record``, ``record-from-answer``,
    ``record-from-ringing`` (or their ``-dual`` forms); ``ring_tone`` is a country code of
    :data:`RING_TONES` (the caller hears that country's ringback while the dial rings, unless
    the far end sends early media) or ``None`` (the far end's early media, if any).
    """

    targets: tuple[DialNoun, ...] = ()
    action: str | None = None
    method: HttpMethod = "POST"
    timeout: int = 30
    time_limit: int = 14400
    hangup_on_star: bool = False
    answer_on_bridge: bool = False
    caller_id: str | None = None
    record: str = "do-not-record"
    trim: str = "do-not-trim"
    recording_status_callback: str | None = None
    recording_status_callback_method: HttpMethod = "POST"
    recording_status_callback_event: tuple[str, ...] = ("completed",)
    recording_track: str = "both"
    ring_tone: str | None = None
    sequential: bool = False
    call_reason: str | None = None
    refer_url: str | None = None
    refer_method: HttpMethod = "POST"
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Refer:
    """Transfer the call with a SIP REFER to ``target_uri`` (from the ``<Sip>`` child)."""

    target_uri: str
    target: Target | None = None
    action: str | None = None
    method: HttpMethod = "POST"
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsupported:
    """A verb callxml recognises but does not run (``Pay``, ``Echo``, ``Siprec``...).

    ``attributes`` are the element's attributes as written (markup spelling), in document order.
    The interpreter skips it with a warning in the call log.
    """

    name: str
    attributes: tuple[tuple[str, str], ...] = ()
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """A whole document: the verbs to run, in order."""

    verbs: tuple[Verb, ...] = ()
    line: int = 0
    column: int = 0


# ------------------------------------------------------------------------------------ unions

#: What a ``<Gather>`` may nest.
GatherChild: TypeAlias = Say | Play | Pause

#: What a ``<Dial>`` may dial.
DialNoun: TypeAlias = Number | Sip | Client | Conference | Queue | Sim | WhatsApp | Application

#: Any top-level verb; ``match`` on it in the interpreter.
Verb: TypeAlias = (
    Say
    | Play
    | Pause
    | Gather
    | Dial
    | Record
    | Redirect
    | Reject
    | Hangup
    | Enqueue
    | Leave
    | Refer
    | Start
    | Stop
    | Connect
    | Unsupported
)


# ------------------------------------------------------------------------------ parse results


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkupWarning:
    """Something the parser tolerated (unknown attribute, bad value replaced by its default...).

    ``code`` is stable (``unknown-attribute``, ``bad-value``, ``unsupported-verb``, ``sip-uri``...);
    ``line`` and ``column`` are 1-based (0 when unknown).
    """

    code: str
    message: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """A parsed document: the response to run and the warnings collected on the way."""

    response: Response
    warnings: tuple[MarkupWarning, ...] = ()
