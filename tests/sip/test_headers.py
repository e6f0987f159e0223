"""Header values: Via, name-addr, CSeq, parameters and comma lists (RFC 3261 §20, §25.1)."""

from __future__ import annotations

import pytest

from callxml.errors import LocalProtocolError, RemoteProtocolError
from callxml.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    new_branch,
    new_call_id,
    new_tag,
    parse_cseq,
    parse_digits,
    parse_name_addr,
    parse_params,
    parse_via,
    quote_string,
    split_list,
    unquote_string,
)

# -- split_list ----------------------------------------------------------------------------


def test_split_list_respects_quotes_and_brackets() -> None:
    value = '"Doe, John" <sip:j@a.com;x=1,2>;q=0.5 , <sip:b@c.com> ,"a\\",b" <sip:c@d>'
    assert split_list(value) == [
        '"Doe, John" <sip:j@a.com;x=1,2>;q=0.5',
        "<sip:b@c.com>",
        '"a\\",b" <sip:c@d>',
    ]


def test_split_list_lenient_drops_empties_strict_refuses_them() -> None:
    assert split_list("a,, b ,") == ["a", "b"]
    assert split_list("") == []
    with pytest.raises(RemoteProtocolError):
        split_list("a,,b", strict=True)
    with pytest.raises(RemoteProtocolError):
        split_list('"unterminated, x', strict=True)
    assert split_list('"unterminated, x') == ['"unterminated, x']


# -- Via -----------------------------------------------------------------------------------


def test_parse_via_with_all_the_parts() -> None:
    via = parse_via("SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK776asdhds;rport;received=10.0.0.1")
    assert via == Via(
        "UDP",
        "192.0.2.1",
        5062,
        (("branch", "z9hG4bK776asdhds"), ("rport", None), ("received", "10.0.0.1")),
    )
    assert via.branch == "z9hG4bK776asdhds"
    assert via.rport is True
    assert via.received == "10.0.0.1"
    assert via.sent_by == "192.0.2.1:5062"
    assert str(via) == "SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK776asdhds;rport;received=10.0.0.1"


def test_parse_via_whitespace_case_and_ipv6() -> None:
    via = parse_via("sip / 2.0 / tls  [2001:db8::1] : 5061 ; Branch = z9hG4bKx ; rport = 40000")
    assert (via.protocol, via.transport, via.host, via.port) == (
        "SIP/2.0",
        "TLS",
        "[2001:db8::1]",
        5061,
    )
    assert via.branch == "z9hG4bKx"  # parameter names compare case-insensitively
    assert via.rport == 40000
    assert parse_via(str(via)) == via


def test_via_with_param_replaces_in_place() -> None:
    via = parse_via("SIP/2.0/UDP h;rport;branch=z9hG4bK1")
    filled = via.with_param("rport", "5060").with_param("received", "192.0.2.9")
    assert str(filled) == "SIP/2.0/UDP h;rport=5060;branch=z9hG4bK1;received=192.0.2.9"
    assert via.rport is True  # frozen: the original is unchanged
    with pytest.raises(LocalProtocolError):
        via.with_param("received", "1.2.3.4;evil")


def test_via_received_may_be_bare_ipv6_and_quoted_values_are_kept() -> None:
    via = parse_via('SIP/2.0/TCP h;received=2001:db8::9;x="a b;c"')
    assert via.received == "2001:db8::9"
    assert via.param("x") == '"a b;c"'


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 UDP host",
        "SIP/2.0/UDPhost",
        "SIP/2.0/UDP host;;branch=x",  # RFC 4475 §3.1.2.1
        "SIP/2.0/UDP host;",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host:",
        "SIP/2.0/UDP -host",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP host;branch=a b",
        "SIP/2.0/UDP host extra",
        'SIP/2.0/UDP host;x="open',
        "SIP/2.0/UDP [::1",
    ],
)
def test_parse_via_rejects(value: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_via(value)
    assert info.value.status_hint == 400


# -- name-addr -----------------------------------------------------------------------------


def test_parse_name_addr_forms() -> None:
    assert parse_name_addr('"Alice \\"A\\"" <sip:alice@a.com;transport=tcp>;tag=88sja8x') == (
        NameAddr('Alice "A"', "sip:alice@a.com;transport=tcp", (("tag", "88sja8x"),))
    )
    assert parse_name_addr("Bob  Smith <sips:bob@b.com>") == NameAddr("Bob Smith", "sips:bob@b.com")
    assert parse_name_addr("<sip:c@c.com>") == NameAddr(None, "sip:c@c.com")
    assert parse_name_addr('"" <sip:c@c.com>') == NameAddr("", "sip:c@c.com")
    # addr-spec: parameters after the URI are header parameters (RFC 4475 §3.3.12).
    assert parse_name_addr("sip:d@d.com;tag=1;expires=60") == NameAddr(
        None, "sip:d@d.com", (("tag", "1"), ("expires", "60"))
    )
    star = parse_name_addr("*;expires=0")
    assert star.is_wildcard and star.param("expires") == "0" and str(star) == "*;expires=0"


def test_name_addr_str_always_brackets_and_round_trips() -> None:
    addr = parse_name_addr("sip:d@d.com;tag=1")
    assert str(addr) == "<sip:d@d.com>;tag=1"
    tricky = NameAddr('a "b" \\c\x07', "sip:x@y", (("tag", "t"),))
    assert str(tricky) == '"a \\"b\\" \\\\c\\\x07" <sip:x@y>;tag=t'
    assert parse_name_addr(str(tricky)) == tricky


def test_name_addr_tag_helpers() -> None:
    to = parse_name_addr("<sip:b@b.com>")
    assert to.tag is None
    tagged = to.with_tag("abc")
    assert tagged.tag == "abc" and str(tagged) == "<sip:b@b.com>;tag=abc"
    assert tagged.with_tag("def").params == (("tag", "def"),)


@pytest.mark.parametrize(
    "value",
    [
        '"Mr. J. User <sip:j.user@example.com>',  # RFC 4475 §3.1.2.6
        "Bell, Alexander <sip:a.g.bell@example.com>",  # §3.1.2.15
        '"Watson" < sip:t.watson@example.org >',  # §3.1.2.14
        "sip:user@example.com?Route=%3Csip:x%3E",  # §3.1.2.13
        "<sip:a@b",
        "<>",
        "<:nothing>",
        "<1sip:a@b>",
        "nothing-here",
        '"name" sip:a@b',
        "<sip:a@b> junk",
        "<sip:a@b>;;tag=1",
        "<sip:a\x00b@c>",
    ],
)
def test_parse_name_addr_rejects(value: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_name_addr(value)
    assert info.value.status_hint == 400


# -- CSeq ----------------------------------------------------------------------------------


def test_parse_cseq() -> None:
    assert parse_cseq("0009  INVITE") == CSeq(9, "INVITE")
    assert parse_cseq(" 4294967295 BYE ") == CSeq(2**32 - 1, "BYE")
    assert str(CSeq(1, "ACK")) == "1 ACK"


@pytest.mark.parametrize(
    "value",
    ["4294967296 INVITE", "INVITE", "1", "1INVITE", "-1 INVITE", "1 INVITE x", "0" * 5000 + "1 A"],
)
def test_parse_cseq_rejects(value: str) -> None:
    if value.startswith("0000"):
        assert parse_cseq(value[:-2] + " A") == CSeq(1, "A")  # long zeros are just zeros...
        value = value.replace("1 A", "99999999999 A")  # ...and a long number is refused cheaply
    with pytest.raises(RemoteProtocolError):
        parse_cseq(value)


# -- small helpers -------------------------------------------------------------------------


def test_parse_digits_is_bounded() -> None:
    assert parse_digits("0068", 255) == 68
    assert parse_digits("256", 255) is None
    assert parse_digits("9" * 100_000, 2**32) is None
    assert parse_digits("0" * 100_000, 10) == 0
    assert parse_digits("", 10) is None
    assert parse_digits("١٢", 100) is None  # non-ASCII digits are not DIGIT


def test_parse_params_and_quoting() -> None:
    assert parse_params(' ; a = 1 ;b; c="x;y"') == (("a", "1"), ("b", None), ("c", '"x;y"'))
    assert unquote_string(quote_string('he said "hi" \\o/')) == 'he said "hi" \\o/'


def test_identifiers_are_fresh_and_well_formed() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100
    assert all(b.startswith("z9hG4bK") and len(b) > 7 + 8 for b in branches)
    tags = {new_tag() for _ in range(100)}
    assert len(tags) == 100
    call_id = new_call_id("192.0.2.1")
    assert call_id.endswith("@192.0.2.1") and len(call_id) > 20
    assert parse_via(f"SIP/2.0/UDP h;branch={new_branch()}").branch is not None
