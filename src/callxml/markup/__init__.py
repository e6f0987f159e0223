"""The markup layer: TwiML-like XML in, typed frozen verbs out.

Owns the XSD schema (``callxml/schemas/callxml.xsd``), the hardened parser and the verb
dataclasses; knows nothing about calls, SIP transactions or media. The markup's camelCase names
stay inside :mod:`callxml.markup.parser`.
"""

from __future__ import annotations

from callxml.markup.parser import MAX_DOCUMENT_BYTES, VERB_PARSERS, parse_document
from callxml.markup.verbs import (
    Application,
    Client,
    Conference,
    Dial,
    DialNoun,
    Document,
    Enqueue,
    Gather,
    GatherChild,
    Hangup,
    Leave,
    MarkupWarning,
    Number,
    Pause,
    Play,
    Queue,
    Record,
    Redirect,
    Refer,
    Reject,
    Response,
    Say,
    Sim,
    Sip,
    Unsupported,
    Verb,
    WhatsApp,
)

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "VERB_PARSERS",
    "Application",
    "Client",
    "Conference",
    "Dial",
    "DialNoun",
    "Document",
    "Enqueue",
    "Gather",
    "GatherChild",
    "Hangup",
    "Leave",
    "MarkupWarning",
    "Number",
    "Pause",
    "Play",
    "Queue",
    "Record",
    "Redirect",
    "Refer",
    "Reject",
    "Response",
    "Say",
    "Sim",
    "Sip",
    "Unsupported",
    "Verb",
    "WhatsApp",
    "parse_document",
]
