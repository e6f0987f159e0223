"""Dial targets (RFC 3263 §4.1/§4.2 without DNS): what a URI means, worked out once."""

from __future__ import annotations

import pytest

from callxml.sip.events import Address
from callxml.sip.target import MAX_URI_HEADERS, Target, next_hop
from callxml.sip.uri import InvalidUri


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
def test_next_hop(uri: str, expected: Address) -> None:
    assert next_hop(uri) == expected
    assert Target.parse(uri).next_hop == expected


def test_secure_target_carries_policy_transport_and_a_clean_request_uri() -> None:
    target = Target.parse("sip:jack:pw@example.com;secure=true;user=phone?X-Account=42")
    assert target.secure and target.transport == "tls" and target.next_hop.port == 5061
    # Our own instruction, the password and the headers never reach the request line; the
    # transport does, so a proxy downstream keeps the call on TLS.
    assert str(target.request_uri) == "sip:jack@example.com;user=phone;transport=tls"
    assert target.headers == (("X-Account", "42"),)
    assert str(target) == "sip:jack@example.com;secure=true;user=phone"
    assert "pw" not in repr(target.uri)


def test_secure_request_uri_replaces_a_weaker_transport() -> None:
    target = Target.parse("sip:lab@127.0.0.1:5071;transport=udp;secure=true")
    assert str(target.request_uri) == "sip:lab@127.0.0.1:5071;transport=tls"
    assert target.next_hop.transport == "tls"


def test_plain_and_sips_targets() -> None:
    plain = Target.parse("sip:bob@192.0.2.1:5070;transport=tcp")
    assert not plain.secure and plain.transport == "tcp"
    assert str(plain.request_uri) == "sip:bob@192.0.2.1:5070;transport=tcp"
    sips = Target.parse("sips:bob@example.com")
    assert sips.secure and str(sips.request_uri) == "sips:bob@example.com"


def test_only_x_headers_are_sent_and_the_rest_is_reported() -> None:
    target = Target.parse("sip:a@example.com?X-Case=4%202&Call-ID=evil&Via=evil")
    assert target.headers == (("X-Case", "4 2"),)
    assert [w for w in target.warnings if "Call-ID" in w or "Via" in w] == [
        "URI header 'Call-ID' is not sent (only X- headers are)",
        "URI header 'Via' is not sent (only X- headers are)",
    ]
    many = "&".join(f"X-H{i}=1" for i in range(MAX_URI_HEADERS + 2))
    bounded = Target.parse(f"sip:a@example.com?{many}")
    assert len(bounded.headers) == MAX_URI_HEADERS
    assert len(bounded.warnings) == 2


def test_uri_warnings_are_kept() -> None:
    target = Target.parse("sip:a@example.com;secure=maybe")
    assert not target.secure
    assert any("secure=maybe" in w for w in target.warnings)


def test_via_proxy_keeps_request_uri_and_security() -> None:
    secure = Target.parse("sip:ivr@demo.example;secure=true").via("sip:127.0.0.1:5062")
    assert secure.next_hop == Address("tls", "127.0.0.1", 5062, "127.0.0.1")
    assert str(secure.request_uri) == "sip:ivr@demo.example;transport=tls" and secure.secure
    default_port = Target.parse("sips:ivr@demo.example").via("sip:proxy.example")
    assert default_port.next_hop == Address("tls", "proxy.example", 5061, "proxy.example")
    plain = Target.parse("sip:ivr@demo.example;transport=tcp").via("sip:127.0.0.1")
    assert plain.next_hop.transport == "tcp"
    udp = Target.parse("sip:ivr@demo.example;transport=tcp").via("sip:127.0.0.1;transport=udp")
    assert udp.next_hop.transport == "udp"


def test_invalid_uri() -> None:
    with pytest.raises(InvalidUri):
        Target.parse("tel:+15551234567")
