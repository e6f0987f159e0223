"""The hosted engine: everything ``callxml serve`` runs, started and stopped in the right order.

Owns the engine's life: the store (and, at start, marking calls a crash left unfinished as
failed), the development TLS certificate, the :class:`~callxml.runtime.leg.Phone` with its SIP
listeners, the REST API, status callbacks, and the calls themselves: inbound routing (unknown
domain → 404, source address check → 403, digest authentication for domains with credentials →
401/403, the domain's secure-media policy → 488, then the domain's webhook flow), originated
calls (:meth:`Engine.originate`: dial, then the flow on the answered call), and the bookkeeping
of every live call (:mod:`callxml.engine.calls`), so the API can redirect or end it and SIGTERM
can drain it (stop accepting, let calls finish within ``shutdown_grace``, then BYE). REGISTERs go
to the registrar (:mod:`callxml.engine.registrar`), which also finds the devices ``<Client>``,
a ``<Sip>`` to one of our users and REST ``To=client:…`` ring.

SIP, SDP and media rules live in :mod:`callxml.runtime`; call flow rules in
:mod:`callxml.interpreter`; HTTP in :mod:`callxml.engine.api`, reached through the adapter in
:mod:`callxml.engine.control`. This module only wires them to configuration and records.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import re
import signal
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import aiohttp.http_exceptions
from aiohttp import web
from prometheus_client import Histogram

from callxml.audio import AudioCache
from callxml.engine.admission import Admission, Slot
from callxml.engine.api import OutboundCall, RegistrationInfo, build_app, recording_uri
from callxml.engine.callbacks import CallbackTarget, StatusCallbacks, callback_target
from callxml.engine.calls import (
    CallBook,
    ChildBook,
    EngineStopping,
    InvalidTarget,
    LiveCall,
    new_call_record,
)
from callxml.engine.cluster import Cluster
from callxml.engine.conference import Conferences
from callxml.engine.config import AccountConfig, DomainConfig, EngineConfig
from callxml.engine.control import EngineControl
from callxml.engine.devcert import ensure_dev_certificate
from callxml.engine.health import StoreHealth
from callxml.engine.metrics import EngineMetrics, failure_reason, metrics_handler
from callxml.engine.queues import Queues
from callxml.engine.registrar import SHARED_SYNC_INTERVAL, RegistrarService
from callxml.engine.registrations import RegistrationService
from callxml.engine.rooms_api import add_room_routes
from callxml.engine.store import TERMINAL_STATUSES, CallRecord, SqliteStore, SqlStore, Store
from callxml.engine.zrtpcache import StoreZrtpCache
from callxml.errors import (
    CallXmlError,
    CapacityError,
    ConfigError,
    MediaError,
    TransportError,
    WebhookError,
)
from callxml.interpreter import CallInfo, CallSession, new_sid
from callxml.interpreter import actions as act
from callxml.interpreter import events as ev
from callxml.markup.verbs import Number, Sip
from callxml.media.zrtp import ZrtpResult
from callxml.runtime import CallLeg, DialResult, IncomingCall, Phone, bridge
from callxml.runtime.amd import AmdListener
from callxml.runtime.amd import detect as detect_machine
from callxml.runtime.dial import ChildCallback, Dialer, resolve_targets
from callxml.runtime.fork import dial_fork
from callxml.runtime.leg import Leg
from callxml.runtime.recorder import AudioTap, BridgeRecorder, Taps, save_recording
from callxml.runtime.session import (
    DIGIT_WAIT,
    INTERNAL_ERROR,
    CallRunner,
    ConferenceRunner,
    RuntimeServices,
    webhook_event,
)
from callxml.sip.aio.resolver import DnsResolver, HostResolver, SystemResolver
from callxml.sip.aio.tls import TlsConfig
from callxml.sip.aio.transport import ListenerConfig, TransportLimits
from callxml.sip.auth import Credentials, DigestServer, parse_authorization
from callxml.sip.events import Address
from callxml.sip.headers import parse_name_addr
from callxml.sip.message import SipRequest
from callxml.sip.session_timer import SessionTimerConfig
from callxml.sip.target import Target
from callxml.sip.uri import parse_uri
from callxml.webhooks import Fetcher, WebhookClient, WebhookRequest, WebhookResponse
from callxml.webhooks.base import fetch_outcome
from callxml.webhooks.guard import GuardedConnector, NetworkPolicy, parse_networks
from callxml.webhooks.streams import StreamClient

__all__ = ["ALL_CALLBACK_EVENTS", "DomainAuthenticator", "Engine", "dial_target"]

log = logging.getLogger(__name__)

ALL_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
#: Digest challenges a domain sends by default (``digest_algorithms``), one WWW-Authenticate
#: each, in this order. MD5 comes first because many phones (and SIPp) answer only the first
#: challenge and know only MD5; clients that follow RFC 8760 §2.4 pick SHA-256 themselves.
#: Accepting MD5 at all is what bounds the strength, not the order.
DOMAIN_DIGEST_ALGORITHMS = ("MD5", "SHA-256")  # as DomainConfig.digest_algorithms
#: After the grace period, how long hung-up calls get to post their last requests.
DRAIN_AFTER_HANGUP = 5.0
#: What ends :meth:`Engine.serve`.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The document URL an inline ``Twiml`` call runs under (relative URLs in it cannot resolve).
TWIML_URL = "http://twiml.callxml.invalid/inline"


def dial_target(to: str, trunk_uri_template: str | None) -> Target | str:
    """What to call for ``to``: a SIP URI as written (transport, media policy and X- headers
    worked out once), a number through the trunk template, or — for ``client:alice`` — the
    client identity (``alice``), whose registered devices are looked up when the call is dialled.

    Raises :class:`InvalidTarget` for a SIP URI that does not parse, a number when no
    trunk is configured, or an empty client identity.
    """
    if to.lower().startswith("client:"):
        identity = to[len("client:") :].strip()
        if not identity or any(c in identity for c in "@:;<> \t"):
            raise InvalidTarget(to, "a client identity is a user name, as in client:alice")
        return identity
    is_sip = to.lower().startswith(("sip:", "sips:"))
    noun: Sip | Number = Sip(uri=to) if is_sip else Number(number=to)
    resolved = resolve_targets([noun], trunk_uri_template=trunk_uri_template)[0]
    if resolved.error or resolved.target is None:
        raise InvalidTarget(to, resolved.error)
    return resolved.target


class DomainAuthenticator:
    """Digest authentication of inbound INVITEs, one realm per SIP domain with ``credentials``.

    The user agent calls it for every new INVITE (an
    :data:`~callxml.sip.ua.AuthenticatorSelector`): it picks the domain by the host of the
    Request-URI, as routing does, and returns that domain's :class:`DigestServer` (realm = the
    domain name, passwords from its credentials), or None for no challenge: an unknown domain
    (routing answers 404), a domain without credentials, or a source inside the domain's
    ``allowed_ips`` — like Twilio's SIP domains, a domain with both accepts a listed address
    *or* valid credentials. Nonces are signed with a secret drawn at each start, so nonces from
    an earlier run are simply challenged again. ``from_carrier(source)`` tells an INVITE that
    came over a registration's flow (a carrier's call, never challenged: it cannot answer).
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        secret: bytes | None = None,
        from_carrier: Callable[[Address], bool] | None = None,
    ) -> None:
        self._config = config
        self._from_carrier = from_carrier
        secret = secret if secret is not None else os.urandom(32)
        self._servers: dict[str, DigestServer] = {}
        for domain in config.domains:
            if domain.credentials:
                passwords: dict[str, str] = {}
                for credential in domain.credentials:
                    passwords.setdefault(credential.username, credential.password)
                self._servers[domain.name] = DigestServer(
                    domain.name, secret, passwords.get, algorithms=domain.digest_algorithms
                )

    def server_for(self, domain: DomainConfig) -> DigestServer | None:
        return self._servers.get(domain.name)

    def __call__(self, request: SipRequest, source: Address) -> DigestServer | None:
        try:
            name = parse_uri(request.uri).bare_host
        except CallXmlError:
            return None  # not a SIP URI: routing refuses it
        if request.method == "INVITE" and self._from_carrier and self._from_carrier(source):
            return None
        domain = self._config.domain(name)
        if domain is None:
            return None
        if request.method == "REGISTER":
            # A listed address may place calls, never take over a user's: a REGISTER always
            # proves the user. A secure domain's user is not even challenged off TLS (the
            # registrar refuses it), so no digest exchange crosses the network in the clear.
            if domain.secure_media and source.transport != "tls":
                return None
            return self._servers.get(domain.name)
        if _admitted_by_address(domain, source.host):
            return None
        return self._servers.get(domain.name)


def _admitted_by_address(domain: DomainConfig, host: str) -> bool:
    """True when ``allowed_ips`` alone lets the call in (a listed source address)."""
    return bool(domain.allowed_ips) and _allowed(host, domain.allowed_ips)


class Engine:
    """``callxml serve``: ``await engine.start()``, later ``await engine.stop()`` (or
    ``await engine.serve()``, which does both around SIGINT/SIGTERM).

    ``echo`` receives the start-up lines (addresses, the dev certificate's fingerprint).
    Live calls: :meth:`originate` starts one, :meth:`live` finds one by sid while it runs;
    :meth:`register` and :meth:`forget` bracket every call the engine drives, so the REST API
    can reach it and the drain at :meth:`stop` can end it.
    """

    def __init__(self, config: EngineConfig, *, echo: Callable[[str], None] = print) -> None:
        self.config = config
        self.echo = echo
        self.store: Store | None = None
        self.phone: Phone | None = None
        self.registrar: RegistrarService | None = None
        self.registrations: RegistrationService | None = None
        self.accepting = False
        self.http_port = config.http_port
        self._calls: dict[str, LiveCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # originated calls (tasks are weakly held)
        self._http: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._client_tls: ssl.SSLContext | None = None  # outgoing TLS: webhooks, streams
        self._fetchers: dict[str, WebhookClient] = {}
        self._callbacks: dict[str, StatusCallbacks] = {}
        self._audio: AudioCache | None = None
        self._services: dict[str, RuntimeServices] = {}
        self._stopped = asyncio.Event()
        self.store_health = StoreHealth()
        self.admission = Admission(config.limits, store_health=self.store_health)
        self._slots: dict[str, Slot] = {}
        self._conferences: Conferences | None = None
        self._queues: Queues | None = None
        self.metrics = EngineMetrics(self)
        #: Membership among engines sharing a PostgreSQL store (None on SQLite).
        self.cluster: Cluster | None = None

    # -------------------------------------------------------------------------- life

    async def serve(self, *, seconds: float | None = None) -> None:
        """Start, run until SIGINT or SIGTERM (or for ``seconds``), then drain and stop.

        What ``callxml serve`` does. A program with signal handling of its own calls
        :meth:`start` and :meth:`stop` itself.
        """
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
            self.echo("callxml engine ready (Ctrl-C or SIGTERM to stop)")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
            self.echo("callxml engine stopping")
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
            await self.stop()
        self.echo("callxml engine stopped")

    async def start(self) -> None:
        config = self.config
        store = self._open_store()
        self.store = self.metrics.timed_store(store)
        if config.database_url is not None:
            # Engines sharing the database: take our node id, and finalise only our own calls
            # (a live peer's are its own; a dead peer's are reaped once its lease runs out).
            self.cluster = Cluster(
                store,
                config.node,
                config.node_api_url or config.base_url,
                lease=config.node_lease,
            )
            try:
                await self.cluster.join()
            except BaseException:
                store.close()
                raise
            self._recover(node=config.node)
        else:
            self._recover()
        # Engines sharing the store share their registrars' bindings (engine/registrar.py).
        self.registrar = RegistrarService(
            config,
            self.store,
            shared_sync=SHARED_SYNC_INTERVAL if self.cluster is not None else None,
        )
        policy = NetworkPolicy(
            allow=parse_networks(config.webhook_allow_networks),
            deny=parse_networks(config.webhook_deny_networks),
            multi_tenant=config.multi_tenant,
        )
        # Every fetch (webhooks, <Play>, status callbacks) and every media stream's WebSocket
        # connects through the SSRF guard, verifying TLS against the system's CAs and
        # tls.ca_bundle.
        self._client_tls = ssl.create_default_context()
        if config.tls_ca_bundle is not None:
            self._client_tls.load_verify_locations(cafile=str(config.tls_ca_bundle))
        self._session = aiohttp.ClientSession(
            connector=GuardedConnector(policy, ssl=self._client_tls),
            timeout=aiohttp.ClientTimeout(total=None),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._audio = AudioCache(config.data_dir / "audio", session=self._session)
        self._conferences = Conferences(self.store, self._audio, config.recordings)
        self._queues = Queues(self.store)
        for account in config.accounts:
            fetcher = WebhookClient(
                auth_token=account.auth_token,
                timeout=config.webhook_timeout,
                session=self._session,
            )
            self._fetchers[account.sid] = fetcher
            callbacks = StatusCallbacks(fetcher, self.store, retries=config.status_callback_retries)
            callbacks.start()
            self._callbacks[account.sid] = callbacks
        await self._start_phone()
        self.registrar.start()
        assert self.phone is not None
        self.registrations = RegistrationService(config, self.phone.user_agent, self._resolver())
        self.registrations.start()
        await self._start_http()
        self.accepting = True

    def _open_store(self) -> SqlStore:
        config = self.config
        if config.database_url is not None:
            from callxml.engine.pgstore import PostgresStore

            return PostgresStore(
                config.database_url, pool_size=config.store_pool_size, node=config.node
            )
        try:
            return SqliteStore(config.database, node=config.node)
        except ConfigError:
            raise
        except Exception as exc:  # sqlite3.Error, OSError
            raise ConfigError(f"store.path: cannot open {config.database}: {exc}") from None

    def _recover(self, *, node: str | None = None) -> None:
        """After a crash: calls left unfinished (this node's, when ``node`` is given, and any
        made before calls named their node) are marked failed: no call is ever left live."""
        assert self.store is not None
        now = time.time()
        # Rooms live in the engine that mixes them: the ones it left open are over.
        self.store.end_conferences(
            node, now=now, reason="the engine stopped during the conference", unowned=True
        )
        unfinished = self.store.unfinished_calls()
        for record in unfinished:
            if node is not None and record.node not in (node, None):
                continue
            done = self.store.finish_call(
                record.sid,
                unless=TERMINAL_STATUSES,
                status="failed",
                date_updated=now,
                end_time=record.end_time or now,
                error=record.error or "the engine stopped during the call",
            )
            if done:
                log.warning("call %s was unfinished at start; marked failed", record.sid)

    def _admit_invite(
        self, request: SipRequest, source: Address, now: float
    ) -> tuple[str, int] | None:
        """The SIP core's admission of a new INVITE (:data:`~callxml.sip.ua.Admitter`)."""
        return self._admit_source(source, now)

    def _admit_source(self, source: Address, now: float) -> tuple[str, int] | None:
        """Admission of a new INVITE from ``source``: by the transport's gate before
        parsing (:data:`~callxml.sip.triage.SourceAdmitter`), or by the core after it."""
        refused = self.admission.admit_invite(source.host, now)
        if refused is None:
            return None
        return f"over capacity ({refused})", self.config.limits.retry_after

    def _tls(self) -> TlsConfig | None:
        config = self.config
        cert, key = config.tls_cert, config.tls_key
        if cert is None and any(lis.transport == "tls" for lis in config.listeners):
            dev = ensure_dev_certificate(config.data_dir / "tls")
            cert, key = dev.cert, dev.key
            made = "created" if dev.created else "using"
            self.echo(f"TLS: {made} development certificate {dev.cert}")
            self.echo(f"TLS: certificate SHA-256 fingerprint {dev.fingerprint}")
            self.echo(f"TLS: clients can trust the development CA {dev.ca}")
        return TlsConfig(
            ca_file=str(config.tls_ca_bundle) if config.tls_ca_bundle else None,
            cert_file=str(cert) if cert else None,
            key_file=str(key) if key else None,
            verify=config.tls_verify,
        )

    async def _start_phone(self) -> None:
        config = self.config
        listeners = [ListenerConfig(lis.transport, lis.host, lis.port) for lis in config.listeners]
        try:
            self.phone = await Phone.start(
                listeners=listeners,
                tls=self._tls(),
                media_address=config.media_address,
                media_port_range=(config.media_port_min, config.media_port_max),
                rtp_timeout=config.media_rtp_timeout or None,
                on_incoming=self._incoming,
                authenticator=DomainAuthenticator(config, from_carrier=self._from_carrier),
                resolver=self._resolver(),
                failover_timeout=config.failover_timeout,
                limits=TransportLimits(
                    max_connections=config.max_inbound_connections,
                    max_outbound_connections=config.max_outbound_connections,
                    connect_timeout=config.connect_timeout,
                    idle_timeout=config.connection_idle_timeout,
                    read_timeout=config.connection_read_timeout,
                ),
                admit=self._admit_invite,
                admit_source=self._admit_source,
                zrtp_cache=StoreZrtpCache(self.store) if self.store is not None else None,
                on_register=self.registrar,
                session_timer=(
                    SessionTimerConfig(config.session_expires, config.min_se)
                    if config.session_expires
                    else None
                ),
            )
        except OSError as exc:
            raise ConfigError(f"sip.listen: cannot listen: {exc}") from None
        except TransportError as exc:
            raise ConfigError(f"sip.listen: {exc}") from None
        for listener in config.listeners:
            self.echo(f"SIP: listening on {listener}")
        if config.trunk_uri_template:
            self.echo(f"SIP: <Number> dials through {config.trunk_uri_template}")
        for domain in config.domains:
            secure = {
                "none": "plain RTP",
                "sdes": "secure media required",
                "zrtp": "ZRTP required",
                "sdes-or-zrtp": "SDES or ZRTP required",
            }[domain.media_encryption]
            access = ", digest authentication, registrar" if domain.credentials else ""
            self.echo(f"SIP: domain {domain.name} -> {domain.voice_url} ({secure}{access})")

    def _resolver(self) -> HostResolver:
        """How dialled hosts and registrars are located (RFC 3263): ``sip.dns_servers``, else the
        system's resolver."""
        dns = self.config.dns_servers
        return DnsResolver(dns) if dns else SystemResolver()

    def _from_carrier(self, source: Address) -> bool:
        """Whether ``source`` is the far end of a registration's flow (a carrier's call)."""
        return self.registrations is not None and self.registrations.domain_for(source) is not None

    async def _start_http(self) -> None:
        config = self.config
        assert self.store is not None
        app = build_app(config, self.store, EngineControl(self), routes=(add_room_routes,))
        if self.cluster is not None:
            app.middlewares.append(self.cluster.middleware)
        if config.metrics_enabled:
            app.router.add_get("/metrics", metrics_handler(config, self.metrics))
        self._http = web.AppRunner(app, access_log=None, logger=HTTP_LOG)
        await self._http.setup()
        site = web.TCPSite(self._http, config.http_host, config.http_port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"http.port: cannot listen on {config.http_port}: {exc}") from None
        sockets = getattr(site._server, "sockets", None) or ()
        if sockets:
            self.http_port = int(sockets[0].getsockname()[1])
        self.echo(f"HTTP: REST API on http://{config.http_host}:{self.http_port}/")
        for account in config.accounts:
            self.echo(f"HTTP: account {account.sid}")

    async def stop(self) -> None:
        """Drain and close: no new calls, live calls get ``shutdown_grace``, then BYE."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.accepting = False
        if self._queues is not None:  # waiting callers go on with their <Enqueue> action
            await self._queues.close()
        grace = self.config.shutdown_grace
        live = [c for c in self._calls.values() if not c.ended.is_set()]
        if live:
            self.echo(f"stopping: waiting up to {grace:g} s for {len(live)} call(s)")
            await self._wait_calls(grace)
        for call in list(self._calls.values()):
            call.request_end("completed")
        await self._wait_calls(DRAIN_AFTER_HANGUP)
        for call in list(self._calls.values()):
            call.cancel()
        await self._wait_calls(2.0)
        if self._conferences is not None:
            await self._conferences.close()
        if self._http is not None:
            await self._http.cleanup()
        for callbacks in self._callbacks.values():
            await callbacks.close()
        if self.registrar is not None:
            await self.registrar.stop()
        if self.registrations is not None:
            await self.registrations.stop()  # Expires 0 to each carrier before the sockets close
        if self.phone is not None:
            await self.phone.close()
        if self.cluster is not None:
            await self.cluster.leave()
        for fetcher in self._fetchers.values():
            await fetcher.close()
        if self._session is not None:
            await self._session.close()
        if self.store is not None:
            self.store.close()

    async def _wait_calls(self, timeout: float) -> None:
        waits = [asyncio.ensure_future(c.ended.wait()) for c in self._calls.values()]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for waiter in pending:
                waiter.cancel()

    # -------------------------------------------------------------------------- calls

    def live(self, sid: str) -> LiveCall | None:
        """The call ``sid`` while the engine runs it; None before, after, or if unknown."""
        return self._calls.get(sid)

    def register(self, live: LiveCall) -> None:
        """Track ``live`` from now on: :meth:`live` finds it and :meth:`stop` drains it."""
        self._calls[live.sid] = live
        self.metrics.calls_started.labels(live.record.direction).inc()

    def forget(self, live: LiveCall) -> None:
        """The engine is done with ``live``: ``live.ended`` is set, :meth:`live` returns None."""
        live.ended.set()
        if self._calls.pop(live.sid, None) is not None:
            self.metrics.calls_ended.labels(live.record.status).inc()
            if (reason := failure_reason(live.record)) is not None:
                self.metrics.call_failures.labels(reason).inc()
        slot = self._slots.pop(live.sid, None)
        if slot is not None:
            slot.release()

    def live_statuses(self) -> dict[str, int]:
        """How many calls the engine runs now, by status (metrics)."""
        return dict(Counter(live.record.status for live in self._calls.values()))

    @property
    def counters(self) -> dict[str, int]:
        """What the engine refused, dropped or contained, by kind: admission refusals
        (``admission.max_setups``...), and the SIP stack's (``sip.core.bad_request``,
        ``sip.transport.timed_out``, ``sip.faults``...). See docs/reliability.md."""
        out = {f"admission.{k}": v for k, v in self.admission.refused.items()}
        if self.phone is not None:
            out.update({f"sip.{k}": v for k, v in self.phone.user_agent.counters.items()})
        return out

    def registrations_of(self, account: AccountConfig) -> list[RegistrationInfo]:
        """``account``'s registrations with carriers (those running its domains)."""
        if self.registrations is None:
            return []
        domains = {d.name for d in self.config.domains if d.account_sid == account.sid}
        return [r for r in self.registrations.snapshot() if r.domain in domains]

    def store_or_fail(self) -> Store:
        if self.store is None:
            raise CallXmlError("the engine is not started")
        return self.store

    @property
    def conferences(self) -> Conferences:
        """The conference rooms (once started)."""
        if self._conferences is None:
            raise CallXmlError("the engine is not started")
        return self._conferences

    @property
    def queues(self) -> Queues:
        """The call queues (once started)."""
        if self._queues is None:
            raise CallXmlError("the engine is not started")
        return self._queues

    def fetcher_for(self, account: AccountConfig) -> Fetcher:
        """The signed webhook client of ``account`` (announcements, room callbacks)."""
        return self._runtime_services(account).fetcher

    async def originate(self, account: AccountConfig, call: OutboundCall) -> CallRecord:
        """Start an outbound call for ``account``; returns its record (``queued``) at once.

        The call's own task then dials ``call.to`` (a SIP URI: ``;secure=true`` means TLS +
        SRTP, ``?X-…`` headers are sent; a number goes through the trunk template) with the
        SIP auth credentials, moves the record through ``initiated`` → ``ringing`` →
        ``in-progress`` (or ``busy``/``no-answer``/``failed``/``canceled``) with status
        callbacks, and runs ``call.url`` or ``call.twiml`` on the answered call.

        Raises :class:`EngineStopping` once :meth:`stop` has begun and :class:`InvalidTarget`
        when ``call.to`` cannot be called; neither writes a record.
        """
        if not self.accepting:
            raise EngineStopping("the engine is shutting down")
        to = dial_target(call.to, self.config.trunk_uri_template)
        refused = self.admission.admit_create(asyncio.get_running_loop().time())
        slot = self.admission.take() if refused is None else refused
        if isinstance(slot, str):
            raise CapacityError(
                f"over the engine's {slot} limit",
                retry_after=self.config.limits.retry_after,
                limit=slot,
            )
        record = new_call_record(
            account_sid=account.sid,
            direction="outbound-api",
            from_=call.from_,
            to=call.to,
            status="queued",
            node=self.config.node,
        )
        target = callback_target(
            call.status_callback, call.status_callback_method, call.status_callback_event
        )
        try:
            live = await self._new_call(account, record, target, slot)
        except BaseException:
            slot.release()
            raise
        task = live.start(self._originate(live, call, to))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return live.record

    async def _new_call(
        self,
        account: AccountConfig,
        record: CallRecord,
        target: CallbackTarget | None,
        slot: Slot | None = None,
    ) -> LiveCall:
        """Write a new call's record (and its first status callback) and track it as live;
        ``slot`` (its admission) is settled once answered or ended, released by :meth:`forget`."""
        live = LiveCall(self._book(record, target), account)
        if slot is not None:
            live.book.on_settled = slot.settle
            self._slots[live.sid] = slot
        await live.book.create()
        self.register(live)
        return live

    def _runtime_services(self, account: AccountConfig) -> RuntimeServices:
        """The runtime services for calls of ``account`` (its signed webhook client)."""
        services = self._services.get(account.sid)
        if services is None:
            assert self._audio is not None and self.phone is not None
            assert self._session is not None
            services = RuntimeServices(
                fetcher=_CountedFetcher(
                    self._fetchers[account.sid], self.admission, self.metrics.webhook_seconds
                ),
                audio=self._audio,
                streams=StreamClient(
                    self._session, auth_token=account.auth_token, ssl_context=self._client_tls
                ),
                recordings_dir=self.config.recordings,
            )
            self._services[account.sid] = services
        return services

    def _book(self, record: CallRecord, target: CallbackTarget | None) -> CallBook:
        account, base = record.account_sid, self.config.base_url
        return CallBook(
            self.store_or_fail(),
            self._callbacks.get(account),
            target,
            record,
            lambda sid: base + recording_uri(account, sid),
            health=self.store_health,
        )

    def _dialer(self, live: LiveCall) -> Dialer:
        assert self.phone is not None
        book, account = live.book, live.account
        services = self._runtime_services(account)

        async def whisper(
            url: str, method: str, leg: CallLeg, *, child_sid: str, to: str, from_: str
        ) -> bool:
            """A noun's ``url``: its document runs on the called party before the bridge."""
            info = CallInfo(
                call_sid=child_sid,
                account_sid=account.sid,
                from_=from_,
                to=to,
                direction="outbound-dial",
                extra=(("ParentCallSid", book.sid),),
            )
            session = CallSession(url=url, method=method, call=info, answered=True, whisper=True)
            whisper_services = RuntimeServices(
                fetcher=services.fetcher,
                audio=services.audio,
                recordings_dir=services.recordings_dir,
            )
            runner = CallRunner(session, leg, whisper_services, ChildBook(book, child_sid))
            await runner.run()
            return runner.session.returned

        async def keep(sid: str, pcm: bytes, channels: int, duration: int) -> str:
            """A ``<Dial record>`` recording: saved like ``<Record>``'s, on the caller's call."""
            path = await asyncio.to_thread(
                save_recording, services.recordings_dir, sid, pcm, channels=channels
            )
            return await book.recording(sid, path, duration, channels=channels, source="DialVerb")

        async def amd(
            child_sid: str, answered_by: str, duration_ms: int, callback: ChildCallback | None
        ) -> None:
            """A noun's ``machineDetection`` verdict: on the child's record, and posted to its
            ``amdStatusCallback`` (signed; the outcome is a ``callback`` event of the child)."""
            await book.child_update(child_sid, answered_by=answered_by)
            if callback is None:
                return
            params = (
                ("AccountSid", account.sid),
                ("CallSid", child_sid),
                ("ParentCallSid", book.sid),
                ("AnsweredBy", answered_by),
                ("MachineDetectionDuration", str(duration_ms)),
            )
            request = WebhookRequest(callback.url, callback.method, params)
            await self._post_callback(live, request, ChildBook(book, child_sid))

        assert self.registrar is not None
        return Dialer(
            self.phone,
            bridge,
            trunk_uri_template=self.config.trunk_uri_template,
            children=book,
            event=book.event,
            whisper=whisper,
            recordings=keep,
            directory=self.registrar.directory(account),
            amd=amd,
        )

    async def _run_call(
        self,
        live: LiveCall,
        leg: CallLeg,
        session: CallSession,
        *,
        inline_document: bytes | None = None,
        call_recorder: AudioTap | None = None,
    ) -> str:
        """Drive ``session`` on ``leg`` to its end; the record follows every change."""
        book = live.book
        services = self._runtime_services(live.account)
        call_services = RuntimeServices(
            fetcher=services.fetcher,
            audio=services.audio,
            dial=self._dialer(live),
            streams=services.streams,
            recordings_dir=services.recordings_dir,
        )
        runner = CallRunner(
            session,
            leg,
            call_services,
            book,
            inline_document=inline_document,
            call_recorder=call_recorder,
        )
        call_services.conference = self._conference_runner(live, runner)
        call_services.queues = _CallQueues(self.queues, live, runner, services)
        return await live.run(runner)

    def _conference_runner(self, live: LiveCall, runner: CallRunner) -> ConferenceRunner:
        """``<Dial><Conference>`` for the call ``live`` runs: the engine's rooms."""
        conferences = self.conferences
        fetcher = self._runtime_services(live.account).fetcher

        async def join(
            action: act.JoinConference,
            caller: Leg,
            *,
            stop: asyncio.Event,
            on_audio: Callable[[str, bytes], None] | None = None,
        ) -> ev.DialFinished:
            return await conferences.join(
                action,
                caller,
                stop=stop,
                on_audio=on_audio,
                account_sid=live.account.sid,
                call_sid=live.sid,
                fetcher=fetcher,
                params=lambda: runner.session.params(),
                notes=live.book,
            )

        return join

    # -------------------------------------------------------------------------- outbound

    async def _originate(
        self,
        live: LiveCall,
        call: OutboundCall,
        to: Target | str,
    ) -> None:
        """The life of an originated call: dial, record the outcome, run the flow if answered."""
        book = live.book
        try:
            await book.status("initiated")
            result = await self._ring(live, call, to)
            if result is None:
                await book.status("canceled", end_time=time.time(), sip_response_code=487)
                return
            await book.event(
                "sip",
                {
                    "message": f"dial {to if isinstance(to, Target) else call.to}: {result.status}",
                    "sip_response_code": result.sip_response_code,
                    "reason": result.reason,
                },
            )
            leg = result.leg
            if leg is not None and leg.zrtp_result is not None:
                await book.event("media", zrtp_event(leg.zrtp_result))
            if leg is None:
                status = result.status if result.status in TERMINAL_STATUSES else "failed"
                await book.status(
                    status,
                    end_time=time.time(),
                    sip_response_code=result.sip_response_code,
                    sip_call_id=result.sip_call_id,
                    error=result.reason or None,
                )
                return
            await book.status(
                "in-progress",
                start_time=time.time(),
                sip_response_code=result.sip_response_code,
                sip_call_id=result.sip_call_id,
            )
            inline = call.twiml.encode() if call.twiml is not None and not call.url else None
            loop = asyncio.get_running_loop()
            limit = loop.call_later(call.time_limit, _time_limit_reached, live)
            recorder, recording_sid = None, ""
            taps: list[AudioTap] = []
            if call.record:  # Record=true: the whole call, from the answer
                recorder = BridgeRecorder(
                    loop.time(),
                    dual=call.recording_channels == "dual",
                    track=call.recording_track,
                )
                taps.append(recorder)
                recording_sid = new_sid("RE")
                await self._recording_callback(live, call, recording_sid, "in-progress")
            amd_params: tuple[tuple[str, str], ...] = ()
            amd_task = None
            if call.machine_detection is not None and call.async_amd:
                listener = AmdListener(call.machine_detection, loop.time())
                taps.append(listener)
                amd_task = asyncio.ensure_future(self._async_amd(live, call, leg, listener))
            elif call.machine_detection is not None:  # before the flow's first webhook
                answered_by, took = await detect_machine(leg, call.machine_detection)
                await book.status("in-progress", answered_by=answered_by)
                amd_params = (("AnsweredBy", answered_by), ("MachineDetectionDuration", str(took)))
            tap = taps[0] if len(taps) == 1 else Taps(*taps) if taps else None
            try:
                if call.send_digits:
                    await _send_digits(live, leg, call.send_digits)
                session = _answered_session(live, call, amd_params)
                await self._run_call(live, leg, session, inline_document=inline, call_recorder=tap)
            finally:
                limit.cancel()
                if amd_task is not None:
                    amd_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await amd_task
                if recorder is not None:
                    await self._keep_call_recording(live, call, recorder, recording_sid)
        except CallXmlError as exc:
            await book.event("error", {"message": str(exc)})
            await book.status("failed", end_time=time.time(), error=str(exc))
        except Exception as exc:  # a bug: contained to this call, which still gets a final status
            await _call_crashed(live, exc)
        finally:
            self.forget(live)

    async def _async_amd(
        self, live: LiveCall, call: OutboundCall, leg: CallLeg, listener: AmdListener
    ) -> None:
        """``AsyncAmd``: the detector's verdict on the record and, when asked for, posted to
        ``AsyncAmdStatusCallback`` (signed like every request; its outcome is a ``callback``
        event)."""
        answered_by, took = await listener.result(leg.ended)
        await live.book.status("in-progress", answered_by=answered_by)
        await live.book.event(
            "media",
            {"message": f"answered by {answered_by} ({took} ms)", "answered_by": answered_by},
        )
        url = call.async_amd_status_callback
        if url is None:
            return
        params = (
            ("AccountSid", live.account.sid),
            ("CallSid", live.sid),
            ("AnsweredBy", answered_by),
            ("MachineDetectionDuration", str(took)),
        )
        await self._post_callback(
            live, WebhookRequest(url, call.async_amd_status_callback_method, params)
        )

    async def _keep_call_recording(
        self, live: LiveCall, call: OutboundCall, recorder: BridgeRecorder, sid: str
    ) -> None:
        """Save ``Record=true``'s recording on the call and send its status callback."""
        pcm, channels, seconds = recorder.result(asyncio.get_running_loop().time())
        if seconds <= 0:
            await self._recording_callback(live, call, sid, "absent")
            return
        services = self._runtime_services(live.account)
        path = await asyncio.to_thread(
            save_recording, services.recordings_dir, sid, pcm, channels=channels
        )
        url = await live.book.recording(sid, path, seconds, channels=channels, source="OutboundAPI")
        extra = (("RecordingUrl", url), ("RecordingDuration", str(seconds)))
        await self._recording_callback(live, call, sid, "completed", extra, channels)

    async def _recording_callback(
        self,
        live: LiveCall,
        call: OutboundCall,
        sid: str,
        status: str,
        extra: tuple[tuple[str, str], ...] = (),
        channels: int = 1,
    ) -> None:
        """``RecordingStatusCallback`` of a ``Record=true`` call, for the events asked for;
        signed by the account's webhook client; its outcome is a ``callback`` event."""
        url = call.recording_status_callback
        if url is None or status not in call.recording_status_callback_event:
            return
        params = (
            ("AccountSid", live.account.sid),
            ("CallSid", live.sid),
            ("RecordingSid", sid),
            ("RecordingStatus", status),
            ("RecordingSource", "OutboundAPI"),
            ("RecordingChannels", str(2 if call.recording_channels == "dual" else channels)),
            *extra,
        )
        await self._post_callback(
            live, WebhookRequest(url, call.recording_status_callback_method, params)
        )

    async def _post_callback(
        self, live: LiveCall, request: WebhookRequest, log: ChildBook | None = None
    ) -> None:
        """Send a callback of ``live``'s (signed by the account's webhook client); its outcome
        is a ``callback`` event on the call (or on ``log``'s: a child call's)."""
        outcome = await fetch_outcome(self._fetchers[live.account.sid], request)
        book = log if log is not None else live.book
        if isinstance(outcome, WebhookError):
            await book.event("callback", webhook_event(request, None, outcome, 0.0))
        else:
            await book.event("callback", webhook_event(request, outcome, None, 0.0))

    async def _ring(
        self,
        live: LiveCall,
        call: OutboundCall,
        to: Target | str,
    ) -> DialResult | None:
        """Dial ``to`` until answer, failure or ring timeout; the record shows ``ringing``.
        A client identity (``to`` as text) or a SIP URI naming one of the account's registered
        users rings every device of that user at once (:func:`~callxml.runtime.fork.dial_fork`).

        None when the dial was cancelled from outside (REST ``Status=canceled``, or the drain);
        the cancellation propagates when it is this task itself being cancelled.
        """
        assert self.phone is not None
        credentials = (
            Credentials(call.sip_auth_username, call.sip_auth_password or "")
            if call.sip_auth_username
            else None
        )
        ringing: list[asyncio.Task[None]] = []

        def on_ringing() -> None:
            ringing.append(asyncio.ensure_future(live.book.status("ringing")))

        assert self.registrar is not None
        users = self.registrar.directory(live.account)
        callee = users.client(to) if isinstance(to, str) else users.sip(to)
        if callee is not None:
            dialing = dial_fork(
                self.phone,
                callee,
                from_uri=_from_uri(call),
                timeout=call.timeout,
                headers=to.headers if isinstance(to, Target) else (),
                on_ringing=on_ringing,
                sid=live.sid,
            )
        else:
            assert isinstance(to, Target)
            dialing = self.phone.dial(
                to,
                from_uri=_from_uri(call),
                timeout=call.timeout,
                credentials=credentials,
                on_ringing=on_ringing,
                sid=live.sid,
            )
        try:
            return await live.dial(dialing)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise  # the engine is stopping this task, not the API cancelling the dial
            return None
        finally:
            for task in ringing:  # the ringing write lands before any final status
                await task

    # -------------------------------------------------------------------------- inbound

    async def _incoming(self, incoming: IncomingCall) -> None:
        """Route an INVITE: domain, source check, secure-media policy, then the webhook flow."""
        if not self.accepting:
            await incoming.reject(503, "Service Unavailable", warning="the engine is stopping")
            return
        # Rates were checked (and most refusals sent, statelessly) by _admit_invite in the SIP
        # core; count the call, refusing still if capacity ran out in between.
        slot = self.admission.take()
        if isinstance(slot, str):
            incoming.refuse_busy(f"over capacity ({slot})", self.config.limits.retry_after)
            return
        try:
            await self._take_incoming(incoming, slot)
        finally:
            slot.release()  # the call is over, or was refused before it began (404, 403...)

    async def _take_incoming(self, incoming: IncomingCall, slot: Slot) -> None:
        # A call over a registration's flow is the carrier's: it runs that registration's domain.
        source = Address(incoming.transport, *incoming.source)
        carrier = self.registrations.domain_for(source) if self.registrations else None
        domain = carrier or self.config.domain(incoming.domain)
        if domain is None:
            await incoming.reject(404, "Not Found", warning=f"no SIP domain {incoming.domain!r}")
            return
        # With credentials too, the user agent has already let in only a listed address or valid
        # digest credentials (DomainAuthenticator); without, the address decides alone.
        if (
            carrier is None
            and domain.allowed_ips
            and not domain.credentials
            and not _admitted_by_address(domain, incoming.source[0])
        ):
            await incoming.reject(403, "Forbidden", warning="source address not allowed")
            return
        account = self.config.account(domain.account_sid)
        if account is None:  # config validation makes this impossible
            await incoming.reject(500, "Server Internal Error")
            return
        if self.registrar is not None and self.registrar.registered_flow(
            incoming.transport, *incoming.source
        ):
            incoming.keep_on_flow()  # a registered device: our BYE goes back over its flow
        record = new_call_record(
            account_sid=account.sid,
            direction="inbound",
            from_=incoming.from_uri,
            to=incoming.to_uri,
            status="ringing",
            sip_call_id=incoming.sip_call_id,
            caller_name=incoming.request.from_.display_name or None,
            forwarded_from=_forwarded_from(incoming.request),
            node=self.config.node,
        )
        target = callback_target(
            domain.status_callback, domain.status_callback_method, ALL_CALLBACK_EVENTS
        )
        live = await self._new_call(account, record, target, slot)
        admitted = "registration" if carrier else _admitted_by(domain, incoming.source[0])
        try:
            await self._run_inbound(live, domain, incoming, admitted)
        except Exception as exc:  # a bug: answer the caller, finish the record, keep serving
            await _call_crashed(live, exc)
            if not incoming.decided:
                with contextlib.suppress(CallXmlError):
                    await incoming.reject(500, "Server Internal Error")
        finally:
            self.forget(live)

    async def _run_inbound(
        self, live: LiveCall, domain: DomainConfig, incoming: IncomingCall, admitted_by: str
    ) -> None:
        book = live.book
        await book.event(
            "sip",
            {
                "message": "INVITE received",
                "transport": incoming.transport,
                "source": f"{incoming.source[0]}:{incoming.source[1]}",
                "domain": domain.name,
                "secure_media": domain.secure_media,
                "admitted_by": admitted_by,
            },
        )
        try:
            leg = await incoming.accept(
                secure_media_enabled=domain.secure_media,
                srtp_suites=domain.srtp_suites,
                zrtp=domain.media_encryption in ("zrtp", "sdes-or-zrtp"),
                answer=False,
                sid=book.sid,
            )
        except CapacityError as exc:  # 503 + Retry-After already sent
            log.warning("call %s refused: %s", book.sid, exc)
            await book.event("sip", {"message": f"503 Service Unavailable: {exc}"})
            await book.status("failed", sip_response_code=503, end_time=time.time(), error=str(exc))
            return
        except MediaError as exc:  # 488 already sent, with a Warning saying why
            reason = getattr(exc, "reason", str(exc))
            await book.event("sip", {"message": f"488 Not Acceptable Here: {reason}"})
            await book.status("failed", sip_response_code=488, end_time=time.time(), error=reason)
            return
        except CallXmlError as exc:  # the caller gave up, or the INVITE is unusable
            await book.event("warning", {"message": f"call not accepted: {exc}"})
            await book.status("canceled", end_time=time.time(), error=str(exc))
            return
        extra = _inbound_params(domain, incoming)
        answered = False
        if leg.zrtp is not None:
            # RFC 6189: ZRTP runs on the media path, so the call is answered first; nothing is
            # played until it completes, and the flow starts with the SAS in its parameters.
            secured = await self._secure_zrtp(book, leg)
            if secured is None:
                return
            extra += secured
            answered = True
        else:
            await book.event("media", {"encryption": leg.encryption, "suite": leg.suite})
            with contextlib.suppress(CallXmlError):
                await incoming.ring()
        info = CallInfo(
            call_sid=book.sid,
            account_sid=live.account.sid,
            from_=incoming.from_uri,
            to=incoming.to_uri,
            direction="inbound",
            extra=tuple(extra),
        )
        session = CallSession(
            url=domain.voice_url,
            method=domain.voice_method,
            fallback_url=domain.fallback_url,
            fallback_method=domain.fallback_method,
            call=info,
            answered=answered,
        )
        await self._run_call(live, leg, session)

    async def _secure_zrtp(self, book: CallBook, leg: CallLeg) -> list[tuple[str, str]] | None:
        """Answer a ZRTP leg and wait for the exchange: the webhook parameters it adds
        (``ZrtpSas``, ``ZrtpSasVerified``: callxml extensions), or None when it failed and the
        call was ended with the reason recorded."""
        try:
            await leg.answer()
            await book.status("in-progress", start_time=time.time())
            result = await leg.wait_secure()
        except CallXmlError as exc:
            reason = getattr(exc, "reason", str(exc))
            await leg.hangup(reason)
            await book.event("media", {"encryption": "zrtp", "failure": reason})
            await book.status("failed", end_time=time.time(), error=reason)
            return None
        assert result is not None
        await book.event("media", zrtp_event(result))
        return [("ZrtpSas", result.sas), ("ZrtpSasVerified", str(result.verified).lower())]


def zrtp_event(result: ZrtpResult) -> dict[str, Any]:
    """What the call log keeps of a completed ZRTP exchange: never a key or secret."""
    cache = "match" if result.cache_match else ("mismatch" if result.cache_mismatch else "new")
    return {
        "encryption": "zrtp",
        "suite": result.suite,
        "sas": result.sas,
        "sas_verified": result.verified,
        "peer_sas_verified": result.peer_verified,
        "algorithms": result.algorithms,
        "role": "initiator" if result.initiator else "responder",
        "cache": cache,
        "peer_zid": result.peer_zid.hex(),
    }


class _CallQueues:
    """One call's :class:`~callxml.runtime.session.QueueRunner`: the engine's queues, with
    the call's record and services."""

    def __init__(
        self, queues: Queues, live: LiveCall, runner: CallRunner, services: RuntimeServices
    ) -> None:
        self.queues = queues
        self.live = live
        self.runner = runner
        self.services = services

    async def enqueue(
        self, action: act.Enqueue, caller: Leg, *, stop: asyncio.Event
    ) -> ev.QueueLeft:
        return await self.queues.enqueue(
            action,
            caller,
            stop=stop,
            call=self.runner.session.call,
            book=self.live.book,
            services=self.services,
        )

    async def dequeue(
        self,
        action: act.Dequeue,
        caller: Leg,
        *,
        stop: asyncio.Event,
        answer_caller: Callable[[], Awaitable[None]],
        on_audio: Callable[[str, bytes], None] | None = None,
    ) -> ev.DialFinished:
        return await self.queues.dequeue(
            action,
            caller,
            stop=stop,
            answer_caller=answer_caller,
            on_audio=on_audio,
            call=self.runner.session.call,
            book=self.live.book,
            services=self.services,
        )


class _CountedFetcher:
    """A call's webhook fetcher, counted in the admission's fetches in flight (a limit on new
    calls: existing calls' fetches are never refused)."""

    def __init__(self, fetcher: Fetcher, admission: Admission, seconds: Histogram) -> None:
        self._fetcher = fetcher
        self._admission = admission
        self._ok = seconds.labels("ok")
        self._failed = seconds.labels("failed")

    async def fetch(self, request: WebhookRequest) -> WebhookResponse:
        self._admission.fetches += 1
        start = time.perf_counter()
        outcome = self._failed
        try:
            response = await self._fetcher.fetch(request)
            outcome = self._ok
            return response
        finally:
            outcome.observe(time.perf_counter() - start)
            self._admission.fetches -= 1


class _BadRequestsAreNotErrors(logging.Filter):
    """aiohttp logs a request it cannot parse (an over-long request line, a bad header) as an
    ERROR with a traceback. That is a client's mistake, answered 4xx: one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, aiohttp.http_exceptions.HttpProcessingError) and (exc.code or 400) < 500:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.msg}: {type(exc).__name__}: {str(exc)[:200]}"
            record.exc_info = None
            record.exc_text = None
        return True


#: The REST API's server log (aiohttp's own, with the filter above).
HTTP_LOG = logging.getLogger("callxml.engine.http")
HTTP_LOG.addFilter(_BadRequestsAreNotErrors())


def domain_sid(name: str) -> str:
    """A SIP domain's ``SipDomainSid``: ``SD`` + 32 hex digits, stable for the domain name."""
    return "SD" + hashlib.md5(name.encode()).hexdigest()


def _inbound_params(domain: DomainConfig, incoming: IncomingCall) -> list[tuple[str, str]]:
    """What Twilio adds to the webhook parameters of a call to a SIP domain, as far as callxml
    knows it: the caller's display name, where the call was forwarded from (Diversion, else
    History-Info), the SIP facts and the INVITE's X- headers."""
    request = incoming.request
    params: list[tuple[str, str]] = []
    if request.from_.display_name:
        params.append(("CallerName", request.from_.display_name))
    if (forwarded := _forwarded_from(request)) is not None:
        params.append(("ForwardedFrom", forwarded))
    params += [
        ("SipCallId", incoming.sip_call_id),
        ("SipDomain", domain.name),
        ("SipDomainSid", domain_sid(domain.name)),
        ("SipTransport", incoming.transport),
        ("SipSourceIp", incoming.source[0]),
    ]
    if _admitted_by(domain, incoming.source[0]) == "digest":
        with contextlib.suppress(CallXmlError):
            # the user agent has verified these credentials before the call got here
            value = request.headers.get("Authorization") or ""
            params.append(("SipUsername", parse_authorization(value).username))
    params += [(f"SipHeader_{name}", value) for name, value in incoming.headers]
    return params


def _forwarded_from(request: SipRequest) -> str | None:
    """The user (or, without one, the URI) the call was diverted from: the first ``Diversion``
    (RFC 5806), else the first ``History-Info`` entry when there are several (RFC 7044)."""
    diversion = request.headers.get("Diversion")
    history = request.headers.get_all("History-Info")
    entries = ",".join(history).split(",") if history else []
    value = diversion.split(",")[0] if diversion else (entries[0] if len(entries) > 1 else None)
    if not value:
        return None
    try:
        uri = parse_uri(parse_name_addr(value.strip()).uri)
    except CallXmlError:
        return None
    return uri.user or str(uri)


def _from_uri(call: OutboundCall) -> str | None:
    """The From of the INVITE: ``CallerId`` when given (a SIP URI as is, a number or name as
    ``sip:<it>@callxml.invalid``, as ``<Dial callerId>`` does), else ``From`` when it is a SIP
    URI, else the phone's default."""
    if call.caller_id:
        if call.caller_id.startswith(("sip:", "sips:")):
            return call.caller_id
        return f"sip:{call.caller_id}@callxml.invalid"
    return call.from_ if call.from_.startswith(("sip:", "sips:")) else None


async def _send_digits(live: LiveCall, leg: CallLeg, digits: str) -> None:
    """``SendDigits``: RFC 4733 keys to the answered callee before the flow starts (``w`` waits
    half a second, as Twilio)."""
    await live.book.event("info", {"message": f"sending digits {digits}"})
    for chunk in re.split(r"([wW])", digits):
        if chunk in ("w", "W"):
            await asyncio.sleep(DIGIT_WAIT)
        elif chunk:
            await leg.send_digits(chunk)


def _time_limit_reached(live: LiveCall) -> None:
    """``TimeLimit``: the longest the call may last once answered; then it is hung up."""
    if not live.over:
        log.info("call %s: TimeLimit reached; hanging up", live.sid)
        with contextlib.suppress(CallXmlError):
            live.request_end("completed")


async def _call_crashed(live: LiveCall, exc: Exception) -> None:
    """A bug outside the call's driver (which handles its own, see ``CallRunner``): the record
    still gets ``failed`` and a notification, and the traceback is logged."""
    log.error("call %s failed unexpectedly", live.sid, exc_info=exc)
    message = f"internal error: {type(exc).__name__}: {exc}"
    with contextlib.suppress(Exception):
        await live.book.event("error", {"message": message, "code": INTERNAL_ERROR})
        if not live.over:
            await live.book.status("failed", end_time=time.time(), error=message)


def _answered_session(
    live: LiveCall, call: OutboundCall, extra: tuple[tuple[str, str], ...] = ()
) -> CallSession:
    """The flow of an originated call, started once the callee has answered; ``extra`` are
    parameters for every request (``AnsweredBy`` from a synchronous machine detection)."""
    info = CallInfo(
        call_sid=live.sid,
        account_sid=live.account.sid,
        from_=call.from_,
        to=call.to,
        direction="outbound-api",
        extra=extra,
    )
    return CallSession(
        url=call.url or TWIML_URL,
        method=call.method,
        fallback_url=call.fallback_url,
        fallback_method=call.fallback_method,
        call=info,
        answered=True,
    )


def _admitted_by(domain: DomainConfig, host: str) -> str:
    """For the call log: what let the INVITE in (``allowed_ips``, ``digest`` or ``open``)."""
    if _admitted_by_address(domain, host):
        return "allowed_ips"
    return "digest" if domain.credentials else "open"


def _allowed(host: str, networks: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)
