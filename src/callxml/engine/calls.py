"""The engine's live calls: the record that follows each one, and the handles that steer it.

Owns :class:`CallBook` (one call's record in the store plus its status callbacks: the runtime's
``CallLog``) and :class:`LiveCall` (a call the engine is running: its book, and the handles that
end or redirect it from outside while it rings or runs). Only the engine drives a call: it runs
the dial through :meth:`LiveCall.dial`, the flow through :meth:`LiveCall.run` and the whole
originated call through :meth:`LiveCall.start`, which is how the handles get set. Everyone else
(the REST adapter, SIGTERM's drain) acts through :meth:`LiveCall.hangup`,
:meth:`LiveCall.redirect` and :meth:`LiveCall.request_end`, and is refused with a
:class:`CallControlError` when the call is in no state for it.

It must not know about HTTP or the REST API's error codes (the adapter in
:mod:`callxml.engine.control` maps the refusals), nor about routing or dialing rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from callxml.engine.callbacks import CallbackTarget, StatusCallbacks
from callxml.engine.config import AccountConfig
from callxml.engine.health import RETRY_DELAYS, STORE_ERRORS, StoreHealth
from callxml.engine.store import (
    TERMINAL_STATUSES,
    CallEvent,
    CallRecord,
    RecordingRecord,
    Store,
)
from callxml.errors import CallXmlError
from callxml.interpreter import actions as act
from callxml.interpreter import new_sid
from callxml.runtime.dial import ChildCallback
from callxml.runtime.session import CallRunner
from callxml.runtime.stream import StreamInfo

__all__ = [
    "CallAlreadyAnswered",
    "CallBook",
    "CallControlError",
    "CallNotInProgress",
    "ChildBook",
    "EngineStopping",
    "InvalidTarget",
    "LiveCall",
    "NoSuchStream",
    "StreamRefused",
    "new_call_record",
]

T = TypeVar("T")


# -- refusals -----------------------------------------------------------------------------------


class CallControlError(CallXmlError):
    """The engine refuses a request to start or steer a call (nothing was changed)."""


class EngineStopping(CallControlError):
    """The engine is draining for shutdown and starts no new call."""


class InvalidTarget(CallControlError):
    """``to`` cannot be called: not a usable SIP URI, or a number with no trunk to dial it."""

    def __init__(self, to: str, reason: str) -> None:
        super().__init__(f"cannot call {to}: {reason}")
        self.to = to
        self.reason = reason


class CallNotInProgress(CallControlError):
    """The call is over, or has no flow running yet, so it cannot be redirected or ended."""


class CallAlreadyAnswered(CallControlError):
    """``canceled`` asks to stop a call still ringing; this one was answered already."""


class StreamRefused(CallControlError):
    """The call cannot take another stream (too many at once, or the name is in use)."""


class NoSuchStream(CallControlError):
    """The call has no stream of that sid or name."""


# -- records ------------------------------------------------------------------------------------


def new_call_record(
    *,
    account_sid: str,
    direction: str,
    from_: str,
    to: str,
    status: str,
    sid: str | None = None,
    **fields: Any,
) -> CallRecord:
    """A record for a call that starts now (a fresh ``CA`` sid unless one is given)."""
    now = time.time()
    return CallRecord(
        sid=sid or new_sid("CA"),
        account_sid=account_sid,
        direction=direction,
        from_=from_,
        to=to,
        status=status,
        date_created=now,
        date_updated=now,
        **fields,
    )


class CallBook:
    """One call's record in the store, with status callbacks: the runtime's ``CallLog``.

    Every change is its own committed write (off the event loop), so a crash loses nothing
    already reported; a status change also queues the status callback, which never blocks the
    call. ``recording_url`` turns a recording sid into the ``RecordingUrl`` the flow is given.

    One writer per call: writes are applied strictly in the order they were asked for, each
    after the previous one has committed, and a write once asked for is finished even if the
    task that asked is cancelled (its thread would finish anyway, and must not overtake the
    next). Unordered threads let an ``in-progress`` land after ``completed``. And a final
    status is final: a later non-final one is ignored.

    When the store fails (a full disk, a lock held elsewhere: :mod:`callxml.engine.health`),
    a write is retried in its turn until it commits, and nobody waits for it: the caller gets
    ``None`` and the call goes on (its audio never waits for a record); the writes land, in
    order, when the store takes them again.
    """

    def __init__(
        self,
        store: Store,
        callbacks: StatusCallbacks | None,
        target: CallbackTarget | None,
        record: CallRecord,
        recording_url: Callable[[str], str],
        *,
        on_settled: Callable[[], None] | None = None,
        health: StoreHealth | None = None,
    ) -> None:
        self.store = store
        self.health = health
        self.on_settled = on_settled  # called when the call is answered or ends (admission)
        self.callbacks = callbacks
        self.target = target
        self.record = record
        self.recording_url = recording_url
        self._last: asyncio.Future[Any] | None = None  # the write asked for last
        self._child_callbacks: dict[str, CallbackTarget] = {}
        self._child_status: dict[str, str] = {}

    @property
    def sid(self) -> str:
        return self.record.sid

    async def _write(self, work: Callable[[], Awaitable[T]]) -> T | None:
        """Run ``work`` after every write asked for before it (see the class docstring); its
        result, or None when the store is failing and the write is left to commit later."""
        previous = self._last
        health = self.health

        async def in_turn() -> T:
            if previous is not None:
                with contextlib.suppress(BaseException):
                    await previous
            attempt = 0
            while True:
                try:
                    result = await work()
                except STORE_ERRORS as exc:
                    if health is None:
                        raise
                    health.failed(exc)
                    await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
                    attempt += 1
                    continue
                if health is not None:
                    health.recovered()
                return result

        task = asyncio.ensure_future(in_turn())
        self._last = task
        if health is None:
            return await asyncio.shield(task)
        if not health.ok:
            return None
        degraded = asyncio.ensure_future(health.degraded())
        try:
            await asyncio.wait({task, degraded}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            degraded.cancel()
        return task.result() if task.done() else None

    async def flush(self) -> None:
        """Wait until every write asked for so far has been applied."""
        if self._last is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._last)

    async def create(self) -> None:
        async def create() -> None:
            await asyncio.to_thread(self.store.create_call, self.record)
            self._notify()

        await self._write(create)

    async def event(self, kind: str, data: Mapping[str, Any]) -> None:
        event = CallEvent(self.sid, kind, time.time(), dict(data))
        await self._write(lambda: asyncio.to_thread(self.store.add_event, event))

    async def status(self, status: str, **changes: Any) -> None:
        stamp = time.time()

        async def update() -> None:
            current = self.record.status
            if current in TERMINAL_STATUSES and status not in TERMINAL_STATUSES:
                return  # a late non-final status never reopens a finished call
            if current == status and not changes:
                return
            self.record = await asyncio.to_thread(
                self.store.update_call, self.sid, status=status, date_updated=stamp, **changes
            )
            if current != status:
                self._notify()
            if self.on_settled is not None and (
                status == "in-progress" or status in TERMINAL_STATUSES
            ):
                self.on_settled()

        await self._write(update)

    async def recording(
        self,
        sid: str,
        path: Path,
        duration: int,
        *,
        channels: int = 1,
        source: str = "RecordVerb",
    ) -> str:
        record = RecordingRecord(
            sid=sid,
            call_sid=self.sid,
            account_sid=self.record.account_sid,
            path=str(path),
            duration=duration,
            date_created=time.time(),
            channels=channels,
            source=source,
        )
        await self._write(lambda: asyncio.to_thread(self.store.add_recording, record))
        return self.recording_url(sid)

    def _notify(self) -> None:
        if self.callbacks is not None:
            self.callbacks.notify(self.target, self.record)

    # -- child calls of a <Dial> (the runtime's ChildLog) -------------------------------------

    async def child_started(
        self, sid: str, to: str, from_: str, *, callback: ChildCallback | None = None
    ) -> None:
        record = new_call_record(
            sid=sid,
            account_sid=self.record.account_sid,
            direction="outbound-dial",
            from_=from_,
            to=to,
            status="initiated",
            parent_call_sid=self.sid,
            node=self.record.node,  # a <Dial>'s legs live where their parent does
        )
        # The children's writes join the parent's ordered lane: one writer per call family.
        await self._write(lambda: asyncio.to_thread(self.store.create_call, record))
        if callback is not None:  # the noun's statusCallback: this child's own callbacks
            target = CallbackTarget(callback.url, callback.method, callback.events)
            self._child_callbacks[sid] = target
            if self.callbacks is not None:
                self.callbacks.notify(target, record)

    async def child_update(self, sid: str, **changes: Any) -> None:
        """Fields of a child call other than its status (a ``machineDetection``'s
        ``answered_by``), written in the family's order like its status; no callback."""
        stamp = time.time()
        with contextlib.suppress(KeyError):
            await self._write(
                lambda: asyncio.to_thread(
                    self.store.update_call, sid, date_updated=stamp, **changes
                )
            )

    async def child_status(self, sid: str, status: str, **changes: Any) -> None:
        stamp = time.time()
        try:
            record = await self._write(
                lambda: asyncio.to_thread(
                    self.store.update_call, sid, status=status, date_updated=stamp, **changes
                )
            )
        except KeyError:
            return
        if record is None:
            return  # the store is failing: the write lands later; its callback is not sent
        target = self._child_callbacks.get(sid)
        if target is not None and self.callbacks is not None:
            if self._child_status.get(sid) != status:
                self.callbacks.notify(target, record)
            self._child_status[sid] = status
            if status in TERMINAL_STATUSES:
                self._child_callbacks.pop(sid, None)
                self._child_status.pop(sid, None)


class ChildBook:
    """The ``CallLog`` of a whisper (a noun's ``url``) run on a child call: its events and
    recordings go on the child's record; its status is the dialler's to write, not the
    whisper's."""

    def __init__(self, parent: CallBook, sid: str) -> None:
        self.parent = parent
        self.sid = sid

    async def event(self, kind: str, data: Mapping[str, Any]) -> None:
        await asyncio.to_thread(
            self.parent.store.add_event, CallEvent(self.sid, kind, time.time(), dict(data))
        )

    async def status(self, status: str, **changes: Any) -> None:
        return None

    async def recording(self, sid: str, path: Path, duration: int) -> str:
        record = RecordingRecord(
            sid=sid,
            call_sid=self.sid,
            account_sid=self.parent.record.account_sid,
            path=str(path),
            duration=duration,
            date_created=time.time(),
        )
        await asyncio.to_thread(self.parent.store.add_recording, record)
        return self.parent.recording_url(sid)


# -- live calls ---------------------------------------------------------------------------------


class LiveCall:
    """A call the engine is running: its record, and what ends or redirects it from outside.

    Three handles, each set only while it means something: the dial still ringing the callee
    (:meth:`dial`), the runner once the call has a leg and a flow (:meth:`run`), and the task
    driving the whole call (:meth:`start`, or the task that calls :meth:`run`), which the drain
    cancels as a last resort. ``ended`` is set by the engine when it forgets the call.
    """

    def __init__(self, book: CallBook, account: AccountConfig) -> None:
        self.book = book
        self.account = account
        self.ended = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        self._dialing: asyncio.Future[Any] | None = None
        self._runner: CallRunner | None = None

    @property
    def sid(self) -> str:
        return self.book.sid

    @property
    def record(self) -> CallRecord:
        """The call's record as last written."""
        return self.book.record

    @property
    def over(self) -> bool:
        """True once the record has a final status (the call may still be tidying up)."""
        return self.book.record.status in TERMINAL_STATUSES

    # -- the engine's side: driving the call ------------------------------------------------------

    def start(self, driver: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``driver`` (the call from dialing to hang-up) as the call's own task."""
        task = asyncio.get_running_loop().create_task(driver, name=f"call-{self.sid}")
        self._task = task
        return task

    async def dial(self, dialing: Awaitable[T]) -> T:
        """Await ``dialing`` (ringing the callee) so that :meth:`request_end` can cancel it.

        A dial cancelled that way raises :class:`asyncio.CancelledError` in the caller while
        the caller's task is not itself being cancelled (``Task.cancelling()`` is 0): that is how
        the driver tells "stop ringing" from "the engine is stopping this task".
        """
        future: asyncio.Future[T] = asyncio.ensure_future(dialing)
        self._dialing = future
        try:
            return await future
        finally:
            self._dialing = None

    async def run(self, runner: CallRunner) -> str:
        """Run the call's flow to its end (returns the final status); the runner stays
        reachable for :meth:`redirect` and :meth:`request_end` meanwhile."""
        if self._task is None:
            self._task = asyncio.current_task()
        self._runner = runner
        return await runner.run()

    def cancel(self) -> None:
        """Cancel the task driving the call: the drain's last resort after hang-up."""
        if self._task is not None:
            self._task.cancel()

    # -- everyone else's side: steering it --------------------------------------------------------

    def request_end(self, status: str = "completed") -> None:
        """Ask the call to end without waiting: a dial still ringing is cancelled, a running
        flow hangs up (``completed``) or, unanswered, stops (``canceled``).

        Raises :class:`CallAlreadyAnswered` for ``canceled`` on an answered call.
        """
        if self._dialing is not None:
            self._dialing.cancel()
        elif self._runner is not None:
            if status == "canceled" and self._runner.session.answered:
                raise CallAlreadyAnswered("the call is in progress; end it with 'completed'")
            self._runner.end(status)

    async def hangup(self, status: str, *, timeout: float = 15.0) -> CallRecord:
        """End the call (see :meth:`request_end`) and wait, at most ``timeout`` seconds, until
        the engine is done with it; returns the final record.

        Raises :class:`CallNotInProgress` when the call is already over.
        """
        if self.over:
            raise CallNotInProgress(f"call {self.sid} is over")
        self.request_end(status)
        await asyncio.wait_for(self.ended.wait(), timeout)
        return self.record

    def start_stream(self, action: act.StartStream) -> StreamInfo:
        """Fork the call's audio to a WebSocket app (REST ``Streams.json``).

        Raises :class:`CallNotInProgress` without a running flow, :class:`StreamRefused` when
        the call takes no more streams.
        """
        runner = self._runner
        if self.over or runner is None or runner.done.is_set():
            raise CallNotInProgress(f"call {self.sid} is not in progress")
        try:
            return runner.streams.start(action)
        except CallXmlError as exc:
            if "not running" in str(exc):
                raise CallNotInProgress(f"call {self.sid} is not in progress") from None
            raise StreamRefused(str(exc)) from None

    def stop_stream(self, name: str) -> StreamInfo:
        """Stop the stream ``name`` (its sid or name); its record, stopped. Raises
        :class:`NoSuchStream` when the call has none by that name."""
        runner = self._runner
        found = runner.streams.find(name) if runner is not None else None
        if runner is None or found is None:
            raise NoSuchStream(f"call {self.sid} has no stream {name!r}")
        stopped = runner.streams.stop(name)
        info = stopped[0] if stopped else found
        return StreamInfo(info.sid, info.name, "stopped", info.updated)

    def redirect(self, url: str | None, method: str, twiml: str | None) -> CallRecord:
        """Replace what the call is doing with the document at ``url`` (or ``twiml``).

        Raises :class:`CallNotInProgress` when the call is over or has no flow yet (ringing).
        """
        if self.over or self._runner is None:
            raise CallNotInProgress(f"call {self.sid} is not in progress")
        try:
            self._runner.redirect(url, method, twiml=twiml.encode() if twiml is not None else None)
        except CallXmlError:
            raise CallNotInProgress(f"call {self.sid} is not in progress") from None
        return self.record
