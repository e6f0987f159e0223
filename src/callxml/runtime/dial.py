"""``<Dial>`` on a real call: child calls, ringing, busy, no-answer, failures, and the bridge.

Owns the media side of :class:`~callxml.interpreter.actions.StartDial`: which SIP URI each noun
means (``<Sip>`` as written, with its ``username``/``password`` for digest auth and its
``?X-…`` headers; ``<Number>`` through the configured trunk template), calling the targets at
once (the first to answer wins, the others are cancelled) or in order, answering the caller on
bridge for ``answerOnBridge``, bridging the two legs' audio and keys, ending the bridge on
``timeLimit``, on ``*`` with ``hangupOnStar``, when either side hangs up or when told to stop; and
reducing it all to one :class:`~callxml.interpreter.events.DialFinished` (DialCallStatus,
DialCallSid, DialCallDuration, DialSipCallId, DialSipResponseCode).

SIP and media live behind two seams, :class:`CallPlacer` (:class:`~callxml.runtime.phone.Phone`)
and :class:`Bridger` (:func:`callxml.runtime.bridge.bridge`); child call records go to a
:class:`ChildLog`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from callxml.errors import CallXmlError
from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from callxml.interpreter.call import new_sid
from callxml.markup.verbs import Client, Conference, DialNoun, Number, Queue, Sip
from callxml.runtime.leg import CallLeg, Leg
from callxml.runtime.phone import DialResult
from callxml.sip.auth import Credentials
from callxml.sip.target import Target

__all__ = ["CallPlacer", "ChildLog", "DialTarget", "Dialer", "resolve_targets"]

log = logging.getLogger(__name__)

#: Most targets one ``<Dial>`` calls (Twilio allows 10 nouns).
MAX_TARGETS = 10


class CallPlacer(Protocol):
    """What the dialler needs to place a call: :meth:`callxml.runtime.phone.Phone.dial`."""

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
    ) -> DialResult: ...


class BridgeHandle(Protocol):
    def stop(self) -> None: ...


class Bridger(Protocol):
    """:func:`callxml.runtime.leg.bridge`: relay audio and keys both ways until ``stop()``;
    ``on_star`` is called (and the key not relayed) when the caller presses ``*``."""

    def __call__(
        self,
        a: Any,
        b: Any,
        on_a_digit: Callable[[str], None] | None = None,
        *,
        on_star: Callable[[], None] | None = None,
    ) -> BridgeHandle: ...


class ChildLog(Protocol):
    """Records of the child calls a dial makes (``outbound-dial`` calls with a parent)."""

    async def child_started(self, sid: str, to: str, from_: str) -> None: ...

    async def child_status(self, sid: str, status: str, **changes: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class DialTarget:
    """One noun of a ``<Dial>``: the parsed SIP :class:`~callxml.sip.target.Target` to call,
    with the noun's digest credentials, or ``error`` when it cannot be called. ``label`` is
    what the call log and the child call's ``To`` show."""

    label: str
    target: Target | None = None
    credentials: Credentials | None = None
    kind: str = "sip"
    error: str = ""


def resolve_targets(
    nouns: Sequence[DialNoun], *, trunk_uri_template: str | None
) -> list[DialTarget]:
    """The targets for ``nouns`` (at most :data:`MAX_TARGETS`).

    ``<Sip>`` uses the target the markup parsed (transport, media policy and X- headers are
    decided there, once); ``<Number>`` goes through the trunk template.
    """
    targets: list[DialTarget] = []
    for noun in nouns[:MAX_TARGETS]:
        match noun:
            case Sip(uri=uri, username=username, password=password):
                try:
                    parsed = noun.target or Target.parse(uri)
                except CallXmlError as exc:
                    targets.append(DialTarget(uri, error=f"invalid SIP URI: {exc}"))
                    continue
                creds = Credentials(username, password or "") if username else None
                targets.append(DialTarget(str(parsed), parsed, creds))
            case Number(number=number):
                if trunk_uri_template is None:
                    error = "no trunk is configured"
                    targets.append(DialTarget(number, kind="number", error=error))
                    continue
                digits = "".join(c for c in number if c.isdigit() or c == "+")
                uri = trunk_uri_template.replace("{number}", digits)
                try:
                    targets.append(DialTarget(uri, Target.parse(uri), kind="number"))
                except CallXmlError as exc:
                    targets.append(DialTarget(uri, kind="number", error=f"trunk URI: {exc}"))
            case Client() | Conference() | Queue():
                kind = type(noun).__name__
                targets.append(DialTarget(kind, kind=kind, error=f"<{kind}> is not supported"))
            case _:
                targets.append(DialTarget(str(noun), kind="other", error="cannot be dialled"))
    return targets


#: How the final status of several failed attempts is chosen: the first of these present.
_FAILURE_ORDER = ("busy", "no-answer", "canceled", "failed")


class Dialer:
    """Runs ``<Dial>`` for :class:`~callxml.runtime.session.CallRunner` (its ``DialRunner``)."""

    def __init__(
        self,
        phone: CallPlacer,
        bridge: Bridger,
        *,
        trunk_uri_template: str | None = None,
        children: ChildLog | None = None,
        clock: Callable[[], float] | None = None,
        event: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.phone = phone
        self.bridge = bridge
        self.trunk_uri_template = trunk_uri_template
        self.children = children
        self._clock = clock
        self._event = event

    def now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    async def _note(self, kind: str, data: dict[str, Any]) -> None:
        if self._event is not None:
            await self._event(kind, data)

    async def __call__(
        self,
        action: act.StartDial,
        caller: Leg,
        *,
        answer_caller: Callable[[], Awaitable[None]],
        stop: asyncio.Event,
    ) -> ev.DialFinished:
        targets = resolve_targets(action.targets, trunk_uri_template=self.trunk_uri_template)
        callable_targets = [t for t in targets if not t.error]
        for target in targets:
            if target.error:
                await self._note("warning", {"message": f"Dial {target.label}: {target.error}"})
        if not callable_targets:
            return ev.DialFinished("failed")
        from_uri = action.caller_id or "sip:callxml@invalid"
        if not from_uri.startswith(("sip:", "sips:")):
            from_uri = f"sip:{from_uri}@callxml.invalid"
        if action.sequential:
            attempts: list[_Attempt] = []
            winner = None
            for target in callable_targets:
                if stop.is_set():
                    break
                attempt = _Attempt(self, target, from_uri, action.timeout)
                attempts.append(attempt)
                winner = await self._race([attempt], stop)
                if winner is not None:
                    break
        else:
            attempts = [_Attempt(self, t, from_uri, action.timeout) for t in callable_targets]
            winner = await self._race(attempts, stop)
        if winner is None:
            return self._failed(attempts, stop.is_set())
        return await self._bridge(action, caller, winner, answer_caller, stop)

    async def _race(self, attempts: list[_Attempt], stop: asyncio.Event) -> _Attempt | None:
        """Start ``attempts`` and return the first answered one; cancel the rest."""
        for attempt in attempts:
            attempt.start()
        stopper = asyncio.ensure_future(stop.wait())
        pending: set[asyncio.Future[Any]] = {a.task for a in attempts if a.task is not None}
        winner: _Attempt | None = None
        try:
            while pending and winner is None:
                done, pending = await asyncio.wait(
                    pending | {stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(stopper)
                if stopper in done:
                    break
                for attempt in attempts:
                    if attempt.task in done and attempt.answered_leg() is not None:
                        winner = attempt
                        break
        finally:
            stopper.cancel()
            losers = [a for a in attempts if a is not winner]
            for attempt in losers:
                await attempt.cancel()
        return winner

    def _failed(self, attempts: list[_Attempt], stopped: bool) -> ev.DialFinished:
        statuses = [a.status for a in attempts]
        status = "canceled" if stopped else "failed"
        if not stopped:
            status = next((s for s in _FAILURE_ORDER if s in statuses), "failed")
        chosen = next(
            (a for a in attempts if a.status == status), attempts[-1] if attempts else None
        )
        if chosen is None:
            return ev.DialFinished(status)
        return ev.DialFinished(
            status,
            chosen.sid,
            0,
            sip_call_id=chosen.sip_call_id,
            sip_response_code=chosen.sip_response_code or (487 if stopped else None),
        )

    async def _bridge(
        self,
        action: act.StartDial,
        caller: Leg,
        winner: _Attempt,
        answer_caller: Callable[[], Awaitable[None]],
        stop: asyncio.Event,
    ) -> ev.DialFinished:
        child = winner.answered_leg()
        assert child is not None
        if not caller.answered:
            await answer_caller()  # answerOnBridge: the caller is answered only now
        star = asyncio.Event()
        bridged_at = self.now()
        await self._child_status(
            winner.sid,
            "in-progress",
            start_time=_wall(),
            sip_response_code=winner.sip_response_code,
            sip_call_id=winner.sip_call_id,
        )
        handle = self.bridge(caller, child, on_star=star.set if action.hangup_on_star else None)
        ends = [
            asyncio.ensure_future(child.ended.wait()),
            asyncio.ensure_future(caller.ended.wait()),
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(star.wait()),
        ]
        try:
            await asyncio.wait(ends, timeout=action.time_limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in ends:
                waiter.cancel()
            handle.stop()
            if not child.ended.is_set():
                with contextlib.suppress(CallXmlError, TimeoutError, OSError):
                    await asyncio.wait_for(child.hangup("dial ended"), 10)
        duration = max(0, round(self.now() - bridged_at))
        await self._child_status(winner.sid, "completed", end_time=_wall(), duration=duration)
        return ev.DialFinished(
            "completed",
            winner.sid,
            duration,
            sip_call_id=winner.sip_call_id,
            sip_response_code=winner.sip_response_code,
        )

    async def _child_status(self, sid: str, status: str, **changes: Any) -> None:
        if self.children is not None:
            try:
                await self.children.child_status(sid, status, **changes)
            except Exception:
                log.exception("child call %s: status not recorded", sid)


class _Attempt:
    """One child call: a ``Phone.dial`` task and what came of it."""

    def __init__(self, dialer: Dialer, target: DialTarget, from_uri: str, timeout: float) -> None:
        self.dialer = dialer
        self.target = target
        self.from_uri = from_uri
        self.timeout = timeout
        self.sid = new_sid("CA")
        self.task: asyncio.Task[DialResult | None] | None = None
        self.status = "failed"
        self.sip_response_code: int | None = None
        self.sip_call_id: str | None = None
        self._ringing: asyncio.Future[None] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> DialResult | None:
        children = self.dialer.children
        if children is not None:
            with contextlib.suppress(Exception):
                await children.child_started(self.sid, self.target.label, self.from_uri)

        def ringing() -> None:
            if children is not None and self._ringing is None:
                self._ringing = asyncio.ensure_future(
                    self.dialer._child_status(self.sid, "ringing")
                )

        assert self.target.target is not None  # only callable targets are attempted
        try:
            result = await self.dialer.phone.dial(
                self.target.target,
                from_uri=self.from_uri,
                timeout=self.timeout,
                credentials=self.target.credentials,
                on_ringing=ringing,
                sid=self.sid,
            )
        except asyncio.CancelledError:
            self.status = "canceled"
            raise
        except CallXmlError as exc:
            self.status = "failed"
            await self.dialer._note("warning", {"message": f"Dial {self.target.label}: {exc}"})
            await self.dialer._child_status(self.sid, "failed", error=str(exc))
            return None
        self.status = result.status
        self.sip_response_code = result.sip_response_code
        self.sip_call_id = result.sip_call_id
        note: dict[str, Any] = {
            "uri": self.target.label,
            "status": result.status,
            "sip_response_code": result.sip_response_code,
            "sip_call_id": result.sip_call_id,
            "reason": result.reason,
        }
        leg = result.leg  # a CallLeg, or a test double of the Leg protocol without these
        if getattr(leg, "secure", False):
            note["suite"] = getattr(leg, "suite", None)
        zrtp = getattr(leg, "zrtp_result", None)
        if zrtp is not None:  # the SAS for the log (RFC 6189 §7): never a key
            note.update(zrtp_sas=zrtp.sas, zrtp_algorithms=zrtp.algorithms)
        await self.dialer._note("dial", note)
        if result.leg is None:
            await self.dialer._child_status(
                self.sid,
                result.status if result.status != "answered" else "failed",
                sip_response_code=result.sip_response_code,
                sip_call_id=result.sip_call_id,
                end_time=_wall(),
            )
        return result

    def answered_leg(self) -> CallLeg | None:
        task = self.task
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return None
        result = task.result()
        return None if result is None else result.leg

    async def cancel(self) -> None:
        """Stop ringing (CANCEL), or hang up a leg that answered too late."""
        task = self.task
        if task is None:
            return
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            self.status = "canceled"
            self.sip_response_code = self.sip_response_code or 487
            await self.dialer._child_status(self.sid, "canceled", end_time=_wall())
            return
        leg = self.answered_leg()
        if leg is not None and not leg.ended.is_set():
            with contextlib.suppress(CallXmlError, TimeoutError, OSError):
                await asyncio.wait_for(leg.hangup("another target answered first"), 10)
            await self.dialer._child_status(self.sid, "completed", end_time=_wall(), duration=0)


def _wall() -> float:
    """Unix time, for records (the loop clock drives the call itself)."""
    return time.time()
