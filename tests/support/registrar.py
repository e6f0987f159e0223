"""A REGISTER handed straight to a :class:`~callxml.engine.registrar.RegistrarService`, as the
user agent hands it one once the digest challenge is passed: no socket, no transaction; the
response is kept for the test to read."""

from __future__ import annotations

from collections.abc import Sequence

from callxml.sip.aio.useragent import RegisterRequest
from callxml.sip.events import Address
from callxml.sip.message import Headers, SipRequest

__all__ = ["Register"]


class Register(RegisterRequest):
    """``user`` at ``domain`` registering ``contact`` for ``expires`` seconds (0: removing it)
    from ``source`` (default: UDP 127.0.0.1:5099), authenticated as ``user``; :attr:`status` is
    the registrar's answer."""

    def __init__(
        self,
        user: str,
        domain: str,
        contact: str,
        *,
        expires: int = 3600,
        cseq: int = 1,
        call_id: str = "reg-1@ua",
        source: Address | None = None,
    ) -> None:
        aor = f"sip:{user}@{domain}"
        source = source or Address("udp", "127.0.0.1", 5099)
        headers = Headers(
            [
                ("Via", f"SIP/2.0/UDP {source.host}:{source.port};branch=z9hG4bK-{cseq}"),
                ("Max-Forwards", "70"),
                ("From", f"<{aor}>;tag=t1"),
                ("To", f"<{aor}>"),
                ("Call-ID", call_id),
                ("CSeq", f"{cseq} REGISTER"),
                ("Contact", f"<{contact}>;expires={expires}"),
            ]
        )
        self.request = SipRequest("REGISTER", f"sip:{domain}", headers)
        self.source = source
        self.auth_user = user
        self.answered = False
        self.status: int | None = None
        self.warning: str | None = None

    def respond(
        self,
        status: int,
        reason: str | None = None,
        *,
        headers: Sequence[tuple[str, str]] = (),
        warning: str | None = None,
    ) -> None:
        if not self.answered:
            self.answered = True
            self.status, self.warning = status, warning
