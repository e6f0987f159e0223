"""Whether the store is taking commits, and what the engine does when it is not.

A full disk or a database held locked by something else must not take calls down with it
(issue 16's store drill). The rules:

* a record write that fails because of the store (``sqlite3.OperationalError``: "database or
  disk is full", "database is locked", an I/O error; ``OSError``) marks the store *failing*;
* while it fails, admission refuses new calls (SIP ``503`` with ``Retry-After``, REST ``503``)
  before anything is started;
* calls already up keep running — their audio never waits for a record — and their writes
  stay queued in order, in memory, retried with backoff (:data:`RETRY_DELAYS`) until the store
  takes them: nothing asked for is dropped, nothing committed is lost;
* the first write that commits again (or the periodic :meth:`~StoreHealth.probe`) marks it
  healthy, and new calls are taken again.

Pure bookkeeping plus an ``asyncio.Event`` for waiters; the engine wires it to its
:class:`~callxml.engine.calls.CallBook` writes and its :class:`~callxml.engine.admission.Admission`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time

__all__ = ["RETRY_DELAYS", "STORE_ERRORS", "StoreHealth"]

log = logging.getLogger(__name__)

#: What a store write may raise when the fault is the store's (disk, lock, I/O), not the write's.
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.OperationalError, OSError)
#: Seconds between retries of a failing write: quick at first, then at most every 2 s.
RETRY_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class StoreHealth:
    """``ok`` while the store takes commits; ``failing`` says why not (the last error)."""

    def __init__(self) -> None:
        self.failing: str | None = None
        self.since: float | None = None
        self.failures = 0  # failed write attempts, for metrics
        self._degraded = asyncio.Event()

    @property
    def ok(self) -> bool:
        return self.failing is None

    def failed(self, exc: BaseException) -> None:
        """A write failed because of the store."""
        self.failures += 1
        if self.failing is None:
            self.since = time.time()
            log.error("the store takes no writes (%s): refusing new calls until it does", exc)
            self._degraded.set()
        self.failing = f"{type(exc).__name__}: {exc}"

    def recovered(self) -> None:
        """A write committed: the store works again."""
        if self.failing is not None:
            log.warning(
                "the store takes writes again after %.1f s; taking new calls",
                time.time() - (self.since or time.time()),
            )
            self.failing = None
            self.since = None
            self._degraded.clear()

    async def degraded(self) -> None:
        """Return once the store is failing (at once if it already is)."""
        await self._degraded.wait()
