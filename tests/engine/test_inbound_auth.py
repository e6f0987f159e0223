"""Digest authentication of inbound calls per SIP domain, with a real SIPp caller.

A domain with ``credentials`` challenges every INVITE with 401 (realm = the domain name); the
right password runs the domain's webhook flow, a wrong one gets 403 and never reaches the
webhook. A domain without credentials is not challenged, and a domain with both
``allowed_ips`` and ``credentials`` admits a listed address or valid credentials.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callxml.engine.server import DomainAuthenticator, Engine
from callxml.sip.auth import Credentials, DigestClient
from callxml.sip.events import Address
from callxml.sip.message import Headers, SipRequest
from support.engine import ACCOUNT_SID, WebApp, engine_config, running_engine, sip_port
from support.ports import Transport
from support.sipp import Sipp, SippRun
from support.waiting import until

pytestmark = pytest.mark.peer

HANGUP = "<Response><Say>Hi</Say><Hangup/></Response>"
USER, PASSWORD = "alice", "correct horse"


@pytest.fixture
async def app() -> AsyncIterator[WebApp]:
    web_app = WebApp({"/voice": lambda form: HANGUP})
    await web_app.start()
    yield web_app
    await web_app.stop()


async def sipp_call(
    sipp: Sipp,
    scenario: str,
    transport: Transport,
    engine: Engine,
    domain: str,
    *,
    username: str = USER,
    password: str = PASSWORD,
) -> SippRun:
    """Start one SIPp caller with credentials against ``domain``, tracing its SIP messages."""
    return await sipp.uac(
        scenario,
        transport,
        f"127.0.0.1:{sip_port(engine, transport)}",
        "ivr",
        keys={"domain": domain},
        auth=(username, password),
        auth_uri=f"ivr@{domain}",  # the digest-uri must be the Request-URI (RFC 2617 §3.2.2.5)
        trace_messages=True,
        timeout=15,
    )


def domains(app: WebApp) -> list[dict[str, object]]:
    creds = [{"username": USER, "password": PASSWORD}, {"username": "bob", "password": "b0b-pw"}]
    return [
        {"name": "auth.test", "voice_url": app.url("/voice"), "credentials": creds},
        {"name": "open.test", "voice_url": app.url("/voice")},
        # allowed_ips and credentials: a listed address OR valid credentials (as Twilio does)
        {
            "name": "listed.test",
            "voice_url": app.url("/voice"),
            "allowed_ips": ["127.0.0.0/8"],
            "credentials": creds,
        },
        {
            "name": "unlisted.test",
            "voice_url": app.url("/voice"),
            "allowed_ips": ["192.0.2.0/24"],
            "credentials": creds,
        },
    ]


async def wait_status(engine: Engine, status: str) -> list[object]:
    store = engine.store
    assert store is not None

    def all_there() -> list[object]:
        calls = list(store.list_calls(ACCOUNT_SID))
        return calls if calls and all(c.status == status for c in calls) else []

    # the final status is written just after the SIP exchange ends
    return await until(all_there, timeout=5, what=f"every call {status}")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_right_password_runs_the_flow(
    tmp_path: Path, sipp: Sipp, app: WebApp, transport: Transport
) -> None:
    async with running_engine(engine_config(tmp_path, domains(app))) as engine:
        caller = await sipp_call(sipp, "uac_auth_answered", transport, engine, "auth.test")
        outcome = await caller.result()
        assert outcome.returncode == 0, outcome.explain()
        calls = await wait_status(engine, "completed")
        assert engine.store is not None
        events = engine.store.list_events(calls[0].sid)  # type: ignore[attr-defined]
    trace = outcome.messages
    assert 'WWW-Authenticate: Digest realm="auth.test"' in trace
    assert 'Authorization: Digest username="alice",realm="auth.test"' in trace
    form = next(form for path, form in app.requests if path == "/voice")
    assert form["SipDomain"] == "auth.test" and form["To"].startswith("sip:ivr@auth.test")
    assert form["SipUsername"] == "alice"  # the digest-authenticated user
    assert len(calls) == 1 and calls[0].status == "completed"  # type: ignore[attr-defined]
    invite = next(e for e in events if e.kind == "sip")
    assert invite.data["admitted_by"] == "digest"


@pytest.mark.parametrize(
    ("username", "password"), [(USER, "wrong"), ("mallory", PASSWORD), ("bob", PASSWORD)]
)
async def test_bad_credentials_get_403(
    tmp_path: Path, sipp: Sipp, app: WebApp, username: str, password: str
) -> None:
    async with running_engine(engine_config(tmp_path, domains(app))) as engine:
        caller = await sipp_call(
            sipp,
            "uac_auth_refused",
            "udp",
            engine,
            "auth.test",
            username=username,
            password=password,
        )
        outcome = await caller.result()
        # SIPp saw 401, then 403 for its credentials
        assert outcome.returncode == 0, outcome.explain()
        assert engine.store is not None
        assert list(engine.store.list_calls(ACCOUNT_SID)) == []  # refused before any record
    assert app.paths() == []  # the webhook is never asked


async def test_domain_without_credentials_is_not_challenged(
    tmp_path: Path, sipp: Sipp, app: WebApp
) -> None:
    async with running_engine(engine_config(tmp_path, domains(app))) as engine:
        # uac_answered expects 100/180/200 only: a 401 would fail the scenario.
        target = f"127.0.0.1:{sip_port(engine, 'udp')}"
        caller = await sipp.uac("uac_answered", "udp", target, "ivr", keys={"domain": "open.test"})
        outcome = await caller.result()
        output = outcome.explain()
        assert outcome.returncode == 0, output
        calls = await wait_status(engine, "completed")
    assert "401 Unauthorized" not in output
    assert app.paths() == ["/voice"] and len(calls) == 1


async def test_allowed_ips_or_credentials(tmp_path: Path, sipp: Sipp, app: WebApp) -> None:
    async with running_engine(engine_config(tmp_path, domains(app))) as engine:
        target = f"127.0.0.1:{sip_port(engine, 'udp')}"
        # A listed source address is let in without a challenge...
        listed = await sipp.uac(
            "uac_answered", "udp", target, "ivr", keys={"domain": "listed.test"}
        )
        outcome = await listed.result()
        assert outcome.returncode == 0, outcome.explain()
        # ...and from an address not listed, valid credentials are enough.
        unlisted = await sipp_call(sipp, "uac_auth_answered", "udp", engine, "unlisted.test")
        outcome = await unlisted.result()
        assert outcome.returncode == 0, outcome.explain()
        calls = await wait_status(engine, "completed")
    domains_hit = sorted(form["SipDomain"] for path, form in app.requests if path == "/voice")
    assert domains_hit == ["listed.test", "unlisted.test"] and len(calls) == 2


# --- DomainAuthenticator without sockets ---------------------------------------------------


def _invite(uri: str) -> SipRequest:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1"),
            ("From", "<sip:a@127.0.0.1>;tag=1"),
            ("To", f"<{uri}>"),
            ("Call-ID", "c1"),
            ("CSeq", "1 INVITE"),
        ]
    )
    return SipRequest("INVITE", uri, headers)


def test_domain_authenticator_selection(tmp_path: Path) -> None:
    config = engine_config(tmp_path, domains(WebApp({})))
    select = DomainAuthenticator(config)
    here = Address("udp", "127.0.0.1", 5555)
    away = Address("udp", "198.51.100.7", 5555)
    server = select(_invite("sip:ivr@AUTH.test"), away)  # the host, case-insensitively
    assert server is not None and server.realm == "auth.test"
    assert select(_invite("sip:ivr@open.test"), away) is None  # no credentials
    assert select(_invite("sip:ivr@nowhere.test"), away) is None  # unknown: routing says 404
    assert select(_invite("tel:+15551234"), away) is None  # not a SIP URI: routing refuses
    assert select(_invite("sip:ivr@listed.test"), here) is None  # a listed address
    unlisted = select(_invite("sip:ivr@unlisted.test"), here)
    assert unlisted is not None and unlisted.realm == "unlisted.test"
    [md5, sha256] = server.challenges(0.0)
    assert (md5.algorithm, sha256.algorithm) == ("MD5", "SHA-256")


def test_a_register_is_always_challenged_and_a_secure_domains_only_over_tls(
    tmp_path: Path,
) -> None:
    """A listed address may place calls without credentials, never register as a user; a
    secure domain's REGISTER is not challenged off TLS (the registrar refuses it, 403)."""
    config = engine_config(
        tmp_path,
        [
            *domains(WebApp({})),
            {
                "name": "secure.test",
                "voice_url": "http://127.0.0.1:1/voice",
                "secure_media": True,
                "credentials": [{"username": USER, "password": PASSWORD}],
            },
        ],
    )
    select = DomainAuthenticator(config)
    here = Address("udp", "127.0.0.1", 5555)
    register = SipRequest("REGISTER", "sip:listed.test", _invite("sip:listed.test").headers)
    server = select(register, here)
    assert server is not None and server.realm == "listed.test"
    secure = SipRequest("REGISTER", "sip:secure.test", _invite("sip:secure.test").headers)
    assert select(secure, here) is None
    over_tls = select(secure, Address("tls", "127.0.0.1", 5555))
    assert over_tls is not None and over_tls.realm == "secure.test"


def test_a_carriers_call_over_a_registration_is_not_challenged(tmp_path: Path) -> None:
    """A carrier cannot answer a challenge: its INVITE over a registration's flow (the TLS
    connection we opened to it) is let through; the same INVITE from anywhere else is not."""
    config = engine_config(tmp_path, domains(WebApp({})))
    flow = Address("tls", "192.0.2.10", 5061)
    select = DomainAuthenticator(config, from_carrier=lambda source: source == flow)
    assert select(_invite("sip:ivr@auth.test"), flow) is None
    assert select(_invite("sip:ivr@auth.test"), Address("tls", "192.0.2.10", 40000)) is not None


def test_domain_authenticator_secret_is_per_start(tmp_path: Path) -> None:
    config = engine_config(tmp_path, domains(WebApp({})))
    request = _invite("sip:ivr@auth.test")
    away = Address("udp", "198.51.100.7", 5555)
    first, second = (
        DomainAuthenticator(config)(request, away),
        DomainAuthenticator(config)(request, away),
    )
    assert first is not None and second is not None
    [challenge, *_] = first.challenges(10.0)
    answer = DigestClient().authorize(
        challenge, Credentials(USER, PASSWORD), "INVITE", "sip:ivr@auth.test"
    )
    assert first.verify(answer, "INVITE", "sip:ivr@auth.test", 11.0).ok
    assert second.verify(answer, "INVITE", "sip:ivr@auth.test", 11.0).reason == "unknown nonce"
