"""Engines sharing a real PostgreSQL store: any engine answers the REST API for any call, a
live-call update sent to the wrong engine is forwarded to the owner, a node id is held by one
running engine, and a dead engine's unfinished calls are finalised exactly once by a live one.

(The full service -- Kamailio in front, SIPp load, ``kill -9`` mid-calls -- is
tests/deploy/test_cluster.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callxml.engine.api import OutboundCall
from callxml.engine.cluster import Cluster
from callxml.engine.pgstore import PostgresStore
from callxml.engine.registrar import RegistrarService
from callxml.engine.server import Engine
from callxml.engine.store import BindingRecord, CallRecord, NodeRecord
from callxml.errors import ConfigError
from callxml.runtime import IncomingCall, Phone
from callxml.sip.aio.transport import ListenerConfig
from callxml.sip.events import Address
from callxml.sip.register import contact_key
from support.engine import ACCOUNT_SID, API_AUTH, engine_config, running_engine, web_app
from support.registrar import Register
from support.waiting import until

pytestmark = pytest.mark.peer

HOLD = '<Response><Say>Hi</Say><Pause length="60"/></Response>'


def node_config(tmp_path: Path, url: str, node: str, **changes: Any) -> Any:
    """An engine on the shared database ``url`` as node ``node`` (its own SIP/HTTP ports)."""
    config = engine_config(tmp_path / node, [])
    return dataclasses.replace(config, database_url=url, node_id=node, node_lease=3.0, **changes)


class Callee:
    """A phone that answers every call and keeps it up until hung up."""

    def __init__(self) -> None:
        self.phone: Phone | None = None
        self.calls: list[Any] = []

    async def on_incoming(self, call: IncomingCall) -> None:
        self.calls.append(await call.accept(secure_media_enabled=False))

    @property
    def uri(self) -> str:
        assert self.phone is not None
        return f"sip:callee@127.0.0.1:{self.phone.user_agent.local('udp').port}"


@pytest.fixture
async def callee() -> AsyncIterator[Callee]:
    peer = Callee()
    peer.phone = await Phone.start(
        listeners=[ListenerConfig("udp", "127.0.0.1", 0)], on_incoming=peer.on_incoming
    )
    try:
        yield peer
    finally:
        await peer.phone.close()


def calls_url(engine: Engine, sid: str = "") -> str:
    base = f"http://127.0.0.1:{engine.http_port}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls"
    return f"{base}/{sid}.json" if sid else f"{base}.json"


async def test_any_engine_answers_for_any_call(
    tmp_path: Path, postgres_url: str, callee: Callee
) -> None:
    async with (
        running_engine(node_config(tmp_path, postgres_url, "a")) as a,
        running_engine(node_config(tmp_path, postgres_url, "b")) as b,
        aiohttp.ClientSession(headers=API_AUTH) as http,
    ):
        async with http.post(
            calls_url(a), data={"To": callee.uri, "From": "sip:ivr@a.test", "Twiml": HOLD}
        ) as created:
            assert created.status == 201, await created.text()
            sid = (await created.json())["sid"]

        async def answered() -> Any:
            async with http.get(calls_url(b, sid)) as resp:
                body = await resp.json()
            return body if body["status"] == "in-progress" else None

        await until(answered, what="the call answered, seen through engine b")
        async with http.get(calls_url(b)) as listed:
            assert sid in [c["sid"] for c in (await listed.json())["calls"]]
        assert a.live(sid) is not None and b.live(sid) is None

        # Hung up through b: forwarded to a, which owns the call and sends the BYE.
        async with http.post(calls_url(b, sid), data={"Status": "completed"}) as hung:
            assert hung.status == 200, await hung.text()
        await until(lambda: a.live(sid) is None, what="engine a ending the call")
        assert callee.calls and await callee.calls[0].wait_ended(5) == "remote hangup"
        async with http.get(calls_url(b, sid)) as resp:
            assert (await resp.json())["status"] == "completed"
        # Redirecting a call that is over: Twilio's 21220, answered by whichever engine.
        async with http.post(calls_url(b, sid), data={"Twiml": HOLD}) as late:
            assert late.status == 400 and (await late.json())["code"] == 21220


async def test_a_node_id_is_held_by_one_running_engine(tmp_path: Path, postgres_url: str) -> None:
    async with running_engine(node_config(tmp_path, postgres_url, "a")):
        twin = Engine(node_config(tmp_path, postgres_url, "a"), echo=lambda line: None)
        started = time.monotonic()
        with pytest.raises(ConfigError, match="'a' is in use by a running engine"):
            await twin.start()
        assert time.monotonic() - started >= 3.0  # it waited out one lease first


async def test_a_dead_engines_calls_are_finalised_exactly_once(postgres_url: str) -> None:
    """Node b died with two calls up (its lease stopped being renewed): live nodes a and c reap
    at the same moment; each call is finalised once, by one of them, and b is forgotten."""
    stores = [PostgresStore(postgres_url, node=n) for n in ("a", "b", "c")]
    try:
        a_store, b_store, c_store = stores
        clock = [1000.0]
        b_node = NodeRecord("b", "http://127.0.0.1:1", "run", 990.0, 1000.0, 1003.0)
        assert b_store.claim_node(b_node) is None
        for i, status in enumerate(("in-progress", "ringing", "completed")):
            b_store.create_call(
                CallRecord(f"CA{i:032x}", ACCOUNT_SID, "inbound", "a", "b", status=status)
            )
        reapers = [
            Cluster(s, n, "http://127.0.0.1:2", lease=3.0, clock=lambda: clock[0])
            for s, n in ((a_store, "a"), (c_store, "c"))
        ]
        clock[0] = 1010.0  # b's lease (until 1003, renewed by nobody since) ran out
        counts = await asyncio.gather(*(asyncio.to_thread(r.reap, clock[0]) for r in reapers))
        assert sorted(counts) in ([0, 2], [1, 1])
        assert sum(counts) == 2
        statuses = {c.sid: (c.status, c.error) for c in a_store.list_calls(ACCOUNT_SID)}
        assert statuses[f"CA{0:032x}"] == ("failed", "engine b stopped during the call")
        assert statuses[f"CA{1:032x}"][0] == "failed"
        assert statuses[f"CA{2:032x}"] == ("completed", None)
        assert a_store.get_node("b") is None
    finally:
        for store in stores:
            store.close()


async def test_originate_through_the_python_api_stamps_the_node(
    tmp_path: Path, postgres_url: str, callee: Callee
) -> None:
    async with running_engine(node_config(tmp_path, postgres_url, "a")) as a:
        record = await a.originate(
            a.config.accounts[0],
            OutboundCall(to=callee.uri, from_="sip:ivr@a.test", url=None, twiml="<Response/>"),
        )
        assert record.node == "a"


async def test_registrars_sharing_the_store_follow_each_others_bindings(
    tmp_path: Path, postgres_url: str
) -> None:
    """A binding engine a's registrar stored is found by engine b's after b's next sync, and
    one a removed is gone from b's; a sync that raced a REGISTER of b's own is not applied
    (the next one reads it back)."""
    config = engine_config(tmp_path, [{"name": "reg.test", "voice_url": "http://127.0.0.1:9/v"}])
    stores = [PostgresStore(postgres_url, node=n) for n in ("a", "b")]
    try:
        a, b = (RegistrarService(config, s, shared_sync=0.05) for s in stores)
        contact = "sip:alice@127.0.0.1:5099"  # keyed as the registrar keys it
        binding = BindingRecord(
            "alice@reg.test", "contact:" + contact_key(contact), contact,
            expires_at=time.time() + 60, transport="udp", source_host="127.0.0.1",
            source_port=5060, registered_at=time.time(),
        )  # fmt: skip
        await asyncio.to_thread(a.store.update_bindings, [binding], [])
        assert b.registrar.lookup("alice@reg.test", time.time()) == []
        assert await b.sync()
        [found] = b.registrar.lookup("alice@reg.test", time.time())
        assert (found.contact, found.source_port) == (binding.contact, 5060)

        await asyncio.to_thread(a.store.update_bindings, [], [(binding.aor, binding.key)])
        reading = asyncio.create_task(b.sync())
        await asyncio.sleep(0)  # the sync is reading the store...
        b._changes += 1  # ...while a REGISTER at b changes its bindings (as __call__ counts)
        assert not await reading
        assert b.registrar.lookup("alice@reg.test", time.time()) != []
        b.start()  # the follower: b's next sync takes the removal
        try:
            await until(lambda: b.registrar.lookup("alice@reg.test", time.time()) == [])
        finally:
            await b.stop()
        assert b.full_reads == 1  # the one at start: every sync since read the change log
    finally:
        for store in stores:
            store.close()


async def test_a_register_and_its_removal_reach_the_other_engine_through_the_change_log(
    tmp_path: Path, postgres_url: str
) -> None:
    """alice REGISTERs at engine a, then removes her binding (Expires: 0): engine b, following
    the store, finds her and then not, by reading the change log alone (no read of every
    binding after its start). A write whose seq is lower than one b already read but which
    commits later (two writers at once) reaches b too."""
    domain = {
        "name": "reg.test",
        "voice_url": "http://127.0.0.1:9/v",
        "credentials": [{"username": "alice", "password": "alice-Secret-9"}],
    }
    config = engine_config(tmp_path, [domain])
    stores = [PostgresStore(postgres_url, node=n) for n in ("a", "b")]
    try:
        a, b = (RegistrarService(config, s, shared_sync=0.05) for s in stores)
        b.start()
        try:
            flow = Address("udp", "127.0.0.1", 5099)
            register = Register("alice", "reg.test", "sip:alice@127.0.0.1:5099", source=flow)
            await a(register)
            assert register.status == 200, register.warning
            [found] = await until(lambda: b.registrar.lookup("alice@reg.test", time.time()))
            assert (found.contact, found.source_port) == ("sip:alice@127.0.0.1:5099", 5099)
            assert b.registrar.over_flow("udp", "127.0.0.1", 5099, time.time()) == [found]
            removal = Register(
                "alice", "reg.test", "sip:alice@127.0.0.1:5099", expires=0, cseq=2, source=flow
            )
            await a(removal)
            assert removal.status == 200, removal.warning
            await until(lambda: b.registrar.lookup("alice@reg.test", time.time()) == [])
            assert b.registrar.over_flow("udp", "127.0.0.1", 5099, time.time()) == []
            await b.stop()

            # Two writers at once: the first takes its seq, the second a higher one and
            # commits first; b reads the second, then the first commits.
            late = BindingRecord(
                "carol@reg.test",
                "contact:late",
                "sip:carol@127.0.0.1:5097",
                expires_at=time.time() + 60,
                registered_at=time.time(),
            )
            early = dataclasses.replace(late, aor="dave@reg.test", key="contact:early")
            with stores[0].backend.transaction() as db:
                db.execute(
                    "INSERT INTO binding_changes (aor, key, changed_at) VALUES (?, ?, ?)",
                    (late.aor, late.key, time.time()),
                )
                db.execute(
                    "INSERT INTO bindings (aor, key, contact, expires_at, q, call_id, cseq,"
                    " transport, source_host, source_port, registered_at, user_agent)"
                    " VALUES (?, ?, ?, ?, 1.0, '', 0, 'udp', '', 0, ?, '')",
                    (late.aor, late.key, late.contact, late.expires_at, late.registered_at),
                )
                await asyncio.to_thread(a.store.update_bindings, [early], [])
                assert await b.sync()
                assert b.registrar.lookup("dave@reg.test", time.time()) != []
                assert b.registrar.lookup("carol@reg.test", time.time()) == []
            assert await b.sync()  # the lower seq, committed now, is asked for again
            [carol] = b.registrar.lookup("carol@reg.test", time.time())
            assert carol.contact == late.contact
            assert b.full_reads == 1 and b.log_reads >= 4
        finally:
            await b.stop()
    finally:
        for store in stores:
            store.close()


async def test_recordings_and_status_callbacks_whichever_engine_ran_the_call(
    tmp_path: Path, postgres_url: str, callee: Callee
) -> None:
    """Engines sharing ``recordings_dir`` (as docs/deploy.md says they must) serve a recording
    made on a through b's REST API, byte for byte; the status callbacks of a call created on b
    and hung up through a (forwarded to b) reach the app once each, from b, the owner."""
    shared = tmp_path / "shared-recordings"
    async with (
        web_app({"/status": lambda form: ""}) as app,
        running_engine(node_config(tmp_path, postgres_url, "a", recordings_dir=shared)) as a,
        running_engine(node_config(tmp_path, postgres_url, "b", recordings_dir=shared)) as b,
        aiohttp.ClientSession(headers=API_AUTH) as http,
    ):
        form = {
            "To": callee.uri,
            "From": "sip:ivr@b.test",
            "Twiml": HOLD,
            "Record": "true",
            "StatusCallback": app.url("/status"),
            "StatusCallbackEvent": "initiated answered completed",
        }
        async with http.post(calls_url(b), data=form) as created:
            assert created.status == 201, await created.text()
            sid = (await created.json())["sid"]
        await until(lambda: b.live(sid) is not None and callee.calls, what="the call answered")
        await asyncio.sleep(1.0)  # a second of call to record
        async with http.post(calls_url(a, sid), data={"Status": "completed"}) as hung:
            assert hung.status == 200, await hung.text()
        await until(lambda: b.live(sid) is None, what="engine b ending the call")

        base = f"http://127.0.0.1:{a.http_port}/2010-04-01/Accounts/{ACCOUNT_SID}"

        async def listed() -> list[dict[str, Any]] | None:
            async with http.get(f"{base}/Recordings.json", params={"CallSid": sid}) as resp:
                found: list[dict[str, Any]] = (await resp.json())["recordings"]
            return found if found and found[0]["status"] == "completed" else None

        [recording] = await until(listed, what="the recording listed through engine a")
        async with http.get(f"{base}/Recordings/{recording['sid']}.wav") as audio:
            assert audio.status == 200, await audio.text()
            wav = await audio.read()
        [stored] = [p for p in shared.rglob("*.wav") if recording["sid"] in p.name]
        assert wav == stored.read_bytes() and len(wav) > 44

        statuses = await until(
            lambda: (
                (s := [f["CallStatus"] for p, f in app.requests if p == "/status"])
                and s[-1] == "completed"
                and s
            ),
            what="the completed status callback",
        )
        assert statuses == ["initiated", "in-progress", "completed"]
        assert {f["CallSid"] for p, f in app.requests if p == "/status"} == {sid}
