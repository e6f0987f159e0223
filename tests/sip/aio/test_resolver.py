"""Resolving a next hop's host name (the DNS half of RFC 3263 §4) and the resolver seam."""

from __future__ import annotations

import pytest

from callxml.errors import TransportError
from callxml.sip.aio.resolver import (
    DnsResolver,
    Naptr,
    Srv,
    StaticResolver,
    SystemResolver,
    locate,
    order_srv,
    resolve_target,
)
from callxml.sip.events import Address
from callxml.sip.target import next_hop
from callxml.sip.uri import parse_uri


async def test_literals_skip_dns() -> None:
    resolver = StaticResolver({})
    assert await resolve_target(Address("tcp", "::1", 5060, "::1"), resolver) == [
        Address("tcp", "::1", 5060, "::1")
    ]


async def test_static_resolver_maps_names_and_keeps_server_name() -> None:
    resolver = StaticResolver({"sip.example.test": ["127.0.0.1", "::1"]})
    got = await resolve_target(next_hop("sips:bob@SIP.example.test"), resolver)
    assert got == [
        Address("tls", "127.0.0.1", 5061, "SIP.example.test"),
        Address("tls", "::1", 5061, "SIP.example.test"),
    ]
    with pytest.raises(TransportError, match="not in the static table"):
        await resolve_target(next_hop("sip:other.test"), resolver)


async def test_system_resolver_localhost_and_failure() -> None:
    addresses = await SystemResolver().lookup("localhost", 5060, "udp")
    assert "127.0.0.1" in addresses or "::1" in addresses
    with pytest.raises(TransportError, match="cannot resolve"):
        await SystemResolver().lookup("no-such-host.invalid", 5060, "udp")


async def test_bad_target_values() -> None:
    resolver = StaticResolver({"h": "127.0.0.1"})
    with pytest.raises(TransportError, match="unsupported"):
        await resolve_target(Address("sctp", "h", 5060), resolver)
    with pytest.raises(TransportError, match="out of range"):
        await resolve_target(Address("udp", "h", 70000), resolver)
    assert await resolve_target(Address("udp", "h", 5060), resolver) == [
        Address("udp", "127.0.0.1", 5060, "h")
    ]


def test_order_srv_priority_then_weight() -> None:
    records = [
        Srv(20, 0, 5060, "c.test"),
        Srv(10, 10, 5060, "a.test"),
        Srv(10, 90, 5060, "b.test"),
        Srv(10, 0, 5060, "zero.test"),
    ]
    # RFC 2782: weight-0 records first among equals; a draw of 0 takes the first running sum
    # that reaches it, a draw at the top of the range takes the heaviest.
    assert [r.target for r in order_srv(records, rand=lambda n: 0)] == [
        "zero.test",
        "a.test",
        "b.test",
        "c.test",
    ]
    assert [r.target for r in order_srv(records, rand=lambda n: n)][:3] == [
        "b.test",
        "a.test",
        "zero.test",
    ]
    spread = [order_srv(records)[0].target for _ in range(400)]
    assert spread.count("b.test") > spread.count("a.test") > 0  # 90:10, random but weighted


async def test_locate_with_static_records() -> None:
    resolver = StaticResolver(
        {"a.test": "192.0.2.1", "b.test": ["192.0.2.2", "2001:db8::2"]},
        naptr={"pbx.test": [Naptr(10, 1, "s", "SIP+D2T", "_sip._tcp.pbx.test")]},
        srv={
            "_sip._tcp.pbx.test": [Srv(10, 0, 5070, "a.test"), Srv(20, 0, 5071, "b.test")],
            "_sips._tcp.secure.test": [Srv(10, 0, 5061, "."), Srv(20, 0, 5062, "a.test")],
        },
    )
    assert await locate(parse_uri("sip:x@pbx.test"), resolver) == [
        Address("tcp", "192.0.2.1", 5070, "pbx.test"),
        Address("tcp", "192.0.2.2", 5071, "pbx.test"),
        Address("tcp", "2001:db8::2", 5071, "pbx.test"),
    ]
    # "." says the service is not there (RFC 2782): skipped, the next record is used.
    assert await locate(parse_uri("sip:x@secure.test;secure=true"), resolver) == [
        Address("tls", "192.0.2.1", 5062, "secure.test")
    ]
    # A numeric host or a port never asks DNS for services.
    assert await locate(parse_uri("sip:x@192.0.2.9;transport=tcp"), resolver) == [
        Address("tcp", "192.0.2.9", 5060, "192.0.2.9")
    ]
    assert await locate(parse_uri("sips:x@a.test:7000"), resolver) == [
        Address("tls", "192.0.2.1", 7000, "a.test")
    ]


async def test_locate_with_a_plain_host_resolver_uses_addresses_only() -> None:
    class OnlyA:
        async def lookup(self, host: str, port: int, transport: str) -> list[str]:
            return ["192.0.2.7"]

    assert await locate(parse_uri("sips:x@pbx.test"), OnlyA()) == [
        Address("tls", "192.0.2.7", 5061, "pbx.test")
    ]


def test_dns_server_spelling() -> None:
    assert isinstance(DnsResolver(["127.0.0.1:5353", "[::1]:53", "192.0.2.53"]), DnsResolver)
    with pytest.raises(TransportError):
        DnsResolver(["dns.example.com"])
    with pytest.raises(TransportError):
        DnsResolver([])
