"""The user agent the runtime uses: the pure :class:`UserAgentCore` driven on real sockets.

This module owns the asyncio skin around :mod:`callxml.sip.ua`: it opens the configured
listeners, feeds every message the :class:`TransportLayer` accepts to the core with
``now = loop.time()``, arms one ``loop.call_at`` for the core's next timer, sends what the core
queues (one ordered lane per destination, so a slow TLS connect to one peer never delays
another), reports send failures back (``transport_error``, RFC 3261 §17.1.4), and turns core
events into per-call handles:

* :class:`UacCall` — from :meth:`UserAgent.invite`: provisional responses, the final
  result (:class:`CallResult`), the dialog; ``cancel()`` / ``bye()``;
* :class:`UasCall` — given to the incoming-call callback: the INVITE, the transport it
  arrived over and the peer address; ``ring()`` / ``accept(sdp)`` / ``reject(status, reason,
  warning=...)`` / ``bye()``;
* :class:`RegisterRequest` — given to the ``on_register`` callback (a registrar): the REGISTER,
  where it came from and the user its credentials proved; ``respond(status, headers)``.

:meth:`UserAgent.request` sends an out-of-dialog request the caller owns (a REGISTER of
:mod:`callxml.sip.register`) and returns its final response; :meth:`UserAgent.keepalive` pings
a connection we opened (RFC 5626 §4.4.1).

Both handles modify an established session with ``reinvite(sdp)`` / ``update(sdp)`` (answers
come back through ``on_reoffer_answered`` / ``on_reoffer_failed``) and answer the peer's
re-INVITEs and UPDATEs with the answerer installed by ``set_answerer`` (then ``on_reinvite``).

SIP rules live in the core; this module only decides *when* (the clock) and *how* (sockets).
SDP bodies are opaque bytes here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from callxml.errors import ConfigError, LocalProtocolError, TransportError
from callxml.sip.aio.resolver import HostResolver
from callxml.sip.aio.tls import TlsConfig
from callxml.sip.aio.transport import ListenerConfig, TransportLayer, TransportLimits, label
from callxml.sip.auth import Credentials, DigestServer
from callxml.sip.dialog import Dialog
from callxml.sip.events import (
    Address,
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallFailed,
    CallProgress,
    CallReinvited,
    DialogConfirmed,
    Event,
    InviteReceived,
    RegisterReceived,
    ReofferAnswered,
    ReofferFailed,
    ResponseReceived,
    TransactionKey,
    TransactionTimedOut,
    TransportErrorOccurred,
)
from callxml.sip.headers import warning_value
from callxml.sip.message import SipMessage, SipRequest, SipResponse
from callxml.sip.session_timer import DEFAULT_SESSION_TIMER, SessionTimerConfig
from callxml.sip.timers import DEFAULT_TIMERS, TimerConfig
from callxml.sip.triage import Gate, SourceAdmitter
from callxml.sip.ua import (
    Admitter,
    Answerer,
    AuthenticatorSelector,
    Call,
    UserAgentConfig,
    UserAgentCore,
)

__all__ = [
    "CallResult",
    "InviteHandler",
    "RegisterHandler",
    "RegisterRequest",
    "UacCall",
    "UasCall",
    "UserAgent",
    "warning_value",
]

logger = logging.getLogger(__name__)

#: After the timer handler itself failed, how long before it runs again (never a busy loop).
TIMER_FAULT_BACKOFF = 0.05


@dataclass(frozen=True)
class CallResult:
    """How an outgoing INVITE ended: ``status`` 2xx when answered. ``response`` is None for
    local failures (408 timeout, 503 transport error)."""

    status: int
    reason: str
    response: SipResponse | None = None
    detail: str = ""  # for local failures: the transport error (e.g. the TLS check that failed)

    @property
    def answered(self) -> bool:
        return 200 <= self.status < 300


class _Handle:
    """What both call handles share: the core call id, the UA, and the end of the call."""

    def __init__(self, ua: UserAgent, call_id: str) -> None:
        self._ua = ua
        self.id = call_id
        self._ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        #: Told of each re-INVITE or UPDATE the peer sent and the core answered (hold, unhold,
        #: new media, a refresh), after the 2xx was queued.
        self.on_reinvite: Callable[[SipRequest], None] | None = None
        #: Told of the peer's answer ``(sdp, method)`` to our re-INVITE or UPDATE (``sdp`` empty
        #: for a refresh without a body), or to the offer in our 2xx to its offer-less re-INVITE.
        self.on_reoffer_answered: Callable[[bytes, str], None] | None = None
        #: Told when our re-INVITE or UPDATE failed ``(status, method)``: the session is unchanged.
        self.on_reoffer_failed: Callable[[int, str], None] | None = None

    @property
    def dialog(self) -> Dialog | None:
        """The dialog once established (§12), for the runtime to read; None before/without."""
        call = self._ua._core_call(self.id)
        return call.dialog if call is not None else None

    @property
    def ended(self) -> bool:
        return self._ended.done()

    async def wait_ended(self, timeout: float | None = None) -> str:
        """Wait until the call is over; returns the reason (``BYE``, ``local BYE``...)."""
        return await asyncio.wait_for(asyncio.shield(self._ended), timeout)

    def bye(self) -> None:
        """Hang up an established call (BYE, §15.1.1)."""
        self._ua._verb(lambda core, now: core.bye(self.id, now))

    def hangup(self) -> None:
        """End the call whatever its state: BYE, CANCEL, or 480 for an unanswered one."""
        self._ua._verb(lambda core, now: core.hangup(self.id, now))

    def reinvite(self, sdp: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
        """Send a re-INVITE with a new offer on the established call (hold, resume; §14.1)."""
        self._ua._verb(lambda core, now: core.reinvite(self.id, sdp, now, headers=headers))

    def update(self, sdp: bytes = b"", headers: Sequence[tuple[str, str]] = ()) -> None:
        """Send an UPDATE (RFC 3311): a new offer ``sdp``, or a refresh without one."""
        self._ua._verb(lambda core, now: core.update(self.id, now, sdp=sdp, headers=headers))

    def set_answerer(self, answerer: Answerer | None) -> None:
        """Answer the peer's re-INVITEs and UPDATEs with ``answerer`` (see
        :data:`~callxml.sip.ua.Answerer`): called synchronously with the offer and our current
        SDP; it returns the answer or raises :class:`~callxml.sip.ua.OfferRefused`."""
        self._ua._verb(lambda core, now: core.set_answerer(self.id, answerer))

    def _end(self, reason: str) -> None:
        if not self._ended.done():
            self._ended.set_result(reason)


class UacCall(_Handle):
    """An INVITE we sent: watch :meth:`updates` or await :meth:`result`.

    ``invite`` is the request as first sent (its Call-ID and From tag stay the dialog's, whatever
    authentication retries follow), so the runtime never has to ask the core for it.
    """

    def __init__(self, ua: UserAgent, call_id: str, invite: SipRequest) -> None:
        super().__init__(ua, call_id)
        self.invite = invite
        self.provisional: list[SipResponse] = []
        self.transport_error = ""  # the last send failure, if any
        self._updates: asyncio.Queue[SipResponse | CallResult] = asyncio.Queue()
        self._result: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()

    @property
    def uri(self) -> str:
        return self.invite.uri

    @property
    def sip_call_id(self) -> str:
        return self.invite.call_id

    @property
    def from_uri(self) -> str:
        return self.invite.from_.uri

    async def result(self, timeout: float | None = None) -> CallResult:
        """The final outcome (RFC 3261 Timer B bounds it; ``timeout`` adds a local bound)."""
        return await asyncio.wait_for(asyncio.shield(self._result), timeout)

    async def updates(self) -> AsyncIterator[SipResponse | CallResult]:
        """Provisional responses as they arrive, then the :class:`CallResult`, then stop."""
        while True:
            item = await self._updates.get()
            yield item
            if isinstance(item, CallResult):
                return

    def cancel(self) -> None:
        """CANCEL the INVITE (§9.1); the result becomes 487 unless a 2xx crossed it."""
        self._ua._verb(lambda core, now: core.cancel(self.id, now))

    def _progress(self, response: SipResponse) -> None:
        self.provisional.append(response)
        self._updates.put_nowait(response)

    def _finish(self, result: CallResult) -> None:
        if not self._result.done():
            self._result.set_result(result)
            self._updates.put_nowait(result)
        if not result.answered:
            self._end(f"{result.status} {result.reason}")


class UasCall(_Handle):
    """An INVITE that arrived outside any dialog. Answer with :meth:`ring`, :meth:`accept` or
    :meth:`reject`. ``transport`` is how it arrived (``udp``/``tcp``/``tls``): the secure-media
    policy requires ``tls``."""

    def __init__(self, ua: UserAgent, call_id: str, request: SipRequest, source: Address) -> None:
        super().__init__(ua, call_id)
        self.request = request
        self.peer = source
        self._confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def transport(self) -> str:
        return self.peer.transport

    @property
    def arrived_over_tls(self) -> bool:
        return self.peer.transport == "tls"

    @property
    def sdp(self) -> bytes:
        return self.request.body

    def ring(self, status: int = 180, sdp: bytes = b"") -> None:
        """A provisional response: 180 Ringing, or 183 with early-media ``sdp``."""
        self._ua._verb(lambda core, now: core.ring(self.id, now, status=status, sdp=sdp))

    def keep_on_flow(self) -> None:
        """The caller is a registered device calling over its flow: our BYE (and any other
        in-dialog request) goes back over that connection (RFC 5626 §5.3)."""
        self._ua._verb(lambda core, now: core.keep_on_flow(self.id))

    def accept(self, sdp: bytes) -> None:
        """200 OK with ``sdp``; retransmitted until the ACK arrives (see :meth:`confirmed`)."""
        self._ua._verb(lambda core, now: core.answer(self.id, sdp, now))

    def reject(
        self,
        status: int,
        reason: str | None = None,
        *,
        warning: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """A final 3xx-6xx (486 Busy Here, 488 Not Acceptable Here, 603 Decline...).

        ``warning`` adds ``Warning: 399 <our host> "<warning>"`` (RFC 3261 §20.43), e.g. why a
        secure-media offer was refused.
        """
        extra = list(headers)
        if warning is not None:
            extra.append(("Warning", warning_value(self._ua.warn_agent(self.transport), warning)))
        self._ua._verb(
            lambda core, now: core.reject(self.id, status, now, reason=reason, headers=extra)
        )

    async def confirmed(self, timeout: float | None = None) -> None:
        """Wait for the ACK to our 2xx (the dialog is then confirmed both ways)."""
        await asyncio.wait_for(asyncio.shield(self._confirmed), timeout)

    def _confirm(self) -> None:
        if not self._confirmed.done():
            self._confirmed.set_result(None)

    def _end(self, reason: str) -> None:
        super()._end(reason)
        if not self._confirmed.done():
            self._confirmed.set_exception(TransportError(f"call ended before the ACK: {reason}"))
            self._confirmed.exception()  # mark retrieved: nobody may be waiting


InviteHandler = Callable[[UasCall], Awaitable[None] | None]


class RegisterRequest:
    """A REGISTER for the registrar (RFC 3261 §10.3): ``request``, ``source`` (the flow it came
    over) and ``auth_user`` (the username its digest credentials proved, None if it was not
    challenged). Answer once with :meth:`respond`."""

    def __init__(
        self,
        ua: UserAgent,
        key: TransactionKey,
        request: SipRequest,
        source: Address,
        user: str | None,
    ) -> None:
        self._ua = ua
        self._key = key
        self.request = request
        self.source = source
        self.auth_user = user
        self.answered = False

    def respond(
        self,
        status: int,
        reason: str | None = None,
        *,
        headers: Sequence[tuple[str, str]] = (),
        warning: str | None = None,
    ) -> None:
        """The final response; ``warning`` adds ``Warning: 399 <our host> "<warning>"``."""
        if self.answered:
            return
        self.answered = True
        extra = list(headers)
        if warning is not None:
            extra.append(
                ("Warning", warning_value(self._ua.warn_agent(self.source.transport), warning))
            )
        self._ua._verb(
            lambda core, now: core.respond(self._key, status, now, reason=reason, headers=extra)
        )


RegisterHandler = Callable[[RegisterRequest], Awaitable[None] | None]


class UserAgent:
    """A SIP user agent on asyncio.

    ::

        async with UserAgent(listeners=[ListenerConfig("udp", "127.0.0.1", 5060)],
                             on_incoming=handle) as ua:
            call = ua.invite("sip:bob@example.com", sdp=offer, credentials=creds)
            result = await call.result()

    Without ``on_incoming``, incoming calls are refused with 480. Every transport used for a
    call needs a listener (its address is our Via and Contact); a listener bound to a wildcard
    address needs ``advertise``. ``session_timer`` configures RFC 4028 session timers (None:
    off).
    """

    def __init__(
        self,
        *,
        listeners: Sequence[ListenerConfig] = (ListenerConfig("udp"),),
        tls: TlsConfig | None = None,
        resolver: HostResolver | None = None,
        limits: TransportLimits | None = None,
        on_incoming: InviteHandler | None = None,
        user: str = "callxml",
        user_agent: str = "callxml",
        timers: TimerConfig = DEFAULT_TIMERS,
        outbound_proxy: str | None = None,
        authenticator: DigestServer | AuthenticatorSelector | None = None,
        answer_reinvite: Answerer | None = None,
        admit: Admitter | None = None,
        admit_source: SourceAdmitter | None = None,
        on_register: RegisterHandler | None = None,
        session_timer: SessionTimerConfig | None = DEFAULT_SESSION_TIMER,
    ) -> None:
        if not listeners:
            raise ConfigError("sip.listeners: at least one listener is needed")
        self._listener_configs = tuple(listeners)
        self._transport = TransportLayer(
            self._on_message, tls=tls, resolver=resolver, limits=limits
        )
        self._on_incoming = on_incoming
        self._core_config = UserAgentConfig(
            local={},
            user=user,
            user_agent=user_agent,
            timers=timers,
            outbound_proxy=outbound_proxy,
            authenticator=authenticator,
            answer_reinvite=answer_reinvite,
            admit=self._admit_parsed if admit is not None else None,
            registrar=on_register is not None,
            session_timer=session_timer,
        )
        self._on_register = on_register
        self._admit = admit
        self._admit_source = admit_source
        self._gate: Gate | None = None
        self._requests: dict[TransactionKey, asyncio.Future[CallResult]] = {}
        self._core: UserAgentCore | None = None
        self._handles: dict[str, UacCall | UasCall] = {}
        self._lanes: dict[tuple[str, ...], deque[tuple[SipMessage, Address]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._local: dict[str, Address] = {}
        self.faults = 0
        self._timer_floor = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open every listener and start the core."""
        try:
            for config in self._listener_configs:
                bound = await self._transport.listen(config)
                host, port = self._transport.local_address(bound.transport, bound.host)
                if host in ("0.0.0.0", "::"):
                    raise ConfigError(
                        f"sip.listeners: {label(bound)} is a wildcard bind; set advertise"
                    )
                self._local.setdefault(bound.transport, Address(bound.transport, host, port))
        except BaseException:
            await self._transport.close()
            raise
        self._core = UserAgentCore(dataclasses.replace(self._core_config, local=dict(self._local)))
        if self._admit_source is not None and self._local:
            self._gate = Gate(self._admit_source, self.warn_agent("udp"))
            self._transport.gate = self._gate

    def _admit_parsed(
        self, request: SipRequest, source: Address, now: float
    ) -> tuple[str, int] | None:
        """The core's admission of a new INVITE: skipped for one the transport's gate already
        admitted before parsing (it must be counted once), else the configured admitter."""
        if self._gate is not None and self._gate.admitted(request.vias[0].branch, source):
            return None
        assert self._admit is not None
        return self._admit(request, source, now)

    async def close(self) -> None:
        """Stop timers and tasks, give queued messages a moment, close every socket."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lanes = [t for t in self._tasks if t.get_name().startswith("sip-lane")]
        if lanes:
            await asyncio.wait(lanes, timeout=1.0)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        await self._transport.close()
        self._core = None

    async def __aenter__(self) -> UserAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def listeners(self) -> list[Address]:
        """The bound listener addresses (ports filled in)."""
        return self._transport.listeners

    def local(self, transport: str) -> Address:
        """Our advertised address for ``transport`` (Via sent-by and Contact host)."""
        try:
            return self._local[transport]
        except KeyError:
            raise ConfigError(f"sip.listeners: no {transport} listener") from None

    def warn_agent(self, transport: str) -> str:
        """The warn-agent of our Warning headers (§20.43): our host:port."""
        local = self._local.get(transport) or next(iter(self._local.values()))
        host = f"[{local.host}]" if ":" in local.host else local.host
        return f"{host}:{local.port}"

    # -- the verbs ---------------------------------------------------------------------------

    def invite(
        self,
        target: str,
        *,
        sdp: bytes = b"",
        credentials: Credentials | None = None,
        headers: Sequence[tuple[str, str]] = (),
        from_uri: str | None = None,
        display_name: str | None = None,
        destination: Address | None = None,
    ) -> UacCall:
        """Send an INVITE to ``target`` (sip:/sips:) offering ``sdp``: the core's
        :meth:`~callxml.sip.ua.UserAgentCore.invite` with the loop's clock as ``now``.

        Provisional responses, the final response and the dialog are reported on the returned
        :class:`UacCall`. ``credentials`` answer 401/407 challenges. ``destination``
        overrides where the INVITE goes (else the outbound proxy, else the URI's host and port).
        """
        core = self._require_core()
        now = asyncio.get_running_loop().time()
        call = core.invite(
            target,
            now,
            sdp=sdp,
            credentials=credentials,
            headers=headers,
            from_uri=from_uri,
            display_name=display_name,
            destination=destination,
        )
        handle = UacCall(self, call.id, call.invite)
        self._handles[call.id] = handle
        self._pump()
        return handle

    async def request(self, request: SipRequest, destination: Address) -> CallResult:
        """Send ``request`` (out of any dialog, not an INVITE: a REGISTER) to ``destination`` in
        a client transaction of its own and return its final response; a timeout (Timer F) is a
        local 408, a transport failure a local 503 whose ``detail`` says why."""
        core = self._require_core()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CallResult] = loop.create_future()
        key = core.send_request(request, destination, loop.time())
        self._requests[key] = future
        self._pump()
        try:
            return await asyncio.shield(future)
        finally:
            self._requests.pop(key, None)

    async def keepalive(self, destination: Address, timeout: float = 10.0) -> None:
        """Ping the connection to ``destination`` (CRLFCRLF) and wait for its pong (RFC 5626
        §4.4.1); raises TransportError when the connection is gone or silent."""
        await self._transport.ping(destination, timeout)

    def _verb(self, action: Callable[[UserAgentCore, float], None]) -> None:
        action(self._require_core(), asyncio.get_running_loop().time())
        self._pump()

    def _require_core(self) -> UserAgentCore:
        if self._core is None:
            raise LocalProtocolError("the user agent is not started")
        return self._core

    def _core_call(self, call_id: str) -> Call | None:
        if self._core is None:
            return None
        return self._core.calls.get(call_id)

    # -- the engine --------------------------------------------------------------------------

    # Every method below that asyncio calls (a message, the timer, a lane) is an entry point:
    # an exception escaping it would be lost in the loop's handler and, for the timer, leave it
    # unarmed (every retransmission and timeout in the engine would stop). Each one logs the
    # fault and always pumps, which re-arms the timer; the core ends whatever the fault hit.

    def _on_message(self, message: SipMessage, source: Address) -> None:
        if self._core is None:
            return
        try:
            self._core.receive(message, source, asyncio.get_running_loop().time())
        except Exception:
            self._fault("a message from " + label(source))
        finally:
            self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._core is None:
            return
        loop = asyncio.get_running_loop()
        try:
            self._core.handle_timer(loop.time())
        except Exception:
            self._fault("the SIP timer")
            self._timer_floor = loop.time() + TIMER_FAULT_BACKOFF  # no busy loop on a bad timer
        finally:
            self._pump()

    def _fault(self, where: str) -> None:
        self.faults += 1
        logger.exception("SIP user agent fault handling %s", where)

    @property
    def counters(self) -> dict[str, int]:
        """Refusals, drops and contained faults of the transport and the core, by kind
        (``transport.bad_message``, ``core.bad_request``, ``core.dropped``, ``faults``...)."""
        out = {f"transport.{k}": v for k, v in self._transport.counters.items()}
        if self._core is not None:
            out.update({f"core.{k}": v for k, v in self._core.counters.items()})
        if self._gate is not None:
            # The gate's refusals are the core's stateless 503s made cheaper, and the refusal
            # ACKs it drops are what the core would have counted as stray: same names.
            gate = self._gate.counters
            out.update({f"triage.{k}": v for k, v in gate.items()})
            refused = gate["refused"] + gate["replayed"]
            out["core.refused"] = out.get("core.refused", 0) + refused
            out["core.stray"] = out.get("core.stray", 0) + gate["acks"]
        out["faults"] = self.faults + out.get("transport.fault", 0) + out.get("core.fault", 0)
        return out

    @property
    def transactions(self) -> dict[tuple[str, str], int]:
        """SIP transactions started, by ``(side, method)`` (metrics)."""
        return dict(self._core.transactions) if self._core is not None else {}

    def _pump(self) -> None:
        """Send what the core queued, dispatch its events, re-arm the timer."""
        core = self._core
        if core is None:
            return
        try:
            for message, address in core.outgoing():
                self._enqueue(message, address)
            for event in core.events():
                try:
                    self._dispatch(event)
                except Exception:  # an application bug must not stop the stack
                    self._fault(type(event).__name__)
            deadline = core.next_timer()
        except Exception:
            self._fault("the core's output")
            deadline = core.next_timer()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = deadline
            if deadline is not None:
                at = max(deadline, self._timer_floor)
                self._timer = asyncio.get_running_loop().call_at(at, self._on_timer)

    def _dispatch(self, event: Event) -> None:
        match event:
            case InviteReceived(call=call_id, request=request, source=source):
                inbound = UasCall(self, call_id, request, source)
                self._handles[call_id] = inbound
                self._offer(inbound)
            case CallProgress(call=call_id, response=response):
                handle = self._handles.get(call_id)
                if isinstance(handle, UacCall):
                    handle._progress(response)
            case CallAnswered(call=call_id, response=response):
                handle = self._handles.get(call_id)
                if isinstance(handle, UacCall):
                    handle._finish(CallResult(response.status, response.reason, response))
            case CallFailed(call=call_id, status=status, reason=reason, response=response):
                handle = self._handles.pop(call_id, None)
                if isinstance(handle, UacCall):
                    detail = handle.transport_error if response is None else ""
                    handle._finish(CallResult(status, reason, response, detail))
            case DialogConfirmed(call=call_id):
                handle = self._handles.get(call_id)
                if isinstance(handle, UasCall):
                    handle._confirm()
            case CallReinvited(call=call_id, request=request):
                handle = self._handles.get(call_id)
                if handle is not None and handle.on_reinvite is not None:
                    handle.on_reinvite(request)
            case ReofferAnswered(call=call_id, sdp=sdp, method=method):
                handle = self._handles.get(call_id)
                if handle is not None and handle.on_reoffer_answered is not None:
                    handle.on_reoffer_answered(sdp, method)
            case ReofferFailed(call=call_id, status=status, method=method):
                handle = self._handles.get(call_id)
                if handle is not None and handle.on_reoffer_failed is not None:
                    handle.on_reoffer_failed(status, method)
            case CallCancelled(call=call_id):
                handle = self._handles.pop(call_id, None)
                if handle is not None:
                    handle._end("CANCEL")
            case CallEnded(call=call_id, reason=reason):
                handle = self._handles.pop(call_id, None)
                if handle is not None:
                    handle._end(reason or "ended")
            case RegisterReceived(key=key, request=request, source=source, auth_user=user):
                self._offer_register(RegisterRequest(self, key, request, source, user))
            case ResponseReceived(key=key, response=response):
                self._settle(key, CallResult(response.status, response.reason, response))
            case TransactionTimedOut(key=key):
                self._settle(key, CallResult(408, "Request Timeout", None, "no response"))
            case TransportErrorOccurred(key=key, reason=reason):
                self._settle(key, CallResult(503, "Service Unavailable", None, reason))
            case _:
                pass

    def _settle(self, key: TransactionKey, result: CallResult) -> None:
        future = self._requests.get(key)
        if future is not None and not future.done():
            future.set_result(result)

    def _offer_register(self, register: RegisterRequest) -> None:
        if self._on_register is None:
            register.respond(405)
            return
        try:
            result = self._on_register(register)
        except Exception:
            logger.exception("registrar failed on a REGISTER from %s", label(register.source))
            register.respond(500, "Server Internal Error")
            return
        if inspect.isawaitable(result):
            self._spawn(self._run_register(register, result), "sip-register")
        elif not register.answered:
            register.respond(500, "Server Internal Error")

    async def _run_register(self, register: RegisterRequest, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            logger.exception("registrar failed on a REGISTER from %s", label(register.source))
        finally:
            if not register.answered:
                with contextlib.suppress(LocalProtocolError):
                    register.respond(500, "Server Internal Error")

    def _offer(self, inbound: UasCall) -> None:
        if self._on_incoming is None:
            inbound.reject(480, "No Handler")
            return
        result = self._on_incoming(inbound)
        if inspect.isawaitable(result):
            self._spawn(self._run_handler(inbound, result), "sip-incoming")

    async def _run_handler(self, inbound: UasCall, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            logger.exception("incoming-call handler failed for %s", inbound.id)
            with contextlib.suppress(LocalProtocolError):
                inbound.reject(500, "Server Internal Error")

    def _spawn(self, work: Awaitable[None], name: str) -> None:
        async def run() -> None:
            await work

        task = asyncio.get_running_loop().create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enqueue(self, message: SipMessage, address: Address) -> None:
        # Requests: one lane per destination. Responses are routed by the transport from their
        # Via (§18.2.2) over the transport they arrived on (``address`` is where the request
        # came from), usually an open connection: one shared lane keeps them in order.
        if isinstance(message, SipRequest):
            key: tuple[str, ...] = (address.transport, address.host, str(address.port))
        else:
            key = ("responses",)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = deque()
            self._spawn(self._drain(key, lane), f"sip-lane {' '.join(key)}")
        lane.append((message, address))

    def _note_error(self, message: SipMessage, error: str) -> None:
        """Keep a send failure's text on the outgoing call it belongs to (for CallResult)."""
        try:
            call_id = message.call_id
        except Exception:
            return
        for handle in self._handles.values():
            if isinstance(handle, UacCall) and handle.sip_call_id == call_id:
                handle.transport_error = error

    async def _drain(self, key: tuple[str, ...], lane: deque[tuple[SipMessage, Address]]) -> None:
        try:
            while lane:
                message, address = lane.popleft()
                try:
                    if isinstance(message, SipRequest):
                        await self._transport.send_request(message, address)
                    else:  # back over the transport the request arrived on (§18.2.2)
                        await self._transport.send_response(message, address)
                except TransportError as exc:
                    logger.info("send to %s failed: %s", label(address), exc)
                    self._note_error(message, str(exc))
                    if self._core is not None:
                        now = asyncio.get_running_loop().time()
                        self._core.transport_error(message, now, str(exc))
                        self._pump()
                except Exception:  # one unsendable message must not silence the lane
                    self._fault(f"sending to {label(address)}")
        finally:
            if self._lanes.get(key) is lane:
                del self._lanes[key]
