"""Our own phones on loopback for the tests: a :class:`~callxml.runtime.Phone` on free ports
(UDP, and TLS with the development certificate) whose incoming calls wait in a queue.

Tests that need a real SIP peer that is callxml itself (the other end of a leg, the far side of
a ``<Dial>``) make one with the ``phone_boxes`` fixture (:mod:`support.fixtures`): ``box = await
phone_boxes()`` (keyword arguments go to :meth:`Phone.start`), ``box.uri()`` to dial it,
``await box.next_call()`` for what it was offered. Every phone is closed after the test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from callxml.engine.devcert import DevCertificate
from callxml.runtime import IncomingCall, Phone
from callxml.sip.aio.tls import TlsConfig
from callxml.sip.aio.transport import ListenerConfig

__all__ = ["WAIT", "PhoneBox", "PhoneFactory", "phone_boxes"]

WAIT = 10.0  # every wait on a phone is bounded


@dataclass
class PhoneBox:
    """A phone and the incoming calls it was offered (in order)."""

    phone: Phone
    incoming: asyncio.Queue[IncomingCall] = field(default_factory=asyncio.Queue)

    def port(self, transport: str = "udp") -> int:
        return self.phone.user_agent.local(transport).port

    def uri(self, user: str = "bob", transport: str = "udp") -> str:
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{user}@127.0.0.1:{self.port(transport)}{suffix}"

    async def next_call(self, timeout: float = WAIT) -> IncomingCall:
        return await asyncio.wait_for(self.incoming.get(), timeout)


PhoneFactory = Callable[..., Awaitable[PhoneBox]]


@contextlib.asynccontextmanager
async def phone_boxes(cert: DevCertificate) -> AsyncIterator[PhoneFactory]:
    """Make phones (UDP and TLS listeners on free ports) until the block ends; then close them."""
    made: list[PhoneBox] = []

    async def make(**options: Any) -> PhoneBox:
        queue: asyncio.Queue[IncomingCall] = asyncio.Queue()

        async def on_incoming(call: IncomingCall) -> None:
            await queue.put(call)

        phone = await Phone.start(
            listeners=[
                ListenerConfig("udp", "127.0.0.1", 0),
                ListenerConfig("tls", "127.0.0.1", 0),
            ],
            tls=TlsConfig(ca_file=str(cert.ca), cert_file=str(cert.cert), key_file=str(cert.key)),
            on_incoming=on_incoming,
            **options,
        )
        box = PhoneBox(phone, queue)
        made.append(box)
        return box

    try:
        yield make
    finally:
        for box in made:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(box.phone.close(), WAIT)
