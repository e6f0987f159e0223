"""Resolving a next hop's host name (the DNS half of RFC 3263 §4) and the resolver seam."""

from __future__ import annotations

import pytest

from callxml.errors import TransportError
from callxml.sip.aio.resolver import (
    StaticResolver,
    SystemResolver,
    resolve_target,
)
from callxml.sip.events import Address
from callxml.sip.target import next_hop


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
