"""Parsing cost: ``parse_document`` (hardened parse + XSD validation + typed verbs + warnings)
against bare ``lxml.etree.fromstring`` on the same bytes, in the same run.

The documents are real ones (``bench/data``: Twilio's published voice samples and the bundled
example flows), parsed in turns so the shared noisy machine treats both alike. It prints
documents per second of each and the ratio callxml/lxml. Goal (issue 15): >= 0.3.

A third column, ``parse+XSD``, is the part of ``parse_document`` no Python walk can remove:
callxml's hardened lxml parser and the XSD validation, nothing else. Its ratio to lxml
(``ceiling``) is what ``parse_document`` would reach if building the verbs, their positions and
warnings cost nothing.

    python bench/markup.py [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from lxml import etree

from callxml.markup import parse_document
from callxml.markup.parser import _get_schema, _xml_parser

GOAL = 0.3
DATA = Path(__file__).parent / "data"


def _rate(parse: object, documents: list[bytes], seconds: float) -> float:
    assert callable(parse)
    done = 0
    started = time.process_time()
    while True:
        for document in documents:
            parse(document)
        done += len(documents)
        spent = time.process_time() - started
        if spent >= seconds:
            return done / spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per case")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    plain = etree.XMLParser(resolve_entities=False, no_network=True)
    documents = []
    for path in sorted(DATA.glob("*.xml")):
        document = path.read_bytes()
        parse_document(document)  # every sample must run (warnings allowed)
        try:
            etree.fromstring(document, plain)
        except etree.XMLSyntaxError:
            continue  # e.g. an SSML prefix lxml alone refuses: not a like-for-like comparison
        documents.append(document)
    hardened = _xml_parser(force_utf8=False)
    schema = _get_schema()

    def parse_and_validate(document: bytes) -> bool:
        return bool(schema.validate(etree.fromstring(document, hardened)))

    print(f"parsing {len(documents)} real documents, {args.rounds} rounds (documents per CPU s)")
    print(f"{'round':>5} {'callxml':>9} {'parse+XSD':>10} {'lxml':>9} {'ratio':>6} {'ceiling':>8}")
    ratios, ceilings = [], []
    for index in range(max(1, args.rounds)):
        ours = _rate(parse_document, documents, args.seconds / 3)
        floor = _rate(parse_and_validate, documents, args.seconds / 3)
        theirs = _rate(lambda d: etree.fromstring(d, plain), documents, args.seconds / 3)
        ratios.append(ours / theirs)
        ceilings.append(floor / theirs)
        print(
            f"{index + 1:>5} {ours:>9,.0f} {floor:>10,.0f} {theirs:>9,.0f} {ours / theirs:>6.3f}"
            f" {floor / theirs:>8.3f}"
        )
    median = statistics.median(ratios)
    verdict = "met" if median >= GOAL else "NOT met"
    print(f"goal: callxml/lxml >= {GOAL}: {verdict} (median ratio {median:.3f})")
    print(f"ceiling (hardened parse + XSD alone)/lxml: median {statistics.median(ceilings):.3f}")


if __name__ == "__main__":
    main()
