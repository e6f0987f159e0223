"""Forking: a registered user's devices rung all at once, the first to answer wins (RFC 3261 §16.7).

A user registered to one of our domains (``<Dial><Client>alice</Client>``, ``<Sip>`` to
``alice@<our domain>``, REST ``To=client:alice``) may have several bindings: a desk phone and a
softphone, say. This module owns ringing them in parallel as one call attempt: each
:class:`Branch` is dialled through the phone at once (over the device's flow first, see
:class:`~callxml.sip.events.Address`), the first 2xx wins and every other branch is cancelled
(CANCEL while ringing; BYE for an answer that raced the winner), a 6xx ends the fork at once
(§16.7 step 5: "busy everywhere"), and when nobody answers the outcome is the most telling of
the branches' (busy, then no-answer, then canceled, then failed, as ``<Dial>`` chooses among
its nouns). A user with no binding at all is ``480 Temporarily Unavailable`` (§10.3, §16.5):
DialCallStatus ``no-answer``.

It knows who to ring only as :class:`Callee` values handed over by the engine's registrar, and
places calls only through the :class:`ForkPlacer` seam (:meth:`callxml.runtime.phone.Phone.dial`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from callxml.errors import CallXmlError
from callxml.runtime.phone import DialResult
from callxml.sip.auth import Credentials
from callxml.sip.events import Address
from callxml.sip.target import Target

__all__ = ["NOT_REGISTERED", "Branch", "Callee", "ForkPlacer", "dial_fork"]

log = logging.getLogger(__name__)

#: The SIP status of a user with no current binding (RFC 3261 §10.3, §16.5).
NOT_REGISTERED = 480
#: The order in which a failed fork's outcome is chosen among its branches'.
_FAILURE_ORDER = ("busy", "no-answer", "canceled", "failed")
#: Most branches rung for one user (a registrar bounds bindings per user too).
MAX_BRANCHES = 16


@dataclass(frozen=True, slots=True)
class Branch:
    """One registered device: the :class:`Target` to call (its Contact as the Request-URI, the
    domain's media policy) and where to send the INVITE, in order (its flow, then its
    Contact's address)."""

    target: Target
    destinations: tuple[Address, ...] = ()


@dataclass(frozen=True, slots=True)
class Callee:
    """A registered user to ring: ``label`` as the call log shows it (``client:alice``) and its
    current bindings, best first (none: not registered)."""

    label: str
    branches: tuple[Branch, ...] = ()


class ForkPlacer(Protocol):
    """What a fork needs to place one branch: :meth:`callxml.runtime.phone.Phone.dial`."""

    async def dial(
        self,
        target: Target | str,
        *,
        from_uri: str | None = None,
        timeout: float = 30,
        credentials: Credentials | None = None,
        headers: Sequence[tuple[str, str]] = (),
        on_ringing: Callable[[], None] | None = None,
        sid: str | None = None,
        destinations: Sequence[Address] = (),
    ) -> DialResult: ...


async def dial_fork(
    placer: ForkPlacer,
    callee: Callee,
    *,
    from_uri: str | None = None,
    timeout: float = 30.0,
    headers: Sequence[tuple[str, str]] = (),
    on_ringing: Callable[[], None] | None = None,
    sid: str | None = None,
) -> DialResult:
    """Ring every branch of ``callee`` at once for at most ``timeout`` seconds; the first to
    answer is the result (its leg carries ``sid``), the others are cancelled. Never raises for
    the far ends' behaviour; cancelling the task cancels every branch."""
    branches = callee.branches[:MAX_BRANCHES]
    if not branches:
        reason = f"{callee.label} is not registered"
        return DialResult("no-answer", NOT_REGISTERED, None, reason)
    rang = False

    def ringing() -> None:
        nonlocal rang
        if not rang and on_ringing is not None:
            rang = True
            on_ringing()

    async def place(branch: Branch) -> DialResult:
        return await placer.dial(
            branch.target,
            from_uri=from_uri,
            timeout=timeout,
            headers=headers,
            on_ringing=ringing,
            sid=sid,
            destinations=branch.destinations,
        )

    if len(branches) == 1:
        return await place(branches[0])
    tasks = [asyncio.ensure_future(place(branch)) for branch in branches]
    results: list[DialResult] = []
    winner: DialResult | None = None
    pending: set[asyncio.Future[DialResult]] = set(tasks)
    try:
        while pending and winner is None:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                result = _outcome(task)
                if result.leg is not None and winner is None:
                    winner = result
                elif result.leg is not None:  # answered too: only one may win
                    await _hang_up(result)
                else:
                    results.append(result)
            if winner is None and any(_global_failure(r) for r in results):
                break  # §16.7 step 5: a 6xx ends the fork
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                late = await task
                if late.leg is not None and late is not winner:
                    await _hang_up(late)
    if winner is not None:
        return winner
    return _best_failure(results)


def _outcome(task: asyncio.Future[DialResult]) -> DialResult:
    try:
        return task.result()
    except CallXmlError as exc:
        return DialResult("failed", None, None, str(exc))


def _global_failure(result: DialResult) -> bool:
    return result.sip_response_code is not None and 600 <= result.sip_response_code < 700


async def _hang_up(result: DialResult) -> None:
    leg = result.leg
    if leg is not None and not leg.ended.is_set():
        with contextlib.suppress(CallXmlError, TimeoutError, OSError):
            await asyncio.wait_for(leg.hangup("another device answered first"), 10)


def _best_failure(results: list[DialResult]) -> DialResult:
    """§16.7 step 6, in DialCallStatus terms: a 6xx first, then busy, no-answer, canceled,
    failed; its reason lists what every branch said."""
    chosen = next((r for r in results if _global_failure(r)), None)
    if chosen is None:
        statuses = [r.status for r in results]
        status = next((s for s in _FAILURE_ORDER if s in statuses), "failed")
        chosen = next(r for r in results if r.status == status)
    if len(results) > 1:
        every = "; ".join(r.reason for r in results if r.reason)
        return replace(chosen, reason=f"{chosen.reason} (devices: {every})")
    return chosen
