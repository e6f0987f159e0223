"""REGISTER both ways on a fake clock: the :class:`Registration` client and the :class:`Registrar`
(``callxml.sip.register``), each carried by a real :class:`UserAgentCore` over the lossy in-memory
network of :mod:`.helpers`, as the asyncio driver wires them.

The registering side is callxml registering with a carrier (digest MD5 and SHA-256, refresh at
80 %, 423, back-off, de-registration); the registrar side is callxml as the registrar of a
domain (bindings, q, wildcard, Call-ID/CSeq order, Expires bounds, a flood of Contacts, RFC 5626
instance/reg-id). Nothing sleeps: a one-hour registration costs nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from callxml.errors import LocalProtocolError
from callxml.sip.auth import Credentials, DigestServer
from callxml.sip.events import (
    Address,
    InviteReceived,
    RegisterReceived,
    ResponseReceived,
    TransactionKey,
    TransactionTimedOut,
    TransportErrorOccurred,
)
from callxml.sip.headers import warning_value
from callxml.sip.message import Headers, SipMessage, SipRequest, SipResponse, make_response
from callxml.sip.register import (
    MAX_EXPIRES,
    Binding,
    RegisterResult,
    Registrar,
    RegistrarPolicy,
    Registration,
    RegistrationConfig,
    RegistrationState,
    contact_key,
)
from callxml.sip.ua import UserAgentConfig, UserAgentCore

from .helpers import Network, describe

DOMAIN = "example.test"
PASSWORD = "s3cret-pass"
CLIENT = Address("udp", "127.0.0.1", 5060)
SERVER = Address("udp", "127.0.0.1", 5070)
CONTACT = "sip:alice@127.0.0.1:5060;ob"


class Registering:
    """callxml registering: a core carrying a :class:`Registration`'s REGISTERs (the asyncio
    driver does the same with real sockets)."""

    def __init__(self, reg: Registration, destination: Address = SERVER) -> None:
        self.core = UserAgentCore(UserAgentConfig(local={"udp": CLIENT}))
        self.reg = reg
        self.destination = destination
        self.keys: set[TransactionKey] = set()

    def receive(self, message: SipMessage, source: Address, now: float) -> None:
        self.core.receive(message, source, now)
        self.pump(now)

    def handle_timer(self, now: float) -> None:
        self.core.handle_timer(now)
        self.reg.handle_timer(now)
        self.pump(now)

    def next_timer(self) -> float | None:
        due = [t for t in (self.core.next_timer(), self.reg.next_timer()) if t is not None]
        return min(due, default=None)

    def outgoing(self) -> list[tuple[SipMessage, Address]]:
        return self.core.outgoing()

    def pump(self, now: float) -> None:
        while True:
            for request in self.reg.requests():
                self.keys.add(self.core.send_request(request, self.destination, now))
            events = self.core.events()
            if not events:
                return
            for event in events:
                match event:
                    case ResponseReceived(key=key, response=response) if key in self.keys:
                        self.reg.receive(response, now)
                    case TransactionTimedOut(key=key) if key in self.keys:
                        self.reg.failed("408 no response", now)
                    case TransportErrorOccurred(key=key, reason=reason) if key in self.keys:
                        self.reg.failed(f"503 {reason}", now)
                    case _:
                        pass


class RegistrarSide:
    """callxml as the registrar of DOMAIN: a core challenging REGISTERs, a Registrar answering."""

    def __init__(
        self,
        registrar: Registrar,
        *,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        users: dict[str, str] | None = None,
        answer: Callable[[RegisterReceived, float], RegisterResult] | None = None,
    ) -> None:
        passwords = users if users is not None else {"alice": PASSWORD}
        server = DigestServer(DOMAIN, b"k" * 32, passwords.get, algorithms=algorithms)
        self.core = UserAgentCore(
            UserAgentConfig(local={"udp": SERVER}, authenticator=server, registrar=True)
        )
        self.registrar = registrar
        self.answer = answer
        self.results: list[RegisterResult] = []

    def receive(self, message: SipMessage, source: Address, now: float) -> None:
        self.core.receive(message, source, now)
        self.pump(now)

    def handle_timer(self, now: float) -> None:
        self.core.handle_timer(now)
        self.pump(now)

    def next_timer(self) -> float | None:
        return self.core.next_timer()

    def outgoing(self) -> list[tuple[SipMessage, Address]]:
        return self.core.outgoing()

    def pump(self, now: float) -> None:
        for event in self.core.events():
            if isinstance(event, RegisterReceived):
                result = (
                    self.answer(event, now)
                    if self.answer is not None
                    else self.registrar.register(
                        event.request,
                        domain=DOMAIN,
                        user=event.auth_user,
                        source=event.source,
                        now=now,
                    )
                )
                self.results.append(result)
                headers = list(result.headers)
                if result.warning:
                    headers.append(("Warning", warning_value("127.0.0.1:5070", result.warning)))
                self.core.respond(event.key, result.status, now, headers=headers)


def config(**changes: object) -> RegistrationConfig:
    base: dict[str, object] = {
        "registrar": f"sip:{DOMAIN}",
        "aor": f"sip:alice@{DOMAIN}",
        "contact": CONTACT,
        "credentials": Credentials("alice", PASSWORD),
        "expires": 600,
        "retry_base": 30.0,
        "retry_max": 1800.0,
    }
    base.update(changes)
    return RegistrationConfig(**base)  # type: ignore[arg-type]


def setup(
    reg_config: RegistrationConfig | None = None,
    *,
    policy: RegistrarPolicy | None = None,
    algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
    users: dict[str, str] | None = None,
    random: Callable[[], float] = lambda: 0.0,
) -> tuple[Network, Registering, RegistrarSide]:
    net = Network(now=1000.0)
    reg = Registration(
        reg_config or config(), via="SIP/2.0/UDP 127.0.0.1:5060;rport", random=random
    )
    client = Registering(reg)
    server = RegistrarSide(Registrar(policy), algorithms=algorithms, users=users)
    net.attach(CLIENT, client)
    net.attach(SERVER, server)
    return net, client, server


def kick(net: Network, client: Registering) -> None:
    """Hand what the application just asked for to the core and put it on the wire now."""
    client.pump(net.now)
    net._collect()


def registers(net: Network) -> list[SipRequest]:
    return [s.message for s in net.log if isinstance(s.message, SipRequest)]


def statuses(net: Network) -> list[str]:
    return [describe(s.message) for s in net.log if isinstance(s.message, SipResponse)]


# --- the client --------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_registers_with_digest_and_refreshes_at_80_percent(algorithm: str) -> None:
    net, client, server = setup(algorithms=(algorithm,))
    reg = client.reg
    reg.start(net.now)
    kick(net, client)
    net.run_until(lambda: reg.state is RegistrationState.REGISTERED)
    assert statuses(net) == ["401/REGISTER", "200/REGISTER"]
    first, second = registers(net)
    assert "Authorization" not in first.headers
    assert f"algorithm={algorithm}" in (second.headers.get("Authorization") or "")
    assert first.call_id == second.call_id and second.cseq.seq == first.cseq.seq + 1
    assert second.uri == f"sip:{DOMAIN}" and second.to.uri == f"sip:alice@{DOMAIN}"
    assert second.headers.get("Contact") == f"<{CONTACT}>;expires=600"
    registered_at = net.now
    assert reg.registered_until == pytest.approx(registered_at + 600, abs=0.1)
    [binding] = server.registrar.lookup(f"alice@{DOMAIN}", net.now)
    assert binding.contact == CONTACT and binding.flow == Address(
        "udp", "127.0.0.1", 5060, flow=True
    )
    # Nothing until 80 % of the granted expiry; then a refresh on the same Call-ID.
    net.run(479)
    assert len(registers(net)) == 2
    net.run_until(lambda: len(registers(net)) >= 3)
    assert net.now == pytest.approx(registered_at + 480, abs=0.1)
    net.run_until(lambda: reg.state is RegistrationState.REGISTERED and len(statuses(net)) == 4)
    refresh = registers(net)[2]
    assert refresh.call_id == first.call_id and refresh.cseq.seq > second.cseq.seq
    assert reg.registered_until == pytest.approx(net.now + 600, abs=0.1)
    assert all(PASSWORD.encode() not in bytes(s.message) for s in net.log)


def test_the_registrars_expiry_is_the_one_refreshed_on() -> None:
    net, client, _ = setup(
        config(expires=3600), policy=RegistrarPolicy(max_expires=300, default_expires=300)
    )
    client.reg.start(net.now)
    kick(net, client)
    net.run_until(lambda: client.reg.state is RegistrationState.REGISTERED)
    start = net.now
    assert client.reg.registered_until == pytest.approx(start + 300, abs=0.1)
    net.run_until(lambda: len(registers(net)) >= 3)
    assert net.now == pytest.approx(start + 240, abs=0.1)


def test_423_interval_too_brief_is_retried_with_min_expires() -> None:
    policy = RegistrarPolicy(min_expires=120, max_expires=3600, default_expires=3600)
    net, client, _ = setup(config(expires=60), policy=policy)
    client.reg.start(net.now)
    kick(net, client)
    net.run_until(lambda: client.reg.state is RegistrationState.REGISTERED)
    assert statuses(net) == ["401/REGISTER", "423/REGISTER", "200/REGISTER"]
    assert registers(net)[-1].headers.get("Expires") == "120"
    assert client.reg.expires == 120


def test_a_423_that_does_not_raise_the_expiry_is_a_failure() -> None:
    def brief(event: RegisterReceived, now: float) -> RegisterResult:
        return RegisterResult(423, headers=(("Min-Expires", "30"),))

    net, client, server = setup(config(expires=60))
    server.answer = brief
    client.reg.start(net.now)
    kick(net, client)
    net.run_until(lambda: client.reg.state is RegistrationState.FAILING)
    assert len(registers(net)) == 2  # the challenge, then 423: no loop


def test_a_wrong_password_fails_once_per_attempt_and_backs_off() -> None:
    net, client, _ = setup(config(credentials=Credentials("alice", "wrong")), random=lambda: 0.0)
    reg = client.reg
    reg.start(net.now)
    kick(net, client)
    net.run_until(lambda: reg.state is RegistrationState.FAILING)
    assert statuses(net) == ["401/REGISTER", "403/REGISTER"]
    assert reg.status().last_response == "403 Forbidden" and reg.failures == 1
    failed_at = net.now
    # RFC 5626 §4.5: min(max, base * 2^failures) * (50 %..100 %): 30 s with this random().
    assert reg.status().next_attempt == pytest.approx(failed_at + 30)
    net.run_until(lambda: reg.failures == 2)
    assert statuses(net) == ["401/REGISTER", "403/REGISTER"] * 2
    assert reg.status().next_attempt == pytest.approx(net.now + 60, abs=0.1)


def test_unanswered_registers_back_off_up_to_the_maximum() -> None:
    net, client, _ = setup(config(retry_base=30, retry_max=200), random=lambda: 0.999999)
    net.drop = lambda message, source, destination: True  # the registrar is unreachable
    reg = client.reg
    reg.start(net.now)
    kick(net, client)
    waits = []
    for failures in range(1, 6):
        net.run_until(lambda n=failures: reg.failures == n)  # type: ignore[misc]
        assert reg.status().last_response == "408 no response"
        next_attempt = reg.status().next_attempt
        assert next_attempt is not None
        waits.append(round(next_attempt - net.now))
    assert waits == [60, 120, 200, 200, 200]


def test_a_5xx_with_retry_after_waits_at_least_that_long() -> None:
    def busy(event: RegisterReceived, now: float) -> RegisterResult:
        return RegisterResult(503, headers=(("Retry-After", "900"),))

    net, client, server = setup(random=lambda: 0.0)
    server.answer = busy
    client.reg.start(net.now)
    kick(net, client)
    net.run_until(lambda: client.reg.state is RegistrationState.FAILING)
    assert client.reg.status().next_attempt == pytest.approx(net.now + 900, abs=0.1)


def test_stop_unregisters_with_expires_0() -> None:
    net, client, server = setup()
    reg = client.reg
    reg.start(net.now)
    kick(net, client)
    net.run_until(lambda: reg.state is RegistrationState.REGISTERED)
    assert server.registrar.lookup(f"alice@{DOMAIN}", net.now)
    reg.stop(net.now)
    kick(net, client)
    net.run_until(lambda: reg.state is RegistrationState.STOPPED)
    last = registers(net)[-1]
    assert last.headers.get("Expires") == "0" and ";expires=0" in (
        last.headers.get("Contact") or ""
    )
    assert server.registrar.lookup(f"alice@{DOMAIN}", net.now) == []
    assert reg.registered_until is None and reg.next_timer() is None


def test_stop_during_a_register_unregisters_after_its_answer() -> None:
    net, client, server = setup()
    reg = client.reg
    reg.start(net.now)
    kick(net, client)
    reg.stop(net.now)  # the first REGISTER is still in flight
    kick(net, client)
    net.run_until(lambda: reg.state is RegistrationState.STOPPED)
    assert [r.headers.get("Expires") for r in registers(net)][-1] == "0"
    assert server.registrar.lookup(f"alice@{DOMAIN}", net.now) == []


def test_stop_before_any_registration_sends_nothing() -> None:
    net, client, _ = setup()
    client.reg.stop(net.now)
    assert client.reg.state is RegistrationState.STOPPED and client.reg.requests() == []


def test_a_failed_flow_registers_again_at_once() -> None:
    net, client, _ = setup()
    reg = client.reg
    reg.start(net.now)
    kick(net, client)
    net.run_until(lambda: reg.state is RegistrationState.REGISTERED)
    sent = len(registers(net))
    reg.flow_failed(net.now)
    kick(net, client)
    assert reg.state is RegistrationState.REGISTERING and len(registers(net)) == sent + 1


def test_without_credentials_a_challenge_is_a_failure() -> None:
    net, client, _ = setup(config(credentials=None))
    client.reg.start(net.now)
    kick(net, client)
    net.run_until(lambda: client.reg.state is RegistrationState.FAILING)
    assert client.reg.status().last_response == "401 Unauthorized"


def test_rfc5626_contact_parameters() -> None:
    instance = "urn:uuid:00000000-0000-0000-0000-000000000001"
    reg = Registration(config(instance=instance), via="SIP/2.0/TLS 127.0.0.1:5061;rport")
    reg.start(0.0)
    [request] = reg.requests()
    contact = request.headers.get("Contact") or ""
    assert f';reg-id=1;+sip.instance="{instance}"' in contact
    assert "outbound" in (request.headers.get("Supported") or "")


def test_bad_configuration_is_refused() -> None:
    for bad in ({"expires": 0}, {"expires": MAX_EXPIRES + 1}, {"retry_base": 0}):
        with pytest.raises(LocalProtocolError):
            config(**bad)
    with pytest.raises(Exception, match="URI"):
        config(registrar="http://example.test")


# --- the registrar -------------------------------------------------------------------------------


def register(
    contacts: list[str],
    *,
    expires: str | None = None,
    call_id: str = "reg-1@ua",
    cseq: int = 1,
    to: str = f"sip:alice@{DOMAIN}",
) -> SipRequest:
    h = Headers(
        [
            ("Via", "SIP/2.0/TLS 192.0.2.7:40001;branch=z9hG4bK-r"),
            ("Max-Forwards", "70"),
            ("From", f"<{to}>;tag=t1"),
            ("To", f"<{to}>"),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} REGISTER"),
        ]
    )
    for contact in contacts:
        h.add("Contact", contact)
    if expires is not None:
        h.add("Expires", expires)
    return SipRequest("REGISTER", f"sip:{DOMAIN}", h)


FLOW = Address("tls", "192.0.2.7", 40001)
AOR = f"alice@{DOMAIN}"


def apply(
    registrar: Registrar,
    request: SipRequest,
    now: float = 0.0,
    *,
    user: str | None = "alice",
    source: Address = FLOW,
) -> RegisterResult:
    return registrar.register(request, domain=DOMAIN, user=user, source=source, now=now)


def test_bindings_with_q_expiry_and_the_flow_they_came_over() -> None:
    registrar = Registrar(RegistrarPolicy(max_expires=3600))
    result = apply(
        registrar,
        register(["<sip:alice@192.0.2.7:5061;transport=tls>;q=0.5", "<sip:alice@10.0.0.1>;q=1"]),
        100.0,
    )
    assert result.status == 200 and len(result.saved) == 2 and not result.removed
    assert [v for k, v in result.headers if k == "Contact"] == [
        "<sip:alice@10.0.0.1>;expires=3600",
        "<sip:alice@192.0.2.7:5061;transport=tls>;expires=3600;q=0.5",
    ]
    found = registrar.lookup(AOR, 200.0)
    assert [b.contact for b in found] == [
        "sip:alice@10.0.0.1",
        "sip:alice@192.0.2.7:5061;transport=tls",
    ]
    assert found[0].flow == Address("tls", "192.0.2.7", 40001, flow=True)
    assert registrar.lookup(AOR, 3700.0) == []  # lapsed bindings are never returned
    assert {b.contact for b in registrar.expire(3700.0)} == {c.contact for c in found}
    assert registrar.next_expiry() is None


def test_the_expiry_is_bounded_both_ways() -> None:
    registrar = Registrar(RegistrarPolicy(min_expires=60, max_expires=3600))
    huge = apply(registrar, register(["<sip:alice@10.0.0.1>"], expires="4294967295"))
    assert huge.status == 200 and huge.saved[0].expires_at == 3600
    brief = apply(registrar, register(["<sip:alice@10.0.0.2>;expires=5"], cseq=2))
    assert brief.status == 423 and ("Min-Expires", "60") in brief.headers
    assert [b.contact for b in registrar.lookup(AOR, 0)] == ["sip:alice@10.0.0.1"]  # unchanged
    absurd = apply(registrar, register(["<sip:alice@10.0.0.3>"], expires="99999999999999", cseq=3))
    assert absurd.status == 400


def test_deregistration_one_contact_and_all_with_the_wildcard() -> None:
    registrar = Registrar()
    apply(registrar, register(["<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>"]))
    gone = apply(registrar, register(["<sip:alice@10.0.0.1>;expires=0"], cseq=2))
    assert gone.status == 200 and [b.contact for b in gone.removed] == ["sip:alice@10.0.0.1"]
    assert [b.contact for b in registrar.lookup(AOR, 0)] == ["sip:alice@10.0.0.2"]
    bad = apply(registrar, register(["*"], cseq=3))  # * needs Expires: 0
    assert bad.status == 400
    alone = apply(registrar, register(["*", "<sip:alice@10.0.0.9>"], expires="0", cseq=3))
    assert alone.status == 400
    wildcard = apply(registrar, register(["*"], expires="0", cseq=4))
    assert wildcard.status == 200 and registrar.lookup(AOR, 0) == []
    assert [v for k, v in wildcard.headers if k == "Contact"] == []


def test_updates_are_ordered_by_call_id_and_cseq() -> None:
    registrar = Registrar()
    apply(registrar, register(["<sip:alice@10.0.0.1>"], cseq=5))
    stale = apply(registrar, register(["<sip:alice@10.0.0.1>;expires=0"], cseq=5))
    assert stale.status == 400 and registrar.lookup(AOR, 0)
    other_call = apply(registrar, register(["<sip:alice@10.0.0.1>;expires=0"], call_id="x", cseq=1))
    assert other_call.status == 200 and registrar.lookup(AOR, 0) == []


def test_a_contact_flood_is_refused_whole() -> None:
    registrar = Registrar(RegistrarPolicy(max_bindings=3))
    apply(registrar, register(["<sip:alice@10.0.0.1>"]))
    flood = apply(registrar, register([f"<sip:alice@10.0.1.{i}>" for i in range(50)], cseq=2))
    assert flood.status == 403 and "at most 3" in (flood.warning or "")
    more = apply(registrar, register([f"<sip:alice@10.0.2.{i}>" for i in range(3)], cseq=3))
    assert more.status == 403  # 1 + 3 > 3: all or nothing
    assert [b.contact for b in registrar.lookup(AOR, 0)] == ["sip:alice@10.0.0.1"]
    refresh = apply(registrar, register(["<sip:alice@10.0.0.1>", "<sip:alice@10.0.3.1>"], cseq=4))
    assert refresh.status == 200 and len(registrar.lookup(AOR, 0)) == 2


def test_only_the_owner_of_an_address_of_record_may_change_it() -> None:
    registrar = Registrar()
    assert apply(registrar, register(["<sip:alice@10.0.0.1>"]), user="bob").status == 403
    assert apply(registrar, register(["<sip:alice@10.0.0.1>"]), user=None).status == 403
    other = register(["<sip:alice@10.0.0.1>"], to="sip:alice@elsewhere.test")
    assert apply(registrar, other).status == 404
    assert registrar.lookup(AOR, 0) == []


@pytest.mark.parametrize(
    "contact",
    [
        "<http://example.test/>",
        "<sip:alice@10.0.0.1>;q=2",
        "<sip:alice@10.0.0.1>;q=0.12345",
        "<sip:alice@10.0.0.1>;expires=soon",
        "<sip:alice:pw@10.0.0.1>",
        "<sip:alice@10.0.0.1>;reg-id=1",
    ],
)
def test_bad_contacts_are_400(contact: str) -> None:
    registrar = Registrar()
    result = apply(registrar, register([contact]))
    assert result.status == 400 and result.warning
    assert registrar.lookup(AOR, 0) == []


def test_a_query_lists_the_bindings_and_changes_nothing() -> None:
    registrar = Registrar()
    apply(registrar, register(["<sip:alice@10.0.0.1>"]), 0.0)
    query = apply(registrar, register([], cseq=2), 10.0)
    assert query.status == 200 and not query.saved and not query.removed
    assert [v for k, v in query.headers if k == "Contact"] == ["<sip:alice@10.0.0.1>;expires=3590"]


def test_rfc5626_bindings_are_keyed_by_instance_and_reg_id() -> None:
    registrar = Registrar()
    instance = '"<urn:uuid:00000000-0000-0000-0000-00000000000a>"'
    first = apply(
        registrar, register([f"<sip:alice@10.0.0.1;ob>;reg-id=1;+sip.instance={instance}"])
    )
    assert ("Require", "outbound") in first.headers and first.saved[0].outbound
    # The same instance and reg-id from a new address (a new flow) replaces the binding.
    moved = apply(
        registrar,
        register([f"<sip:alice@10.0.0.2;ob>;reg-id=1;+sip.instance={instance}"], cseq=2),
        source=Address("tls", "192.0.2.8", 40009),
    )
    [binding] = registrar.lookup(AOR, 0)
    assert moved.status == 200 and binding.contact == "sip:alice@10.0.0.2;ob"
    assert binding.flow == Address("tls", "192.0.2.8", 40009, flow=True) and not moved.removed


def test_stored_bindings_come_back_and_lapsed_ones_stay_out() -> None:
    live = Binding(AOR, "sip:alice@10.0.0.1", expires_at=500.0, registered_at=1.0)
    lapsed = Binding(AOR, "sip:alice@10.0.0.2", expires_at=50.0, registered_at=2.0)
    registrar = Registrar(bindings=[live, lapsed])
    assert registrar.lookup(AOR, 100.0) == [live]
    result = apply(registrar, register(["<sip:alice@10.0.0.3>"]), 100.0)
    assert result.removed == (lapsed,)
    assert [v for k, v in result.headers if k == "Contact"][-1].startswith("<sip:alice@10.0.0.1>")


def test_contact_keys_compare_as_uris() -> None:
    assert contact_key("sip:alice@EXAMPLE.test:5060;transport=TLS") == contact_key(
        "sip:alice@example.test:5060;transport=tls"
    )
    assert contact_key("sip:alice@example.test") != contact_key("sips:alice@example.test")


# --- the core carries it -----------------------------------------------------------------------


def test_without_a_registrar_register_is_405() -> None:
    net = Network()
    core = UserAgentCore(UserAgentConfig(local={"udp": SERVER}))
    request = register(["<sip:alice@10.0.0.1>"])
    core.receive(request, Address("udp", "192.0.2.7", 40001), 0.0)
    [(response, _)] = core.outgoing()
    assert isinstance(response, SipResponse) and response.status == 405
    assert net.now == 0.0


def test_respond_refuses_a_key_it_does_not_know() -> None:
    core = UserAgentCore(UserAgentConfig(local={"udp": SERVER}, registrar=True))
    with pytest.raises(LocalProtocolError):
        core.respond(TransactionKey("z9hG4bK-none", "", "REGISTER", True), 200, 0.0)
    with pytest.raises(LocalProtocolError):
        core.send_request(register([]).__class__("INVITE", "sip:x@y", Headers()), SERVER, 0.0)


def test_unauthenticated_registers_reach_the_registrar_without_a_user() -> None:
    core = UserAgentCore(UserAgentConfig(local={"udp": SERVER}, registrar=True))
    core.receive(register(["<sip:alice@10.0.0.1>"]), Address("udp", "192.0.2.7", 40001), 0.0)
    [event] = core.events()
    assert isinstance(event, RegisterReceived) and event.auth_user is None
    core.respond(event.key, 403, 0.0)
    [(response, _)] = core.outgoing()
    assert isinstance(response, SipResponse) and response.status == 403 and response.to.tag


def test_a_call_to_a_flow_keeps_its_in_dialog_requests_on_that_flow() -> None:
    """RFC 5626 §5.3: a registered device behind NAT is reached over the connection it opened,
    and so are the ACK and the BYE, whatever its Contact says."""
    core = UserAgentCore(UserAgentConfig(local={"tls": Address("tls", "127.0.0.1", 5061)}))
    flow = Address("tls", "192.0.2.7", 40001, flow=True)
    call = core.invite("sip:alice@10.9.9.9:5061;transport=tls", 0.0, destination=flow)
    [(invite, destination)] = core.outgoing()
    assert destination == flow and isinstance(invite, SipRequest)
    contact = ("Contact", "<sip:alice@10.9.9.9:5061;transport=tls>")
    core.receive(make_response(invite, 200, to_tag="dev", headers=[contact]), flow, 0.1)
    [(ack, destination)] = core.outgoing()
    assert isinstance(ack, SipRequest) and ack.method == "ACK" and destination == flow
    core.bye(call.id, 1.0)
    [(bye, destination)] = core.outgoing()
    assert isinstance(bye, SipRequest) and bye.method == "BYE" and destination == flow


def test_an_outbound_proxy_is_a_loose_route() -> None:
    reg = Registration(
        config(outbound_proxy="sip:edge.example.test;transport=tls"),
        via="SIP/2.0/TLS 127.0.0.1:5061;rport",
    )
    reg.start(0.0)
    [request] = reg.requests()
    assert request.uri == f"sip:{DOMAIN}"  # the registrar's domain stays the Request-URI
    assert request.headers.get_all("Route") == ["<sip:edge.example.test;transport=tls;lr>"]


def test_the_flows_of_current_bindings_are_indexed() -> None:
    registrar = Registrar()
    first = Address("tls", "192.0.2.7", 40001)
    apply(registrar, register(["<sip:alice@10.0.0.1>"]), source=first)
    assert [b.contact for b in registrar.over_flow("tls", "192.0.2.7", 40001, 0.0)] == [
        "sip:alice@10.0.0.1"
    ]
    moved = Address("tls", "192.0.2.7", 40002)  # the same contact from a new connection
    apply(registrar, register(["<sip:alice@10.0.0.1>"], cseq=2), source=moved)
    assert registrar.over_flow("tls", "192.0.2.7", 40001, 0.0) == []
    assert len(registrar.over_flow("tls", "192.0.2.7", 40002, 0.0)) == 1
    assert registrar.over_flow("tls", "192.0.2.7", 40002, 4000.0) == []  # lapsed
    registrar.expire(4000.0)
    assert registrar._flows == {}
    apply(registrar, register(["<sip:alice@10.0.0.1>"], cseq=3), 5000.0, source=moved)
    apply(registrar, register(["*"], expires="0", cseq=4), 5000.0, source=moved)
    assert registrar._flows == {}


def test_changes_read_back_from_another_registrar_are_applied_in_place() -> None:
    """A shared store's changes (bindings another registrar saved or removed) change only the
    keys they name, and the flow index follows: a binding moved to a new flow is found over
    that one only, a removed one over none, and a new key past the bound is left out."""
    registrar = Registrar(RegistrarPolicy(max_bindings=2))
    apply(registrar, register(["<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>"]))
    [one, two] = sorted(registrar.lookup(AOR, 0.0), key=lambda b: b.contact)
    bob = Binding("bob@" + DOMAIN, "sip:bob@10.0.0.3", 500.0, source_host="192.0.2.9")
    moved = dataclasses.replace(one, source_port=40002, cseq=2, expires_at=900.0)
    registrar.apply(saved=[moved, bob], removed=[(AOR, two.key), ("carol@" + DOMAIN, "gone")])
    assert registrar.lookup(AOR, 0.0) == [moved]
    assert registrar.lookup("bob@" + DOMAIN, 0.0) == [bob]
    assert registrar.over_flow("tls", "192.0.2.7", 40001, 0.0) == []  # two left, one moved
    assert registrar.over_flow("tls", "192.0.2.7", 40002, 0.0) == [moved]
    assert registrar.over_flow("udp", "192.0.2.9", 0, 0.0) == [bob]
    flood = [
        Binding(AOR, f"sip:alice@10.1.0.{i}", 900.0, source_host="192.0.2.8") for i in range(3)
    ]
    registrar.apply(saved=flood)
    assert [b.contact for b in registrar.lookup(AOR, 0.0)] == [moved.contact, flood[0].contact]
    registrar.apply(removed=[(AOR, moved.key), (AOR, flood[0].key), ("bob@" + DOMAIN, bob.key)])
    assert registrar.all(0.0) == [] and registrar._aors == {} and registrar._flows == {}


def test_a_registered_caller_is_sent_our_bye_over_its_flow() -> None:
    """RFC 5626 §5.3, the other way round: a device that registered over TLS calls in over that
    connection; our BYE goes back over it, not to its (NATed) Contact."""
    core = UserAgentCore(UserAgentConfig(local={"tls": Address("tls", "127.0.0.1", 5061)}))
    invite = SipRequest(
        "INVITE",
        "sip:ivr@example.test",
        Headers(
            [
                ("Via", "SIP/2.0/TLS 10.9.9.9:5061;branch=z9hG4bK-dev;rport"),
                ("From", "<sip:alice@example.test>;tag=dev"),
                ("To", "<sip:ivr@example.test>"),
                ("Call-ID", "dev-call"),
                ("CSeq", "1 INVITE"),
                ("Contact", "<sip:alice@10.9.9.9:5061;transport=tls>"),
            ]
        ),
    )
    source = Address("tls", "192.0.2.7", 40001)
    core.receive(invite, source, 0.0)
    [event] = [e for e in core.events() if isinstance(e, InviteReceived)]
    core.keep_on_flow(event.call)
    core.answer(event.call, b"", 0.1)
    [ok] = [m for m, _ in core.outgoing() if isinstance(m, SipResponse) and m.status == 200]
    # The device ACKs over its flow (our BYE may only follow the ACK, RFC 3261 §15).
    ack = SipRequest(
        "ACK",
        "sip:callxml@127.0.0.1:5061;transport=tls",
        Headers(
            [
                ("Via", "SIP/2.0/TLS 10.9.9.9:5061;branch=z9hG4bK-dev-ack;rport"),
                ("From", "<sip:alice@example.test>;tag=dev"),
                ("To", ok.headers.get("To") or ""),
                ("Call-ID", "dev-call"),
                ("CSeq", "1 ACK"),
            ]
        ),
    )
    core.receive(ack, source, 0.2)
    core.bye(event.call, 1.0)
    [(bye, destination)] = [(m, d) for m, d in core.outgoing() if isinstance(m, SipRequest)]
    assert bye.method == "BYE" and destination == Address("tls", "192.0.2.7", 40001, flow=True)
