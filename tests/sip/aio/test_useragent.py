"""Our UAC calling our UAS over real loopback sockets: UDP, TCP and TLS with strict checks."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from callxml.errors import ConfigError
from callxml.sip.aio.resolver import StaticResolver
from callxml.sip.aio.transport import ListenerConfig
from callxml.sip.aio.useragent import CallResult, UasCall, UserAgent, warning_value
from callxml.sip.auth import Credentials, DigestServer
from callxml.sip.message import SipResponse
from callxml.sip.timers import TimerConfig
from support.certs import Pki

TIMEOUT = 10.0
FAST = TimerConfig(t1=0.05, t2=0.4, t4=0.5)  # short RFC timers keep failures quick
OFFER = b"v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
ANSWER = b"v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
RESOLVER = StaticResolver({"sip.example.test": "127.0.0.1", "other.example.test": "127.0.0.1"})


@asynccontextmanager
async def agent(
    transports: tuple[str, ...] = ("udp", "tcp"),
    on_incoming: Callable[[UasCall], Any] | None = None,
    **options: Any,
) -> AsyncIterator[UserAgent]:
    ua = UserAgent(
        listeners=[ListenerConfig(t) for t in transports],
        on_incoming=on_incoming,
        resolver=RESOLVER,
        timers=FAST,
        **options,
    )
    await ua.start()
    try:
        yield ua
    finally:
        await ua.close()


def port(ua: UserAgent, transport: str) -> int:
    return ua.local(transport).port


class Answering:
    """An incoming-call handler that rings, then answers or rejects, and records the call."""

    def __init__(self, reject: tuple[int, str] | None = None) -> None:
        self.reject = reject
        self.calls: asyncio.Queue[UasCall] = asyncio.Queue()

    def __call__(self, call: UasCall) -> None:
        self.calls.put_nowait(call)
        call.ring()
        if self.reject is None:
            call.accept(ANSWER)
        else:
            call.reject(self.reject[0], warning=self.reject[1])

    async def next(self) -> UasCall:
        return await asyncio.wait_for(self.calls.get(), TIMEOUT)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_call_answer_and_bye(transport: str) -> None:
    handler = Answering()
    async with agent(on_incoming=handler) as uas, agent() as uac:
        suffix = "" if transport == "udp" else ";transport=tcp"
        call = uac.invite(f"sip:bob@127.0.0.1:{port(uas, transport)}{suffix}", sdp=OFFER)
        updates = [u async for u in call.updates()]
        result = await call.result(TIMEOUT)
        assert result.answered and result.status == 200
        assert result.response is not None and result.response.body == ANSWER
        assert any(isinstance(u, SipResponse) and u.status == 180 for u in updates)
        assert isinstance(updates[-1], CallResult)
        assert call.dialog is not None and call.dialog.remote_tag

        inbound = await handler.next()
        assert inbound.transport == transport and not inbound.arrived_over_tls
        assert inbound.peer.host == "127.0.0.1"
        assert inbound.sdp == OFFER
        await inbound.confirmed(TIMEOUT)

        call.bye()
        assert await inbound.wait_ended(TIMEOUT) == "BYE"
        assert call.ended


async def test_reject_with_reason_and_warning() -> None:
    handler = Answering(reject=(488, 'secure media "required"'))
    async with agent(on_incoming=handler) as uas, agent() as uac:
        call = uac.invite(f"sip:bob@127.0.0.1:{port(uas, 'udp')}", sdp=OFFER)
        result = await call.result(TIMEOUT)
        assert (result.status, result.reason) == (488, "Not Acceptable Here")
        assert result.response is not None
        warning = result.response.headers.get("Warning")
        assert warning == warning_value(uas.warn_agent("udp"), 'secure media "required"')
        assert warning is not None and warning.endswith('"secure media \\"required\\""')
        assert await call.wait_ended(TIMEOUT) == "488 Not Acceptable Here"


async def test_digest_challenge_is_answered() -> None:
    handler = Answering()
    users = {"alice": "s3cret"}
    server = DigestServer("callxml.test", b"0123456789abcdef0123", users.get)
    async with agent(on_incoming=handler, authenticator=server) as uas, agent() as uac:
        target = f"sip:bob@127.0.0.1:{port(uas, 'udp')}"
        wrong = uac.invite(target, sdp=OFFER, credentials=Credentials("alice", "nope"))
        assert (
            await wrong.result(TIMEOUT)
        ).status == 403  # a wrong password is refused, not re-challenged
        call = uac.invite(target, sdp=OFFER, credentials=Credentials("alice", "s3cret"))
        assert (await call.result(TIMEOUT)).answered
        inbound = await handler.next()
        assert inbound.request.headers.get("Authorization") is not None
        call.bye()
        await inbound.wait_ended(TIMEOUT)


async def test_cancel_before_answer() -> None:
    ringing: asyncio.Queue[UasCall] = asyncio.Queue()

    def ring_only(call: UasCall) -> None:
        call.ring()
        ringing.put_nowait(call)

    async with agent(on_incoming=ring_only) as uas, agent() as uac:
        call = uac.invite(f"sip:bob@127.0.0.1:{port(uas, 'udp')}", sdp=OFFER)
        inbound = await asyncio.wait_for(ringing.get(), TIMEOUT)
        async for update in call.updates():
            if isinstance(update, SipResponse) and update.status == 180:
                break
        call.cancel()
        assert (await call.result(TIMEOUT)).status == 487
        assert await inbound.wait_ended(TIMEOUT) == "CANCEL"


async def test_async_handler_and_no_handler() -> None:
    async def slow_answer(call: UasCall) -> None:
        await asyncio.sleep(0)
        call.accept(ANSWER)

    async with agent(on_incoming=slow_answer) as uas, agent() as uac, agent() as nobody:
        call = uac.invite(f"sip:bob@127.0.0.1:{port(uas, 'udp')}", sdp=OFFER)
        assert (await call.result(TIMEOUT)).answered
        call.bye()
        refused = uac.invite(f"sip:bob@127.0.0.1:{port(nobody, 'udp')}", sdp=OFFER)
        assert (await refused.result(TIMEOUT)).status == 480


async def test_unreachable_tcp_peer_fails_with_the_transport_error() -> None:
    async with agent() as uac:
        call = uac.invite("sip:bob@127.0.0.1:9;transport=tcp", sdp=OFFER)
        result = await call.result(TIMEOUT)
        assert result.status == 503
        assert "cannot connect to tcp:127.0.0.1:9" in result.detail


# -- TLS -----------------------------------------------------------------------------------


def tls_options(pki: Pki, cert: str, **changes: Any) -> dict[str, Any]:
    return {"tls": dataclasses.replace(getattr(pki, cert), ca_data=pki.ca_pem, **changes)}


async def test_tls_call_with_strict_verification(pki: Pki) -> None:
    handler = Answering()
    async with (
        agent(("tls",), on_incoming=handler, **tls_options(pki, "server")) as uas,
        agent(("tls",), **tls_options(pki, "client")) as uac,
    ):
        call = uac.invite(f"sips:bob@sip.example.test:{port(uas, 'tls')}", sdp=OFFER)
        result = await call.result(TIMEOUT)
        assert result.answered, result
        inbound = await handler.next()
        assert inbound.transport == "tls" and inbound.arrived_over_tls
        assert inbound.request.uri.startswith("sips:")
        await inbound.confirmed(TIMEOUT)
        call.bye()
        assert await inbound.wait_ended(TIMEOUT) == "BYE"


@pytest.mark.parametrize(
    ("server_cert", "error"),
    [
        ("other", "does not match 'sip.example.test'"),
        ("wildcard", "wildcard certificates are refused"),
    ],
)
async def test_tls_call_to_bad_certificate_fails_clearly(
    pki: Pki, server_cert: str, error: str
) -> None:
    handler = Answering()
    async with (
        agent(("tls",), on_incoming=handler, **tls_options(pki, server_cert)) as uas,
        agent(("tls",), **tls_options(pki, "client")) as uac,
    ):
        call = uac.invite(f"sips:bob@sip.example.test:{port(uas, 'tls')}", sdp=OFFER)
        result = await call.result(TIMEOUT)
        assert result.status == 503 and not result.answered
        assert error in result.detail
        assert handler.calls.empty()  # the INVITE never left


async def test_failing_handler_rejects_with_500_and_the_agent_survives() -> None:
    async def broken(call: UasCall) -> None:
        raise RuntimeError("application bug")

    handler = Answering()
    async with agent(on_incoming=broken) as uas, agent(on_incoming=handler) as uac:
        call = uac.invite(f"sip:bob@127.0.0.1:{port(uas, 'udp')}", sdp=OFFER)
        assert (await call.result(TIMEOUT)).status == 500
        # The same agent still places calls afterwards.
        back = uas.invite(f"sip:alice@127.0.0.1:{port(uac, 'udp')}", sdp=OFFER)
        assert (await back.result(TIMEOUT)).answered
        back.bye()


async def test_wildcard_bind_needs_advertise() -> None:
    ua = UserAgent(listeners=[ListenerConfig("udp", host="0.0.0.0")])
    with pytest.raises(ConfigError, match="wildcard bind; set advertise"):
        await ua.start()
    await ua.close()
    advertised = UserAgent(listeners=[ListenerConfig("udp", host="0.0.0.0", advertise="127.0.0.1")])
    await advertised.start()
    try:
        assert advertised.local("udp").host == "127.0.0.1"
        with pytest.raises(ConfigError, match="no tcp listener"):
            advertised.local("tcp")
    finally:
        await advertised.close()
