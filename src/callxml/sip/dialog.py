"""SIP dialogs (RFC 3261 §12), pure: the state two user agents share after an INVITE.

This module owns the dialog identifier (Call-ID and both tags), the local and remote CSeq
numbers, the route set (from Record-Route) and the remote target (from Contact), and builds
in-dialog requests from them, including the ACK for a 2xx (§13.2.2.4) and loose/strict routing
(§12.2.1.1). It does not send anything, run timers or decide what to answer: the user agent
core (:mod:`callxml.sip.ua`) does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from callxml.errors import LocalProtocolError, RemoteProtocolError
from callxml.sip.events import Address
from callxml.sip.headers import NameAddr, new_branch
from callxml.sip.message import Headers, SipRequest, SipResponse
from callxml.sip.target import next_hop
from callxml.sip.uri import parse_uri

__all__ = ["Dialog", "DialogId", "DialogState"]

MAX_ROUTE_SET = 16  # a bound on Record-Route entries we keep (not an RFC limit)


class DialogState(StrEnum):
    EARLY = "early"  # created by a provisional response with a To tag (§12.1)
    CONFIRMED = "confirmed"  # a 2xx was sent or received
    TERMINATED = "terminated"


@dataclass(frozen=True)
class DialogId:
    """§12: Call-ID, local tag and remote tag identify a dialog."""

    call_id: str
    local_tag: str
    remote_tag: str


@dataclass
class Dialog:
    """One dialog as seen from our side (§12.1.1 for the UAS, §12.1.2 for the UAC).

    ``route_set`` holds Route values in the order we must send them; ``secure`` is true when
    the dialog was set up over sips (§12.1.1), so our requests stay on TLS. ``flow``, when set,
    is the connection the peer registered over (RFC 5626 §5.3): our in-dialog requests go over
    it too, since its Contact may be unreachable from here (NAT).
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr  # our From in requests (without tag)
    remote_uri: NameAddr  # their To in requests (without tag)
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    secure: bool = False
    state: DialogState = DialogState.EARLY
    flow: Address | None = None

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    # --- creation --------------------------------------------------------------------------

    @classmethod
    def for_uac(cls, request: SipRequest, response: SipResponse) -> Dialog:
        """The dialog a response with a To tag creates for the request we sent (§12.1.2).

        Route set: Record-Route of the response in reverse order; remote target: its Contact.
        """
        remote_tag = response.to.tag
        local_tag = request.from_.tag
        if remote_tag is None or local_tag is None:
            raise RemoteProtocolError("a dialog needs tags in From and To")
        contacts = response.contacts  # a 2xx without Contact breaks §13.3.1.4; be lenient
        target = contacts[0].uri if contacts else request.uri
        routes = [str(r) for r in reversed(response.record_routes)]
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=_without_tag(request.from_),
            remote_uri=_without_tag(response.to),
            remote_target=target,
            route_set=routes[:MAX_ROUTE_SET],
            local_seq=request.cseq.seq,
            secure=request.uri.lower().startswith("sips:"),
            state=DialogState.CONFIRMED if response.status < 300 else DialogState.EARLY,
        )

    @classmethod
    def for_uas(cls, request: SipRequest, local_tag: str) -> Dialog:
        """The dialog our response with To tag ``local_tag`` creates (§12.1.1).

        Route set: Record-Route of the request in order; remote target: its Contact.
        """
        # §12.1.1 with §12.2.2's RFC 2543 rule: a From without a tag is a null remote tag.
        remote_tag = request.from_.tag or ""
        contacts = request.contacts
        if not contacts and request.vias[0].branch_is_rfc3261:
            raise RemoteProtocolError("INVITE without Contact", status_hint=400)
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=_without_tag(request.to),
            remote_uri=_without_tag(request.from_),
            remote_target=contacts[0].uri if contacts else request.from_.uri,  # RFC 2543
            route_set=[str(r) for r in request.record_routes][:MAX_ROUTE_SET],
            remote_seq=request.cseq.seq,
            secure=request.uri.lower().startswith("sips:"),
        )

    # --- requests we send ----------------------------------------------------------------

    @property
    def next_hop(self) -> str:
        """The URI to send in-dialog requests to: the first route, else the remote target."""
        if self.route_set:
            return _route_uri(self.route_set[0])
        return self.remote_target

    def destination(self) -> Address:
        if self.flow is not None:
            return self.flow
        return next_hop(self.next_hop)

    def create_request(
        self,
        method: str,
        *,
        via: str,
        contact: str | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        cseq: int | None = None,
    ) -> SipRequest:
        """An in-dialog request (§12.2.1.1). ``via`` is our Via value without branch (a new
        branch is added). The local CSeq increases, except for ACK and CANCEL (pass ``cseq``).
        """
        if self.state is DialogState.TERMINATED:
            raise LocalProtocolError(f"dialog {self.id} is terminated")
        if cseq is None:
            if method in ("ACK", "CANCEL"):
                raise LocalProtocolError(f"{method} reuses the INVITE's CSeq; pass cseq")
            self.local_seq += 1
            cseq = self.local_seq
        uri, routes = self._request_uri_and_routes()
        out = Headers()
        out.add("Via", f"{via};branch={new_branch()}")
        out.add("Max-Forwards", "70")
        out.add("From", str(self.local_uri.with_tag(self.local_tag)))
        out.add("To", str(self.remote_uri.with_tag(self.remote_tag)))
        out.add("Call-ID", self.call_id)
        out.add("CSeq", f"{cseq} {method}")
        for route in routes:
            out.add("Route", route)
        if contact is not None:
            out.add("Contact", contact)
        for name, value in headers:
            out.add(name, value)
        if body:
            out.add("Content-Type", content_type or "application/sdp")
        return SipRequest(method, uri, out, body)

    def create_ack(self, invite_cseq: int, *, via: str, body: bytes = b"") -> SipRequest:
        """The ACK for a 2xx to INVITE ``invite_cseq`` (§13.2.2.4): a new transaction (new
        branch) with the INVITE's CSeq number, routed like any in-dialog request."""
        return self.create_request("ACK", via=via, cseq=invite_cseq, body=body)

    def _request_uri_and_routes(self) -> tuple[str, list[str]]:
        """Loose routing when the first route has ``lr``, else strict (§12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, []
        first = _route_uri(self.route_set[0])
        try:
            loose = parse_uri(first).has_param("lr")
        except RemoteProtocolError:
            loose = True
        if loose:
            return self.remote_target, list(self.route_set)
        return first, [*self.route_set[1:], f"<{self.remote_target}>"]

    # --- requests we receive ---------------------------------------------------------------

    def check_remote_seq(self, request: SipRequest) -> bool:
        """§12.2.2: record the remote CSeq; False (answer 500) when it went backwards."""
        if request.method in ("ACK", "CANCEL"):
            return True
        seq = request.cseq.seq
        if self.remote_seq is not None and seq < self.remote_seq:
            return False
        self.remote_seq = seq
        return True

    def refresh_target(self, message: SipRequest | SipResponse) -> None:
        """A target refresh (re-INVITE or its 2xx) replaces the remote target (§12.2)."""
        contacts = message.contacts
        if contacts and not contacts[0].is_wildcard:
            self.remote_target = contacts[0].uri


def _without_tag(addr: NameAddr) -> NameAddr:
    return NameAddr(
        addr.display_name, addr.uri, tuple(p for p in addr.params if p[0].lower() != "tag")
    )


def _route_uri(route: str) -> str:
    text = route.strip()
    if "<" in text:
        return text[text.index("<") + 1 : text.index(">")]
    return text.split(";", 1)[0]
