"""The parser refuses hostile documents without expanding entities or touching the network."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callxml.errors import MarkupError
from callxml.markup import parse_document


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP listener on a free port; a connection to it would show a fetch happened."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def assert_never_contacted(sock: socket.socket) -> None:
    # parse_document is synchronous: any connect it made is already in the accept queue.
    with pytest.raises(BlockingIOError):
        sock.accept()


@pytest.mark.parametrize(
    "template",
    [
        '<!DOCTYPE Response [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/x">]>'
        "<Response><Say>&x;</Say></Response>",
        '<!DOCTYPE Response SYSTEM "http://127.0.0.1:{port}/callxml.dtd"><Response/>',
        '<!DOCTYPE Response [<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/p">%p;]><Response/>',
    ],
)
def test_external_entities_and_dtds_are_refused_without_a_fetch(
    listener: socket.socket, template: str
) -> None:
    port = listener.getsockname()[1]
    with pytest.raises(MarkupError) as info:
        parse_document(template.format(port=port).encode())
    assert info.value.code == "doctype"
    assert_never_contacted(listener)


def test_xinclude_and_schema_location_are_inert(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    data = (
        '<Response xmlns:xi="http://www.w3.org/2001/XInclude" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:noNamespaceSchemaLocation="http://127.0.0.1:{port}/s.xsd">'
        f'<xi:include href="http://127.0.0.1:{port}/x.xml"/></Response>'
    )
    with pytest.raises(MarkupError):
        parse_document(data)
    assert_never_contacted(listener)


def test_utf16_doctype_is_refused_after_parsing() -> None:
    data = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE Response><Response/>'
    with pytest.raises(MarkupError) as info:
        parse_document(data.encode("utf-16"))
    assert info.value.code == "doctype"


def test_entity_reference_without_declaration_is_not_well_formed() -> None:
    with pytest.raises(MarkupError) as info:
        parse_document("<Response><Say>&lol9;</Say></Response>")
    assert info.value.code == "not-well-formed"


def test_deep_nesting_is_refused_cleanly() -> None:
    data = "<Response>" + "<Say>" + "<p>" * 5000 + "x" + "</p>" * 5000 + "</Say></Response>"
    try:
        document = parse_document(data)
    except MarkupError as exc:  # libxml2's depth limit, if it applies, is a clean error
        assert exc.code == "not-well-formed"
    else:
        assert document.response.verbs


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        parse_document(data)
    except MarkupError as exc:
        assert exc.code


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes(data: str) -> None:
    try:
        parse_document(data)
    except MarkupError as exc:
        assert exc.code


def test_lone_surrogate_is_an_error_with_position() -> None:
    with pytest.raises(MarkupError) as info:
        parse_document("<Response>\n<Say>a\ud800</Say></Response>")
    assert (info.value.code, info.value.line, info.value.column) == ("not-well-formed", 2, 7)


def test_parsing_from_several_threads_at_once() -> None:
    good = "<Response><Say>hi</Say><Dial><Sip>sip:a@b.example</Sip></Dial></Response>"
    bad = "<Response><Dial><Say>x</Say></Dial></Response>"

    def work(i: int) -> str:
        try:
            return type(parse_document(good if i % 2 else bad).response.verbs[1]).__name__
        except MarkupError as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(200)))
    assert results == ["wrong-nesting", "Dial"] * 100


verb_text = st.sampled_from(
    [
        "<Say>hi</Say>",
        "<Play>u.wav</Play>",
        "<Pause/>",
        "<Hangup/>",
        "<Gather><Say>x</Say></Gather>",
        "<Dial><Sip>sip:a@b.c</Sip></Dial>",
        "<Speak/>",
        "text",
        "<Dial><Say>x</Say></Dial>",
        '<Record timeout="x"/>',
        "<!-- c -->",
        "\n",
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(verb_text, max_size=8))
def test_generated_documents_parse_or_fail_cleanly(parts: list[str]) -> None:
    data = "<Response>" + "".join(parts) + "</Response>"
    try:
        document = parse_document(data)
    except MarkupError as exc:
        assert exc.line >= 1 and exc.column >= 1
    else:
        assert len(document.response.verbs) == sum(
            p.startswith("<") and "!--" not in p for p in parts
        )
