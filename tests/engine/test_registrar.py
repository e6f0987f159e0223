"""The engine as a registrar, with real baresip softphones registering over TLS with SRTP.

A domain with ``credentials`` and ``secure_media = true`` takes REGISTERs over TLS only, with
digest authentication in its realm. baresip ``alice`` registers over TLS (``mediaenc=srtp-mand``);
then a REST call to ``client:alice`` rings it over the very TLS connection it registered over
(the engine opens no connection of its own) and the tone test passes both ways; a second
baresip calls the domain, whose flow ``<Dial><Client>alice</Client>`` bridges the two, tones
both ways; two baresips registered as alice both ring, one answers, the other is cancelled.
Bad input: a wrong password (403), an unknown domain (404), a REGISTER to the secure domain off
TLS (403, never challenged), a Contact flood (bounded, the rest refused), expiries of 0, huge
and too brief. Bindings survive a restart (expired ones do not), and no password reaches the
logs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callxml.engine.devcert import DevCertificate, ensure_dev_certificate
from callxml.engine.server import Engine
from callxml.engine.store import BindingRecord, SqliteStore
from callxml.sip.auth import Credentials, DigestClient, select_challenge
from callxml.sip.message import SipResponse
from support.baresip import BaresipFactory, BaresipOptions, BaresipPeer, best_window, tone_wav
from support.engine import (
    ACCOUNT_SID,
    API_AUTH,
    FlowApp,
    engine_config,
    flow_app,
    running_engine,
    sip_port,
    wait_status,
)
from support.rawsip import RawPeer, request
from support.waiting import until

pytestmark = pytest.mark.peer

DOMAIN = "reg.example.test"
PASSWORD = "alice-Secret-9"
BOB_PASSWORD = "bob-Secret-7"
ALICE_TONE = 440.0
BOB_TONE = 1300.0
OUR_TONE = 1000.0
AOR = f"alice@{DOMAIN}"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FlowApp]:
    async with flow_app(tone_wav(tmp_path / "ours.wav", OUR_TONE, 3000, amplitude=0.3)) as made:
        yield made


def config_for(tmp_path: Path, app: FlowApp, **domain: Any) -> Any:
    dev = ensure_dev_certificate(tmp_path / "data" / "tls")
    settings = {
        "name": DOMAIN,
        "voice_url": f"{app.base}/voice",
        "secure_media": True,
        "digest_algorithms": ["MD5"],  # baresip 1.0 refuses a 401 offering SHA-256 too
        "credentials": [
            {"username": "alice", "password": PASSWORD},
            {"username": "bob", "password": BOB_PASSWORD},
        ],
        **domain,
    }
    return engine_config(
        tmp_path,
        [settings],
        transports=("udp", "tcp", "tls"),
        extra={
            "tls": {"ca_bundle": str(dev.ca)},
            "registrar": {"min_expires": 30, "max_expires": 600, "default_expires": 300},
        },
    )


def registered(engine: Engine, aor: str = AOR) -> int:
    assert engine.registrar is not None
    return len(engine.registrar.registrar.lookup(aor, engine.registrar.clock()))


async def alice_phone(
    baresip: BaresipFactory,
    engine: Engine,
    tmp_path: Path,
    *,
    name: str = "alice",
    answermode: str = "auto",
    password: str = PASSWORD,
    domain: str = DOMAIN,
    play: Path | None = None,
) -> BaresipPeer:
    """A baresip registering as alice over TLS with SRTP required."""
    dev = ensure_dev_certificate(tmp_path / "data" / "tls")
    return await baresip(
        BaresipOptions(
            user="alice",
            domain=domain,
            transport="tls",
            mediaenc="srtp-mand",
            answermode=answermode,
            cert=dev,
            regint=120,
            registrar=f"sip:127.0.0.1:{sip_port(engine, 'tls')};transport=tls",
            password=password,
            play=play or tone_wav(tmp_path / f"{name}.wav", ALICE_TONE, 30_000, amplitude=0.3),
        ),
        name=name,
    )


async def rest_call(engine: Engine, form: dict[str, str]) -> dict[str, Any]:
    url = f"http://127.0.0.1:{engine.http_port}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=form, headers=API_AUTH) as response,
    ):
        body: dict[str, Any] = await response.json()
        assert response.status == 201, body
        return body


def outbound_connections(engine: Engine) -> list[Any]:
    """The SIP connections the engine opened itself (none, when flows are used)."""
    assert engine.phone is not None
    transport = engine.phone.user_agent._transport
    return [s for s in transport._connections.values() if s.outbound]


async def test_a_rest_call_to_a_client_reaches_it_over_its_tls_registration(
    tmp_path: Path, baresip: BaresipFactory, app: FlowApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app.routes["/rest"] = (
        f'<Response><Play>{app.base}/tone.wav</Play><Record maxLength="2" timeout="5" '
        'playBeep="false" action="/recorded"/></Response>'
    )
    config = config_for(tmp_path, app)
    async with running_engine(config) as engine:
        alice = await alice_phone(baresip, engine, tmp_path)
        await until(lambda: registered(engine) == 1)
        [binding] = engine.registrar.registrar.lookup(AOR, engine.registrar.clock())  # type: ignore[union-attr]
        assert binding.transport == "tls" and binding.source_host == "127.0.0.1"
        call = await rest_call(
            engine,
            {"To": "client:alice", "From": "+15550100", "Url": f"{app.base}/rest"},
        )
        await alice.wait_event("CALL_ESTABLISHED", timeout=10)
        await until(lambda: "/recorded" in app.paths(), timeout=20)
        record = await wait_status(engine, call["sid"], {"completed"})
        opened = outbound_connections(engine)
        await alice.wait_event("CALL_CLOSED", timeout=10)
        recording = app.form("/recorded")["RecordingUrl"]
        async with (
            aiohttp.ClientSession() as http,
            http.get(recording, headers=API_AUTH) as response,
        ):
            wav = await response.read()
    assert record.to == "client:alice" and record.direction == "outbound-api"
    assert opened == []  # the INVITE (and the BYE) went over alice's own TLS connection
    assert "SRTP is Enabled" in alice.log()
    assert best_window(alice.received_audio(), OUR_TONE) > 0.5, "alice did not hear the flow"
    assert best_window(wav[44:], ALICE_TONE) > 0.5, "the flow did not hear alice"
    assert PASSWORD not in caplog.text and BOB_PASSWORD not in caplog.text


async def test_dial_client_from_another_caller_bridges_both_ways(
    tmp_path: Path, baresip: BaresipFactory, app: FlowApp
) -> None:
    app.routes["/voice"] = (
        '<Response><Dial action="/dialed" timeout="10">'
        "<Client><Identity>alice</Identity>"
        '<Parameter name="ticket" value="42"/></Client></Dial></Response>'
    )
    config = config_for(tmp_path, app)
    dev = ensure_dev_certificate(tmp_path / "data" / "tls")
    async with running_engine(config) as engine:
        alice = await alice_phone(baresip, engine, tmp_path)
        await until(lambda: registered(engine) == 1)
        bob = await baresip(
            BaresipOptions(
                user="bob",
                domain=DOMAIN,
                transport="tls",
                mediaenc="srtp-mand",
                cert=dev,
                registrar=f"sip:127.0.0.1:{sip_port(engine, 'tls')};transport=tls",
                password=BOB_PASSWORD,
                play=tone_wav(tmp_path / "bob.wav", BOB_TONE, 30_000, amplitude=0.3),
            ),
            name="bob",
        )
        await bob.dial(f"sip:ivr@{DOMAIN};transport=tls")  # through the engine's TLS port
        await alice.wait_event("CALL_ESTABLISHED", timeout=15)
        await bob.wait_event("CALL_ESTABLISHED", timeout=15)
        await asyncio.sleep(3)  # both tones flow through the bridge
        await bob.hangup()
        await until(lambda: "/dialed" in app.paths(), timeout=15)
        store = engine.store
        assert store is not None
        calls = store.list_calls(ACCOUNT_SID)
    dialed = app.form("/dialed")
    assert dialed["DialCallStatus"] == "completed", dialed
    child = next(c for c in calls if c.direction == "outbound-dial")
    assert child.to == "client:alice"
    assert best_window(alice.received_audio(), BOB_TONE) > 0.5, "alice did not hear bob"
    assert best_window(bob.received_audio(), ALICE_TONE) > 0.5, "bob did not hear alice"


async def test_two_devices_ring_one_answers_the_other_is_cancelled(
    tmp_path: Path, baresip: BaresipFactory, app: FlowApp
) -> None:
    app.routes["/rest"] = '<Response><Pause length="1"/></Response>'
    config = config_for(tmp_path, app)
    async with running_engine(config) as engine:
        desk = await alice_phone(baresip, engine, tmp_path, name="desk", answermode="manual")
        soft = await alice_phone(baresip, engine, tmp_path, name="soft", answermode="manual")
        await until(lambda: registered(engine) == 2)
        call = await rest_call(
            engine, {"To": "client:alice", "From": "+15550100", "Url": f"{app.base}/rest"}
        )
        await desk.wait_event("CALL_INCOMING", timeout=10)
        await soft.wait_event("CALL_INCOMING", timeout=10)
        await soft.accept()
        await soft.wait_event("CALL_ESTABLISHED", timeout=10)
        closed = await desk.wait_event("CALL_CLOSED", timeout=10)
        record = await wait_status(engine, call["sid"], {"completed"})
    assert record.status == "completed"
    assert not any(e.get("type") == "CALL_ESTABLISHED" for e in desk.events)
    # libre (baresip's SIP stack) closes a session the far end CANCELs (or BYEs) with
    # ECONNRESET; desk never answered, so this is our CANCEL, not a failure.
    assert closed.get("param") == "Connection reset by peer", closed
    assert "Call established" not in desk.log()


async def test_bad_registrations_are_refused(
    tmp_path: Path, baresip: BaresipFactory, app: FlowApp
) -> None:
    config = config_for(tmp_path, app)
    async with running_engine(config) as engine:
        wrong = await alice_phone(baresip, engine, tmp_path, name="wrong", password="nope")
        await until(lambda: "403 Forbidden" in wrong.log(), what="baresip told 403")
        elsewhere = await alice_phone(
            baresip, engine, tmp_path, name="elsewhere", domain="nowhere.example.test"
        )
        await until(lambda: "404 Not Found" in elsewhere.log(), what="baresip told 404")
        assert registered(engine) == 0


class RawRegistrar:
    """REGISTERs written by hand over a raw TLS (or UDP) connection, with alice's digest
    credentials: for what no well-behaved phone sends (a flood of Contacts, absurd expiries)."""

    def __init__(self, peer: RawPeer, password: str = PASSWORD) -> None:
        self.peer = peer
        self.password = password
        self.digest = DigestClient()
        self.challenge: Any = None
        self.cseq = 0
        self.call_id = "raw-registrar-test@127.0.0.1"

    def _bytes(self, contacts: list[str], expires: str | None) -> bytes:
        self.cseq += 1
        headers = [f"Contact: {c}" for c in contacts]
        if expires is not None:
            headers.append(f"Expires: {expires}")
        if self.challenge is not None:
            value = self.digest.authorize(
                self.challenge, Credentials("alice", self.password), "REGISTER", f"sip:{DOMAIN}"
            )
            headers.append(f"Authorization: {value}")
        return request(
            "REGISTER",
            f"sip:{DOMAIN}",
            port=self.peer.port,
            transport=self.peer.transport,
            headers=headers,
            call_id=self.call_id,
            cseq=self.cseq,
            to=f"sip:alice@{DOMAIN}",
        )

    async def send(self, contacts: list[str], *, expires: str | None = None) -> SipResponse:
        self.peer.send(self._bytes(contacts, expires))
        response = await self.peer.response()
        if response.status == 401 and self.challenge is None:
            self.challenge = select_challenge(response.headers.get_all("WWW-Authenticate"))
            self.peer.send(self._bytes(contacts, expires))
            response = await self.peer.response()
        return response


def client_tls(dev: DevCertificate) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(dev.ca))
    return context


def contacts_of(response: SipResponse) -> list[str]:
    return response.headers.get_all("Contact")


async def test_a_contact_flood_and_absurd_expiries_are_bounded(
    tmp_path: Path, app: FlowApp
) -> None:
    config = config_for(tmp_path, app)
    config = dataclasses.replace(config, registrar_max_bindings=3)
    dev = ensure_dev_certificate(tmp_path / "data" / "tls")
    async with running_engine(config) as engine:
        port = sip_port(engine, "tls")
        async with RawPeer("tls", "127.0.0.1", port, tls=client_tls(dev)) as peer:
            raw = RawRegistrar(peer)
            flood = await raw.send([f"<sip:alice@10.0.0.{i}>" for i in range(1, 41)])
            huge = await raw.send(
                [f"<sip:alice@10.0.1.{i}>" for i in range(1, 4)], expires="4294967295"
            )
            one_more = await raw.send(["<sip:alice@10.0.2.1>"])
            brief = await raw.send(["<sip:alice@10.0.3.1>;expires=5"])
            gone = await raw.send(["<sip:alice@10.0.1.1>"], expires="0")
            left = registered(engine)
            wildcard = await raw.send(["*"], expires="0")
            after = registered(engine)
    assert flood.status == 403 and "at most 3 bindings" in (flood.headers.get("Warning") or "")
    assert huge.status == 200
    assert [c.endswith(";expires=600") for c in contacts_of(huge)] == [True] * 3  # cut to max
    assert one_more.status == 403  # the bound holds across requests
    assert brief.status == 423 and brief.headers.get("Min-Expires") == "30"
    assert gone.status == 200 and len(contacts_of(gone)) == 2 and left == 2
    assert wildcard.status == 200 and contacts_of(wildcard) == [] and after == 0


async def test_a_secure_domain_takes_registers_over_tls_only(tmp_path: Path, app: FlowApp) -> None:
    config = config_for(tmp_path, app)
    async with (
        running_engine(config) as engine,
        RawPeer("udp", "127.0.0.1", sip_port(engine, "udp")) as peer,
    ):
        refused = await RawRegistrar(peer).send(["<sip:alice@127.0.0.1:5555>"])
    assert refused.status == 403  # at once: not even challenged off TLS
    assert "over TLS only" in (refused.headers.get("Warning") or "")
    assert not refused.headers.get_all("WWW-Authenticate")


async def test_bindings_survive_a_restart_and_expired_ones_do_not(
    tmp_path: Path, app: FlowApp
) -> None:
    config = config_for(tmp_path, app)
    dev = ensure_dev_certificate(tmp_path / "data" / "tls")
    async with running_engine(config) as engine:
        port = sip_port(engine, "tls")
        async with RawPeer("tls", "127.0.0.1", port, tls=client_tls(dev)) as peer:
            ok = await RawRegistrar(peer).send(["<sip:alice@127.0.0.1:5555;transport=tls>"])
    assert ok.status == 200
    store = SqliteStore(config.database)  # as the stopped engine left it, plus a lapsed one
    store.update_bindings(
        [BindingRecord(AOR, "contact:old", "sip:alice@10.9.9.9", expires_at=1.0)], []
    )
    store.close()
    async with running_engine(config) as engine:
        assert engine.registrar is not None
        found = engine.registrar.registrar.lookup(AOR, engine.registrar.clock())
    assert [b.contact for b in found] == ["sip:alice@127.0.0.1:5555;transport=tls"]
    assert found[0].transport == "tls"


async def test_a_registered_device_calling_in_is_hung_up_over_its_own_connection(
    tmp_path: Path, baresip: BaresipFactory, app: FlowApp
) -> None:
    """alice, registered over TLS, calls the domain over that connection; the flow hangs up,
    and our BYE goes back over alice's connection (no connection of our own to her Contact)."""
    app.routes["/voice"] = f"<Response><Play>{app.base}/tone.wav</Play><Hangup/></Response>"
    config = config_for(tmp_path, app)
    async with running_engine(config) as engine:
        alice = await alice_phone(baresip, engine, tmp_path)
        await until(lambda: registered(engine) == 1)
        await alice.dial(f"sip:ivr@{DOMAIN};transport=tls")
        await alice.wait_event("CALL_ESTABLISHED", timeout=15)
        closed = await alice.wait_event("CALL_CLOSED", timeout=15)  # our BYE reached her
        opened = outbound_connections(engine)
        store = engine.store
        assert store is not None
        [call] = store.list_calls(ACCOUNT_SID)
        record = await wait_status(engine, call.sid, {"completed"})
    assert opened == []
    assert closed.get("param") == "Connection reset by peer", closed  # libre: a BYE received
    assert record.direction == "inbound" and "SRTP is Enabled" in alice.log()
    assert best_window(alice.received_audio(), OUR_TONE) > 0.5
