"""The exception tree of callxml: one root, one branch per layer.

Every error the package raises on purpose derives from :class:`CallXmlError`, so an application
can catch everything callxml means to raise with one ``except``. The branches say whose fault an
error is (ours, the peer's, the document author's), which decides how it is reported: a SIP peer's
malformed request becomes a 400, a bad document becomes an error with line and column, a failing
webhook becomes a fallback request.

::

    CallXmlError
    ├── MarkupError                  a document that cannot run (code, line, column)
    ├── ProtocolError                a protocol rule was broken
    │   ├── LocalProtocolError       ...by us (a bug or a misuse of the API)
    │   └── RemoteProtocolError      ...by the peer; carries a SIP ``status_hint`` (400, 505, 416)
    ├── TransactionError             a SIP transaction failed (timeout, transport error)
    ├── TransportError               a socket or TLS connection failed (incl. certificate checks)
    ├── MediaError                   SDP / crypto negotiation or RTP/SRTP failures
    │   └── SecureMediaError         the secure-media policy refused an offer or answer (488)
    ├── WebhookError                 a webhook request failed (connect, timeout, status, body)
    ├── InterpreterError             a call flow broke a runtime rule (e.g. a redirect loop)
    ├── CapacityError                no room for another call now (503 + Retry-After, REST 429)
    └── ConfigError                  bad configuration; names the offending key
"""

from __future__ import annotations


class CallXmlError(Exception):
    """Root of every error callxml raises on purpose."""


class MarkupError(CallXmlError):
    """A document that cannot be run.

    ``code`` is a stable identifier (``not-well-formed``, ``unknown-verb``...), ``line`` and
    ``column`` are 1-based positions in the document (0 when unknown).
    """

    def __init__(self, message: str, *, code: str = "invalid", line: int = 0, column: int = 0):
        super().__init__(message)
        self.message = message
        self.code = code
        self.line = line
        self.column = column

    def __str__(self) -> str:
        if self.line:
            return f"{self.line}:{self.column}: {self.message}"
        return self.message


class ProtocolError(CallXmlError):
    """A protocol rule was broken; the subclass says by whom."""


class LocalProtocolError(ProtocolError):
    """We (or the code calling us) tried something the protocol forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something unacceptable.

    ``status_hint`` is the SIP status a server should answer with when a response is possible
    (400 Bad Request by default, 505 for a bad version, 416 for an unsupported URI scheme...).
    """

    def __init__(self, message: str, *, status_hint: int = 400):
        super().__init__(message)
        self.status_hint = status_hint


class TransactionError(CallXmlError):
    """A SIP transaction ended without a usable response (timer B/F fired, transport failed)."""


class TransportError(CallXmlError):
    """A connection could not be made or was lost; TLS verification failures land here."""


class MediaError(CallXmlError):
    """SDP negotiation, RTP or SRTP failed."""


class SecureMediaError(MediaError):
    """The secure-media policy refused an offer or an answer.

    ``reason`` is a short human-readable text suitable for a SIP ``Warning`` header and the call
    log; it never contains key material.
    """

    def __init__(self, reason: str, *, status: int = 488):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class WebhookError(CallXmlError):
    """A webhook request failed; ``error_code`` follows Twilio's numbering (11200, 11205...)."""

    def __init__(self, message: str, *, error_code: int = 11200, url: str = ""):
        super().__init__(message)
        self.error_code = error_code
        self.url = url


class InterpreterError(CallXmlError):
    """A call flow broke a runtime rule, such as fetching documents in an endless loop."""


class CapacityError(CallXmlError):
    """There is no room for this call now: media ports exhausted, or an admission limit
    (docs/reliability.md) reached. Nothing was started; the caller was told to retry
    (SIP ``503`` with ``Retry-After``, REST ``429``). ``retry_after`` is in seconds."""

    def __init__(self, message: str, *, retry_after: int = 5, limit: str = ""):
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit  # which one: "max_calls", "store"...


class ConfigError(CallXmlError):
    """Bad configuration; the message names the offending key."""
