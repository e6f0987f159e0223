"""The local simulator: run a whole call flow offline, with no SIP and no RTP.

A scripted (or interactive) caller and scripted far ends drive the same
:class:`~callxml.interpreter.CallSession` the engine runs, on a virtual clock: ``<Pause>`` and
timeouts cost no real time. Documents come from real webhooks (``http(s)://``), local files, or
memory (:class:`MemoryFetcher`). See ``docs/simulator.md``.

::

    result = run_simulation("flows/ivr.xml", digits=["1", "1234#"])
    assert result.said[0] == "Welcome"
    assert result.dials[0].srtp_suite == "AES_CM_128_HMAC_SHA1_80"
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from callxml.interpreter import CallInfo, CallSession, Limits
from callxml.simulator.driver import DIAL_OUTCOMES, SimulatedCall, estimate_speech
from callxml.simulator.many import Caller, run_together
from callxml.simulator.memory import MemoryFetcher
from callxml.simulator.result import DialRecord, RecordingRecord, RequestRecord, SimulationResult
from callxml.webhooks.base import Fetcher

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "DIAL_OUTCOMES",
    "Caller",
    "DialRecord",
    "MemoryFetcher",
    "RecordingRecord",
    "RequestRecord",
    "SimulationResult",
    "estimate_speech",
    "run_simulation",
    "simulate",
    "simulate_calls",
]

#: Signing key of simulated webhook requests unless one is given (X-Twilio-Signature).
DEFAULT_AUTH_TOKEN = "callxml-simulator"
#: AccountSid sent in simulated requests unless one is given.
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32


def _is_http(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


async def simulate(
    source: str,
    *,
    from_: str = "+15005550006",
    to: str = "+15005550001",
    digits: Sequence[str] = (),
    dial_outcomes: Mapping[str, str] | None = None,
    hangup_after: float | None = None,
    fetcher: Fetcher | None = None,
    auth_token: str = DEFAULT_AUTH_TOKEN,
    account_sid: str = DEFAULT_ACCOUNT_SID,
    method: str = "POST",
    fallback_url: str | None = None,
    prompt: Callable[[str], str] | None = None,
    echo: Callable[[str], object] | None = None,
    call_sid: str | None = None,
    limits: Limits | None = None,
    trunk_uri_template: str | None = None,
) -> SimulationResult:
    """Simulate one inbound call to ``source`` and return what happened.

    ``source`` is an http(s) URL (fetched with a signed :class:`~callxml.webhooks.WebhookClient`),
    a file path (read with :class:`~callxml.webhooks.FileFetcher`, confined to the file's
    directory), or any URL ``fetcher`` understands. ``digits`` answers each ``<Gather>`` or
    ``<Record>`` in turn; ``dial_outcomes`` maps a dialled target as written (``+1555…``,
    ``sip:bob@example.com``, or ``*`` for any) to ``answered``, ``busy``, ``no-answer`` or
    ``failed``; ``hangup_after`` hangs the caller up after that many simulated seconds.
    ``prompt`` is asked for a ``<Gather>``'s keys once ``digits`` runs out; ``echo`` receives each
    transcript line as it happens. ``trunk_uri_template`` is the engine's
    ``sip.trunk_uri_template``: without one a ``<Number>`` cannot be dialled, in the simulator
    as in the engine.
    """
    info = CallInfo.new(from_=from_, to=to, account_sid=account_sid)
    if call_sid is not None:
        info = CallInfo(
            call_sid=call_sid, account_sid=account_sid, from_=from_, to=to, direction="inbound"
        )
    owned_client = None
    url = source
    if fetcher is None:
        if _is_http(source):
            from callxml.webhooks.client import WebhookClient

            fetcher = owned_client = WebhookClient(auth_token=auth_token)
        else:
            from callxml.webhooks.files import FileFetcher

            path = Path(source).expanduser().resolve()
            fetcher = FileFetcher(path.parent)
            url = path.as_uri()
    try:
        session = CallSession(
            url=url, call=info, method=method, fallback_url=fallback_url, limits=limits
        )
        call = SimulatedCall(
            session,
            fetcher,
            digits=digits,
            dial_outcomes=dial_outcomes,
            hangup_after=hangup_after,
            prompt=prompt,
            echo=echo,
            trunk_uri_template=trunk_uri_template,
            auth_token=auth_token,
        )
        return await call.run()
    finally:
        if owned_client is not None:
            await owned_client.close()


async def simulate_calls(
    callers: Sequence[Caller],
    *,
    fetcher: Fetcher | None = None,
    auth_token: str = DEFAULT_AUTH_TOKEN,
    account_sid: str = DEFAULT_ACCOUNT_SID,
    method: str = "POST",
    echo: Callable[[str], object] | None = None,
    limits: Limits | None = None,
    trunk_uri_template: str | None = None,
) -> list[SimulationResult]:
    """Simulate several calls at once, on one virtual clock, sharing conference rooms and
    queues: a conference of simulated callers, callers waiting in a queue for an agent.

    Each :class:`Caller` calls its ``source`` (an http(s) URL, a file, or a URL ``fetcher``
    serves) at its own simulated time ``at``; see :mod:`callxml.simulator.many`. Returns one
    :class:`SimulationResult` per caller, in order.
    """
    owned_client = None
    sources = [caller.source for caller in callers]
    paths: dict[str, str] = {}
    if fetcher is None:
        if all(_is_http(source) for source in sources):
            from callxml.webhooks.client import WebhookClient

            fetcher = owned_client = WebhookClient(auth_token=auth_token)
        else:
            from callxml.webhooks.files import FileFetcher

            files = [Path(source).expanduser().resolve() for source in sources]
            fetcher = FileFetcher(Path(os.path.commonpath([f.parent for f in files])))
            paths = {source: f.as_uri() for source, f in zip(sources, files, strict=True)}

    try:
        return await run_together(
            callers,
            fetcher=fetcher,
            account_sid=account_sid,
            auth_token=auth_token,
            url_of=lambda source: paths.get(source, source),
            method=method,
            limits=limits,
            trunk_uri_template=trunk_uri_template,
            echo=echo,
        )
    finally:
        if owned_client is not None:
            await owned_client.close()


def run_simulation(source: str, **kw: Any) -> SimulationResult:
    """:func:`simulate` for synchronous code (runs its own event loop; not inside one)."""
    return asyncio.run(simulate(source, **kw))
