"""Session timers (RFC 4028), sans-IO: keeping an established call alive, and ending it when the
other side is gone.

A carrier or a stateful proxy in the path cannot tell a long call from one whose far end died
without a BYE, so it asks the endpoints to *refresh* the session every so often with a re-INVITE
or an UPDATE, and drops calls that stop refreshing. This module owns the rules of that:

* the header values: ``Session-Expires: <delta-seconds>[;refresher=uac|uas]`` and
  ``Min-SE: <delta-seconds>`` (§4, §5), parsed strictly (a bad value is a 400);
* what a UAS does with a request that creates or refreshes the session (§9): 422 with our Min-SE
  when the interval asked for is too small, otherwise the Session-Expires of its 2xx, who
  refreshes, and whether the 2xx needs ``Require: timer`` (:func:`uas_negotiate`);
* what a UAC learns from a 2xx (§7.2, :func:`uac_negotiated`) and how it retries after a 422
  (§7.4: ask again with the Min-SE it was given, :func:`retry_interval`);
* one :class:`SessionTimer` per call: a state machine written as a transition table with the
  RFC's terms, fed ``now``, that says when to send a refresh (half the interval, §10), when the
  session has expired (without a refresh by ``interval - min(32, interval / 3)`` the side that
  does not refresh sends BYE, §10; the refresher gives up at the interval), and what a failed
  refresh means (408 or 481 or no answer: BYE, §10; a 422: again with the larger interval).

It never sends anything: the user agent core (:mod:`callxml.sip.ua`) builds the requests and
responses, and asks :meth:`SessionTimer.next_deadline` for its timer heap.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from callxml.errors import ConfigError, RemoteProtocolError
from callxml.sip.headers import parse_digits, parse_params
from callxml.sip.message import SipMessage, SipRequest

__all__ = [
    "DEFAULT_SESSION_TIMER",
    "MIN_SE",
    "TIMER_TABLE",
    "Refresher",
    "SessionTimer",
    "SessionTimerConfig",
    "TimerAction",
    "TimerInput",
    "TimerState",
    "UasDecision",
    "parse_min_se",
    "parse_session_expires",
    "request_headers",
    "retry_interval",
    "supports_timer",
    "uac_negotiated",
    "uas_negotiate",
]

#: RFC 4028 §4: the smallest session interval anyone may ask for, and the default Min-SE.
MIN_SE = 90
#: §4 recommends 1800 s: refreshes every 15 minutes.
DEFAULT_EXPIRES = 1800
#: A session interval longer than this is treated as this (a bound, not an RFC rule: a day).
MAX_EXPIRES = 86400
#: §10: the non-refresher sends BYE this long before the end of the interval, or a third of it.
BYE_MARGIN = 32
#: A failed refresh (other than 408/481/422) is tried again at most this often before expiry.
MAX_REFRESH_RETRIES = 3
#: Never retry a failed refresh sooner than this after the failure, in seconds.
MIN_RETRY_GAP = 2.0


class Refresher(StrEnum):
    """Who refreshes, named by the roles in the transaction that negotiated it (§4)."""

    UAC = "uac"
    UAS = "uas"


@dataclass(frozen=True, slots=True)
class SessionTimerConfig:
    """Our side of RFC 4028.

    ``expires`` is the session interval we ask for (our INVITE's Session-Expires) and insert when
    a caller asks for none; ``min_se`` the smallest interval we accept (a smaller one is answered
    422 with our Min-SE). RFC 4028 §4 puts the floor at 90 s; values below it exist for tests
    against real peers and should never face a carrier. ``refresh_method`` is what we refresh
    with when the peer allows UPDATE (``"UPDATE"``, RFC 3311: no SDP, no re-negotiation) or
    always ``"INVITE"`` (a re-INVITE carrying our unchanged SDP).
    """

    expires: int = DEFAULT_EXPIRES
    min_se: int = MIN_SE
    refresh_method: str = "UPDATE"

    def __post_init__(self) -> None:
        if not 1 <= self.min_se <= self.expires <= MAX_EXPIRES:
            raise ConfigError(
                f"session timers: need 1 <= min_se <= expires <= {MAX_EXPIRES} seconds"
            )
        if self.refresh_method not in ("UPDATE", "INVITE"):
            raise ConfigError("session timers: refresh_method is UPDATE or INVITE")


#: Session timers as the RFC recommends them: 1800 s, Min-SE 90, refreshed with UPDATE.
DEFAULT_SESSION_TIMER = SessionTimerConfig()


# -- header values -----------------------------------------------------------------------------


def parse_session_expires(value: str) -> tuple[int, Refresher | None]:
    """``Session-Expires`` (§4): delta-seconds and the refresher, if given.

    Raises :class:`RemoteProtocolError` (400) for anything else: a missing or non-numeric
    interval, a refresher other than ``uac``/``uas``.
    """
    text, _, rest = value.strip().partition(";")
    seconds = parse_digits(text.strip(), 2**32 - 1)
    if seconds is None or seconds < 1:
        raise RemoteProtocolError(f"Session-Expires: not delta-seconds: {value[:40]!r}")
    refresher: Refresher | None = None
    if rest:
        try:
            params = parse_params(";" + rest)
        except RemoteProtocolError:
            raise RemoteProtocolError("Session-Expires: bad parameters") from None
        for name, param in params:
            if name.lower() == "refresher":
                if param is None or param.lower() not in ("uac", "uas"):
                    raise RemoteProtocolError("Session-Expires: refresher must be uac or uas")
                refresher = Refresher(param.lower())
    return min(seconds, MAX_EXPIRES), refresher


def parse_min_se(value: str) -> int:
    """``Min-SE`` (§5): delta-seconds (parameters ignored). Raises 400 when malformed."""
    seconds = parse_digits(value.strip().partition(";")[0].strip(), 2**32 - 1)
    if seconds is None:
        raise RemoteProtocolError(f"Min-SE: not delta-seconds: {value[:40]!r}")
    return min(seconds, MAX_EXPIRES)


def _session_expires(message: SipMessage) -> tuple[int, Refresher | None] | None:
    value = message.headers.get("Session-Expires")  # compact form ``x`` is expanded on parsing
    return parse_session_expires(value) if value is not None else None


def _min_se(message: SipMessage) -> int | None:
    value = message.headers.get("Min-SE")
    return parse_min_se(value) if value is not None else None


def _has_option(message: SipMessage, name: str, tag: str) -> bool:
    return any(v.strip().lower() == tag for v in message.headers.get_all(name))


def supports_timer(message: SipMessage) -> bool:
    """Whether ``message`` says its sender supports session timers (``Supported``/``Require``)."""
    return _has_option(message, "Supported", "timer") or _has_option(message, "Require", "timer")


def request_headers(
    config: SessionTimerConfig, *, interval: int | None = None, refresher: Refresher | None = None
) -> list[tuple[str, str]]:
    """Session-Expires (and Min-SE when it is not the default) for a request we send: the
    INVITE (§7.1, no refresher: the UAS chooses) or a refresh (§7.4, ``refresher=uac``: us)."""
    seconds = interval if interval is not None else config.expires
    value = f"{seconds};refresher={refresher.value}" if refresher is not None else str(seconds)
    headers = [("Session-Expires", value)]
    if config.min_se != MIN_SE:
        headers.append(("Min-SE", str(config.min_se)))
    return headers


# -- negotiation -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UasDecision:
    """What a UAS does with a request that creates or refreshes a session (§9).

    ``too_small`` set: answer 422 with ``Min-SE: <too_small>``. Otherwise the 2xx carries
    ``Session-Expires: <interval>;refresher=<refresher>`` (and ``Require: timer`` when the
    refresher is the UAC, which then supports it); ``we_refresh`` says whether that is us.
    """

    interval: int = 0
    refresher: Refresher = Refresher.UAS
    too_small: int | None = None

    @property
    def we_refresh(self) -> bool:
        return self.refresher is Refresher.UAS

    def response_headers(self) -> list[tuple[str, str]]:
        headers = [("Session-Expires", f"{self.interval};refresher={self.refresher.value}")]
        if self.refresher is Refresher.UAC:
            headers.append(("Require", "timer"))  # §9: the UAC must know it refreshes
        return headers


def uas_negotiate(request: SipRequest, config: SessionTimerConfig) -> UasDecision:
    """§9, for an INVITE, re-INVITE or UPDATE we are about to accept.

    * Session-Expires below our Min-SE (or below the request's own Min-SE) → 422 with ours.
    * Session-Expires given: that interval; the refresher it names, else the UAC when it
      supports timers (it asked), else us.
    * none given: we insert ours (at least the request's Min-SE, §9), refreshed by the UAC when
      it supports timers, else by us (a UAC without the extension never learns it).

    Raises :class:`RemoteProtocolError` (400) for a malformed Session-Expires or Min-SE.
    """
    asked = _session_expires(request)
    their_min = _min_se(request) or 0
    supported = supports_timer(request)
    if asked is not None:
        interval, refresher = asked
        if interval < config.min_se:
            return UasDecision(too_small=config.min_se)
        if refresher is None:
            refresher = Refresher.UAC if supported else Refresher.UAS
        return UasDecision(interval, refresher)
    interval = max(config.expires, their_min, config.min_se)
    return UasDecision(interval, Refresher.UAC if supported else Refresher.UAS)


def uac_negotiated(response: SipMessage) -> tuple[int, bool] | None:
    """What the 2xx to a request we sent settled (§7.2): ``(interval, we_refresh)``, or None when
    it has no Session-Expires (no session timer, §7.2). Raises 400 for a malformed value."""
    found = _session_expires(response)
    if found is None:
        return None
    interval, refresher = found
    # §7.2: a 2xx without a refresher leaves it to us, the UAC.
    return interval, refresher in (None, Refresher.UAC)


def retry_interval(response: SipMessage, asked: int) -> int | None:
    """After a 422 (§7.4): the interval to ask for next, the larger of its Min-SE and what we
    asked; None when it names no larger Min-SE (asking again would loop)."""
    their_min = _min_se(response)
    if their_min is None or their_min <= asked:
        return None
    return their_min


# -- the per-call state machine -------------------------------------------------------------------


class TimerState(StrEnum):
    RUNNING = "session interval running"
    REFRESHING = "refresh request pending"  # ours, sent and not yet answered
    EXPIRED = "session expired"


class TimerInput(StrEnum):
    REFRESH_DUE = "half the session interval passed (we refresh), §10"
    EXPIRY_DUE = "the session interval (less the BYE margin) passed, §10"
    REFRESHED = "a session refresh succeeded (a 2xx with Session-Expires), §7.2/§9"
    REFRESH_FAILED = "our refresh got a non-2xx (not 408/481/422), §10"
    REFRESH_FATAL = "our refresh got 408 or 481, or no answer at all, §10"


class TimerAction(StrEnum):
    SEND_REFRESH = "send a session refresh (UPDATE or re-INVITE)"
    SEND_BYE = "send BYE: the session is over"
    RESTART = "start a new session interval now"
    SCHEDULE_RETRY = "try the refresh again, half-way to expiry"


S, I, A = TimerState, TimerInput, TimerAction  # noqa: E741  (short names keep the table readable)

#: RFC 4028 §10 as a table: ``(state, input) -> (next state, actions)``.
TIMER_TABLE: dict[tuple[TimerState, TimerInput], tuple[TimerState, tuple[TimerAction, ...]]] = {
    (S.RUNNING, I.REFRESH_DUE): (S.REFRESHING, (A.SEND_REFRESH,)),
    (S.RUNNING, I.EXPIRY_DUE): (S.EXPIRED, (A.SEND_BYE,)),
    (S.RUNNING, I.REFRESHED): (S.RUNNING, (A.RESTART,)),
    (S.REFRESHING, I.REFRESHED): (S.RUNNING, (A.RESTART,)),
    (S.REFRESHING, I.REFRESH_FAILED): (S.RUNNING, (A.SCHEDULE_RETRY,)),
    (S.REFRESHING, I.REFRESH_FATAL): (S.EXPIRED, (A.SEND_BYE,)),
    (S.REFRESHING, I.EXPIRY_DUE): (S.EXPIRED, (A.SEND_BYE,)),
}


class SessionTimer:
    """One call's session timer: the interval, who refreshes, and when things are due.

    Feed it :meth:`refreshed` (a 2xx that negotiated an interval, sent or received),
    :meth:`refresh_sent`, :meth:`refresh_failed` and the clock (:meth:`fire` at
    :meth:`next_deadline`); it answers with :class:`TimerAction` values for the core to carry out.
    """

    def __init__(self, interval: int, we_refresh: bool, now: float) -> None:
        self.state = TimerState.RUNNING
        self.interval = interval
        self.we_refresh = we_refresh
        self.started = now
        self.retries = 0
        self._retry_at: float | None = None

    def __repr__(self) -> str:
        who = "we" if self.we_refresh else "peer"
        return f"SessionTimer({self.interval}s, {who} refresh, {self.state.name})"

    # -- deadlines --------------------------------------------------------------------------

    @property
    def expires_at(self) -> float:
        """When the session is over without a refresh: the refresher gives up at the interval,
        the other side sends BYE ``min(32, interval / 3)`` before it (§10)."""
        if self.we_refresh:
            return self.started + self.interval
        return self.started + self.interval - min(BYE_MARGIN, self.interval / 3)

    @property
    def refresh_at(self) -> float | None:
        """When we refresh: half-way through the interval (§10), or a scheduled retry."""
        if not self.we_refresh or self.state is not TimerState.RUNNING:
            return None
        if self._retry_at is not None:
            return self._retry_at
        return self.started + self.interval / 2

    def next_deadline(self) -> float | None:
        if self.state is TimerState.EXPIRED:
            return None
        refresh = self.refresh_at
        return min(refresh, self.expires_at) if refresh is not None else self.expires_at

    # -- inputs -----------------------------------------------------------------------------

    def fire(self, now: float) -> tuple[TimerAction, ...]:
        """What is due at ``now`` (nothing when nothing is)."""
        if self.state is TimerState.EXPIRED:
            return ()
        if now >= self.expires_at:
            return self._apply(TimerInput.EXPIRY_DUE, now)
        refresh = self.refresh_at
        if refresh is not None and now >= refresh:
            self._retry_at = None
            return self._apply(TimerInput.REFRESH_DUE, now)
        return ()

    def refresh_sent(self) -> None:
        """A request that refreshes the session went out without the timer asking (a hold
        re-INVITE, say): it counts, and no other refresh goes out while it is pending."""
        if self.state is TimerState.RUNNING:
            self.state = TimerState.REFRESHING

    def refreshed(self, interval: int, we_refresh: bool, now: float) -> tuple[TimerAction, ...]:
        """A 2xx settled a session interval (ours or the peer's refresh, §7.2, §9)."""
        self.interval = interval
        self.we_refresh = we_refresh
        return self._apply(TimerInput.REFRESHED, now)

    def refresh_failed(self, status: int, now: float) -> tuple[TimerAction, ...]:
        """Our refresh got ``status`` (408 for no answer at all). 408 and 481 end the session
        (§10); anything else leaves it running until a retry or the expiry."""
        fatal = status in (408, 481)
        return self._apply(TimerInput.REFRESH_FATAL if fatal else TimerInput.REFRESH_FAILED, now)

    def _apply(self, event: TimerInput, now: float) -> tuple[TimerAction, ...]:
        entry = TIMER_TABLE.get((self.state, event))
        if entry is None:
            return ()
        self.state, actions = entry
        for action in actions:
            if action is TimerAction.RESTART:
                self.started, self.retries, self._retry_at = now, 0, None
            elif action is TimerAction.SCHEDULE_RETRY:
                self._schedule_retry(now)
        return actions

    def _schedule_retry(self, now: float) -> None:
        """Half-way between now and expiry, at most :data:`MAX_REFRESH_RETRIES` times and never
        within :data:`MIN_RETRY_GAP`: past that the expiry decides (BYE)."""
        at = now + (self.expires_at - now) / 2
        if self.retries >= MAX_REFRESH_RETRIES or at - now < MIN_RETRY_GAP:
            self._retry_at = self.expires_at + 1  # never: the expiry comes first
            return
        self.retries += 1
        self._retry_at = at
