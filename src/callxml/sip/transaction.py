"""The four SIP transaction state machines (RFC 3261 §17, amended by RFC 6026), sans-IO.

This module owns transaction states, their timers and what each input does, written as
transition tables you can read (and draw): ``(state, input) -> (next state, actions)``. A
transaction never reads a clock, sleeps or touches a socket. Its driver feeds it inputs, each
with ``now`` (``receive_response``, ``receive_request``, ``send_response``, ``handle_timer``,
``transport_error``) and asks it what to do (``messages_to_send``, ``events``, ``next_timer``).

It must not know about dialogs, authentication or addressing beyond the matching key: the user
agent core (:mod:`callxml.sip.ua`) is its transaction user (TU).

Inputs not in a table are absorbed (a stray retransmission is not an error), except inputs from
the TU (``send_response``), where a missing entry is a :class:`LocalProtocolError`.

Rules carried out here, with their sections:

* retransmit requests over UDP only, A doubling without bound and E capped at T2 (§17.1.1.2,
  §17.1.2.2); never over TCP/TLS, where D, I, J and K are zero;
* absorb retransmitted requests in the server, answering them with the last response sent
  (§17.2.1, §17.2.2); answer an INVITE with 100 Trying at once (§17.2.1);
* ACK non-2xx final responses to INVITE inside the transaction (§17.1.1.3), resend that ACK for
  each retransmitted final response;
* RFC 6026: a 2xx to INVITE moves the client to ACCEPTED (timer M) passing every 2xx up, and the
  server to ACCEPTED (timer L) where the TU's 2xx retransmissions are sent and retransmitted
  INVITEs absorbed. Retransmitting the 2xx until the ACK arrives is the TU's job (§13.3.1.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from callxml.errors import LocalProtocolError
from callxml.sip.events import (
    AckReceived,
    Address,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionKey,
    TransactionTerminated,
    TransactionTimedOut,
    TransportErrorOccurred,
)
from callxml.sip.headers import BRANCH_MAGIC_COOKIE, Via
from callxml.sip.message import Headers, SipMessage, SipRequest, SipResponse, make_response
from callxml.sip.timers import DEFAULT_TIMERS, Timer, TimerConfig

__all__ = [
    "CLIENT_INVITE_TABLE",
    "CLIENT_NON_INVITE_TABLE",
    "SERVER_INVITE_TABLE",
    "SERVER_NON_INVITE_TABLE",
    "Action",
    "ClientInviteTransaction",
    "ClientNonInviteTransaction",
    "ClientTransaction",
    "Input",
    "ServerInviteTransaction",
    "ServerNonInviteTransaction",
    "ServerTransaction",
    "State",
    "Transaction",
    "client_key",
    "server_key",
]


class State(StrEnum):
    """RFC 3261 §17 state names (ACCEPTED from RFC 6026)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Input(StrEnum):
    """What can happen to a transaction."""

    # from the network
    RESPONSE_1XX = "1xx from TL"
    RESPONSE_2XX = "2xx from TL"
    RESPONSE_300_699 = "300-699 from TL"
    REQUEST = "request retransmission from TL"
    ACK = "ACK from TL"
    # from the TU
    TU_1XX = "1xx from TU"
    TU_2XX = "2xx from TU"
    TU_300_699 = "300-699 from TU"
    # from the clock and the transport
    TIMER_A = "Timer A fires"
    TIMER_B = "Timer B fires"
    TIMER_D = "Timer D fires"
    TIMER_E = "Timer E fires"
    TIMER_F = "Timer F fires"
    TIMER_G = "Timer G fires"
    TIMER_H = "Timer H fires"
    TIMER_I = "Timer I fires"
    TIMER_J = "Timer J fires"
    TIMER_K = "Timer K fires"
    TIMER_L = "Timer L fires"
    TIMER_M = "Timer M fires"
    TRANSPORT_ERROR = "transport error"


class Action(StrEnum):
    """What a transition does, in the order listed."""

    RETRANSMIT_REQUEST = "retransmit the request"
    SEND_ACK = "send ACK"
    SEND_RESPONSE = "send the TU's response"
    RESEND_RESPONSE = "resend the last response"
    PASS_TO_TU = "pass the response up"
    REPORT_ACK = "tell the TU about the ACK"
    REPORT_TIMEOUT = "report a timeout"
    REPORT_TRANSPORT_ERROR = "report a transport error"
    DOUBLE_A = "A = 2A"
    DOUBLE_E_UP_TO_T2 = "E = min(2E, T2)"
    SET_E_TO_T2 = "E = T2"
    DOUBLE_G_UP_TO_T2 = "G = min(2G, T2)"
    START_D = "start D"
    START_G_AND_H = "start G and H"
    START_I = "start I"
    START_J = "start J"
    START_K = "start K"
    START_L = "start L"
    START_M = "start M"


S, I, A = State, Input, Action  # noqa: E741  (short names keep the tables readable)
Table = dict[tuple[State, Input], tuple[State, tuple[Action, ...]]]

#: RFC 3261 §17.1.1.2 Figure 5 as amended by RFC 6026 §7.2 / Figure 3.
CLIENT_INVITE_TABLE: Table = {
    (S.CALLING, I.TIMER_A): (S.CALLING, (A.RETRANSMIT_REQUEST, A.DOUBLE_A)),
    (S.CALLING, I.TIMER_B): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.CALLING, I.RESPONSE_1XX): (S.PROCEEDING, (A.PASS_TO_TU,)),
    (S.CALLING, I.RESPONSE_2XX): (S.ACCEPTED, (A.PASS_TO_TU, A.START_M)),
    (S.CALLING, I.RESPONSE_300_699): (S.COMPLETED, (A.SEND_ACK, A.PASS_TO_TU, A.START_D)),
    (S.CALLING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.PROCEEDING, I.RESPONSE_1XX): (S.PROCEEDING, (A.PASS_TO_TU,)),
    (S.PROCEEDING, I.RESPONSE_2XX): (S.ACCEPTED, (A.PASS_TO_TU, A.START_M)),
    (S.PROCEEDING, I.RESPONSE_300_699): (S.COMPLETED, (A.SEND_ACK, A.PASS_TO_TU, A.START_D)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, I.RESPONSE_300_699): (S.COMPLETED, (A.SEND_ACK,)),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, I.TIMER_D): (S.TERMINATED, ()),
    (S.ACCEPTED, I.RESPONSE_2XX): (S.ACCEPTED, (A.PASS_TO_TU,)),
    (S.ACCEPTED, I.TIMER_M): (S.TERMINATED, ()),
}

#: RFC 3261 §17.1.2.2 Figure 6.
CLIENT_NON_INVITE_TABLE: Table = {
    (S.TRYING, I.TIMER_E): (S.TRYING, (A.RETRANSMIT_REQUEST, A.DOUBLE_E_UP_TO_T2)),
    (S.TRYING, I.TIMER_F): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.TRYING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.TRYING, I.RESPONSE_1XX): (S.PROCEEDING, (A.PASS_TO_TU,)),
    (S.TRYING, I.RESPONSE_2XX): (S.COMPLETED, (A.PASS_TO_TU, A.START_K)),
    (S.TRYING, I.RESPONSE_300_699): (S.COMPLETED, (A.PASS_TO_TU, A.START_K)),
    (S.PROCEEDING, I.TIMER_E): (S.PROCEEDING, (A.RETRANSMIT_REQUEST, A.SET_E_TO_T2)),
    (S.PROCEEDING, I.TIMER_F): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.PROCEEDING, I.RESPONSE_1XX): (S.PROCEEDING, (A.PASS_TO_TU,)),
    (S.PROCEEDING, I.RESPONSE_2XX): (S.COMPLETED, (A.PASS_TO_TU, A.START_K)),
    (S.PROCEEDING, I.RESPONSE_300_699): (S.COMPLETED, (A.PASS_TO_TU, A.START_K)),
    (S.COMPLETED, I.TIMER_K): (S.TERMINATED, ()),
}

#: RFC 3261 §17.2.1 Figure 7 as amended by RFC 6026 §7.1 / Figure 5. The 100 Trying is sent
#: when the transaction is created.
SERVER_INVITE_TABLE: Table = {
    (S.PROCEEDING, I.REQUEST): (S.PROCEEDING, (A.RESEND_RESPONSE,)),
    (S.PROCEEDING, I.TU_1XX): (S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.TU_2XX): (S.ACCEPTED, (A.SEND_RESPONSE, A.START_L)),
    (S.PROCEEDING, I.TU_300_699): (S.COMPLETED, (A.SEND_RESPONSE, A.START_G_AND_H)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, I.REQUEST): (S.COMPLETED, (A.RESEND_RESPONSE,)),
    (S.COMPLETED, I.TIMER_G): (S.COMPLETED, (A.RESEND_RESPONSE, A.DOUBLE_G_UP_TO_T2)),
    (S.COMPLETED, I.ACK): (S.CONFIRMED, (A.REPORT_ACK, A.START_I)),
    (S.COMPLETED, I.TIMER_H): (S.TERMINATED, (A.REPORT_TIMEOUT,)),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.CONFIRMED, I.TIMER_I): (S.TERMINATED, ()),
    (S.ACCEPTED, I.TU_2XX): (S.ACCEPTED, (A.SEND_RESPONSE,)),
    (S.ACCEPTED, I.ACK): (S.ACCEPTED, (A.REPORT_ACK,)),  # RFC 6026 §7.1: ACK to TU
    (S.ACCEPTED, I.TIMER_L): (S.TERMINATED, ()),
}

#: RFC 3261 §17.2.2 Figure 8.
SERVER_NON_INVITE_TABLE: Table = {
    (S.TRYING, I.TU_1XX): (S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.TRYING, I.TU_2XX): (S.COMPLETED, (A.SEND_RESPONSE, A.START_J)),
    (S.TRYING, I.TU_300_699): (S.COMPLETED, (A.SEND_RESPONSE, A.START_J)),
    (S.PROCEEDING, I.REQUEST): (S.PROCEEDING, (A.RESEND_RESPONSE,)),
    (S.PROCEEDING, I.TU_1XX): (S.PROCEEDING, (A.SEND_RESPONSE,)),
    (S.PROCEEDING, I.TU_2XX): (S.COMPLETED, (A.SEND_RESPONSE, A.START_J)),
    (S.PROCEEDING, I.TU_300_699): (S.COMPLETED, (A.SEND_RESPONSE, A.START_J)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
    (S.COMPLETED, I.REQUEST): (S.COMPLETED, (A.RESEND_RESPONSE,)),
    (S.COMPLETED, I.TIMER_J): (S.TERMINATED, ()),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.REPORT_TRANSPORT_ERROR,)),
}

#: Timers that survive in each state; entering a state cancels the others.
LIVE_TIMERS: dict[State, frozenset[Timer]] = {
    S.CALLING: frozenset({Timer.A, Timer.B}),
    S.TRYING: frozenset({Timer.E, Timer.F}),
    S.PROCEEDING: frozenset({Timer.E, Timer.F}),  # non-INVITE client only; INVITE has none
    S.COMPLETED: frozenset({Timer.D, Timer.G, Timer.H, Timer.J, Timer.K}),
    S.CONFIRMED: frozenset({Timer.I}),
    S.ACCEPTED: frozenset({Timer.L, Timer.M}),
    S.TERMINATED: frozenset(),
}

_TIMER_INPUT = {timer: Input[f"TIMER_{timer.value}"] for timer in Timer}
_START_ACTIONS: dict[Action, tuple[Timer, ...]] = {
    A.START_D: (Timer.D,),
    A.START_G_AND_H: (Timer.G, Timer.H),
    A.START_I: (Timer.I,),
    A.START_J: (Timer.J,),
    A.START_K: (Timer.K,),
    A.START_L: (Timer.L,),
    A.START_M: (Timer.M,),
}
_TIMEOUT_TIMERS = (Timer.B, Timer.F, Timer.H)


def _response_input(status: int, *, tu: bool) -> Input:
    if status < 200:
        return I.TU_1XX if tu else I.RESPONSE_1XX
    if status < 300:
        return I.TU_2XX if tu else I.RESPONSE_2XX
    return I.TU_300_699 if tu else I.RESPONSE_300_699


def _top_via(message: SipMessage) -> Via:
    vias = message.vias
    if not vias:
        raise LocalProtocolError("a SIP message without Via cannot belong to a transaction")
    return vias[0]


def client_key(message: SipMessage) -> TransactionKey:
    """The client transaction a request creates, or a response belongs to (§17.1.3).

    Matching uses the top Via's branch and the CSeq method only: sent-by is left empty, since
    the transport may rewrite it on the way out (§18.1.1).
    """
    via = _top_via(message)
    return TransactionKey(via.branch or "", "", message.cseq.method, False)


def server_key(request: SipRequest) -> TransactionKey:
    """The server transaction an incoming request matches (§17.2.3): branch, sent-by, method,
    with ACK matching the INVITE it acknowledges. CANCEL has its own key (method CANCEL).

    A branch without the RFC 3261 magic cookie (an RFC 2543 peer) is replaced by a key made
    of what §17.2.3 compares for those peers (Request-URI, From tag, Call-ID, CSeq number);
    the To tag is left out so the ACK for our non-2xx still matches its INVITE. This is a
    simplification of the RFC 2543 rules, which also compare the whole top Via.
    """
    via = _top_via(request)
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if not branch.startswith(BRANCH_MAGIC_COOKIE):
        from_tag = request.from_.tag or ""
        branch = f"rfc2543|{request.uri}|{from_tag}|{request.call_id}|{request.cseq.seq}|{branch}"
    return TransactionKey(branch, via.sent_by.lower(), method, True)


@dataclass
class _Timer:
    deadline: float
    interval: float


class Transaction:
    """What the four machines share: a table, a state, timers, and output queues."""

    TABLE: Table = {}
    INITIAL: State = S.TERMINATED

    def __init__(
        self,
        request: SipRequest,
        address: Address,
        key: TransactionKey,
        *,
        config: TimerConfig = DEFAULT_TIMERS,
    ) -> None:
        self.request = request
        self.address = address
        self.key = key
        self.reliable = address.reliable
        self.config = config
        self.state = self.INITIAL
        self.last_response: SipResponse | None = None
        self._timers: dict[Timer, _Timer] = {}
        self._intervals: dict[Timer, float] = {}  # last interval of each retransmission timer
        self._out: list[SipMessage] = []
        self._events: list[Event] = []
        self._pending_response: SipResponse | None = None
        self._timeout_timer: Timer | None = None
        self._error = ""

    # --- queries --------------------------------------------------------------------------

    @property
    def terminated(self) -> bool:
        return self.state is S.TERMINATED

    def next_timer(self) -> float | None:
        """The earliest deadline, or None when no timer runs."""
        return min((t.deadline for t in self._timers.values()), default=None)

    def messages_to_send(self) -> list[SipMessage]:
        """Messages to hand to the transport (to :attr:`address`), oldest first; clears."""
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        """Events for the TU, oldest first; clears."""
        out, self._events = self._events, []
        return out

    # --- inputs shared by all -------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        """Fire every timer whose deadline is at or before ``now``, earliest first."""
        while not self.terminated:
            due = [(t.deadline, name) for name, t in self._timers.items() if t.deadline <= now]
            if not due:
                return
            _, name = min(due)
            self._timeout_timer = name
            self._apply(_TIMER_INPUT[name], now)

    def transport_error(self, now: float, reason: str = "transport error") -> None:
        """The transport could not send one of our messages (§17.1.4, §17.2.4)."""
        self._error = reason
        self._apply(I.TRANSPORT_ERROR, now)

    # --- the engine -----------------------------------------------------------------------

    def _apply(self, event: Input, now: float, *, from_tu: bool = False) -> bool:
        """Run one transition; returns False if the table has no entry (input absorbed)."""
        entry = self.TABLE.get((self.state, event))
        if entry is None:
            if from_tu:
                raise LocalProtocolError(f"{type(self).__name__}: {event} in state {self.state}")
            return False
        new_state, actions = entry
        if new_state is not self.state:
            self.state = new_state
            live = LIVE_TIMERS[new_state]
            self._timers = {k: v for k, v in self._timers.items() if k in live}
        if event.name.startswith("TIMER_"):
            fired = Timer(event.name.removeprefix("TIMER_"))
            self._timers.pop(fired, None)
        for action in actions:
            self._do(action, now)
        if self.state is S.TERMINATED:
            self._timers.clear()
            self._events.append(TransactionTerminated(self.key))
        else:
            self.handle_timer(now)  # zero-length wait timers (reliable transports) fire now
        return True

    def _start(self, timer: Timer, now: float, interval: float | None = None) -> None:
        if not self.config.retransmits(timer, reliable=self.reliable):
            return
        if interval is None:
            interval = self.config.duration(timer, reliable=self.reliable)
        self._timers[timer] = _Timer(now + interval, interval)
        self._intervals[timer] = interval

    def _backoff(self, timer: Timer, now: float, *, cap: float | None) -> None:
        previous = self._intervals.get(timer, self.config.t1)
        interval = previous * 2 if cap is None else min(previous * 2, cap)
        self._start(timer, now, interval)

    def _do(self, action: Action, now: float) -> None:
        if action in _START_ACTIONS:
            for timer in _START_ACTIONS[action]:
                self._start(timer, now)
        elif action is A.RETRANSMIT_REQUEST:
            self._out.append(self.request)
        elif action is A.DOUBLE_A:
            self._backoff(Timer.A, now, cap=None)
        elif action is A.DOUBLE_E_UP_TO_T2:
            self._backoff(Timer.E, now, cap=self.config.t2)
        elif action is A.SET_E_TO_T2:
            self._start(Timer.E, now, self.config.t2)
        elif action is A.DOUBLE_G_UP_TO_T2:
            self._backoff(Timer.G, now, cap=self.config.t2)
        elif action is A.REPORT_TIMEOUT:
            timer = self._timeout_timer or Timer.B
            self._events.append(TransactionTimedOut(self.key, timer.value))
        elif action is A.REPORT_TRANSPORT_ERROR:
            self._events.append(TransportErrorOccurred(self.key, self._error))
        else:
            self._do_specific(action, now)

    def _do_specific(self, action: Action, now: float) -> None:
        raise AssertionError(f"{type(self).__name__} cannot {action}")  # table/code mismatch


class ClientTransaction(Transaction):
    """A client transaction: created by the TU with a request, which it sends at once."""

    def __init__(
        self,
        request: SipRequest,
        address: Address,
        now: float,
        *,
        config: TimerConfig = DEFAULT_TIMERS,
    ) -> None:
        super().__init__(request, address, client_key(request), config=config)
        self._response: SipResponse | None = None
        self._out.append(request)
        self._begin(now)

    def _begin(self, now: float) -> None:
        raise NotImplementedError

    def receive_response(self, response: SipResponse, now: float) -> None:
        """A response whose key matched ours (§17.1.3). Unexpected ones are absorbed."""
        self._response = response
        if self._apply(_response_input(response.status, tu=False), now):
            self.last_response = response

    def _do_specific(self, action: Action, now: float) -> None:
        if action is A.PASS_TO_TU:
            assert self._response is not None
            self._events.append(ResponseReceived(self.key, self._response))
        elif action is A.SEND_ACK:
            assert self._response is not None
            self._out.append(_ack_for(self.request, self._response))
        else:
            super()._do_specific(action, now)


class ClientInviteTransaction(ClientTransaction):
    """INVITE client transaction, RFC 3261 §17.1.1 + RFC 6026 §7.2."""

    TABLE = CLIENT_INVITE_TABLE
    INITIAL = S.CALLING

    def _begin(self, now: float) -> None:
        self._start(Timer.A, now)
        self._start(Timer.B, now)


class ClientNonInviteTransaction(ClientTransaction):
    """Non-INVITE client transaction, RFC 3261 §17.1.2."""

    TABLE = CLIENT_NON_INVITE_TABLE
    INITIAL = S.TRYING

    def _begin(self, now: float) -> None:
        if self.request.method in ("INVITE", "ACK"):
            raise LocalProtocolError(f"{self.request.method} needs no non-INVITE transaction")
        self._start(Timer.E, now)
        self._start(Timer.F, now)


class ServerTransaction(Transaction):
    """A server transaction: created by the transaction layer for a new request.

    The request is reported as :class:`RequestReceived` (with its ``source``); the TU answers
    through :meth:`send_response`. Responses go to :attr:`address` (the request's source, which
    follows RFC 3581 ``rport`` behaviour; a driver may apply RFC 3261 §18.2.2 instead).
    """

    def __init__(
        self,
        request: SipRequest,
        source: Address,
        now: float,
        *,
        config: TimerConfig = DEFAULT_TIMERS,
    ) -> None:
        super().__init__(request, source, server_key(request), config=config)
        self._events.append(RequestReceived(self.key, request, source))
        self._ack: SipRequest | None = None
        self._begin(now)

    def _begin(self, now: float) -> None:
        pass

    def receive_request(self, request: SipRequest, now: float) -> None:
        """A retransmission of our request, or (INVITE) the ACK for our final response."""
        if request.method == "ACK":
            self._ack = request
            self._apply(I.ACK, now)
        else:
            self._apply(I.REQUEST, now)

    def send_response(self, response: SipResponse, now: float) -> None:
        """The TU's response. Raises LocalProtocolError when the state forbids it (e.g. a
        second final response)."""
        if response.cseq.method != self.request.method:
            raise LocalProtocolError("response CSeq method does not match the request")
        self._pending_response = response
        self._apply(_response_input(response.status, tu=True), now, from_tu=True)

    def _do_specific(self, action: Action, now: float) -> None:
        if action is A.SEND_RESPONSE:
            assert self._pending_response is not None
            self.last_response = self._pending_response
            self._out.append(self._pending_response)
        elif action is A.RESEND_RESPONSE:
            if self.last_response is not None:
                self._out.append(self.last_response)
        elif action is A.REPORT_ACK:
            assert self._ack is not None
            self._events.append(AckReceived(self.key, self._ack))
        else:
            super()._do_specific(action, now)


class ServerInviteTransaction(ServerTransaction):
    """INVITE server transaction, RFC 3261 §17.2.1 + RFC 6026 §7.1.

    Sends 100 Trying at once rather than after 200 ms: always allowed, and it stops the
    client's Timer A retransmissions early.
    """

    TABLE = SERVER_INVITE_TABLE
    INITIAL = S.PROCEEDING

    def _begin(self, now: float) -> None:
        trying = make_response(self.request, 100)
        self.last_response = trying
        self._out.append(trying)


class ServerNonInviteTransaction(ServerTransaction):
    """Non-INVITE server transaction, RFC 3261 §17.2.2."""

    TABLE = SERVER_NON_INVITE_TABLE
    INITIAL = S.TRYING


def _ack_for(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK for a non-2xx final response, built by the transaction (§17.1.1.3).

    Same Request-URI, Call-ID, From, CSeq number and top Via (branch included) as the INVITE,
    the To of the response (with its tag), and the INVITE's Route headers.
    """
    headers = Headers()
    headers.add("Via", str(_top_via(invite)))
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.seq} ACK")
    return SipRequest("ACK", invite.uri, headers)
