"""REGISTER both ways, sans-IO: registering with a registrar, and being one (RFC 3261 §10).

Two state machines beside the INVITE user agent core (:mod:`callxml.sip.ua`), which carries
their messages: the core runs the transactions (:meth:`~callxml.sip.ua.UserAgentCore.send_request`
for the REGISTERs we send; a :class:`~callxml.sip.events.RegisterReceived` event and
:meth:`~callxml.sip.ua.UserAgentCore.respond` for those we receive) and challenges incoming
REGISTERs with the same digest servers as INVITEs (§22.3). Neither machine touches a socket or
reads a clock: every input carries ``now``, the driver calls ``handle_timer(now)`` at
``next_timer()``.

* :class:`Registration` — callxml registering one contact with a registrar (a carrier), so that
  calls for that contact reach it over the connection the REGISTER went over (RFC 5626):
  REGISTER with digest credentials (§22.2, RFC 7616: MD5, SHA-256...), refresh at 80 % of the
  granted expiry (§10.2.1, §10.2.4), 423 Interval Too Brief answered with the registrar's
  Min-Expires (§10.2.8, §10.3 step 7), back-off after a failure (RFC 5626 §4.5), de-registration
  with Expires 0 (§10.2.2), and a :class:`RegistrationStatus` to show.
* :class:`Registrar` — callxml as the registrar of its domains (§10.3): bindings per address of
  record with expiry, several contacts and ``q`` values, de-registration and ``Contact: *``,
  Call-ID/CSeq ordering, Expires bounds (423 below the minimum, the maximum imposed), a bound on
  the bindings of one address of record, all-or-nothing updates, RFC 5626 instance/reg-id
  bindings, and the flow (transport and source address) each binding came over.

Simplified: Contact URIs compare by scheme, user, host, port, transport and maddr (§19.1.4 has
more rules); no Path (RFC 3327), GRUU (RFC 5627) or Flow-Timer; a REGISTER client keeps one
registration per instance and one request in flight (§10.2: no new REGISTER before the final
response to the previous one).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from callxml.errors import CallXmlError, LocalProtocolError, RemoteProtocolError
from callxml.sip.auth import (
    Credentials,
    DigestChallenge,
    DigestClient,
    challenge_to_answer,
)
from callxml.sip.events import Address
from callxml.sip.headers import (
    NameAddr,
    new_branch,
    new_call_id,
    new_tag,
    parse_digits,
    quote_string,
    unquote_string,
)
from callxml.sip.message import Headers, SipRequest, SipResponse
from callxml.sip.uri import SipUri, parse_uri

__all__ = [
    "MAX_EXPIRES",
    "Binding",
    "RegisterResult",
    "Registrar",
    "RegistrarPolicy",
    "Registration",
    "RegistrationConfig",
    "RegistrationState",
    "RegistrationStatus",
    "contact_key",
]

#: The longest expiry either side deals in (a week): a larger Expires or Min-Expires is refused
#: as nonsense rather than trusted (a bound, not an RFC rule).
MAX_EXPIRES = 7 * 24 * 3600
#: §10.2.1.1: without Expires anywhere, a registrar picks; 3600 s is the RFC's suggestion.
DEFAULT_EXPIRES = 3600
#: Challenges answered in one registration attempt before it counts as failed (a wrong password
#: must not loop).
#: 423s followed in one attempt (each must raise the expiry: a registrar cannot make us loop).
MAX_INTERVAL_RETRIES = 3


# ==============================================================================================
# The client: one registration


class RegistrationState(StrEnum):
    IDLE = "idle"  # not started
    REGISTERING = "registering"  # a REGISTER is in flight (first, refresh or retry)
    REGISTERED = "registered"  # the registrar accepted our contact; a refresh is scheduled
    FAILING = "failing"  # the last attempt failed; the next is scheduled (back-off)
    UNREGISTERING = "unregistering"  # the Expires 0 REGISTER is in flight
    STOPPED = "stopped"


@dataclass(frozen=True)
class RegistrationConfig:
    """One registration. ``registrar`` is the Request-URI (§10.2: the registrar's domain, e.g.
    ``sips:carrier.example`` or ``sip:carrier.example;transport=tls``); ``aor`` the address of
    record in To and From; ``contact`` our Contact URI (calls for it come back, over the flow).
    ``expires`` is the expiry asked for; ``outbound_proxy`` a Route (§8.1.2); ``instance`` an
    ``urn:uuid:…`` for RFC 5626 (with ``reg_id``: the registrar may then tie the binding to our
    flow). ``retry_base``/``retry_max`` are RFC 5626 §4.5's base-time and max-time.
    """

    registrar: str
    aor: str
    contact: str
    credentials: Credentials | None = None
    expires: int = DEFAULT_EXPIRES
    outbound_proxy: str | None = None
    instance: str | None = None
    reg_id: int = 1
    user_agent: str = "callxml"
    retry_base: float = 30.0
    retry_max: float = 1800.0
    refresh_at: float = 0.8  # of the granted expiry

    def __post_init__(self) -> None:
        if not 1 <= self.expires <= MAX_EXPIRES:
            raise LocalProtocolError(f"expires must be 1-{MAX_EXPIRES} seconds")
        if not 0 < self.retry_base <= self.retry_max:
            raise LocalProtocolError("need 0 < retry_base <= retry_max")
        if not 0.1 <= self.refresh_at < 1:
            raise LocalProtocolError("refresh_at is a fraction of the expiry below 1")
        for name in ("registrar", "aor", "contact"):
            parse_uri(getattr(self, name))  # raises InvalidUri for bad text


@dataclass(frozen=True)
class RegistrationStatus:
    """What to show of a registration: its state, until when the registrar holds our binding
    (``registered_until``, in the driver's clock), the last final response (``last_response``,
    e.g. ``"200 OK"``, ``"403 Forbidden"``, ``"408 no response"``), consecutive failures and
    when the next attempt is due."""

    state: RegistrationState
    registered_until: float | None
    last_response: str
    failures: int
    next_attempt: float | None
    expires: int


class Registration:
    """A registering user agent for one contact (RFC 3261 §10.2), sans-IO.

    ``via`` is our Via value without branch (``SIP/2.0/TLS host:port;rport``; the transport
    fixes the sent-by). Drive it so::

        reg.start(now)
        for request in reg.requests(): key = core.send_request(request, destination, now)
        reg.receive(response, now)            # the final response of the request in flight
        reg.failed("408 no response", now)    # or its timeout / transport error
        reg.handle_timer(now)                 # at reg.next_timer()
        reg.stop(now)                         # Expires 0, then STOPPED

    ``random()`` (0 ≤ x < 1) spreads retries (RFC 5626 §4.5); tests pass a fixed one.
    """

    def __init__(
        self,
        config: RegistrationConfig,
        *,
        via: str,
        call_id: str | None = None,
        auth: DigestClient | None = None,
        random: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self._via = via
        self._registrar = parse_uri(config.registrar)
        self._request_uri = str(self._registrar.without_headers())
        self._contact = parse_uri(config.contact)
        # §10.2: the same Call-ID for every REGISTER of this binding during a boot cycle, and a
        # CSeq increasing by one each time, so the registrar can order them.
        self._call_id = call_id or new_call_id(self._registrar.bare_host)
        self._from_tag = new_tag()
        self._cseq = 0
        self._auth = auth or DigestClient()
        self._random = random
        self.state = RegistrationState.IDLE
        self.expires = config.expires  # what we ask for: raised by a 423's Min-Expires
        self.registered_until: float | None = None
        self.last_response = ""
        self.failures = 0
        self._out: list[SipRequest] = []
        self._in_flight: SipRequest | None = None
        self._in_flight_expires = 0
        self._refresh_at: float | None = None
        self._retry_at: float | None = None
        self._auth_attempts = 0
        self._realms_answered: set[str] = set()
        self._challenge: tuple[str, DigestChallenge] | None = None  # the last one answered
        self._interval_retries = 0
        self._stopping = False
        self.changed = False  # set at every state change; the driver clears it when it logs

    # --- queries -------------------------------------------------------------------------

    def requests(self) -> list[SipRequest]:
        """REGISTERs to send now (at most one), oldest first; clears the queue."""
        out, self._out = self._out, []
        return out

    def next_timer(self) -> float | None:
        due = [t for t in (self._refresh_at, self._retry_at, self.registered_until) if t]
        return min(due, default=None)

    def status(self) -> RegistrationStatus:
        due = self._retry_at if self.state is RegistrationState.FAILING else self._refresh_at
        return RegistrationStatus(
            self.state, self.registered_until, self.last_response, self.failures, due, self.expires
        )

    @property
    def requests_pending(self) -> bool:
        """A REGISTER is queued for :meth:`requests`."""
        return bool(self._out)

    @property
    def in_flight(self) -> SipRequest | None:
        """The REGISTER waiting for its final response, if any."""
        return self._in_flight

    # --- inputs --------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Register now."""
        if self.state is not RegistrationState.IDLE:
            raise LocalProtocolError(f"registration already {self.state}")
        self._attempt(now)

    def stop(self, now: float) -> None:
        """Remove our binding (§10.2.2: Expires 0) if the registrar may hold one, then STOPPED.

        With a REGISTER in flight the Expires 0 follows its final response (§10.2: one at a
        time)."""
        self._stopping = True
        self._refresh_at = self._retry_at = None
        if self.state in (RegistrationState.UNREGISTERING, RegistrationState.STOPPED):
            return
        if self._in_flight is not None:
            return
        if self.registered_until is not None:
            self._unregister(now)
        else:
            self._set(RegistrationState.STOPPED)

    def flow_failed(self, now: float) -> None:
        """The connection the binding lives on failed (no pong, closed: RFC 5626 §4.4.1):
        register again at once, over a new one."""
        if self.state is RegistrationState.REGISTERED and self._in_flight is None:
            self.last_response = "flow failed"
            self._attempt(now)

    def handle_timer(self, now: float) -> None:
        if self.registered_until is not None and now >= self.registered_until:
            self.registered_until = None  # the registrar has dropped us by now
            self.changed = True
        if self._in_flight is not None:
            return
        if self._refresh_at is not None and now >= self._refresh_at:
            self._refresh_at = None
            self._attempt(now)
        elif self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._attempt(now)

    def receive(self, response: SipResponse, now: float) -> None:
        """The final response to the REGISTER in flight (others are ignored)."""
        request = self._in_flight
        if request is None or response.status < 200:
            return
        try:
            if response.cseq.seq != request.cseq.seq or response.call_id != self._call_id:
                return
        except RemoteProtocolError:
            return
        self._in_flight = None
        self.last_response = f"{response.status} {response.reason}".strip()
        status = response.status
        if status in (401, 407) and self._authorized_retry(request, response, now):
            return
        if status == 423 and self._longer_interval(response, now):
            return
        if self.state is RegistrationState.UNREGISTERING:
            self._finish_unregister()
            return
        if 200 <= status < 300:
            self._registered(response, now)
        else:
            self._failure(now, retry_after=_retry_after(response))

    def failed(self, reason: str, now: float) -> None:
        """The REGISTER in flight got no final response: a timeout or a transport error."""
        if self._in_flight is None:
            return
        self._in_flight = None
        self.last_response = reason
        if self.state is RegistrationState.UNREGISTERING:
            self._finish_unregister()
        else:
            self._failure(now)

    # --- steps ---------------------------------------------------------------------------

    def _set(self, state: RegistrationState) -> None:
        if state is not self.state:
            self.state = state
            self.changed = True

    def _attempt(self, now: float) -> None:
        """A new REGISTER (first, refresh, retry): a fresh budget of challenges and 423s."""
        self._auth_attempts = 0
        self._realms_answered.clear()
        self._challenge = None
        self._interval_retries = 0
        self._set(RegistrationState.REGISTERING)
        self._send(self.expires, authorization=None)

    def _unregister(self, now: float) -> None:
        self._auth_attempts = 0
        self._realms_answered.clear()
        self._challenge = None
        self._set(RegistrationState.UNREGISTERING)
        self._send(0, authorization=None)

    def _finish_unregister(self) -> None:
        self.registered_until = None
        self._set(RegistrationState.STOPPED)

    def _send(self, expires: int, *, authorization: tuple[str, str] | None) -> None:
        self._cseq += 1
        config = self.config
        h = Headers()
        h.add("Via", f"{self._via};branch={new_branch()}")
        h.add("Max-Forwards", "70")
        h.add("From", f"<{config.aor}>;tag={self._from_tag}")
        h.add("To", f"<{config.aor}>")
        h.add("Call-ID", self._call_id)
        h.add("CSeq", f"{self._cseq} REGISTER")
        if config.outbound_proxy is not None:
            proxy = config.outbound_proxy
            h.add("Route", f"<{proxy}>" if ";lr" in proxy else f"<{proxy};lr>")
        contact = f"<{config.contact}>;expires={expires}"
        if config.instance is not None:  # RFC 5626 §4.2: the flow is tied to instance + reg-id
            contact += f";reg-id={config.reg_id};+sip.instance={quote_string(config.instance)}"
            h.add("Supported", "outbound, path")
        h.add("Contact", contact)
        h.add("Expires", str(expires))
        h.add("User-Agent", config.user_agent)
        if authorization is not None:
            h.add(*authorization)
        request = SipRequest("REGISTER", self._request_uri, h)
        self._in_flight = request
        self._in_flight_expires = expires
        self._out.append(request)

    def _authorized_retry(self, request: SipRequest, response: SipResponse, now: float) -> bool:
        """§22.2: the REGISTER again with credentials answering the challenge; False to fail.

        Gives up without credentials, for a realm already answered unless the nonce was stale
        (a wrong password must not loop), and after :data:`MAX_AUTH_ATTEMPTS`."""
        chosen = challenge_to_answer(
            response, self.config.credentials, self._realms_answered, self._auth_attempts
        )
        if chosen is None:
            return False
        self._auth_attempts += 1
        self._challenge = chosen
        self._send(self._in_flight_expires, authorization=self._authorization(request.uri))
        return True

    def _authorization(self, uri: str) -> tuple[str, str] | None:
        """Credentials for the last challenge answered, with the next nonce count (RFC 7616
        §3.4: a nonce may be used again), or None before any challenge."""
        if self._challenge is None or self.config.credentials is None:
            return None
        answer, challenge = self._challenge
        value = self._auth.authorize(challenge, self.config.credentials, "REGISTER", uri)
        return answer, str(value)

    def _longer_interval(self, response: SipResponse, now: float) -> bool:
        """§10.2.8: 423 Interval Too Brief — ask again with the registrar's Min-Expires."""
        value = parse_digits((response.headers.get("Min-Expires") or "").strip(), MAX_EXPIRES)
        if (
            value is None
            or value <= self._in_flight_expires
            or self._interval_retries >= MAX_INTERVAL_RETRIES
            or self.state is RegistrationState.UNREGISTERING
        ):
            return False
        self._interval_retries += 1
        self.expires = value
        self._send(value, authorization=self._authorization(self._request_uri))
        return True

    def _registered(self, response: SipResponse, now: float) -> None:
        granted = self._granted(response)
        if granted <= 0:
            self.last_response += " (the registrar kept no binding for our contact)"
            self._failure(now)
            return
        self.failures = 0
        self.registered_until = now + granted
        if self._stopping:
            self._unregister(now)
            return
        self._refresh_at = now + granted * self.config.refresh_at
        self._set(RegistrationState.REGISTERED)
        self.changed = True  # a new "registered until" to show, even in the same state

    def _granted(self, response: SipResponse) -> int:
        """The expiry the registrar gave our contact (§10.2.4): its ``expires`` parameter in
        the 2xx's Contacts, else the Expires header, else what we asked for."""
        ours = contact_key(self._contact)
        try:
            contacts = response.contacts
        except RemoteProtocolError:
            contacts = []
        for contact in contacts:
            try:
                if contact.is_wildcard or contact_key(parse_uri(contact.uri)) != ours:
                    continue
            except CallXmlError:
                continue
            value = parse_digits(contact.param("expires") or "", MAX_EXPIRES)
            if value is not None:
                return value
        header = parse_digits((response.headers.get("Expires") or "").strip(), MAX_EXPIRES)
        return header if header is not None else self._in_flight_expires

    def _failure(self, now: float, *, retry_after: int | None = None) -> None:
        """RFC 5626 §4.5: wait min(max-time, base-time · 2^failures), randomly between 50 % and
        100 % of it (never less than a Retry-After), then try again."""
        if self._stopping:
            self._set(RegistrationState.STOPPED)
            return
        self.failures += 1
        config = self.config
        exponent = min(self.failures, 32)
        wait = min(config.retry_max, config.retry_base * 2**exponent)
        wait *= 0.5 + 0.5 * self._random()
        if retry_after is not None:
            wait = max(wait, min(float(retry_after), config.retry_max))
        self._retry_at = now + wait
        self._refresh_at = None
        self._set(RegistrationState.FAILING)
        self.changed = True


def _retry_after(response: SipResponse) -> int | None:
    value = (response.headers.get("Retry-After") or "").split(";")[0].split("(")[0].strip()
    return parse_digits(value, MAX_EXPIRES)


# ==============================================================================================
# The server: bindings of the addresses of record of our domains


def contact_key(uri: SipUri | str) -> str:
    """How two Contact URIs compare (§19.1.4, simplified): scheme, user, host (case-insensitive),
    port, and the ``transport`` and ``maddr`` parameters."""
    if isinstance(uri, str):
        uri = parse_uri(uri)
    transport = (uri.param("transport") or "").lower()
    maddr = (uri.param("maddr") or "").lower()
    return f"{uri.scheme}:{uri.user or ''}@{uri.host.lower()}:{uri.port or ''};{transport};{maddr}"


@dataclass(frozen=True)
class RegistrarPolicy:
    """The registrar's bounds: expiries between ``min_expires`` (shorter is refused with 423,
    §10.3 step 7) and ``max_expires`` (longer is cut, which §10.3 allows), ``default_expires``
    when the REGISTER names none, and at most ``max_bindings`` contacts per address of record
    (more are refused: a flood of Contacts cannot grow the table)."""

    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_bindings: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.min_expires <= self.max_expires <= MAX_EXPIRES:
            raise LocalProtocolError("need 1 <= min_expires <= max_expires <= a week")
        if not self.min_expires <= self.default_expires <= self.max_expires:
            raise LocalProtocolError("default_expires must lie between min and max")
        if not 1 <= self.max_bindings <= 1000:
            raise LocalProtocolError("max_bindings must be 1-1000")


@dataclass(frozen=True)
class Binding:
    """One contact of an address of record (§10.3), and the flow it came over.

    ``aor`` is ``user@domain`` (domain lower-cased); ``contact`` the Contact URI as registered;
    ``expires_at`` the moment it lapses (the registrar's clock: wall-clock seconds when the
    bindings are stored); ``q`` its preference (§20.10); ``call_id``/``cseq`` order updates
    (§10.3 step 7); ``instance``/``reg_id`` the RFC 5626 identity of the flow; ``transport``,
    ``source_host`` and ``source_port`` where the REGISTER came from: the flow a call to this
    binding goes over.
    """

    aor: str
    contact: str
    expires_at: float
    q: float = 1.0
    call_id: str = ""
    cseq: int = 0
    instance: str | None = None
    reg_id: int | None = None
    transport: str = "udp"
    source_host: str = ""
    source_port: int = 0
    registered_at: float = 0.0
    user_agent: str = ""

    @property
    def key(self) -> str:
        """Its identity within the address of record: instance and reg-id (RFC 5626 §6), else
        the Contact URI (§10.3 step 7)."""
        if self.instance is not None and self.reg_id is not None:
            return f"instance:{self.instance};reg-id={self.reg_id}"
        return "contact:" + contact_key(self.contact)

    @property
    def outbound(self) -> bool:
        """Registered with RFC 5626 (instance + reg-id): reachable only over its flow."""
        return self.instance is not None and self.reg_id is not None

    @property
    def flow(self) -> Address:
        """Where the REGISTER came from: the connection (TCP/TLS) or the NAT-mapped address
        (UDP, RFC 3581) to send its calls to."""
        return Address(self.transport, self.source_host, self.source_port, flow=True)

    def expires_in(self, now: float) -> int:
        return max(0, math.ceil(self.expires_at - now))

    def contact_value(self, now: float) -> str:
        """The Contact header value listing this binding in a 2xx (§10.3 step 8)."""
        value = f"<{self.contact}>;expires={self.expires_in(now)}"
        if self.q != 1.0:
            value += f";q={_format_q(self.q)}"
        if self.outbound:
            assert self.instance is not None
            value += f";reg-id={self.reg_id};+sip.instance={quote_string(self.instance)}"
        return value


@dataclass(frozen=True)
class RegisterResult:
    """The registrar's answer to one REGISTER: the response (``status``, ``reason``,
    ``headers``; ``warning`` says why for a refusal, §20.43) and what changed, for the store:
    bindings ``saved`` (new or refreshed) and ``removed``. A refusal changes nothing."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    warning: str | None = None
    saved: tuple[Binding, ...] = ()
    removed: tuple[Binding, ...] = ()
    aor: str = ""


def _refuse(status: int, warning: str, *headers: tuple[str, str]) -> RegisterResult:
    return RegisterResult(status, headers=tuple(headers), warning=warning)


@dataclass
class _Parsed:
    contact: str
    expires: int
    q: float
    instance: str | None
    reg_id: int | None
    key: str = field(init=False)

    def __post_init__(self) -> None:
        if self.instance is not None and self.reg_id is not None:
            self.key = f"instance:{self.instance};reg-id={self.reg_id}"
        else:
            self.key = "contact:" + contact_key(self.contact)


class Registrar:
    """The bindings of every address of record (``user@domain``) of our domains, sans-IO.

    The application decides which REGISTERs reach :meth:`register` (the domain exists and takes
    registrations, the REGISTER came over an acceptable transport) and authenticates them (the
    core's digest challenge); the rules here are §10.3 steps 4-8. It keeps the bindings in
    memory (``bindings`` at construction: those the application stored) and reports each
    change in the :class:`RegisterResult`, for the application to store.
    """

    def __init__(
        self, policy: RegistrarPolicy | None = None, bindings: Iterable[Binding] = ()
    ) -> None:
        self.policy = policy or RegistrarPolicy()
        self._aors: dict[str, dict[str, Binding]] = {}
        # (transport, source host, port) -> the bindings that came over that flow
        self._flows: dict[tuple[str, str, int], dict[tuple[str, str], Binding]] = {}
        for binding in bindings:
            table = self._aors.setdefault(binding.aor, {})
            if len(table) < self.policy.max_bindings:
                table[binding.key] = binding
                self._index(binding)

    def _index(self, binding: Binding) -> None:
        flow = (binding.transport, binding.source_host, binding.source_port)
        self._flows.setdefault(flow, {})[(binding.aor, binding.key)] = binding

    def _unindex(self, binding: Binding) -> None:
        flow = (binding.transport, binding.source_host, binding.source_port)
        found = self._flows.get(flow)
        if found is not None and found.get((binding.aor, binding.key)) is binding:
            del found[(binding.aor, binding.key)]
            if not found:
                del self._flows[flow]

    # --- queries -------------------------------------------------------------------------

    def lookup(self, aor: str, now: float) -> list[Binding]:
        """The current bindings of ``aor`` (``user@domain``), highest ``q`` first, then the
        most recently registered."""
        table = self._aors.get(_normal_aor(aor), {})
        found = [b for b in table.values() if b.expires_at > now]
        return sorted(found, key=lambda b: (-b.q, -b.registered_at))

    def all(self, now: float) -> list[Binding]:
        """Every current binding, by address of record."""
        return [b for aor in sorted(self._aors) for b in self.lookup(aor, now)]

    def over_flow(self, transport: str, host: str, port: int, now: float) -> list[Binding]:
        """The current bindings whose REGISTER came from ``transport:host:port``: a request
        arriving from there comes from a registered device (over its flow)."""
        found = self._flows.get((transport, host, port), {})
        return [b for b in found.values() if b.expires_at > now]

    def next_expiry(self) -> float | None:
        return min((b.expires_at for t in self._aors.values() for b in t.values()), default=None)

    def expire(self, now: float) -> list[Binding]:
        """Forget the bindings that lapsed by ``now``; returns them (for the store)."""
        gone: list[Binding] = []
        for aor in list(self._aors):
            table = self._aors[aor]
            for key, binding in list(table.items()):
                if binding.expires_at <= now:
                    gone.append(table.pop(key))
                    self._unindex(binding)
            if not table:
                del self._aors[aor]
        return gone

    def apply(self, saved: Iterable[Binding] = (), removed: Iterable[tuple[str, str]] = ()) -> None:
        """Take bindings another registrar changed (read back from a shared store): ``saved``
        replace ours of the same address of record and key, ``removed`` (``(aor, key)``
        pairs) go. Changes only what they name, so that following another registrar costs
        what it changed, not what we hold; a new key beyond the policy's bound for its address
        of record is left out, as at construction."""
        for aor, key in removed:
            table = self._aors.get(aor)
            old = table.pop(key, None) if table is not None else None
            if old is not None:
                self._unindex(old)
            if table is not None and not table:
                del self._aors[aor]
        for binding in saved:
            table = self._aors.setdefault(binding.aor, {})
            old = table.get(binding.key)
            if old is None and len(table) >= self.policy.max_bindings:
                continue
            if old is not None:
                self._unindex(old)
            table[binding.key] = binding
            self._index(binding)

    # --- REGISTER ------------------------------------------------------------------------

    def register(
        self,
        request: SipRequest,
        *,
        domain: str,
        user: str | None,
        source: Address,
        now: float,
    ) -> RegisterResult:
        """Apply one REGISTER for ``domain`` (the Request-URI's, already known to be ours)
        whose credentials proved ``user`` (None: not authenticated, always refused)."""
        try:
            return self._register(request, domain.lower().rstrip("."), user, source, now)
        except RemoteProtocolError as exc:  # a header that does not parse in depth (§8.2)
            return _refuse(400, str(exc))

    def _register(
        self, request: SipRequest, domain: str, user: str | None, source: Address, now: float
    ) -> RegisterResult:
        # §10.3 step 5: the address of record is To's; it must belong to the Request-URI's
        # domain (404 otherwise).
        to = parse_uri(request.to.uri)
        if to.bare_host.lower().rstrip(".") != domain or not to.user:
            return _refuse(404, f"To: not an address of record of {domain}")
        aor = _normal_aor(f"{to.user_unescaped}@{domain}")
        # §10.3 step 3: the authenticated user may change only its own bindings.
        if user is None or user != to.user_unescaped:
            return _refuse(403, "the credentials are not those of the address of record")
        contacts = request.contacts
        policy = self.policy
        table = {k: b for k, b in self._aors.get(aor, {}).items() if b.expires_at > now}
        lapsed = [b for k, b in self._aors.get(aor, {}).items() if k not in table]
        if not contacts:  # §10.3 step 8 for a query: the current bindings, nothing changed
            return self._ok(aor, table, now, (), tuple(lapsed))
        header = request.headers.get("Expires")
        header_expires = None
        if header is not None:
            header_expires = parse_digits(header.strip(), 2**32 - 1)
            if header_expires is None:
                return _refuse(400, "Expires: not a number of seconds")
        call_id, cseq = request.call_id, request.cseq.seq
        if any(c.is_wildcard for c in contacts):  # §10.3 step 6
            if len(contacts) != 1 or header_expires != 0:
                return _refuse(400, "Contact: * needs Expires: 0 and no other Contact")
            for binding in table.values():
                if binding.call_id == call_id and cseq <= binding.cseq:
                    return _refuse(400, "CSeq: not higher than the binding's (§10.3 step 6)")
            return self._commit(aor, {}, now, (), (*table.values(), *lapsed))
        if len(contacts) > policy.max_bindings:
            return _refuse(403, f"at most {policy.max_bindings} bindings per address of record")
        parsed: list[_Parsed] = []
        for contact in contacts:
            item = self._parse_contact(contact, header_expires)
            if isinstance(item, RegisterResult):
                return item
            parsed.append(item)
        # §10.3 step 7: an expiry below our minimum is refused, whole request, with ours.
        if any(0 < p.expires < policy.min_expires for p in parsed):
            return _refuse(
                423,
                f"expiry below {policy.min_expires} seconds",
                ("Min-Expires", str(policy.min_expires)),
            )
        new = dict(table)
        saved: list[Binding] = []
        removed: list[Binding] = list(lapsed)
        for item in parsed:
            existing = new.get(item.key)
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                return _refuse(400, "CSeq: not higher than the binding's (§10.3 step 7)")
            if item.expires == 0:
                if existing is not None:
                    removed.append(new.pop(item.key))
                continue
            binding = Binding(
                aor=aor,
                contact=item.contact,
                expires_at=now + min(item.expires, policy.max_expires),
                q=item.q,
                call_id=call_id,
                cseq=cseq,
                instance=item.instance,
                reg_id=item.reg_id,
                transport=source.transport,
                source_host=source.host,
                source_port=source.port,
                registered_at=now,
                user_agent=(request.headers.get("User-Agent") or "")[:200],
            )
            new[item.key] = binding
            saved = [b for b in saved if b.key != binding.key] + [binding]
        if len(new) > policy.max_bindings:
            return _refuse(403, f"at most {policy.max_bindings} bindings per address of record")
        return self._commit(aor, new, now, tuple(saved), tuple(removed))

    def _parse_contact(
        self, contact: NameAddr, header_expires: int | None
    ) -> _Parsed | RegisterResult:
        try:
            uri = parse_uri(contact.uri)
        except CallXmlError as exc:
            return _refuse(400, f"Contact: {exc}")
        if uri.password is not None or uri.headers:
            return _refuse(400, "Contact: no password or headers in a registered URI")
        raw = contact.param("expires")
        expires: int | None
        if raw is not None:
            expires = parse_digits(raw, 2**32 - 1)
            if expires is None:
                return _refuse(400, "Contact: expires is not a number of seconds")
        else:
            expires = header_expires
        if expires is None:
            expires = self.policy.default_expires
        q = 1.0
        raw_q = contact.param("q")
        if raw_q is not None:
            parsed_q = _parse_q(raw_q)
            if parsed_q is None:
                return _refuse(400, "Contact: q must be a qvalue from 0 to 1 (§20.10)")
            q = parsed_q
        instance = contact.param("+sip.instance")
        reg_id_text = contact.param("reg-id")
        reg_id = parse_digits(reg_id_text, 2**31 - 1) if reg_id_text is not None else None
        if instance is not None:
            try:
                instance = unquote_string(instance) if instance.startswith('"') else instance
            except RemoteProtocolError:
                return _refuse(400, "Contact: +sip.instance is not a quoted string")
            if len(instance) > 256:
                return _refuse(400, "Contact: +sip.instance too long")
        if (reg_id_text is not None and reg_id is None) or (reg_id is not None and not instance):
            return _refuse(400, "Contact: reg-id needs +sip.instance (RFC 5626 §4.2)")
        return _Parsed(str(uri), expires, q, instance or None, reg_id)

    def _commit(
        self,
        aor: str,
        table: dict[str, Binding],
        now: float,
        saved: tuple[Binding, ...],
        removed: tuple[Binding, ...],
    ) -> RegisterResult:
        """§10.3: all updates take effect together, or (on any refusal above) none does."""
        kept = {b.key for b in saved}
        removed = tuple(b for b in removed if b.key not in kept)  # replaced, not removed
        for old in self._aors.get(aor, {}).values():
            self._unindex(old)
        if table:
            self._aors[aor] = table
        else:
            self._aors.pop(aor, None)
        for binding in table.values():
            self._index(binding)
        return self._ok(aor, table, now, saved, removed)

    def _ok(
        self,
        aor: str,
        table: dict[str, Binding],
        now: float,
        saved: tuple[Binding, ...],
        removed: tuple[Binding, ...],
    ) -> RegisterResult:
        """§10.3 step 8: 200 listing every current binding with its remaining expiry."""
        current = sorted(table.values(), key=lambda b: (-b.q, -b.registered_at))
        headers = [("Contact", b.contact_value(now)) for b in current]
        if any(b.outbound for b in saved):
            headers.append(("Require", "outbound"))  # RFC 5626 §6: the flow is kept
        return RegisterResult(200, headers=tuple(headers), saved=saved, removed=removed, aor=aor)


def _normal_aor(aor: str) -> str:
    user, _, domain = aor.rpartition("@")
    return f"{user}@{domain.lower().rstrip('.')}"


def _parse_q(text: str) -> float | None:
    """§25.1: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )."""
    head, _, tail = text.partition(".")
    if head not in ("0", "1") or len(tail) > 3 or (tail and not tail.isdigit()):
        return None
    value = float(text)
    return value if 0.0 <= value <= 1.0 else None


def _format_q(q: float) -> str:
    return f"{q:.3f}".rstrip("0").rstrip(".") if q != 1.0 else "1"
