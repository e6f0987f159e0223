"""``<Start>``, ``<Stop>``, ``<Connect>`` and ``<Stream>`` in the markup: what parses, with which
defaults, and what is an error or a warning."""

from __future__ import annotations

import pytest

from callxml.errors import MarkupError
from callxml.markup import parse_document
from callxml.markup.verbs import Connect, Start, Stop, Stream


def parse(body: str) -> tuple[object, list[str]]:
    document = parse_document(f"<Response>{body}</Response>")
    return document.response.verbs[0], [w.code for w in document.warnings]


def test_start_with_streams_parameters_and_defaults() -> None:
    verb, codes = parse(
        "<Start><Stream url='wss://a.test/s' name='tap' statusCallback='/cb' "
        "statusCallbackMethod='GET'><Parameter name='a' value='1'/>"
        "<Parameter name='b' value='2'/></Stream><Stream url='wss://b.test/s'/></Start>"
    )
    assert isinstance(verb, Start) and codes == []
    first, second = verb.streams
    assert first == Stream(
        url="wss://a.test/s",
        name="tap",
        status_callback="/cb",
        status_callback_method="GET",
        parameters=(("a", "1"), ("b", "2")),
        line=1,
        column=18,
    )
    assert second.track == "inbound_track" and second.name is None


def test_a_stream_needs_a_wss_url_in_start_and_connect() -> None:
    for body in ("<Start><Stream/></Start>", "<Connect><Stream name='x'/></Connect>"):
        with pytest.raises(MarkupError) as caught:
            parse(body)
        assert caught.value.code == "missing-url"
    with pytest.raises(MarkupError):  # an http URL is a bad value, so no url is left
        parse("<Start><Stream url='https://a.test/s'/></Start>")


def test_ws_urls_run_with_a_warning() -> None:
    verb, codes = parse("<Start><Stream url='ws://a.test/s'/></Start>")
    assert isinstance(verb, Start) and codes == ["insecure-stream"]


def test_connect_streams_the_caller_only_and_one_noun() -> None:
    verb, codes = parse(
        "<Connect action='/after' method='GET'><Stream url='wss://a.test/s' track='both_tracks'/>"
        "<Room>standup</Room></Connect>"
    )
    assert isinstance(verb, Connect) and verb.stream is not None
    assert verb.stream.track == "inbound_track"
    assert (verb.action, verb.method, verb.others) == ("/after", "GET", ())
    assert codes == ["bad-value", "unsupported-element", "extra-noun"]


def test_stop_names_streams_and_warns_about_the_rest() -> None:
    verb, codes = parse("<Stop><Stream name='tap'/><Siprec name='rec'/></Stop>")
    assert isinstance(verb, Stop) and [s.name for s in verb.streams] == ["tap"]
    assert verb.others == ("Siprec",) and codes == ["unsupported-element"]


def test_unsupported_stream_attributes_and_connect_nouns_warn() -> None:
    _, codes = parse("<Start><Stream url='wss://a.test/s' audioFormat='audio/l16'/></Start>")
    assert codes == ["unsupported-attribute"]
    verb, codes = parse("<Connect><VirtualAgent connectorName='x'/></Connect>")
    assert isinstance(verb, Connect) and verb.stream is None and verb.others == ("VirtualAgent",)
    assert codes == ["unsupported-element"]


def test_a_stream_outside_start_connect_or_stop_is_an_error() -> None:
    with pytest.raises(MarkupError) as caught:
        parse("<Stream url='wss://a.test/s'/>")
    assert caught.value.code == "wrong-nesting"  # it belongs in <Start>, <Connect>, <Stop>
