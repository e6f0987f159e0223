"""Target selection (RFC 3263 §4.1/§4.2) and the resolver seam."""

from __future__ import annotations

import pytest

from callxml.errors import TransportError
from callxml.sip.aio.resolver import (
    StaticResolver,
    SystemResolver,
    resolve_target,
    target_for_uri,
)
from callxml.sip.events import Address


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sip:alice@example.com", Address("udp", "example.com", 5060, "example.com")),
        ("sip:alice@example.com:5070", Address("udp", "example.com", 5070, "example.com")),
        ("sip:a@example.com;transport=tcp", Address("tcp", "example.com", 5060, "example.com")),
        ("sip:a@example.com;transport=TLS", Address("tls", "example.com", 5061, "example.com")),
        ("sips:a@example.com", Address("tls", "example.com", 5061, "example.com")),
        ("sip:a@example.com;secure=true", Address("tls", "example.com", 5061, "example.com")),
        ("sip:a@example.com;secure=maybe", Address("udp", "example.com", 5060, "example.com")),
        ("sips:a@example.com:6000", Address("tls", "example.com", 6000, "example.com")),
        ("sip:a@192.0.2.1", Address("udp", "192.0.2.1", 5060, "192.0.2.1")),
        ("sip:a@[2001:db8::1]:5080", Address("udp", "2001:db8::1", 5080, "2001:db8::1")),
        ("sips:[::1]", Address("tls", "::1", 5061, "::1")),
        (
            "sip:a@example.com;maddr=192.0.2.7",
            Address("udp", "192.0.2.7", 5060, "example.com"),
        ),
    ],
)
def test_target_for_uri(uri: str, expected: Address) -> None:
    assert target_for_uri(uri) == expected


def test_transport_override_never_downgrades_secure() -> None:
    assert target_for_uri("sip:a@example.com", transport="tcp").transport == "tcp"
    assert target_for_uri("sips:a@example.com", transport="udp").transport == "tls"


async def test_literals_skip_dns() -> None:
    resolver = StaticResolver({})
    assert await resolve_target(Address("tcp", "::1", 5060, "::1"), resolver) == [
        Address("tcp", "::1", 5060, "::1")
    ]


async def test_static_resolver_maps_names_and_keeps_server_name() -> None:
    resolver = StaticResolver({"sip.example.test": ["127.0.0.1", "::1"]})
    got = await resolve_target(target_for_uri("sips:bob@SIP.example.test"), resolver)
    assert got == [
        Address("tls", "127.0.0.1", 5061, "SIP.example.test"),
        Address("tls", "::1", 5061, "SIP.example.test"),
    ]
    with pytest.raises(TransportError, match="not in the static table"):
        await resolve_target(target_for_uri("sip:other.test"), resolver)


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
    with pytest.raises(TransportError, match="unsupported"):
        target_for_uri("sip:h;transport=sctp", transport="sctp")
    assert await resolve_target(Address("udp", "h", 5060), resolver) == [
        Address("udp", "127.0.0.1", 5060, "h")
    ]
