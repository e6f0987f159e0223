"""Stopping a peer process the tests started: politely, then for sure.

One place, because every harness (dnsmasq, Kamailio, SIPp, baresip...) must leave nothing
running after a test, whatever state the process is in: SIGTERM, a bounded wait, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["stop_process"]


async def stop_process(process: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """Terminate ``process`` and wait at most ``grace`` seconds before killing it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
