"""One event-loop reader for every batched RTP socket, with wakeups coalesced under load.

At call rates each RTP socket receives a datagram every 20 ms, so with one loop reader per
socket every packet costs an event-loop wakeup of its own: an ``epoll_wait``, the loop's
per-event bookkeeping (asyncio's is Python), the switch back into the process. That, not the
packet's own work, was most of the relay's cost per packet (``bench/bridged_calls.py``).

A :class:`MediaPoller` keeps the batched RTP sockets of one event loop in an epoll set of its
own, registered with the loop as a single reader, and calls each ready socket's callback from
one pass (:meth:`MediaPoller.dispatch`). It has two modes:

* **readiness** (idle and light load): the loop wakes it as soon as any socket is readable, so
  a packet waits for nothing;
* **ticking** (load): once wakeups come closer together than :data:`HOLD`, it stops asking the
  loop to wake it and instead looks every :data:`HOLD` seconds, handling everything that
  arrived meanwhile in one pass; the first look that finds nothing ready goes back to
  readiness. A packet then waits at most about :data:`HOLD` (plus the loop's timer
  granularity, a millisecond for asyncio's selector loop) before it is read.

Each callback is the endpoint's own reader (:meth:`callxml.media.stream.RtpEndpoint._readable`)
and does exactly what it did as a loop reader; only when it runs changes. The epoll set is
level-triggered, as loop readers are: a socket with datagrams left after its callback shows as
ready again at the next look. Linux only (where the batched path exists at all).
"""

from __future__ import annotations

import asyncio
import logging
import select
import weakref
from collections.abc import Callable

__all__ = ["HOLD", "MediaPoller", "media_poller"]

log = logging.getLogger(__name__)

#: Seconds between looks while ticking: the most a packet waits for its socket to be read
#: under load (the goal for the relay is < 2 ms p99 added latency).
HOLD = 0.0005
MAX_EVENTS = 4096  # ready sockets taken per look (the rest are still ready at the next)

_pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MediaPoller] = (
    weakref.WeakKeyDictionary()
)


def media_poller(loop: asyncio.AbstractEventLoop) -> MediaPoller:
    """The loop's poller, made on first use (and again after the last socket left it)."""
    poller = _pollers.get(loop)
    if poller is None or poller.closed:
        poller = _pollers[loop] = MediaPoller(loop)
    return poller


class MediaPoller:
    """The batched RTP sockets of one event loop, read from one loop reader (see the module)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self._fd = self._epoll.fileno()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._reading = False  # registered as a loop reader (readiness mode)
        self._timer: asyncio.TimerHandle | None = None  # the next look (ticking mode)
        self._last_wake = float("-inf")
        self.closed = False
        self.wakeups = 0  # loop wakeups and looks (for the bench and tests)

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever ``fd`` is readable. Raises NotImplementedError on a loop
        without readers (the caller then uses its loop's transport instead)."""
        if self.closed:
            raise RuntimeError("media poller closed")
        if not self._reading and self._timer is None:
            try:
                self._loop.add_reader(self._fd, self._readable)
            except NotImplementedError:
                if not self._callbacks:
                    self.close()
                raise
            self._reading = True
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def remove(self, fd: int) -> None:
        """Stop watching ``fd`` (before it is closed); the last one closes the poller."""
        if self._callbacks.pop(fd, None) is None:
            return
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):  # already closed: the kernel dropped it from the set
            pass
        if not self._callbacks:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._reading:
            self._reading = False
            if not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
        self._epoll.close()

    def dispatch(self) -> int:
        """Call the callback of every socket ready now; how many there were."""
        events = self._epoll.poll(0, MAX_EVENTS)
        callbacks = self._callbacks
        for fd, _ in events:
            callback = callbacks.get(fd)
            if callback is None:  # removed by an earlier callback of this pass
                continue
            try:
                callback()
            except Exception as exc:  # as the loop does for a reader: report, go on
                self._loop.call_exception_handler(
                    {"message": "RTP socket reader failed", "exception": exc}
                )
        return len(events)

    def _readable(self) -> None:
        """Readiness mode: a socket is readable."""
        now = self._loop.time()
        busy = now - self._last_wake < HOLD
        self._last_wake = now
        self.wakeups += 1
        self.dispatch()
        if busy and not self.closed:  # wakeups come too often: look every HOLD instead
            self._reading = False
            self._loop.remove_reader(self._fd)
            self._timer = self._loop.call_later(HOLD, self._look)

    def _look(self) -> None:
        """Ticking mode: handle whatever is ready; nothing ready goes back to readiness."""
        self._timer = None
        if self.closed:
            return
        self.wakeups += 1
        found = self.dispatch()
        if self.closed:
            return
        if found:
            self._timer = self._loop.call_later(HOLD, self._look)
        else:
            self._last_wake = self._loop.time()
            self._loop.add_reader(self._fd, self._readable)
            self._reading = True
