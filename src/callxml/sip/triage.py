"""Triage of raw SIP messages before the full parser: ordering and cheap stateless refusals.

Why: past its peak an engine spends most of its CPU *refusing* calls. Profiled at four times
the peak rate, a refused INVITE cost about 200 µs inside the SIP core — the full parse
(~100 µs: every header decoded, unfolded, canonicalised and validated), the UA's header checks
and a :func:`~callxml.sip.message.make_response` — so the refusals themselves ate the capacity
the limits were protecting, and in-dialog requests (the ACKs and BYEs that *finish* calls)
queued behind INVITEs that were about to be refused anyway (issue 16, part 2).

This module is sans-IO: bytes, a source :class:`~callxml.sip.events.Address` and ``now`` in;
a classification, a verdict and response bytes out. Two parts:

- :func:`classify` reads the start line and the few headers that matter (top Via branch,
  Call-ID, CSeq, To tag) with plain string operations, and says whether the message is
  *clean*: inside a deliberately narrow grammar (ASCII, no folding, no duplicates, one Via per
  line, ``<sip:...>`` addresses, simple parameters) that the full parser and the UA's
  :func:`~callxml.sip.ua.header_problem` are known to accept. :func:`priority` orders a batch
  of datagrams: responses and in-dialog requests (ACK, BYE, CANCEL, PRACK, re-INVITE) first,
  new INVITEs last.
- :class:`Gate` decides per message (a UDP datagram, or one framed on a TCP/TLS connection):
  an out-of-dialog, clean INVITE is offered to the admitter; a refusal is a stateless
  ``503`` + ``Retry-After`` built straight from the raw
  Via/From/To/Call-ID/CSeq lines (its To tag carries :data:`REFUSAL_TAG_PREFIX`), remembered
  by branch and source for a while so a retransmission gets the same bytes without work; ACKs
  whose To tag carries the prefix (the peer acknowledging our 503) are dropped.

Everything that is not clean goes to the full parser, which answers ``400`` (or drops) exactly
as before: triage only ever takes a shortcut for messages the parser would have accepted
(``tests/sip/test_triage.py`` holds it to that over the RFC 4475 set and a mutation fuzzer).
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from callxml.sip.events import Address
from callxml.sip.headers import warning_value

__all__ = [
    "IN_DIALOG",
    "NEW_CALL",
    "OTHER",
    "REFUSAL_TAG_PREFIX",
    "Gate",
    "SourceAdmitter",
    "Triaged",
    "Verdict",
    "classify",
    "priority",
    "quick_priority",
]

#: Admission of a new call from ``source`` at ``now``, before parsing: None to take it, or
#: ``(why, retry_after_seconds)`` to refuse it. It must not raise.
SourceAdmitter = Callable[[Address, float], "tuple[str, int] | None"]

#: The To tag of every stateless 503 starts with this: an ACK carrying it acknowledges a
#: refusal and matches nothing, so it is dropped without parsing.
REFUSAL_TAG_PREFIX = "cx503."

#: Priorities for :func:`priority` (lower goes first).
IN_DIALOG = 0  # responses, ACK, BYE, CANCEL, PRACK, anything with a To tag
OTHER = 1  # OPTIONS, REGISTER..., and anything triage cannot read (the parser decides)
NEW_CALL = 2  # an INVITE without a To tag

#: Datagrams longer than this are never clean (the parser handles oversize ones, 513).
MAX_CLEAN_SIZE = 8192
#: Headers in a clean message, and the longest clean header line.
MAX_CLEAN_HEADERS = 40
MAX_CLEAN_LINE = 512
#: How long a refusal (and an admitted INVITE's branch) is remembered: Timer B, 64*T1, the
#: longest a client retransmits one INVITE.
REMEMBER_SECONDS = 32.0
#: At most this many remembered branches (oldest forgotten first).
MAX_REMEMBERED = 50_000

_IN_DIALOG_METHODS = frozenset({"ACK", "BYE", "CANCEL", "PRACK"})

# --- the narrow grammar (each a subset of what message.py and headers.py accept) ------------

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"(?:{_OCTET}\.){{3}}{_OCTET}"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_TOPLABEL = r"[A-Za-z](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOST = rf"(?:{_IPV4}|(?:{_LABEL}\.)*{_TOPLABEL})"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_USER = r"[A-Za-z0-9\-_.!~*'()&=+$,]+"
_URI_PARAM = r"[A-Za-z0-9\-_.!~*'()]+"
_PARAMS = rf"(?:;{_TOKEN}(?:={_TOKEN})?)*"
_DISPLAY = r'(?:"[A-Za-z0-9 \-_.!~*\'()+]*" ?)?'
_SIP_URI = rf"sip:(?:{_USER}@)?{_HOST}(?::{_PORT})?(?:;{_URI_PARAM}(?:={_URI_PARAM})?)*"

_REQUEST_LINE = re.compile(rf"({_TOKEN}) (sips?:[A-Za-z0-9\-_.!~*'()&=+$,;:@]+) SIP/2\.0")
_VIA = re.compile(rf"SIP/2\.0/(?:UDP|TCP|TLS) {_HOST}(?::{_PORT})?((?:;{_TOKEN}(?:={_TOKEN})?)*)")
_BRANCH = re.compile(rf";branch=(z9hG4bK{_TOKEN})(?=;|$)")
_NAME_ADDR = re.compile(rf"{_DISPLAY}<{_SIP_URI}>({_PARAMS})")
_TAG = re.compile(rf";tag=({_TOKEN})(?=;|$)")
# Contact: the remote target of the call; only parameters next_hop() is known to take.
_CONTACT = re.compile(
    rf"{_DISPLAY}<sip:(?:{_USER}@)?{_HOST}(?::{_PORT})?(?:;transport=(?:udp|tcp|tls|UDP|TCP|TLS))?"
    rf"(?:;ob)?>(?:;expires=[0-9]{{1,9}})?"
)
_CALL_ID = re.compile(r"[A-Za-z0-9\-.!%*_+`'~()]+(?:@[A-Za-z0-9\-.!%*_+`'~()\[\]:]+)?")
_CSEQ = re.compile(rf"([1-9][0-9]{{0,8}}) ({_TOKEN})")
_DIGITS = re.compile(r"[0-9]{1,5}")
_NAME = re.compile(_TOKEN)
_CONTROL = re.compile(rb"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\xff]")
_RPORT = re.compile(r";rport(?=;|$)")
# The To header line of raw bytes (full or compact name), for ordering and refusal ACKs.
_TO_LINE = re.compile(rb"\r\n(?:to|t)[ \t]*:([^\r\n]*)", re.IGNORECASE)
_TAG_PARAM = re.compile(rb";[ \t]*tag[ \t]*=[ \t]*([^; \t]*)", re.IGNORECASE)

# Header names as triage knows them (lower case, compact forms expanded).
_NAMES = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "s": "subject",
    "k": "supported",
}
# Headers a clean message must not carry at all: the parser validates them in ways triage does
# not repeat (routes), they are single (Content-Type more than once), or they change how the
# message is handled before admission (a credential may be for a domain that admits by digest).
_UNCLEAN = frozenset(
    {
        "route",
        "record-route",
        "authorization",
        "proxy-authorization",
    }
)
# Headers a message may carry once (RFC 4475 §3.3.8-9); a second one is the parser's to refuse.
_SINGLE = frozenset(
    {"from", "to", "call-id", "cseq", "max-forwards", "content-length", "content-type"}
)


@dataclass(frozen=True, slots=True)
class Triaged:
    """What :func:`classify` read from one message.

    ``method`` is the request's method, or for a response the CSeq method. ``clean`` says the
    message is inside the narrow grammar (requests only): a clean request's ``vias``, ``from_``,
    ``to``, ``call_id`` and ``cseq`` are its raw header values, enough for a stateless answer.
    """

    request: bool
    method: str
    status: int
    branch: str | None
    call_id: str | None
    to_tag: str | None
    clean: bool
    vias: tuple[str, ...] = ()
    from_: str = ""
    to: str = ""
    cseq: str = ""


def classify(data: bytes) -> Triaged | None:
    """Read ``data`` (one datagram or one framed stream message) as far as ordering and a
    stateless refusal need; None when it cannot be read that way (the full parser decides)."""
    end = data.find(b"\r\n\r\n")
    if end <= 0 or data.startswith(b"\r\n"):
        return None
    head = data[:end]
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return None
    lines = text.split("\r\n")
    start = lines[0]
    request = not start.startswith("SIP/")
    status = 0
    method = ""
    clean = request and len(data) <= MAX_CLEAN_SIZE and len(lines) <= MAX_CLEAN_HEADERS + 1
    if request:
        line = _REQUEST_LINE.fullmatch(start)
        if line is None:
            method = start.split(" ", 1)[0]
            clean = False
        else:
            method = line.group(1)
    else:
        parts = start.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
            return None
        status = int(parts[1])
    if clean:
        bare = text.replace("\r\n", "")  # what is left of a CR or LF is a bare one
        if _CONTROL.search(head) is not None or "\r" in bare or "\n" in bare:
            clean = False
    vias: list[str] = []
    from_ = to = call_id = cseq = ""
    branch = to_tag = None
    contacts = 0
    seen: set[str] = set()
    for raw in lines[1:]:
        colon = raw.find(":")
        if colon <= 0:
            clean = False
            continue
        name = raw[:colon].rstrip(" ").lower()
        name = _NAMES.get(name, name)
        value = raw[colon + 1 :].strip(" \t")
        if clean:
            if (
                len(raw) > MAX_CLEAN_LINE
                or raw[0] in " \t"
                or _NAME.fullmatch(name) is None
                or (len(name) == 1)
                or name in _UNCLEAN
                or (name in _SINGLE and name in seen)
            ):
                clean = False
            seen.add(name)
        if name == "via":
            vias.append(value)
            if len(vias) == 1:
                match = _BRANCH.search(value)
                branch = match.group(1) if match is not None else None
                if clean and (match is None or _VIA.fullmatch(value) is None):
                    clean = False
            elif clean and _VIA.fullmatch(value) is None:
                clean = False
        elif name == "to":
            to = value
            match = _TAG.search(value, value.rfind(">") + 1)  # a header param, not the URI's
            to_tag = match.group(1) if match is not None else None
            if clean and _NAME_ADDR.fullmatch(value) is None:
                clean = False
        elif name == "from":
            from_ = value
            if clean and (
                _NAME_ADDR.fullmatch(value) is None
                or _TAG.search(value, value.rfind(">") + 1) is None
            ):
                clean = False
        elif name == "call-id":
            call_id = value
            if clean and _CALL_ID.fullmatch(value) is None:
                clean = False
        elif name == "cseq":
            cseq = value
        elif not clean:
            continue
        elif name == "contact":
            contacts += 1
            if _CONTACT.fullmatch(value) is None:
                clean = False
        elif name == "max-forwards":
            if _DIGITS.fullmatch(value) is None or len(value) > 2:
                clean = False
        elif name == "content-length" and (
            _DIGITS.fullmatch(value) is None or int(value) > len(data) - end - 4
        ):
            clean = False
    cseq_match = _CSEQ.fullmatch(cseq)
    cseq_method = cseq_match.group(2) if cseq_match is not None else cseq.rpartition(" ")[2]
    if not request:
        method = cseq_method
    if not method or not vias or not call_id or not cseq:
        return None  # even a priority is guesswork: let the parser decide
    if clean and (
        cseq_match is None
        or cseq_method != method
        or not from_
        or not to
        or branch is None
        or (method == "INVITE" and contacts != 1)
        or (method != "INVITE" and contacts > 1)
    ):
        clean = False
    return Triaged(
        request=request,
        method=method,
        status=status,
        branch=branch,
        call_id=call_id,
        to_tag=to_tag,
        clean=clean,
        vias=tuple(vias) if clean else (),
        from_=from_ if clean else "",
        to=to if clean else "",
        cseq=cseq if clean else "",
    )


def priority(triaged: Triaged | None) -> int:
    """Where a message goes in a batch: :data:`IN_DIALOG` (responses, and requests that finish
    or continue a call) before :data:`OTHER` before :data:`NEW_CALL` (an INVITE without a To
    tag: the work an overloaded engine may refuse). Unreadable messages are :data:`OTHER`."""
    if triaged is None:
        return OTHER
    if not triaged.request or triaged.to_tag is not None:
        return IN_DIALOG
    if triaged.method in _IN_DIALOG_METHODS:
        return IN_DIALOG
    if triaged.method == "INVITE":
        return NEW_CALL
    return OTHER


def _raw_to_tag(data: bytes) -> bytes | None:
    """The To tag of raw message bytes (after the URI's closing ``>``), or None."""
    line = _TO_LINE.search(data, 0, data.find(b"\r\n\r\n"))
    if line is None:
        return None
    value = line.group(1)
    tag = _TAG_PARAM.search(value, value.rfind(b">") + 1)
    return tag.group(1) if tag is not None else None


def quick_priority(data: bytes) -> int:
    """:func:`priority` from the start line and the To header alone, with no
    :func:`classify`: what a UDP batch is ordered by, so that ordering costs a few
    microseconds per datagram, not a triage. It only orders; it decides nothing."""
    if data.startswith(b"SIP/"):
        return IN_DIALOG
    method = data[: data.find(b" ")]
    if method in _IN_DIALOG_BYTES:
        return IN_DIALOG
    if _raw_to_tag(data) is not None:
        return IN_DIALOG
    return NEW_CALL if method == b"INVITE" else OTHER


_IN_DIALOG_BYTES = frozenset(m.encode() for m in _IN_DIALOG_METHODS)
_REFUSAL_TAG = REFUSAL_TAG_PREFIX.encode()


class Verdict(Enum):
    """What to do with a datagram other than send bytes back."""

    PARSE = "parse"  # hand it to the full parser and the core, as always
    DROP = "drop"  # an ACK of one of our stateless refusals: nothing to do


_Key = tuple[str, str, int]


class Gate:
    """Stateless refusal of new INVITEs past admission, before the full parser.

    :meth:`decide` for each datagram (with its :func:`classify` result): a clean, out-of-dialog
    INVITE is offered to ``admit`` once per branch and source; a refusal is answered with a
    ``503`` built from the raw headers and remembered for :data:`REMEMBER_SECONDS`, so a
    retransmission gets the same bytes; an admitted branch is remembered too, so the core does
    not count it again (:meth:`admitted`) and a retransmission is not offered twice. ``agent``
    is the warn-agent (``host:port``) of the Warning header. ``counters``: ``refused``,
    ``replayed`` (a retransmission answered again), ``acks`` (refusal ACKs dropped).
    """

    def __init__(
        self,
        admit: SourceAdmitter,
        agent: str,
        *,
        remember: float = REMEMBER_SECONDS,
        max_remembered: int = MAX_REMEMBERED,
    ) -> None:
        self._admit = admit
        self.agent = agent
        self._remember = remember
        self._max = max_remembered
        self._seen: OrderedDict[_Key, tuple[float, bytes | None]] = OrderedDict()
        self._tags = itertools.count(1)
        self._salt = secrets.token_hex(4)
        self.counters: Counter[str] = Counter()

    def decide(self, data: bytes, source: Address, now: float) -> bytes | Verdict:
        """:data:`Verdict.PARSE`, :data:`Verdict.DROP`, or the bytes to send back to
        ``source`` (a stateless 503). Only an INVITE is classified (:func:`classify`); an ACK
        is looked at for its To tag alone, anything else goes straight on."""
        if data.startswith(b"ACK "):
            tag = _raw_to_tag(data)
            if tag is not None and tag.startswith(_REFUSAL_TAG):
                self.counters["acks"] += 1
                return Verdict.DROP
            return Verdict.PARSE
        if not data.startswith(b"INVITE "):
            return Verdict.PARSE
        triaged = classify(data)
        if triaged is None or triaged.to_tag is not None or not triaged.clean:
            return Verdict.PARSE
        assert triaged.branch is not None  # clean
        self._expire(now)
        key = (triaged.branch, source.host, source.port)
        known = self._seen.get(key)
        if known is not None:
            answer = known[1]
            if answer is None:
                return Verdict.PARSE  # admitted: the core has its transaction
            self.counters["replayed"] += 1
            return answer
        refusal = self._admit(source, now)
        if refusal is None:
            self._note(key, now, None)
            return Verdict.PARSE
        why, retry_after = refusal
        answer = self._refusal(triaged, source, why, retry_after)
        self._note(key, now, answer)
        self.counters["refused"] += 1
        return answer

    def admitted(self, branch: str | None, source: Address) -> bool:
        """Whether this gate already admitted the INVITE with ``branch`` from ``source`` (the
        core's own admission must then not count it a second time)."""
        if branch is None:
            return False
        known = self._seen.get((branch, source.host, source.port))
        return known is not None and known[1] is None

    def _note(self, key: _Key, now: float, answer: bytes | None) -> None:
        self._seen[key] = (now, answer)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)

    def _expire(self, now: float) -> None:
        seen, horizon = self._seen, now - self._remember
        while seen:
            key, (at, _) = next(iter(seen.items()))
            if at > horizon:
                break
            del seen[key]

    def _refusal(self, triaged: Triaged, source: Address, why: str, retry_after: int) -> bytes:
        """``503 Service Unavailable`` (RFC 3261 §8.2.6, §21.5.4) from the raw header values:
        every Via in order, the top one stamped with ``received``/``rport`` (§18.2.1, RFC
        3581 §4), From, To with our refusal tag, Call-ID, CSeq, Retry-After and a Warning."""
        top = triaged.vias[0]
        if _RPORT.search(top) is not None:
            top = _RPORT.sub(f";rport={source.port}", top, count=1)
        if ";received=" not in top:
            top += f";received={source.host}"
        tag = f"{REFUSAL_TAG_PREFIX}{self._salt}{next(self._tags):x}"
        lines = [
            "SIP/2.0 503 Service Unavailable",
            f"Via: {top}",
            *(f"Via: {via}" for via in triaged.vias[1:]),
            f"From: {triaged.from_}",
            f"To: {triaged.to};tag={tag}",
            f"Call-ID: {triaged.call_id}",
            f"CSeq: {triaged.cseq}",
            f"Retry-After: {retry_after}",
            f"Warning: {warning_value(self.agent, why)}",
            "Content-Length: 0",
            "",
            "",
        ]
        return "\r\n".join(lines).encode("ascii", "replace")
