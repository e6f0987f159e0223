"""A real aiohttp server on 127.0.0.1, on a port the OS picks, for webhook and REST tests.

Webhook apps under test are served for real (no mocked client), so every test that needs one
starts it the same way: :func:`serve_app` returns the runner (whose ``cleanup()`` stops it) and
the port. The ``serve`` fixture in :mod:`support.fixtures` does the cleanup for you.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

__all__ = ["Serve", "serve_app"]

#: The ``serve`` fixture: ``base_url = await serve(app)``.
Serve = Callable[[web.Application], Awaitable[str]]


async def serve_app(
    app: web.Application, *, ssl_context: ssl.SSLContext | None = None, **runner: Any
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on 127.0.0.1 (a free port; HTTPS with ``ssl_context``); ``runner`` options
    go to :class:`aiohttp.web.AppRunner`. Returns (runner, port); ``runner.cleanup()`` stops it."""
    app_runner = web.AppRunner(app, **runner)
    await app_runner.setup()
    try:
        await web.TCPSite(app_runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
    except BaseException:
        await app_runner.cleanup()
        raise
    return app_runner, int(app_runner.addresses[0][1])
