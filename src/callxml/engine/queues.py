"""Call queues on the engine: ``<Enqueue>``, ``<Dial><Queue>``, ``<Leave>``, and REST's hold.

Owns the queues of one engine (:class:`Queues`): each queue's record in the store (made by the
first ``<Enqueue>`` that names it, or by REST ``Queues.json``) and, live, its members in the
order they came. While a caller waits, its ``waitUrl`` runs on its own leg in a loop — each
round a fresh document request with ``QueuePosition``, ``QueueSid``, ``QueueTime``,
``AvgQueueTime``, ``CurrentQueueSize`` and ``MaxQueueSize`` — or, without one, a hold tone.
The wait ends when an agent's ``<Dial><Queue>`` takes the member who waited longest (the
queue's ``url`` runs on the caller first, then the two legs are bridged), when the wait
document runs ``<Leave>``, fails, or hangs up, when the caller hangs up, when the call is
redirected (REST), or when the engine stops; the caller's ``<Enqueue>`` then gets its
``QueueResult``.

A wait round is a nested :class:`~callxml.runtime.session.CallRunner` (a ``waiting`` session)
on the caller's leg, released — not hung up — when the caller leaves the queue; every task
here releases what it owns in ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from callxml.engine.calls import CallBook, ChildBook
from callxml.engine.conference import hold_tone
from callxml.engine.store import QueueRecord, Store
from callxml.errors import CallXmlError, MediaError
from callxml.interpreter import CallInfo, CallSession, new_sid
from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from callxml.runtime.bridge import bridge
from callxml.runtime.leg import CallLeg, Leg
from callxml.runtime.session import CallRunner, RuntimeServices

__all__ = ["DEFAULT_MAX_SIZE", "LiveQueue", "Member", "MemberInfo", "Queues"]

log = logging.getLogger(__name__)

#: Twilio's default and largest queue size.
DEFAULT_MAX_SIZE = 100
MAX_SIZE = 5000
#: A wait document that ends at once is run again at most once a second.
MIN_ROUND = 1.0
#: How many recent waits ``AvgQueueTime`` averages over.
AVERAGE_OVER = 100
#: How long a dequeued caller's wait document has to let go of the leg.
RELEASE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A member as the REST API shows it."""

    call_sid: str
    queue_sid: str
    position: int
    wait_time: int
    date_enqueued: float


@dataclass(eq=False)
class Member:
    """One caller waiting in a queue."""

    call_sid: str
    leg: CallLeg
    queue: LiveQueue
    call: CallInfo
    enqueued: float = field(default_factory=time.monotonic)
    date_enqueued: float = field(default_factory=time.time)
    taken: asyncio.Future[str] = field(default_factory=lambda: asyncio.Future())
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # the wait let go of the leg
    done: asyncio.Event = field(default_factory=asyncio.Event)  # the bridge is over
    runner: CallRunner | None = None
    out: float | None = None  # when it stopped waiting (taken by an agent)

    def waited(self) -> int:
        """Seconds in the queue: until it was taken, or until now."""
        end = self.out if self.out is not None else time.monotonic()
        return max(0, round(end - self.enqueued))


class LiveQueue:
    """A queue with its members, in the order they came."""

    def __init__(self, record: QueueRecord) -> None:
        self.record = record
        self.members: list[Member] = []
        self.arrived = asyncio.Event()
        self._waits: deque[int] = deque(maxlen=AVERAGE_OVER)

    @property
    def sid(self) -> str:
        return self.record.sid

    def position(self, member: Member) -> int:
        return self.members.index(member) + 1 if member in self.members else 0

    def average_wait(self) -> int:
        return round(sum(self._waits) / len(self._waits)) if self._waits else 0

    def waited(self, seconds: int) -> None:
        self._waits.append(seconds)

    def info(self, member: Member) -> MemberInfo:
        return MemberInfo(
            member.call_sid,
            self.sid,
            self.position(member),
            member.waited(),
            member.date_enqueued,
        )


class Queues:
    """The engine's queues (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._live: dict[str, LiveQueue] = {}  # by sid
        self._stopping = asyncio.Event()

    # -- records ---------------------------------------------------------------------------------

    def live(self, sid: str) -> LiveQueue | None:
        return self._live.get(sid)

    def _live_queue(self, record: QueueRecord) -> LiveQueue:
        queue = self._live.get(record.sid)
        if queue is None:
            queue = self._live[record.sid] = LiveQueue(record)
        else:
            queue.record = record
        return queue

    async def find(self, account_sid: str, name: str) -> LiveQueue | None:
        record = await asyncio.to_thread(self.store.find_queue, account_sid, name)
        return None if record is None else self._live_queue(record)

    async def create(self, account_sid: str, name: str, max_size: int) -> QueueRecord:
        """A new queue record; ValueError when the name is taken."""
        now = time.time()
        record = QueueRecord(new_sid("QU"), account_sid, name, max_size, now, now)
        await asyncio.to_thread(self.store.create_queue, record)
        self._live_queue(record)
        return record

    async def update(self, record: QueueRecord, **changes: Any) -> QueueRecord:
        changes["date_updated"] = time.time()
        updated = await asyncio.to_thread(self.store.update_queue, record.sid, **changes)
        self._live_queue(updated)
        return updated

    async def delete(self, record: QueueRecord) -> None:
        await asyncio.to_thread(self.store.delete_queue, record.sid)
        self._live.pop(record.sid, None)

    async def _get_or_create(self, account_sid: str, name: str, max_size: int | None) -> LiveQueue:
        queue = await self.find(account_sid, name)
        if queue is not None:
            return queue
        try:
            record = await self.create(account_sid, name, max_size or DEFAULT_MAX_SIZE)
        except ValueError:  # made meanwhile by another caller
            found = await self.find(account_sid, name)
            assert found is not None
            return found
        return self._live_queue(record)

    def counts(self, queue: LiveQueue) -> tuple[int, int]:
        """(current size, average wait) for the Queue resource."""
        return len(queue.members), queue.average_wait()

    # -- the caller's side -------------------------------------------------------------------

    async def enqueue(
        self,
        action: act.Enqueue,
        caller: Leg,
        *,
        stop: asyncio.Event,
        call: CallInfo,
        book: CallBook,
        services: RuntimeServices,
    ) -> ev.QueueLeft:
        """Keep ``caller`` in the queue until it leaves; how it left is the ``QueueResult``."""
        if not isinstance(caller, CallLeg):
            await book.event("warning", {"message": "Enqueue: the call has no media leg"})
            return ev.QueueLeft("error")
        if self._stopping.is_set():
            return ev.QueueLeft("system-shutdown")
        queue = await self._get_or_create(call.account_sid, action.name, action.max_queue_size)
        if len(queue.members) >= queue.record.max_size:
            await book.event(
                "warning",
                {"message": f"Enqueue: queue {action.name} is full ({queue.record.max_size})"},
            )
            return ev.QueueLeft("queue-full", queue.sid, 0)
        member = Member(call.call_sid, caller, queue, call)
        queue.members.append(member)
        queue.arrived.set()
        await book.event("info", {"message": f"enqueued in {action.name}", "queue_sid": queue.sid})
        result = "error"
        try:
            result = await self._wait(member, action, stop, book, services)
        finally:
            if member in queue.members:
                queue.members.remove(member)
            if not member.taken.done():
                member.taken.cancel()
            if result != "bridged":
                queue.waited(member.waited())
        return ev.QueueLeft(result, queue.sid, member.waited())

    async def _wait(
        self,
        member: Member,
        action: act.Enqueue,
        stop: asyncio.Event,
        book: CallBook,
        services: RuntimeServices,
    ) -> str:
        caller = member.leg
        while True:
            started = time.monotonic()
            round_ = asyncio.ensure_future(self._round(member, action, book, services))
            outside = [
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(caller.ended.wait()),
                asyncio.ensure_future(self._stopping.wait()),
            ]
            waits: list[asyncio.Future[Any]] = [round_, member.taken, *outside]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in outside:
                    waiter.cancel()
            if not round_.done() or member.taken.done():
                await self._stop_round(member, round_)
            if member.taken.done() and not member.taken.cancelled():
                member.out = time.monotonic()
                member.queue.waited(member.waited())
                member.ready.set()  # the agent bridges us now
                await _first(member.done.wait(), caller.ended.wait())
                return "bridged"
            if caller.ended.is_set():
                return "hangup"
            if stop.is_set():
                return "redirected"
            if self._stopping.is_set():
                return "system-shutdown"
            outcome = round_.result()
            if outcome != "again":
                return outcome
            if (spent := time.monotonic() - started) < MIN_ROUND:
                await asyncio.sleep(MIN_ROUND - spent)

    async def _round(
        self, member: Member, action: act.Enqueue, book: CallBook, services: RuntimeServices
    ) -> str:
        """One round of waiting: the wait document (or the hold tone) once. Returns ``again``,
        ``leave``, ``hangup`` or ``error``."""
        caller = member.leg
        if action.wait_url is None:
            try:
                await caller.play(hold_tone())
            except MediaError:
                return "hangup" if caller.ended.is_set() else "again"
            return "again"
        queue = member.queue
        params = (
            ("QueuePosition", str(queue.position(member))),
            ("QueueSid", queue.sid),
            ("QueueTime", str(member.waited())),
            ("AvgQueueTime", str(queue.average_wait())),
            ("CurrentQueueSize", str(len(queue.members))),
            ("MaxQueueSize", str(queue.record.max_size)),
        )
        info = replace(member.call, extra=(*member.call.extra, *params))
        session = CallSession(
            url=action.wait_url,
            method=action.wait_url_method,
            call=info,
            answered=True,
            waiting=True,
        )
        nested = RuntimeServices(
            fetcher=services.fetcher, audio=services.audio, recordings_dir=services.recordings_dir
        )
        runner = member.runner = CallRunner(
            session, caller, nested, ChildBook(book, member.call_sid)
        )
        try:
            await runner.run()
        finally:
            member.runner = None
        if session.left:
            return "leave"
        if session.error is not None:
            return "error"
        if caller.ended.is_set() or not session.returned:
            return "hangup"
        return "again"

    async def _stop_round(self, member: Member, round_: asyncio.Future[str]) -> None:
        """Stop the wait at once, leaving the leg up (the caller goes on elsewhere)."""
        runner = member.runner
        if runner is not None:
            runner.release()
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(round_), RELEASE_TIMEOUT)
        if not round_.done():
            round_.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await round_
        member.leg.stop_playing()
        member.leg.set_consumer(None, None)

    # -- the agent's side --------------------------------------------------------------------

    async def dequeue(
        self,
        action: act.Dequeue,
        agent: Leg,
        *,
        stop: asyncio.Event,
        answer_caller: Callable[[], Awaitable[None]],
        on_audio: Callable[[str, bytes], None] | None,
        call: CallInfo,
        book: CallBook,
        services: RuntimeServices,
    ) -> ev.DialFinished:
        """``<Dial><Queue>``: bridge ``agent`` to the member who waited longest (waiting up
        to the dial's timeout for one)."""
        name = action.queue.name
        queue = await self.find(call.account_sid, name)
        if queue is None:
            await book.event("warning", {"message": f"Dial: there is no queue named {name}"})
            return ev.DialFinished("failed")
        if not isinstance(agent, CallLeg):
            return ev.DialFinished("failed")
        deadline = time.monotonic() + action.timeout
        while True:
            member = await self._next(queue, agent, stop, deadline)
            if member is None:
                return ev.DialFinished("canceled" if stop.is_set() else "no-answer")
            member.taken.set_result(call.call_sid)
            try:
                await asyncio.wait_for(member.ready.wait(), RELEASE_TIMEOUT)
            except TimeoutError:
                member.done.set()
                continue
            if member.leg.ended.is_set():
                member.done.set()
                continue  # gone while being taken: the next one
            try:
                return await self._bridge(
                    action, agent, member, stop, answer_caller, on_audio, book, services
                )
            finally:
                member.done.set()

    async def _next(
        self, queue: LiveQueue, agent: CallLeg, stop: asyncio.Event, deadline: float
    ) -> Member | None:
        """The member who waited longest (taken out of the queue), waiting for one."""
        while True:
            for member in queue.members:
                if not member.taken.done() and not member.leg.ended.is_set():
                    queue.members.remove(member)
                    return member
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stop.is_set() or agent.ended.is_set():
                return None
            queue.arrived.clear()
            await _first(queue.arrived.wait(), stop.wait(), agent.ended.wait(), timeout=remaining)

    async def _bridge(
        self,
        action: act.Dequeue,
        agent: CallLeg,
        member: Member,
        stop: asyncio.Event,
        answer_caller: Callable[[], Awaitable[None]],
        on_audio: Callable[[str, bytes], None] | None,
        book: CallBook,
        services: RuntimeServices,
    ) -> ev.DialFinished:
        caller = member.leg
        noun = action.queue
        if noun.url is not None:  # runs on the dequeued caller before the bridge
            params = (
                ("QueueSid", member.queue.sid),
                ("QueueTime", str(member.waited())),
                ("DequeingCallSid", book.sid),
            )
            info = replace(member.call, extra=(*member.call.extra, *params))
            session = CallSession(
                url=noun.url, method=noun.method, call=info, answered=True, whisper=True
            )
            nested = RuntimeServices(
                fetcher=services.fetcher,
                audio=services.audio,
                recordings_dir=services.recordings_dir,
            )
            runner = CallRunner(session, caller, nested, ChildBook(book, member.call_sid))
            running = asyncio.ensure_future(runner.run())
            await _first(asyncio.shield(running), agent.ended.wait(), stop.wait())
            if not running.done():  # the agent left meanwhile: the caller is let go, not ended
                runner.release()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(running, RELEASE_TIMEOUT)
            if not session.returned or caller.ended.is_set() or agent.ended.is_set():
                return ev.DialFinished("no-answer", call_sid=member.call_sid)
        if not agent.answered:
            await answer_caller()
        star = asyncio.Event()
        bridged_at = time.monotonic()
        try:
            handle = bridge(
                agent,
                caller,
                on_star=star.set if action.hangup_on_star else None,
                on_audio=on_audio,
            )
        except CallXmlError as exc:
            await book.event("warning", {"message": f"Dial: queue bridge failed: {exc}"})
            return ev.DialFinished("failed", call_sid=member.call_sid)
        await book.event(
            "info",
            {"message": f"bridged to {member.call_sid} from queue {noun.name}"},
        )
        try:
            await _first(
                agent.ended.wait(),
                caller.ended.wait(),
                stop.wait(),
                star.wait(),
                timeout=action.time_limit,
            )
        finally:
            handle.stop()
        duration = max(0, round(time.monotonic() - bridged_at))
        return ev.DialFinished("completed", call_sid=member.call_sid, duration=duration)

    # -- REST and shutdown -------------------------------------------------------------------

    def take_front(self, queue: LiveQueue, call_sid: str | None) -> Member | None:
        """The member REST names (``Front``: the one who waited longest)."""
        for member in queue.members:
            if call_sid in (None, member.call_sid) and not member.taken.done():
                return member
        return None

    async def close(self) -> None:
        """The engine stops: every waiting caller leaves with ``system-shutdown``."""
        self._stopping.set()
        await asyncio.sleep(0)


async def _first(*waits: Awaitable[Any], timeout: float | None = None) -> None:
    """Wait until the first of ``waits`` is done (or ``timeout``); cancel the rest."""
    futures = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in futures:
            if not future.done():
                future.cancel()
        for future in futures:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await future
