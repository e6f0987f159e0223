"""The user agent core (RFC 3261 §8, §12-§15), sans-IO: calls in and out over transactions.

This module owns what a SIP user agent does above its transactions: matching incoming
messages to transactions (§17.1.3, §17.2.3) and dialogs (§12.2.2), creating server transactions
for new requests, answering what needs no application decision (CANCEL with 487 to the INVITE,
BYE, OPTIONS, re-INVITE for hold/unhold with the same media, 481 for unknown dialogs, 405/501),
sending ACK for 2xx (§13.2.2.4), retransmitting our 2xx until the ACK arrives (§13.3.1.4 with
RFC 6026), answering 401/407 challenges with :mod:`auth`, challenging new incoming INVITEs
(one digest server for all, or one chosen per request, §22.3), and reporting call-level events.
REGISTER, both ways, is :mod:`callxml.sip.register`'s; the core only carries it: the
application's own requests in client transactions (:meth:`UserAgentCore.send_request`) and, with
``registrar`` on, incoming REGISTERs challenged like INVITEs and handed over to be answered
(:meth:`UserAgentCore.respond`).

Session modification: a re-INVITE (§14) or UPDATE (RFC 3311) from the peer is answered by the
call's *answerer* (:meth:`UserAgentCore.set_answerer`: the runtime installs one per call that
runs its SDP offer/answer under the call's media policy; without one, :func:`answer_hold`
mirrors the direction of the offer into our current SDP). It is called synchronously with the
offer and returns the answer, or raises :class:`OfferRefused` (488 with a Warning). Our own
re-INVITEs and UPDATEs report the peer's answer as :class:`ReofferAnswered` (or
:class:`ReofferFailed`); glare is 491 both ways, retried after §14.1's random wait.

Session timers (RFC 4028, rules in :mod:`callxml.sip.session_timer`): our INVITEs carry
``Supported: timer`` and Session-Expires; incoming ones asking for too short an interval get 422
with our Min-SE, and a 422 to ours is retried with the interval it names. Once a 2xx settles an
interval, the side that refreshes sends an UPDATE (or a re-INVITE with our SDP when the peer does
not allow UPDATE) every half interval; the other side, or a refresh answered 408/481 or not at
all, ends the call with BYE (:class:`CallEnded` with reason ``session expired``).

Reliable provisional responses (RFC 3262, rules in :mod:`callxml.sip.reliable`): we support
``100rel``; a provisional response to our INVITE that requires it is PRACKed (RAck) once, in
order, in its early dialog; when a caller requires it, our 18x go out with RSeq, retransmitted
until their PRACK, one at a time, and our 2xx waits for the PRACK of a 183 that carried SDP.

It never touches a socket or a clock. A driver (``callxml.sip.aio``) feeds it with
``receive(message, source, now)`` and ``handle_timer(now)``, sends what ``outgoing()`` returns
(``(message, destination)`` pairs) and reads ``events()``. Simplified: RFC 2543 transaction
matching (see :func:`~callxml.sip.transaction.server_key`). Not handled: merged-request
detection (§8.2.2.2), forked early dialogs (a second 2xx is ACKed and hung up, §13.2.2.4),
UPDATE in an early dialog, offers in a PRACK, and SRV/NAPTR (hosts are handed to the driver).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from callxml.errors import CallXmlError, LocalProtocolError, RemoteProtocolError
from callxml.sip.auth import (
    Credentials,
    DigestAuthorization,
    DigestClient,
    DigestServer,
    challenge_to_answer,
    parse_authorization,
)
from callxml.sip.dialog import Dialog, DialogId, DialogState
from callxml.sip.events import (
    AckReceived,
    Address,
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallFailed,
    CallProgress,
    CallReinvited,
    DialogConfirmed,
    Event,
    InviteReceived,
    RegisterReceived,
    ReofferAnswered,
    ReofferFailed,
    RequestReceived,
    ResponseReceived,
    TransactionKey,
    TransactionTerminated,
    TransactionTimedOut,
    TransportErrorOccurred,
)
from callxml.sip.headers import new_branch, new_call_id, new_tag, warning_value
from callxml.sip.message import (
    Headers,
    SipMessage,
    SipRequest,
    SipResponse,
    check_request,
    make_response,
    unsupported_options,
)
from callxml.sip.reliable import (
    ProvisionalOrder,
    ReliableProvisionals,
    parse_rack,
    reliable_rseq,
    requires_100rel,
)
from callxml.sip.session_timer import (
    DEFAULT_SESSION_TIMER,
    Refresher,
    SessionTimer,
    SessionTimerConfig,
    TimerAction,
    UasDecision,
    request_headers,
    retry_interval,
    supports_timer,
    uac_negotiated,
    uas_negotiate,
)
from callxml.sip.target import next_hop
from callxml.sip.timers import DEFAULT_TIMERS, TimerConfig
from callxml.sip.transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ClientTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ServerTransaction,
    State,
    Transaction,
    client_key,
    server_key,
)
from callxml.sip.uri import parse_uri

__all__ = [
    "Admitter",
    "Answerer",
    "AuthenticatorSelector",
    "Call",
    "CallState",
    "OfferRefused",
    "Role",
    "UserAgentConfig",
    "UserAgentCore",
    "answer_hold",
    "header_problem",
]

logger = logging.getLogger(__name__)

ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "UPDATE", "PRACK")
KNOWN_METHODS = frozenset(
    {"REGISTER", "INFO", "UPDATE", "PRACK", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"}
)
MAX_AUTHORIZATIONS = 8  # Authorization headers looked at in one request (one per realm, §22.3)
MAX_CALLS = 10_000  # new INVITEs beyond this many live calls get 503 (a bound, not an RFC rule)
MAX_SERVER_TRANSACTIONS = 50_000  # beyond this, new requests get a stateless 503
MAX_PENDING_REGISTERS = 1_000  # REGISTERs handed to the registrar and not yet answered: then 503
MAX_GLARE_RETRIES = 3  # our re-INVITE/UPDATE answered 491 is retried at most this often
MAX_422_RETRIES = 2  # RFC 4028 §7.4: asking again with a larger interval, at most this often
MAX_EARLY_DIALOGS = 8  # early dialogs (forks) whose reliable provisionals we PRACK, per call


#: Chooses the digest server for one new incoming INVITE from the request and the address it
#: came from; None lets it through unchallenged. It must not raise.
AuthenticatorSelector = Callable[[SipRequest, Address], DigestServer | None]
#: Admission of one new incoming INVITE (request, source, now): None to take it, or
#: ``(why, retry_after_seconds)`` to refuse it statelessly with 503 + Retry-After before any
#: transaction exists (the cheapest refusal there is). It must not raise.
Admitter = Callable[[SipRequest, Address, float], tuple[str, int] | None]
#: Answers the peer's offer in a re-INVITE or UPDATE: ``(offer, our current SDP)`` to our answer.
#: An empty offer (an offer-less re-INVITE) asks for *our* offer, which then goes in the 2xx and
#: is answered in the ACK (§14.2). None refuses with 488; :class:`OfferRefused` refuses with
#: its status and reason (a Warning). It runs synchronously inside the core and must not block.
Answerer = Callable[[bytes, bytes], bytes | None]


class OfferRefused(RemoteProtocolError):
    """Raised by an :data:`Answerer` that will not accept an offer: the request is answered with
    ``status_hint`` (488 Not Acceptable Here by default, RFC 3261 §21.4.26) and a Warning
    carrying the message (§20.43). The session stays as it was (RFC 3264 §8)."""

    def __init__(self, message: str, *, status_hint: int = 488):
        super().__init__(message, status_hint=status_hint)


class Role(StrEnum):
    UAC = "uac"
    UAS = "uas"


class CallState(StrEnum):
    CALLING = "calling"  # INVITE sent (UAC) or received and not yet answered (UAS)
    EARLY = "early"  # a provisional response with a To tag sent or received
    CONFIRMED = "confirmed"  # 2xx sent or received: the dialog exists
    ENDED = "ended"


@dataclass(frozen=True)
class UserAgentConfig:
    """How our user agent presents itself.

    ``local`` maps each transport we listen on (``"udp"``, ``"tcp"``, ``"tls"``) to our
    address: it is our Via sent-by and Contact host. ``answer_reinvite`` builds the SDP answer
    to a re-INVITE from the offer and our current SDP (None: answer 488); the default handles
    hold/unhold with the same media. ``authenticator`` (optional) challenges new incoming
    INVITEs (RFC 3261 §22.2): one :class:`DigestServer` for all of them, or an
    :data:`AuthenticatorSelector` choosing one per request (per domain, say) or none.
    ``registrar``: new REGISTERs are challenged the same way and handed to the application as
    :class:`~callxml.sip.events.RegisterReceived` (the rules are :mod:`callxml.sip.register`'s);
    without it they get 405.
    ``session_timer`` is our side of RFC 4028 (None: no session timers, ``timer`` not supported).
    """

    local: Mapping[str, Address]
    user: str = "callxml"
    user_agent: str = "callxml"
    timers: TimerConfig = DEFAULT_TIMERS
    outbound_proxy: str | None = None
    answer_reinvite: Answerer | None = None
    authenticator: DigestServer | AuthenticatorSelector | None = None
    admit: Admitter | None = None
    registrar: bool = False
    session_timer: SessionTimerConfig | None = DEFAULT_SESSION_TIMER


@dataclass
class _Retransmit:
    """Our 2xx to an INVITE, resent until the ACK arrives (§13.3.1.4)."""

    response: SipResponse
    address: Address
    interval: float
    next_at: float
    give_up_at: float


@dataclass
class _Retry:
    """Our re-INVITE or UPDATE that got 491 (glare), waiting to be sent again (§14.1)."""

    method: str
    body: bytes
    headers: tuple[tuple[str, str], ...]
    at: float


@dataclass
class Call:
    """One INVITE dialog usage, ours (UAC) or the peer's (UAS). Read it; change it only
    through :class:`UserAgentCore` methods."""

    id: str
    role: Role
    invite: SipRequest  # the INVITE as last sent (UAC) or received (UAS)
    address: Address  # where the INVITE went (UAC) / came from (UAS)
    local_tag: str
    state: CallState = CallState.CALLING
    local_sdp: bytes = b""
    remote_sdp: bytes = b""
    dialog: Dialog | None = None
    credentials: Credentials | None = None
    end_reason: str = ""
    # UAC
    invite_key: TransactionKey | None = None
    cancel_requested: bool = False
    cancel_sent: bool = False
    provisional_seen: bool = False
    ack: SipRequest | None = None
    auth_realms: set[str] = field(default_factory=set)
    auth_attempts: int = 0
    # UAS
    server: ServerInviteTransaction | None = None
    retransmit: _Retransmit | None = None
    acked: bool = False
    bye_on_ack: bool = False  # hung up before the ACK: the BYE waits for it (§15)
    auth_user: str | None = None  # the username its digest credentials proved (§22.3)
    # both
    reinvite_key: TransactionKey | None = None
    update_key: TransactionKey | None = None  # our UPDATE in flight (RFC 3311)
    offer_pending: bool = False  # our re-INVITE/UPDATE carries an offer not yet answered
    offer_in_2xx: bool = False  # we offered in a 2xx (offer-less re-INVITE): answer in the ACK
    answerer: Answerer | None = None  # answers the peer's re-offers (set_answerer)
    retry: _Retry | None = None
    glare_retries: int = 0
    offer: bytes = b""  # the SDP of our pending re-INVITE/UPDATE (local_sdp once answered)
    modify_headers: tuple[tuple[str, str], ...] = ()  # its extra headers, for a retry
    peer_allows: frozenset[str] = frozenset()  # the peer's Allow (its INVITE, or its 2xx)
    timer_decision: UasDecision | None = None  # RFC 4028 §9, for the 2xx to an INVITE (UAS)
    session_timer: SessionTimer | None = None  # RFC 4028, once a 2xx settled an interval
    timer_retries: int = 0  # our requests answered 422 and sent again (§7.4)
    peer_timer: bool = False  # the peer said it supports session timers (Supported: timer)
    # RFC 3262: the PRACK order of each early dialog (UAC), our reliable 18x and a 2xx waiting
    # for their PRACK (UAS)
    early: dict[str, tuple[Dialog, ProvisionalOrder]] = field(default_factory=dict)
    reliable: ReliableProvisionals | None = None
    deferred_answer: bytes | None = None
    forget_at: float | None = None
    flow: Address | None = None  # UAS: the registered flow the caller's INVITE came over


_DIRECTION_LINE = r"(?m)^a=(sendrecv|sendonly|recvonly|inactive)[ \t]*\r?$"
_MIRROR = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


def answer_hold(offer: bytes, current: bytes) -> bytes | None:
    """Answer a hold/unhold re-INVITE with our current SDP (RFC 3264 §8.4, RFC 6337 §5.3).

    Mirrors the offer's direction (``sendonly`` → ``recvonly``, ``inactive`` stays, anything
    else → ``sendrecv``) into every media section of ``current`` and bumps the ``o=`` version
    when the text changes (RFC 3264 §8). An empty offer (offer-less re-INVITE) gets ``current``
    unchanged. Returns None when there is nothing to answer with (we then send 488).
    """
    if not current:
        return None
    if not offer:
        return current
    offered = re.findall(_DIRECTION_LINE, offer.decode("utf-8", "replace"))
    wanted = _MIRROR[offered[-1]] if offered else "sendrecv"
    lines = current.decode("utf-8", "replace").splitlines()
    out: list[str] = []
    in_media = False
    for line in lines:
        if re.fullmatch(_DIRECTION_LINE, line):
            continue
        if line.startswith("m="):
            if in_media:
                out.append(f"a={wanted}")
            in_media = True
        out.append(line)
    if in_media:
        out.append(f"a={wanted}")
    if out != lines:
        for index, line in enumerate(out):
            match = re.fullmatch(r"(o=\S+ \S+ )(\d+)( .*)", line)
            if match:
                version = int(match.group(2)) + 1
                out[index] = f"{match.group(1)}{version}{match.group(3)}"
                break
    return ("\r\n".join(out) + "\r\n").encode()


class UserAgentCore:
    """A sans-IO SIP user agent: UAC and UAS for INVITE calls, plus OPTIONS, BYE and CANCEL.

    Inputs carry ``now``; nothing here reads a clock. After any input, drain
    :meth:`outgoing` and :meth:`events`, and call :meth:`handle_timer` at :meth:`next_timer`.
    """

    def __init__(
        self,
        config: UserAgentConfig,
        *,
        auth_client: DigestClient | None = None,
        rng: random.Random | None = None,
    ):
        if not config.local:
            raise LocalProtocolError("a user agent needs at least one local address")
        self.config = config
        self._random = rng or random.Random()  # §14.1's glare waits (seeded in tests)
        self.calls: dict[str, Call] = {}
        self._auth = auth_client or DigestClient()
        self._client: dict[TransactionKey, ClientTransaction] = {}
        self._server: dict[TransactionKey, ServerTransaction] = {}
        self._owner: dict[TransactionKey, str] = {}  # transaction → call id
        self._dialogs: dict[DialogId, str] = {}
        self._credentials: dict[TransactionKey, Credentials] = {}  # for non-INVITE retries
        self._requests: set[TransactionKey] = set()  # client transactions the application owns
        self._registers: set[TransactionKey] = set()  # REGISTERs the application must answer
        self._touched: list[Transaction] = []
        self._out: list[tuple[SipMessage, Address]] = []
        self._events: list[Event] = []
        self._ids = itertools.count(1)
        #: What the core refused or lost, by kind: ``bad_request`` (answered 400 before any
        #: state), ``dropped`` (malformed and unanswerable), ``fault`` (a bug contained: the
        #: transaction or call it hit was ended). Read by the driver for metrics and tests.
        self.counters: Counter[str] = Counter()
        #: Transactions started, by ``(side, method)``: side ``server`` or ``client``; a method
        #: outside the methods SIP defines is counted as ``other`` so a peer cannot grow this.
        self.transactions: Counter[tuple[str, str]] = Counter()
        # Every deadline of every transaction and call, as (deadline, seq, kind, key): pushed
        # whenever one is set, stale entries skipped when met. Scanning every transaction on
        # every message instead made each message cost O(transactions) under load.
        self._timers: list[tuple[float, int, str, object]] = []
        self._timer_seq = itertools.count()

    # --- queries ---------------------------------------------------------------------------

    def outgoing(self) -> list[tuple[SipMessage, Address]]:
        """Messages to send with their destination, oldest first; clears the queue.

        Requests go to the destination given; responses go where RFC 3261 §18.2.2 says (the
        destination given is the request's source, which a driver may use instead).
        """
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        """Call-level events (:mod:`callxml.sip.events`), oldest first; clears the queue."""
        out, self._events = self._events, []
        return out

    def next_timer(self) -> float | None:
        heap = self._timers
        while heap:
            at, _, kind, key = heap[0]
            current = self._deadline_of(kind, key)
            if current is not None and current <= at:
                return current
            heapq.heappop(heap)  # stale: the object is gone or its deadline moved
            if current is not None and kind == "call":
                # A call's next deadline may be a later one of several (a 2xx retransmission
                # done, its session timer still running): keep that one in the heap.
                self._schedule(kind, key, current)
        return None

    def _deadline_of(self, kind: str, key: object) -> float | None:
        if kind == "txn":
            txn = self._transaction(key)
            return txn.next_timer() if txn is not None else None
        call = self.calls.get(str(key))
        return _call_deadline(call) if call is not None else None

    def _transaction(self, key: object) -> Transaction | None:
        assert isinstance(key, TransactionKey)
        return self._client.get(key) or self._server.get(key)

    def _schedule(self, kind: str, key: object, at: float | None) -> None:
        if at is not None:
            heapq.heappush(self._timers, (at, next(self._timer_seq), kind, key))

    def _schedule_call(self, call: Call) -> None:
        self._schedule("call", call.id, _call_deadline(call))

    # --- inputs: clock, network, transport -------------------------------------------------

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``. A fault in one transaction or call ends that one
        (see :meth:`_contain`) and the others still fire: one bad dialog must never stop the
        timers of every call."""
        due: dict[tuple[str, object], None] = {}
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, key = heapq.heappop(self._timers)
            due[(kind, key)] = None
        for kind, key in due:
            if kind == "txn":
                txn = self._transaction(key)
                deadline = txn.next_timer() if txn is not None else None
                if txn is None or deadline is None or deadline > now:
                    continue  # stale, or rescheduled (its later entry is in the heap)
                try:
                    txn.handle_timer(now)
                except Exception:
                    self._contain(now, txn=txn)
                    continue
                self._touched.append(txn)
                continue
            call = self.calls.get(str(key))
            if call is None:
                continue
            try:
                self._retransmit_2xx(call, now)
                self._retry_modification(call, now)
                self._session_timer_due(call, now)
                self._retransmit_provisional(call, now)
                if call.forget_at is not None and call.forget_at <= now:
                    self._forget(call)
                    continue
            except Exception:
                self._contain(now, call=call)
            self._schedule_call(call)
        self._pump(now)

    def receive(self, message: SipMessage, source: Address, now: float) -> None:
        """A message from the transport (already framed, parsed, and for requests stamped
        with ``received``/``rport``). Malformed content is answered with 400 (a Warning
        names what is wrong) or dropped; either way it leaves no state behind."""
        try:
            if isinstance(message, SipRequest):
                self._receive_request(message, source, now)
            else:
                self._receive_response(message, now)
        except RemoteProtocolError as exc:
            self._refuse(message, source, exc.status_hint, str(exc))
        except Exception:
            self._contain(now)
        self._pump(now)

    def _refuse(self, message: SipMessage, source: Address, status: int, why: str) -> None:
        """Answer a request we will not process, statelessly (no transaction, no dialog), with a
        Warning saying why; ACKs and responses are dropped (nothing can answer them)."""
        if not isinstance(message, SipRequest) or message.method == "ACK":
            self.counters["dropped"] += 1
            return
        warning = warning_value(self._warn_agent(source.transport), why)
        try:
            response = make_response(message, status, headers=(("Warning", warning),))
        except (RemoteProtocolError, LocalProtocolError):
            self.counters["dropped"] += 1
            return
        self.counters["bad_request"] += 1
        self._out.append((response, source))

    def _contain(
        self, now: float, *, txn: Transaction | None = None, call: Call | None = None
    ) -> None:
        """A bug met while handling one transaction or call (the exception being handled):
        log it once, end what it hit so it cannot fire again, and carry on with the rest."""
        self.counters["fault"] += 1
        logger.exception("SIP core fault (%s); ending what it affected", txn or call or "input")
        if txn is not None:
            self._server.pop(txn.key, None)
            self._client.pop(txn.key, None)
            self._requests.discard(txn.key)
            self._registers.discard(txn.key)
            call = call or self.calls.get(self._owner.pop(txn.key, ""))
        if call is not None and call.state is not CallState.ENDED:
            self._end(call, now, "internal error")
            self._events.append(CallEnded(call.id, by_peer=False, reason="internal error"))
        elif call is not None:
            self._forget(call)

    def _warn_agent(self, transport: str) -> str:
        local = self.config.local.get(transport) or next(iter(self.config.local.values()))
        return _hostport(local)

    def transport_error(self, message: SipMessage, now: float, reason: str = "") -> None:
        """The driver could not send ``message``: fail the transaction that sent it."""
        try:
            if isinstance(message, SipRequest):
                txn: Transaction | None = self._client.get(client_key(message))
            else:
                via = message.vias[0]
                key = TransactionKey(
                    via.branch or "", via.sent_by.lower(), message.cseq.method, True
                )
                txn = self._server.get(key)
        except (RemoteProtocolError, IndexError):
            return
        if txn is not None:
            txn.transport_error(now, reason or "transport error")
            self._touched.append(txn)
        self._pump(now)

    # --- the application's verbs -------------------------------------------------------------

    def send_request(self, request: SipRequest, destination: Address, now: float) -> TransactionKey:
        """Send an out-of-dialog non-INVITE request the application owns (a REGISTER, RFC 3261
        §10.2) in a client transaction of its own (§17.1.2); returns its key.

        Its final response comes back as a :class:`~callxml.sip.events.ResponseReceived` event
        with that key, or its failure as :class:`~callxml.sip.events.TransactionTimedOut` /
        :class:`~callxml.sip.events.TransportErrorOccurred`; provisional responses are absorbed.
        Authentication and retries are the application's (:mod:`callxml.sip.register`).
        """
        if request.method in ("INVITE", "ACK", "CANCEL"):
            raise LocalProtocolError(f"send_request() does not send {request.method}")
        txn = ClientNonInviteTransaction(request, destination, now, config=self.config.timers)
        if txn.key in self._client:
            raise LocalProtocolError(f"a transaction with branch {txn.key.branch} exists")
        self._client[txn.key] = txn
        self._requests.add(txn.key)
        self._touched.append(txn)
        self._pump(now)
        return txn.key

    def respond(
        self,
        key: TransactionKey,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Answer a REGISTER reported by :class:`~callxml.sip.events.RegisterReceived` with a
        final response (a To tag is added, §8.2.6.2)."""
        if key not in self._registers:
            raise LocalProtocolError("no REGISTER waits for an answer under that key")
        if status < 200:
            raise LocalProtocolError("respond() sends a final response (200-699)")
        self._registers.discard(key)
        txn = self._server.get(key)
        if txn is None or txn.state not in (State.TRYING, State.PROCEEDING):
            return  # the transaction is gone (a transport error): nobody to answer
        self._reply(txn, status, now, reason=reason, headers=headers)
        self._pump(now)

    def invite(
        self,
        target: str,
        now: float,
        *,
        sdp: bytes = b"",
        credentials: Credentials | None = None,
        headers: Sequence[tuple[str, str]] = (),
        from_uri: str | None = None,
        display_name: str | None = None,
        destination: Address | None = None,
    ) -> Call:
        """Start an outgoing call to ``target`` (a sip/sips URI) offering ``sdp``.

        ``destination`` overrides where the INVITE goes (else the outbound proxy, else the
        target's host, RFC 3263 without DNS). ``credentials`` answer 401/407 challenges.
        """
        proxy = self.config.outbound_proxy
        if destination is None:
            destination = next_hop(proxy or target)
        local = self._local(destination.transport)
        from_uri = from_uri or f"sip:{self.config.user}@{local.host}"
        call_id = new_call_id(local.host)
        tag = new_tag()
        h = Headers()
        h.add("Via", f"{self._via(destination.transport)};branch={new_branch()}")
        h.add("Max-Forwards", "70")
        shown = f'"{display_name}" ' if display_name else ""
        h.add("From", f"{shown}<{from_uri}>;tag={tag}")
        h.add("To", f"<{target}>")
        h.add("Call-ID", call_id)
        h.add("CSeq", "1 INVITE")
        if proxy is not None:
            h.add("Route", f"<{proxy};lr>" if ";lr" not in proxy else f"<{proxy}>")
        h.add("Contact", self._contact(destination.transport, secure=target.startswith("sips:")))
        self._common_headers(h)
        if self.config.session_timer is not None:  # RFC 4028 §7.1
            for name, value in request_headers(self.config.session_timer):
                h.add(name, value)
        for name, value in headers:
            h.add(name, value)
        if sdp:
            h.add("Content-Type", "application/sdp")
        request = SipRequest("INVITE", target, h, sdp)
        call = Call(
            id=f"out-{next(self._ids)}",
            role=Role.UAC,
            invite=request,
            address=destination,
            local_tag=tag,
            local_sdp=sdp,
            credentials=credentials,
        )
        self.calls[call.id] = call
        self._start_client(request, destination, now, call)
        self._pump(now)
        return call

    def ring(self, call_id: str, now: float, *, status: int = 180, sdp: bytes = b"") -> None:
        """Send a provisional response (180 Ringing, 183 with early media ``sdp``)."""
        call = self._uas_call(call_id)
        if not 100 < status < 200:
            raise LocalProtocolError("ring() sends 101-199")
        response = self._response(call, status, sdp)
        assert call.server is not None
        call.state = CallState.EARLY
        if call.reliable is not None:  # RFC 3262 §3: the caller requires 100rel
            self._early_dialog(call)
            ready = call.reliable.send(response, now)
            if ready is None:
                self._pump(now)  # it goes after the PRACK of the one before
                return
            response = ready
            self._schedule_call(call)
        call.server.send_response(response, now)
        self._touched.append(call.server)
        self._pump(now)

    def answer(self, call_id: str, sdp: bytes, now: float) -> None:
        """Answer an incoming call with 200 OK carrying ``sdp``; retransmitted until ACKed.
        While a reliable 183 with SDP awaits its PRACK, the 2xx waits too (RFC 3262 §3)."""
        call = self._uas_call(call_id)
        if call.reliable is not None and call.reliable.blocks_answer:
            call.deferred_answer = sdp
            self._pump(now)
            return
        self._send_answer(call, sdp, now)
        self._pump(now)

    def _send_answer(self, call: Call, sdp: bytes, now: float) -> None:
        if call.reliable is not None:
            call.reliable.stop()  # §3: a final response ends the provisional retransmissions
        decision = call.timer_decision
        extra = decision.response_headers() if decision is not None else []
        response = self._response(call, 200, sdp, extra=extra)
        if decision is not None:  # RFC 4028 §9: the interval starts with our 2xx
            call.session_timer = SessionTimer(decision.interval, decision.we_refresh, now)
        dialog = call.dialog or Dialog.for_uas(call.invite, call.local_tag)  # early one, if any
        dialog.state = DialogState.CONFIRMED
        dialog.flow = call.flow  # a registered caller is reached over its flow (RFC 5626 §5.3)
        call.dialog = dialog
        call.local_sdp = sdp
        call.state = CallState.CONFIRMED
        self._dialogs[dialog.id] = call.id
        assert call.server is not None
        call.server.send_response(response, now)
        self._touched.append(call.server)
        self._start_retransmit(call, response, call.address, now)

    def reject(
        self,
        call_id: str,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Refuse an incoming call with a final status 300-699 (486 Busy, 603 Decline...)."""
        call = self._uas_call(call_id)
        if status < 300:
            raise LocalProtocolError("reject() needs a status of 300-699")
        if call.reliable is not None:
            call.reliable.stop()
        response = make_response(
            call.invite, status, reason, to_tag=call.local_tag, headers=tuple(headers)
        )
        assert call.server is not None
        call.server.send_response(response, now)
        self._touched.append(call.server)
        self._end(call, now, f"rejected with {status}")
        self._pump(now)

    def keep_on_flow(self, call_id: str) -> None:
        """The caller of incoming call ``call_id`` is a registered device and its INVITE came
        over that device's flow: send our in-dialog requests (BYE, re-INVITE) over it too, not
        to its Contact, which may be unreachable behind NAT (RFC 5626 §5.3)."""
        call = self._uas_call(call_id)
        source = call.address
        call.flow = Address(source.transport, source.host, source.port, flow=True)

    def cancel(self, call_id: str, now: float) -> None:
        """CANCEL our pending INVITE (§9.1). Sent once a provisional response has arrived;
        the call then fails with 487 (or, if a 2xx crosses the CANCEL, is hung up)."""
        call = self._call(call_id)
        if call.role is not Role.UAC or call.state not in (CallState.CALLING, CallState.EARLY):
            raise LocalProtocolError(f"cannot cancel {call.id} in state {call.state}")
        if call.cancel_requested:
            return
        call.cancel_requested = True
        if call.provisional_seen:
            self._send_cancel(call, now)
        self._pump(now)

    def bye(self, call_id: str, now: float) -> None:
        """Hang up an established call with BYE (§15.1.1); the call ends at once.

        A call we answered whose ACK has not arrived yet ends for the application at once too,
        but its BYE waits for the ACK (or for our 2xx retransmissions to give up): §15 says the
        callee MUST NOT send BYE before, and a BYE overtaking the 2xx (two proxy processes
        relaying them, say) makes the caller drop the call as a failure."""
        call = self._call(call_id)
        if call.dialog is None or call.state is not CallState.CONFIRMED:
            raise LocalProtocolError(f"cannot send BYE on {call.id} in state {call.state}")
        if call.bye_on_ack:
            return
        if call.role is Role.UAS and not call.acked and call.retransmit is not None:
            call.bye_on_ack = True
            self._events.append(CallEnded(call.id, by_peer=False, reason="local BYE"))
            self._pump(now)
            return
        self._send_in_dialog(call, "BYE", now)
        self._end(call, now, "local BYE")
        self._events.append(CallEnded(call.id, by_peer=False, reason="local BYE"))
        self._pump(now)

    def hangup(self, call_id: str, now: float) -> None:
        """Whatever ends the call from here: BYE, CANCEL, or 480 for an unanswered call."""
        call = self._call(call_id)
        if call.state is CallState.ENDED:
            return
        if call.state is CallState.CONFIRMED:
            self.bye(call_id, now)
        elif call.role is Role.UAC:
            self.cancel(call_id, now)
        else:
            self.reject(call_id, 480, now)

    def reinvite(
        self, call_id: str, sdp: bytes, now: float, *, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Send a re-INVITE with a new offer (hold, new media, a session refresh) on an
        established call (§14.1). The answer comes back as :class:`ReofferAnswered`, a failure
        as :class:`ReofferFailed`; 491 (glare) is retried after §14.1's random wait. We never
        send an offer-less re-INVITE: its 2xx would carry an offer our ACK must answer."""
        if not sdp:
            raise LocalProtocolError("a re-INVITE we send carries an offer (§14.1)")
        call = self._modifiable(call_id, "re-INVITE")
        self._send_modification(call, "INVITE", sdp, tuple(headers), now)
        self._pump(now)

    def update(
        self,
        call_id: str,
        now: float,
        *,
        sdp: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Send an UPDATE (RFC 3311 §5.1) on an established call: a new offer ``sdp``, or none
        (a session refresh, RFC 4028 §7.4). Reported like :meth:`reinvite`. Only send it to a
        peer whose Allow lists UPDATE (RFC 3311 §5.1); others answer 405 or 501."""
        call = self._modifiable(call_id, "UPDATE")
        self._send_modification(call, "UPDATE", sdp, tuple(headers), now)
        self._pump(now)

    def set_answerer(self, call_id: str, answerer: Answerer | None) -> None:
        """Answer the peer's re-INVITEs and UPDATEs on this call with ``answerer`` (None: the
        configured default, :attr:`UserAgentConfig.answer_reinvite` or :func:`answer_hold`)."""
        self._call(call_id).answerer = answerer

    def _modifiable(self, call_id: str, what: str) -> Call:
        call = self._call(call_id)
        if call.dialog is None or call.state is not CallState.CONFIRMED:
            raise LocalProtocolError(f"cannot {what} {call.id} in state {call.state}")
        if call.reinvite_key is not None or call.update_key is not None:
            # §14.1, RFC 3311 §5.1: one offer at a time.
            raise LocalProtocolError("a re-INVITE or UPDATE is already pending")
        call.retry = None  # a newer modification replaces one waiting out a 491
        return call

    def _send_modification(
        self,
        call: Call,
        method: str,
        body: bytes,
        headers: tuple[tuple[str, str], ...],
        now: float,
    ) -> None:
        call.offer = body
        call.offer_pending = bool(body)
        call.modify_headers = headers
        extra = list(headers)
        timer, config = call.session_timer, self.config.session_timer
        if timer is not None and config is not None:
            # RFC 4028 §7.4: every re-INVITE/UPDATE we send is a refresh; the refresher stays
            # who it is (the UAC of this request when it is us).
            refresher = Refresher.UAC if timer.we_refresh else Refresher.UAS
            extra += request_headers(config, interval=timer.interval, refresher=refresher)
            timer.refresh_sent()
        self._send_in_dialog(call, method, now, body=body, headers=extra)

    # --- requests from the network -----------------------------------------------------------

    def _receive_request(self, request: SipRequest, source: Address, now: float) -> None:
        key = server_key(request)
        txn = self._server.get(key)
        if request.method == "ACK":
            if txn is not None and txn.state is State.COMPLETED:
                txn.receive_request(request, now)  # ACK for our non-2xx (§17.2.1)
                self._touched.append(txn)
            else:
                self._receive_2xx_ack(request, now)  # its own transaction (§17.2.3, §13.3.1.4)
            return
        if txn is not None:  # a retransmission (§17.2.3)
            txn.receive_request(request, now)
            self._touched.append(txn)
            return
        problem = header_problem(request)
        if problem is not None:  # §8.2: refused before any transaction or dialog exists
            self._refuse(request, source, 400, problem)
            return
        if request.method == "INVITE" and request.to.tag is None and self.config.admit:
            refusal = self.config.admit(request, source, now)
            if refusal is not None:  # overload: refused before it costs anything more
                why, retry_after = refusal
                warning = warning_value(self._warn_agent(source.transport), why)
                headers = (("Retry-After", str(retry_after)), ("Warning", warning))
                busy = make_response(request, 503, to_tag=new_tag(), headers=headers)
                self.counters["refused"] += 1
                self._out.append((busy, source))
                return
        if len(self._server) >= MAX_SERVER_TRANSACTIONS:  # overload: answer without state
            busy = make_response(request, 503, headers=(("Retry-After", "5"),))
            self._out.append((busy, source))
            return
        if request.method == "INVITE":
            txn = ServerInviteTransaction(request, source, now, config=self.config.timers)
        else:
            txn = ServerNonInviteTransaction(request, source, now, config=self.config.timers)
        self._server[txn.key] = txn
        self.transactions["server", _counted(request.method)] += 1
        self._touched.append(txn)  # its RequestReceived event leads to _on_request

    def _on_request(self, txn: ServerTransaction, request: SipRequest, now: float) -> None:
        method = request.method
        status = check_request(
            request,
            methods=None,
            supported=self._supported(),
            content_types=("application/sdp",) if method in ("INVITE", "UPDATE") else None,
            answer_types=("application/sdp",) if method == "INVITE" else None,
        )
        if status is not None:
            extra: list[tuple[str, str]] = []
            if status == 420:
                unsupported = unsupported_options(request, self._supported())
                extra.append(("Unsupported", ", ".join(unsupported)))
            if status in (415, 406):
                extra.append(("Accept", "application/sdp"))
            self._reply(txn, status, now, headers=extra)
            return
        if method == "CANCEL":
            self._on_cancel(txn, request, now)
            return
        if request.to.tag is not None:
            self._on_in_dialog(txn, request, now)
            return
        if method == "INVITE":
            self._on_new_invite(txn, request, now)
        elif method == "REGISTER" and self.config.registrar:
            self._on_register(txn, request, now)
        elif method == "OPTIONS":
            self._reply(txn, 200, now, headers=self._capabilities())
        elif method == "BYE":
            self._reply(txn, 481, now)
        else:
            self._reply_unsupported(txn, now)

    def _on_new_invite(self, txn: ServerTransaction, request: SipRequest, now: float) -> None:
        assert isinstance(txn, ServerInviteTransaction)
        auth_user = None
        server = self._authenticator_for(request, txn.address)
        if server is not None:
            auth_user = self._authenticate(txn, server, request, now)
            if auth_user is None:
                return
        if len(self.calls) >= MAX_CALLS and (
            sum(c.state is not CallState.ENDED for c in self.calls.values()) >= MAX_CALLS
        ):
            self._reply(txn, 503, now, headers=[("Retry-After", "5")])
            return
        decision = self._timer_decision(txn, request, now)
        if decision is not None and decision.too_small is not None:
            return  # answered 422 (RFC 4028 §9)
        call = Call(
            id=f"in-{next(self._ids)}",
            role=Role.UAS,
            invite=request,
            address=txn.address,
            local_tag=new_tag(),
            remote_sdp=request.body,
            server=txn,
            auth_user=auth_user,
            peer_allows=_allowed(request),
            timer_decision=decision,
            peer_timer=supports_timer(request),
        )
        if requires_100rel(request):  # RFC 3262 §3: then every 18x goes reliably
            call.reliable = ReliableProvisionals(self.config.timers.t1, rng=self._random)
        self.calls[call.id] = call
        self._owner[txn.key] = call.id
        self._events.append(InviteReceived(call.id, request, txn.address))

    def _on_register(self, txn: ServerTransaction, request: SipRequest, now: float) -> None:
        """§10.3 steps 2-3 here (authentication with the same digest servers as INVITEs); the
        binding rules are the application's registrar (:mod:`callxml.sip.register`)."""
        auth_user = None
        server = self._authenticator_for(request, txn.address)
        if server is not None:
            auth_user = self._authenticate(txn, server, request, now)
            if auth_user is None:
                return
        if len(self._registers) >= MAX_PENDING_REGISTERS:
            self._reply(txn, 503, now, headers=[("Retry-After", "5")])
            return
        self._registers.add(txn.key)
        self._events.append(RegisterReceived(txn.key, request, txn.address, auth_user))

    def _authenticator_for(self, request: SipRequest, source: Address) -> DigestServer | None:
        choice = self.config.authenticator
        if choice is None or isinstance(choice, DigestServer):
            return choice
        return choice(request, source)

    def _authenticate(
        self, txn: ServerTransaction, server: DigestServer, request: SipRequest, now: float
    ) -> str | None:
        """The username the request's credentials prove, or None once it has been answered.

        §22.3 / RFC 7616 §3.3: no credentials for our realm (or a nonce we did not issue, e.g.
        before a restart) → 401 with fresh challenges; right password on an expired or used-up
        nonce → 401 with ``stale=true``; anything else (wrong password, unknown user, wrong
        digest-uri...) → 403, so a wrong password ends the attempt instead of looping.
        """
        ours: DigestAuthorization | None = None
        for value in request.headers.get_all("Authorization")[:MAX_AUTHORIZATIONS]:
            try:
                parsed = parse_authorization(value)
            except RemoteProtocolError:
                continue  # another scheme or a broken value: look for one we can use
            if parsed.realm == server.realm:
                ours = parsed
                break
        stale = False
        if ours is not None:
            result = server.verify(ours, request.method, request.uri, now, request.body)
            if result.ok:
                return result.username or ours.username
            # "unknown nonce" is DigestServer's verdict on a nonce it did not sign.
            if not result.stale and result.reason != "unknown nonce":
                self._reply(txn, 403, now, to_tag=new_tag())
                return None
            stale = result.stale
        challenges = [("WWW-Authenticate", str(c)) for c in server.challenges(now, stale=stale)]
        self._reply(txn, 401, now, headers=challenges, to_tag=new_tag())
        return None

    def _on_cancel(self, txn: ServerTransaction, request: SipRequest, now: float) -> None:
        """§9.2: 200 to the CANCEL, 487 to the INVITE it matches if still unanswered."""
        invite_key = replace(txn.key, method="INVITE")
        invite_txn = self._server.get(invite_key)
        if invite_txn is None:
            self._reply(txn, 481, now)
            return
        call = self.calls.get(self._owner.get(invite_key, ""))
        to_tag = call.local_tag if call is not None else new_tag()
        self._reply(txn, 200, now, to_tag=to_tag)
        if invite_txn.state is State.PROCEEDING:
            response = make_response(invite_txn.request, 487, to_tag=to_tag)
            invite_txn.send_response(response, now)
            self._touched.append(invite_txn)
            if call is not None:
                self._end(call, now, "cancelled by the caller")
                self._events.append(CallCancelled(call.id))

    def _on_in_dialog(self, txn: ServerTransaction, request: SipRequest, now: float) -> None:
        dialog_id = DialogId(request.call_id, request.to.tag or "", request.from_.tag or "")
        call = self.calls.get(self._dialogs.get(dialog_id, ""))
        if call is None or call.dialog is None:
            self._reply(txn, 481, now)  # §12.2.2
            return
        dialog = call.dialog
        if not dialog.check_remote_seq(request):
            self._reply(txn, 500, now, reason="CSeq out of order")
            return
        method = request.method
        if method == "PRACK":
            self._on_prack(call, txn, request, now)
            return
        if call.state in (CallState.CALLING, CallState.EARLY):
            self._on_early_request(call, txn, request, now)
            return
        if method == "BYE":
            self._reply(txn, 200, now)
            if call.state is not CallState.ENDED:
                self._end(call, now, "BYE from the peer")
                self._events.append(CallEnded(call.id, by_peer=True, reason="BYE"))
        elif method == "INVITE":
            self._on_reinvite(call, txn, request, now)
        elif method == "UPDATE":
            self._on_update(call, txn, request, now)
        elif method == "OPTIONS":
            self._reply(txn, 200, now, headers=self._capabilities())
        else:
            self._reply_unsupported(txn, now)

    def _on_reinvite(
        self, call: Call, txn: ServerTransaction, request: SipRequest, now: float
    ) -> None:
        assert call.dialog is not None and isinstance(txn, ServerInviteTransaction)
        if call.reinvite_key is not None or (call.offer_pending and request.body):
            self._reply(txn, 491, now)  # glare, §14.2 (RFC 3311 §5.2 for our UPDATE's offer)
            return
        if call.retransmit is not None:
            self._reply(txn, 500, now, headers=[("Retry-After", "1")])  # §14.2
            return
        decision = self._timer_decision(txn, request, now)
        if decision is not None and decision.too_small is not None:
            return  # answered 422 (RFC 4028 §9)
        sdp = self._answer(call, txn, request, now)
        if sdp is None:
            return
        if not request.body:
            call.offer_in_2xx = True  # we offer in the 2xx; the answer comes in the ACK
        call.dialog.refresh_target(request)
        call.server = txn
        self._owner[txn.key] = call.id
        extra = self._refreshed(call, decision, now)
        response = self._response(call, 200, sdp, request, extra=extra)
        txn.send_response(response, now)
        self._touched.append(txn)
        self._start_retransmit(call, response, txn.address, now)
        self._events.append(CallReinvited(call.id, request))

    def _on_update(
        self, call: Call, txn: ServerTransaction, request: SipRequest, now: float
    ) -> None:
        """RFC 3311 §5.2: an UPDATE with an offer is answered in its 2xx (by the call's
        answerer), one without is a refresh; both are target refreshes."""
        assert call.dialog is not None
        if request.body and (call.offer_pending or call.offer_in_2xx):
            # §5.2: our own offer is unanswered (491), or went in a 2xx awaiting its ACK (500).
            if call.offer_pending:
                self._reply(txn, 491, now)
            else:
                self._reply(txn, 500, now, headers=[("Retry-After", "1")])
            return
        decision = self._timer_decision(txn, request, now)
        if decision is not None and decision.too_small is not None:
            return  # answered 422 (RFC 4028 §9)
        sdp = b""
        if request.body:
            answer = self._answer(call, txn, request, now)
            if answer is None:
                return
            sdp = answer
        call.dialog.refresh_target(request)
        extra = self._refreshed(call, decision, now)
        response = self._response(call, 200, sdp, request, extra=extra)
        txn.send_response(response, now)
        self._touched.append(txn)
        self._events.append(CallReinvited(call.id, request))

    def _answer(
        self, call: Call, txn: ServerTransaction, request: SipRequest, now: float
    ) -> bytes | None:
        """Our SDP for the 2xx to the peer's re-INVITE or UPDATE, from the call's answerer; None
        once the request has been refused (488, or the status :class:`OfferRefused` names)."""
        answerer = call.answerer or self.config.answer_reinvite or answer_hold
        try:
            sdp = answerer(request.body, call.local_sdp)
        except OfferRefused as exc:
            warning = warning_value(self._warn_agent(txn.address.transport), str(exc))
            self._reply(txn, exc.status_hint, now, headers=[("Warning", warning)])
            return None
        if sdp is None:
            self._reply(txn, 488, now)
            return None
        if request.body:
            call.remote_sdp = request.body
        call.local_sdp = sdp
        return sdp

    def _receive_2xx_ack(self, ack: SipRequest, now: float) -> None:
        dialog_id = DialogId(ack.call_id, ack.to.tag or "", ack.from_.tag or "")
        call = self.calls.get(self._dialogs.get(dialog_id, ""))
        if call is None or call.retransmit is None:
            self.counters["stray"] += 1
            return  # a retransmitted or stray ACK: absorbed
        if ack.cseq.seq != call.retransmit.response.cseq.seq:
            return
        first = not call.acked
        call.retransmit = None
        call.acked = True
        if ack.body:
            call.remote_sdp = ack.body  # offer in the 2xx, answer in the ACK (§13.2.1)
        if call.bye_on_ack:  # the application hung up before the ACK (see bye)
            self._send_in_dialog(call, "BYE", now)
            self._end(call, now, "local BYE")
            return
        if first:
            self._events.append(DialogConfirmed(call.id, ack))
        elif call.offer_in_2xx:  # the answer to the offer of our 2xx to an offer-less re-INVITE
            call.offer_in_2xx = False
            self._events.append(ReofferAnswered(call.id, ack.body, "INVITE"))

    # --- responses from the network ----------------------------------------------------------

    def _receive_response(self, response: SipResponse, now: float) -> None:
        txn = self._client.get(client_key(response))
        if txn is None:
            # §13.2.2.4 / RFC 6026: a 2xx retransmission after Timer M still needs our ACK.
            self.counters["stray"] += 1
            self._late_2xx(response)
            return
        txn.receive_response(response, now)
        self._touched.append(txn)

    def _on_response(self, txn: ClientTransaction, response: SipResponse, now: float) -> None:
        if txn.key in self._requests:  # the application's own request (send_request)
            if response.status >= 200:
                self._events.append(ResponseReceived(txn.key, response))
            return
        call = self.calls.get(self._owner.get(txn.key, ""))
        method = txn.request.method
        if call is None:
            return
        if method == "INVITE" and txn.key == call.reinvite_key:
            self._on_reinvite_response(call, txn, response, now)
        elif method == "INVITE":
            self._on_invite_response(call, txn, response, now)
        elif method == "UPDATE" and txn.key == call.update_key and response.status >= 200:
            self._on_update_response(call, txn, response, now)
        elif response.status in (401, 407) and method != "CANCEL":
            creds = self._credentials.get(txn.key) or call.credentials
            retry = self._authorized_retry(call, txn.request, response, creds)
            if retry is not None and creds is not None:
                self._credentials[client_key(retry)] = creds
                self._start_client(retry, txn.address, now, call)

    def _on_invite_response(
        self, call: Call, txn: ClientTransaction, response: SipResponse, now: float
    ) -> None:
        status = response.status
        if status < 200:
            call.provisional_seen = True
            rseq = reliable_rseq(response)
            if rseq is not None and not self._prack(call, txn, response, rseq, now):
                return  # a retransmitted or out-of-order reliable provisional (RFC 3262 §4)
            if status > 100 and call.state is CallState.CALLING:
                call.state = CallState.EARLY if response.to.tag else call.state
            if status > 100:
                self._events.append(CallProgress(call.id, response))
            if call.cancel_requested and not call.cancel_sent:
                self._send_cancel(call, now)
            return
        if status < 300:
            self._on_invite_2xx(call, txn, response, now)
            return
        if status in (401, 407) and not call.cancel_requested:
            retry = self._authorized_retry(call, call.invite, response, call.credentials)
            if retry is not None:
                call.invite = retry
                call.provisional_seen = False
                self._start_client(retry, txn.address, now, call)
                return
        if status == 422 and not call.cancel_requested:
            retry = self._retry_after_422(call, call.invite, response)
            if retry is not None:
                call.invite = retry
                call.provisional_seen = False
                self._start_client(retry, txn.address, now, call)
                return
        if call.state is not CallState.ENDED:
            self._end(call, now, f"{status} {response.reason}")
            self._events.append(CallFailed(call.id, status, response.reason, response))

    def _on_invite_2xx(
        self, call: Call, txn: ClientTransaction, response: SipResponse, now: float
    ) -> None:
        tag = response.to.tag or ""
        if call.dialog is not None and call.dialog.state is DialogState.CONFIRMED:
            if tag == call.dialog.remote_tag:
                if call.ack is not None:  # a retransmitted 2xx: ACK again (§13.2.2.4)
                    self._out.append((call.ack, call.dialog.destination()))
                return
            self._ack_and_bye(call, response, now)  # a forked 2xx: ACK, then BYE (§13.2.2.4)
            return
        dialog = Dialog.for_uac(txn.request, response)
        dialog.state = DialogState.CONFIRMED
        if call.address.flow:  # a registered device reached over its flow (RFC 5626 §5.3)
            dialog.flow = call.address
        call.dialog = dialog
        self._dialogs[dialog.id] = call.id
        call.remote_sdp = response.body
        call.state = CallState.CONFIRMED
        call.peer_allows = _allowed(response)
        call.peer_timer = supports_timer(response)
        early = call.early.get(tag)
        if early is not None:  # PRACKs went in this dialog: our CSeq carries on from them
            dialog.local_seq = max(dialog.local_seq, early[0].local_seq)
        call.early.clear()
        self._uac_timer(call, response, now)
        destination = dialog.destination()
        call.ack = dialog.create_ack(txn.request.cseq.seq, via=self._via(destination.transport))
        self._out.append((call.ack, destination))
        if call.cancel_requested:  # the 2xx crossed our CANCEL: hang up (§9.1)
            self._send_in_dialog(call, "BYE", now)
            self._end(call, now, "answered after CANCEL")
            self._events.append(CallFailed(call.id, 487, "Request Terminated", response))
            return
        self._events.append(CallAnswered(call.id, response))

    def _on_reinvite_response(
        self, call: Call, txn: ClientTransaction, response: SipResponse, now: float
    ) -> None:
        status = response.status
        if status < 200 or call.dialog is None:
            return
        if status < 300:
            destination = call.dialog.destination()
            ack = call.dialog.create_ack(txn.request.cseq.seq, via=self._via(destination.transport))
            self._out.append((ack, destination))
            if call.reinvite_key == txn.key:
                call.reinvite_key = None
                call.dialog.refresh_target(response)
                self._uac_timer(call, response, now)
                self._offer_answered(call, "INVITE", response.body)
            return
        call.reinvite_key = None
        if status in (401, 407):
            retry = self._authorized_retry(call, txn.request, response, call.credentials)
            if retry is not None:
                self._start_client(retry, txn.address, now, call)  # sets reinvite_key again
                return
        if status == 422 and self._refresh_after_422(call, "INVITE", response, now):
            return
        self._offer_failed(call, "INVITE", status, now)

    def _on_update_response(
        self, call: Call, txn: ClientTransaction, response: SipResponse, now: float
    ) -> None:
        status = response.status
        call.update_key = None
        if status < 300:
            if call.dialog is not None:
                call.dialog.refresh_target(response)  # RFC 3311 §5.1: a target refresh
            self._uac_timer(call, response, now)
            self._offer_answered(call, "UPDATE", response.body)
            return
        if status in (401, 407):
            creds = self._credentials.get(txn.key) or call.credentials
            retry = self._authorized_retry(call, txn.request, response, creds)
            if retry is not None and creds is not None:
                self._credentials[client_key(retry)] = creds
                self._start_client(retry, txn.address, now, call)  # sets update_key again
                return
        if status == 422 and self._refresh_after_422(call, "UPDATE", response, now):
            return
        self._offer_failed(call, "UPDATE", status, now)

    def _offer_answered(self, call: Call, method: str, sdp: bytes) -> None:
        """Our re-INVITE/UPDATE got its 2xx: what we offered is now our SDP (RFC 3264 §8)."""
        if call.offer_pending and sdp:
            call.local_sdp = call.offer
            call.remote_sdp = sdp
        call.offer, call.offer_pending, call.glare_retries = b"", False, 0
        self._events.append(ReofferAnswered(call.id, sdp, method))

    def _offer_failed(self, call: Call, method: str, status: int, now: float) -> None:
        """Our re-INVITE/UPDATE failed: the session stays as it was (§14.1, RFC 3264 §8). A 491
        (glare) is retried after a random wait (§14.1: 2.1-4 s when we own the Call-ID, else up
        to 2 s); 408, 481 or no response at all mean the dialog is gone (§12.2.1.2, §14.1)."""
        if call.state is CallState.ENDED:
            return
        if status == 491 and call.glare_retries < MAX_GLARE_RETRIES:
            owner = call.role is Role.UAC
            wait = self._random.uniform(2.1, 4.0) if owner else self._random.uniform(0.0, 2.0)
            call.glare_retries += 1
            call.retry = _Retry(method, call.offer, call.modify_headers, now + wait)
            call.offer_pending = False  # that offer is dead; the peer's may be answered meanwhile
            self._schedule_call(call)
            return
        call.offer, call.offer_pending, call.glare_retries = b"", False, 0
        if call.session_timer is not None and status not in (408, 481):
            call.session_timer.refresh_failed(status, now)  # retried before the expiry (§10)
            self._schedule_call(call)
        if status in (408, 481) and call.dialog is not None:
            self._send_in_dialog(call, "BYE", now)
            self._end(call, now, f"{'re-INVITE' if method == 'INVITE' else method} got {status}")
            self._events.append(CallEnded(call.id, by_peer=False, reason=f"{status}"))
            return
        self._events.append(ReofferFailed(call.id, status, method))

    # --- reliable provisional responses (RFC 3262) --------------------------------------------

    def _prack(
        self, call: Call, txn: ClientTransaction, response: SipResponse, rseq: int, now: float
    ) -> bool:
        """§4: PRACK a reliable provisional response to our INVITE, in its early dialog, once
        and in order. False when it is a retransmission or out of order (then dropped)."""
        tag = response.to.tag
        if not tag:
            return True  # no early dialog to PRACK in: an ordinary provisional after all
        early = call.early.get(tag)
        if early is None:
            if len(call.early) >= MAX_EARLY_DIALOGS:
                return True
            try:
                early = (Dialog.for_uac(txn.request, response), ProvisionalOrder())
            except RemoteProtocolError:
                return True
            call.early[tag] = early
        dialog, order = early
        if not order.accept(rseq):
            return False
        destination = dialog.destination()
        rack = f"{rseq} {txn.request.cseq.seq} {txn.request.method}"
        headers = [("RAck", rack), *self._common_headers(Headers()).items()]
        prack = dialog.create_request(
            "PRACK", via=self._via(destination.transport), headers=tuple(headers)
        )
        self._start_client(prack, destination, now, call)
        return True

    def _early_dialog(self, call: Call) -> None:
        """Our first reliable provisional creates the early dialog its PRACK arrives in."""
        if call.dialog is None:
            dialog = Dialog.for_uas(call.invite, call.local_tag)
            call.dialog = dialog
            self._dialogs[dialog.id] = call.id

    def _on_prack(
        self, call: Call, txn: ServerTransaction, request: SipRequest, now: float
    ) -> None:
        """§3: a PRACK matching our unacknowledged reliable provisional stops its
        retransmissions (200); anything else is 481. The next waiting provisional, or the 2xx
        that waited for this PRACK, goes out now."""
        reliable = call.reliable
        rack = parse_rack(request.headers.get("RAck") or "")  # malformed: 400, via _pump
        if request.body:  # §5: an offer in a PRACK; we never make an answerable offer there
            self._reply(txn, 488, now)
            return
        matched, ready = False, None
        if reliable is not None:
            matched, ready = reliable.acknowledge(rack, call.invite.cseq.seq, now)
        if not matched:
            self._reply(txn, 481, now)
            return
        self._reply(txn, 200, now)
        assert reliable is not None and call.server is not None
        if ready is not None and call.state is CallState.EARLY:  # the next one, now its turn
            call.server.send_response(ready, now)
            self._touched.append(call.server)
        if call.deferred_answer is not None and not reliable.blocks_answer:
            sdp, call.deferred_answer = call.deferred_answer, None
            self._send_answer(call, sdp, now)
        self._schedule_call(call)

    def _retransmit_provisional(self, call: Call, now: float) -> None:
        """§3: resend the unacknowledged reliable provisional (T1, doubling); after 64*T1
        without a PRACK, refuse the INVITE with 500 and end the call."""
        reliable = call.reliable
        if reliable is None or call.server is None or call.state is CallState.CONFIRMED:
            return
        again = reliable.due(now)
        if again is not None:
            call.server.send_response(again, now)
            self._touched.append(call.server)
        elif reliable.gave_up and call.state is not CallState.ENDED:
            reason = "no PRACK for our reliable provisional response"
            response = make_response(call.invite, 500, to_tag=call.local_tag)
            call.server.send_response(response, now)
            self._touched.append(call.server)
            self._end(call, now, reason)
            self._events.append(CallEnded(call.id, by_peer=False, reason="no PRACK"))

    def _on_early_request(
        self, call: Call, txn: ServerTransaction, request: SipRequest, now: float
    ) -> None:
        """A request in the early dialog our reliable provisional created (before our 2xx):
        BYE ends the call like a CANCEL (§15: 200, then 487 to the INVITE); OPTIONS is
        answered; anything else (an UPDATE while ringing) is refused with 500 + Retry-After."""
        if request.method == "BYE":
            self._reply(txn, 200, now)
            server = call.server
            if server is not None and server.state is State.PROCEEDING:
                server.send_response(make_response(call.invite, 487, to_tag=call.local_tag), now)
                self._touched.append(server)
            self._end(call, now, "BYE before the answer")
            self._events.append(CallCancelled(call.id))
        elif request.method == "OPTIONS":
            self._reply(txn, 200, now, headers=self._capabilities())
        else:
            self._reply(
                txn, 500, now, reason="Not Before The Answer", headers=[("Retry-After", "2")]
            )

    # --- session timers (RFC 4028) ------------------------------------------------------------

    def _supported(self) -> tuple[str, ...]:
        """The option tags we support (our Supported header, and what Require may ask)."""
        return ("100rel", "timer") if self.config.session_timer is not None else ("100rel",)

    def _timer_decision(
        self, txn: ServerTransaction, request: SipRequest, now: float
    ) -> UasDecision | None:
        """§9 for a request that creates or refreshes the session: the decision for its 2xx, or
        None without session timers. A request asking for too short an interval is answered
        422 with our Min-SE here; its decision says so (``too_small``) and the caller stops."""
        config = self.config.session_timer
        if config is None:
            return None
        decision = uas_negotiate(request, config)  # a malformed value: 400, via _pump
        if decision.too_small is not None:
            self._reply(txn, 422, now, headers=[("Min-SE", str(decision.too_small))])
        return decision

    def _refreshed(
        self, call: Call, decision: UasDecision | None, now: float
    ) -> list[tuple[str, str]]:
        """The peer refreshed the session with a request we answer 2xx: restart the interval
        (§10) and return the Session-Expires (and Require) of that 2xx."""
        if decision is None:
            return []
        if call.session_timer is None:
            call.session_timer = SessionTimer(decision.interval, decision.we_refresh, now)
        else:
            call.session_timer.refreshed(decision.interval, decision.we_refresh, now)
        self._schedule_call(call)
        return decision.response_headers()

    def _uac_timer(self, call: Call, response: SipResponse, now: float) -> None:
        """The 2xx to our INVITE or refresh settled the interval, or ended session timers (no
        Session-Expires, §7.2). A malformed value is taken as none."""
        if self.config.session_timer is None:
            return
        try:
            negotiated = uac_negotiated(response)
        except RemoteProtocolError:
            negotiated = None
        if negotiated is None:
            timer = call.session_timer
            if timer is not None and timer.we_refresh and not call.peer_timer:
                # A peer without the extension never answers with Session-Expires; we chose
                # to refresh for it (§9), so the refresh that got a 2xx counts.
                timer.refreshed(timer.interval, True, now)
                self._schedule_call(call)
            else:
                call.session_timer = None  # §7.2: the peer turned session timers off
            return
        interval, we_refresh = negotiated
        if call.session_timer is None:
            call.session_timer = SessionTimer(interval, we_refresh, now)
        else:
            call.session_timer.refreshed(interval, we_refresh, now)
        call.timer_retries = 0
        self._schedule_call(call)

    def _retry_after_422(
        self, call: Call, request: SipRequest, response: SipResponse
    ) -> SipRequest | None:
        """RFC 4028 §7.4: our INVITE was answered 422: the same request again (new branch,
        CSeq + 1) asking for the interval the 422's Min-SE names; None to give up."""
        config = self.config.session_timer
        if config is None or call.timer_retries >= MAX_422_RETRIES:
            return None
        asked = config.expires
        current = request.headers.get("Session-Expires")
        if current is not None:
            asked = int(current.partition(";")[0].strip() or 0)
        interval = retry_interval(response, asked)
        if interval is None:
            return None
        call.timer_retries += 1
        headers = request.headers.copy()
        vias = headers.get_all("Via")
        top = vias[0].split(";branch=")[0] if vias else self._via(call.address.transport)
        headers.set("Via", f"{top};branch={new_branch()}")
        headers.set("CSeq", f"{request.cseq.seq + 1} {request.method}")
        headers.set("Session-Expires", str(interval))
        headers.set("Min-SE", str(interval))
        return SipRequest(request.method, request.uri, headers, request.body)

    def _refresh_after_422(
        self, call: Call, method: str, response: SipResponse, now: float
    ) -> bool:
        """Our refresh (or any re-INVITE/UPDATE) got 422: ask again at once with the interval
        its Min-SE names (§7.4). False when there is nothing better to ask for."""
        timer = call.session_timer
        if timer is None or call.timer_retries >= MAX_422_RETRIES:
            return False
        interval = retry_interval(response, timer.interval)
        if interval is None:
            return False
        call.timer_retries += 1
        timer.interval = interval
        self._send_modification(call, method, call.offer, call.modify_headers, now)
        return True

    def _session_timer_due(self, call: Call, now: float) -> None:
        """Carry out what the session timer says is due (§10): a refresh, or the end."""
        timer = call.session_timer
        if timer is None or call.state is not CallState.CONFIRMED or call.dialog is None:
            return
        for action in timer.fire(now):
            if action is TimerAction.SEND_REFRESH:
                self._send_refresh(call, now)
            elif action is TimerAction.SEND_BYE:
                self._send_in_dialog(call, "BYE", now)
                self._end(call, now, "session expired")
                self._events.append(CallEnded(call.id, by_peer=False, reason="session expired"))
                return

    def _send_refresh(self, call: Call, now: float) -> None:
        """Our session refresh (§7.4): an UPDATE without SDP when the peer allows UPDATE (no
        renegotiation at all), else a re-INVITE with our unchanged SDP (RFC 3264 §8: same
        version). Another re-INVITE or UPDATE in flight refreshes anyway; a 2xx to the peer's
        re-INVITE still awaiting its ACK puts the refresh off (§14.1: one INVITE at a time)."""
        timer, config = call.session_timer, self.config.session_timer
        assert timer is not None and config is not None
        if call.reinvite_key is not None or call.update_key is not None or call.retry is not None:
            return
        use_update = config.refresh_method == "UPDATE" and "UPDATE" in call.peer_allows
        if not use_update and (call.retransmit is not None or not call.local_sdp):
            timer.refresh_failed(500, now)  # try again later
            return
        if use_update:
            self._send_modification(call, "UPDATE", b"", (), now)
        else:
            self._send_modification(call, "INVITE", call.local_sdp, (), now)

    def _retry_modification(self, call: Call, now: float) -> None:
        """Send again the re-INVITE/UPDATE that met glare, once its wait is over."""
        retry = call.retry
        if retry is None or retry.at > now:
            return
        call.retry = None
        if call.state is not CallState.CONFIRMED or call.dialog is None:
            return
        if call.reinvite_key is not None or call.update_key is not None:
            return  # the application sent a newer one meanwhile
        self._send_modification(call, retry.method, retry.body, retry.headers, now)

    def _late_2xx(self, response: SipResponse) -> None:
        if response.status // 100 != 2 or response.cseq.method != "INVITE":
            return
        dialog_id = DialogId(response.call_id, response.from_.tag or "", response.to.tag or "")
        call = self.calls.get(self._dialogs.get(dialog_id, ""))
        if (
            call is not None
            and call.ack is not None
            and call.dialog is not None
            and call.ack.cseq.seq == response.cseq.seq
        ):
            self._out.append((call.ack, call.dialog.destination()))

    def _ack_and_bye(self, call: Call, response: SipResponse, now: float) -> None:
        try:
            dialog = Dialog.for_uac(call.invite, response)
        except RemoteProtocolError:
            return
        destination = dialog.destination()
        via = self._via(destination.transport)
        self._out.append((dialog.create_ack(call.invite.cseq.seq, via=via), destination))
        bye = dialog.create_request("BYE", via=via)
        self._start_client(bye, destination, now, None)

    # --- transaction plumbing --------------------------------------------------------------

    def _pump(self, now: float) -> None:
        """Drain touched transactions: queue their messages, react to their events."""
        while self._touched:
            txn = self._touched.pop(0)
            self._schedule("txn", txn.key, txn.next_timer())
            for message in txn.messages_to_send():
                self._out.append((message, txn.address))
            for event in txn.events():
                try:
                    self._on_transaction_event(txn, event, now)
                except RemoteProtocolError as exc:
                    # A header that parsed at the framing level but not in depth (§8.2).
                    if isinstance(event, RequestReceived) and isinstance(txn, ServerTransaction):
                        warning = warning_value(self._warn_agent(txn.address.transport), str(exc))
                        try:
                            self._reply(txn, exc.status_hint, now, headers=[("Warning", warning)])
                        except (LocalProtocolError, RemoteProtocolError):
                            pass
                except Exception:
                    self._contain(now, txn=txn)

    def _on_transaction_event(self, txn: Transaction, event: Event, now: float) -> None:
        match event:
            case RequestReceived(request=request):
                assert isinstance(txn, ServerTransaction)
                self._on_request(txn, request, now)
            case ResponseReceived(response=response):
                assert isinstance(txn, ClientTransaction)
                self._on_response(txn, response, now)
            case TransactionTimedOut() | TransportErrorOccurred():
                self._on_failure(txn, event, now)
            case TransactionTerminated(key=key):
                if key.server:
                    self._server.pop(key, None)
                else:
                    self._client.pop(key, None)
                self._owner.pop(key, None)
                self._credentials.pop(key, None)
                self._requests.discard(key)
                self._registers.discard(key)
            case AckReceived():
                pass  # the ACK for a non-2xx: nothing left to do
            case _:
                pass

    def _on_failure(
        self, txn: Transaction, event: TransactionTimedOut | TransportErrorOccurred, now: float
    ) -> None:
        if txn.key in self._requests:  # the application's own request: it decides what next
            self._events.append(event)
            return
        if txn.key in self._registers:  # a REGISTER whose answer cannot be sent any more
            self._registers.discard(txn.key)
            return
        call = self.calls.get(self._owner.get(txn.key, ""))
        if call is None or txn.key.server:
            return
        # §14.1: no response at all to our re-INVITE (or UPDATE) ends the dialog like a 408.
        status = 408 if isinstance(event, TransactionTimedOut) else 503
        if txn.key == call.update_key:
            call.update_key = None
            self._offer_failed(call, "UPDATE", status, now)
            return
        if txn.request.method != "INVITE":
            return
        if txn.key == call.reinvite_key:
            call.reinvite_key = None
            self._offer_failed(call, "INVITE", status, now)
            return
        if txn.key == call.invite_key and call.state in (CallState.CALLING, CallState.EARLY):
            timed_out = isinstance(event, TransactionTimedOut)
            status, reason = (408, "Request Timeout") if timed_out else (503, "Transport Error")
            self._end(call, now, reason)
            self._events.append(CallFailed(call.id, status, reason))

    def _start_client(
        self, request: SipRequest, address: Address, now: float, call: Call | None
    ) -> None:
        txn: ClientTransaction
        if request.method == "INVITE":
            txn = ClientInviteTransaction(request, address, now, config=self.config.timers)
        else:
            txn = ClientNonInviteTransaction(request, address, now, config=self.config.timers)
        self._client[txn.key] = txn
        self.transactions["client", _counted(request.method)] += 1
        self._touched.append(txn)
        if call is not None:
            self._owner[txn.key] = call.id
            if request.method == "INVITE":
                if request.to.tag is None:
                    call.invite_key = txn.key
                else:
                    call.reinvite_key = txn.key
            elif request.method == "UPDATE":
                call.update_key = txn.key

    def _send_cancel(self, call: Call, now: float) -> None:
        """§9.1: same Request-URI, Call-ID, From, To, CSeq number and top Via as the INVITE."""
        invite = call.invite
        h = Headers()
        h.add("Via", invite.headers.get("Via") or "")
        h.add("Max-Forwards", "70")
        h.add("From", invite.headers.get("From") or "")
        h.add("To", invite.headers.get("To") or "")
        h.add("Call-ID", invite.call_id)
        h.add("CSeq", f"{invite.cseq.seq} CANCEL")
        for route in invite.headers.get_all("Route"):
            h.add("Route", route)
        call.cancel_sent = True
        self._start_client(SipRequest("CANCEL", invite.uri, h), call.address, now, call)

    def _send_in_dialog(
        self,
        call: Call,
        method: str,
        now: float,
        *,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        assert call.dialog is not None
        destination = call.dialog.destination()
        contact = self._contact(destination.transport, secure=call.dialog.secure)
        extra = self._common_headers(Headers())
        for name, value in headers:
            extra.add(name, value)
        request = call.dialog.create_request(
            method,
            via=self._via(destination.transport),
            # target refresh requests carry our Contact (§12.2, RFC 3311 §5.1)
            contact=contact if method in ("INVITE", "UPDATE") else None,
            body=body,
            headers=tuple(extra.items()),
        )
        self._start_client(request, destination, now, call)

    def _authorized_retry(
        self,
        call: Call,
        request: SipRequest,
        response: SipResponse,
        credentials: Credentials | None,
    ) -> SipRequest | None:
        """The request again with credentials for a 401/407 (§22.2), or None to give up.

        Gives up without credentials, for a realm already answered unless the nonce was stale
        (a wrong password must not loop), and after MAX_AUTH_ATTEMPTS.
        """
        chosen = challenge_to_answer(response, credentials, call.auth_realms, call.auth_attempts)
        if chosen is None or credentials is None:
            return None
        answer, challenge = chosen
        call.auth_attempts += 1
        seq = request.cseq.seq + 1
        if call.dialog is not None and request.to.tag is not None:
            call.dialog.local_seq = max(call.dialog.local_seq, seq)
        authorization = self._auth.authorize(
            challenge, credentials, request.method, request.uri, request.body
        )
        headers = request.headers.copy()
        vias = headers.get_all("Via")
        top = vias[0].split(";branch=")[0] if vias else self._via(call.address.transport)
        headers.set("Via", f"{top};branch={new_branch()}")
        headers.set("CSeq", f"{seq} {request.method}")
        headers.remove(answer)
        headers.add(answer, str(authorization))
        return SipRequest(request.method, request.uri, headers, request.body)

    def _start_retransmit(
        self, call: Call, response: SipResponse, address: Address, now: float
    ) -> None:
        t1 = self.config.timers.t1
        call.retransmit = _Retransmit(response, address, t1, now + t1, now + 64 * t1)
        self._schedule_call(call)

    def _retransmit_2xx(self, call: Call, now: float) -> None:
        """§13.3.1.4: resend our 2xx at T1, 2T1... capped at T2; after 64*T1 without an ACK
        the session is ended with BYE."""
        pending = call.retransmit
        if pending is None:
            return
        if now >= pending.give_up_at:
            call.retransmit = None
            if call.state is CallState.CONFIRMED and call.dialog is not None:
                self._send_in_dialog(call, "BYE", now)
                self._end(call, now, "no ACK for our 2xx")
                self._events.append(CallEnded(call.id, by_peer=False, reason="no ACK"))
            return
        if pending.next_at <= now:  # one copy per firing, however late the driver is
            self._out.append((pending.response, pending.address))
            pending.interval = min(pending.interval * 2, self.config.timers.t2)
            pending.next_at = now + pending.interval

    def _end(self, call: Call, now: float, reason: str) -> None:
        call.state = CallState.ENDED
        call.end_reason = reason
        call.retransmit = None
        call.reliable = None
        call.deferred_answer = None
        if call.dialog is not None:
            call.dialog.state = DialogState.TERMINATED
        # Keep the call (and its dialog id) a while to absorb retransmissions, then forget it.
        call.forget_at = now + 64 * self.config.timers.t1
        self._schedule_call(call)

    def _forget(self, call: Call) -> None:
        self.calls.pop(call.id, None)
        if call.dialog is not None:
            self._dialogs.pop(call.dialog.id, None)

    # --- building blocks -------------------------------------------------------------------

    def _call(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            raise LocalProtocolError(f"no call {call_id!r}")
        return call

    def _uas_call(self, call_id: str) -> Call:
        call = self._call(call_id)
        if call.role is not Role.UAS or call.state not in (CallState.CALLING, CallState.EARLY):
            raise LocalProtocolError(f"call {call_id} cannot be answered in state {call.state}")
        return call

    def _local(self, transport: str) -> Address:
        local = self.config.local.get(transport)
        if local is None:
            raise LocalProtocolError(f"no local address configured for {transport}")
        return local

    def _via(self, transport: str) -> str:
        """Our Via value without branch (§8.1.1.7, RFC 3581 rport)."""
        local = self._local(transport)
        return f"SIP/2.0/{transport.upper()} {_hostport(local)};rport"

    def _contact(self, transport: str, *, secure: bool = False) -> str:
        # RFC 3261 §8.1.1.8 / §12.1.1: a SIPS Contact only when the request was SIPS. A TLS hop
        # for a sip: URI (``;secure=true``) gets ``sip:...;transport=tls``; peers such as baresip
        # cannot route to a sips: Contact they did not ask for.
        local = self._local(transport)
        if secure:
            return f"<sips:{self.config.user}@{_hostport(local)}>"
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{self.config.user}@{_hostport(local)}{suffix}>"

    def _common_headers(self, headers: Headers) -> Headers:
        headers.add("Allow", ", ".join(ALLOWED_METHODS))
        supported = self._supported()
        if supported:  # §20.37: what we support, in every request but ACK and CANCEL
            headers.add("Supported", ", ".join(supported))
        headers.add("User-Agent", self.config.user_agent)
        return headers

    def _capabilities(self) -> list[tuple[str, str]]:
        """OPTIONS answer (§11.2): what we allow and accept."""
        return [
            ("Allow", ", ".join(ALLOWED_METHODS)),
            ("Accept", "application/sdp"),
            ("Supported", ", ".join(self._supported())),
        ]

    def _response(
        self,
        call: Call,
        status: int,
        sdp: bytes,
        request: SipRequest | None = None,
        *,
        extra: Sequence[tuple[str, str]] = (),
    ) -> SipResponse:
        """Our response to ``request`` (default: the call's INVITE) with Contact and SDP, and
        ``extra`` headers (Session-Expires, Require...)."""
        request = request or call.invite
        transport = call.address.transport
        headers = [
            ("Contact", self._contact(transport, secure=call.invite.uri.startswith("sips:"))),
            ("Allow", ", ".join(ALLOWED_METHODS)),
            ("Server", self.config.user_agent),
        ]
        supported = self._supported()
        if supported:
            headers.append(("Supported", ", ".join(supported)))
        headers.extend(extra)
        for value in request.headers.fields("Record-Route"):  # §12.1.1
            headers.append(("Record-Route", value))
        if sdp:
            headers.append(("Content-Type", "application/sdp"))
        return make_response(request, status, to_tag=call.local_tag, headers=headers, body=sdp)

    def _reply(
        self,
        txn: ServerTransaction,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        to_tag: str | None = None,
    ) -> None:
        tag = to_tag if to_tag is not None else (new_tag() if status > 100 else None)
        response = make_response(txn.request, status, reason, to_tag=tag, headers=tuple(headers))
        txn.send_response(response, now)
        self._touched.append(txn)

    def _reply_unsupported(self, txn: ServerTransaction, now: float) -> None:
        """§8.2.1: 405 with Allow for a method we know but do not do here, else 501."""
        if txn.request.method in KNOWN_METHODS or txn.request.method in ALLOWED_METHODS:
            self._reply(txn, 405, now, headers=[("Allow", ", ".join(ALLOWED_METHODS))])
        else:
            self._reply(txn, 501, now)


def _counted(method: str) -> str:
    return method if method in KNOWN_METHODS or method in ALLOWED_METHODS else "other"


def _call_deadline(call: Call) -> float | None:
    """The call's own next deadline: a 2xx retransmission or give-up, a glare retry, or
    forgetting it."""
    deadlines = []
    if call.retransmit is not None:
        deadlines.append(min(call.retransmit.next_at, call.retransmit.give_up_at))
    if call.retry is not None:
        deadlines.append(call.retry.at)
    if call.reliable is not None:
        deadline = call.reliable.next_deadline()
        if deadline is not None:
            deadlines.append(deadline)
    if call.session_timer is not None and call.state is CallState.CONFIRMED:
        deadline = call.session_timer.next_deadline()
        if deadline is not None:
            deadlines.append(deadline)
    if call.forget_at is not None:
        deadlines.append(call.forget_at)
    return min(deadlines, default=None)


def _allowed(message: SipMessage) -> frozenset[str]:
    """The methods a message's Allow lists (§20.5), upper case."""
    return frozenset(method.strip().upper() for method in message.headers.get_all("Allow"))


def _hostport(address: Address) -> str:
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{host}:{address.port}"


def header_problem(request: SipRequest) -> str | None:
    """What makes ``request`` unusable by this user agent, naming the header, or None.

    :func:`~callxml.sip.message.parse_message` already checked the syntax of every header
    (Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length, Contact, Record-Route). This is
    the depth the UA will later rely on: an INVITE's Contact becomes the remote target that
    every in-dialog request (our BYE, the ACK) is sent to, and its Record-Route the route set,
    so both must be SIP URIs we can route to *now*, before a transaction or dialog exists
    (a bad one found at BYE time used to take the timers of every call down with it).
    """
    if request.method != "INVITE":
        return None
    contacts = request.contacts
    if not contacts and not request.vias[0].branch_is_rfc3261:
        # RFC 2543 had no mandatory Contact: its requests go back to the From URI (RFC 4475
        # §3.4.1 asks RFC 3261 elements to take such an INVITE).
        target, name = request.from_.uri, "From"
    elif len(contacts) != 1 or contacts[0].is_wildcard:
        return "Contact: an INVITE needs exactly one Contact URI"
    else:
        target, name = contacts[0].uri, "Contact"
    try:
        next_hop(parse_uri(target))
    except CallXmlError as exc:
        return f"{name}: {exc}"
    for route in request.record_routes:
        try:
            parse_uri(route.uri)
        except CallXmlError as exc:
            return f"Record-Route: {exc}"
    return None
