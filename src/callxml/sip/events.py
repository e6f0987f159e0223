"""What the sans-IO SIP layers tell their driver: frozen event dataclasses, a glossary.

Transactions (RFC 3261 §17) emit the transaction events; the user agent core (:mod:`ua`) turns
them into call-level events for the application (an incoming call, an answer, a hang-up). A
driver ``match``-es on these. This module also holds :class:`Address`, the value type naming
where a message came from or goes to; it knows nothing about sockets.
"""

from __future__ import annotations

from dataclasses import dataclass

from callxml.sip.message import SipRequest, SipResponse

__all__ = [
    "AckReceived",
    "Address",
    "CallAnswered",
    "CallCancelled",
    "CallEnded",
    "CallFailed",
    "CallProgress",
    "CallReinvited",
    "DialogConfirmed",
    "Event",
    "InviteReceived",
    "RegisterReceived",
    "ReofferAnswered",
    "ReofferFailed",
    "RequestReceived",
    "ResponseReceived",
    "TransactionKey",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportErrorOccurred",
]


@dataclass(frozen=True)
class Address:
    """Where a message goes or came from.

    ``transport`` is ``"udp"``, ``"tcp"`` or ``"tls"``; ``host`` an IP literal without brackets
    or a name the transport resolves (RFC 3263); ``server_name`` the TLS identity to check
    (RFC 5922), None when it is the host itself or irrelevant.

    ``flow`` marks the far end of a connection the *peer* opened to us (RFC 5626 §5.3): a request
    for it goes over that very connection or fails, never over a new one, and no server identity
    is checked (a client presents none; the REGISTER that made the binding was authenticated).
    That is how a device behind NAT, registered over TCP or TLS, is reached.
    """

    transport: str
    host: str
    port: int
    server_name: str | None = None
    flow: bool = False

    @property
    def reliable(self) -> bool:
        """TCP and TLS are reliable (no transaction-level retransmissions, RFC 3261 §17)."""
        return self.transport != "udp"


@dataclass(frozen=True)
class TransactionKey:
    """RFC 3261 §17.1.3 / §17.2.3 matching key: top Via branch, sent-by, and method.

    ``method`` is the CSeq method, with ACK folded into INVITE for server matching. ``server``
    tells a server transaction from a client one with the same branch (a UA talking to itself).
    """

    branch: str
    sent_by: str
    method: str
    server: bool


# --- transaction events -------------------------------------------------------------------


@dataclass(frozen=True)
class RequestReceived:
    """A new request created server transaction ``key``; the TU must answer it."""

    key: TransactionKey
    request: SipRequest
    source: Address


@dataclass(frozen=True)
class ResponseReceived:
    """A client transaction passed a response up to the TU (retransmitted 2xx included,
    RFC 6026 §8.4)."""

    key: TransactionKey
    response: SipResponse


@dataclass(frozen=True)
class AckReceived:
    """An ACK for a non-2xx final response reached INVITE server transaction ``key``."""

    key: TransactionKey
    request: SipRequest


@dataclass(frozen=True)
class TransactionTimedOut:
    """Timer ``timer`` (B, F or H) fired: no response, or no ACK for our final response."""

    key: TransactionKey
    timer: str


@dataclass(frozen=True)
class TransportErrorOccurred:
    """The transport failed to send for transaction ``key`` (RFC 3261 §17.1.4, §17.2.4)."""

    key: TransactionKey
    reason: str


@dataclass(frozen=True)
class TransactionTerminated:
    """Transaction ``key`` reached TERMINATED and was forgotten."""

    key: TransactionKey


# --- user agent (call-level) events --------------------------------------------------------


@dataclass(frozen=True)
class InviteReceived:
    """A new INVITE outside any dialog; answer with ``UserAgentCore.answer/reject/ring``."""

    call: str  # handle id of the server INVITE
    request: SipRequest
    source: Address


@dataclass(frozen=True)
class RegisterReceived:
    """A REGISTER outside any dialog, for the registrar (RFC 3261 §10.3); answer it with
    ``UserAgentCore.respond(key, ...)``. ``auth_user`` is the username its digest credentials
    proved (the core challenged it, §22.3), None when no digest server was chosen for it."""

    key: TransactionKey
    request: SipRequest
    source: Address
    auth_user: str | None


@dataclass(frozen=True)
class CallProgress:
    """A provisional response (180, 183...) to our INVITE."""

    call: str
    response: SipResponse


@dataclass(frozen=True)
class CallAnswered:
    """Our INVITE was answered (2xx); the ACK has been sent."""

    call: str
    response: SipResponse


@dataclass(frozen=True)
class DialogConfirmed:
    """The ACK for the 2xx we sent arrived (UAS side): media may flow both ways."""

    call: str
    request: SipRequest


@dataclass(frozen=True)
class CallFailed:
    """Our INVITE ended without a dialog: a final non-2xx ``status``, or 408 for a timeout,
    503 for a transport error, 487 after CANCEL. ``response`` is None for local failures."""

    call: str
    status: int
    reason: str
    response: SipResponse | None = None


@dataclass(frozen=True)
class CallCancelled:
    """The caller CANCELled an incoming call we had not answered (we sent 487)."""

    call: str


@dataclass(frozen=True)
class CallReinvited:
    """The peer modified the session with a re-INVITE or an UPDATE (RFC 3311), e.g. hold,
    unhold, new media or a session refresh; it was answered as configured (the call's answerer,
    see ``UserAgentCore.set_answerer``) and the 2xx is on its way. ``request.method`` says
    which."""

    call: str
    request: SipRequest


@dataclass(frozen=True)
class ReofferAnswered:
    """The peer answered an offer we made inside the dialog: in the 2xx to our re-INVITE or
    UPDATE, or in the ACK for a 2xx in which we offered (its offer-less re-INVITE, RFC 3261
    §14.2, RFC 3264 §8). ``sdp`` is empty when the exchange carried no session description
    (an UPDATE refresh without a body)."""

    call: str
    sdp: bytes
    method: str


@dataclass(frozen=True)
class ReofferFailed:
    """Our re-INVITE or UPDATE failed with ``status`` (408 for a timeout, 503 for a transport
    error): the session stays as it was before the offer (RFC 3264 §8, RFC 3311 §5.1)."""

    call: str
    status: int
    method: str


@dataclass(frozen=True)
class CallEnded:
    """The dialog ended: ``by_peer`` is True for a BYE received, False for ours (or a
    failure such as no ACK for our 2xx, ``reason`` says)."""

    call: str
    by_peer: bool
    reason: str = ""


Event = (
    RequestReceived
    | ResponseReceived
    | AckReceived
    | TransactionTimedOut
    | TransportErrorOccurred
    | TransactionTerminated
    | InviteReceived
    | RegisterReceived
    | CallProgress
    | CallAnswered
    | DialogConfirmed
    | CallFailed
    | CallCancelled
    | CallReinvited
    | ReofferAnswered
    | ReofferFailed
    | CallEnded
)
