"""Admission control: whether the engine takes one more call now (docs/reliability.md).

Past its capacity an engine that takes every call serves none: setups pile up, every webhook
and every SIP retransmission waits behind the others, and goodput collapses (issue 16 measured
523 of 2,000 calls unanswered at twice the peak rate). So new work is refused *early and
cheaply*, before any record, media port or webhook fetch: a new INVITE gets ``503 Service
Unavailable`` with ``Retry-After``, a REST create Twilio's ``429``. Calls already taken are never
dropped for lack of capacity: the limits only gate new ones, and in-dialog requests (ACK, BYE,
CANCEL, re-INVITE) never pass through here.

The limits (``[limits]`` in the configuration): concurrent calls, call setups in flight (taken
and not yet answered or ended), new INVITEs per second overall and per source address (token
buckets, a burst of one second's worth), REST creates per second, and webhook fetches in flight.
And one that is not a number: a store that takes no writes (:mod:`callxml.engine.health`)
refuses every new call, reason ``store``.
Pure bookkeeping with an explicit clock, so the rules are unit-testable; the engine calls it.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass

from callxml.engine.health import StoreHealth

__all__ = ["Admission", "AdmissionLimits", "Slot", "TokenBucket"]

#: Source addresses whose INVITE rate is remembered (least recently seen forgotten first).
MAX_SOURCES = 10_000
#: How long a call admitted by ``admit_*`` holds its place until :meth:`Admission.take` counts
#: it. An INVITE that is admitted and then answered otherwise (a 400, a digest challenge, an
#: engine stopping) never reaches ``take``: its place is given back after this long.
RESERVATION_SECONDS = 2.0


@dataclass(frozen=True)
class AdmissionLimits:
    """``[limits]``: see docs/reliability.md for each default and what happens past it."""

    max_calls: int = 1000
    max_setups: int = 60
    # Flood guards, not the capacity control: set far above what one engine completes (about
    # 120 calls/s on 2 cores), because a rate cap below the peak refuses calls the engine could
    # have served (bench/overload.py measured goodput capped at ~90 % of the peak by a 100/s
    # default). ``max_setups`` follows the engine's real speed instead: it refuses only while
    # the calls already taken are still being set up.
    invites_per_second: float = 1000.0
    invites_per_second_per_source: float = 500.0
    creates_per_second: float = 50.0
    max_webhook_fetches: int = 200
    retry_after: int = 5


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; :meth:`take` spends one if it can."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.at = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Admission:
    """Counts calls, setups and fetches in flight; answers whether one more call may start.

    Two steps, so that the cheap one can run where refusing is cheapest. :meth:`admit_invite`
    (the SIP core calls it for each new INVITE, before any transaction exists, and refuses
    statelessly) and :meth:`admit_create` (REST) spend the rate tokens and look at the
    capacity; :meth:`take` then counts the call (returning its :class:`Slot`) or, if capacity
    ran out meanwhile, refuses. Each returns None or the name of the limit that refused;
    ``refused`` counts refusals by limit, for metrics and tests.

    An admission *reserves* a place until :meth:`take` counts the call (or
    :data:`RESERVATION_SECONDS` pass): the SIP core admits INVITEs as they arrive, and a burst
    read in one pass would otherwise all pass the capacity check before the first of them is
    counted, to be refused later and dearer (after a transaction exists) or, worse, taken.
    """

    def __init__(self, limits: AdmissionLimits, *, store_health: StoreHealth | None = None) -> None:
        self.limits = limits
        self.store_health = store_health
        self.calls = 0
        self.setups = 0
        self.fetches = 0
        self.refused: Counter[str] = Counter()
        self._invites: TokenBucket | None = None
        self._creates: TokenBucket | None = None
        self._sources: OrderedDict[str, TokenBucket] = OrderedDict()
        self._reserved: deque[float] = deque()  # when each admitted, not yet taken, call was

    @property
    def reserved(self) -> int:
        """Calls admitted and not yet counted by :meth:`take` (nor expired)."""
        return len(self._reserved)

    def _expire(self, now: float) -> None:
        reserved, horizon = self._reserved, now - RESERVATION_SECONDS
        while reserved and reserved[0] <= horizon:
            reserved.popleft()

    def _capacity(self) -> str | None:
        limits = self.limits
        if self.store_health is not None and not self.store_health.ok:
            return "store"  # records could not be kept: take no call until they can
        pending = len(self._reserved)
        if self.calls + pending >= limits.max_calls:
            return "max_calls"
        if self.setups + pending >= limits.max_setups:
            return "max_setups"
        if self.fetches >= limits.max_webhook_fetches:
            return "max_webhook_fetches"
        return None

    def admit_invite(self, source: str, now: float) -> str | None:
        """May a new INVITE from ``source`` (an IP address) start a call at ``now``?"""
        limits = self.limits
        self._expire(now)
        reason = self._capacity()
        if reason is None:
            bucket = self._sources.get(source)
            if bucket is None:
                rate = limits.invites_per_second_per_source
                bucket = self._sources[source] = TokenBucket(rate, max(rate, 1.0), now)
                while len(self._sources) > MAX_SOURCES:
                    self._sources.popitem(last=False)
            self._sources.move_to_end(source)
            if self._invites is None:
                rate = limits.invites_per_second
                self._invites = TokenBucket(rate, max(rate, 1.0), now)
            if not bucket.take(now):
                reason = "invites_per_second_per_source"
            elif not self._invites.take(now):
                reason = "invites_per_second"
        return self._decide(reason, now)

    def admit_create(self, now: float) -> str | None:
        """May a REST create start a call at ``now``?"""
        self._expire(now)
        reason = self._capacity()
        if reason is None:
            if self._creates is None:
                rate = self.limits.creates_per_second
                self._creates = TokenBucket(rate, max(rate, 1.0), now)
            if not self._creates.take(now):
                reason = "creates_per_second"
        return self._decide(reason, now)

    def _decide(self, reason: str | None, now: float | None = None) -> str | None:
        if reason is not None:
            self.refused[reason] += 1
        elif now is not None:
            self._reserved.append(now)  # held until take() counts it
        return reason

    def take(self) -> Slot | str:
        """Count one more call (and setup) if capacity allows: its :class:`Slot`, or the limit
        that refused. A place reserved by an earlier ``admit_*`` is used first (the capacity
        check then passes unless something else, a failing store, changed since).
        :meth:`Slot.settle` when it is answered (or ends unanswered), :meth:`Slot.release`
        when it is over; each counts once."""
        if self._reserved:
            self._reserved.popleft()
        reason = self._decide(self._capacity())
        if reason is not None:
            return reason
        self.calls += 1
        self.setups += 1
        return Slot(self)

    def setup_done(self) -> None:
        """A call taken by an ``admit_*`` was answered, or ended before that."""
        self.setups = max(0, self.setups - 1)

    def call_done(self) -> None:
        """A call taken by an ``admit_*`` is over."""
        self.calls = max(0, self.calls - 1)


class Slot:
    """One admitted call's share of the counts; idempotent, so every path may call both."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._settled = False
        self._released = False

    def settle(self) -> None:
        if not self._settled:
            self._settled = True
            self._admission.setup_done()

    def release(self) -> None:
        self.settle()
        if not self._released:
            self._released = True
            self._admission.call_done()
