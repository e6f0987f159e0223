"""A registration on real sockets: the sans-IO :class:`~callxml.sip.register.Registration` driven
over the :class:`~callxml.sip.aio.useragent.UserAgent`, with RFC 5626 keep-alive.

This module owns *when* and *where* (the machine owns the SIP rules): it locates the registrar
(RFC 3263, or the outbound proxy) once per attempt and sends each REGISTER to one IP address —
so the connection the REGISTER travels over is known: it is the **flow** the registrar sends
our calls back over (:attr:`Registerer.flow`) —, feeds the final responses and failures to the
machine with ``now = loop.time()``, wakes at its timers, pings the flow with CRLFCRLF every
``keepalive`` seconds while registered (RFC 5626 §4.4.1: no pong, or a closed connection, is a
failed flow: register again at once), reports every change of state to ``on_change``, and on
:meth:`Registerer.stop` sends the Expires 0 REGISTER (bounded wait).

Contact: ``sip:<user>@<our TLS address>;transport=tls;ob`` with ``reg-id`` and a
``+sip.instance`` that is stable for the registration's name (RFC 5626 §4.1: the same across
restarts, so a registrar replaces our binding instead of piling them up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from callxml.errors import TransportError
from callxml.sip.aio.resolver import HostResolver, locate
from callxml.sip.aio.transport import label
from callxml.sip.aio.useragent import UserAgent
from callxml.sip.auth import Credentials
from callxml.sip.events import Address
from callxml.sip.message import SipRequest
from callxml.sip.register import (
    Registration,
    RegistrationConfig,
    RegistrationState,
    RegistrationStatus,
)
from callxml.sip.uri import parse_uri

__all__ = ["PONG_TIMEOUT", "Registerer", "RegistrationSpec", "instance_for"]

log = logging.getLogger(__name__)

#: RFC 5626 §4.4.1: a flow whose pong has not come within 10 s has failed.
PONG_TIMEOUT = 10.0
#: How long :meth:`Registerer.stop` waits for the Expires 0 exchange.
STOP_TIMEOUT = 3.0


def instance_for(name: str) -> str:
    """A stable ``urn:uuid:`` for the registration called ``name`` (RFC 5626 §4.1)."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'callxml-registration:' + name)}"


@dataclass(frozen=True)
class RegistrationSpec:
    """What to register: ``registrar`` (``sips:carrier.example`` or
    ``sip:carrier.example;transport=tls``), ``username``/``password`` for digest (``realm``
    restricts them to one realm), ``aor`` (default ``sip:<username>@<registrar host>``),
    ``contact_user`` (default the username), ``expires``, ``outbound_proxy``, ``keepalive``
    seconds between CRLF pings, RFC 5626 retry ``retry_base``/``retry_max``."""

    name: str
    registrar: str
    username: str
    password: str = ""
    realm: str | None = None
    aor: str | None = None
    contact_user: str | None = None
    expires: int = 3600
    outbound_proxy: str | None = None
    keepalive: float = 30.0
    retry_base: float = 30.0
    retry_max: float = 1800.0

    def __repr__(self) -> str:  # never show the password
        return f"RegistrationSpec({self.name!r}, {self.registrar!r}, {self.username!r})"


class Registerer:
    """One registration running on ``ua`` (which needs a TLS listener: our Contact).

    ``status()`` says where it stands; ``flow`` is the registrar's address the REGISTER went to
    (calls come back over that connection); ``on_change(status)`` is called at every change."""

    def __init__(
        self,
        ua: UserAgent,
        spec: RegistrationSpec,
        resolver: HostResolver,
        *,
        on_change: Callable[[Registerer], None] | None = None,
    ) -> None:
        self._ua = ua
        self.spec = spec
        self._resolver = resolver
        self._on_change = on_change
        self._registrar = parse_uri(spec.registrar)
        self._hop = parse_uri(spec.outbound_proxy) if spec.outbound_proxy else self._registrar
        if self._hop.transport != "tls":
            # Our own outbound-proxy URI without transport still means TLS to it.
            self._hop = self._hop.with_params(transport="tls")
        self.machine: Registration | None = None
        self.flow: Address | None = None
        self._candidates: list[Address] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_ping: float | None = None

    # -- queries ---------------------------------------------------------------------------

    def status(self) -> RegistrationStatus:
        machine = self.machine
        if machine is None:
            return RegistrationStatus(RegistrationState.IDLE, None, "", 0, None, self.spec.expires)
        return machine.status()

    def wall(self, at: float | None) -> float | None:
        """A moment of the loop's clock as Unix time (for records and the API)."""
        if at is None:
            return None
        return time.time() + (at - asyncio.get_running_loop().time())

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        local = self._ua.local("tls")
        host = f"[{local.host}]" if ":" in local.host else local.host
        spec = self.spec
        user = spec.contact_user or spec.username
        config = RegistrationConfig(
            registrar=str(self._registrar.without_headers()),
            aor=spec.aor or f"sip:{spec.username}@{self._registrar.host}",
            contact=f"sip:{user}@{host}:{local.port};transport=tls;ob",
            credentials=Credentials(spec.username, spec.password, spec.realm),
            expires=spec.expires,
            outbound_proxy=spec.outbound_proxy,
            instance=instance_for(spec.name),
            retry_base=spec.retry_base,
            retry_max=spec.retry_max,
        )
        via = f"SIP/2.0/TLS {host}:{local.port};rport"
        self.machine = Registration(config, via=via)
        self.machine.start(asyncio.get_running_loop().time())
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"registration {spec.name}"
        )

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Unregister (Expires 0) if registered, waiting at most ``timeout`` seconds."""
        machine, task = self.machine, self._task
        if machine is None or task is None:
            return
        machine.stop(asyncio.get_running_loop().time())
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), timeout)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._changed()

    # -- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        machine = self.machine
        assert machine is not None
        loop = asyncio.get_running_loop()
        try:
            while not self._stopped():
                for request in machine.requests():
                    await self._send(request)
                    self._changed()
                if machine.requests_pending:
                    continue
                if self._stopped():
                    break
                await self._sleep(loop.time())
                now = loop.time()
                if (
                    self._next_ping is not None
                    and now >= self._next_ping
                    and machine.state is RegistrationState.REGISTERED
                ):
                    await self._ping(now)
                machine.handle_timer(loop.time())
                self._changed()
        except Exception:  # a bug here must not go unnoticed, nor take the engine down
            log.exception("registration %s stopped by a fault", self.spec.name)

    def _stopped(self) -> bool:
        return self.machine is None or self.machine.state is RegistrationState.STOPPED

    async def _sleep(self, now: float) -> None:
        machine = self.machine
        assert machine is not None
        if machine.state is RegistrationState.REGISTERED:
            if self._next_ping is None:
                self._next_ping = now + self.spec.keepalive
        else:
            self._next_ping = None
        due = [t for t in (machine.next_timer(), self._next_ping) if t is not None]
        self._wake.clear()
        if machine.requests_pending:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.0, min(due) - now) if due else None)

    async def _send(self, request: SipRequest) -> None:
        machine = self.machine
        assert machine is not None
        loop = asyncio.get_running_loop()
        try:
            destination = await self._destination()
        except TransportError as exc:
            machine.failed(f"503 {exc}", loop.time())
            return
        result = await self._ua.request(request, destination)
        now = loop.time()
        if result.response is not None:
            machine.receive(result.response, now)
            return
        self._candidates = self._candidates[1:]  # RFC 3263 §4.3: the next server next time
        self.flow = None
        machine.failed(f"{result.status} {result.detail or result.reason}".strip(), now)

    async def _destination(self) -> Address:
        if self.flow is not None:
            return self.flow
        if not self._candidates:
            self._candidates = await locate(self._hop, self._resolver)
        self.flow = replace(self._candidates[0], server_name=self._hop.bare_host)
        return self.flow

    async def _ping(self, now: float) -> None:
        machine = self.machine
        assert machine is not None
        loop = asyncio.get_running_loop()
        self._next_ping = now + self.spec.keepalive
        flow = self.flow
        try:
            if flow is None:
                raise TransportError("no flow")
            await self._ua.keepalive(flow, PONG_TIMEOUT)
        except TransportError as exc:
            log.warning(
                "registration %s: the flow failed (%s); registering again", self.spec.name, exc
            )
            self.flow = None
            machine.flow_failed(loop.time())

    def _changed(self) -> None:
        machine = self.machine
        if machine is None or not machine.changed:
            return
        machine.changed = False
        if self._on_change is not None:
            try:
                self._on_change(self)
            except Exception:
                log.exception("registration %s: reporting a change failed", self.spec.name)

    def __repr__(self) -> str:
        where = label(self.flow) if self.flow else "-"
        return f"Registerer({self.spec.name!r}, {self.status().state}, {where})"
