"""Registrations with carriers: ``[[registrations]]`` kept registered, and the calls they bring.

A carrier that calls its customers over TLS reaches an engine behind NAT only over a connection
the engine opened: the one its REGISTER went over (RFC 5626). This module owns the engine's side
of that: one :class:`~callxml.sip.aio.registration.Registerer` per ``[[registrations]]`` entry,
started with the SIP stack and unregistered (Expires 0) before it closes; a log line at every
change of state (``registered until …`` / ``failing: 403 Forbidden, next attempt in 60 s``); the
snapshot ``GET …/Registrations.json`` shows (:meth:`RegistrationService.snapshot`); and
:meth:`RegistrationService.domain_for`: an INVITE that arrives over a registration's flow is the
carrier's call, and runs that registration's domain flow, under that domain's secure-media
policy, without a digest challenge (the carrier cannot answer one; the TLS connection we opened
and verified is what vouches for it).
"""

from __future__ import annotations

import logging
import time

from callxml.engine.api import RegistrationInfo
from callxml.engine.config import DomainConfig, EngineConfig, RegistrationSettings
from callxml.sip.aio.registration import Registerer, RegistrationSpec
from callxml.sip.aio.resolver import HostResolver
from callxml.sip.aio.transport import label
from callxml.sip.aio.useragent import UserAgent
from callxml.sip.events import Address

__all__ = ["RegistrationService"]

log = logging.getLogger(__name__)


def _spec(settings: RegistrationSettings) -> RegistrationSpec:
    return RegistrationSpec(
        name=settings.name,
        registrar=settings.registrar,
        username=settings.username,
        password=settings.password,
        realm=settings.realm,
        aor=settings.aor,
        contact_user=settings.contact_user,
        expires=settings.expires,
        outbound_proxy=settings.outbound_proxy,
        keepalive=settings.keepalive,
        retry_base=settings.retry_base,
        retry_max=settings.retry_max,
    )


class RegistrationService:
    """Every ``[[registrations]]`` entry of ``config``, kept registered on ``ua``."""

    def __init__(self, config: EngineConfig, ua: UserAgent, resolver: HostResolver) -> None:
        self.config = config
        self._registerers = [
            (settings, Registerer(ua, _spec(settings), resolver, on_change=self._log))
            for settings in config.registrations
        ]

    def start(self) -> None:
        for _, registerer in self._registerers:
            registerer.start()

    async def stop(self) -> None:
        """Unregister every registration (Expires 0), each bounded in time."""
        for _, registerer in self._registerers:
            await registerer.stop()

    def domain_for(self, source: Address) -> DomainConfig | None:
        """The domain whose flow runs a request that arrived from ``source``, when ``source`` is
        the far end of a registration's flow (the connection its REGISTER went over)."""
        for settings, registerer in self._registerers:
            flow = registerer.flow
            if flow is not None and (flow.transport, flow.host, flow.port) == (
                source.transport,
                source.host,
                source.port,
            ):
                return self.config.domain(settings.domain)
        return None

    def snapshot(self) -> list[RegistrationInfo]:
        views = []
        for settings, registerer in self._registerers:
            status = registerer.status()
            flow = registerer.flow
            views.append(
                RegistrationInfo(
                    name=settings.name,
                    registrar=settings.registrar,
                    username=settings.username,
                    domain=settings.domain,
                    state=str(status.state),
                    registered_until=_wall(registerer, status.registered_until),
                    last_response=status.last_response,
                    failures=status.failures,
                    next_attempt=_wall(registerer, status.next_attempt),
                    expires=status.expires,
                    flow=label(flow) if flow is not None else None,
                )
            )
        return views

    def _log(self, registerer: Registerer) -> None:
        status = registerer.status()
        name = registerer.spec.name
        until = _wall(registerer, status.registered_until)
        if status.state == "registered" and until is not None:
            shown = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(until))
            where = label(registerer.flow) if registerer.flow else "?"
            log.info("registration %s: registered until %s (over %s)", name, shown, where)
        elif status.state == "failing":
            due = _wall(registerer, status.next_attempt)
            wait = f", next attempt in {max(0, round(due - time.time()))} s" if due else ""
            log.warning("registration %s: failing: %s%s", name, status.last_response, wait)
        else:
            log.info("registration %s: %s (%s)", name, status.state, status.last_response or "-")


def _wall(registerer: Registerer, at: float | None) -> float | None:
    return registerer.wall(at)
