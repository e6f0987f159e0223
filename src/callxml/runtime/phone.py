"""The phone: a SIP user agent with media settings that dials call legs and receives them.

This module owns placing a call — :meth:`Phone.dial` from a :class:`~callxml.sip.target.Target`
(worked out once from the URI: transport, next hop, media policy, headers) to a
:class:`DialResult` — and handing incoming INVITEs over as
:class:`~callxml.runtime.incoming.IncomingCall`. Outbound it applies the secure-media rules of
``docs/sdp.md``: a secure target goes over TLS (5061 unless the URI names a port) with an
``RTP/SAVP`` offer of exactly one ``AES_CM_128_HMAC_SHA1_80`` line
(:func:`~callxml.sdp.build_offer`); an answer that breaks the policy
(:func:`~callxml.sdp.check_answer`) ends the call with ACK + BYE and ``status="failed"`` whose
``reason`` says why (RFC 4568 §7.5: the offerer may end a session it cannot secure).

Early media: with ``on_early_media``, a 180/183 carrying the far end's SDP answer (RFC 3960;
reliable, with PRACK, when it asks for 100rel) makes the :class:`CallLeg` at once, in early
media (receiving only); the callback gets it, and the same leg is the answered one later.

It never raises for the far end's behaviour — every outcome is a :class:`DialResult` — and
knows nothing of verbs, webhooks or documents. Used by ``callxml call`` and by the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from callxml.errors import (
    CallXmlError,
    ConfigError,
    LocalProtocolError,
    MediaError,
    RemoteProtocolError,
    SecureMediaError,
    TransportError,
)
from callxml.media.stream import RtpEndpoint, RtpStats, add_stats
from callxml.media.zrtp import MemoryZrtpCache, ZrtpCache
from callxml.runtime.incoming import IncomingCall
from callxml.runtime.leg import CallLeg, MediaSettings
from callxml.runtime.zrtpkeying import ZrtpKeying
from callxml.sdp import NegotiatedMedia, Offer, build_offer, check_answer
from callxml.sdp.policy import INBOUND_SUITES, check_suites
from callxml.sip.aio.resolver import HostResolver, SystemResolver, locate
from callxml.sip.aio.tls import TlsConfig
from callxml.sip.aio.transport import ListenerConfig, TransportLimits, label
from callxml.sip.aio.useragent import CallResult, RegisterHandler, UacCall, UasCall, UserAgent
from callxml.sip.auth import Credentials, DigestServer
from callxml.sip.events import Address
from callxml.sip.message import SipResponse
from callxml.sip.session_timer import DEFAULT_SESSION_TIMER, SessionTimerConfig
from callxml.sip.target import Target
from callxml.sip.ua import Admitter, AuthenticatorSelector

__all__ = [
    "CANCEL_GRACE",
    "FAILOVER_TIMEOUT",
    "DialResult",
    "IncomingHandler",
    "Phone",
    "dial_status",
]

log = logging.getLogger(__name__)

#: After our CANCEL, wait this long for the 487 before reporting the dial as over anyway.
CANCEL_GRACE = 4.0
#: How long a located server may send nothing at all (not even 100 Trying) before the next one
#: is tried (RFC 3263 §4.3); Timer B's 32 s would spend the whole ring budget on one dead host.
FAILOVER_TIMEOUT = 4.0
_BUSY = frozenset({486, 600, 603})  # RFC 3261 §21.4.24, §21.6.1, §21.6.2
_NO_ANSWER = frozenset({408, 480})  # Request Timeout, Temporarily Unavailable


def dial_status(code: int, *, timed_out: bool = False) -> str:
    """The ``DialCallStatus`` for a final SIP response code to our INVITE.

    2xx → ``answered``; 486/600/603 → ``busy``; 408/480, or anything after our own ring
    timeout → ``no-answer``; 487 (we cancelled for another reason) → ``canceled``; the rest
    (404, 488, 503 transport failures...) → ``failed``.
    """
    if 200 <= code < 300:
        return "no-answer" if timed_out else "answered"
    if timed_out or code in _NO_ANSWER:
        return "no-answer"
    if code in _BUSY:
        return "busy"
    if code == 487:
        return "canceled"
    return "failed"


@dataclass(frozen=True)
class DialResult:
    """The outcome of :meth:`Phone.dial`, for ``<Dial action>`` and the call log.

    ``status`` is a ``DialCallStatus`` (:data:`callxml.interpreter.events.DIAL_STATUSES`);
    ``sip_response_code`` the final SIP status (None when nothing came back); ``reason`` a
    human-readable explanation (the secure-media refusal, the TLS error...); ``leg`` is set only
    when ``status`` is ``answered``; ``warnings`` carries the target's warnings, such as
    ``secure=maybe`` treated as false.
    """

    status: str
    sip_response_code: int | None
    sip_call_id: str | None
    reason: str
    leg: CallLeg | None = None
    transport: str | None = None
    warnings: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # the X- headers of the final response


IncomingHandler = Callable[[IncomingCall], Awaitable[None]]


class Phone:
    """The SIP user agent plus media settings: dials legs and hands over incoming calls.

    Start with ``phone = await Phone.start(...)``; :meth:`close` hangs up every leg and closes
    the sockets. Used by ``callxml call`` and by the engine.
    """

    def __init__(
        self,
        ua: UserAgent,
        media: MediaSettings,
        *,
        resolver: HostResolver | None = None,
        failover_timeout: float = FAILOVER_TIMEOUT,
    ) -> None:
        self._ua = ua
        self.media = media
        self._resolver: HostResolver = resolver or SystemResolver()
        self.failover_timeout = failover_timeout
        self._legs: set[CallLeg] = set()
        self._on_incoming: IncomingHandler | None = None
        # RTP counters of the legs already pruned from _legs, so rtp_totals() covers every leg
        # this phone ever had without keeping ended legs (and their endpoints) alive.
        self._retired = RtpStats()

    @classmethod
    async def start(
        cls,
        *,
        listeners: Sequence[ListenerConfig] = (ListenerConfig("udp"),),
        tls: TlsConfig | None = None,
        media_address: str = "127.0.0.1",
        media_port_range: tuple[int, int] | None = None,
        rtp_timeout: float | None = 60.0,
        on_incoming: IncomingHandler | None = None,
        resolver: HostResolver | None = None,
        user: str = "callxml",
        user_agent: str = "callxml",
        authenticator: DigestServer | AuthenticatorSelector | None = None,
        failover_timeout: float = FAILOVER_TIMEOUT,
        limits: TransportLimits | None = None,
        admit: Admitter | None = None,
        zrtp_cache: ZrtpCache | None = None,
        on_register: RegisterHandler | None = None,
        session_timer: SessionTimerConfig | None = DEFAULT_SESSION_TIMER,
    ) -> Phone:
        """Open the SIP listeners (TLS ones need ``tls.cert_file``/``key_file``).

        ``tls`` also sets how outgoing TLS is verified (``ca_file``; ``verify=False`` only for
        labs). Without ``on_incoming`` incoming calls get 480. An answered leg that hears
        nothing from its peer for ``rtp_timeout`` seconds is hung up. ``resolver`` locates servers
        (RFC 3263: NAPTR, SRV, A/AAAA; default the system's); ``failover_timeout`` is how long
        a located server may stay silent before the next one is tried. ``limits`` bounds
        connections (counts and timeouts, see :class:`TransportLimits`); ``admit`` refuses new
        INVITEs under overload, statelessly (see :data:`~callxml.sip.ua.Admitter`).
        ``zrtp_cache`` keeps our ZRTP ZID and the peers' retained secrets (default: in memory,
        for this process).
        ``on_register`` makes it a registrar: it gets every REGISTER, challenged by
        ``authenticator`` like an INVITE (without it REGISTER is answered 405).
        ``session_timer`` is RFC 4028 (refresh every half interval, BYE when the peer stops;
        None: off).
        """
        cache = zrtp_cache if zrtp_cache is not None else MemoryZrtpCache()  # a ZID per phone
        media = MediaSettings(
            media_address, media_port_range, rtp_timeout=rtp_timeout, zrtp_cache=cache
        )
        holder: list[Phone] = []

        async def incoming(inbound: UasCall) -> None:
            await holder[0]._incoming(inbound)

        ua = UserAgent(
            listeners=listeners,
            tls=tls,
            resolver=resolver,
            on_incoming=incoming if on_incoming is not None else None,
            user=user,
            user_agent=user_agent,
            authenticator=authenticator,
            limits=limits,
            admit=admit,
            on_register=on_register,
            session_timer=session_timer,
        )
        phone = cls(ua, media, resolver=resolver, failover_timeout=failover_timeout)
        phone._on_incoming = on_incoming
        holder.append(phone)
        await ua.start()
        return phone

    @property
    def user_agent(self) -> UserAgent:
        return self._ua

    @property
    def legs(self) -> frozenset[CallLeg]:
        """Legs not yet ended."""
        return frozenset(leg for leg in self._legs if not leg.ended.is_set())

    async def close(self) -> None:
        """Hang up every leg, then close the user agent. Idempotent."""
        for leg in list(self._legs):
            with contextlib.suppress(CallXmlError):
                await leg.hangup("shutdown")
        self._legs.clear()
        await self._ua.close()

    async def __aenter__(self) -> Phone:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _incoming(self, inbound: UasCall) -> None:
        assert self._on_incoming is not None
        await self._on_incoming(IncomingCall(inbound, self.media, self._adopt))

    def _adopt(self, leg: CallLeg) -> None:
        self._forget_ended()
        self._legs.add(leg)

    def _forget_ended(self) -> None:
        ended = [leg for leg in self._legs if leg.ended.is_set()]
        for leg in ended:
            add_stats(self._retired, leg.stats)
        self._legs.difference_update(ended)

    def rtp_totals(self) -> RtpStats:
        """RTP counters summed over every leg this phone has had, live or ended (metrics)."""
        self._forget_ended()
        total = RtpStats()
        add_stats(total, self._retired)
        for leg in self._legs:
            add_stats(total, leg.stats)
        return total

    async def dial(
        self,
        target: Target | str,
        *,
        from_uri: str | None = None,
        timeout: float = 30.0,
        credentials: Credentials | None = None,
        headers: Sequence[tuple[str, str]] = (),
        on_ringing: Callable[[], None] | None = None,
        sid: str | None = None,
        proxy: str | None = None,
        destinations: Sequence[Address] = (),
        on_early_media: Callable[[CallLeg], None] | None = None,
    ) -> DialResult:
        """Call ``target`` and wait for the answer, at most ``timeout`` seconds of ringing.

        ``target`` is a parsed :class:`~callxml.sip.target.Target` (or URI text, parsed here).
        ``proxy`` (a SIP URI such as ``sip:127.0.0.1:5060;transport=tcp``) sends the INVITE to
        that host, port and transport instead (an outbound proxy, :meth:`Target.via`).
        ``headers`` are added to the INVITE after the target's own X- headers. ``on_ringing``
        is called once, on the first 180/183. ``destinations`` replaces locating the target's
        host (RFC 3263): a registered device's flow, then its Contact's address, tried in that
        order like located servers. ``on_early_media(leg)`` is called once, when a
        180/183 brings the far end's SDP: ``leg`` (not answered, :attr:`CallLeg.early`)
        receives the far end's early audio; it becomes :attr:`DialResult.leg` if the call is
        answered, and ends if it is not. Never raises for the far end's behaviour: every
        outcome is a :class:`DialResult`. Cancelling the task cancels the INVITE (or hangs up)
        before re-raising.
        """
        self._forget_ended()
        try:
            target = Target.parse(target) if isinstance(target, str) else target
        except RemoteProtocolError as exc:
            return DialResult("failed", None, None, f"invalid SIP URI: {exc}")
        if proxy is not None:
            try:
                target = target.via(proxy)
            except RemoteProtocolError as exc:
                return DialResult("failed", None, None, f"invalid proxy URI: {exc}")
        if target.secure and target.srtp_suites and not target.zrtp:
            try:
                check_suites(target.srtp_suites)
            except ValueError as exc:
                return DialResult("failed", None, None, f"srtpSuites: {exc}")
        attempt = _Attempt(target)
        try:
            candidates = list(destinations) or await locate(target.hop, self._resolver)
        except TransportError as exc:
            return attempt.failed("failed", None, str(exc))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        endpoint = await RtpEndpoint.open(self.media.rtp_config())
        zrtp = ZrtpKeying(endpoint, self.media.zrtp_cache) if target.zrtp else None
        early: _EarlyMedia | None = None
        try:
            offer = build_offer(
                address=self.media.address,
                port=endpoint.local_address[1],
                secure=target.secure and not target.zrtp,
                zrtp_hash=zrtp.hello_hash if zrtp is not None else None,
                srtp_suites=target.srtp_suites if not target.zrtp else (),
            )
            for index, destination in enumerate(candidates):
                more = index + 1 < len(candidates)
                try:
                    call = self._ua.invite(
                        str(target.request_uri),
                        sdp=bytes(offer.sdp),
                        credentials=credentials,
                        headers=[*target.headers, *headers],
                        from_uri=from_uri,
                        destination=destination,
                    )
                except (LocalProtocolError, ConfigError, TransportError) as exc:
                    await endpoint.close()
                    return attempt.failed("failed", None, str(exc))
                attempt.call, attempt.destination = call, destination
                if on_early_media is not None:
                    early = _EarlyMedia(
                        self, call, offer, endpoint, target, sid, on_early_media, zrtp
                    )
                result, timed_out = await self._final(
                    call,
                    max(0.0, deadline - loop.time()),
                    on_ringing,
                    silent_after=self.failover_timeout if more else None,
                    on_provisional=early.provisional if early is not None else None,
                )
                if more and not timed_out and _server_failed(call, result):
                    # RFC 3263 §4.3: a transport error, a timeout or a 503 moves on to the
                    # next located server, inside the same ring budget.
                    log.info(
                        "dial %s: %s failed (%s); trying the next server",
                        target,
                        label(destination),
                        _failure_reason(result, target, None),
                    )
                    attempt.tried.append(f"{label(destination)}: {result.status}")
                    continue
                break
        except BaseException:
            await endpoint.close()
            call_or_none = attempt.call
            if call_or_none is not None and not call_or_none.ended:
                with contextlib.suppress(LocalProtocolError):
                    call_or_none.hangup()
            raise
        if not result.answered or timed_out:
            await endpoint.close()
            reason = _failure_reason(result, target, timeout if timed_out else None)
            return attempt.failed(dial_status(result.status, timed_out=timed_out), result, reason)
        early_leg = early.leg if early is not None else None
        media = await self._check_answer(call, offer, result, endpoint, target, early_leg)
        if isinstance(media, str):
            return attempt.failed("failed", result, media)
        if early_leg is not None:
            early_leg._peer_answered(media)
            leg = early_leg
        else:
            leg = CallLeg(
                handle=call,
                direction="outbound",
                endpoint=endpoint,
                media=media,
                transport=destination.transport,
                from_uri=call.from_uri,
                to_uri=str(target.request_uri),
                sip_call_id=call.sip_call_id,
                answered=True,
                sid=sid,
                rtp_timeout=self.media.rtp_timeout,
                zrtp=zrtp,
                secure_media=target.secure,
                srtp_suites=_suites(target),
            )
        self._adopt(leg)
        if leg.zrtp is not None:
            # RFC 6189: the call is up, but not secure until ZRTP completes; a failure ends it.
            try:
                await leg.wait_secure()
            except MediaError as exc:
                reason = exc.reason if isinstance(exc, SecureMediaError) else str(exc)
                return attempt.failed("failed", result, reason)
        return attempt.answered(result, leg)

    async def _check_answer(
        self,
        call: UacCall,
        offer: Offer,
        result: CallResult,
        endpoint: RtpEndpoint,
        target: Target,
        early: CallLeg | None = None,
    ) -> NegotiatedMedia | str:
        """The negotiated media of a 2xx, or why it breaks the policy (the call is then ended:
        the core has ACKed the 2xx, RFC 3261 §13.2.2.4, and we send BYE). A 2xx without SDP
        after early media keeps the answer of the 18x (RFC 3262 §5: it was the answer)."""
        response = result.response
        assert response is not None
        try:
            if not response.body and early is not None:
                return early.media
            if not response.body:
                raise MediaError("the 2xx carried no SDP answer (RFC 3264 §5)")
            return check_answer(offer, response.body)
        except MediaError as exc:
            with contextlib.suppress(LocalProtocolError):
                call.hangup()
            await endpoint.close()
            reason = exc.reason if isinstance(exc, SecureMediaError) else str(exc)
            log.info("dial %s: media refused: %s", target, reason)
            return reason

    async def _final(
        self,
        call: UacCall,
        timeout: float,
        on_ringing: Callable[[], None] | None,
        *,
        silent_after: float | None = None,
        on_provisional: Callable[[SipResponse], None] | None = None,
    ) -> tuple[CallResult, bool]:
        """Wait for the final response; on ``timeout`` CANCEL (RFC 3261 §9.1) and report it
        (``True``). With ``silent_after``, a server that has sent nothing at all by then is
        given up (a late answer is then cancelled or hung up by the core) and reported as a
        local 408, so the caller can try the next server."""
        rang = False
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(timeout) as ring:
                if silent_after is not None and silent_after < timeout:
                    ring.reschedule(started + silent_after)
                async for item in call.updates():
                    if isinstance(item, CallResult):
                        return item, False
                    if silent_after is not None:
                        ring.reschedule(started + timeout)  # it answers: ring out the budget
                        silent_after = None
                    if on_provisional is not None:
                        on_provisional(item)
                    if item.status in (180, 183) and not rang:
                        rang = True
                        if on_ringing is not None:
                            try:
                                on_ringing()
                            except Exception:
                                log.exception("on_ringing failed")
        except TimeoutError:
            pass
        with contextlib.suppress(LocalProtocolError):
            call.hangup()  # CANCEL while ringing; BYE if a 2xx raced the timer
        if silent_after is not None:
            detail = f"no response within {silent_after:g} s"
            return CallResult(408, "Request Timeout", None, detail), False
        try:
            return await call.result(CANCEL_GRACE), True
        except TimeoutError:
            return CallResult(408, "Request Timeout", None, "no final response"), True


#: Most X- headers of a final response kept for ``DialSipHeader_X-…`` (a bound).
MAX_RESPONSE_HEADERS = 20


def _x_headers(response: SipResponse) -> tuple[tuple[str, str], ...]:
    found = [(k, v) for k, v in response.headers.items() if k.lower().startswith("x-")]
    return tuple(found[:MAX_RESPONSE_HEADERS])


class _Attempt:
    """What one :meth:`Phone.dial` has learnt so far, and the :class:`DialResult` it makes."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.call: UacCall | None = None
        self.destination: Address | None = None
        self.tried: list[str] = []  # located servers given up on, for the reason text

    def _result(
        self, status: str, result: CallResult | None, reason: str, leg: CallLeg | None
    ) -> DialResult:
        if self.tried:
            reason = f"{reason} (after {'; '.join(self.tried)})"
        destination = self.destination
        return DialResult(
            status,
            result.status if result is not None else None,
            self.call.sip_call_id if self.call is not None else None,
            reason,
            leg,
            transport=destination.transport if destination else self.target.transport,
            warnings=self.target.warnings,
            headers=_x_headers(result.response) if result and result.response else (),
        )

    def failed(self, status: str, result: CallResult | None, reason: str) -> DialResult:
        return self._result(status, result, reason, None)

    def answered(self, result: CallResult, leg: CallLeg) -> DialResult:
        return self._result("answered", result, f"{result.status} {result.reason}", leg)


class _EarlyMedia:
    """One dial attempt's early media: the first 180/183 with the far end's SDP answer makes
    the leg (receiving only) and hands it to the caller's ``on_early_media``."""

    def __init__(
        self,
        phone: Phone,
        call: UacCall,
        offer: Offer,
        endpoint: RtpEndpoint,
        target: Target,
        sid: str | None,
        on_early_media: Callable[[CallLeg], None],
        zrtp: ZrtpKeying | None = None,
    ) -> None:
        self._phone = phone
        self._zrtp = zrtp
        self._call = call
        self._offer = offer
        self._endpoint = endpoint
        self._target = target
        self._sid = sid
        self._callback = on_early_media
        self.leg: CallLeg | None = None

    def provisional(self, response: SipResponse) -> None:
        if self.leg is not None or not response.body or response.status not in (180, 183):
            return
        if response.media_type not in (None, "application/sdp"):
            return
        try:
            media = check_answer(self._offer, response.body)
        except MediaError as exc:  # no early media, then; the 2xx is checked in full
            log.info("dial %s: early media refused: %s", self._target, exc)
            return
        call, phone = self._call, self._phone
        leg = CallLeg(
            handle=call,
            direction="outbound",
            endpoint=self._endpoint,
            media=media,
            transport=call.invite.vias[0].transport.lower(),
            from_uri=call.from_uri,
            to_uri=str(self._target.request_uri),
            sip_call_id=call.sip_call_id,
            answered=False,
            sid=self._sid,
            rtp_timeout=phone.media.rtp_timeout,
            zrtp=self._zrtp,
            secure_media=self._target.secure,
            srtp_suites=_suites(self._target),
        )
        leg._peer_early_media()
        self.leg = leg
        try:
            self._callback(leg)
        except Exception:
            log.exception("on_early_media failed")


def _suites(target: Target) -> tuple[str, ...]:
    """The SDES suites a re-offer on this call may use: those the target asked for, else the
    default policy's."""
    return tuple(target.srtp_suites) or INBOUND_SUITES


def _server_failed(call: UacCall, result: CallResult) -> bool:
    """Whether RFC 3263 §4.3 says to try the next server: nothing came back but a transport
    error or a timeout, or the server said 503, before it sent any provisional response."""
    if result.answered or call.provisional:
        return False
    return result.response is None or result.status == 503


def _failure_reason(result: CallResult, target: Target, timed_out_after: float | None) -> str:
    """Why an INVITE did not answer, for the call log: status, transport detail, the peer's
    Warning, and what a 488/606 to a secure offer means."""
    text = f"{result.status} {result.reason}".strip()
    if result.detail:
        text = f"{text}: {result.detail}"
    if timed_out_after is not None:
        text = f"no answer within {timed_out_after:g} s ({text})"
    elif target.secure and result.status in (488, 606):
        text = f"{text}: the peer refused our secure media offer (RTP/SAVP, SRTP)"
    warning = result.response.headers.get("Warning") if result.response else None
    if warning:
        text = f"{text}; Warning: {warning[:200]}"
    return text
