"""callxml registers with a carrier over TLS and takes the carrier's calls over that connection.

A real Kamailio plays the carrier: a registrar (``registrar``/``usrloc``, digest with
``auth``'s ``pv_www_authenticate`` in MD5 or SHA-256, ``nathelper``'s ``fix_nated_register`` so
the binding keeps the address our REGISTER came from) on TLS, which routes an INVITE for the
registered user to callxml with ``lookup("location")`` **over the connection the REGISTER came
over** (``set_forward_no_connect``: it may not open a new one). A baresip caller dials the
carrier over TLS with SRTP required; the INVITE reaches callxml over the registered flow (its
source is Kamailio's TLS listening port, not a port of a new connection), the registration's
domain flow runs with SRTP, and tones pass both ways. The registration refreshes, survives
RFC 5626 keep-alives, re-registers when its connection dies, backs off on a wrong password,
answers 423 with Kamailio's Min-Expires, and unregisters (Expires 0) when the engine stops.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callxml.engine.devcert import DevCertificate
from callxml.engine.server import Engine
from support.baresip import BaresipFactory, BaresipOptions, best_window, tone_wav
from support.engine import (
    ACCOUNT_SID,
    API_AUTH,
    FlowApp,
    engine_config,
    flow_app,
    running_engine,
)
from support.kamailio import Kamailio, KamailioConfig, kamailio
from support.waiting import until

pytestmark = pytest.mark.peer

USER = "carrier-user"
PASSWORD = "carrier-Secret-5"
DOMAIN = "carrier.callxml.test"
THEIR_TONE = 440.0
OUR_TONE = 1000.0

#: The carrier: REGISTER over TLS with digest (403 for a wrong password), bindings that keep the
#: source of the REGISTER (its connection), INVITEs to a registered user over that connection.
CARRIER_ROUTE = f"""
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    xlog("L_NOTICE", "REQ $rm $ru $pr\\n");
    force_rport();
    if (is_method("REGISTER")) {{
        xlog("L_NOTICE", "REG expires=$hdr(Expires) from $si:$sp $pr ci=$ci cseq=$cs");
        xlog("L_NOTICE", " $hdr(Authorization)\\n");
        pv_www_authenticate("$td", "{PASSWORD}", "0");
        $var(rc) = $rc;
        if ($var(rc) == -2 || $var(rc) == -3) {{ sl_send_reply("403", "Forbidden"); exit; }}
        if ($var(rc) < 0) {{ www_challenge("$td", "0"); exit; }}
        if ($au != "{USER}") {{ sl_send_reply("403", "Forbidden"); exit; }}
        consume_credentials();
        fix_nated_register();
        if (!save("location")) {{ sl_reply_error(); }}
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("INVITE")) {{
        record_route();
        if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
        xlog("L_NOTICE", "LOOKUP $ru via $du\\n");
        set_forward_no_connect();
        if (!t_relay()) {{ sl_reply_error(); }}
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
"""


def carrier(
    dev: DevCertificate, *, algorithm: str = "MD5", min_expires: int = 60, max_expires: int = 3600
) -> KamailioConfig:
    return KamailioConfig(
        cert=dev,
        route=CARRIER_ROUTE,
        modules=("usrloc", "registrar", "auth", "nathelper"),
        params=(
            ("usrloc", "db_mode", 0),
            ("auth", "algorithm", algorithm),
            ("registrar", "min_expires", min_expires),
            ("registrar", "min_expires_mode", 1),  # 423 Interval Too Brief, not a silent raise
            ("registrar", "max_expires", max_expires),
            ("registrar", "received_avp", "$avp(RECEIVED)"),
            ("nathelper", "received_avp", "$avp(RECEIVED)"),
        ),
        globals=("tcp_connection_lifetime=3600",),
    )


def registers(proxy: Kamailio) -> list[str]:
    """The Expires of each REGISTER Kamailio routed, in order."""
    return re.findall(r"REG expires=(\S*) from", proxy.log())


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FlowApp]:
    async with flow_app(tone_wav(tmp_path / "ours.wav", OUR_TONE, 3000, amplitude=0.3)) as made:
        yield made


def config_for(
    tmp_path: Path, app: FlowApp, dev: DevCertificate, proxy: Kamailio, **registration: Any
) -> Any:
    """An engine with a secure domain and one ``[[registrations]]`` entry for the carrier (our
    TLS certificate: the development one, which Kamailio does not check; theirs checked
    against its CA)."""
    entry = {
        "name": "carrier",
        "registrar": f"sips:127.0.0.1:{proxy.port('tls')}",
        "username": USER,
        "password": PASSWORD,
        "domain": DOMAIN,
        "expires": 300,
        "retry_base": 1,
        "retry_max": 4,
        **registration,
    }
    return engine_config(
        tmp_path,
        [{"name": DOMAIN, "voice_url": f"{app.base}/voice", "secure_media": True}],
        transports=("udp", "tcp", "tls"),
        extra={"tls": {"ca_bundle": str(dev.ca), "cert": str(dev.cert), "key": str(dev.key)}},
        registrations=[entry],
    )


def view(engine: Engine) -> Any:
    assert engine.registrations is not None
    [only] = engine.registrations.snapshot()
    return only


def state(engine: Engine) -> str:
    return str(view(engine).state)


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_carrier_calls_arrive_over_the_registered_tls_connection_with_srtp(
    tmp_path: Path,
    app: FlowApp,
    dev_cert: DevCertificate,
    baresip: BaresipFactory,
    caplog: pytest.LogCaptureFixture,
    algorithm: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    app.routes["/voice"] = (
        f'<Response><Play>{app.base}/tone.wav</Play><Record maxLength="2" timeout="5" '
        'playBeep="false" action="/recorded"/></Response>'
    )
    async with kamailio(carrier(dev_cert, algorithm=algorithm), tmp_path / "kamailio") as proxy:
        config = config_for(tmp_path, app, dev_cert, proxy, keepalive=1)
        async with running_engine(config) as engine:
            await until(lambda: state(engine) == "registered", what="registered with Kamailio")
            registered = view(engine)
            await asyncio.sleep(2.5)  # RFC 5626 keep-alives go by; the flow stays up
            caller = await baresip(
                BaresipOptions(
                    user="caller",
                    transport="tls",
                    mediaenc="srtp-mand",
                    cert=dev_cert,
                    play=tone_wav(tmp_path / "theirs.wav", THEIR_TONE, 30_000, amplitude=0.3),
                ),
                name="caller",
            )
            await caller.dial(f"sip:{USER}@127.0.0.1:{proxy.port('tls')};transport=tls")
            await caller.wait_event("CALL_ESTABLISHED", timeout=15)
            await until(lambda: "/recorded" in app.paths(), timeout=20)
            await caller.wait_event("CALL_CLOSED", timeout=15)
            store = engine.store
            assert store is not None
            [call] = store.list_calls(ACCOUNT_SID)
            [received] = [e.data for e in store.list_events(call.sid, kind="sip")][:1]
            recording = await fetch_recording(app.form("/recorded")["RecordingUrl"])
            still = view(engine)
        log = proxy.log()
        sent = proxy.sent()
    # Registered over TLS with digest in the chosen algorithm; the flow is Kamailio's TLS port.
    assert registered.flow == f"tls:127.0.0.1:{proxy.port('tls')}"
    assert registered.last_response == "200 OK" and registered.registered_until
    assert re.search(rf"REG expires=300 .*Digest .*algorithm={algorithm}", log)
    assert still.state == "registered" and registers(proxy)[:2] == ["300", "300"]
    # The carrier's INVITE reached us over that very connection (no new connection from
    # Kamailio: it came from its listening port), ran the registration's domain, with SRTP.
    assert ("INVITE", next(r for m, r, _ in sent if m == "INVITE"), "tls") in sent
    assert received["source"] == f"127.0.0.1:{proxy.port('tls')}" and received["transport"] == "tls"
    assert received["admitted_by"] == "registration" and received["domain"] == DOMAIN
    assert call.direction == "inbound" and call.status == "completed"
    assert "SRTP is Enabled" in caller.log()
    assert best_window(caller.received_audio(), OUR_TONE) > 0.5, "the caller did not hear us"
    assert best_window(recording[44:], THEIR_TONE) > 0.5, "we did not hear the caller"
    # Stopping unregistered (Expires 0), and the password never reached the logs.
    assert registers(proxy)[-1] == "0"
    assert "registration carrier: registered until" in caplog.text
    assert PASSWORD not in caplog.text


async def fetch_recording(url: str) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(url, headers=API_AUTH) as response:
        assert response.status == 200
        return await response.read()


async def test_a_dead_flow_is_registered_again_over_a_new_connection(
    tmp_path: Path, app: FlowApp, dev_cert: DevCertificate, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 5626 §4.4.1: the keep-alive finds the connection gone; callxml registers again at
    once, over a new connection, and stays reachable."""
    caplog.set_level(logging.WARNING)
    async with kamailio(carrier(dev_cert), tmp_path / "kamailio") as proxy:
        config = config_for(tmp_path, app, dev_cert, proxy, keepalive=1)
        async with running_engine(config) as engine:
            await until(lambda: state(engine) == "registered")
            assert engine.phone is not None
            transport = engine.phone.user_agent._transport
            [old] = [s for s in transport._connections.values() if s.outbound]
            before = len(registers(proxy))
            old.abort()  # the NAT dropped it, say: the next ping finds no connection
            await until(lambda: len(registers(proxy)) > before, what="a new REGISTER")
            await until(lambda: state(engine) == "registered")
            [new] = [s for s in transport._connections.values() if s.outbound]
            assert new is not old and new.is_open
    assert "registration carrier: the flow failed" in caplog.text


async def test_a_wrong_password_fails_and_backs_off(
    tmp_path: Path, app: FlowApp, dev_cert: DevCertificate, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with kamailio(carrier(dev_cert), tmp_path / "kamailio") as proxy:
        config = config_for(tmp_path, app, dev_cert, proxy, password="not-the-password")
        async with running_engine(config) as engine:
            await until(lambda: view(engine).failures >= 2, timeout=15, what="two failures")
            failing = view(engine)
        attempts = registers(proxy)
    assert failing.state == "failing" and failing.last_response == "403 Forbidden"
    assert failing.registered_until is None and failing.next_attempt is not None
    assert len(attempts) == 4  # challenge + 403, twice: a wrong password never loops
    assert "registration carrier: failing: 403 Forbidden" in caplog.text
    assert "not-the-password" not in caplog.text


async def test_423_interval_too_brief_is_answered_with_min_expires(
    tmp_path: Path, app: FlowApp, dev_cert: DevCertificate
) -> None:
    async with kamailio(carrier(dev_cert, min_expires=600), tmp_path / "kamailio") as proxy:
        config = config_for(tmp_path, app, dev_cert, proxy, expires=120)
        async with running_engine(config) as engine:
            await until(lambda: state(engine) == "registered")
            registered = view(engine)
        asked = registers(proxy)
    assert asked[0] == "120" and "600" in asked  # 423, then again with Kamailio's minimum
    assert registered.expires == 600 and registered.last_response == "200 OK"


async def test_registrations_json_shows_each_registration_and_never_a_password(
    tmp_path: Path, app: FlowApp, dev_cert: DevCertificate
) -> None:
    async with kamailio(carrier(dev_cert), tmp_path / "kamailio") as proxy:
        config = config_for(tmp_path, app, dev_cert, proxy)
        async with running_engine(config) as engine:
            await until(lambda: state(engine) == "registered")
            base = f"http://127.0.0.1:{engine.http_port}/2010-04-01/Accounts/{ACCOUNT_SID}"
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{base}/Registrations.json", headers=API_AUTH) as response,
            ):
                status, body, text = response.status, await response.json(), await response.text()
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{base}/Registrations.json") as anonymous,
            ):
                refused = anonymous.status
    assert status == 200 and refused == 401
    [entry] = body["registrations"]
    assert entry["name"] == "carrier" and entry["state"] == "registered"
    assert entry["registrar"] == f"sips:127.0.0.1:{proxy.port('tls')}"
    assert entry["domain"] == DOMAIN and entry["username"] == USER
    assert entry["registered_until"] and entry["last_response"] == "200 OK"
    assert entry["expires"] == 300 and entry["failures"] == 0
    assert entry["flow"] == f"tls:127.0.0.1:{proxy.port('tls')}"
    assert PASSWORD not in text


async def test_the_registration_is_refreshed_before_what_the_carrier_granted_lapses(
    tmp_path: Path, app: FlowApp, dev_cert: DevCertificate
) -> None:
    """We ask for 300 s; Kamailio grants 10 (its max_expires): the refresh (at 80 %, 8 s) comes
    on the same Call-ID with a higher CSeq, over the same connection, and the binding never
    lapses meanwhile."""
    async with kamailio(
        carrier(dev_cert, min_expires=1, max_expires=10), tmp_path / "kamailio"
    ) as proxy:
        config = config_for(tmp_path, app, dev_cert, proxy)
        async with running_engine(config) as engine:
            await until(lambda: state(engine) == "registered")
            first = view(engine)
            lapsed: list[Any] = []

            async def watch() -> None:
                while True:
                    now = view(engine)
                    if now.state != "registered" and now.registered_until is None:
                        lapsed.append(now)
                    await asyncio.sleep(0.1)

            watcher = asyncio.ensure_future(watch())
            try:
                await until(lambda: len(registers(proxy)) >= 4, timeout=30, what="a refresh")
                await until(lambda: state(engine) == "registered" and view(engine).failures == 0)
            finally:
                watcher.cancel()
            later = view(engine)
        log = proxy.log()
    sent = re.findall(r"REG expires=300 from \S+ tls ci=(\S+) cseq=(\d+)", log)
    assert len({call_id for call_id, _ in sent}) == 1  # §10.2: one Call-ID for the boot cycle
    assert [int(cseq) for _, cseq in sent] == sorted(int(cseq) for _, cseq in sent)
    assert len(sent) >= 3  # registered (challenge + answer), then refreshed
    assert lapsed == []
    assert later.flow == first.flow  # over the same connection
    assert later.registered_until is not None and first.registered_until is not None
    assert later.registered_until > first.registered_until
