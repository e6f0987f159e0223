"""Call legs: one SIP dialog joined with its media (SDP offer/answer, secure-media policy, RTP).

This module owns the seam between signalling and media. A :class:`CallLeg` is one SIP call with
an :class:`~callxml.media.stream.RtpEndpoint`; :class:`Phone` owns the asyncio
:class:`~callxml.sip.aio.useragent.UserAgent` and the media settings and makes legs, by dialing
(:meth:`Phone.dial`) or by accepting an :class:`IncomingCall`; :func:`bridge` relays media between
two legs. It applies the secure-media rules of ``docs/sdp.md``:

* outbound ``;secure=true`` (or ``sips:``): SIP over TLS, port 5061 unless the URI names one
  (:func:`~callxml.sip.aio.resolver.target_for_uri`), an ``RTP/SAVP`` offer with exactly one
  ``AES_CM_128_HMAC_SHA1_80`` line (:func:`~callxml.sdp.build_offer`); an answer that breaks the
  policy (:func:`~callxml.sdp.check_answer`) ends the call with ACK + BYE and ``status="failed"``
  whose ``reason`` says why (RFC 4568 §7.5: the offerer may end a session it cannot secure);
* inbound: :meth:`IncomingCall.accept` answers with :func:`~callxml.sdp.answer_offer` under the
  domain's policy; a refusal is answered ``488 Not Acceptable Here`` with a ``Warning``
  (RFC 3261 §21.4.26, §20.43) before :class:`~callxml.errors.SecureMediaError` is raised.

It knows nothing of verbs, webhooks or documents: the runtime session (``runtime/session.py``)
decides *what* to do with a leg; this module does it. SIP rules stay in :mod:`callxml.sip`, SDP
rules in :mod:`callxml.sdp`, packet rules in :mod:`callxml.media`. Keys are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from callxml.errors import (
    CallXmlError,
    ConfigError,
    LocalProtocolError,
    MediaError,
    RemoteProtocolError,
    SecureMediaError,
    TransportError,
)
from callxml.media.dtmf import DEFAULT_PAYLOAD_TYPE, DtmfDigit
from callxml.media.relay import MediaRelay, make_forwarder
from callxml.media.stream import RtpConfig, RtpEndpoint, RtpStats, SrtpKeys
from callxml.media.wav import pcm_frames
from callxml.sdp import NegotiatedMedia, answer_offer, build_offer, check_answer
from callxml.sip.aio.resolver import HostResolver, target_for_uri
from callxml.sip.aio.tls import TlsConfig
from callxml.sip.aio.transport import ListenerConfig
from callxml.sip.aio.useragent import CallResult, InboundCall, OutgoingCall, UserAgent
from callxml.sip.auth import Credentials, DigestServer
from callxml.sip.message import SipRequest
from callxml.sip.ua import AuthenticatorSelector
from callxml.sip.uri import SipUri, parse_uri

__all__ = [
    "DIAL_STATUSES",
    "Bridge",
    "CallLeg",
    "DialResult",
    "IncomingCall",
    "MediaSettings",
    "Phone",
    "bridge",
    "dial_status",
]

log = logging.getLogger(__name__)

#: ``DialCallStatus`` values (Twilio's vocabulary) a dial can end with.
DIAL_STATUSES = ("completed", "answered", "busy", "no-answer", "failed", "canceled")
#: After our CANCEL, wait this long for the 487 before reporting the dial as over anyway.
CANCEL_GRACE = 4.0
#: Bound on URI ``?headers`` copied into the INVITE (RFC 3261 §19.1.5) and on X- headers kept.
MAX_URI_HEADERS = 16
MAX_X_HEADERS = 32
#: Headers a URI may not set in our INVITE (we own them; RFC 3261 §19.1.5 lists the risky ones).
_FORBIDDEN_URI_HEADERS = frozenset(
    {
        "via",
        "from",
        "to",
        "call-id",
        "cseq",
        "contact",
        "max-forwards",
        "route",
        "record-route",
        "content-type",
        "content-length",
        "content-encoding",
        "body",
        "authorization",
        "proxy-authorization",
        "expires",
    }
)
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


def new_sid() -> str:
    """A call SID in Twilio's shape: ``CA`` + 32 hex digits."""
    return "CA" + secrets.token_hex(16)


def _x_headers(request: SipRequest) -> tuple[tuple[str, str], ...]:
    found = [(k, v) for k, v in request.headers.items() if k.lower().startswith("x-")]
    return tuple(found[:MAX_X_HEADERS])


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaSettings:
    """Where legs open their RTP sockets.

    ``address`` is the IP literal we bind and advertise in SDP ``c=`` (not a wildcard);
    ``port_range`` is inclusive (RFC 3550 §11: RTP even, RTCP odd above), None lets the OS pick.
    """

    address: str = "127.0.0.1"
    port_range: tuple[int, int] | None = None
    rtcp_interval: float = 5.0

    def __post_init__(self) -> None:
        if self.address in ("0.0.0.0", "::", ""):
            raise ConfigError("media.address: give the IP address peers should send RTP to")

    def rtp_config(self) -> RtpConfig:
        return RtpConfig(
            host=self.address, port_range=self.port_range, rtcp_interval=self.rtcp_interval
        )


@dataclass(frozen=True)
class DialResult:
    """The outcome of :meth:`Phone.dial`, for ``<Dial action>`` and the call log.

    ``status`` is a ``DialCallStatus`` (see :data:`DIAL_STATUSES`); ``sip_response_code`` the
    final SIP status (None when nothing came back); ``reason`` a human-readable explanation
    (the secure-media refusal, the TLS error...); ``leg`` is set only when ``status`` is
    ``answered``; ``warnings`` carries URI warnings such as ``secure=maybe`` treated as false.
    """

    status: str
    sip_response_code: int | None
    sip_call_id: str | None
    reason: str
    leg: CallLeg | None = None
    transport: str | None = None
    warnings: tuple[str, ...] = ()


class _Consumer:
    """The leg's :class:`~callxml.media.stream.MediaConsumer`: forwards to the callbacks set by
    :meth:`CallLeg.set_consumer`; an exception in one is logged, never raised into the socket."""

    def __init__(self) -> None:
        self.on_audio: Callable[[bytes], None] | None = None
        self.on_digit: Callable[[str], None] | None = None

    def audio_received(self, pcm: bytes, timestamp: int) -> None:
        if self.on_audio is not None:
            try:
                self.on_audio(pcm)
            except Exception:
                log.exception("audio consumer failed")

    def dtmf_received(self, digit: DtmfDigit) -> None:
        if self.on_digit is not None:
            try:
                self.on_digit(digit.digit)
            except Exception:
                log.exception("DTMF consumer failed")


def _apply_media(endpoint: RtpEndpoint, media: NegotiatedMedia) -> None:
    """Point the endpoint at the peer with the negotiated codec, payload types and keys."""
    dtmf = media.dtmf_payload_type
    endpoint.set_payload_types(
        media.codec.name, media.payload_type, dtmf if dtmf is not None else DEFAULT_PAYLOAD_TYPE
    )
    endpoint.set_remote((media.their_address, media.their_port))
    ours, theirs = media.our_crypto, media.their_crypto
    if ours is not None and theirs is not None and ours.suite_info is not None:
        # RFC 4568 §6.1: we protect with the key we sent, unprotect with the one we received.
        endpoint.set_srtp(
            SrtpKeys(ours.suite_info.name, ours.keying_material(), theirs.keying_material())
        )
    else:
        endpoint.set_srtp(None)


# -- legs -------------------------------------------------------------------------------------


class CallLeg:
    """One SIP call (dialog) with its media. Made by :meth:`Phone.dial` or
    :meth:`IncomingCall.accept`; never constructed by the application.

    Read-only facts: ``sid``, ``direction`` (``inbound``/``outbound``), ``sip_call_id``,
    ``transport`` (``udp``/``tcp``/``tls``), ``secure`` (SRTP on), ``suite`` (the SRTP suite or
    None), ``codec``, ``from_uri``, ``to_uri``, ``request_headers`` (the X- headers of the
    INVITE). ``ended`` is set once the call is over, with ``end_reason``.
    """

    def __init__(
        self,
        *,
        handle: OutgoingCall | InboundCall,
        direction: str,
        endpoint: RtpEndpoint,
        media: NegotiatedMedia,
        consumer: _Consumer,
        transport: str,
        from_uri: str,
        to_uri: str,
        sip_call_id: str,
        request_headers: tuple[tuple[str, str], ...] = (),
        answered: bool,
        sid: str | None = None,
    ) -> None:
        self.sid = sid or new_sid()
        self.direction = direction
        self.sip_call_id = sip_call_id
        self.transport = transport
        self.from_uri = from_uri
        self.to_uri = to_uri
        self.request_headers = request_headers
        self.media = media
        self.answered = answered
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self._handle = handle
        self._endpoint = endpoint
        self._consumer = consumer
        self._closing: asyncio.Future[None] | None = None
        self._watch = asyncio.get_running_loop().create_task(
            self._watch_end(), name=f"leg-{self.sid}"
        )
        if answered:
            _apply_media(self._endpoint, self.media)

    # -- facts --------------------------------------------------------------------------------

    @property
    def secure(self) -> bool:
        """True when the media is SRTP (keys exchanged with SDES ``a=crypto``)."""
        return self.media.secure

    @property
    def suite(self) -> str | None:
        info = self.media.our_crypto.suite_info if self.media.our_crypto else None
        return info.name if info is not None else None

    @property
    def codec(self) -> str:
        return self.media.codec.name

    @property
    def stats(self) -> RtpStats:
        """Packet counters of the leg's RTP endpoint (sent, received, dropped...)."""
        return self._endpoint.stats

    @property
    def endpoint(self) -> RtpEndpoint:
        """The media endpoint (for the bridge and for tests); prefer the leg's methods."""
        return self._endpoint

    @property
    def local_media_address(self) -> tuple[str, int]:
        return self._endpoint.local_address

    def __repr__(self) -> str:
        state = "ended" if self.ended.is_set() else ("up" if self.answered else "pending")
        media = f"srtp={self.suite}" if self.secure else "rtp"
        return f"CallLeg({self.sid} {self.direction} {self.transport} {media} {state})"

    # -- life ---------------------------------------------------------------------------------

    async def _watch_end(self) -> None:
        try:
            reason = await self._handle.wait_ended()
        except asyncio.CancelledError:
            return
        by_peer = reason in ("BYE", "CANCEL")
        await self._finish("remote hangup" if by_peer else reason)

    async def _finish(self, reason: str) -> None:
        """Record why the call ended, release the media once (whoever gets here first)."""
        if self.end_reason is None:
            self.end_reason = reason
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._release())
        await asyncio.shield(self._closing)

    async def _release(self) -> None:
        try:
            self._endpoint.flush_received()
        finally:
            try:
                await self._endpoint.close()
            finally:
                self.ended.set()

    async def answer(self) -> None:
        """Inbound: send 200 OK with our SDP answer and start the media. Idempotent."""
        if self.answered:
            return
        if self.ended.is_set():
            raise LocalProtocolError("the call has already ended")
        handle = self._handle
        if not isinstance(handle, InboundCall):
            raise LocalProtocolError("only an inbound leg is answered")
        handle.accept(bytes(self.media.local_sdp))
        self.answered = True
        _apply_media(self._endpoint, self.media)

    async def reject(self, status: int, reason: str, *, warning: str | None = None) -> None:
        """Inbound, before :meth:`answer`: refuse the call with a final status (486, 603...)."""
        handle = self._handle
        if self.answered or not isinstance(handle, InboundCall):
            raise LocalProtocolError("only an unanswered inbound leg can be rejected")
        handle.reject(status, reason, warning=warning)
        await self._finish(f"rejected with {status}")

    async def hangup(self, reason: str = "") -> None:
        """End the call from our side (BYE, CANCEL or 480, whichever fits) and stop the media.

        Idempotent; ``reason`` is kept as :attr:`end_reason` (default ``local hangup``).
        """
        if self.ended.is_set():
            return
        if self.end_reason is None:
            self.end_reason = reason or "local hangup"
        if not self._handle.ended:
            with contextlib.suppress(LocalProtocolError):
                self._handle.hangup()
        self._watch.cancel()
        await self._finish(self.end_reason)

    async def wait_ended(self, timeout: float | None = None) -> str:
        """Wait until the call is over; returns :attr:`end_reason`."""
        await asyncio.wait_for(self.ended.wait(), timeout)
        return self.end_reason or ""

    # -- media --------------------------------------------------------------------------------

    def _check_media(self) -> None:
        if not self.answered:
            raise MediaError("the call is not answered yet")

    async def play(self, pcm: bytes) -> None:
        """Send 8 kHz 16-bit mono PCM, paced 20 ms a packet; returns when it has all been sent
        or the call ends. Cancel the task (or :meth:`stop_playing`) to stop at once (barge-in)."""
        self._check_media()
        if self.ended.is_set():
            return
        frames = pcm_frames(pcm, frame_samples=self._endpoint.frame_samples)
        try:
            await self._endpoint.play(frames)
        except asyncio.CancelledError:
            self._endpoint.stop_playing()
            raise
        except MediaError:
            if self.end_reason is None:
                raise  # the endpoint closed under us only because the call is ending

    def stop_playing(self) -> None:
        """Stop what :meth:`play` is sending (its ``play`` returns)."""
        self._endpoint.stop_playing()

    async def send_digits(self, digits: str) -> None:
        """Send DTMF as RFC 4733 telephone-events (``0-9*#A-D``; ``w`` is not a pause here)."""
        self._check_media()
        if self.media.dtmf_payload_type is None:
            raise MediaError("the peer did not negotiate telephone-event (RFC 4733)")
        if self.ended.is_set():
            return
        try:
            await self._endpoint.send_dtmf(digits)
        except MediaError:
            if self.end_reason is None:
                raise

    def set_consumer(
        self,
        on_audio: Callable[[bytes], None] | None,
        on_digit: Callable[[str], None] | None = None,
    ) -> None:
        """Receive what the far end sends: 20 ms PCM frames in order, and each DTMF digit once.

        ``None`` stops the delivery. While the leg is bridged, audio goes to the other leg
        instead (only DTMF for ``on_star`` is looked at).
        """
        self._consumer.on_audio = on_audio
        self._consumer.on_digit = on_digit


# -- inbound ----------------------------------------------------------------------------------


class IncomingCall:
    """An INVITE waiting for a decision: :meth:`accept`, :meth:`reject` or :meth:`ring`.

    ``transport`` is how it arrived (``udp``/``tcp``/``tls``), ``source`` the peer's
    ``(host, port)``, ``domain`` the host of the Request-URI (the SIP domain it was sent to),
    ``headers`` the X- headers.
    """

    def __init__(self, phone: Phone, inbound: InboundCall) -> None:
        self._phone = phone
        self._inbound = inbound
        request = inbound.request
        self.request = request
        self.transport = inbound.transport
        self.source = (inbound.peer.host, inbound.peer.port)
        self.request_uri = request.uri
        self.sip_call_id = request.call_id
        self.from_uri = request.from_.uri
        self.to_uri = request.to.uri
        self.headers = _x_headers(request)
        try:
            self.domain = parse_uri(request.uri).bare_host.lower()
        except RemoteProtocolError:
            self.domain = ""
        self.decided = False

    @property
    def ended(self) -> bool:
        """True once the caller gave up (CANCEL) or the call is otherwise over."""
        return self._inbound.ended

    def __repr__(self) -> str:
        return f"IncomingCall({self.sip_call_id!r} {self.transport} {self.to_uri!r})"

    async def ring(self) -> None:
        """Send 180 Ringing."""
        self._inbound.ring(180)

    async def reject(self, status: int, reason: str, *, warning: str | None = None) -> None:
        """Refuse with a final status (486 Busy Here, 603 Decline, 404...)."""
        self.decided = True
        self._inbound.reject(status, reason, warning=warning)

    async def accept(
        self, *, secure_media_enabled: bool, answer: bool = True, sid: str | None = None
    ) -> CallLeg:
        """Negotiate media under the domain's policy and return the leg.

        With ``answer`` (the default) the 200 OK goes out at once; with ``answer=False`` the
        leg is made (policy checked, SDP answer ready, RTP socket bound) and
        :meth:`CallLeg.answer` sends it later. A refusal by the secure-media policy, or an
        offer we cannot use, is answered ``488 Not Acceptable Here`` with a ``Warning`` saying
        why, and re-raised (:class:`SecureMediaError` / :class:`MediaError`).
        """
        if self.decided:
            raise LocalProtocolError("this call was already accepted or rejected")
        if self._inbound.ended:
            raise TransportError("the caller hung up before the call was answered")
        self.decided = True
        phone = self._phone
        endpoint = await phone._open_endpoint()
        try:
            media = answer_offer(
                self._inbound.sdp,
                address=phone.media.address,
                port=endpoint.local_address[1],
                secure_media_enabled=secure_media_enabled,
                arrived_over_tls=self._inbound.arrived_over_tls,
            )
        except MediaError as exc:
            await endpoint.close()
            reason = exc.reason if isinstance(exc, SecureMediaError) else str(exc)
            with contextlib.suppress(LocalProtocolError):
                self._inbound.reject(488, "Not Acceptable Here", warning=reason)
            raise
        except BaseException:
            await endpoint.close()
            raise
        consumer = _Consumer()
        endpoint.consumer = consumer
        leg = CallLeg(
            handle=self._inbound,
            direction="inbound",
            endpoint=endpoint,
            media=media,
            consumer=consumer,
            transport=self.transport,
            from_uri=self.from_uri,
            to_uri=self.to_uri,
            sip_call_id=self.sip_call_id,
            request_headers=self.headers,
            answered=False,
            sid=sid,
        )
        phone._legs.add(leg)
        if answer:
            await leg.answer()
        return leg


# -- the phone --------------------------------------------------------------------------------

IncomingHandler = Callable[[IncomingCall], Awaitable[None]]


class Phone:
    """The SIP user agent plus media settings: dials legs and hands over incoming calls.

    Start with ``phone = await Phone.start(...)``; :meth:`close` hangs up every leg and closes
    the sockets. Used by ``callxml call`` and by the engine.
    """

    def __init__(self, ua: UserAgent, media: MediaSettings) -> None:
        self._ua = ua
        self.media = media
        self._legs: set[CallLeg] = set()
        self._on_incoming: IncomingHandler | None = None

    @classmethod
    async def start(
        cls,
        *,
        listeners: Sequence[ListenerConfig] = (ListenerConfig("udp"),),
        tls: TlsConfig | None = None,
        media_address: str = "127.0.0.1",
        media_port_range: tuple[int, int] | None = None,
        on_incoming: IncomingHandler | None = None,
        resolver: HostResolver | None = None,
        user: str = "callxml",
        user_agent: str = "callxml",
        authenticator: DigestServer | AuthenticatorSelector | None = None,
    ) -> Phone:
        """Open the SIP listeners (TLS ones need ``tls.cert_file``/``key_file``).

        ``tls`` also sets how outgoing TLS is verified (``ca_file``; ``verify=False`` only for
        labs). Without ``on_incoming`` incoming calls get 480.
        """
        media = MediaSettings(media_address, media_port_range)
        holder: list[Phone] = []

        async def incoming(inbound: InboundCall) -> None:
            await holder[0]._incoming(inbound)

        ua = UserAgent(
            listeners=listeners,
            tls=tls,
            resolver=resolver,
            on_incoming=incoming if on_incoming is not None else None,
            user=user,
            user_agent=user_agent,
            authenticator=authenticator,
        )
        phone = cls(ua, media)
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

    async def _incoming(self, inbound: InboundCall) -> None:
        assert self._on_incoming is not None
        await self._on_incoming(IncomingCall(self, inbound))

    async def _open_endpoint(self) -> RtpEndpoint:
        return await RtpEndpoint.open(self.media.rtp_config())

    def _forget_ended(self) -> None:
        self._legs = {leg for leg in self._legs if not leg.ended.is_set()}

    async def dial(
        self,
        uri: str,
        *,
        from_uri: str | None = None,
        timeout: float = 30.0,
        credentials: Credentials | None = None,
        headers: Sequence[tuple[str, str]] = (),
        on_ringing: Callable[[], None] | None = None,
        sid: str | None = None,
        proxy: str | None = None,
    ) -> DialResult:
        """Call ``uri`` and wait for the answer, at most ``timeout`` seconds of ringing.

        ``proxy`` (a SIP URI such as ``sip:127.0.0.1:5060;transport=tcp``) sends the INVITE to
        that host, port and transport instead of the target's host (an outbound proxy, RFC 3261
        §8.1.2); the Request-URI stays the target, so a domain-routed server sees its domain. A
        secure target still goes over TLS, and the proxy's host is the identity TLS checks.

        ``;secure=true`` (or ``sips:``) → TLS (5061 by default) and an SRTP offer; an answer
        that breaks the policy is ACKed and hung up (``failed``, reason from the policy).
        URI ``?headers`` are copied into the INVITE except the ones we own (Via, From, To...).
        ``on_ringing`` is called once, on the first 180/183. Never raises for the far end's
        behaviour: every outcome is a :class:`DialResult`. Cancelling the task cancels the
        INVITE (or hangs up) before re-raising.
        """
        self._forget_ended()
        try:
            target = parse_uri(uri)
        except RemoteProtocolError as exc:
            return DialResult("failed", None, None, f"invalid SIP URI: {exc}")
        secure = target.secure
        try:
            if proxy is None:
                destination = target_for_uri(target)
            else:
                hop = parse_uri(proxy)
                if secure:
                    hop = hop.with_params(secure="true")
                elif not hop.has_param("transport"):
                    hop = hop.with_params(transport=target.transport)
                destination = target_for_uri(hop)
        except RemoteProtocolError as exc:
            return DialResult("failed", None, None, f"invalid proxy URI: {exc}")
        except TransportError as exc:
            return DialResult("failed", None, None, str(exc), warnings=target.warnings)
        request_uri = _request_uri(target)
        extra = list(headers)
        for name, value in target.headers[:MAX_URI_HEADERS]:
            if name.lower() not in _FORBIDDEN_URI_HEADERS:
                extra.append((name, value))
        endpoint = await self._open_endpoint()
        call: OutgoingCall | None = None
        try:
            offer = build_offer(
                address=self.media.address, port=endpoint.local_address[1], secure=secure
            )
            try:
                call = self._ua.invite(
                    request_uri,
                    bytes(offer.sdp),
                    credentials,
                    extra,
                    destination=destination,
                    from_uri=from_uri,
                )
            except (LocalProtocolError, ConfigError) as exc:
                await endpoint.close()
                return DialResult("failed", None, None, str(exc), warnings=target.warnings)
            sip_call_id = call_id_of(call)
            result, timed_out = await self._final(call, timeout, on_ringing)
        except BaseException:
            await endpoint.close()
            if call is not None and not call.ended:
                with contextlib.suppress(LocalProtocolError):
                    call.hangup()
            raise

        def failed(status: str, reason: str) -> DialResult:
            return DialResult(
                status,
                result.status,
                sip_call_id,
                reason,
                transport=destination.transport,
                warnings=target.warnings,
            )

        if not result.answered or timed_out:
            await endpoint.close()
            text = f"{result.status} {result.reason}".strip()
            if result.detail:
                text = f"{text}: {result.detail}"
            if timed_out:
                text = f"no answer within {timeout:g} s ({text})"
            elif secure and result.status in (488, 606):
                text = f"{text}: the peer refused our secure media offer (RTP/SAVP, SRTP)"
            warning = result.response.headers.get("Warning") if result.response else None
            if warning:
                text = f"{text}; Warning: {warning[:200]}"
            return failed(dial_status(result.status, timed_out=timed_out), text)
        response = result.response
        assert response is not None
        try:
            if not response.body:
                raise MediaError("the 2xx carried no SDP answer (RFC 3264 §5)")
            media = check_answer(offer, response.body)
        except MediaError as exc:
            # RFC 3261 §13.2.2.4: the 2xx is ACKed (done by the core), then we end it with BYE.
            with contextlib.suppress(LocalProtocolError):
                call.hangup()
            await endpoint.close()
            reason = exc.reason if isinstance(exc, SecureMediaError) else str(exc)
            log.info("dial %s: media refused: %s", _redacted_uri(target), reason)
            return failed("failed", reason)
        consumer = _Consumer()
        endpoint.consumer = consumer
        leg = CallLeg(
            handle=call,
            direction="outbound",
            endpoint=endpoint,
            media=media,
            consumer=consumer,
            transport=destination.transport,
            from_uri=_from_of(call),
            to_uri=request_uri,
            sip_call_id=sip_call_id,
            answered=True,
            sid=sid,
        )
        self._legs.add(leg)
        return DialResult(
            "answered",
            result.status,
            sip_call_id,
            f"{result.status} {result.reason}",
            leg,
            transport=destination.transport,
            warnings=target.warnings,
        )

    async def _final(
        self,
        call: OutgoingCall,
        timeout: float,
        on_ringing: Callable[[], None] | None,
    ) -> tuple[CallResult, bool]:
        """Wait for the final response; on ``timeout`` CANCEL (RFC 3261 §9.1) and report it."""
        rang = False
        try:
            async with asyncio.timeout(timeout):
                async for item in call.updates():
                    if isinstance(item, CallResult):
                        return item, False
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
        try:
            return await call.result(CANCEL_GRACE), True
        except TimeoutError:
            return CallResult(408, "Request Timeout", None, "no final response"), True


def call_id_of(call: OutgoingCall) -> str:
    """The SIP Call-ID of an outgoing call (from the INVITE the core made)."""
    core_call = call._ua._core_call(call.id)
    return core_call.invite.call_id if core_call is not None else ""


def _from_of(call: OutgoingCall) -> str:
    core_call = call._ua._core_call(call.id)
    return core_call.invite.from_.uri if core_call is not None else ""


def _request_uri(target: SipUri) -> str:
    """The Request-URI: URI headers go into the request instead (RFC 3261 §19.1.5), and our own
    ``secure`` instruction is not the callee's business."""
    params = tuple((k, v) for k, v in target.params if k.lower() != "secure")
    return str(replace(target.without_headers(), params=params))


def _redacted_uri(target: SipUri) -> str:
    return str(replace(target, password=None, headers=()))


# -- bridging ---------------------------------------------------------------------------------


DTMF_EVENTS = "0123456789*#ABCD"  # RFC 4733 §3.2: events 0-15


class Bridge:
    """Media relayed between two answered legs (see :func:`bridge`); :meth:`stop` undoes it."""

    def __init__(
        self,
        a: CallLeg,
        b: CallLeg,
        on_a_digit: Callable[[str], None] | None = None,
        on_star: Callable[[], None] | None = None,
    ) -> None:
        self.a = a
        self.b = b
        self._relay = MediaRelay(a.endpoint, b.endpoint)
        self._on_a_digit = on_a_digit
        self._on_star = on_star
        self._last_event: int | None = None

    @property
    def active(self) -> bool:
        return self._relay.active

    def start(self) -> None:
        self.a.stop_playing()
        self.b.stop_playing()
        self._relay.start()
        if self._on_a_digit is not None or self._on_star is not None:
            forward = make_forwarder(self.a.endpoint, self.b.endpoint)
            self.a.endpoint.set_forward(self._watch_digits(forward))

    def _watch_digits(self, forward: Callable[[bytes], None]) -> Callable[[bytes], None]:
        dtmf_pt = self.a.endpoint.dtmf_payload_type

        def watch(data: bytes) -> None:
            # RFC 4733 §2.3: payload = event, E|R|volume, duration; all packets of one event
            # share its RTP timestamp (§2.5.1.2), so report each timestamp once.
            if len(data) >= 16 and data[1] & 0x7F == dtmf_pt and data[0] & 0x1F == 0:
                event = data[12]
                timestamp = int.from_bytes(data[4:8], "big")
                if event < len(DTMF_EVENTS) and timestamp != self._last_event:
                    self._last_event = timestamp
                    self._digit(DTMF_EVENTS[event])
                if event == 10 and self._on_star is not None:
                    return  # hangupOnStar: the star itself is not relayed
            forward(data)

        return watch

    def _digit(self, digit: str) -> None:
        try:
            if self._on_a_digit is not None:
                self._on_a_digit(digit)
            if digit == "*" and self._on_star is not None:
                self._on_star()
        except Exception:
            log.exception("bridge digit callback failed")

    def stop(self) -> None:
        self._relay.stop()


def bridge(
    a: CallLeg,
    b: CallLeg,
    on_a_digit: Callable[[str], None] | None = None,
    *,
    on_star: Callable[[], None] | None = None,
) -> Bridge:
    """Relay audio and DTMF between two answered legs, both ways, until :meth:`Bridge.stop`.

    SRTP on one side and RTP on the other is fine (each leg protects with its own keys);
    PCMU↔PCMA is transcoded. ``on_a_digit`` sees every key leg ``a`` presses (still relayed);
    ``on_star`` (``<Dial hangupOnStar>``) is called when ``a`` presses ``*``, which is then not
    relayed.
    """
    if not (a.answered and b.answered):
        raise LocalProtocolError("both legs must be answered before bridging")
    made = Bridge(a, b, on_a_digit, on_star)
    made.start()
    return made
