"""Status callbacks: tell the app when a call is initiated, ringing, answered and completed.

Owns the parameters (Twilio's names, plus ``SequenceNumber``, ``Timestamp``, ``CallDuration``,
``SipResponseCode``) and delivery: a background queue per engine with bounded retries and
backoff, so a slow or failing callback URL never blocks or delays a call. Each attempt and its
outcome is recorded as a ``status-callback`` event on the call.

It must not know about SIP or media: the runtime calls :meth:`StatusCallbacks.notify` with a call
record and an event name.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from callxml.engine.store import CallEvent, CallRecord, Store
from callxml.errors import WebhookError
from callxml.webhooks import Fetcher, WebhookRequest

__all__ = ["CallbackTarget", "StatusCallbacks", "callback_params", "callback_target"]

log = logging.getLogger(__name__)

#: call status -> the status-callback event it belongs to
EVENT_OF_STATUS = {
    "initiated": "initiated",
    "ringing": "ringing",
    "in-progress": "answered",
    "completed": "completed",
    "busy": "completed",
    "failed": "completed",
    "no-answer": "completed",
    "canceled": "completed",
}

MAX_QUEUE = 10_000


@dataclass(frozen=True, slots=True)
class CallbackTarget:
    """Where a call's status callbacks go, and for which events."""

    url: str
    method: str = "POST"
    events: tuple[str, ...] = ("completed",)


def callback_target(url: str | None, method: str, events: tuple[str, ...]) -> CallbackTarget | None:
    """The target for a call's ``StatusCallback`` settings, or None when no URL is set."""
    return CallbackTarget(url, method, events) if url else None


def callback_params(
    record: CallRecord, sequence: int, *, now: float
) -> tuple[tuple[str, str], ...]:
    """The form parameters of one status callback, in Twilio's names."""
    params = [
        ("AccountSid", record.account_sid),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", record.sid),
        ("CallStatus", record.status),
        ("Called", record.to),
        ("Caller", record.from_),
        ("CallbackSource", "call-progress-events"),
        ("Direction", record.direction),
        ("From", record.from_),
        ("SequenceNumber", str(sequence)),
        ("Timestamp", email.utils.formatdate(now).replace("-0000", "+0000")),
        ("To", record.to),
    ]
    if record.parent_call_sid:
        params.append(("ParentCallSid", record.parent_call_sid))
    if record.duration is not None:
        params += [("CallDuration", str(record.duration)), ("Duration", str(record.duration))]
    if record.sip_response_code is not None:
        params.append(("SipResponseCode", str(record.sip_response_code)))
    return tuple(params)


class StatusCallbacks:
    """A background sender with bounded retries. ``notify`` never waits for the network."""

    def __init__(
        self,
        fetcher: Fetcher,
        store: Store,
        *,
        retries: int = 3,
        backoff: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fetcher = fetcher
        self.store = store
        self.retries = retries
        self.backoff = backoff
        self.clock = clock
        self._queue: asyncio.Queue[tuple[CallbackTarget, CallRecord, int]] = asyncio.Queue(
            MAX_QUEUE
        )
        self._sequence: dict[str, int] = {}
        self._worker: asyncio.Task[None] | None = None
        self.dropped = 0

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def close(self, *, drain_timeout: float = 5.0) -> None:
        """Deliver what is queued (within a bound), then stop."""
        if self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_timeout)
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None

    def notify(self, target: CallbackTarget | None, record: CallRecord) -> bool:
        """Queue a callback for the record's current status if the target asked for its event."""
        if target is None:
            return False
        event = EVENT_OF_STATUS.get(record.status)
        if event is None or event not in target.events:
            return False
        sequence = self._sequence.get(record.sid, 0)
        self._sequence[record.sid] = sequence + 1
        if event == "completed":
            self._sequence.pop(record.sid, None)
        try:
            self._queue.put_nowait((target, record, sequence))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("status callback queue full; dropped %s for %s", event, record.sid)
            return False
        return True

    async def _run(self) -> None:
        while True:
            target, record, sequence = await self._queue.get()
            try:
                await self._deliver(target, record, sequence)
            except Exception:  # a bug here must not stop later callbacks
                log.exception("status callback delivery failed for %s", record.sid)
            finally:
                self._queue.task_done()

    async def _deliver(self, target: CallbackTarget, record: CallRecord, sequence: int) -> None:
        request = WebhookRequest(
            url=target.url,
            method=target.method,
            params=callback_params(record, sequence, now=self.clock()),
        )
        for attempt in range(self.retries + 1):
            started = self.clock()
            try:
                response = await self.fetcher.fetch(request)
            except WebhookError as exc:
                outcome: dict[str, object] = {"error": str(exc), "error_code": exc.error_code}
                ok = False
            else:
                outcome = {"status": response.status}
                ok = True
            await asyncio.to_thread(
                self.store.add_event,
                CallEvent(
                    record.sid,
                    "status-callback",
                    started,
                    {
                        "url": target.url,
                        "method": target.method,
                        "call_status": record.status,
                        "sequence": sequence,
                        "attempt": attempt + 1,
                        **outcome,
                    },
                ),
            )
            if ok:
                return
            if attempt < self.retries:
                await asyncio.sleep(self.backoff * (2**attempt))
