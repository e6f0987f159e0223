"""Nothing a Twilio app sends may crash or strand a call (issue 9, part 1).

A property test builds documents from the whole vocabulary the markup knows — every verb and
noun, every attribute of each (from the parser's own attribute tables, so a new attribute is
covered the day it is added), with values drawn from the valid, the odd and the random — and
requires each of the three readers to finish with a result or a clean error, never an exception:

* ``callxml validate`` (:func:`parse_document`): a :class:`Document` or a :class:`MarkupError`;
* the simulator: a :class:`SimulationResult` with a final status and no internal error;
* the engine's driver (:class:`CallRunner` with the real :class:`Dialer`, on a fake leg and a
  fake phone — the seams below SIP): a final status, the leg ended, no internal error.

The run in the suite is bounded (``CALLXML_FUZZ_EXAMPLES``, default 40 documents); set the
variable to a few thousand for a long run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callxml.errors import MarkupError
from callxml.markup import parse_document
from callxml.markup.parser import (
    ATTRIBUTES,
    CONNECT_OTHERS,
    START_OTHERS,
    STOP_OTHERS,
    UNSUPPORTED_VERBS,
)
from support.documents import BASE, ELEMENTS, drive_cleanly, simulate_cleanly

EXAMPLES = int(os.environ.get("CALLXML_FUZZ_EXAMPLES", "40"))

#: Values that mean something to some attribute, and values that mean nothing to any.
INTERESTING = (
    "",
    " ",
    "true",
    "false",
    "TRUE",
    "0",
    "1",
    "5",
    "-1",
    "3600",
    "99999999999999999999",
    "1.5",
    "GET",
    "post",
    "PUT",
    "initiated ringing answered completed",
    "completed",
    "in-progress absent",
    "start end join",
    "record-from-answer-dual",
    "record-from-ringing",
    "do-not-record",
    "trim-silence",
    "https://example.com/next",
    "/relative?a=1",
    "ftp://nope",
    "w1w2#",
    "#",
    "1234567890*#",
    "dtmf speech",
    "speech",
    "auto",
    "busy",
    "rejected",
    "inbound",
    "onEnter",
    "+15551234567",
    "sip:bob@example.com",
    "wss://stream.invalid/s",
    "both_tracks",
)
values = st.one_of(
    st.sampled_from(INTERESTING),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12),
)

SIP_TEXTS = (
    "sip:bob@example.com",
    "sip:bob@example.com;secure=true",
    "sips:alice@example.com:5081",
    "sip:bob@example.com?X-Ticket=7",
    "kate@example.com",
    "sip:",
    "tel:+15551234567",
    "sip:bob@example.com;secure=maybe",
)


@st.composite
def attributes(draw: st.DrawFn, table: str) -> str:
    known = sorted(ATTRIBUTES.get(table, {}))
    names = draw(st.lists(st.sampled_from([*known, "bogusAttr"]), unique=True, max_size=6))
    return "".join(f" {name}={quoteattr(draw(values))}" for name in names)


def text(draw: st.DrawFn, choices: tuple[str, ...]) -> str:
    return escape(draw(st.one_of(st.sampled_from(choices), values)))


@st.composite
def noun(draw: st.DrawFn) -> str:
    name = draw(
        st.sampled_from(
            ["Number", "Sip", "Client", "Conference", "Queue", "Sim", "WhatsApp", "Application"]
        )
    )
    attrs = draw(attributes(name))
    if name == "Sip":
        body = text(draw, SIP_TEXTS)
        if draw(st.booleans()):  # Twilio's newer form: <Uri> children and <Headers>
            uris = draw(st.lists(st.sampled_from(SIP_TEXTS), min_size=1, max_size=3))
            body = "".join(f"<Uri{draw(attributes('Uri'))}>{escape(u)}</Uri>" for u in uris)
            header = f"<Header{draw(attributes('Header'))}/>"
            body += draw(st.sampled_from(["", f"<Headers>{header}</Headers>"]))
    elif name == "Number":
        body = text(draw, ("+15551234567", "5551234", "abc"))
    elif name == "Client":
        body = draw(st.sampled_from(["alice", "<Identity>bob</Identity>", ""]))
        body += draw(st.sampled_from(["", '<Parameter name="a" value="b"/>']))
    elif name == "Application":
        body = draw(st.sampled_from(["AP123", "<ApplicationSid>AP1</ApplicationSid>", ""]))
        body += draw(st.sampled_from(["", '<Parameter name="a" value="b"/>']))
    else:
        body = text(draw, ("room", "support", "DE123"))
    return f"<{name}{attrs}>{body}</{name}>"


#: What <Start>, <Stop> and <Connect> may hold besides <Stream>.
STREAM_SIBLINGS = {"Start": START_OTHERS, "Stop": STOP_OTHERS, "Connect": CONNECT_OTHERS}


@st.composite
def stream_child(draw: st.DrawFn, verb: str) -> str:
    name = draw(st.sampled_from(["Stream", "Stream", *STREAM_SIBLINGS[verb]]))
    if name != "Stream":
        return f"<{name}><Parameter name='x' value='y'/></{name}>"
    attrs = draw(attributes("Stream"))
    if " url=" not in attrs and draw(st.booleans()):
        attrs += " url='wss://stream.invalid/a'"
    body = draw(st.sampled_from(["", '<Parameter name="a" value="b"/>']))
    return f"<Stream{attrs}>{body}</Stream>"


@st.composite
def prompt(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(["Say", "Play", "Pause"]))
    attrs = draw(attributes(name))
    if name == "Say":
        return f"<Say{attrs}>{text(draw, ('Hello', 'Press one'))}</Say>"
    if name == "Play":
        return f"<Play{attrs}>{text(draw, ('https://example.com/a.wav', ''))}</Play>"
    return f"<Pause{attrs}/>"


@st.composite
def verb(draw: st.DrawFn) -> str:
    name = draw(
        st.sampled_from(
            [
                "Say",
                "Play",
                "Pause",
                "Gather",
                "Dial",
                "Record",
                "Redirect",
                "Reject",
                "Hangup",
                "Enqueue",
                "Leave",
                "Refer",
                "Start",
                "Stop",
                "Connect",
                *sorted(UNSUPPORTED_VERBS),
            ]
        )
    )
    attrs = draw(attributes(name))
    match name:
        case "Say" | "Play" | "Pause":
            return draw(prompt())
        case "Gather":
            children = "".join(draw(st.lists(prompt(), max_size=3)))
            return f"<Gather{attrs}>{children}</Gather>"
        case "Dial":
            nouns = draw(st.lists(noun(), max_size=3))
            body = "".join(nouns) if nouns else text(draw, ("+15551234567", "sip:x@y"))
            return f"<Dial{attrs}>{body}</Dial>"
        case "Redirect":
            return f"<Redirect{attrs}>{text(draw, ('/next', BASE, ''))}</Redirect>"
        case "Enqueue":
            body = draw(st.sampled_from(["support", '<Task priority="5">{"a":1}</Task>', ""]))
            return f"<Enqueue{attrs}>{body}</Enqueue>"
        case "Refer":
            return f"<Refer{attrs}><Sip>{text(draw, SIP_TEXTS)}</Sip></Refer>"
        case "Start" | "Stop" | "Connect":
            children = "".join(draw(st.lists(stream_child(name), max_size=2)))
            return f"<{name}{attrs}>{children}</{name}>"
        case _ if name in UNSUPPORTED_VERBS:
            return f"<{name}{attrs}><Parameter name='x' value='y'/></{name}>"
        case "Hangup" | "Reject":
            body = draw(st.sampled_from(["", '<Parameter name="a" value="b"/>']))
            return f"<{name}{attrs}>{body}</{name}>"
        case _:
            return f"<{name}{attrs}/>"


documents = st.lists(verb(), min_size=1, max_size=4).map(
    lambda verbs: "<Response>" + "".join(verbs) + "</Response>"
)

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(documents)
def test_validate_never_crashes(document: str) -> None:
    try:
        parse_document(document)
    except MarkupError as exc:
        assert exc.line >= 0 and exc.code


@FUZZ
@given(documents, st.sampled_from(["answered", "busy", "no-answer", "failed"]))
def test_simulate_never_crashes(document: str, outcome: str) -> None:
    simulate_cleanly(document, outcome)


@FUZZ
@given(documents, st.sampled_from(["answered", "busy", "no-answer", "failed"]))
def test_engine_driver_never_crashes(tmp_path_factory: Any, document: str, outcome: str) -> None:
    drive_cleanly(document, outcome, tmp_path_factory.mktemp("driver"))


def test_every_element_is_covered() -> None:
    assert set(ELEMENTS) >= set(ATTRIBUTES)


@pytest.mark.parametrize("element", sorted(ATTRIBUTES))
def test_every_attribute_of_every_element(element: str, tmp_path: Path) -> None:
    """Each attribute the markup knows, alone and all together, with a plausible value and an
    absurd one: validate, simulate and the engine's driver all finish cleanly."""
    names = sorted(ATTRIBUTES[element])
    documents = [ELEMENTS[element].format(a="")]
    for value in ("true", "completed", "https://example.com/x", "", "-1 ☎"):
        documents += [ELEMENTS[element].format(a=f" {n}={quoteattr(value)}") for n in names]
        documents.append(
            ELEMENTS[element].format(a="".join(f" {n}={quoteattr(value)}" for n in names))
        )
    for document in documents:
        parse_document(document)  # these are all valid documents: warnings at most
        simulate_cleanly(document, "busy")
    for document in documents[: len(names) + 2]:
        drive_cleanly(document, "busy", tmp_path)


@pytest.mark.parametrize(
    "document",
    [
        # issue 9: a TypeError in validate, simulate and on a real call (stuck in-progress)
        '<Response><Dial><Application statusCallback="https://a.test/s" '
        'statusCallbackEvent="initiated completed" statusCallbackMethod="GET">'
        "<ApplicationSid>AP123</ApplicationSid></Application></Dial></Response>",
    ],
)
def test_known_crashers(document: str, tmp_path: Path) -> None:
    parse_document(document)
    simulate_cleanly(document, "busy")
    drive_cleanly(document, "busy", tmp_path)
