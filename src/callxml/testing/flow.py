"""The object behind the ``callflow`` pytest fixture (see :mod:`callxml.testing`).

Owns only the convenience layer: routes are kept in a :class:`~callxml.simulator.MemoryFetcher`;
with no routes, sources are URLs or files as for ``callxml simulate``. Every result is kept in
:attr:`CallFlow.results` for inspection after the run.
"""

from __future__ import annotations

import asyncio
from typing import Any

from callxml.simulator import Caller, MemoryFetcher, SimulationResult, simulate, simulate_calls
from callxml.simulator.memory import Handler

__all__ = ["CallFlow"]


class CallFlow:
    """Runs simulated calls for a test. Keyword arguments are those of ``simulate()``."""

    def __init__(self, **defaults: Any) -> None:
        self.defaults = defaults
        self.fetcher = MemoryFetcher()
        self._routed = False
        self.results: list[SimulationResult] = []

    def route(self, url: str, handler: Handler) -> None:
        """Serve ``handler`` (document text/bytes, ``(status, body)``, or a function of the
        :class:`~callxml.webhooks.WebhookRequest`, sync or async) at ``url``."""
        self.fetcher.route(url, handler)
        self._routed = True

    async def simulate(self, source: str, **kw: Any) -> SimulationResult:
        """Run one call (for async tests)."""
        options = {**self.defaults, **kw}
        if self._routed:
            options.setdefault("fetcher", self.fetcher)
        result = await simulate(source, **options)
        self.results.append(result)
        return result

    async def simulate_calls(self, callers: list[Caller], **kw: Any) -> list[SimulationResult]:
        """Run several calls together on one clock (conferences, queues); see
        :func:`callxml.simulator.simulate_calls`."""
        options = {
            k: v
            for k, v in {**self.defaults, **kw}.items()
            if k in ("auth_token", "account_sid", "method", "echo", "limits", "trunk_uri_template")
        }
        if self._routed:
            options.setdefault("fetcher", self.fetcher)
        results = await simulate_calls(callers, **options)
        self.results += results
        return results

    def run(self, source: str, **kw: Any) -> SimulationResult:
        """Run one call (for sync tests; inside a running event loop use :meth:`simulate`)."""
        return asyncio.run(self.simulate(source, **kw))
