"""Reliable provisional responses (RFC 3262, ``100rel``), sans-IO: RSeq, RAck and PRACK.

A PSTN gateway in the path often needs to know that its ``183 Session Progress`` (with the early
media's SDP) arrived, so it asks for provisional responses to be sent reliably (``Require:
100rel``), and acknowledges each one with a PRACK. This module owns the rules on both sides:

* the header values: ``RSeq: <response-num>`` and ``RAck: <response-num> <CSeq-num> <method>``
  (§7.1, §7.2), parsed strictly (a malformed one is a 400);
* the UAC's acceptance of a reliable provisional response (§4): the first of an early dialog, or
  exactly one more than the last RSeq there (a repeat is a retransmission, absorbed; a gap is
  out of order, discarded) — :class:`ProvisionalOrder`;
* the UAS's sending of them (§3): each gets the next RSeq and is retransmitted from T1, doubling,
  until its PRACK arrives, for at most 64*T1 (then the INVITE is refused with a 5xx); only one is
  unacknowledged at a time (later ones wait their turn); and a 2xx may not go out while a
  provisional that carried SDP is unacknowledged — :class:`ReliableProvisionals`.

It never sends anything: the user agent core (:mod:`callxml.sip.ua`) builds the messages, hands
them to the INVITE server transaction, and reads :meth:`ReliableProvisionals.next_deadline`.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from callxml.errors import RemoteProtocolError
from callxml.sip.headers import is_token, parse_digits
from callxml.sip.message import Headers, SipMessage, SipResponse

__all__ = [
    "MAX_QUEUED",
    "ProvisionalOrder",
    "Rack",
    "ReliableProvisionals",
    "parse_rack",
    "parse_rseq",
    "reliable_rseq",
    "requires_100rel",
]

#: §7.1: RSeq is 1 to 2**32 - 1; a first value stays below 2**31 so it never wraps (§3).
MAX_RSEQ = 2**32 - 1
#: Provisional responses waiting for an earlier one's PRACK, at most (a bound, not an RFC rule).
MAX_QUEUED = 8


@dataclass(frozen=True, slots=True)
class Rack:
    """``RAck`` (§7.2): which reliable provisional response a PRACK acknowledges."""

    rseq: int
    cseq: int
    method: str


def parse_rseq(value: str) -> int:
    """``RSeq: 1*DIGIT`` (§7.1), 1 to 2**32 - 1; raises :class:`RemoteProtocolError` (400)."""
    number = parse_digits(value.strip(), MAX_RSEQ)
    if number is None or number < 1:
        raise RemoteProtocolError(f"RSeq: not a response number: {value[:40]!r}")
    return number


def parse_rack(value: str) -> Rack:
    """``RAck: response-num LWS CSeq-num LWS Method`` (§7.2); raises 400 when malformed."""
    parts = value.split()
    if len(parts) != 3:
        raise RemoteProtocolError(f"RAck: needs three fields: {value[:60]!r}")
    rseq = parse_digits(parts[0], MAX_RSEQ)
    cseq = parse_digits(parts[1], 2**32 - 1)
    if rseq is None or rseq < 1 or cseq is None or not is_token(parts[2]):
        raise RemoteProtocolError(f"RAck: malformed: {value[:60]!r}")
    return Rack(rseq, cseq, parts[2])


def requires_100rel(message: SipMessage) -> bool:
    """Whether ``message`` has ``100rel`` in its Require (the UAC demands reliability, §3)."""
    return any(tag.strip().lower() == "100rel" for tag in message.headers.get_all("Require"))


def reliable_rseq(response: SipResponse) -> int | None:
    """The RSeq of a reliable provisional response (101-199 with ``Require: 100rel`` and an
    RSeq), or None for an ordinary one. A malformed RSeq makes it ordinary: it cannot be
    PRACKed, so it is treated as the unreliable provisional it then is."""
    if not 100 < response.status < 200 or not requires_100rel(response):
        return None
    value = response.headers.get("RSeq")
    if value is None:
        return None
    try:
        return parse_rseq(value)
    except RemoteProtocolError:
        return None


class ProvisionalOrder:
    """The UAC's view of one early dialog's reliable provisional responses (§4)."""

    def __init__(self) -> None:
        self.last: int | None = None

    def accept(self, rseq: int) -> bool:
        """True for the response to pass up and PRACK: the first one, or the next in order.
        False for a retransmission (RSeq seen) or one out of order (a gap): both are dropped."""
        if self.last is not None and rseq != self.last + 1:
            return False
        self.last = rseq
        return True


@dataclass
class _Unacknowledged:
    response: SipResponse
    rseq: int
    with_sdp: bool
    next_at: float
    interval: float
    give_up_at: float


class ReliableProvisionals:
    """The UAS side of RFC 3262 §3 for one INVITE: RSeq numbering, retransmission until the
    PRACK, one unacknowledged response at a time, and whether a 2xx must wait.

    :meth:`send` takes each provisional response as it is to go out (without RSeq) and returns
    the message to hand to the transaction now, or None when it waits its turn;
    :meth:`acknowledge` takes a PRACK's RAck; :meth:`due` says what to resend at ``now``.
    """

    def __init__(self, t1: float, *, rng: random.Random | None = None) -> None:
        self._t1 = t1
        # §3: the first RSeq is random, 1 to 2**31 - 1, so a new INVITE is not confused with
        # an old one; kept well below the wrap.
        self._next_rseq = (rng or random.Random()).randint(1, 2**31 - 1)
        self._current: _Unacknowledged | None = None
        self._waiting: deque[SipResponse] = deque()
        self._stopped: int | None = None  # the RSeq left unacknowledged by a final response
        self.gave_up = False

    @property
    def unacknowledged(self) -> SipResponse | None:
        return self._current.response if self._current is not None else None

    @property
    def blocks_answer(self) -> bool:
        """§3: no 2xx while a reliable provisional response with SDP is unacknowledged (sent,
        or waiting to be)."""
        waiting_sdp = any(r.body for r in self._waiting)
        return waiting_sdp or (self._current is not None and self._current.with_sdp)

    def send(self, response: SipResponse, now: float) -> SipResponse | None:
        """``response`` made reliable (``Require: 100rel``, the next ``RSeq``) if it can go
        now; None while an earlier one awaits its PRACK (it goes after). Beyond
        :data:`MAX_QUEUED` waiting, a response without SDP is dropped (a ring is a ring)."""
        if self._current is None:
            return self._start(response, now)
        if len(self._waiting) < MAX_QUEUED or response.body:
            self._waiting.append(response)
        return None

    def acknowledge(
        self, rack: Rack, invite_cseq: int, now: float
    ) -> tuple[bool, SipResponse | None]:
        """A PRACK with ``rack`` arrived: ``(matched, ready)``. Not matched means it
        acknowledges nothing unacknowledged (answer 481, §3); ``ready`` is the next waiting
        provisional response, made reliable, to send now (None when none waits)."""
        current = self._current
        if rack.cseq != invite_cseq or rack.method.upper() != "INVITE":
            return False, None
        if current is None or rack.rseq != current.rseq:
            # A PRACK for the response our final response overtook is still a match: it was
            # unacknowledged (a 481 would make the caller tear the new dialog down, §12.2.1.2).
            if self._stopped is not None and rack.rseq == self._stopped:
                self._stopped = None
                return True, None
            return False, None
        self._current = None
        if self._waiting:
            return True, self._start(self._waiting.popleft(), now)
        return True, None

    def due(self, now: float) -> SipResponse | None:
        """The response to retransmit at ``now`` (one per firing, however late the driver);
        None when nothing is due. After 64*T1 without a PRACK :attr:`gave_up` is set: refuse
        the INVITE with a 5xx (§3)."""
        current = self._current
        if current is None:
            return None
        if now >= current.give_up_at:
            self.gave_up = True
            self.stop()
            return None
        if now < current.next_at:
            return None
        current.interval *= 2  # §3: from T1, doubling (no cap: 64*T1 bounds it)
        current.next_at = now + current.interval
        return current.response

    def next_deadline(self) -> float | None:
        current = self._current
        return min(current.next_at, current.give_up_at) if current is not None else None

    def stop(self) -> None:
        """A final response went out: no more retransmissions, nothing waits (§3). A PRACK for
        the response left unacknowledged is still answered 200 (:meth:`acknowledge`)."""
        if self._current is not None:
            self._stopped = self._current.rseq
        self._current = None
        self._waiting.clear()

    def _start(self, response: SipResponse, now: float) -> SipResponse:
        rseq = self._next_rseq
        self._next_rseq = rseq + 1 if rseq < MAX_RSEQ else 1
        headers = Headers(response.headers.items())
        headers.add("Require", "100rel")
        headers.add("RSeq", str(rseq))
        reliable = SipResponse(
            response.status, response.reason, headers, response.body, response.version
        )
        t1 = self._t1
        self._current = _Unacknowledged(
            reliable, rseq, bool(response.body), now + t1, t1, now + 64 * t1
        )
        return reliable
