"""Sans-IO SIP (RFC 3261): messages, headers and URIs; transactions and transports build on these.

The public names of the message layer are re-exported here; see ``docs/sip.md``.
"""

from callxml.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    new_branch,
    new_call_id,
    new_tag,
    parse_cseq,
    parse_name_addr,
    parse_via,
)
from callxml.sip.message import (
    MAX_MESSAGE_SIZE,
    REASON_PHRASES,
    BadMessage,
    Headers,
    SipMessage,
    SipRequest,
    SipResponse,
    StreamParser,
    check_request,
    make_response,
    parse_message,
    unsupported_options,
)
from callxml.sip.uri import InvalidUri, SipUri, parse_uri

__all__ = [
    "MAX_MESSAGE_SIZE",
    "REASON_PHRASES",
    "BadMessage",
    "CSeq",
    "Headers",
    "InvalidUri",
    "NameAddr",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "StreamParser",
    "Via",
    "check_request",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_cseq",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
    "unsupported_options",
]
