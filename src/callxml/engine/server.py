"""The hosted engine: everything ``callxml serve`` runs, started and stopped in the right order.

Owns the engine's life: the store (and, at start, marking calls a crash left unfinished as
failed), the development TLS certificate, the :class:`~callxml.runtime.leg.Phone` with its SIP
listeners, the REST API, status callbacks, and the calls themselves: inbound routing (unknown
domain → 404, source address check → 403, digest authentication for domains with credentials →
401/403, the domain's secure-media policy → 488, then the domain's webhook flow), originated
calls (:meth:`Engine.originate`: dial, then the flow on the answered call), and the bookkeeping
of every live call (:mod:`callxml.engine.calls`), so the API can redirect or end it and SIGTERM
can drain it (stop accepting, let calls finish within ``shutdown_grace``, then BYE).

SIP, SDP and media rules live in :mod:`callxml.runtime`; call flow rules in
:mod:`callxml.interpreter`; HTTP in :mod:`callxml.engine.api`, reached through the adapter in
:mod:`callxml.engine.control`. This module only wires them to configuration and records.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from callxml.audio import AudioCache
from callxml.engine.api import OutboundCall, build_app, recording_uri
from callxml.engine.callbacks import CallbackTarget, StatusCallbacks, callback_target
from callxml.engine.calls import (
    CallBook,
    EngineStopping,
    InvalidTarget,
    LiveCall,
    new_call_record,
)
from callxml.engine.config import AccountConfig, DomainConfig, EngineConfig
from callxml.engine.control import EngineControl
from callxml.engine.devcert import ensure_dev_certificate
from callxml.engine.store import TERMINAL_STATUSES, CallRecord, SqliteStore, Store
from callxml.engine.zrtpcache import StoreZrtpCache
from callxml.errors import CallXmlError, ConfigError, MediaError, TransportError
from callxml.interpreter import CallInfo, CallSession
from callxml.markup.verbs import Number, Sip
from callxml.media.zrtp import ZrtpResult
from callxml.runtime import CallLeg, DialResult, IncomingCall, Phone, bridge
from callxml.runtime.dial import Dialer, resolve_targets
from callxml.runtime.session import CallRunner, RuntimeServices
from callxml.sip.aio.resolver import DnsResolver
from callxml.sip.aio.tls import TlsConfig
from callxml.sip.aio.transport import ListenerConfig
from callxml.sip.auth import Credentials, DigestServer
from callxml.sip.events import Address
from callxml.sip.message import SipRequest
from callxml.sip.target import Target
from callxml.sip.uri import parse_uri
from callxml.webhooks import WebhookClient

__all__ = ["ALL_CALLBACK_EVENTS", "DomainAuthenticator", "Engine", "dial_target"]

log = logging.getLogger(__name__)

ALL_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
#: Digest challenges a domain sends, one WWW-Authenticate each, in this order. MD5 comes first
#: because many phones (and SIPp) answer only the first challenge and know only MD5; clients that
#: follow RFC 8760 §2.4 pick SHA-256 themselves. Accepting MD5 at all is what bounds the
#: strength, not the order.
DOMAIN_DIGEST_ALGORITHMS = ("MD5", "SHA-256")
#: After the grace period, how long hung-up calls get to post their last requests.
DRAIN_AFTER_HANGUP = 5.0
#: What ends :meth:`Engine.serve`.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The document URL an inline ``Twiml`` call runs under (relative URLs in it cannot resolve).
TWIML_URL = "http://twiml.callxml.invalid/inline"


def dial_target(to: str, trunk_uri_template: str | None) -> Target:
    """What to call for ``to``: a SIP URI as written (transport, media policy and X- headers
    worked out once), or a number through the trunk template.

    Raises :class:`InvalidTarget` for a SIP URI that does not parse, or a number when no
    trunk is configured.
    """
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
        self.accepting = False
        self.http_port = config.http_port
        self._calls: dict[str, LiveCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # originated calls (tasks are weakly held)
        self._http: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._fetchers: dict[str, WebhookClient] = {}
        self._callbacks: dict[str, StatusCallbacks] = {}
        self._audio: AudioCache | None = None
        self._services: dict[str, RuntimeServices] = {}
        self._stopped = asyncio.Event()

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
                resolver=DnsResolver(config.dns_servers) if config.dns_servers else None,
                failover_timeout=config.failover_timeout,
                zrtp_cache=StoreZrtpCache(self.store) if self.store is not None else None,
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
            access = ", digest authentication" if domain.credentials else ""
            self.echo(f"SIP: domain {domain.name} -> {domain.voice_url} ({secure}{access})")

    async def _start_http(self) -> None:
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

    def forget(self, live: LiveCall) -> None:
        """The engine is done with ``live``: ``live.ended`` is set, :meth:`live` returns None."""
        live.ended.set()
        self._calls.pop(live.sid, None)

    def store_or_fail(self) -> Store:
        if self.store is None:
            raise CallXmlError("the engine is not started")
        return self.store

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
        record = new_call_record(
            account_sid=account.sid,
            direction="outbound-api",
            from_=call.from_,
            to=call.to,
            status="queued",
        )
        target = callback_target(
            call.status_callback, call.status_callback_method, call.status_callback_event
        )
        live = await self._new_call(account, record, target)
        task = live.start(self._originate(live, call, to))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return live.record

    async def _new_call(
        self, account: AccountConfig, record: CallRecord, target: CallbackTarget | None
    ) -> LiveCall:
        """Write a new call's record (and its first status callback) and track it as live."""
        live = LiveCall(self._book(record, target), account)
        await live.book.create()
        self.register(live)
        return live

    def _runtime_services(self, account: AccountConfig) -> RuntimeServices:
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

    def _book(self, record: CallRecord, target: CallbackTarget | None) -> CallBook:
        account, base = record.account_sid, self.config.base_url
        return CallBook(
            self.store_or_fail(),
            self._callbacks.get(account),
            target,
            record,
            lambda sid: base + recording_uri(account, sid),
        )

    def _dialer(self, book: CallBook) -> Dialer:
        assert self.phone is not None
        return Dialer(
            self.phone,
            bridge,
            trunk_uri_template=self.config.trunk_uri_template,
            children=book,
            event=book.event,
        )

    async def _run_call(
        self,
        live: LiveCall,
        leg: CallLeg,
        session: CallSession,
        *,
        inline_document: bytes | None = None,
    ) -> str:
        """Drive ``session`` on ``leg`` to its end; the record follows every change."""
        book = live.book
        services = self._runtime_services(live.account)
        call_services = RuntimeServices(
            fetcher=services.fetcher,
            audio=services.audio,
            dial=self._dialer(book),
            recordings_dir=services.recordings_dir,
        )
        runner = CallRunner(session, leg, call_services, book, inline_document=inline_document)
        return await live.run(runner)

    # -------------------------------------------------------------------------- outbound

    async def _originate(
        self,
        live: LiveCall,
        call: OutboundCall,
        to: Target,
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
                    "message": f"dial {to}: {result.status}",
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
            await self._run_call(live, leg, _answered_session(live, call), inline_document=inline)
        except CallXmlError as exc:
            await book.event("error", {"message": str(exc)})
            await book.status("failed", end_time=time.time(), error=str(exc))
        finally:
            self.forget(live)

    async def _ring(
        self,
        live: LiveCall,
        call: OutboundCall,
        to: Target,
    ) -> DialResult | None:
        """Dial ``to`` until answer, failure or ring timeout; the record shows ``ringing``.

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

        dialing = self.phone.dial(
            to,
            from_uri=call.from_ if call.from_.startswith(("sip:", "sips:")) else None,
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
        record = new_call_record(
            account_sid=account.sid,
            direction="inbound",
            from_=incoming.from_uri,
            to=incoming.to_uri,
            status="ringing",
            sip_call_id=incoming.sip_call_id,
        )
        target = callback_target(
            domain.status_callback, domain.status_callback_method, ALL_CALLBACK_EVENTS
        )
        live = await self._new_call(account, record, target)
        try:
            await self._run_inbound(live, domain, incoming)
        finally:
            self.forget(live)

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
                secure_media_enabled=domain.secure_media,
                srtp_suites=domain.srtp_suites,
                zrtp=domain.media_encryption in ("zrtp", "sdes-or-zrtp"),
                answer=False,
                sid=book.sid,
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
        extra: list[tuple[str, str]] = [
            ("SipCallId", incoming.sip_call_id),
            ("SipDomain", domain.name),
            ("SipTransport", incoming.transport),
        ]
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


def _answered_session(live: LiveCall, call: OutboundCall) -> CallSession:
    """The flow of an originated call, started once the callee has answered."""
    info = CallInfo(
        call_sid=live.sid,
        account_sid=live.account.sid,
        from_=call.from_,
        to=call.to,
        direction="outbound-api",
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
