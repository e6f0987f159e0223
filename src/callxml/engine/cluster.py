"""Several engines as one service: node leases, finalising a dead engine's calls, and forwarding
live-call updates to the engine that owns the call.

Engines sharing a PostgreSQL store each hold a row in ``nodes`` under their ``node_id`` and renew
its lease every quarter lease. A call belongs to the engine that holds its SIP dialog (its record's
``node``); only that engine can redirect or hang it up, so a REST update that reaches another
engine is forwarded to the owner over HTTP.

Why HTTP and not PostgreSQL's LISTEN/NOTIFY: the REST client waits for the answer (the updated
call, or Twilio's error), which a request/response gives directly; NOTIFY is one-way and would
need a reply channel and a timeout of its own. The forwarded request keeps the client's own Basic
credentials, which the owner checks like any request (every engine has the same accounts), plus
``X-Callxml-Forwarded-By`` so it is never forwarded twice.

When an engine dies its lease runs out; the first live engine to notice finalises each of its
unfinished calls as ``failed`` with a conditional update (the status must still be unfinished),
so two engines reaping at once finalise each call exactly once, then deletes the dead row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from callxml.engine.store import TERMINAL_STATUSES, NodeRecord, SqlStore
from callxml.errors import ConfigError

__all__ = ["FORWARDED_BY", "Cluster"]

log = logging.getLogger(__name__)

FORWARDED_BY = "X-Callxml-Forwarded-By"
FORWARD_TIMEOUT = 10.0  # seconds for the owner to answer a forwarded update
#: Requests that act on a live call: POST to a call or its subresources (Streams...).
_LIVE_UPDATE = re.compile(r"^/2010-04-01/Accounts/[^/]+/Calls/(CA[0-9a-fA-F]{32})(?:\.json|/)")
#: Request headers passed on to the owner (the rest are hop-by-hop or the proxy's own).
_PASSED = ("Authorization", "Content-Type", "Accept", "User-Agent")


class Cluster:
    """This engine's membership: ``await join()`` at start, ``await leave()`` at stop."""

    def __init__(
        self,
        store: SqlStore,
        node_id: str,
        api_url: str,
        *,
        lease: float,
        clock: Callable[[], float] = time.time,
        on_reaped: Callable[[str, int], None] | None = None,
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.api_url = api_url
        self.lease = lease
        self.instance = secrets.token_hex(8)
        self._clock = clock
        self._on_reaped = on_reaped
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        #: Calls of dead engines this engine finalised (metrics, tests).
        self.reaped = 0

    # -- membership ---------------------------------------------------------------------------

    def _record(self, now: float) -> NodeRecord:
        return NodeRecord(self.node_id, self.api_url, self.instance, now, now, now + self.lease)

    async def join(self) -> None:
        """Take our node id. A row still leased to another run of it is either this engine
        before a crash (its lease runs out: we wait that long at most) or another live engine
        configured with the same id (it keeps renewing: refused)."""
        deadline = self._clock() + self.lease + 1.0
        while True:
            held = await asyncio.to_thread(self.store.claim_node, self._record(self._clock()))
            if held is None:
                break
            if self._clock() > deadline:
                raise ConfigError(
                    f"cluster.node_id: {self.node_id!r} is in use by a running engine "
                    f"({held.api_url}); give each engine its own node_id"
                )
            log.info("node %s: waiting for the previous run's lease to run out", self.node_id)
            await asyncio.sleep(min(0.5, self.lease / 4))
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._task = asyncio.create_task(self._heartbeat(), name=f"cluster {self.node_id}")

    async def leave(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()
        with contextlib.suppress(Exception):  # a store down at stop: the lease runs out instead
            await asyncio.to_thread(self.store.release_node, self.node_id, self.instance)

    async def _heartbeat(self) -> None:
        """Renew the lease every quarter lease and reap dead engines; a store error is logged
        and retried at the next beat (the lease covers three missed beats)."""
        while True:
            try:
                now = self._clock()
                renewed = await asyncio.to_thread(
                    self.store.renew_node, self.node_id, self.instance, now, now + self.lease
                )
                if not renewed:
                    # Our lease ran out (the store was unreachable) and a peer took us for dead
                    # or reaped us: take the row back so our new calls have a live owner.
                    log.error("node %s: lease lost; claiming it again", self.node_id)
                    await asyncio.to_thread(self.store.claim_node, self._record(now))
                await asyncio.to_thread(self.reap, now)
            except Exception:
                log.exception("node %s: heartbeat failed", self.node_id)
            await asyncio.sleep(self.lease / 4)

    def reap(self, now: float) -> int:
        """Finalise the unfinished calls of every engine whose lease ran out before ``now``,
        then forget it; returns how many calls this engine finalised."""
        count = 0
        for node in self.store.list_nodes():
            if node.node_id == self.node_id or node.lease_until >= now:
                continue
            for record in self.store.unfinished_calls(node=node.node_id):
                if self.store.finish_call(
                    record.sid,
                    unless=TERMINAL_STATUSES,
                    status="failed",
                    date_updated=now,
                    end_time=record.end_time or now,
                    error=record.error or f"engine {node.node_id} stopped during the call",
                ):
                    count += 1
                    log.warning(
                        "call %s: its engine %s stopped; marked failed", record.sid, node.node_id
                    )
            self.store.release_node(node.node_id, before=now)
            if self._on_reaped is not None:
                self._on_reaped(node.node_id, count)
        self.reaped += count
        return count

    # -- forwarding ---------------------------------------------------------------------------

    def owner_url(self, node_id: str | None) -> str | None:
        """The REST base URL of the live engine ``node_id``; None for this engine, an unknown
        one, or one whose lease has run out (a call it owned is no longer live anywhere)."""
        if node_id is None or node_id == self.node_id:
            return None
        node = self.store.get_node(node_id)
        if node is None or node.lease_until < self._clock():
            return None
        return node.api_url

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Forward a live-call update to the engine owning the call (see the module)."""
        match = _LIVE_UPDATE.match(request.path)
        if request.method != "POST" or match is None or FORWARDED_BY in request.headers:
            return await handler(request)
        record = await asyncio.to_thread(self.store.get_call, match.group(1))
        if record is None or record.status in TERMINAL_STATUSES:
            return await handler(request)
        owner = await asyncio.to_thread(self.owner_url, record.node)
        if owner is None:
            return await handler(request)
        try:
            return await self._forward(request, owner)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The owner's lease is live but it does not answer: it is dying. Answer here, as
            # for a call no engine runs (Twilio's 21220 for a redirect).
            log.warning("forwarding %s to %s failed: %s", request.path, owner, exc)
            return await handler(request)

    async def _forward(self, request: web.Request, owner: str) -> web.Response:
        assert self._session is not None
        headers = {name: request.headers[name] for name in _PASSED if name in request.headers}
        headers[FORWARDED_BY] = self.node_id
        body = await request.read()
        url = owner + request.path_qs
        async with self._session.request(
            request.method, url, data=body, headers=headers, allow_redirects=False
        ) as answer:
            payload = await answer.read()
            passed: dict[str, Any] = {}
            for name in ("Content-Type", "Retry-After", "WWW-Authenticate"):
                if name in answer.headers:
                    passed[name] = answer.headers[name]
            return web.Response(status=answer.status, body=payload, headers=passed)
