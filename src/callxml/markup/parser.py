"""Parse a callxml (TwiML-like) document into the frozen verbs of :mod:`callxml.markup.verbs`.

This module owns the markup's spelling (``finishOnKey``, ``actionOnEmptyResult``...), the hardened
XML parser and the mapping of schema errors to :class:`~callxml.errors.MarkupError`. It knows
nothing about calls: it turns bytes into a :class:`~callxml.markup.verbs.Document` or says, with a
line and a column, why it cannot.

Pipeline, cheapest refusal first:

1. size cap (:data:`MAX_DOCUMENT_BYTES`), then an explicit refusal of any ``<!DOCTYPE`` or
   ``<!ENTITY`` text (even inside a comment: cheaper and safer than being clever), so entity
   declarations (billion laughs, external ``SYSTEM`` entities) never reach a parser;
2. lxml with no DTD loading, no entity resolution, no network and no huge-tree mode;
3. XSD validation (``callxml/schemas/callxml.xsd``) decides structure: unknown verbs, wrong
   nesting and bare text are errors;
4. a walk through :data:`VERB_PARSERS` builds the dataclasses. Attribute values are checked here:
   as in Twilio, an unknown attribute or a bad value is a *warning* and the default applies.

Positions: lxml keeps no columns, so a small tokenizer maps every element (in document order) to
the offset of its ``<`` in the source text; lines and columns are 1-based, counted in characters.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeAlias
from urllib.parse import quote

from lxml import etree

from callxml.errors import MarkupError
from callxml.markup.capabilities import (
    CAPABILITIES,
    attribute_row,
    capability,
    message,
    warning_code,
)
from callxml.markup.verbs import (
    LOOP_FOREVER,
    RING_TONES,
    Application,
    Client,
    Conference,
    Connect,
    Dial,
    DialNoun,
    Document,
    Enqueue,
    Gather,
    GatherChild,
    Hangup,
    Leave,
    MarkupWarning,
    Number,
    Pause,
    Play,
    Queue,
    Record,
    Redirect,
    Refer,
    Reject,
    Response,
    Say,
    Sim,
    Sip,
    Start,
    Stop,
    Stream,
    Unsupported,
    Verb,
    WhatsApp,
)
from callxml.sip.target import MEDIA_ENCRYPTIONS, Target
from callxml.sip.uri import InvalidUri

__all__ = ["MAX_DOCUMENT_BYTES", "VERB_PARSERS", "parse_document"]

#: Documents larger than this (in UTF-8 bytes) are refused before parsing.
MAX_DOCUMENT_BYTES = 64 * 1024

#: Verbs that are recognised but not run; the interpreter skips them with a warning.
UNSUPPORTED_VERBS = frozenset({"Siprec", "Pay", "Echo", "Sms", "Message", "Parameter"})

#: Children of ``<Connect>``, ``<Start>`` and ``<Stop>`` that callxml recognises but does not
#: run (each has an ``Connect/Room``-style row in the capability table).
CONNECT_OTHERS = (
    "Room",
    "Autopilot",
    "VirtualAgent",
    "Conversation",
    "ConversationRelay",
    "AiSession",
    "ConversationRelaySession",
)
START_OTHERS = ("Siprec", "Transcription", "Recording")
STOP_OTHERS = ("Siprec", "Transcription")

Element: TypeAlias = etree._Element


# ------------------------------------------------------------------------ attribute converters
#
# A converter takes the attribute's text and returns the Python value, or raises ValueError whose
# message explains the problem; the caller turns that into a ``bad-value`` warning and keeps the
# dataclass default.

Converter: TypeAlias = Callable[[str], Any]


def _text(value: str) -> str:
    return value


def _suite_names(value: str) -> tuple[str, ...]:
    names = tuple(n for n in value.replace(",", " ").split() if n)
    if not names or len(names) > 6 or any(not n.replace("_", "").isalnum() for n in names):
        raise ValueError("a space-separated list of up to 6 SRTP suite names")
    return names


def _media_encryption(value: str) -> str:
    if value not in MEDIA_ENCRYPTIONS:
        raise ValueError(f"must be one of {', '.join(MEDIA_ENCRYPTIONS)}")
    return value


def _url(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("empty URL")
    return value


def _ws_url(value: str) -> str:
    """A WebSocket URL: ``wss://`` (or ``ws://``) with a host."""
    value = value.strip()
    scheme, _, rest = value.partition("://")
    if scheme.lower() not in ("wss", "ws") or not rest.split("/", 1)[0]:
        raise ValueError("expected a wss:// URL")
    return value


def _ring_tone(value: str) -> str:
    code = value.strip().lower()
    if code not in RING_TONES:
        raise ValueError("expected a country code: " + ", ".join(sorted(RING_TONES)))
    return code


def _method(value: str) -> str:
    method = value.strip().upper()
    if method not in ("GET", "POST"):
        raise ValueError("expected GET or POST")
    return method


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise ValueError("expected true or false")


def _int(low: int, high: int) -> Converter:
    def convert(value: str) -> int:
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 9:
            raise ValueError(f"expected a whole number from {low} to {high}")
        number = int(text)
        if not low <= number <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return number

    return convert


def _loop(value: str) -> int:
    """Twilio: ``loop="0"`` repeats (up to) 1000 times; we store the effective count."""
    count: int = _int(0, LOOP_FOREVER)(value)
    return count or LOOP_FOREVER


def _enum(*choices: str) -> Converter:
    def convert(value: str) -> str:
        if value not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return value

    return convert


def _tokens(*choices: str) -> Converter:
    """A space- (or comma-) separated list, e.g. ``statusCallbackEvent="initiated answered"``."""

    def convert(value: str) -> tuple[str, ...]:
        items = tuple(value.replace(",", " ").split())
        bad = [item for item in items if item not in choices]
        if bad or not items:
            raise ValueError("expected a space-separated list of " + ", ".join(choices))
        return items

    return convert


def _keys(*, single: bool) -> Converter:
    """DTMF keys that end input: one key (or none) for Gather, any set for Record."""

    def convert(value: str) -> str:
        if any(char not in "0123456789*#" for char in value) or (single and len(value) > 1):
            expected = "a single key" if single else "keys"
            raise ValueError(f"expected {expected} from 0-9, * and #, or empty")
        return value

    return convert


def _play_digits(value: str) -> str:
    if not value or any(char not in "0123456789*#wW" for char in value):
        raise ValueError("expected DTMF digits 0-9, *, # and w (half-second pause)")
    return value


_DIAL_RECORD = _enum(
    "do-not-record",
    "record-from-answer",
    "record-from-ringing",
    "record-from-answer-dual",
    "record-from-ringing-dual",
)


def _dial_record(value: str) -> str:
    """Dial ``record``; the legacy ``true``/``false`` mean record-from-answer/do-not-record."""
    legacy = {"true": "record-from-answer", "false": "do-not-record"}.get(value.strip().lower())
    return legacy or str(_DIAL_RECORD(value))


def _speech_timeout(value: str) -> str:
    if value.strip() == "auto":
        return "auto"
    return str(_int(0, 60)(value))


_CALL_EVENTS = _tokens("initiated", "ringing", "answered", "completed")
_RECORDING_EVENTS = _tokens("in-progress", "completed", "absent")
_CONFERENCE_EVENTS = _tokens(
    "start", "end", "join", "leave", "mute", "hold", "modify", "speaker", "announcement"
)

AttributeTable: TypeAlias = dict[str, tuple[str, Converter]]

_ACTION: AttributeTable = {"action": ("action", _url), "method": ("method", _method)}
_STATUS_CALLBACK: AttributeTable = {
    "statusCallback": ("status_callback", _url),
    "statusCallbackEvent": ("status_callback_event", _CALL_EVENTS),
    "statusCallbackMethod": ("status_callback_method", _method),
}
_RECORDING_CALLBACK: AttributeTable = {
    "recordingStatusCallback": ("recording_status_callback", _url),
    "recordingStatusCallbackMethod": ("recording_status_callback_method", _method),
    "recordingStatusCallbackEvent": ("recording_status_callback_event", _RECORDING_EVENTS),
}

_MACHINE_DETECTION: AttributeTable = {  # Twilio's ranges: the timeout in s, the rest in ms
    "machineDetection": ("machine_detection", _enum("Enable", "DetectMessageEnd")),
    "machineDetectionTimeout": ("machine_detection_timeout", _int(3, 60)),
    "machineDetectionSpeechThreshold": ("machine_detection_speech_threshold", _int(1000, 6000)),
    "machineDetectionSpeechEndThreshold": (
        "machine_detection_speech_end_threshold",
        _int(500, 5000),
    ),
    "machineDetectionSilenceTimeout": ("machine_detection_silence_timeout", _int(2000, 10000)),
    "amdStatusCallback": ("amd_status_callback", _url),
    "amdStatusCallbackMethod": ("amd_status_callback_method", _method),
}

#: Markup attribute name -> (dataclass field, converter), per element. Twilio's defaults live in
#: the dataclasses; an attribute missing here is unknown (a warning).
ATTRIBUTES: dict[str, AttributeTable] = {
    "Response": {},
    "Say": {"voice": ("voice", _text), "language": ("language", _text), "loop": ("loop", _loop)},
    "Play": {"loop": ("loop", _loop), "digits": ("digits", _play_digits)},
    "Pause": {"length": ("length", _int(0, 3600))},
    "Gather": {
        **_ACTION,
        "input": ("input", _tokens("dtmf", "speech")),
        "timeout": ("timeout", _int(0, 600)),
        "finishOnKey": ("finish_on_key", _keys(single=True)),
        "numDigits": ("num_digits", _int(1, 1000)),
        "actionOnEmptyResult": ("action_on_empty_result", _bool),
        "speechTimeout": ("speech_timeout", _speech_timeout),
        "language": ("language", _text),
        "hints": ("hints", _text),
        "profanityFilter": ("profanity_filter", _bool),
        "speechModel": ("speech_model", _text),
        "enhanced": ("enhanced", _bool),
        "partialResultCallback": ("partial_result_callback", _url),
        "partialResultCallbackMethod": ("partial_result_callback_method", _method),
    },
    "Dial": {
        **_ACTION,
        **_RECORDING_CALLBACK,
        "timeout": ("timeout", _int(1, 600)),
        "timeLimit": ("time_limit", _int(1, 86400)),
        "hangupOnStar": ("hangup_on_star", _bool),
        "answerOnBridge": ("answer_on_bridge", _bool),
        "callerId": ("caller_id", _url),
        "record": ("record", _dial_record),
        "trim": ("trim", _enum("trim-silence", "do-not-trim")),
        "recordingTrack": ("recording_track", _enum("both", "inbound", "outbound")),
        "ringTone": ("ring_tone", _ring_tone),
        "sequential": ("sequential", _bool),
        "callReason": ("call_reason", _text),
        "referUrl": ("refer_url", _url),
        "referMethod": ("refer_method", _method),
    },
    "Number": {
        **_STATUS_CALLBACK,
        **_MACHINE_DETECTION,
        "sendDigits": ("send_digits", _play_digits),
        "url": ("url", _url),
        "method": ("method", _method),
        "byoc": ("byoc", _text),
    },
    "Sip": {
        **_STATUS_CALLBACK,
        **_MACHINE_DETECTION,
        "username": ("username", _text),
        "password": ("password", _text),
        "url": ("url", _url),
        "method": ("method", _method),
        # callxml extensions (docs/markup.md): key the media with ZRTP, RFC 6189; offer these
        # SDES suites instead of AES_CM_128_HMAC_SHA1_80 alone
        "mediaEncryption": ("media_encryption", _media_encryption),
        "srtpSuites": ("srtp_suites", _suite_names),
    },
    "Client": {**_STATUS_CALLBACK, "url": ("url", _url), "method": ("method", _method)},
    "Conference": {
        **_RECORDING_CALLBACK,
        "statusCallback": ("status_callback", _url),
        "statusCallbackEvent": ("status_callback_event", _CONFERENCE_EVENTS),
        "statusCallbackMethod": ("status_callback_method", _method),
        "muted": ("muted", _bool),
        "beep": ("beep", _enum("true", "false", "onEnter", "onExit")),
        "startConferenceOnEnter": ("start_conference_on_enter", _bool),
        "endConferenceOnExit": ("end_conference_on_exit", _bool),
        "waitUrl": ("wait_url", _text),  # empty means "no hold music"
        "waitMethod": ("wait_method", _method),
        "maxParticipants": ("max_participants", _int(2, 250)),
        "record": ("record", _enum("do-not-record", "record-from-start")),
        "trim": ("trim", _enum("trim-silence", "do-not-trim")),
        "coach": ("coach", _text),
        "region": ("region", _text),
        "participantLabel": ("participant_label", _text),
        "jitterBufferSize": ("jitter_buffer_size", _enum("large", "medium", "small", "off")),
        "eventCallbackUrl": ("event_callback_url", _url),
    },
    "Queue": {
        "url": ("url", _url),
        "method": ("method", _method),
        "reservationSid": ("reservation_sid", _text),
        "postWorkActivitySid": ("post_work_activity_sid", _text),
    },
    "Sim": {},
    "WhatsApp": {},
    "Uri": {
        "priority": ("priority", _int(0, 10**6)),
        "weight": ("weight", _int(0, 10**6)),
        "username": ("username", _text),
        "password": ("password", _text),
    },
    "Headers": {},
    "Header": {"name": ("name", _text), "value": ("value", _text)},
    "Application": {
        **_STATUS_CALLBACK,
        "url": ("url", _url),
        "method": ("method", _method),
        "customerId": ("customer_id", _text),
        "copyParentTo": ("copy_parent_to", _bool),
    },
    "Record": {
        **_ACTION,
        **_RECORDING_CALLBACK,
        "timeout": ("timeout", _int(0, 3600)),
        "finishOnKey": ("finish_on_key", _keys(single=False)),
        "maxLength": ("max_length", _int(1, 86400)),
        "playBeep": ("play_beep", _bool),
        "trim": ("trim", _enum("trim-silence", "do-not-trim")),
        "transcribe": ("transcribe", _bool),
        "transcribeCallback": ("transcribe_callback", _url),
    },
    "Redirect": {"method": ("method", _method)},
    "Reject": {"reason": ("reason", _enum("rejected", "busy"))},
    "Hangup": {},
    "Leave": {},
    "Enqueue": {
        **_ACTION,
        "waitUrl": ("wait_url", _url),
        "waitUrlMethod": ("wait_url_method", _method),
        "workflowSid": ("workflow_sid", _text),
        "maxQueueSize": ("max_queue_size", _int(1, 5000)),
    },
    "Refer": dict(_ACTION),
    "Start": dict(_ACTION),
    "Stop": {},
    "Connect": dict(_ACTION),
    "Stream": {
        "url": ("url", _ws_url),
        "name": ("name", _text),
        "track": ("track", _enum("inbound_track", "outbound_track", "both_tracks")),
        "statusCallback": ("status_callback", _url),
        "statusCallbackMethod": ("status_callback_method", _method),
        "connectorName": ("connector_name", _text),
        "audioFormat": ("audio_format", _text),
        "sampleRate": ("sample_rate", _text),
    },
    "Refer/Sip": {},
    "Identity": {},
    "ApplicationSid": {},
    "Parameter": {"name": ("name", _text), "value": ("value", _text)},
    "Task": {"priority": ("priority", _text), "timeout": ("timeout", _text)},
}


# ------------------------------------------------------------------------------- positions


@dataclass(frozen=True, slots=True)
class _Span:
    """Offsets of one element in the source text."""

    start: int  # the "<" of the start tag
    content: int  # just after the start tag's ">"
    close: int  # the "<" of the end tag (== content for <x/>)
    end: int  # just after the end tag's ">"


# Valid only on well-formed input (lxml has accepted it): then "<" starts exactly one of these.
_TOKEN = re.compile(
    r"""<!--.*?-->
      | <!\[CDATA\[.*?\]\]>
      | <\?.*?\?>
      | </[^>]*>
      | <[^\s/>!?]+(?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*(/?)>""",
    re.DOTALL | re.VERBOSE,
)


# One start tag, matched at its "<" (the start-tag branch of _TOKEN: the same text as its span).
_START_TAG_TOKEN = re.compile(r"""<[^\s/>!?]+(?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*/?>""")


@functools.lru_cache(maxsize=256)
def _attribute_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"\s{re.escape(name)}\s*=")


# Only a start tag's "<" is followed by a name character; comments, CDATA and PIs are skipped
# whole. ("<" cannot appear in attribute values or text of a well-formed document.)
_START_TAG = re.compile(r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<(?=[^/!?])", re.DOTALL)
# What _START_TAG skips whole; every "<" outside these and not followed by "/", "!" or "?"
# starts a tag (_BARE_START_TAG).
_SKIPPED = re.compile(r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>", re.DOTALL)
# The same on a text with no comment, CDATA or processing instruction (the common case).
_BARE_START_TAG = re.compile(r"<(?=[^/!?])")
# An XML declaration (not a PI such as <?xml-stylesheet?>): its pseudo-attributes hold no "<".
_XML_DECLARATION = re.compile(r"<\?xml\s")
# What starts a comment, CDATA, a PI, a DOCTYPE or an entity declaration.
_MARKUP_DECLARATION = re.compile(r"<[!?]")
_match_start = re.Match.start
#: Up to this many characters, a position is counted directly rather than bisected.
_SHORT_TEXT = 4096


class _Source:
    """The document text with line/column lookup and element offsets in document order."""

    __slots__ = ("_line_starts", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._line_starts: list[int] | None = None  # built on first use, for long texts only

    def position(self, offset: int) -> tuple[int, int]:
        text = self.text
        if len(text) <= _SHORT_TEXT:
            # Two scans in C cost less than building the line table (about 1 µs a document).
            return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)
        line_starts = self._line_starts
        if line_starts is None:
            line_starts = self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        index = bisect.bisect_right(line_starts, offset) - 1
        return index + 1, offset - line_starts[index] + 1

    def positions(self, offsets: list[int]) -> list[tuple[int, int]]:
        """:meth:`position` of each of ``offsets`` (ascending), in one pass over the text."""
        text = self.text
        found = []
        line, line_start, previous = 1, 0, 0
        for offset in offsets:
            newlines = text.count("\n", previous, offset)
            if newlines:
                line += newlines
                line_start = text.rfind("\n", previous, offset) + 1
            found.append((line, offset - line_start + 1))
            previous = offset
        return found

    def starts(self) -> list[int]:
        """Offsets of every start tag's "<" in document order (what :data:`_START_TAG` finds),
        with no Python code per tag: every "<" not followed by "/", "!" or "?", less those
        inside comments, CDATA and processing instructions when there are any (an XML
        declaration at the very start holds no "<" of its own)."""
        text = self.text
        starts = list(map(_match_start, _BARE_START_TAG.finditer(text)))
        if _MARKUP_DECLARATION.search(text, 1 if _XML_DECLARATION.match(text) else 0):
            for skipped in _SKIPPED.finditer(text):  # a "<" inside is not a start tag
                low = bisect.bisect_left(starts, skipped.start())
                high = bisect.bisect_left(starts, skipped.end())
                del starts[low:high]
        return starts

    def spans(self) -> list[_Span]:
        """Full spans of every element (slower; only for errors, warnings and SSML)."""
        spans: list[_Span | None] = []
        stack: list[tuple[int, int, int]] = []  # (index in spans, start, content)
        for match in _TOKEN.finditer(self.text):
            token = match.group()
            if token.startswith(("<!", "<?")):
                continue
            if token.startswith("</"):
                if stack:
                    index, start, content = stack.pop()
                    spans[index] = _Span(start, content, match.start(), match.end())
                continue
            if match.group(1):  # <x/>
                spans.append(_Span(match.start(), match.end(), match.end(), match.end()))
            else:
                stack.append((len(spans), match.start(), match.end()))
                spans.append(None)
        return [span for span in spans if span is not None]


# ---------------------------------------------------------------------------- the XML parser

# lxml parser and schema objects must not be shared between threads (the schema's error_log is
# per object), so each thread builds its own on first use.
_local = threading.local()


def _xml_parser(*, force_utf8: bool) -> etree.XMLParser:
    key = "utf8" if force_utf8 else "auto"
    parser: etree.XMLParser | None = getattr(_local, key, None)
    if parser is None:
        parser = etree.XMLParser(
            encoding="utf-8" if force_utf8 else None,
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            collect_ids=False,
        )
        setattr(_local, key, parser)
    return parser


def _get_schema() -> etree.XMLSchema:
    schema: etree.XMLSchema | None = getattr(_local, "schema", None)
    if schema is None:
        source = resources.files("callxml").joinpath("schemas/callxml.xsd").read_bytes()
        schema = etree.XMLSchema(etree.fromstring(source, _xml_parser(force_utf8=False)))
        _local.schema = schema
    return schema


_DOCTYPE = re.compile(r"<!DOCTYPE|<!ENTITY", re.IGNORECASE)
_ROOT_TAG = re.compile(rb"<Response(?=[\s/>])")
# libxml2's XML_NS_ERR_UNDEFINED_NAMESPACE: Twilio documents use SSML's <amazon:effect> without
# declaring the prefix; we declare it for them (see _parse_xml).
_NS_ERR_UNDEFINED_NAMESPACE = 201
_LIBXML_WHERE = re.compile(r", line \d+, column \d+$")
_AMAZON_NS = b' xmlns:amazon="urn:x-callxml:amazon-ssml"'


def _decode(data: bytes) -> str:
    """UTF-8 (a leading byte-order mark dropped), else Latin-1, which decodes anything.

    The same as decoding with ``utf-8-sig`` first, without that codec's Python-level wrapper
    (a microsecond a document)."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return data.decode("latin-1")
    return text[1:] if text.startswith("\ufeff") else text


def _parse_xml(raw: bytes, *, force_utf8: bool) -> Element:
    parser = _xml_parser(force_utf8=force_utf8)
    try:
        return etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as exc:
        root_tag = _ROOT_TAG.search(raw)
        if (
            getattr(exc, "code", None) == _NS_ERR_UNDEFINED_NAMESPACE
            and "amazon" in str(exc.msg)
            and root_tag is not None
            and b"xmlns:amazon" not in raw
        ):
            patched = raw[: root_tag.end()] + _AMAZON_NS + raw[root_tag.end() :]
            try:
                return etree.fromstring(patched, parser)
            except etree.XMLSyntaxError:
                pass  # report the original error below
        line, column = exc.position
        reason = _LIBXML_WHERE.sub("", str(exc.msg))
        raise MarkupError(
            f"document is not well-formed XML: {reason}",
            code="not-well-formed",
            line=line,
            column=column,
        ) from None


# ---------------------------------------------------------------------------- the walk


class _Context:
    """One parse: the source, element positions and the warnings collected so far."""

    def __init__(self, source: _Source, root: Element) -> None:
        self.source = source
        self.warnings: list[MarkupWarning] = []
        starts = source.starts()
        # Every element's (line, column), worked out here in one go: nearly all of them are
        # asked for (each verb and noun carries its own). The dict's keys keep the element
        # proxies alive, so they stay the same objects for the whole walk. The counts agree
        # unless the scan and lxml disagree (e.g. an undecodable encoding): then positions
        # degrade to lxml's line numbers with column 0 rather than lying.
        try:
            self._positions: dict[Element, tuple[int, int]] = dict(
                zip(root.iter(etree.Element), source.positions(starts), strict=True)
            )
        except ValueError:
            self._positions = {}
        self._starts = starts
        self._offsets: dict[Element, int] | None = None  # built by the first attribute_position
        self._span_cache: dict[Element, _Span] | None = None

    def where(self, element: Element) -> tuple[int, int]:
        found = self._positions.get(element)
        if found is None:
            line = element.sourceline
            return (line if isinstance(line, int) else 0), 0
        return found

    @property
    def _spans(self) -> dict[Element, _Span]:
        if self._span_cache is None:
            spans = self.source.spans()
            self._span_cache = (
                dict(zip(self._positions, spans, strict=True))
                if self._positions and len(spans) == len(self._positions)
                else {}
            )
        return self._span_cache

    def attribute_position(self, element: Element, name: str) -> tuple[int, int]:
        """Where attribute ``name`` of ``element`` is written (its start tag's "<" if not found).

        Capability and value warnings ask for this on ordinary documents, so it reads the one
        start tag at the element's offset rather than tokenizing the whole text."""
        if self._offsets is None:
            self._offsets = (
                dict(zip(self._positions, self._starts, strict=True)) if self._positions else {}
            )
        start = self._offsets.get(element)
        tag = None if start is None else _START_TAG_TOKEN.match(self.source.text, start)
        if start is None or tag is None:
            return self.where(element)
        match = _attribute_pattern(name).search(tag.group())
        return self.source.position(start + (match.start() + 1 if match else 0))

    def text_position(self, element: Element) -> tuple[int, int]:
        """Where the first non-whitespace character data directly inside ``element`` starts."""
        span = self._spans.get(element)
        if span is None:
            return self.where(element)
        if (element.text or "").strip():
            begin = span.content
        else:
            begin = next(
                (
                    self._spans[child].end
                    for child in element
                    if (child.tail or "").strip() and child in self._spans
                ),
                span.content,
            )
        stripped = len(self.source.text) - len(self.source.text[begin:].lstrip())
        return self.source.position(stripped)

    def raw_content(self, element: Element) -> str:
        span = self._spans.get(element)
        if span is None:
            return _inner_text(element)
        return self.source.text[span.content : span.close]

    def warn(self, code: str, message: str, position: tuple[int, int]) -> None:
        self.warnings.append(
            MarkupWarning(code=code, message=message, line=position[0], column=position[1])
        )

    def check_support(self, element: Element, key: str | None = None) -> None:
        """Warn when the verb or noun ``element`` (``key``: its row, e.g. ``Hangup/Parameter``)
        does not simply run (the capability table, read through :data:`_SUPPORT_WARNINGS`)."""
        found = _SUPPORT_WARNINGS.get(key or _name(element), _UNKNOWN)
        if found is _UNKNOWN:  # not an element row: capability() says why (KeyError)
            row = capability(key or _name(element))
            code = warning_code(row)
            found = None if code is None else (code, message(row))
        if found is not None:
            self.warn(found[0], found[1], self.where(element))

    def error(self, code: str, message: str, element: Element) -> MarkupError:
        line, column = self.where(element)
        return MarkupError(message, code=code, line=line, column=column)

    def fields(self, element: Element, table_name: str | None = None) -> dict[str, Any]:
        """Convert the element's attributes through its table; unknown or bad ones → warnings.

        This runs for every element of every document, so it reads :data:`_ATTRIBUTE_SPECS`
        (one lookup per attribute gives the field, the converter and the capability warning
        with its default, all worked out at import) and takes the element's name only to
        word a warning."""
        specs = _ATTRIBUTE_SPECS[table_name or _name(element)]
        values: dict[str, Any] = {}
        for key, raw_value in element.items():
            attribute = str(key)
            spec = specs.get(attribute)
            if spec is None:
                self.warn(
                    "unknown-attribute",
                    f"<{_name(element)}> has no attribute {attribute!r}; ignored",
                    self.attribute_position(element, attribute),
                )
                continue
            field_name, convert, capability_warning = spec
            try:
                value = values[field_name] = convert(str(raw_value))
            except ValueError as exc:
                self.warn(
                    "bad-value",
                    f"<{_name(element)} {attribute}={str(raw_value)!r}>: {exc}; using the default",
                    self.attribute_position(element, attribute),
                )
                continue
            if capability_warning is not None and value != capability_warning[2]:
                code, text, _ = capability_warning
                self.warn(code, text, self.attribute_position(element, attribute))
        values["line"], values["column"] = self._positions.get(element) or self.where(element)
        return values


def _default(table: str, field_name: str) -> Any:
    """The dataclass default of ``field_name`` for the element of attribute table ``table``."""
    cls = ELEMENT_CLASSES.get(table)
    found = (
        next((f for f in dataclasses.fields(cls) if f.name == field_name), None) if cls else None
    )
    return None if found is None else found.default


def _name(element: Element) -> str:
    tag: str = element.tag
    return etree.QName(element).localname if tag[0] == "{" else tag


def _inner_text(element: Element) -> str:
    """All character data inside ``element`` (SSML tags dropped), whitespace collapsed."""
    if not len(element):  # the common case: text alone (what itertext would give)
        return " ".join((element.text or "").split())
    return " ".join("".join(str(part) for part in element.itertext()).split())


def _own_text(element: Element) -> str:
    """Character data directly inside ``element`` (not in its children), stripped."""
    parts = [element.text or ""] + [child.tail or "" for child in element]
    return "".join(parts).strip()


# ------------------------------------------------------------------------------- verb parsers


def _parse_say(ctx: _Context, element: Element) -> Say:
    fields = ctx.fields(element)
    text = _inner_text(element)
    ssml = ctx.raw_content(element).strip() if len(element) else None
    if not text:
        ctx.warn("empty-say", "<Say> has nothing to say", ctx.where(element))
    return Say(text=text, ssml=ssml, **fields)


def _parse_play(ctx: _Context, element: Element) -> Play:
    fields = ctx.fields(element)
    url = (element.text or "").strip() or None
    if url is None and "digits" not in fields:
        raise ctx.error("missing-url", "<Play> needs an audio URL or a digits attribute", element)
    if url is not None and "digits" in fields:
        ctx.warn("ignored-url", "<Play digits> ignores its URL text", ctx.where(element))
        url = None
    return Play(url=url, **fields)


def _parse_pause(ctx: _Context, element: Element) -> Pause:
    return Pause(**ctx.fields(element))


def _parse_gather(ctx: _Context, element: Element) -> Gather:
    fields = ctx.fields(element)
    children: list[GatherChild] = []
    for child in element:
        parse = GATHER_CHILD_PARSERS[_name(child)]
        children.append(parse(ctx, child))
    return Gather(children=tuple(children), **fields)


#: A URI scheme, as in ``tel:`` or ``sip:`` (no dots: ``example.com:5060`` has none).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+-]*:")


def _with_scheme(ctx: _Context, element: Element, text: str) -> str:
    """Twilio dials ``kate@example.com`` as ``sip:kate@example.com``; so does callxml, with a
    warning (another scheme, such as ``tel:``, stays an error)."""
    if not text or _SCHEME.match(text):
        return text
    ctx.warn(
        "sip-uri",
        f"<Sip> {text[:80]!r} has no scheme; dialled as sip:{text[:80]}",
        ctx.where(element),
    )
    return "sip:" + text


def _parse_sip_target(ctx: _Context, element: Element, text: str) -> Target:
    if not text:
        raise ctx.error("missing-target", "<Sip> needs a SIP URI", element)
    try:
        target = Target.parse(text)
    except InvalidUri as exc:
        message = f"<Sip> URI {text[:80]!r} is invalid: {exc}"
        raise ctx.error("invalid-sip-uri", message, element) from None
    for message in target.warnings:
        ctx.warn("sip-uri", f"<Sip> {message}", ctx.where(element))
    return target


def _noun_text(ctx: _Context, element: Element) -> str:
    text = (element.text or "").strip()
    if not text:
        raise ctx.error("missing-target", f"<{_name(element)}> is empty", element)
    return text


def _parse_number(ctx: _Context, element: Element) -> Number:
    return Number(number=_noun_text(ctx, element), **ctx.fields(element))


def _parse_sip(ctx: _Context, element: Element) -> Sip:
    fields = ctx.fields(element)
    uris: list[tuple[int, int, str, dict[str, Any]]] = []
    headers: list[tuple[str, str]] = []
    for index, child in enumerate(element):
        child_fields = ctx.fields(child)
        if _name(child) == "Uri":
            text = (child.text or "").strip()
            uris.append((child_fields.pop("priority", 0), index, text, child_fields))
        else:  # <Headers>
            ctx.check_support(child, "Sip/Headers")
            for header in child:
                values = ctx.fields(header)
                if values.get("name"):
                    headers.append((values["name"], values.get("value", "")))
    uri = _own_text(element)
    if uris:
        if uri:
            line, column = ctx.text_position(element)
            raise MarkupError(
                "<Sip> has both a URI as text and <Uri> children; use one",
                code="bare-text",
                line=line,
                column=column,
            )
        uris.sort(key=lambda item: item[:2])
        _, _, uri, chosen = uris[0]
        if len(uris) > 1:
            ctx.check_support(element[uris[1][1]], "Sip/Uri")
        for key in ("username", "password"):
            if key in chosen:
                fields[key] = chosen[key]
    uri = _with_scheme(ctx, element, uri)
    if headers and uri:
        extra = "&".join(f"{quote(n, safe='-')}={quote(v, safe='')}" for n, v in headers)
        uri += ("&" if "?" in uri else "?") + extra
    target = _parse_sip_target(ctx, element, uri)
    encryption = fields.pop("media_encryption", None)
    suites = fields.pop("srtp_suites", None)
    for attribute, what in (("mediaEncryption", "ZRTP, RFC 6189"), ("srtpSuites", "SDES suites")):
        if attribute in element.attrib:
            ctx.warn(
                "callxml-extension",
                f"<Sip {attribute}> is a callxml extension ({what}); other platforms ignore it",
                ctx.attribute_position(element, attribute),
            )
    if encryption is not None:
        target = target.with_media_encryption(encryption)
    if suites is not None:
        target = target.with_srtp_suites(suites)
    return Sip(uri=uri, target=target, **fields)


def _parameters(ctx: _Context, element: Element) -> tuple[tuple[str, str], ...]:
    params = []
    for child in element:
        if _name(child) == "Parameter":
            fields = ctx.fields(child)
            params.append((fields.get("name", ""), fields.get("value", "")))
    return tuple(params)


def _child_text(element: Element, name: str) -> str:
    for child in element:
        if _name(child) == name:
            return (child.text or "").strip()
    return ""


def _parse_client(ctx: _Context, element: Element) -> Client:
    fields = ctx.fields(element)
    identity = _child_text(element, "Identity") or _own_text(element)
    if not identity:
        raise ctx.error("missing-target", "<Client> needs an identity", element)
    return Client(identity=identity, parameters=_parameters(ctx, element), **fields)


def _parse_conference(ctx: _Context, element: Element) -> Conference:
    return Conference(name=_noun_text(ctx, element), **ctx.fields(element))


def _parse_queue(ctx: _Context, element: Element) -> Queue:
    return Queue(name=_noun_text(ctx, element), **ctx.fields(element))


def _parse_sim(ctx: _Context, element: Element) -> Sim:
    return Sim(sid=_noun_text(ctx, element), **ctx.fields(element))


def _parse_whatsapp(ctx: _Context, element: Element) -> WhatsApp:
    return WhatsApp(number=_noun_text(ctx, element), **ctx.fields(element))


def _parse_application(ctx: _Context, element: Element) -> Application:
    fields = ctx.fields(element)
    sid = _child_text(element, "ApplicationSid") or _own_text(element)
    if not sid:
        raise ctx.error("missing-target", "<Application> needs an application SID", element)
    return Application(sid=sid, parameters=_parameters(ctx, element), **fields)


def _parse_dial(ctx: _Context, element: Element) -> Dial:
    fields = ctx.fields(element)
    targets: list[DialNoun] = []
    for child in element:
        targets.append(NOUN_PARSERS[_name(child)](ctx, child))
        ctx.check_support(child)
    bare = _own_text(element)
    if bare and targets:
        line, column = ctx.text_position(element)
        raise MarkupError(
            "<Dial> has both a bare number and nouns; put the number in a <Number>",
            code="bare-text",
            line=line,
            column=column,
        )
    if bare:
        targets.append(Number(number=bare, line=fields["line"], column=fields["column"]))
    if not targets:
        raise ctx.error("missing-target", "<Dial> has nothing to dial", element)
    return Dial(targets=tuple(targets), **fields)


def _parse_record(ctx: _Context, element: Element) -> Record:
    return Record(**ctx.fields(element))


def _parse_redirect(ctx: _Context, element: Element) -> Redirect:
    url = (element.text or "").strip()
    if not url:
        raise ctx.error("missing-url", "<Redirect> needs a URL", element)
    return Redirect(url=url, **ctx.fields(element))


def _parse_reject(ctx: _Context, element: Element) -> Reject:
    return Reject(parameters=_verb_parameters(ctx, element, "Reject"), **ctx.fields(element))


def _parse_hangup(ctx: _Context, element: Element) -> Hangup:
    return Hangup(parameters=_verb_parameters(ctx, element, "Hangup"), **ctx.fields(element))


def _verb_parameters(ctx: _Context, element: Element, verb: str) -> tuple[tuple[str, str], ...]:
    """``<Parameter>`` children of ``<Hangup>``/``<Reject>``: kept, and warned about once."""
    if len(element):
        ctx.check_support(element[0], f"{verb}/Parameter")
    return _parameters(ctx, element)


def _parse_leave(ctx: _Context, element: Element) -> Leave:
    return Leave(**ctx.fields(element))


def _parse_enqueue(ctx: _Context, element: Element) -> Enqueue:
    fields = ctx.fields(element)
    task = None
    for child in element:
        ctx.fields(child)  # warn about unknown Task attributes
        ctx.check_support(child, "Enqueue/Task")
        task = (child.text or "").strip() or None
    name = _own_text(element) or None
    if name is None and task is None:
        raise ctx.error("missing-target", "<Enqueue> needs a queue name or a <Task>", element)
    return Enqueue(name=name, task=task, **fields)


def _parse_refer(ctx: _Context, element: Element) -> Refer:
    fields = ctx.fields(element)
    sip = element[0]  # the schema requires exactly one <Sip>
    ctx.fields(sip, "Refer/Sip")
    uri = (sip.text or "").strip()
    target = _parse_sip_target(ctx, sip, uri)
    return Refer(target_uri=uri, target=target, **fields)


def _parse_stream(ctx: _Context, element: Element, parent: str) -> Stream:
    fields = ctx.fields(element)
    url = fields.get("url")
    if parent != "Stop" and url is None:
        raise ctx.error("missing-url", f"<{parent}><Stream> needs a url (wss://...)", element)
    if url is not None and url.lower().startswith("ws://"):
        ctx.warn(
            "insecure-stream",
            "<Stream> url is ws://: the call's audio crosses the network unencrypted "
            "(Twilio accepts only wss://)",
            ctx.attribute_position(element, "url"),
        )
    if parent == "Connect" and fields.get("track", "inbound_track") != "inbound_track":
        ctx.warn(
            "bad-value",
            "<Connect><Stream> streams the caller's audio only (inbound_track); track ignored",
            ctx.attribute_position(element, "track"),
        )
        fields["track"] = "inbound_track"
    return Stream(parameters=_parameters(ctx, element), **fields)


def _stream_children(ctx: _Context, element: Element) -> tuple[tuple[Stream, ...], tuple[str, ...]]:
    """The ``<Stream>`` children of ``<Start>``/``<Stop>``/``<Connect>``, and the names of the
    others (each warned about through its capability row, ``Start/Siprec``...)."""
    parent = _name(element)
    streams: list[Stream] = []
    others: list[str] = []
    for child in element:
        name = _name(child)
        if name == "Stream":
            streams.append(_parse_stream(ctx, child, parent))
        else:
            ctx.check_support(child, f"{parent}/{name}")
            others.append(name)
    return tuple(streams), tuple(others)


def _parse_start(ctx: _Context, element: Element) -> Start:
    fields = ctx.fields(element)
    streams, others = _stream_children(ctx, element)
    return Start(streams=streams, others=others, **fields)


def _parse_stop(ctx: _Context, element: Element) -> Stop:
    fields = ctx.fields(element)
    streams, others = _stream_children(ctx, element)
    return Stop(streams=streams, others=others, **fields)


def _parse_connect(ctx: _Context, element: Element) -> Connect:
    fields = ctx.fields(element)
    streams, others = _stream_children(ctx, element)
    if len(streams) + len(others) > 1:
        ctx.warn(
            "extra-noun",
            "<Connect> connects one noun: the first is used, the others are ignored",
            ctx.where(element[1]),
        )
    first = _name(element[0]) if len(element) else None
    stream = streams[0] if first == "Stream" else None
    return Connect(stream=stream, others=others[:1] if stream is None else (), **fields)


def _parse_unsupported(ctx: _Context, element: Element) -> Unsupported:
    name = _name(element)
    line, column = ctx.where(element)
    attributes = tuple((str(key), str(value)) for key, value in element.attrib.items())
    return Unsupported(name=name, attributes=attributes, line=line, column=column)


#: Top-level verb name -> parser: a table, so the vocabulary is one readable list to check against
#: the schema.
VERB_PARSERS: dict[str, Callable[[_Context, Element], Verb]] = {
    "Say": _parse_say,
    "Play": _parse_play,
    "Pause": _parse_pause,
    "Gather": _parse_gather,
    "Dial": _parse_dial,
    "Record": _parse_record,
    "Redirect": _parse_redirect,
    "Reject": _parse_reject,
    "Hangup": _parse_hangup,
    "Leave": _parse_leave,
    "Enqueue": _parse_enqueue,
    "Refer": _parse_refer,
    "Start": _parse_start,
    "Stop": _parse_stop,
    "Connect": _parse_connect,
    **dict.fromkeys(sorted(UNSUPPORTED_VERBS), _parse_unsupported),
}

GATHER_CHILD_PARSERS: dict[str, Callable[[_Context, Element], GatherChild]] = {
    "Say": _parse_say,
    "Play": _parse_play,
    "Pause": _parse_pause,
}

NOUN_PARSERS: dict[str, Callable[[_Context, Element], DialNoun]] = {
    "Number": _parse_number,
    "Sip": _parse_sip,
    "Client": _parse_client,
    "Conference": _parse_conference,
    "Queue": _parse_queue,
    "Sim": _parse_sim,
    "WhatsApp": _parse_whatsapp,
    "Application": _parse_application,
}


#: The dataclass of each element with an attribute table (for attribute defaults).
ELEMENT_CLASSES: dict[str, type] = {
    "Say": Say,
    "Play": Play,
    "Pause": Pause,
    "Gather": Gather,
    "Dial": Dial,
    "Record": Record,
    "Redirect": Redirect,
    "Reject": Reject,
    "Hangup": Hangup,
    "Leave": Leave,
    "Enqueue": Enqueue,
    "Refer": Refer,
    "Start": Start,
    "Stop": Stop,
    "Connect": Connect,
    "Stream": Stream,
    "Number": Number,
    "Sip": Sip,
    "Client": Client,
    "Conference": Conference,
    "Queue": Queue,
    "Sim": Sim,
    "WhatsApp": WhatsApp,
    "Application": Application,
}

#: Where each element may appear (for error messages; the XSD is what enforces it).
ALLOWED_CHILDREN: dict[str, tuple[str, ...]] = {
    "Response": tuple(VERB_PARSERS),
    "Gather": tuple(GATHER_CHILD_PARSERS),
    "Dial": tuple(NOUN_PARSERS),
    "Client": ("Identity", "Parameter"),
    "Application": ("ApplicationSid", "Parameter"),
    "Enqueue": ("Task",),
    "Refer": ("Sip",),
    "Sip": ("Uri", "Headers"),
    "Headers": ("Header",),
    "Hangup": ("Parameter",),
    "Reject": ("Parameter",),
    "Start": ("Stream", *START_OTHERS),
    "Stop": ("Stream", *STOP_OTHERS),
    "Connect": ("Stream", *CONNECT_OTHERS),
    "Stream": ("Parameter",),
}
KNOWN_ELEMENTS = frozenset({"Response"}.union(*ALLOWED_CHILDREN.values()))


# ------------------------------------------------------------------- tables for the hot path
#
# Worked out once from ATTRIBUTES, ELEMENT_CLASSES and the capability table, so that a parse
# does one dictionary lookup per attribute and per verb instead of walking the capability rows
# and the dataclass fields each time (bench/markup.py). They are derived, never edited: a new
# attribute or verb goes into the tables above and appears here.

#: (capability warning code, its message, the attribute's default): warn when the value differs.
CapabilityWarning: TypeAlias = tuple[str, str, Any]
AttributeSpec: TypeAlias = tuple[str, Converter, CapabilityWarning | None]


def _attribute_specs() -> dict[str, dict[str, AttributeSpec]]:
    specs: dict[str, dict[str, AttributeSpec]] = {}
    for table_name, table in ATTRIBUTES.items():
        rows: dict[str, AttributeSpec] = {}
        for attribute, (field_name, convert) in table.items():
            row = attribute_row(table_name, attribute)
            code = None if row is None else warning_code(row)
            warning = None
            if row is not None and code is not None:
                warning = (code, message(row), _default(table_name, field_name))
            rows[attribute] = (field_name, convert, warning)
        specs[table_name] = rows
    return specs


def _support_warnings() -> dict[str, tuple[str, str] | None]:
    """Element row -> its warning (code, message), or None when it simply runs."""
    found: dict[str, tuple[str, str] | None] = {}
    for row in CAPABILITIES:
        if row.attribute is None:
            code = warning_code(row)
            found[row.element] = None if code is None else (code, message(row))
    return found


_ATTRIBUTE_SPECS = _attribute_specs()
_SUPPORT_WARNINGS = _support_warnings()
_UNKNOWN: Any = object()


# ----------------------------------------------------------------------------- schema errors


def _schema_error(ctx: _Context, root: Element, entry: Any) -> MarkupError:
    """Turn the first XSD error into a MarkupError that names the element and its position."""
    prefixes = {k: v for el in root.iter(etree.Element) for k, v in el.nsmap.items() if k}
    try:
        found: Any = root.getroottree().xpath(entry.path, namespaces=prefixes)
    except etree.XPathError:
        found = []
    element: Element = found[0] if found and isinstance(found[0], etree._Element) else root
    name = _name(element)
    parent = element.getparent()
    parent_name = _name(parent) if parent is not None else ""
    line, column = ctx.where(element)
    message = str(entry.message)
    kind = str(entry.type_name)

    def error(code: str, text: str, position: tuple[int, int] = (line, column)) -> MarkupError:
        return MarkupError(text, code=code, line=position[0], column=position[1])

    if kind == "SCHEMAV_CVC_ELT_1":
        return error("not-response", f"the document element must be <Response>, not <{name}>")
    if kind == "SCHEMAV_ELEMENT_CONTENT" and "not expected" in message:
        allowed = ", ".join(ALLOWED_CHILDREN.get(parent_name, ()))
        if name not in KNOWN_ELEMENTS or element.prefix is not None:
            what = "verb" if parent_name == "Response" else "element"
            return error(
                f"unknown-{what}",
                f"unknown {what} <{element.tag}> inside <{parent_name}> (allowed: {allowed})",
            )
        return error(
            "wrong-nesting", f"<{name}> is not allowed inside <{parent_name}> (allowed: {allowed})"
        )
    if kind == "SCHEMAV_ELEMENT_CONTENT":
        return error("missing-element", f"<{name}> is incomplete: {message}")
    if kind == "SCHEMAV_CVC_COMPLEX_TYPE_2_3" and name in ("Hangup", "Reject"):
        return error(
            "unexpected-text",
            f"<{name}> must be empty (apart from <Parameter> children)",
            ctx.text_position(element),
        )
    if kind == "SCHEMAV_CVC_COMPLEX_TYPE_2_3":
        return error(
            "bare-text",
            f"text is not allowed directly inside <{name}>",
            ctx.text_position(element),
        )
    if kind in ("SCHEMAV_CVC_COMPLEX_TYPE_2_1", "SCHEMAV_CVC_COMPLEX_TYPE_2_2"):
        if len(element):
            child = element[0]
            return error(
                "wrong-nesting",
                f"<{_name(child)}> is not allowed inside <{name}>",
                ctx.where(child),
            )
        return error("unexpected-text", f"<{name}> must be empty", ctx.text_position(element))
    return error("invalid", message)


# ------------------------------------------------------------------------------- entry point


def parse_document(data: bytes | str) -> Document:
    """Parse and validate a document; raise :class:`MarkupError` if it cannot run.

    ``data`` is the HTTP body (bytes, any encoding its XML declaration names) or text. Errors
    carry a ``code`` (``too-large``, ``doctype``, ``not-well-formed``, ``not-response``,
    ``unknown-verb``, ``wrong-nesting``, ``bare-text``, ``missing-url``, ``invalid-sip-uri``...)
    and a 1-based line and column. Tolerated problems come back as ``Document.warnings``.
    """
    force_utf8 = isinstance(data, str)
    try:
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    except UnicodeEncodeError as exc:  # a lone surrogate in a str
        assert isinstance(data, str)
        line, column = _Source(data).position(exc.start)
        raise MarkupError(
            "document contains a character that cannot be encoded",
            code="not-well-formed",
            line=line,
            column=column,
        ) from None
    if isinstance(data, str):
        text = data
    else:
        text = _decode(raw if len(raw) <= MAX_DOCUMENT_BYTES else raw[: MAX_DOCUMENT_BYTES + 1])
    source = _Source(text)

    if len(raw) > MAX_DOCUMENT_BYTES:
        line, column = source.position(len(raw[:MAX_DOCUMENT_BYTES].decode("utf-8", "ignore")))
        raise MarkupError(
            f"document is larger than {MAX_DOCUMENT_BYTES} bytes",
            code="too-large",
            line=line,
            column=column,
        )
    doctype = _DOCTYPE.search(text) if "!" in text else None  # one memchr for most documents
    if doctype is not None:
        line, column = source.position(doctype.start())
        raise MarkupError(
            "DOCTYPE and entity declarations are not allowed",
            code="doctype",
            line=line,
            column=column,
        )

    root = _parse_xml(raw, force_utf8=force_utf8)
    docinfo: Any = root.getroottree().docinfo
    if (
        docinfo.doctype or docinfo.internalDTD is not None
    ):  # e.g. a UTF-16 document the text scan cannot read
        raise MarkupError("DOCTYPE declarations are not allowed", code="doctype", line=1, column=1)

    ctx = _Context(source, root)
    schema = _get_schema()
    if not schema.validate(root):
        log: Any = schema.error_log
        raise _schema_error(ctx, root, next(iter(log)))

    fields = ctx.fields(root)
    verbs: list[Verb] = []
    for child in root:
        name = _name(child)
        if _SUPPORT_WARNINGS.get(name, _UNKNOWN) is not None:  # ctx.check_support, inlined
            ctx.check_support(child, name)
        verbs.append(VERB_PARSERS[name](ctx, child))
    response = Response(verbs=tuple(verbs), **fields)
    return Document(response=response, warnings=tuple(ctx.warnings))
