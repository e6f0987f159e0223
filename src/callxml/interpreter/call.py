"""Who and what a call is, for webhook parameters: identifiers, numbers, direction, limits.

This module owns the values that stay fixed for a call (``CallSid``, ``AccountSid``, ``From``,
``To``, ``Direction``, ``ApiVersion``) and the interpreter's bounds. Identifiers follow Twilio's
format: a two-letter prefix and 32 lower-case hex digits (``CA…`` calls, ``RE…`` recordings).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

__all__ = ["API_VERSION", "CallInfo", "Limits", "new_sid"]

#: Sent as ``ApiVersion`` in every webhook request, as Twilio does.
API_VERSION = "2010-04-01"


def new_sid(prefix: str) -> str:
    """A fresh random identifier: ``prefix`` (two capital letters) + 32 hex digits."""
    if not re.fullmatch(r"[A-Z]{2}", prefix):
        raise ValueError(f"sid prefix must be two capital letters, not {prefix!r}")
    return prefix + secrets.token_hex(16)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallInfo:
    """The fixed facts of one call, sent with every webhook request.

    ``direction`` is ``inbound`` (a call that arrived), ``outbound-api`` (started by the REST API)
    or ``outbound-dial``. ``extra`` are further parameters to send, in order (``FromCity``...).
    """

    call_sid: str
    account_sid: str
    from_: str
    to: str
    direction: str = "inbound"
    api_version: str = API_VERSION
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def new(
        cls, *, from_: str, to: str, account_sid: str | None = None, direction: str = "inbound"
    ) -> CallInfo:
        """A call with a fresh ``CA…`` sid (and a fresh ``AC…`` account sid unless given)."""
        return cls(
            call_sid=new_sid("CA"),
            account_sid=account_sid or new_sid("AC"),
            from_=from_,
            to=to,
            direction=direction,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds that keep a call flow from running away; exceeding one ends the call with an error.

    ``fetches_in_a_row``: documents fetched without running a verb that waits for the caller
    (Say, Play, Pause, Gather, Record, Dial) — a ``<Redirect>`` loop. ``hangup_grace``: seconds to
    wait, after the caller hung up, for the driver to report a recording or dial result.
    """

    fetches_in_a_row: int = 10
    documents_per_call: int = 250
    verbs_per_document: int = 250
    verbs_per_call: int = 5000
    digits_per_gather: int = 64
    hangup_grace: float = 5.0
