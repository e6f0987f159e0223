"""ZRTP on a live leg: the asyncio skin around :class:`callxml.media.zrtp.ZrtpSession`.

Owns wiring one ZRTP exchange to one RTP endpoint: the endpoint's ZRTP packets go to the
session (:meth:`RtpEndpoint.set_packet_handler`), what it answers goes out on the media port
(:meth:`RtpEndpoint.send_control`), its timers run on the loop clock, media stays blocked
(:meth:`RtpEndpoint.block_clear_media`) until the exchange hands over SRTP keys exactly as SDES
does (:meth:`RtpEndpoint.set_srtp`), and the retained secrets go to the cache (our store).

It must not decide what a failure means for the call: :meth:`ZrtpKeying.wait` raises
:class:`SecureMediaError` with the reason and the leg (or its owner) ends the call. Never logs
keys or retained secrets; the SAS is not a secret (it is read aloud).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from callxml.errors import SecureMediaError
from callxml.media.mmsg import Address
from callxml.media.rtp import PacketKind
from callxml.media.stream import RtpEndpoint, SrtpKeys
from callxml.media.zrtp import (
    MemoryZrtpCache,
    RetainedSecrets,
    ZrtpCache,
    ZrtpResult,
    ZrtpSession,
)

log = logging.getLogger(__name__)

#: Longest a leg waits for ZRTP to complete before it gives up (RFC 6189 §6 retransmissions
#: alone take under 10 s).
ZRTP_TIMEOUT = 15.0

_DEFAULT_CACHE = MemoryZrtpCache()


class ZrtpKeying:
    """One ZRTP exchange on ``endpoint``. Make it before the SDP (its :attr:`hello_hash` goes
    in ``a=zrtp-hash``), :meth:`start` it once the peer's address is known, :meth:`wait` for
    the result."""

    def __init__(
        self,
        endpoint: RtpEndpoint,
        cache: ZrtpCache | None = None,
        *,
        timeout: float = ZRTP_TIMEOUT,
    ) -> None:
        self.endpoint = endpoint
        self.cache = cache or _DEFAULT_CACHE
        self.session = ZrtpSession(
            zid=self.cache.zrtp_zid(),
            ssrc=endpoint.ssrc,
            lookup=self._lookup,
            timeout=timeout,
        )
        self._done: asyncio.Future[ZrtpResult] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._started = False

    @property
    def hello_hash(self) -> str:
        return self.session.hello_hash

    @property
    def result(self) -> ZrtpResult | None:
        return self.session.result

    def __repr__(self) -> str:
        return f"ZrtpKeying({self.session!r})"

    def _lookup(self, peer_zid: bytes) -> RetainedSecrets | None:
        try:
            return self.cache.zrtp_secrets(peer_zid)
        except Exception:  # a broken store must not break the exchange: no continuity then
            log.exception("ZRTP cache lookup failed")
            return None

    def start(self, their_hello_hash: str | None = None) -> None:
        """Block clear media, take the endpoint's ZRTP packets, send our first Hello."""
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        if their_hello_hash is not None:
            self.session.expect_hello_hash(their_hello_hash)
        self.endpoint.block_clear_media()
        self.endpoint.set_packet_handler(PacketKind.ZRTP, self._received)
        self._send(self.session.start(loop.time()))

    def _received(self, packet: bytes, addr: Address) -> None:
        loop = asyncio.get_running_loop()
        self._send(self.session.receive(packet, loop.time()))

    def _on_timer(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        self._send(self.session.handle_timer(loop.time()))

    def _send(self, packets: list[bytes]) -> None:
        for packet in packets:
            self.endpoint.send_control(packet)
        self._after()

    def _after(self) -> None:
        """Re-arm the timer, or settle the outcome once the session is done."""
        session = self.session
        done = self._done
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if session.state == "secure" and done is not None and not done.done():
            result = session.result
            assert result is not None
            self.endpoint.set_srtp(SrtpKeys(result.suite, result.our_key, result.their_key))
            try:
                self.cache.save_zrtp_secrets(result.peer_zid, result.cache_update)
            except Exception:
                log.exception("ZRTP cache update failed")
            log.info(
                "ZRTP secure: %s SAS %s%s",
                result.algorithms,
                result.sas,
                " (cache match)" if result.cache_match else "",
            )
            done.set_result(result)
        elif session.state == "failed" and done is not None and not done.done():
            reason = session.failure or "ZRTP failed"
            log.info("ZRTP failed: %s (ignored: %s)", reason, session.ignored)
            done.set_exception(SecureMediaError(reason))
        when = session.next_timer()
        if when is not None and not session.done:
            self._timer = asyncio.get_running_loop().call_at(when, self._on_timer)

    async def wait(self) -> ZrtpResult:
        """The completed exchange; :class:`SecureMediaError` with the reason when it failed or
        timed out (the session's own timeout ends it)."""
        if self._done is None:
            raise SecureMediaError("ZRTP was never started")
        return await asyncio.shield(self._done)

    def close(self) -> None:
        """Stop the timers and stop taking packets (the leg is ending)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with contextlib.suppress(ValueError):
            self.endpoint.set_packet_handler(PacketKind.ZRTP, None)
        done = self._done
        if done is not None and not done.done():
            done.set_exception(SecureMediaError("the call ended before ZRTP completed"))
            done.exception()  # retrieved: nobody may be waiting
