"""One capability table; the validator, the simulator and the engine agree on every row.

For each row of :data:`callxml.markup.capabilities.CAPABILITIES` a document uses that verb, noun
or attribute (an attribute with a value that is valid and not its default), and:

* ``callxml validate`` warns about it exactly when the row does not simply run, with the row's
  code and message;
* the simulator and the engine's driver (:mod:`support.documents`) both log the row's message at
  run time when it does not simply run, log the same warnings as each other, and — for a noun —
  either both place the call or both fail the dial without placing it;
* the table covers exactly what the parser knows, and docs/markup.md shows the table as
  :func:`render_markdown` renders it.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest

from callxml.markup import parse_document
from callxml.markup.capabilities import (
    CAPABILITIES,
    NOUNS,
    Capability,
    Support,
    counts,
    message,
    render_markdown,
    warning_code,
)
from callxml.markup.parser import (
    ATTRIBUTES,
    ELEMENT_CLASSES,
    UNSUPPORTED_VERBS,
    VERB_PARSERS,
    _default,
)
from support.documents import ELEMENTS, TRUNK, drive, run_simulation

DOCS = Path(__file__).resolve().parents[1] / "docs" / "markup.md"
BEGIN, END = "<!-- capabilities:begin -->", "<!-- capabilities:end -->"

#: Candidate values; the first that the attribute accepts and that is not its default is used.
CANDIDATES = (
    "true",
    "false",
    "record-from-answer",
    "https://example.com/cb",
    "GET",
    "initiated ringing answered completed",
    "in-progress completed",
    "dtmf speech",
    "7",
    "2",
    "w1",
    "#",
    "busy",
    "onEnter",
    "do-not-trim",
    "trim-silence",
    "inbound",
    "Polly.Joanna",
    "wss://stream.invalid/b",
    "both_tracks",
    "record-from-start",
    "start end join leave",
    "small",
    "CA" + "1" * 32,
    "zrtp",
    "de",
    "Enable",
    "1500",
    "2500",
)


def sample_value(element: str, attribute: str) -> str:
    field_name, convert = ATTRIBUTES[element][attribute]
    default = _default(element, field_name)
    for candidate in CANDIDATES:
        try:
            value = convert(candidate)
        except ValueError:
            continue
        if value != default:
            return candidate
    raise AssertionError(f"no sample value for <{element} {attribute}>")


def document_for(row: Capability) -> str:
    if row.attribute is None:
        if row.element in UNSUPPORTED_VERBS:  # Connect, Pay, Parameter...: any content
            return f"<Response><{row.element}/></Response>"
        document = ELEMENTS[row.element].format(a="")
        return document.replace("<Dial>", '<Dial action="/after">', 1)  # a noun: its outcome
    value = quoteattr(sample_value(row.element, row.attribute))
    return ELEMENTS[row.element].format(a=f" {row.attribute}={value}")


def row_id(row: Capability) -> str:
    return f"{row.element}.{row.attribute}" if row.attribute else row.element


def normalised(warning: str) -> str:
    """A call-log warning without the document URL and position the session puts first."""
    return re.sub(r"^\S+?:\d+:\d+: ", "", warning)


def test_the_table_covers_exactly_what_the_parser_knows() -> None:
    keys = {(row.element, row.attribute) for row in CAPABILITIES}
    assert len(keys) == len(CAPABILITIES), "a row is listed twice"
    verbs = set(VERB_PARSERS) | NOUNS | {"Stream"}
    assert {e for e, a in keys if a is None and "/" not in e} == verbs
    supported = {
        r.element for r in CAPABILITIES if r.attribute is None and r.support != Support.UNSUPPORTED
    }
    expected = {
        (element, attribute)
        for element, table in ATTRIBUTES.items()
        if element in supported
        for attribute in table
    }
    assert {(e, a) for e, a in keys if a is not None} == expected
    assert set(ELEMENT_CLASSES) == set(ATTRIBUTES) - {
        "Response",
        "Refer/Sip",
        "Identity",
        "ApplicationSid",
        "Parameter",
        "Task",
        "Uri",
        "Headers",
        "Header",
    }


@pytest.mark.parametrize("row", CAPABILITIES, ids=row_id)
def test_validate_simulate_and_engine_agree(row: Capability, tmp_path: Path) -> None:
    document = document_for(row)
    code = warning_code(row)
    expected = message(row)

    # validate
    warnings = parse_document(document).warnings
    about_row = [w for w in warnings if w.message == expected]
    if row.support is Support.RUNS:
        assert not about_row and not [w for w in warnings if w.code.startswith("unsupported")]
    else:
        assert [w.code for w in about_row] == [code], warnings

    # simulate and the engine's driver
    simulated = run_simulation(document, "busy")
    driven = asyncio.run(drive(document, "busy", tmp_path))
    sim_warnings = {
        normalised(line.removeprefix("warning: "))
        for line in simulated.log
        if line.startswith("warning: ")
    }
    engine_warnings = {normalised(w) for w in driven.warnings()}
    assert sim_warnings == engine_warnings, (simulated.transcript, driven.call_log.events)
    run_time = {w for w in sim_warnings if expected in w}
    if row.support is Support.RUNS:
        assert not run_time
    else:
        assert run_time, sim_warnings

    # a noun: both place the call, or neither does and the dial fails
    if row.element in NOUNS and row.attribute is None:
        placed_by_simulator = any(d.outcome != "failed" or not d.warnings for d in simulated.dials)
        queues = driven.queues
        placed_by_engine = (
            bool(driven.phone.dialled)
            or bool(driven.rooms.joined)
            or bool(queues is not None and queues.dequeued)
        )
        assert placed_by_simulator == placed_by_engine == (row.support is not Support.UNSUPPORTED)
        if row.support is Support.UNSUPPORTED:
            assert dial_status(simulated.requests) == dial_status(driven.requests) == "failed"


def dial_status(requests: list[object]) -> str | None:
    for request in requests:
        params = dict(getattr(request, "request", request).params)  # type: ignore[attr-defined]
        if "DialCallStatus" in params:
            return params["DialCallStatus"]
    return None


@pytest.mark.parametrize("trunk", [TRUNK, None])
def test_a_number_fails_the_same_way_without_a_trunk(trunk: str | None, tmp_path: Path) -> None:
    document = '<Response><Dial action="/after"><Number>+15551234567</Number></Dial></Response>'
    simulated = run_simulation(document, "busy", trunk=trunk)
    driven = asyncio.run(drive(document, "busy", tmp_path, trunk=trunk))
    assert dial_status(simulated.requests) == dial_status(driven.requests)
    if trunk is None:
        assert dial_status(driven.requests) == "failed" and not driven.phone.dialled
        line = "Dial +15551234567: no trunk is configured (sip.trunk_uri_template)"
        assert line in driven.warnings() and f"warning: {line}" in simulated.log
    else:
        assert dial_status(driven.requests) == "busy"
        assert str(driven.phone.dialled[0]) == "sip:+15551234567@trunk.test"


def test_docs_show_the_table() -> None:
    text = DOCS.read_text()
    assert BEGIN in text and END in text, f"docs/markup.md lacks the {BEGIN} … {END} section"
    shown = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert shown == render_markdown().strip(), (
        "docs/markup.md is out of date: run python -m callxml.markup.capabilities docs/markup.md"
    )


def test_counts_add_up() -> None:
    tally = counts()
    assert sum(tally.values()) == len(CAPABILITIES)
    assert all(tally[s] > 0 for s in Support)
