"""Several simulated calls on one virtual clock: conferences and queues with more than one caller.

Owns running calls together: each :class:`Caller` is a simulated call (its own document, script
and transcript) that starts at its own simulated time, and all of them share one set of virtual
rooms (:mod:`.rooms`) and queues (:mod:`.queues`) and one clock — the call with the earliest
thing to do always goes next, so what one call does (join a room, take a queued caller, end a
room) reaches the others at the same simulated moment. Times in every transcript are on that
shared clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from callxml.interpreter import CallInfo, CallSession, Limits
from callxml.simulator.driver import MAX_STEPS, TALK_TIME, SimulatedCall
from callxml.simulator.queues import SimulatedQueues
from callxml.simulator.result import SimulationResult
from callxml.simulator.rooms import SimulatedRooms
from callxml.webhooks.base import Fetcher

__all__ = ["Caller", "run_together"]


@dataclass(frozen=True, slots=True)
class Caller:
    """One simulated caller: it calls ``source`` at simulated second ``at``, as ``from_``.

    ``digits`` answers its ``<Gather>``s (and ``<Record>``s, ``<Connect>`` keys) in turn;
    ``stay`` is how long it stays in a conference, waits in a queue before giving up, or talks
    once it has taken a queued caller; ``hangup_after`` (seconds after it called) hangs it up.
    """

    source: str
    from_: str = "+15005550006"
    to: str = "+15005550001"
    at: float = 0.0
    digits: Sequence[str] = ()
    stay: float = TALK_TIME
    hangup_after: float | None = None


async def run_together(
    callers: Sequence[Caller],
    *,
    fetcher: Fetcher,
    account_sid: str,
    auth_token: str,
    url_of: Callable[[str], str],
    method: str = "POST",
    limits: Limits | None = None,
    trunk_uri_template: str | None = None,
    echo: Callable[[str], object] | None = None,
) -> list[SimulationResult]:
    """Run ``callers`` together (see the module docstring); one result each, in order.
    ``url_of(source)`` is the first document's URL for a source."""
    rooms = SimulatedRooms(account_sid)
    queues = SimulatedQueues()
    peers: dict[str, SimulatedCall] = {}
    calls = []
    for caller in callers:
        info = CallInfo.new(from_=caller.from_, to=caller.to, account_sid=account_sid)
        session = CallSession(url=url_of(caller.source), call=info, method=method, limits=limits)
        hangup = None if caller.hangup_after is None else caller.at + caller.hangup_after
        calls.append(
            SimulatedCall(
                session,
                fetcher,
                digits=caller.digits,
                hangup_after=hangup,
                echo=echo,
                trunk_uri_template=trunk_uri_template,
                auth_token=auth_token,
                rooms=rooms,
                queues=queues,
                room_seconds=caller.stay,
                peers=peers,
                start_at=caller.at,
            )
        )
    waiting = sorted(range(len(calls)), key=lambda i: callers[i].at)
    running: list[SimulatedCall] = []
    for _ in range(MAX_STEPS * max(1, len(calls))):
        choices: list[tuple[float, int, SimulatedCall, bool]] = []
        if waiting:
            first = waiting[0]
            choices.append((callers[first].at, first, calls[first], False))
        for call in running:
            due = call.next_time()
            if due is not None:
                choices.append((due, calls.index(call), call, True))
        if not choices:
            break
        _, _, call, started = min(choices, key=lambda c: (c[0], c[1]))
        if started:
            if not await call.guarded(call.step()):
                running.remove(call)
        else:
            waiting.pop(0)
            if await call.guarded(call.begin()):
                running.append(call)
    return [await call.close() for call in calls]
