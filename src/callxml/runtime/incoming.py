"""An incoming call waiting for a decision: ring, accept under a secure-media policy, or reject.

This module owns the inbound half of the seam between signalling and media.
:meth:`IncomingCall.accept` answers the INVITE's offer with :func:`~callxml.sdp.answer_offer`
under the domain's policy (``docs/sdp.md``); a refusal is answered ``488 Not Acceptable Here``
with a ``Warning`` saying why (RFC 3261 §21.4.26, §20.43) before
:class:`~callxml.errors.SecureMediaError` is raised, so the caller always learns the reason.
Routing (which domain, who may call) is the engine's business, not this module's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from callxml.errors import (
    CapacityError,
    LocalProtocolError,
    MediaError,
    RemoteProtocolError,
    SecureMediaError,
    TransportError,
)
from callxml.media.stream import RtpEndpoint
from callxml.runtime.leg import CallLeg, MediaSettings
from callxml.runtime.zrtpkeying import ZrtpKeying
from callxml.sdp import answer_offer
from callxml.sdp.policy import INBOUND_SUITES
from callxml.sip.aio.useragent import UasCall
from callxml.sip.message import SipRequest
from callxml.sip.uri import parse_uri

__all__ = ["MAX_X_HEADERS", "RETRY_AFTER", "IncomingCall"]

#: Most X- headers of an INVITE kept for the webhook (``SipHeader_X-…``); a bound.
MAX_X_HEADERS = 32
#: Seconds a caller refused for lack of capacity is asked to wait (``Retry-After``).
RETRY_AFTER = 5


def _x_headers(request: SipRequest) -> tuple[tuple[str, str], ...]:
    found = [(k, v) for k, v in request.headers.items() if k.lower().startswith("x-")]
    return tuple(found[:MAX_X_HEADERS])


class IncomingCall:
    """An INVITE waiting for a decision: :meth:`accept`, :meth:`reject`, :meth:`ring` or
    :meth:`early_media`.

    ``transport`` is how it arrived (``udp``/``tcp``/``tls``), ``source`` the peer's
    ``(host, port)``, ``domain`` the host of the Request-URI (the SIP domain it was sent to),
    ``headers`` the X- headers.
    """

    def __init__(
        self, inbound: UasCall, media: MediaSettings, adopt: Callable[[CallLeg], None]
    ) -> None:
        self._inbound = inbound
        self._media = media
        self._adopt = adopt
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

    def keep_on_flow(self) -> None:
        """The caller is a device registered over this very connection: our in-dialog requests
        go back over it (RFC 5626 §5.3), as the registrar decides."""
        with contextlib.suppress(LocalProtocolError):
            self._inbound.keep_on_flow()

    async def ring(self) -> None:
        """Send 180 Ringing."""
        self._inbound.ring(180)

    async def early_media(self, *, secure_media_enabled: bool, sid: str | None = None) -> CallLeg:
        """Negotiate media like :meth:`accept` (same policy, same refusals) but answer the offer
        in a ``183 Session Progress`` instead of a 200: the leg plays to the caller before the
        call is answered (announcements, a ringback, a dialled party's early audio). Reliable
        (PRACK) when the caller requires 100rel. :meth:`CallLeg.answer` sends the 200 later."""
        leg = await self.accept(secure_media_enabled=secure_media_enabled, answer=False, sid=sid)
        leg.early_media()
        return leg

    async def reject(self, status: int, reason: str, *, warning: str | None = None) -> None:
        """Refuse with a final status (486 Busy Here, 603 Decline, 404...)."""
        self.decided = True
        self._inbound.reject(status, reason, warning=warning)

    def refuse_busy(self, why: str, retry_after: int = 0) -> None:
        """Refuse at once with ``503 Service Unavailable`` and ``Retry-After`` (RFC 3261
        §21.5.4): the caller learns to retry later instead of waiting for nothing."""
        self.decided = True
        seconds = retry_after or RETRY_AFTER
        with contextlib.suppress(LocalProtocolError):
            self._inbound.reject(
                503,
                "Service Unavailable",
                warning=why,
                headers=[("Retry-After", str(seconds))],
            )

    async def accept(
        self,
        *,
        secure_media_enabled: bool,
        srtp_suites: Sequence[str] = INBOUND_SUITES,
        zrtp: bool = False,
        answer: bool = True,
        sid: str | None = None,
    ) -> CallLeg:
        """Negotiate media under the domain's policy and return the leg.

        ``srtp_suites`` are the SDES suites the domain allows (:mod:`callxml.sdp.policy`).
        ``zrtp`` lets ZRTP key an ``RTP/AVP`` offer (RFC 6189; the domain's ``zrtp`` or, with
        ``secure_media_enabled``, ``sdes-or-zrtp``): the leg's media then stays blocked from
        :meth:`CallLeg.answer` until :meth:`CallLeg.wait_secure` returns.
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
        try:
            endpoint = await RtpEndpoint.open(self._media.rtp_config())
        except TransportError as exc:  # the media port range is exhausted
            self.refuse_busy(f"no media port free: {exc}")
            raise CapacityError(f"no media port free: {exc}", retry_after=RETRY_AFTER) from exc
        keying = ZrtpKeying(endpoint, self._media.zrtp_cache) if zrtp else None
        try:
            media = answer_offer(
                self._inbound.sdp,
                address=self._media.address,
                port=endpoint.local_address[1],
                secure_media_enabled=secure_media_enabled,
                arrived_over_tls=self._inbound.arrived_over_tls,
                srtp_suites=srtp_suites,
                zrtp_hash=keying.hello_hash if keying is not None else None,
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
        leg = CallLeg(
            handle=self._inbound,
            direction="inbound",
            endpoint=endpoint,
            media=media,
            transport=self.transport,
            from_uri=self.from_uri,
            to_uri=self.to_uri,
            sip_call_id=self.sip_call_id,
            request_headers=self.headers,
            answered=False,
            sid=sid,
            rtp_timeout=self._media.rtp_timeout,
            zrtp=keying,
            secure_media=secure_media_enabled,
            srtp_suites=srtp_suites,
        )
        self._adopt(leg)
        if answer:
            await leg.answer()
        return leg
