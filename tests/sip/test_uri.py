"""SIP URI parsing and formatting (RFC 3261 §19.1, §25.1) and callxml's ``secure`` convention."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callxml.errors import CallXmlError, RemoteProtocolError
from callxml.sip.target import next_hop
from callxml.sip.uri import InvalidUri, SipUri, parse_uri


def test_secure_uri_means_tls_on_5061() -> None:
    uri = parse_uri("sip:jack@example.com;secure=true")
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("sip", "jack", "example.com", None)
    assert uri.secure
    assert uri.transport == "tls"
    assert next_hop(uri).port == 5061
    assert uri.warnings == ()


def test_plain_uri_defaults_to_udp_5060() -> None:
    uri = parse_uri("sip:jack@example.com")
    assert not uri.secure
    assert (uri.transport, next_hop(uri).port) == ("udp", 5060)


def test_sips_scheme_is_secure() -> None:
    uri = parse_uri("sips:alice@atlanta.example.com")
    assert uri.secure and uri.transport == "tls" and next_hop(uri).port == 5061


def test_explicit_port_and_transport() -> None:
    uri = parse_uri("sip:bob@10.0.0.1:5080;transport=TCP")
    assert uri.port == 5080 and next_hop(uri).port == 5080
    assert uri.transport == "tcp"
    secure = parse_uri("sip:bob@10.0.0.1:7000;secure=true;transport=udp")
    assert secure.transport == "tls" and next_hop(secure).port == 7000


@pytest.mark.parametrize("value", ["maybe", "yes", "1", None])
def test_secure_other_than_true_false_is_false_with_warning(value: str | None) -> None:
    suffix = "" if value is None else f"={value}"
    uri = parse_uri(f"sip:jack@example.com;secure{suffix}")
    assert not uri.secure
    assert uri.transport == "udp"
    assert len(uri.warnings) == 1 and "treated as false" in uri.warnings[0]


def test_secure_false_has_no_warning() -> None:
    uri = parse_uri("sip:jack@example.com;secure=false")
    assert not uri.secure and uri.warnings == ()


def test_ipv6_host_with_port() -> None:
    uri = parse_uri("sip:alice@[2001:db8::10]:5070;transport=tcp")
    assert uri.host == "[2001:db8::10]"
    assert uri.bare_host == "2001:db8::10"
    assert uri.port == 5070 and uri.host_is_ip


def test_password_and_headers() -> None:
    uri = parse_uri("sip:alice:secretword@example.com;secure=true?X-Foo=bar&Subject=hi%20there")
    assert uri.password == "secretword"
    assert uri.headers == (("X-Foo", "bar"), ("Subject", "hi%20there"))
    assert uri.header("x-foo") == "bar"
    assert uri.header("Subject") == "hi there"
    assert "secretword" not in repr(uri)
    assert uri.without_headers().headers == ()


def test_escaped_user_is_kept_as_written() -> None:
    # RFC 4475 §3.1.1.3: escapes in the user part; the URI keeps them, helpers unescape.
    uri = parse_uri("sip:sips%3Auser%40example.com@example.net")
    assert uri.user == "sips%3Auser%40example.com"
    assert uri.user_unescaped == "sips:user@example.com"
    assert uri.host == "example.net"


def test_telephone_subscriber_user_with_semicolons() -> None:
    uri = parse_uri("sip:+12125551212;phone-context=example.com@gateway.example.com;user=phone")
    assert uri.user == "+12125551212;phone-context=example.com"
    assert uri.params == (("user", "phone"),)


def test_param_lookup_is_case_insensitive_and_bare_params() -> None:
    uri = parse_uri("sip:host.example.com;LR;Maddr=239.255.255.1")
    assert uri.has_param("lr") and uri.param("lr") is None
    assert uri.param("maddr") == "239.255.255.1"
    assert uri.user is None


def test_with_params_replaces_in_place() -> None:
    uri = parse_uri("sip:a@b.example;transport=udp;lr")
    assert str(uri.with_params(transport="tcp")) == "sip:a@b.example;transport=tcp;lr"
    assert str(uri.with_params(ob=None)) == "sip:a@b.example;transport=udp;lr;ob"


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("tel:+14155551212", 416),
        ("http://example.com/", 416),
        ("sip:", 400),
        ("sip:user@", 400),
        ("sip:user@exa mple.com", 400),
        ("sip:user@example.com:99999", 400),
        ("sip:user@example.com:12a", 400),
        ("sip:user@[::1", 400),
        ("sip:user@[zz::1]", 400),
        ("sip:user@300.1.1.1", 400),
        ("sip:us er@example.com", 400),
        ("sip:user@example.com;=x", 400),
        ("sip:user@example.com?novalue", 400),
        ("sip:<user>@example.com", 400),
        ("no-scheme-here", 400),
        ("", 400),
    ],
)
def test_invalid_uris_are_rejected_with_status_hint(text: str, status: int) -> None:
    with pytest.raises(InvalidUri) as info:
        parse_uri(text)
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.status_hint == status


def test_size_limits() -> None:
    host = "a" * 250 + ".example"
    with pytest.raises(InvalidUri, match="255"):
        parse_uri(f"sip:{host}")
    with pytest.raises(InvalidUri, match="1024"):
        parse_uri("sip:a@b.example?X-Big=" + "x" * 1100)
    # Exactly at the bound is fine.
    parse_uri("sip:" + "u" * 200 + "@b.example?X-Big=" + "x" * 1000)


# -- property tests: parse -> format -> parse is stable ------------------------------------------

_unreserved = st.sampled_from(list("abcXYZ019-_.!~*'()"))
_escape = st.sampled_from(["%20", "%3A", "%40", "%41"])
_user = st.lists(
    st.one_of(_unreserved, _escape, st.sampled_from(list("&=+$,;?/"))), min_size=1, max_size=12
).map("".join)
_label = st.from_regex(r"[a-z]([a-z0-9\-]{0,6}[a-z0-9])?", fullmatch=True)
_hostname = st.builds(
    lambda labels, top: ".".join([*labels, top]),
    st.lists(_label, max_size=3),
    st.from_regex(r"[a-z]{2,6}", fullmatch=True),
)
_ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
_ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
_pname = st.lists(
    st.one_of(_unreserved, st.sampled_from(list("[]/:&+$"))), min_size=1, max_size=8
).map("".join)
_param = st.tuples(_pname, st.one_of(st.none(), _pname))
_hname = st.from_regex(r"X-[A-Za-z0-9]{1,8}", fullmatch=True)
_hvalue = st.lists(st.one_of(_unreserved, _escape), max_size=8).map("".join)


@st.composite
def _uris(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["sip", "sips"]))
    user = draw(st.one_of(st.none(), _user))
    password = draw(st.one_of(st.none(), st.from_regex(r"[a-z0-9&=+$,]{0,8}", fullmatch=True)))
    host = draw(st.one_of(_hostname, _ipv4, _ipv6))
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    params = draw(st.lists(_param, max_size=4))
    headers = draw(st.lists(st.tuples(_hname, _hvalue), max_size=3))
    text = f"{scheme}:"
    if user is not None:
        text += user + (f":{password}" if password is not None else "") + "@"
    text += host + (f":{port}" if port is not None else "")
    text += "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)
    if headers:
        text += "?" + "&".join(f"{n}={v}" for n, v in headers)
    return text


@given(_uris())
def test_parse_format_parse_is_stable(text: str) -> None:
    uri = parse_uri(text)
    assert str(uri) == text
    again = parse_uri(str(uri))
    assert again == uri
    assert again.transport in ("udp", "tcp", "tls")


@given(st.text(max_size=300))
def test_only_our_error_escapes(text: str) -> None:
    try:
        uri = parse_uri(text)
    except CallXmlError:
        return
    assert isinstance(uri, SipUri)
    assert parse_uri(str(uri)) == uri
