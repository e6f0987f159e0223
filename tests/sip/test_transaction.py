"""The four transaction state machines, driven by hand with an explicit clock (RFC 3261 §17,
RFC 6026). Each test names the rule it checks; no sockets, no sleeping."""

from __future__ import annotations

import pytest

from callxml.errors import ConfigError, LocalProtocolError
from callxml.sip.events import (
    AckReceived,
    Address,
    RequestReceived,
    ResponseReceived,
    TransactionTerminated,
    TransactionTimedOut,
    TransportErrorOccurred,
)
from callxml.sip.message import SipRequest, SipResponse
from callxml.sip.timers import Timer, TimerConfig
from callxml.sip.transaction import (
    CLIENT_INVITE_TABLE,
    CLIENT_NON_INVITE_TABLE,
    SERVER_INVITE_TABLE,
    SERVER_NON_INVITE_TABLE,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    State,
    Transaction,
    client_key,
    server_key,
)

from .helpers import request, response_to

UDP = Address("udp", "127.0.0.1", 5070)
TCP = Address("tcp", "127.0.0.1", 5070)


def state(txn: Transaction) -> State:
    """The current state (a call, so mypy does not narrow it between inputs)."""
    return txn.state


def labels(txn: Transaction) -> list[str]:
    out = []
    for m in txn.messages_to_send():
        out.append(m.method if isinstance(m, SipRequest) else f"{m.status}")
    return out


def fire_until(txn: Transaction, end: float) -> list[float]:
    """Fire timers up to ``end``; returns when each retransmission went out."""
    times = []
    while (t := txn.next_timer()) is not None and t <= end:
        txn.handle_timer(t)
        if txn.messages_to_send():
            times.append(round(t, 6))
    return times


# --- timers -----------------------------------------------------------------------------


def test_timer_defaults_rfc3261_table4() -> None:
    c = TimerConfig()
    assert (c.t1, c.t2, c.t4) == (0.5, 4.0, 5.0)
    assert c.duration(Timer.B, reliable=False) == 32.0
    assert c.duration(Timer.D, reliable=False) == 32.0 and c.duration(Timer.D, reliable=True) == 0
    assert c.duration(Timer.K, reliable=False) == 5.0 and c.duration(Timer.K, reliable=True) == 0
    assert c.duration(Timer.I, reliable=False) == 5.0 and c.duration(Timer.I, reliable=True) == 0
    assert c.duration(Timer.J, reliable=False) == 32.0 and c.duration(Timer.J, reliable=True) == 0
    assert c.duration(Timer.H, reliable=True) == 32.0
    assert c.duration(Timer.L, reliable=True) == c.duration(Timer.M, reliable=False) == 32.0
    assert not c.retransmits(Timer.A, reliable=True) and c.retransmits(Timer.A, reliable=False)
    with pytest.raises(ConfigError):
        TimerConfig(t1=5, t2=4)


def test_tables_use_only_rfc_states() -> None:
    for table in (
        CLIENT_INVITE_TABLE,
        CLIENT_NON_INVITE_TABLE,
        SERVER_INVITE_TABLE,
        SERVER_NON_INVITE_TABLE,
    ):
        for (state, _), (new, _) in table.items():
            assert state is not State.TERMINATED and isinstance(new, State)


# --- INVITE client ----------------------------------------------------------------------


def test_invite_client_timer_a_doubles_until_timer_b() -> None:
    invite = request("INVITE")
    txn = ClientInviteTransaction(invite, UDP, 0.0)
    assert labels(txn) == ["INVITE"] and state(txn) is State.CALLING
    # RFC 3261 §17.1.1.2: A = T1, 2T1, 4T1...; B = 64*T1 ends it.
    assert fire_until(txn, 40.0) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert state(txn) is State.TERMINATED
    events = txn.events()
    assert TransactionTimedOut(txn.key, "B") in events
    assert isinstance(events[-1], TransactionTerminated)


def test_invite_client_reliable_never_retransmits() -> None:
    txn = ClientInviteTransaction(request("INVITE", transport="TCP"), TCP, 0.0)
    txn.messages_to_send()
    assert txn.next_timer() == 32.0
    txn.handle_timer(32.0)
    assert txn.messages_to_send() == [] and state(txn) is State.TERMINATED


def test_invite_client_provisional_stops_retransmissions() -> None:
    invite = request("INVITE")
    txn = ClientInviteTransaction(invite, UDP, 0.0)
    txn.messages_to_send()
    txn.receive_response(response_to(invite, 180), 0.2)
    assert state(txn) is State.PROCEEDING
    assert isinstance(txn.events()[0], ResponseReceived)
    assert txn.next_timer() is None  # no A, no B in Proceeding
    txn.receive_response(response_to(invite, 183), 5.0)
    assert [e.response.status for e in txn.events() if isinstance(e, ResponseReceived)] == [183]


def test_invite_client_acks_non_2xx_inside_transaction() -> None:
    invite = request("INVITE", branch="z9hG4bK-abc")
    txn = ClientInviteTransaction(invite, UDP, 0.0)
    txn.messages_to_send()
    busy = response_to(invite, 486)
    txn.receive_response(busy, 0.1)
    assert state(txn) is State.COMPLETED
    [ack] = txn.messages_to_send()
    assert isinstance(ack, SipRequest) and ack.method == "ACK"
    # §17.1.1.3: same branch and Request-URI, To from the response, CSeq number same, ACK.
    assert ack.vias[0].branch == "z9hG4bK-abc" and len(ack.vias) == 1
    assert ack.uri == invite.uri and ack.to.tag == "bob-tag"
    assert (ack.cseq.seq, ack.cseq.method) == (1, "ACK")
    assert ack.from_ == invite.from_ and ack.call_id == invite.call_id
    assert [e.response.status for e in txn.events() if isinstance(e, ResponseReceived)] == [486]
    # A retransmitted 486 is ACKed again and not passed up.
    txn.receive_response(busy, 0.6)
    assert labels(txn) == ["ACK"]
    assert txn.events() == []
    # Timer D (32 s over UDP) ends it.
    assert txn.next_timer() == pytest.approx(32.1)
    txn.handle_timer(32.1)
    assert state(txn) is State.TERMINATED


def test_invite_client_non_2xx_over_tcp_terminates_at_once() -> None:
    invite = request("INVITE", transport="TCP")
    txn = ClientInviteTransaction(invite, TCP, 0.0)
    txn.receive_response(response_to(invite, 404), 0.1)
    assert labels(txn) == ["INVITE", "ACK"]
    assert state(txn) is State.TERMINATED  # Timer D = 0 on reliable transports


def test_invite_client_accepted_state_passes_2xx_retransmissions_up() -> None:
    invite = request("INVITE")
    txn = ClientInviteTransaction(invite, UDP, 0.0)
    txn.messages_to_send()
    ok = response_to(invite, 200)
    txn.receive_response(ok, 0.1)
    assert state(txn) is State.ACCEPTED  # RFC 6026 §7.2
    assert txn.messages_to_send() == []  # the ACK for 2xx is the TU's job (§13.2.2.4)
    txn.receive_response(ok, 0.6)
    assert [e.response.status for e in txn.events() if isinstance(e, ResponseReceived)] == [
        200,
        200,
    ]
    txn.receive_response(response_to(invite, 180), 0.7)  # absorbed
    assert txn.events() == []
    assert txn.next_timer() == pytest.approx(32.1)  # Timer M = 64*T1
    txn.handle_timer(32.1)
    assert state(txn) is State.TERMINATED


def test_client_transport_error() -> None:
    txn = ClientInviteTransaction(request("INVITE"), UDP, 0.0)
    txn.transport_error(0.0, "ICMP unreachable")
    assert state(txn) is State.TERMINATED
    assert TransportErrorOccurred(txn.key, "ICMP unreachable") in txn.events()
    assert txn.next_timer() is None


# --- non-INVITE client ------------------------------------------------------------------


def test_non_invite_client_timer_e_caps_at_t2() -> None:
    txn = ClientNonInviteTransaction(request("OPTIONS"), UDP, 0.0)
    txn.messages_to_send()
    # §17.1.2.2: E = 0.5, 1, 2, 4, 4, 4...; F = 32 s.
    times = fire_until(txn, 40.0)
    assert times[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    assert times[-1] == 31.5
    assert state(txn) is State.TERMINATED
    assert TransactionTimedOut(txn.key, "F") in txn.events()


def test_non_invite_client_proceeding_retransmits_every_t2() -> None:
    req = request("BYE")
    txn = ClientNonInviteTransaction(req, UDP, 0.0)
    txn.messages_to_send()
    txn.handle_timer(0.5)  # first retransmission, E becomes 1 s
    txn.receive_response(response_to(req, 100), 0.6)
    assert state(txn) is State.PROCEEDING
    assert fire_until(txn, 10.0) == [1.5, 5.5, 9.5]  # then every T2


def test_non_invite_client_completed_absorbs_and_waits_timer_k() -> None:
    req = request("BYE")
    txn = ClientNonInviteTransaction(req, UDP, 0.0)
    txn.messages_to_send()
    txn.receive_response(response_to(req, 200), 0.1)
    assert state(txn) is State.COMPLETED
    txn.receive_response(response_to(req, 200), 0.2)
    assert [type(e) for e in txn.events()] == [ResponseReceived]
    assert txn.next_timer() == pytest.approx(5.1)  # Timer K = T4
    txn.handle_timer(5.1)
    assert state(txn) is State.TERMINATED


def test_non_invite_client_over_tcp_terminates_on_final() -> None:
    req = request("BYE", transport="TCP")
    txn = ClientNonInviteTransaction(req, TCP, 0.0)
    assert txn.next_timer() == 32.0  # F only
    txn.receive_response(response_to(req, 481), 0.1)
    assert state(txn) is State.TERMINATED


def test_non_invite_client_refuses_invite() -> None:
    with pytest.raises(LocalProtocolError):
        ClientNonInviteTransaction(request("INVITE"), UDP, 0.0)


# --- INVITE server ----------------------------------------------------------------------


def test_invite_server_sends_100_and_absorbs_retransmissions() -> None:
    invite = request("INVITE")
    txn = ServerInviteTransaction(invite, UDP, 0.0)
    assert labels(txn) == ["100"]
    assert isinstance(txn.events()[0], RequestReceived)
    txn.receive_request(invite, 0.5)
    assert labels(txn) == ["100"]  # the last provisional again, §17.2.1
    txn.send_response(response_to(invite, 180), 1.0)
    txn.receive_request(invite, 1.5)
    assert labels(txn) == ["180", "180"]
    assert txn.events() == []  # retransmissions never reach the TU


def test_invite_server_non_2xx_timer_g_and_ack() -> None:
    invite = request("INVITE")
    txn = ServerInviteTransaction(invite, UDP, 0.0)
    txn.messages_to_send()
    txn.events()
    txn.send_response(response_to(invite, 486), 1.0)
    assert labels(txn) == ["486"] and state(txn) is State.COMPLETED
    # Timer G: T1, 2T1, 4T1, capped at T2 (§17.2.1).
    assert fire_until(txn, 9.0) == [1.5, 2.5, 4.5, 8.5]
    txn.receive_request(invite, 9.0)  # retransmitted INVITE: final response again
    assert labels(txn) == ["486"]
    ack = request("ACK", to_tag="bob-tag")
    txn.receive_request(ack, 9.1)
    assert state(txn) is State.CONFIRMED
    assert [type(e) for e in txn.events()] == [AckReceived]
    txn.receive_request(ack, 9.2)  # absorbed
    assert txn.messages_to_send() == [] and txn.events() == []
    assert txn.next_timer() == pytest.approx(14.1)  # Timer I = T4
    txn.handle_timer(14.1)
    assert state(txn) is State.TERMINATED


def test_invite_server_timer_h_without_ack() -> None:
    invite = request("INVITE")
    txn = ServerInviteTransaction(invite, UDP, 0.0)
    txn.send_response(response_to(invite, 603), 0.0)
    fire_until(txn, 100.0)
    assert state(txn) is State.TERMINATED
    assert TransactionTimedOut(txn.key, "H") in txn.events()


def test_invite_server_reliable_no_timer_g_and_immediate_confirmed_end() -> None:
    invite = request("INVITE", transport="TCP")
    txn = ServerInviteTransaction(invite, TCP, 0.0)
    txn.send_response(response_to(invite, 486), 0.0)
    assert txn.next_timer() == 32.0  # H only, no G
    txn.receive_request(request("ACK", transport="TCP", to_tag="bob-tag"), 0.1)
    assert state(txn) is State.TERMINATED  # Timer I = 0


def test_invite_server_accepted_state_rfc6026() -> None:
    invite = request("INVITE")
    txn = ServerInviteTransaction(invite, UDP, 0.0)
    txn.messages_to_send()
    ok = response_to(invite, 200)
    txn.send_response(ok, 0.1)
    assert state(txn) is State.ACCEPTED and labels(txn) == ["200"]
    txn.receive_request(invite, 0.5)  # absorbed: no response resent by the transaction
    assert txn.messages_to_send() == []
    txn.send_response(ok, 0.6)  # the TU's 2xx retransmission is sent
    assert labels(txn) == ["200"]
    with pytest.raises(LocalProtocolError):
        txn.send_response(response_to(invite, 486), 0.7)
    assert txn.next_timer() == pytest.approx(32.1)  # Timer L
    txn.handle_timer(32.1)
    assert state(txn) is State.TERMINATED


def test_invite_server_rejects_second_final_and_wrong_method() -> None:
    invite = request("INVITE")
    txn = ServerInviteTransaction(invite, UDP, 0.0)
    txn.send_response(response_to(invite, 404), 0.0)
    with pytest.raises(LocalProtocolError):
        txn.send_response(response_to(invite, 200), 0.1)
    with pytest.raises(LocalProtocolError):
        txn.send_response(response_to(request("BYE"), 200), 0.1)


# --- non-INVITE server ------------------------------------------------------------------


def test_non_invite_server_trying_absorbs_then_resends_final() -> None:
    bye = request("BYE")
    txn = ServerNonInviteTransaction(bye, UDP, 0.0)
    assert txn.messages_to_send() == []  # no 100 for non-INVITE
    txn.receive_request(bye, 0.5)
    assert txn.messages_to_send() == []  # Trying: discarded
    txn.send_response(response_to(bye, 200), 1.0)
    txn.receive_request(bye, 1.5)
    assert labels(txn) == ["200", "200"]
    assert txn.next_timer() == pytest.approx(33.0)  # Timer J = 64*T1
    txn.handle_timer(33.0)
    assert state(txn) is State.TERMINATED


def test_non_invite_server_provisional_then_final() -> None:
    req = request("OPTIONS")
    txn = ServerNonInviteTransaction(req, UDP, 0.0)
    txn.send_response(response_to(req, 100), 0.0)
    txn.receive_request(req, 0.5)
    assert labels(txn) == ["100", "100"]
    txn.send_response(response_to(req, 200), 0.6)
    assert state(txn) is State.COMPLETED


def test_non_invite_server_reliable_terminates_on_final() -> None:
    req = request("OPTIONS", transport="TCP")
    txn = ServerNonInviteTransaction(req, TCP, 0.0)
    txn.send_response(response_to(req, 200), 0.0)
    assert state(txn) is State.TERMINATED


# --- keys -------------------------------------------------------------------------------


def test_keys_match_per_rfc3261_17_1_3_and_17_2_3() -> None:
    invite = request("INVITE", branch="z9hG4bK-k1")
    ack = request("ACK", branch="z9hG4bK-k1")
    cancel = request("CANCEL", branch="z9hG4bK-k1")
    assert server_key(ack) == server_key(invite)  # ACK matches the INVITE
    assert server_key(cancel) != server_key(invite)  # CANCEL is its own transaction
    resp: SipResponse = response_to(invite, 180)
    assert client_key(resp) == client_key(invite)
    assert client_key(response_to(cancel, 200)) != client_key(invite)
    assert server_key(request("INVITE", branch="z9hG4bK-k2")) != server_key(invite)


def test_rfc2543_requests_without_cookie_get_distinct_keys() -> None:
    # No z9hG4bK branch: fall back to Request-URI, From tag, Call-ID and CSeq (§17.2.3).
    first = request("INVITE", branch="old1")
    again = request("INVITE", branch="old1")
    other = request("INVITE", branch="old1", cseq=2)
    ack = request("ACK", branch="old1", to_tag="bob-tag")
    assert server_key(first) == server_key(again) == server_key(ack)
    assert server_key(other) != server_key(first)
    assert server_key(request("INVITE", branch="old1", call_id="x@y")) != server_key(first)
