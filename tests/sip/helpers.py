"""Test helpers for the sans-IO SIP layers: a fake clock and a lossy in-memory network.

Two (or more) endpoints that follow :class:`Endpoint` (the user agent core does) are wired to a
:class:`Network`. Every message is serialised to bytes and parsed again on delivery, so the
wire format is exercised too. A ``drop`` rule decides which messages are lost; ``run`` advances
a fake clock from event to event (deliveries and timers), so a 32-second Timer D costs nothing
and no test ever sleeps.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from callxml.sip.events import Address
from callxml.sip.message import Headers, SipMessage, SipRequest, SipResponse, parse_message


class Endpoint(Protocol):
    def receive(self, message: SipMessage, source: Address, now: float) -> None: ...
    def outgoing(self) -> list[tuple[SipMessage, Address]]: ...
    def next_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...


def describe(message: SipMessage) -> str:
    """``"INVITE"``, ``"100/INVITE"``, ``"ACK"``: a short label for assertions on traffic."""
    if isinstance(message, SipRequest):
        return message.method
    return f"{message.status}/{message.cseq.method}"


@dataclass(order=True)
class _Flight:
    at: float
    seq: int
    data: bytes = field(compare=False)
    source: Address = field(compare=False)
    destination: Address = field(compare=False)


@dataclass
class Sent:
    """One message put on the wire (delivered or not)."""

    at: float
    label: str
    message: SipMessage
    source: Address
    destination: Address
    dropped: bool


DropRule = Callable[[SipMessage, Address, Address], bool]


class Network:
    """A lossy in-memory link between endpoints, driven by a fake clock.

    ``latency`` is the one-way delay. ``drop(message, source, destination)`` returns True to
    lose a message; :meth:`drop_first` builds the common "lose the first n of these" rule.
    """

    def __init__(self, *, latency: float = 0.01, now: float = 0.0) -> None:
        self.now = now
        self.latency = latency
        self.endpoints: dict[tuple[str, int], Endpoint] = {}
        self.addresses: dict[int, Address] = {}
        self.drop: DropRule = lambda message, source, destination: False
        self.log: list[Sent] = []
        self._flights: list[_Flight] = []
        self._seq = 0

    def attach(self, address: Address, endpoint: Endpoint) -> None:
        self.endpoints[(address.host, address.port)] = endpoint
        self.addresses[id(endpoint)] = address
        self._collect()

    def drop_first(self, label: str, count: int = 1) -> None:
        """Lose the first ``count`` messages labelled ``label`` (see :func:`describe`)."""
        remaining = {"n": count}

        def rule(message: SipMessage, source: Address, destination: Address) -> bool:
            if describe(message) == label and remaining["n"] > 0:
                remaining["n"] -= 1
                return True
            return False

        self.drop = rule

    def labels(self, source: Address | None = None) -> list[str]:
        """Labels of everything sent (by ``source``), in order, dropped ones included."""
        return [s.label for s in self.log if source is None or s.source == source]

    def _collect(self) -> None:
        for endpoint in list(self.endpoints.values()):
            source = self.addresses[id(endpoint)]
            for message, destination in endpoint.outgoing():
                data = bytes(message)
                dropped = self.drop(message, source, destination)
                self.log.append(
                    Sent(self.now, describe(message), message, source, destination, dropped)
                )
                if not dropped:
                    self._seq += 1
                    flight = _Flight(self.now + self.latency, self._seq, data, source, destination)
                    heapq.heappush(self._flights, flight)

    def step(self, until: float) -> bool:
        """Process the next delivery or timer at or before ``until``; False if none is due."""
        timers = [(t, ep) for ep in self.endpoints.values() if (t := ep.next_timer()) is not None]
        next_timer = min(timers, key=lambda x: x[0], default=None)
        next_flight = self._flights[0] if self._flights else None
        if next_flight is not None and (next_timer is None or next_flight.at <= next_timer[0]):
            if next_flight.at > until:
                return False
            heapq.heappop(self._flights)
            self.now = max(self.now, next_flight.at)
            target = self.endpoints.get(
                (next_flight.destination.host, next_flight.destination.port)
            )
            if target is not None:
                target.receive(parse_message(next_flight.data), next_flight.source, self.now)
        elif next_timer is not None:
            if next_timer[0] > until:
                return False
            self.now = max(self.now, next_timer[0])
            next_timer[1].handle_timer(self.now)
        else:
            return False
        self._collect()
        return True

    def run(self, duration: float = 600.0, *, max_steps: int = 100_000) -> None:
        """Run until nothing is due within ``duration`` seconds of the current time."""
        until = self.now + duration
        for _ in range(max_steps):
            if not self.step(until):
                return
        raise AssertionError("the network did not settle (a retransmission loop?)")

    def run_until(self, predicate: Callable[[], bool], limit: float = 600.0) -> None:
        """Run until ``predicate()`` holds; fails if it does not within ``limit`` seconds."""
        until = self.now + limit
        while not predicate():
            if not self.step(until):
                raise AssertionError("condition not reached")


def request(
    method: str,
    *,
    uri: str = "sip:bob@127.0.0.1:5070",
    branch: str = "z9hG4bK-test-1",
    via_host: str = "127.0.0.1:5060",
    transport: str = "UDP",
    cseq: int = 1,
    call_id: str = "call-1@127.0.0.1",
    from_tag: str = "alice-tag",
    to_tag: str | None = None,
    body: bytes = b"",
) -> SipRequest:
    """A minimal valid request for transaction tests."""
    to = "<sip:bob@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    headers = Headers(
        [
            ("Via", f"SIP/2.0/{transport} {via_host};branch={branch}"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:alice@127.0.0.1>;tag={from_tag}"),
            ("To", to),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", "<sip:alice@127.0.0.1:5060>"),
        ]
    )
    return SipRequest(method, uri, headers, body)


def response_to(req: SipRequest, status: int, *, to_tag: str | None = "bob-tag") -> SipResponse:
    from callxml.sip.message import make_response

    return make_response(req, status, to_tag=to_tag if status > 100 else None)
