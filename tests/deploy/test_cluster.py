"""The clustered service as deployed (issue 14): Kamailio running the shipped
deploy/kamailio/kamailio.cfg in front of two ``callxml serve`` engines that share a PostgreSQL
store, on loopback addresses of their own.

What must hold, each checked against the real processes: calls through the proxy are spread
over both engines and all complete; a call runs on one engine and is reachable through the
REST API of the other; a call over TLS stays TLS on both hops with SRTP end to end; REGISTER
reaches an engine; and when one engine is killed with SIGKILL mid-calls, the proxy stops
sending to it, new calls all land on the survivor and succeed, and the dead engine's calls
are marked failed once, by the survivor, after its lease ran out.

(The engine-level cluster behaviour without the proxy is tests/engine/test_cluster.py.)
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callxml.engine.devcert import DevCertificate
from callxml.runtime import Phone
from callxml.sip.aio.tls import TlsConfig
from callxml.sip.aio.transport import ListenerConfig
from callxml.sip.auth import Credentials, DigestClient, select_challenge
from callxml.sip.message import SipResponse
from support.certs import dev_certificate
from support.cluster import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PLAIN_SET,
    TLS_SET,
    EngineProcess,
    Proxy,
    engine_of,
    free_media_port,
    shipped_kamailio,
    start_engine,
)
from support.engine import WebApp, web_app
from support.postgres import PostgresServer
from support.rawsip import RawPeer, request
from support.sipp import Sipp
from support.waiting import until

pytestmark = pytest.mark.peer

API_AUTH = {
    "Authorization": "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
}
UNFINISHED = ("queued", "initiated", "ringing", "in-progress")
#: Each domain's flow (the webhook's document).
FLOWS = {
    "/hangup": "<Response><Hangup/></Response>",
    "/hold": '<Response><Say>Hi</Say><Pause length="30"/></Response>',
    "/secure": "<Response><Say>Hi</Say><Hangup/></Response>",
}
#: A registrar domain (it has credentials): devices register to it through the proxy.
REGISTRAR_DOMAIN = "reg.test"
ALICE_PASSWORD = "alice-Secret-9"
#: What a REST call to alice runs once she answers.
ALICE_FLOW = '<Response><Pause length="1"/><Hangup/></Response>'


@pytest.fixture(scope="session")
def cluster_cert(tmp_path_factory: pytest.TempPathFactory) -> DevCertificate:
    """One certificate for the proxy and both engines (each verifies the others against its
    CA), issued for every loopback address they use."""
    names = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "localhost")
    return dev_certificate(tmp_path_factory.mktemp("cluster-cert"), names)


def domains(app: WebApp) -> str:
    """``cluster.test`` hangs up at once, ``hold.test`` answers and holds the call,
    ``secure.test`` wants SRTP (SDES), answers, says hi and hangs up; ``reg.test`` is a
    registrar domain (alice may register)."""
    text = ""
    for name, path, extra in (
        ("cluster.test", "/hangup", ""),
        ("hold.test", "/hold", ""),
        ("secure.test", "/secure", 'media_encryption = "sdes"\n'),
        (
            REGISTRAR_DOMAIN,
            "/hangup",
            f'credentials = [{{username = "alice", password = "{ALICE_PASSWORD}"}}]\n',
        ),
    ):
        text += (
            f'[[domains]]\nname = "{name}"\naccount = "{ACCOUNT_SID}"\n'
            f'voice_url = "{app.url(path)}"\n{extra}\n'
        )
    return text


@dataclass
class Deployment:
    a: EngineProcess
    b: EngineProcess
    proxy: Proxy
    app: WebApp
    server: PostgresServer
    database: str

    @property
    def engines(self) -> tuple[EngineProcess, EngineProcess]:
        return self.a, self.b

    def rows(self, where: str = "TRUE") -> list[dict[str, Any]]:
        """Call records (sid, to, status, node, error) matching ``where``."""
        found = self.server.sql(
            self.database, f'SELECT sid, "to", status, node, error FROM calls WHERE {where}'
        )
        return [dict(zip(("sid", "to", "status", "node", "error"), r, strict=True)) for r in found]

    def to(self, domain: str) -> str:
        return f"\"to\" LIKE '%@{domain}%'"

    def explain(self) -> str:
        """Both engines' logs and the proxy's, for an assertion message."""
        return "\n".join(
            [f"--- engine {e.node} ---\n{e.log()[-2000:]}" for e in self.engines]
            + [f"--- kamailio ---\n{self.proxy.log()[-4000:]}"]
        )


@pytest.fixture
async def deployment(
    tmp_path: Path,
    postgres_server: PostgresServer,
    postgres_url: str,
    cluster_cert: DevCertificate,
) -> AsyncIterator[Deployment]:
    async with web_app({path: lambda form, doc=doc: doc for path, doc in FLOWS.items()}) as app:
        common: dict[str, Any] = {
            "database_url": postgres_url,
            "cert": cluster_cert,
            "domains": domains(app),
            "lease": 3.0,
        }
        started = await asyncio.gather(
            start_engine(tmp_path / "a", "a", "127.0.0.2", media_ports=(30000, 34999), **common),
            start_engine(tmp_path / "b", "b", "127.0.0.3", media_ports=(35000, 39999), **common),
            return_exceptions=True,
        )
        engines = [e for e in started if isinstance(e, EngineProcess)]
        try:
            for outcome in started:
                if isinstance(outcome, BaseException):
                    raise outcome
            a, b = engines
            async with shipped_kamailio(tmp_path / "kamailio", engines, cluster_cert) as proxy:
                yield Deployment(a, b, proxy, app, postgres_server, postgres_url)
        finally:
            await asyncio.gather(*(e.stop() for e in engines))


def caller_args(calls: int, rate: int, *extra: str) -> list[str]:
    """SIPp options for ``calls`` calls at ``rate`` a second, all allowed at once, with a media
    port of its own (two SIPp callers may run at the same time)."""
    return [
        "-m", str(calls), "-r", str(rate), "-l", str(calls),
        "-mp", str(free_media_port()), *extra,
    ]  # fmt: skip


async def test_calls_through_the_proxy_are_shared_by_both_engines(
    deployment: Deployment, sipp: Sipp
) -> None:
    d = deployment
    run = await sipp.uac(
        "uac_engine_hangs_up",
        "udp",
        f"{d.proxy.address}:{d.proxy.port}",
        "ivr",
        keys={"domain": "cluster.test"},
        args=caller_args(200, 20),
        timeout=60,
    )
    result = await run.result()
    assert result.returncode == 0, result.explain() + d.explain()
    assert result.counter("SuccessfulCall") == 200 and result.counter("FailedCall") == 0

    records = await until(
        lambda: (r := d.rows()) and all(x["status"] not in UNFINISHED for x in r) and r,
        what="every call record finished",
    )
    assert len(records) == 200
    assert {r["status"] for r in records} == {"completed"}, records
    by_node = {n: sum(r["node"] == n for r in records) for n in ("a", "b")}
    assert min(by_node.values()) >= 50, by_node  # each engine took at least a quarter
    # The proxy's own account agrees: each INVITE dispatched once, to the engine that has it.
    dispatched = [line for line in d.proxy.log().splitlines() if "INVITE sip:ivr@" in line]
    assert sum(d.a.sip_uri() in line for line in dispatched) == by_node["a"]
    assert sum(d.b.sip_uri() in line for line in dispatched) == by_node["b"]


async def test_a_call_on_one_engine_is_run_through_the_other(
    deployment: Deployment, sipp: Sipp
) -> None:
    d = deployment
    callee = await sipp.uas("uas_answer", args=["-mp", str(free_media_port())], timeout=30)
    async with aiohttp.ClientSession(headers=API_AUTH) as http:
        form = {
            "To": f"sip:callee@127.0.0.1:{callee.port}",
            "From": "sip:ivr@cluster.test",
            "Twiml": FLOWS["/hold"],
        }
        async with http.post(d.a.calls_url(), data=form) as created:
            assert created.status == 201, await created.text()
            sid = (await created.json())["sid"]

        async def through_b() -> Any:
            async with http.get(d.b.calls_url(sid)) as resp:
                body = await resp.json()
            return body if body["status"] == "in-progress" else None

        await until(through_b, what="the call answered, seen through engine b")
        async with http.get(d.b.calls_url()) as listed:
            assert sid in [c["sid"] for c in (await listed.json())["calls"]]
        # Hung up through b, which forwards to a: only a has the dialog to send the BYE.
        async with http.post(d.b.calls_url(sid), data={"Status": "completed"}) as hung:
            assert hung.status == 200, await hung.text()
        answered = await callee.result(15)
        assert answered.returncode == 0, answered.explain()  # it got the BYE and said 200
        async with http.get(d.b.calls_url(sid)) as resp:
            assert (await resp.json())["status"] == "completed"
    assert [(r["node"], r["status"]) for r in d.rows(f"sid = '{sid}'")] == [("a", "completed")]


async def test_a_tls_call_stays_tls_to_the_engine_with_srtp_end_to_end(
    deployment: Deployment, cluster_cert: DevCertificate
) -> None:
    d = deployment
    tls = TlsConfig(
        ca_file=str(cluster_cert.ca),
        cert_file=str(cluster_cert.cert),
        key_file=str(cluster_cert.key),
    )
    listeners = [ListenerConfig("udp", "127.0.0.1", 0), ListenerConfig("tls", "127.0.0.1", 0)]
    async with await Phone.start(listeners=listeners, tls=tls) as phone:
        result = await phone.dial(
            "sip:ivr@secure.test;secure=true", proxy=d.proxy.uri("tls"), timeout=15
        )
        assert result.status == "answered", f"{result.reason}\n{d.explain()}"
        leg = result.leg
        assert leg is not None and leg.secure and result.transport == "tls"
        # The engine's flow hangs up: its BYE comes back through the proxy, over TLS again.
        assert await leg.wait_ended(15) == "remote hangup"
    dispatched = [line for line in d.proxy.log().splitlines() if "sip:ivr@secure.test" in line]
    assert len(dispatched) == 1, d.proxy.log()[-3000:]
    assert ";transport=tls from" in dispatched[0] and dispatched[0].endswith(";transport=tls")
    [record] = await until(
        lambda: [r for r in d.rows(d.to("secure.test")) if r["status"] == "completed"],
        what="the secure call completed",
    )
    assert record["node"] in ("a", "b")


async def register_through(peer: RawPeer, user: str, password: str, contact: str) -> SipResponse:
    """REGISTER ``user``@reg.test with ``contact`` through the proxy, answering the engine's
    digest challenge (same Call-ID, next CSeq: the proxy's hash over the To URI sends both to
    the same engine)."""
    aor, call_id = f"sip:{user}@{REGISTRAR_DOMAIN}", f"register-{user}@127.0.0.1"
    headers = [f"Contact: <{contact}>", "Expires: 120"]
    peer.send(
        request(
            "REGISTER", f"sip:{REGISTRAR_DOMAIN}", port=peer.port, headers=headers,
            call_id=call_id, cseq=1, to=aor,
        )
    )  # fmt: skip
    challenge = await peer.response()
    assert challenge.status == 401, challenge
    authorization = DigestClient().authorize(
        select_challenge(challenge.headers.get_all("WWW-Authenticate")),
        Credentials(user, password),
        "REGISTER",
        f"sip:{REGISTRAR_DOMAIN}",
    )
    peer.send(
        request(
            "REGISTER", f"sip:{REGISTRAR_DOMAIN}", port=peer.port,
            headers=[*headers, f"Authorization: {authorization}"],
            call_id=call_id, cseq=2, to=aor,
        )
    )  # fmt: skip
    return await peer.response()


async def test_a_device_registered_through_one_engine_is_called_from_the_other(
    deployment: Deployment, sipp: Sipp
) -> None:
    """REGISTER through the proxy reaches one engine, which challenges it in the domain's realm
    and stores the binding in PostgreSQL; a REST call to ``client:alice`` placed on the *other*
    engine finds that binding (the registrars share the store) and reaches the device through
    the proxy, over the flow the REGISTER came by. A domain without credentials refuses
    REGISTER (403 from an engine, through the proxy); OPTIONS to the proxy itself is the
    proxy's to answer."""
    d = deployment
    device = await sipp.uas(
        "uas_answer", args=["-mp", str(free_media_port())], timeout=60, trace_messages=True
    )
    async with RawPeer("udp", d.proxy.address, d.proxy.port) as peer:
        registered = await register_through(
            peer, "alice", ALICE_PASSWORD, f"sip:alice@127.0.0.1:{device.port}"
        )
        assert registered.status == 200, registered
        assert f"127.0.0.1:{device.port}" in (registered.headers.get("Contact") or "")

        peer.send(
            request(
                "REGISTER", "sip:cluster.test", port=peer.port,
                contact=f"<sip:bob@127.0.0.1:{peer.port}>", headers=["Expires: 60"],
            )
        )  # fmt: skip
        refused = await peer.response()
        assert refused.status == 403 and "no credentials" in (refused.headers.get("Warning") or "")
        peer.send(request("OPTIONS", f"sip:{d.proxy.address}:{d.proxy.port}", port=peer.port))
        keepalive = await peer.response()
        assert keepalive.status == 200 and keepalive.headers.get("Allow") is None

    sent = f"REGISTER sip:{REGISTRAR_DOMAIN} from"
    [taken] = [line for line in d.proxy.log().splitlines() if sent in line][-1:]
    registrar = next(e for e in d.engines if e.sip_uri() in taken)
    other = d.b if registrar is d.a else d.a
    [(aor, contact)] = d.server.sql(d.database, "SELECT aor, contact FROM bindings")
    assert (aor, contact) == (f"alice@{REGISTRAR_DOMAIN}", f"sip:alice@127.0.0.1:{device.port}")

    async with aiohttp.ClientSession(headers=API_AUTH) as http:

        async def call_alice() -> str | None:
            """A call to alice from the other engine: its sid once answered; None when that
            engine had not yet read the binding (the call fails: alice is not registered)."""
            form = {"To": "client:alice", "From": "sip:ivr@cluster.test", "Twiml": ALICE_FLOW}
            async with http.post(other.calls_url(), data=form) as created:
                assert created.status == 201, await created.text()
                sid: str = (await created.json())["sid"]

            async def settled() -> str | None:
                async with http.get(other.calls_url(sid)) as resp:
                    status: str = (await resp.json())["status"]
                return status if status not in ("queued", "initiated", "ringing") else None

            status = await until(settled, timeout=20, what="the call to alice settled")
            return sid if status in ("in-progress", "completed") else None

        sid = await until(call_alice, timeout=30, step=0.5, what="alice called from the other")
    answered = await device.result(30)
    assert answered.returncode == 0, answered.explain() + answered.messages + d.explain()
    [record] = await until(
        lambda: [r for r in d.rows(f"sid = '{sid}'") if r["status"] == "completed"],
        what="the call to alice completed",
    )
    assert record["node"] == other.node
    assert f"INVITE sip:alice@127.0.0.1:{device.port}" in d.proxy.log()


async def test_a_killed_engine_leaves_the_rotation_and_its_calls_fail_once(
    deployment: Deployment, sipp: Sipp
) -> None:
    d = deployment
    target = f"{d.proxy.address}:{d.proxy.port}"
    # Ten calls held up by their flow; the callers hang up after 12 s.
    held = await sipp.uac(
        "uac_caller_hangs_up",
        "udp",
        target,
        "ivr",
        keys={"domain": "hold.test"},
        args=caller_args(10, 10, "-d", "12000"),
        timeout=40,
    )
    up = await until(
        lambda: len(r := d.rows(f"status = 'in-progress' AND {d.to('hold.test')}")) == 10 and r,
        what="ten held calls up",
    )
    on_b = {r["sid"] for r in up if r["node"] == "b"}
    on_a = {r["sid"] for r in up if r["node"] == "a"}
    assert on_a and on_b, up

    await d.b.kill()

    # New calls: every one answered by a, whether the proxy already knew b was gone or learnt
    # it from a call that b did not answer (that call fails over to a).
    after = await sipp.uac(
        "uac_engine_hangs_up",
        "udp",
        target,
        "ivr",
        keys={"domain": "cluster.test"},
        args=caller_args(20, 10),
        timeout=40,
    )
    result = await after.result()
    assert result.returncode == 0, result.explain() + d.explain()
    assert result.counter("SuccessfulCall") == 20
    new = await until(
        lambda: len(r := d.rows(f"status = 'completed' AND {d.to('cluster.test')}")) == 20 and r,
        what="the twenty new calls completed",
    )
    assert {r["node"] for r in new} == {"a"}

    # The proxy took b out of the rotation (both its addresses) and kept a in.
    async def states() -> dict[tuple[str, int], bool] | None:
        listed = await d.proxy.dispatcher()
        found = {(engine_of(x, d.engines).node, x.set_id): x.active for x in listed}
        done = not found[("b", PLAIN_SET)] and not found[("b", TLS_SET)]
        return found if done else None

    state = await until(states, timeout=30, step=0.5, what="b out of the dispatcher's rotation")
    assert state[("a", PLAIN_SET)] and state[("a", TLS_SET)], state
    # Calls the proxy sent to b before it knew failed over to a (dispatcher's next destination):
    # b's probes fail 5 s apart at the earliest, the new calls came within the first 2 s.
    assert f"failed over to engine {d.a.sip_uri()}" in d.proxy.log()

    # b's calls: marked failed by a once b's lease ran out, each once; none left unfinished.
    failed = await until(
        lambda: (
            {r["sid"]: r for r in d.rows("node = 'b'") if r["status"] not in UNFINISHED}
            if not d.rows(f"node = 'b' AND status IN {UNFINISHED}")
            else None
        ),
        what="b's calls finalised",
    )
    assert set(failed) == on_b
    for record in failed.values():
        assert (record["status"], record["error"]) == ("failed", "engine b stopped during the call")
    async with (
        aiohttp.ClientSession(headers=API_AUTH) as http,
        http.get(f"{d.a.api_url}/metrics") as resp,
    ):
        metrics = await resp.text()
    assert f"callxml_cluster_calls_reaped_total {float(len(on_b))}" in metrics

    # a's held calls end when their callers hang up, completed; b's callers get no 200 to their
    # BYE (the proxy answers 408 for the dead engine).
    held_result = await held.result()
    assert held_result.counter("SuccessfulCall") == len(on_a), held_result.explain()
    assert held_result.counter("FailedCall") == len(on_b)
    assert {r["sid"]: r["status"] for r in d.rows(f"sid IN {(*on_a, '')}")} == {
        sid: "completed" for sid in on_a
    }
