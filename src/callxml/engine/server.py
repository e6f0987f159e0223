"""The hosted engine: everything ``callxml serve`` runs, started and stopped in the right order.

Owns the engine's life: the store (and, at start, marking calls a crash left unfinished as
failed), the development TLS certificate, the :class:`~callxml.runtime.leg.Phone` with its SIP
listeners, the REST API, status callbacks, and the calls themselves: inbound routing (unknown
domain → 404, source address check → 403, digest authentication for domains with credentials →
401/403, the domain's secure-media policy → 488, then the domain's webhook flow) and the
bookkeeping of every live call, so the API can redirect or end it
and SIGTERM can drain it (stop accepting, let calls finish within ``shutdown_grace``, then BYE).

SIP, SDP and media rules live in :mod:`callxml.runtime`; call flow rules in
:mod:`callxml.interpreter`; this module only wires them to configuration and records.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from callxml.audio import AudioCache
from callxml.engine.api import API_VERSION, build_app
from callxml.engine.callbacks import CallbackTarget, StatusCallbacks
from callxml.engine.config import AccountConfig, DomainConfig, EngineConfig
from callxml.engine.devcert import ensure_dev_certificate
from callxml.engine.store import CallEvent, CallRecord, RecordingRecord, SqliteStore, Store
from callxml.errors import CallXmlError, ConfigError, MediaError, TransportError
from callxml.interpreter import CallInfo, CallSession, new_sid
from callxml.runtime import CallLeg, IncomingCall, Phone, bridge
from callxml.runtime.dial import Dialer
from callxml.runtime.session import CallRunner, RuntimeServices
from callxml.sip.aio.tls import TlsConfig
from callxml.sip.aio.transport import ListenerConfig
from callxml.sip.auth import DigestServer
from callxml.sip.events import Address
from callxml.sip.message import SipRequest
from callxml.sip.uri import parse_uri
from callxml.webhooks import WebhookClient

__all__ = ["ALL_CALLBACK_EVENTS", "CallBook", "DomainAuthenticator", "Engine", "LiveCall"]

log = logging.getLogger(__name__)

ALL_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
#: Digest challenges a domain sends, one WWW-Authenticate each, in this order. MD5 comes first
#: because many phones (and SIPp) answer only the first challenge and know only MD5; clients that
#: follow RFC 8760 §2.4 pick SHA-256 themselves. Accepting MD5 at all is what bounds the
#: strength, not the order.
DOMAIN_DIGEST_ALGORITHMS = ("MD5", "SHA-256")
#: After the grace period, how long hung-up calls get to post their last requests.
DRAIN_AFTER_HANGUP = 5.0


class CallBook:
    """One call's record in the store, with status callbacks: the runtime's ``CallLog``.

    Every change is its own committed write (off the event loop); a status change also queues the
    status callback, which never blocks the call.
    """

    def __init__(
        self,
        store: Store,
        callbacks: StatusCallbacks | None,
        target: CallbackTarget | None,
        record: CallRecord,
        recording_base: str,
    ) -> None:
        self.store = store
        self.callbacks = callbacks
        self.target = target
        self.record = record
        self.recording_base = recording_base

    @property
    def sid(self) -> str:
        return self.record.sid

    async def create(self) -> None:
        await asyncio.to_thread(self.store.create_call, self.record)
        self._notify()

    async def event(self, kind: str, data: Mapping[str, Any]) -> None:
        await asyncio.to_thread(
            self.store.add_event, CallEvent(self.sid, kind, time.time(), dict(data))
        )

    async def status(self, status: str, **changes: Any) -> None:
        if self.record.status == status and not changes:
            return
        changed = self.record.status != status
        self.record = await asyncio.to_thread(
            self.store.update_call, self.sid, status=status, date_updated=time.time(), **changes
        )
        if changed:
            self._notify()

    async def recording(self, sid: str, path: Path, duration: int) -> str:
        record = RecordingRecord(
            sid=sid,
            call_sid=self.sid,
            account_sid=self.record.account_sid,
            path=str(path),
            duration=duration,
            date_created=time.time(),
        )
        await asyncio.to_thread(self.store.add_recording, record)
        account = self.record.account_sid
        return f"{self.recording_base}/{API_VERSION}/Accounts/{account}/Recordings/{sid}"

    def _notify(self) -> None:
        if self.callbacks is not None:
            self.callbacks.notify(self.target, self.record)

    # -- child calls of a <Dial> (the runtime's ChildLog) -------------------------------------

    async def child_started(self, sid: str, to: str, from_: str) -> None:
        now = time.time()
        record = CallRecord(
            sid=sid,
            account_sid=self.record.account_sid,
            direction="outbound-dial",
            from_=from_,
            to=to,
            status="initiated",
            parent_call_sid=self.sid,
            date_created=now,
            date_updated=now,
        )
        await asyncio.to_thread(self.store.create_call, record)

    async def child_status(self, sid: str, status: str, **changes: Any) -> None:
        with contextlib.suppress(KeyError):
            await asyncio.to_thread(
                self.store.update_call, sid, status=status, date_updated=time.time(), **changes
            )


class DomainAuthenticator:
    """Digest authentication of inbound INVITEs, one realm per SIP domain with ``credentials``.

    The user agent calls it for every new INVITE (an
    :data:`~callxml.sip.ua.AuthenticatorSelector`): it picks the domain by the host of the
    Request-URI, as routing does, and returns that domain's :class:`DigestServer` (realm = the
    domain name, passwords from its credentials), or None for no challenge: an unknown domain
    (routing answers 404), a domain without credentials, or a source inside the domain's
    ``allowed_ips`` — like Twilio's SIP domains, a domain with both accepts a listed address
    *or* valid credentials. Nonces are signed with a secret drawn at each start, so nonces from
    an earlier run are simply challenged again.
    """

    def __init__(self, config: EngineConfig, *, secret: bytes | None = None) -> None:
        self._config = config
        secret = secret if secret is not None else os.urandom(32)
        self._servers: dict[str, DigestServer] = {}
        for domain in config.domains:
            if domain.credentials:
                passwords: dict[str, str] = {}
                for credential in domain.credentials:
                    passwords.setdefault(credential.username, credential.password)
                self._servers[domain.name] = DigestServer(
                    domain.name, secret, passwords.get, algorithms=DOMAIN_DIGEST_ALGORITHMS
                )

    def server_for(self, domain: DomainConfig) -> DigestServer | None:
        return self._servers.get(domain.name)

    def __call__(self, request: SipRequest, source: Address) -> DigestServer | None:
        try:
            name = parse_uri(request.uri).bare_host
        except CallXmlError:
            return None  # not a SIP URI: routing refuses it
        domain = self._config.domain(name)
        if domain is None or _admitted_by_address(domain, source.host):
            return None
        return self._servers.get(domain.name)


def _admitted_by_address(domain: DomainConfig, host: str) -> bool:
    """True when ``allowed_ips`` alone lets the call in (a listed source address)."""
    return bool(domain.allowed_ips) and _allowed(host, domain.allowed_ips)


@dataclass
class LiveCall:
    """A call the engine is running: its record, and its driver once the call has a leg."""

    book: CallBook
    account: AccountConfig
    runner: CallRunner | None = None
    task: asyncio.Task[Any] | None = None
    dialing: asyncio.Task[Any] | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class Engine:
    """``callxml serve``: ``await engine.start()``, later ``await engine.stop()``.

    ``echo`` receives the start-up lines (addresses, the dev certificate's fingerprint).
    """

    def __init__(self, config: EngineConfig, *, echo: Callable[[str], None] = print) -> None:
        self.config = config
        self.echo = echo
        self.store: Store | None = None
        self.phone: Phone | None = None
        self.calls: dict[str, LiveCall] = {}
        self.accepting = False
        self.http_port = config.http_port
        self._http: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._fetchers: dict[str, WebhookClient] = {}
        self._callbacks: dict[str, StatusCallbacks] = {}
        self._audio: AudioCache | None = None
        self._services: dict[str, RuntimeServices] = {}
        self._stopped = asyncio.Event()

    # -------------------------------------------------------------------------- life

    async def start(self) -> None:
        config = self.config
        try:
            self.store = SqliteStore(config.database)
        except Exception as exc:  # sqlite3.Error, OSError
            raise ConfigError(f"store.path: cannot open {config.database}: {exc}") from None
        self._recover()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None), cookie_jar=aiohttp.DummyCookieJar()
        )
        self._audio = AudioCache(config.data_dir / "audio", session=self._session)
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
        await self._start_http()
        self.accepting = True

    def _recover(self) -> None:
        """After a crash: calls left unfinished are marked failed (no call is ever left live)."""
        assert self.store is not None
        now = time.time()
        for record in self.store.unfinished_calls():
            self.store.update_call(
                record.sid,
                status="failed",
                date_updated=now,
                end_time=record.end_time or now,
                error=record.error or "the engine stopped during the call",
            )
            log.warning("call %s was unfinished at start; marked failed", record.sid)

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
                on_incoming=self._incoming,
                authenticator=DomainAuthenticator(config),
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
            secure = "secure media required" if domain.secure_media else "plain RTP"
            access = ", digest authentication" if domain.credentials else ""
            self.echo(f"SIP: domain {domain.name} -> {domain.voice_url} ({secure}{access})")

    async def _start_http(self) -> None:
        from callxml.engine.control import EngineControl

        config = self.config
        assert self.store is not None
        app = build_app(config, self.store, EngineControl(self))
        self._http = web.AppRunner(app, access_log=None)
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
        grace = self.config.shutdown_grace
        live = [c for c in self.calls.values() if not c.ended.is_set()]
        if live:
            self.echo(f"stopping: waiting up to {grace:g} s for {len(live)} call(s)")
            await self._wait_calls(grace)
        for call in list(self.calls.values()):
            if call.dialing is not None:
                call.dialing.cancel()
            if call.runner is not None:
                call.runner.end("completed")
        await self._wait_calls(DRAIN_AFTER_HANGUP)
        for call in list(self.calls.values()):
            if call.task is not None:
                call.task.cancel()
        await self._wait_calls(2.0)
        if self._http is not None:
            await self._http.cleanup()
        for callbacks in self._callbacks.values():
            await callbacks.close()
        if self.phone is not None:
            await self.phone.close()
        for fetcher in self._fetchers.values():
            await fetcher.close()
        if self._session is not None:
            await self._session.close()
        if self.store is not None:
            self.store.close()

    async def _wait_calls(self, timeout: float) -> None:
        waits = [asyncio.ensure_future(c.ended.wait()) for c in self.calls.values()]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for waiter in pending:
                waiter.cancel()

    # -------------------------------------------------------------------------- calls

    def services(self, account: AccountConfig) -> RuntimeServices:
        """The runtime services for calls of ``account`` (its signed webhook client)."""
        services = self._services.get(account.sid)
        if services is None:
            assert self._audio is not None and self.phone is not None
            services = RuntimeServices(
                fetcher=self._fetchers[account.sid],
                audio=self._audio,
                recordings_dir=self.config.data_dir / "recordings",
            )
            self._services[account.sid] = services
        return services

    def book(self, record: CallRecord, target: CallbackTarget | None) -> CallBook:
        return CallBook(
            self.store_or_fail(),
            self._callbacks.get(record.account_sid),
            target,
            record,
            self.config.base_url,
        )

    def store_or_fail(self) -> Store:
        if self.store is None:
            raise CallXmlError("the engine is not started")
        return self.store

    def dialer(self, book: CallBook) -> Dialer:
        assert self.phone is not None
        return Dialer(
            self.phone,
            bridge,
            trunk_uri_template=self.config.trunk_uri_template,
            children=book,
            event=book.event,
        )

    async def run_call(
        self,
        live: LiveCall,
        leg: CallLeg,
        session: CallSession,
        *,
        inline_document: bytes | None = None,
    ) -> str:
        """Drive ``session`` on ``leg`` to its end; the record follows every change."""
        book = live.book
        services = self.services(live.account)
        call_services = RuntimeServices(
            fetcher=services.fetcher,
            audio=services.audio,
            dial=self.dialer(book),
            recordings_dir=services.recordings_dir,
        )
        runner = CallRunner(session, leg, call_services, book, inline_document=inline_document)
        live.runner = runner
        return await runner.run()

    def _register(self, live: LiveCall) -> None:
        self.calls[live.book.sid] = live

    def _forget(self, live: LiveCall) -> None:
        live.ended.set()
        self.calls.pop(live.book.sid, None)

    # -------------------------------------------------------------------------- inbound

    async def _incoming(self, incoming: IncomingCall) -> None:
        """Route an INVITE: domain, source check, secure-media policy, then the webhook flow."""
        if not self.accepting:
            await incoming.reject(503, "Service Unavailable", warning="the engine is stopping")
            return
        domain = self.config.domain(incoming.domain)
        if domain is None:
            await incoming.reject(404, "Not Found", warning=f"no SIP domain {incoming.domain!r}")
            return
        # With credentials too, the user agent has already let in only a listed address or valid
        # digest credentials (DomainAuthenticator); without, the address decides alone.
        if (
            domain.allowed_ips
            and not domain.credentials
            and not _admitted_by_address(domain, incoming.source[0])
        ):
            await incoming.reject(403, "Forbidden", warning="source address not allowed")
            return
        account = self.config.account(domain.account_sid)
        if account is None:  # config validation makes this impossible
            await incoming.reject(500, "Server Internal Error")
            return
        sid = new_sid("CA")
        now = time.time()
        record = CallRecord(
            sid=sid,
            account_sid=account.sid,
            direction="inbound",
            from_=incoming.from_uri,
            to=incoming.to_uri,
            status="ringing",
            date_created=now,
            date_updated=now,
            sip_call_id=incoming.sip_call_id,
        )
        target = (
            CallbackTarget(
                domain.status_callback, domain.status_callback_method, ALL_CALLBACK_EVENTS
            )
            if domain.status_callback
            else None
        )
        live = LiveCall(self.book(record, target), account)
        await live.book.create()
        self._register(live)
        try:
            await self._run_inbound(live, domain, incoming)
        finally:
            self._forget(live)

    async def _run_inbound(
        self, live: LiveCall, domain: DomainConfig, incoming: IncomingCall
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
                "admitted_by": _admitted_by(domain, incoming.source[0]),
            },
        )
        try:
            leg = await incoming.accept(
                secure_media_enabled=domain.secure_media, answer=False, sid=book.sid
            )
        except MediaError as exc:  # 488 already sent, with a Warning saying why
            reason = getattr(exc, "reason", str(exc))
            await book.event("sip", {"message": f"488 Not Acceptable Here: {reason}"})
            await book.status("failed", sip_response_code=488, end_time=time.time(), error=reason)
            return
        except CallXmlError as exc:  # the caller gave up, or the INVITE is unusable
            await book.event("warning", {"message": f"call not accepted: {exc}"})
            await book.status("canceled", end_time=time.time(), error=str(exc))
            return
        with contextlib.suppress(CallXmlError):
            await incoming.ring()
        extra: list[tuple[str, str]] = [
            ("SipCallId", incoming.sip_call_id),
            ("SipDomain", domain.name),
            ("SipTransport", incoming.transport),
        ]
        extra += [(f"SipHeader_{name}", value) for name, value in incoming.headers]
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
        )
        live.task = asyncio.current_task()
        await self.run_call(live, leg, session)


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
