"""What callxml does with each verb, noun and attribute at run time: one table for everyone.

The validator (:mod:`callxml.markup.parser`), the simulator and the engine all read this table,
so they cannot disagree about what a document will do: a row says whether the element or
attribute **runs** (honoured as Twilio documents it), **runs with a warning** (honoured in part;
the note says how) or is **not supported** (a verb is skipped, a ``<Dial>`` noun is not dialled
and the dial of it fails, an attribute is ignored), and every use of something that does not
simply run is a warning — in ``callxml validate``, in the simulator's log and in the call's log.
Never a silent skip. ``docs/markup.md`` shows the table rendered by :func:`render_markdown`;
``tests/test_capabilities.py`` checks that the three readers agree for every row and that the
page is up to date.

Rows are keyed by the markup's names: ``("Dial", "record")`` is the attribute, ``("Dial", None)``
the verb itself. Nouns are elements of their own (``("Number", "sendDigits")``); a child that
changes what its parent does has a row under its path (``("Hangup/Parameter", None)``). An element
that is not supported has no attribute rows: its attributes go where it goes. Children that only
carry data for their parent (``<Parameter>`` in a noun, ``<Identity>``, ``<Task>``...) have no
rows either. An attribute the parser does not know is its ``unknown-attribute`` warning.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CAPABILITIES",
    "NOUNS",
    "Capability",
    "Support",
    "attribute_row",
    "capability",
    "counts",
    "message",
    "render_markdown",
    "warning_code",
]


class Support(enum.Enum):
    RUNS = "runs"
    WARNS = "runs with a warning"
    UNSUPPORTED = "not supported"


@dataclass(frozen=True, slots=True)
class Capability:
    """One row: ``element`` (markup name), ``attribute`` (None for the element itself), what
    callxml does with it, and a note that says how (shown in warnings and in the docs)."""

    element: str
    attribute: str | None
    support: Support
    note: str = ""
    code: str | None = None  # the validator's warning code, when not the generic one

    @property
    def name(self) -> str:
        """``<Dial>`` or ``<Dial record>``, as warnings and the docs spell it."""
        element = "".join(f"<{part}>" for part in self.element.split("/"))
        return f"{element[:-1]} {self.attribute}>" if self.attribute else element


#: The elements a ``<Dial>`` dials.
NOUNS = frozenset(
    {"Number", "Sip", "Client", "Conference", "Queue", "Sim", "WhatsApp", "Application"}
)

R, W, U = Support.RUNS, Support.WARNS, Support.UNSUPPORTED

#: What a verb or noun that is not supported means at run time.
SKIPPED = "skipped with a warning; the next verb runs"
NOT_DIALLED = "not dialled (a warning); with nothing else to dial, DialCallStatus is failed"
IGNORED = "ignored with a warning"
WHISPER = (
    "a whisper: the document runs on the called party before the bridge "
    "(with ParentCallSid); a <Hangup> there ends the dial (no-answer)"
)
CHILD_CALLBACK = "the child call's status callbacks, signed, with ParentCallSid"
#: ``<Number>`` and ``<Sip>`` answering machine detection: asynchronous, as on Twilio.
MACHINE_DETECTION = (
    (
        "machineDetection",
        "Enable or DetectMessageEnd: the detector listens to the called party once bridged "
        "(after a whisper url, if any) and posts AnsweredBy to amdStatusCallback; the child "
        "call's record keeps it. No speech recognition: a long spoken hello counts as a machine",
    ),
    ("machineDetectionTimeout", "3-60 s, then unknown"),
    ("machineDetectionSpeechThreshold", "1000-6000 ms: longer speech is a machine"),
    ("machineDetectionSpeechEndThreshold", "500-5000 ms of silence ends the speech"),
    ("machineDetectionSilenceTimeout", "2000-10000 ms of silence at first: unknown"),
    (
        "amdStatusCallback",
        "AccountSid, CallSid (the child), ParentCallSid, AnsweredBy, "
        "MachineDetectionDuration; signed",
    ),
    ("amdStatusCallbackMethod", ""),
)
SPEECH = "speech recognition is not available; ignored with a warning"
TASKROUTER = "TaskRouter is not available; ignored with a warning"
CONNECT_NOUN = (
    "not connected (a warning): the <Connect> ends at once, with its action or the next verb"
)

# (element, attribute or None, support, note), in the order of docs/markup.md.
_ROWS: tuple[tuple[Any, ...], ...] = (
    # ---------------------------------------------------------------------- Say, Play, Pause
    ("Say", None, R, "espeak-ng text to speech; SSML tags are read as their text"),
    ("Say", "voice", W, "espeak-ng's male or female variant approximates the named voice"),
    ("Say", "language", R, "picks the espeak-ng voice for the language"),
    ("Say", "loop", R, ""),
    ("Play", None, R, "WAV, MP3, FLAC... fetched over http(s), resampled to 8 kHz"),
    ("Play", "loop", R, ""),
    ("Play", "digits", R, "RFC 4733 events; w waits 0.5 s"),
    ("Pause", None, R, ""),
    ("Pause", "length", R, ""),
    # ---------------------------------------------------------------------------- Gather
    ("Gather", None, R, "DTMF; a key stops the nested prompts"),
    ("Gather", "action", R, ""),
    ("Gather", "method", R, ""),
    ("Gather", "timeout", R, ""),
    ("Gather", "finishOnKey", R, ""),
    ("Gather", "numDigits", R, ""),
    ("Gather", "actionOnEmptyResult", R, ""),
    ("Gather", "input", W, "DTMF is collected; speech is not recognised", "speech-input"),
    ("Gather", "speechTimeout", U, SPEECH),
    ("Gather", "language", U, SPEECH),
    ("Gather", "hints", U, SPEECH),
    ("Gather", "profanityFilter", U, SPEECH),
    ("Gather", "speechModel", U, SPEECH),
    ("Gather", "enhanced", U, SPEECH),
    ("Gather", "partialResultCallback", U, SPEECH),
    ("Gather", "partialResultCallbackMethod", U, SPEECH),
    # ------------------------------------------------------------------------------ Dial
    ("Dial", None, R, "rings the nouns at once (or in order), bridges the first to answer"),
    ("Dial", "action", R, ""),
    ("Dial", "method", R, ""),
    ("Dial", "timeout", R, ""),
    ("Dial", "timeLimit", R, ""),
    ("Dial", "hangupOnStar", R, ""),
    ("Dial", "answerOnBridge", R, ""),
    ("Dial", "callerId", R, "the From of the child calls"),
    ("Dial", "sequential", R, ""),
    (
        "Dial",
        "record",
        R,
        "the bridged call, mono or -dual (caller left, called party right); "
        "record-from-ringing also keeps the ringing: the ringback or the far end's early media",
    ),
    ("Dial", "trim", U, "dial recordings are not trimmed; " + IGNORED),
    ("Dial", "recordingStatusCallback", R, "RecordingSource=DialVerb"),
    ("Dial", "recordingStatusCallbackMethod", R, ""),
    (
        "Dial",
        "recordingStatusCallbackEvent",
        W,
        "completed and absent are sent; in-progress is not",
    ),
    ("Dial", "recordingTrack", R, "both, inbound (the caller), outbound (the called party)"),
    (
        "Dial",
        "ringTone",
        R,
        "that country's ringback (ITU-T E.180 cadence) while the dial rings, as early media "
        "(183) when the caller is not answered yet; the far end's early media replaces it",
    ),
    ("Dial", "callReason", U, IGNORED),
    ("Dial", "referUrl", U, "incoming REFERs are not accepted; ignored with a warning"),
    ("Dial", "referMethod", U, "incoming REFERs are not accepted; ignored with a warning"),
    # ----------------------------------------------------------------------------- nouns
    ("Number", None, R, "dialled through sip.trunk_uri_template; failed without a trunk"),
    ("Number", "sendDigits", R, "RFC 4733 keys to the callee once it answers; w waits 0.5 s"),
    ("Number", "url", R, WHISPER),
    ("Number", "method", R, ""),
    ("Number", "statusCallback", R, CHILD_CALLBACK),
    ("Number", "statusCallbackEvent", R, "initiated, ringing, answered, completed"),
    ("Number", "statusCallbackMethod", R, ""),
    ("Number", "byoc", U, IGNORED),
    *(("Number", name, R, detail) for name, detail in MACHINE_DETECTION),
    ("Sip", None, R, "UDP/TCP/TLS; ;secure=true or sips: means TLS and SRTP"),
    ("Sip/Uri", None, W, "the first <Uri> by priority is dialled; more are ignored with a warning"),
    ("Sip/Headers", None, R, "each <Header name value> is sent (X- headers only)"),
    ("Sip", "username", R, "digest authentication"),
    ("Sip", "password", R, "digest authentication"),
    ("Sip", "url", R, WHISPER),
    ("Sip", "method", R, ""),
    ("Sip", "statusCallback", R, CHILD_CALLBACK),
    ("Sip", "statusCallbackEvent", R, "initiated, ringing, answered, completed"),
    ("Sip", "statusCallbackMethod", R, ""),
    ("Sip", "mediaEncryption", R, "callxml extension: sdes (default) or zrtp (RFC 6189)"),
    ("Sip", "srtpSuites", R, "callxml extension: the SDES suites a secure target offers"),
    *(("Sip", name, R, detail) for name, detail in MACHINE_DETECTION),
    (
        "Client",
        None,
        R,
        "every device the user registered to the account's SIP domains, at once (the first to "
        "answer wins); X-Identity and each <Parameter> as an X- header",
    ),
    ("Client", "url", R, WHISPER),
    ("Client", "method", R, ""),
    ("Client", "statusCallback", R, CHILD_CALLBACK),
    ("Client", "statusCallbackEvent", R, "initiated, ringing, answered, completed"),
    ("Client", "statusCallbackMethod", R, ""),
    (
        "Conference",
        None,
        R,
        "joins the named room: everyone hears everyone else (mixed at 8 kHz, 20 ms), "
        "SRTP and plain RTP callers alike; the <Dial> ends when the caller leaves",
    ),
    ("Conference", "muted", R, "heard by no one; hears the room"),
    ("Conference", "beep", R, "true, false, onEnter, onExit: a beep to the room"),
    ("Conference", "startConferenceOnEnter", R, "false: waits (hearing waitUrl) for one that is"),
    ("Conference", "endConferenceOnExit", R, "its leaving ends the room for everyone"),
    (
        "Conference",
        "waitUrl",
        R,
        "a document (<Play>, <Say>, <Pause>, <Redirect>, looped) or audio; default: a hold "
        "tone; empty: silence",
    ),
    ("Conference", "waitMethod", R, ""),
    ("Conference", "maxParticipants", R, "2 to 250; a caller over it is not let in (failed)"),
    ("Conference", "record", R, "record-from-start: the room's mix, mono WAV, until it ends"),
    ("Conference", "trim", R, "trim-silence cuts leading and trailing silence"),
    ("Conference", "coach", R, "the CallSid of a participant: heard by that participant only"),
    ("Conference", "participantLabel", R, "names the participant in REST and callbacks"),
    (
        "Conference",
        "statusCallback",
        R,
        "the first participant's: conference-start, -end, participant-join, -leave, "
        "-mute/-unmute, -hold/-unhold, -speech-start/-stop, -modify, announcement-end",
    ),
    ("Conference", "statusCallbackEvent", R, "start end join leave mute hold speaker..."),
    ("Conference", "statusCallbackMethod", R, ""),
    (
        "Conference",
        "recordingStatusCallback",
        R,
        "RecordingSource=Conference, with ConferenceSid",
    ),
    ("Conference", "recordingStatusCallbackMethod", R, ""),
    ("Conference", "recordingStatusCallbackEvent", R, "in-progress, completed, absent"),
    ("Conference", "region", U, "one region, this engine; " + IGNORED),
    ("Conference", "jitterBufferSize", U, "each leg's own jitter buffer is used; " + IGNORED),
    ("Conference", "eventCallbackUrl", U, "deprecated by Twilio; use statusCallback; " + IGNORED),
    (
        "Queue",
        None,
        R,
        "bridges the caller who waited longest in the queue (waits up to the <Dial> timeout "
        "for one; no-answer without; failed when there is no such queue)",
    ),
    ("Queue", "url", R, "runs on the dequeued caller first (QueueSid, QueueTime, DequeingCallSid)"),
    ("Queue", "method", R, ""),
    ("Queue", "reservationSid", U, TASKROUTER),
    ("Queue", "postWorkActivitySid", U, TASKROUTER),
    ("Sim", None, U, NOT_DIALLED),
    ("WhatsApp", None, U, NOT_DIALLED),
    ("Application", None, U, NOT_DIALLED),
    # ---------------------------------------------------------------------------- Record
    ("Record", None, R, "until silence, maxLength, a finishOnKey key or hang-up; 8 kHz WAV"),
    ("Record", "action", R, ""),
    ("Record", "method", R, ""),
    ("Record", "timeout", R, ""),
    ("Record", "finishOnKey", R, ""),
    ("Record", "maxLength", R, ""),
    ("Record", "playBeep", R, ""),
    ("Record", "trim", R, ""),
    ("Record", "recordingStatusCallback", R, "RecordingSid, RecordingUrl, RecordingStatus..."),
    ("Record", "recordingStatusCallbackMethod", R, ""),
    ("Record", "recordingStatusCallbackEvent", R, "in-progress, completed, absent"),
    ("Record", "transcribe", U, "no transcription engine; ignored with a warning"),
    ("Record", "transcribeCallback", U, "no transcription engine; ignored with a warning"),
    # --------------------------------------------------------------- the steering verbs
    ("Redirect", None, R, ""),
    ("Redirect", "method", R, ""),
    ("Reject", None, R, "486 Busy Here or 603 Decline, before answer"),
    ("Reject", "reason", R, ""),
    ("Reject/Parameter", None, U, "there are no Voice SDK clients to receive it; " + IGNORED),
    ("Hangup", None, R, ""),
    ("Hangup/Parameter", None, U, "there are no Voice SDK clients to receive it; " + IGNORED),
    # ---------------------------------------------------------------- media streams
    (
        "Start",
        None,
        R,
        "starts each <Stream> (the call's audio forked to a WebSocket); the next verb runs at once",
    ),
    ("Start", "action", U, "Twilio documents no behaviour for it; " + IGNORED),
    ("Start", "method", U, "Twilio documents no behaviour for it; " + IGNORED),
    ("Start/Siprec", None, U, "SIPREC is not supported; " + IGNORED),
    ("Start/Transcription", None, U, "real-time transcription is not available; " + IGNORED),
    ("Start/Recording", None, U, "use <Record>, <Dial record> or REST Record=true; " + IGNORED),
    ("Stop", None, R, "stops the named <Stream> (with no name: every stream <Start> started)"),
    ("Stop/Siprec", None, U, "SIPREC is not supported; " + IGNORED),
    ("Stop/Transcription", None, U, "real-time transcription is not available; " + IGNORED),
    (
        "Connect",
        None,
        R,
        "holds the call on a bidirectional <Stream> until the app closes the socket; "
        "then the action, or the next verb",
    ),
    ("Connect", "action", R, "requested when the connection ends; its document runs"),
    ("Connect", "method", R, ""),
    ("Connect/Room", None, U, CONNECT_NOUN),
    ("Connect/Autopilot", None, U, CONNECT_NOUN),
    ("Connect/VirtualAgent", None, U, CONNECT_NOUN),
    ("Connect/Conversation", None, U, CONNECT_NOUN),
    ("Connect/ConversationRelay", None, U, CONNECT_NOUN),
    ("Connect/AiSession", None, U, CONNECT_NOUN),
    ("Connect/ConversationRelaySession", None, U, CONNECT_NOUN),
    (
        "Stream",
        None,
        R,
        "Twilio's Media Streams messages over wss:// (TLS verified, through the SSRF guard): "
        "8 kHz mono audio/x-mulaw",
    ),
    ("Stream", "url", R, "wss:// (ws:// runs with an insecure-stream warning)"),
    ("Stream", "name", R, "for <Stop> and REST; default: the StreamSid"),
    (
        "Stream",
        "track",
        R,
        "inbound_track (the caller), outbound_track (what the caller hears), both_tracks; "
        "<Connect> streams are inbound_track",
    ),
    ("Stream", "statusCallback", R, "StreamEvent stream-started, stream-stopped, stream-error"),
    ("Stream", "statusCallbackMethod", R, ""),
    ("Stream", "connectorName", U, "there are no stream connectors; " + IGNORED),
    ("Stream", "audioFormat", U, "streams are 8 kHz audio/x-mulaw; " + IGNORED),
    ("Stream", "sampleRate", U, "streams are 8 kHz audio/x-mulaw; " + IGNORED),
    # ---------------------------------------------------------------- recognised, not run
    (
        "Enqueue",
        None,
        R,
        "waits in the named queue (made on first use) until dequeued, <Leave>, hang-up; "
        "then the action with QueueResult, QueueSid, QueueTime",
    ),
    ("Enqueue", "action", R, ""),
    ("Enqueue", "method", R, ""),
    (
        "Enqueue",
        "waitUrl",
        R,
        "looped while waiting, with QueuePosition, QueueSid, QueueTime, AvgQueueTime, "
        "CurrentQueueSize, MaxQueueSize; default: a hold tone",
    ),
    ("Enqueue", "waitUrlMethod", R, ""),
    ("Enqueue", "workflowSid", U, TASKROUTER + " (the named queue is used)"),
    ("Enqueue", "maxQueueSize", R, "the size of a queue this call creates; beyond: queue-full"),
    ("Enqueue/Task", None, U, TASKROUTER + "; without a queue name the <Enqueue> is skipped"),
    (
        "Leave",
        None,
        R,
        "in a queue's wait document: leaves the queue (QueueResult=leave); "
        "elsewhere skipped with a warning",
    ),
    ("Refer", None, U, SKIPPED),
    ("Siprec", None, U, SKIPPED),
    ("Pay", None, U, SKIPPED),
    ("Echo", None, U, SKIPPED),
    ("Sms", None, U, SKIPPED),
    ("Message", None, U, "messaging is not supported; " + SKIPPED),
    ("Parameter", None, U, SKIPPED),
)

CAPABILITIES: tuple[Capability, ...] = tuple(Capability(*row) for row in _ROWS)
_BY_KEY = {(c.element, c.attribute): c for c in CAPABILITIES}


def capability(element: str, attribute: str | None = None) -> Capability:
    """The row for ``element`` (and ``attribute``). An attribute of an element that is not
    supported shares its element's row; ``KeyError`` for what the table does not know."""
    row = _BY_KEY.get((element, attribute))
    if row is not None:
        return row
    owner = _BY_KEY.get((element, None))
    if owner is not None and owner.support is Support.UNSUPPORTED:
        return owner
    raise KeyError((element, attribute))


def attribute_row(element: str, attribute: str) -> Capability | None:
    """The row of ``attribute`` when ``element`` itself is supported (the validator warns about
    attributes of supported elements only: an unsupported element is one warning). A use
    counts when the value is not the attribute's default: ``record="do-not-record"`` and
    ``input="dtmf"`` ask for nothing callxml does not do."""
    owner = _BY_KEY.get((element, None))
    if owner is None or owner.support is Support.UNSUPPORTED:
        return None
    return _BY_KEY.get((element, attribute))


def warning_code(row: Capability) -> str | None:
    """The ``MarkupWarning.code`` the validator gives a use of ``row``, or None when it runs."""
    if row.support is Support.RUNS:
        return None
    if row.code is not None:
        return row.code
    if row.support is Support.WARNS:
        return "partial-support"
    if row.attribute is not None:
        return "unsupported-attribute"
    if row.element in NOUNS:
        return "unsupported-noun"
    return "unsupported-element" if "/" in row.element else "unsupported-verb"


def message(row: Capability) -> str:
    """The warning for a use of ``row`` (validator and call log alike)."""
    if row.support is Support.WARNS:
        return f"{row.name} {row.support.value}: {row.note}"
    return f"{row.name} is not supported by callxml: {row.note}"


def counts() -> dict[Support, int]:
    """How many rows run, warn and are not supported."""
    result = dict.fromkeys(Support, 0)
    for row in CAPABILITIES:
        result[row.support] += 1
    return result


def render_markdown() -> str:
    """The table as docs/markup.md shows it: one section per verb, its attributes below it."""
    lines = [
        "| element or attribute | at run time | how |",
        "| --- | --- | --- |",
    ]
    for row in CAPABILITIES:
        what = f"`{row.name}`" if row.attribute is None else f"&nbsp;&nbsp;`{row.attribute}`"
        if row.attribute is None:
            what = f"**{what}**"
        lines.append(f"| {what} | {row.support.value} | {row.note} |")
    tally = counts()
    lines.append("")
    lines.append(
        f"{len(CAPABILITIES)} rows: {tally[R]} run, {tally[W]} run with a warning, "
        f"{tally[U]} not supported."
    )
    return "\n".join(lines) + "\n"


#: The markers around the rendered table in docs/markup.md.
DOCS_BEGIN, DOCS_END = "<!-- capabilities:begin -->", "<!-- capabilities:end -->"


def write_docs(path: str) -> None:
    """Replace the table between the markers in the Markdown file ``path`` with
    :func:`render_markdown` (``python -m callxml.markup.capabilities docs/markup.md``)."""
    with open(path, encoding="utf-8") as file:
        text = file.read()
    head, found, rest = text.partition(DOCS_BEGIN)
    _, found_end, tail = rest.partition(DOCS_END)
    if not (found and found_end):
        raise SystemExit(f"{path}: no {DOCS_BEGIN} … {DOCS_END} section")
    with open(path, "w", encoding="utf-8") as file:
        file.write(f"{head}{DOCS_BEGIN}\n{render_markdown()}{DOCS_END}{tail}")


if __name__ == "__main__":
    import sys

    write_docs(sys.argv[1] if len(sys.argv) > 1 else "docs/markup.md")
