"""Call legs: one SIP dialog joined with its media (negotiated SDP, RTP/SRTP endpoint).

This module owns :class:`CallLeg` — what the rest of the runtime holds for a call that exists:
its facts (sid, transport, SRTP suite, codec), its life (answer, reject, hang up, the end
reported by the SIP layer) and its media (play PCM paced 20 ms a packet, send RFC 4733 digits,
receive audio and digits through a consumer) — and :class:`Leg`, the surface of it that drivers
use, so tests plug in fakes. Legs are made by :class:`~callxml.runtime.phone.Phone` (dialing) and
:class:`~callxml.runtime.incoming.IncomingCall` (accepting); :mod:`callxml.runtime.bridge` relays
media between two of them.

It knows nothing of verbs, webhooks or documents. The secure-media rules were applied when the
media was negotiated; the leg keeps the policy it was set up under to answer the peer's
re-offers (re-INVITE, UPDATE) with it (:mod:`callxml.runtime.renegotiation`), moving the endpoint
to new addresses, codecs or keys without stopping the audio. Keys are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from callxml.errors import ConfigError, LocalProtocolError, MediaError, SecureMediaError
from callxml.interpreter.call import new_sid
from callxml.media.dtmf import DEFAULT_PAYLOAD_TYPE, DtmfDigit
from callxml.media.stream import RtpConfig, RtpEndpoint, RtpStats
from callxml.media.wav import pcm_frames
from callxml.media.zrtp import ZrtpCache, ZrtpResult
from callxml.runtime.renegotiation import (
    answer_reoffer,
    apply_change,
    check_reoffer_answer,
    srtp_keys,
)
from callxml.runtime.zrtpkeying import ZrtpKeying
from callxml.sdp import Direction, NegotiatedMedia, Offer, SessionDescription, hold, unhold
from callxml.sdp.negotiate import offer_holds, reoffer
from callxml.sdp.policy import INBOUND_SUITES
from callxml.sip.aio.useragent import UacCall, UasCall
from callxml.sip.message import SipRequest

__all__ = ["CallLeg", "Leg", "MediaSettings"]

log = logging.getLogger(__name__)


class Leg(Protocol):
    """The part of :class:`CallLeg` the call driver and the dialler use (tests plug in fakes)."""

    @property
    def sid(self) -> str: ...

    @property
    def answered(self) -> bool: ...

    @property
    def ended(self) -> asyncio.Event: ...

    async def answer(self) -> None: ...

    async def reject(self, status: int, reason: str, *, warning: str | None = None) -> None: ...

    async def hangup(self, reason: str = "") -> None: ...

    async def play(self, pcm: bytes) -> None: ...

    def stop_playing(self) -> None: ...

    async def send_digits(self, digits: str) -> None: ...

    def set_consumer(
        self,
        on_audio: Callable[[bytes], None] | None,
        on_digit: Callable[[str], None] | None,
    ) -> None: ...


@dataclass(frozen=True)
class MediaSettings:
    """Where legs open their RTP sockets.

    ``address`` is the IP literal we bind and advertise in SDP ``c=`` (not a wildcard);
    ``port_range`` is inclusive (RFC 3550 §11: RTP even, RTCP odd above), None lets the OS pick.
    ``rtp_timeout``: an answered leg that receives no RTP or RTCP for this many seconds (while
    the peer has not put it on hold) is hung up — the peer is gone without a BYE; None: never.
    ``zrtp_cache`` keeps our ZID and the ZRTP retained secrets.
    """

    address: str = "127.0.0.1"
    port_range: tuple[int, int] | None = None
    rtcp_interval: float = 5.0
    rtp_timeout: float | None = 60.0  # no RTP/RTCP this long (hold excluded): hang up
    #: Our ZRTP ZID and the peers' retained secrets (the engine's store); None: one in-memory
    #: cache for the process.
    zrtp_cache: ZrtpCache | None = None

    def __post_init__(self) -> None:
        if self.address in ("0.0.0.0", "::", ""):
            raise ConfigError("media.address: give the IP address peers should send RTP to")
        if self.rtp_timeout is not None and not 1 <= self.rtp_timeout <= 86400:
            raise ConfigError("media.rtp_timeout: must be between 1 second and a day")

    def rtp_config(self) -> RtpConfig:
        return RtpConfig(
            host=self.address, port_range=self.port_range, rtcp_interval=self.rtcp_interval
        )


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


def _apply_media(
    endpoint: RtpEndpoint, media: NegotiatedMedia, zrtp: ZrtpKeying | None = None
) -> None:
    """Point the endpoint at the peer with the negotiated codec, payload types and keys; a ZRTP
    leg starts its exchange here, with media blocked until it completes."""
    dtmf = media.dtmf_payload_type
    endpoint.set_payload_types(
        media.codec.name, media.payload_type, dtmf if dtmf is not None else DEFAULT_PAYLOAD_TYPE
    )
    endpoint.set_remote((media.their_address, media.their_port))
    # RFC 4568 §6.1: we protect with the key we sent, unprotect with the one we received (SDES);
    # a ZRTP leg has none in its SDP, and its exchange sets them once it completes.
    endpoint.set_srtp(srtp_keys(media))
    if media.zrtp and zrtp is not None:
        zrtp.start(media.their_zrtp_hash)


def _audio_direction(sdp: SessionDescription, media: NegotiatedMedia) -> Direction:
    return sdp.direction_for(sdp.media[media.media_index])


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
        handle: UacCall | UasCall,
        direction: str,
        endpoint: RtpEndpoint,
        media: NegotiatedMedia,
        transport: str,
        from_uri: str,
        to_uri: str,
        sip_call_id: str,
        request_headers: tuple[tuple[str, str], ...] = (),
        answered: bool,
        sid: str | None = None,
        rtp_timeout: float | None = None,
        zrtp: ZrtpKeying | None = None,
        secure_media: bool = False,
        srtp_suites: Sequence[str] = INBOUND_SUITES,
    ) -> None:
        self.sid = sid or new_sid("CA")
        self.direction = direction
        self.sip_call_id = sip_call_id
        self.transport = transport
        self.from_uri = from_uri
        self.to_uri = to_uri
        self.request_headers = request_headers
        self.media = media
        self.answered = answered
        #: Media flows before the answer: our 183 with SDP (inbound, :meth:`early_media`) or the
        #: peer's 183/180 with SDP (outbound, made by :meth:`Phone.dial` with ``on_early_media``).
        self.early = False
        self._media_applied = False
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self._handle = handle
        self._endpoint = endpoint
        self._consumer = _Consumer()
        endpoint.consumer = self._consumer
        self._closing: asyncio.Future[None] | None = None
        self._rtp_timeout = rtp_timeout
        self._media_watch: asyncio.Task[None] | None = None
        self.on_hold = False  # the peer's latest offer holds us (sendonly, inactive, 0.0.0.0)
        # Re-offers are answered under the policy the call was set up with (docs/sdp.md).
        self._secure_media = secure_media
        self._srtp_suites = tuple(srtp_suites)
        self._pending_answer: NegotiatedMedia | None = None  # ours to the peer's re-offer
        self._pending_offer: tuple[Offer, NegotiatedMedia] | None = None  # ours, and before it
        self._media_listeners: list[Callable[[CallLeg], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        handle.on_reinvite = self._reinvited
        #: The ZRTP exchange keying this leg (``media.zrtp``), else None.
        self.zrtp = zrtp if media.zrtp else None
        handle.on_reoffer_answered = self._reoffer_answered
        handle.on_reoffer_failed = self._reoffer_failed
        handle.set_answerer(self._answer_reoffer)
        self._watch = asyncio.get_running_loop().create_task(
            self._watch_end(), name=f"leg-{self.sid}"
        )
        if answered:
            self._start_media()

    # -- facts --------------------------------------------------------------------------------

    @property
    def secure(self) -> bool:
        """True when the media is SRTP: keys from SDES ``a=crypto``, or from a completed ZRTP
        exchange."""
        return self.media.secure or self.zrtp_result is not None

    @property
    def encryption(self) -> str | None:
        """How the media is keyed: ``sdes``, ``zrtp`` (also while the exchange runs) or None."""
        if self.media.secure:
            return "sdes"
        return "zrtp" if self.zrtp is not None else None

    @property
    def suite(self) -> str | None:
        result = self.zrtp_result
        if result is not None:
            return result.suite
        info = self.media.our_crypto.suite_info if self.media.our_crypto else None
        return info.name if info is not None else None

    @property
    def zrtp_result(self) -> ZrtpResult | None:
        """The completed ZRTP exchange (SAS, algorithms, cache state), else None."""
        return self.zrtp.result if self.zrtp is not None else None

    async def wait_secure(self) -> ZrtpResult | None:
        """On a ZRTP leg, wait until ZRTP completes (media flows from then on) and return the
        exchange; when it fails or times out, hang up with the reason as :attr:`end_reason` and
        raise :class:`~callxml.errors.SecureMediaError`. None on other legs (nothing to wait)."""
        if self.zrtp is None:
            return None
        try:
            return await self.zrtp.wait()
        except MediaError as exc:
            await self.hangup(str(exc))
            raise

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

    def __repr__(self) -> str:
        state = "ended" if self.ended.is_set() else ("up" if self.answered else "pending")
        media = f"srtp={self.suite}" if self.secure else "rtp"
        if self.zrtp is not None:
            result = self.zrtp_result
            media = f"zrtp={result.suite} sas={result.sas}" if result else "zrtp=pending"
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
        if self._media_watch is not None and self._media_watch is not asyncio.current_task():
            self._media_watch.cancel()
        if self.zrtp is not None:
            self.zrtp.close()
        try:
            self._endpoint.flush_received()
        finally:
            try:
                await self._endpoint.close()
            finally:
                self.ended.set()

    @property
    def media_started(self) -> bool:
        """Audio flows: the call is answered, or in early media."""
        return self.answered or self.early

    def _start_media(self) -> None:
        """Point the endpoint at the peer, keep a packet going out every 20 ms from now on, and
        watch that the peer still sends (:attr:`MediaSettings.rtp_timeout`). A ZRTP leg starts
        its exchange here; its endpoint sends nothing but ZRTP until the keys are in."""
        if not self._media_applied:  # early media already did (a new session would reset SRTP)
            _apply_media(self._endpoint, self.media, self.zrtp)
            self._media_applied = True
        self._endpoint.keep_sending()
        if self._rtp_timeout is not None and self._media_watch is None:
            self._media_watch = asyncio.get_running_loop().create_task(
                self._watch_media(self._rtp_timeout), name=f"leg-media-{self.sid}"
            )

    def _activity(self) -> int:
        stats = self._endpoint.stats
        return stats.packets_received + stats.rtcp_received + stats.dropped_auth

    async def _watch_media(self, timeout: float) -> None:
        """Hang up a leg whose peer has sent nothing (RTP, RTCP, even undecryptable SRTP) for
        ``timeout`` seconds while neither side holds the other: it is gone without a BYE."""
        loop = asyncio.get_running_loop()
        last, quiet_since = self._activity(), loop.time()
        step = min(5.0, timeout / 4)
        try:
            while not self.ended.is_set():
                await asyncio.sleep(step)
                seen = self._activity()
                expecting = self.media.direction in ("sendrecv", "recvonly")
                if seen != last or self.on_hold or not expecting:
                    last, quiet_since = seen, loop.time()
                elif loop.time() - quiet_since >= timeout:
                    log.info("leg %s: no RTP or RTCP for %g s; hanging up", self.sid, timeout)
                    await self.hangup(f"no RTP or RTCP for {timeout:g} s")
                    return
        except asyncio.CancelledError:
            return

    # -- renegotiation ---------------------------------------------------------------------

    def _answer_reoffer(self, offer: bytes, current: bytes) -> bytes:
        """The SIP core's answerer for this call: the peer's re-INVITE or UPDATE offer answered
        with :func:`~callxml.runtime.renegotiation.answer_reoffer` under the call's policy
        (raising ``OfferRefused`` → 488). An offer-less re-INVITE gets our current SDP as the
        offer; the ACK brings the answer (:meth:`_reoffer_answered`). Applied in
        :meth:`_reinvited`, once the 2xx is on its way."""
        if not offer:
            self._pending_offer = (Offer(self.media.local_sdp, self.media.our_crypto), self.media)
            return bytes(self.media.local_sdp)
        host, port = self._endpoint.local_address[:2]
        self._pending_answer = answer_reoffer(
            offer,
            self.media,
            address=host,
            port=port,
            secure_media=self._secure_media,
            over_tls=self.transport == "tls",
            srtp_suites=self._srtp_suites,
            zrtp_hash=self.zrtp.hello_hash if self.zrtp is not None else None,
        )
        return bytes(self._pending_answer.local_sdp)

    def _reinvited(self, request: SipRequest) -> None:
        """The peer re-INVITEd or UPDATEd (answered by the SIP layer with our answer): move the
        endpoint to what was agreed, and note whether it holds us. Held, we stop filling the
        line with silence (RFC 3264 §6.1: its sendonly or inactive offer means we must not
        send); resumed, the stream starts again."""
        agreed, self._pending_answer = self._pending_answer, None
        if agreed is not None and request.body:
            self._renegotiated(agreed)
        if request.body:
            self.on_hold = offer_holds(request.body)
            if self.answered and not self.ended.is_set():
                self._endpoint.keep_sending(not self.on_hold)

    def _reoffer_answered(self, sdp: bytes, method: str) -> None:
        """The peer answered our re-offer (or the offer in our 2xx to its offer-less
        re-INVITE, answered in the ACK, or a session refresh): check it like a first answer and
        apply it. An answer that breaks the secure-media policy ends the call (RFC 4568 §7.5);
        any other unusable answer leaves the media as it was."""
        pending, self._pending_offer = self._pending_offer, None
        if not sdp or self.ended.is_set():
            if pending is not None and not sdp:
                self.media = pending[1]  # no answer after all: the old session stays
            return
        offer = (
            pending[0]
            if pending is not None
            else Offer(self.media.local_sdp, self.media.our_crypto)
        )
        try:
            agreed = check_reoffer_answer(offer, sdp)
        except MediaError as exc:
            log.warning("leg %s: the answer to our %s is unusable: %s", self.sid, method, exc)
            if pending is not None:
                self.media = pending[1]
            if isinstance(exc, SecureMediaError):
                self._spawn(self.hangup(exc.reason))
            return
        self._renegotiated(agreed)

    def _reoffer_failed(self, status: int, method: str) -> None:
        """Our re-INVITE or UPDATE was refused: the session stays as it was (RFC 3264 §8)."""
        pending, self._pending_offer = self._pending_offer, None
        if pending is not None:
            self.media = pending[1]
        log.info("leg %s: our %s was answered %d; media unchanged", self.sid, method, status)

    def _renegotiated(self, agreed: NegotiatedMedia) -> None:
        old, self.media = self.media, agreed
        if not self.answered or self.ended.is_set():
            return
        change = apply_change(self._endpoint, old, agreed)
        if change.any:
            log.info(
                "leg %s: media renegotiated (codec %s, remote %s, keys %s)",
                self.sid,
                change.codec,
                change.remote,
                change.keys,
            )
        if change.codec:
            for listener in list(self._media_listeners):
                try:
                    listener(self)
                except Exception:
                    log.exception("leg %s: media listener failed", self.sid)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` beside the leg (a reference is kept until it is done)."""
        task = asyncio.get_running_loop().create_task(work, name=f"leg-{self.sid}-task")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def add_media_listener(self, listener: Callable[[CallLeg], None]) -> None:
        """Call ``listener(leg)`` whenever a renegotiation changes the codec or payload types
        (a bridge then rewires its relay)."""
        self._media_listeners.append(listener)

    def remove_media_listener(self, listener: Callable[[CallLeg], None]) -> None:
        with contextlib.suppress(ValueError):
            self._media_listeners.remove(listener)

    def hold(self) -> None:
        """Put the peer on hold: re-INVITE with our audio ``sendonly`` (RFC 3264 §8.4, RFC 6337
        §5.3); our 20 ms stream goes on (silence or music), theirs may stop."""
        self._reoffer(hold(self.media))

    def resume(self) -> None:
        """Take the peer off hold: re-INVITE with ``sendrecv`` again."""
        self._reoffer(unhold(self.media))

    def reoffer(self, *, codecs: Sequence[str]) -> None:
        """Re-INVITE offering only ``codecs`` (same port, same key): e.g. to move this leg to the
        codec of the leg it is bridged with, so the relay passes packets through instead of
        transcoding. The peer's answer is applied when it comes; a refusal changes nothing."""
        self._reoffer(reoffer(self.media, codecs=codecs))

    def _reoffer(self, offer: Offer) -> None:
        self._check_media()
        if self.ended.is_set():
            raise LocalProtocolError("the call has already ended")
        before = self.media
        self._handle.reinvite(bytes(offer.sdp))
        self._pending_offer = (offer, before)
        self.media = replace(
            self.media, local_sdp=offer.sdp, direction=_audio_direction(offer.sdp, self.media)
        )

    # -- early media (before the answer) --------------------------------------------------------

    def early_media(self) -> None:
        """Inbound, before :meth:`answer`: send ``183 Session Progress`` with our SDP answer and
        start the media now, so the caller hears what we play (a ringback, the far end's early
        audio) while its call is not answered (RFC 3960's gateway model; reliable, with PRACK,
        when the caller requires 100rel). Our 20 ms stream starts at once; the 200 later
        carries the same SDP. Idempotent."""
        if self.answered or self.early:
            return
        if self.ended.is_set():
            raise LocalProtocolError("the call has already ended")
        handle = self._handle
        if not isinstance(handle, UasCall):
            raise LocalProtocolError("only an inbound leg sends early media")
        handle.ring(183, sdp=bytes(self.media.local_sdp))
        self.early = True
        _apply_media(self._endpoint, self.media, self.zrtp)
        self._media_applied = True
        self._endpoint.keep_sending()

    def _peer_early_media(self) -> None:
        """Outbound: the peer's 18x carried its SDP answer (:attr:`media`): receive what it
        sends from now on. We do not send until the answer (a gateway plays, we listen)."""
        self.early = True
        _apply_media(self._endpoint, self.media, self.zrtp)
        self._media_applied = True

    def _peer_answered(self, media: NegotiatedMedia) -> None:
        """Outbound: the 2xx arrived after early media; its SDP (if it differs from the 18x's,
        which it should not) wins, then the media runs as for any answered call."""
        old, self.media = self.media, media
        if self._media_applied:
            apply_change(self._endpoint, old, media)
        self.answered = True
        self._start_media()

    async def play_frames(self, frames: Iterable[bytes]) -> None:
        """Send PCM frames (20 ms each) from an iterable, possibly endless (a ringback): returns
        when it is exhausted, the call ends, or :meth:`stop_playing` is called."""
        self._check_media()
        if self.ended.is_set():
            return
        try:
            await self._endpoint.play(frames)
        except asyncio.CancelledError:
            self._endpoint.stop_playing()
            raise
        except MediaError:
            if self.end_reason is None:
                raise

    async def answer(self) -> None:
        """Inbound: send 200 OK with our SDP answer and start the media. Idempotent."""
        if self.answered:
            return
        if self.ended.is_set():
            raise LocalProtocolError("the call has already ended")
        handle = self._handle
        if not isinstance(handle, UasCall):
            raise LocalProtocolError("only an inbound leg is answered")
        handle.accept(bytes(self.media.local_sdp))
        self.answered = True
        self._start_media()

    async def reject(self, status: int, reason: str, *, warning: str | None = None) -> None:
        """Inbound, before :meth:`answer`: refuse the call with a final status (486, 603...)."""
        handle = self._handle
        if self.answered or not isinstance(handle, UasCall):
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
        if not (self.answered or self.early):
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
