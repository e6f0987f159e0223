"""Where and how to call one SIP URI: the dial target, worked out once from what the author wrote.

A ``<Sip>`` noun, a REST ``To`` and ``callxml call``'s argument are all text such as
``sip:jack@example.com;secure=true?X-Account=42``. This module turns that text into a
:class:`Target` once, so that no layer below re-derives security or routing from the string:

* **transport** — ``sips:`` or ``;secure=true`` → TLS; else the ``transport`` parameter; else
  UDP (RFC 3263 §4.1, without NAPTR);
* **next hop** — the ``maddr`` parameter or the host, the explicit port or 5060/5061 (RFC 3263
  §4.2, without SRV); the TLS identity to check is the URI's own host, never the ``maddr`` or a
  resolved address (RFC 5922 §7.2);
* **media policy** — a secure target requires SRTP (the SDP layer builds the offer from
  :attr:`Target.secure`); :attr:`Target.media_encryption` ``"zrtp"`` (the callxml extension
  ``<Sip mediaEncryption="zrtp">``, :meth:`Target.with_media_encryption`) keys the media with
  ZRTP in band instead of SDES, whatever the transport;
* **Request-URI** — without our own ``secure`` instruction (it is not the callee's business)
  and without ``?headers``, which go into the request instead (RFC 3261 §19.1.5); a secure
  ``sip:`` target carries ``;transport=tls`` so that proxies on the way keep it on TLS;
* **headers** — the URI headers allowed into the INVITE: ``X-`` headers only, as Twilio passes
  them. Anything else (``Call-ID``, ``Via``, ``P-Asserted-Identity``...) could let a tenant's
  document forge what the engine vouches for, so it is dropped with a warning.

Pure code: no DNS and no sockets. Host names in :attr:`Target.next_hop` are resolved by the
transport layer (``callxml.sip.aio.resolver``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import unquote

from callxml.errors import TransportError
from callxml.sip.events import Address
from callxml.sip.headers import is_token
from callxml.sip.uri import InvalidUri, SipUri, parse_uri

#: What ``<Sip mediaEncryption>`` may say (a callxml extension): ``sdes`` is the default rule
#: (SDES exactly when ``secure=true``), ``zrtp`` keys the media in band (RFC 6189).
MEDIA_ENCRYPTIONS = ("sdes", "zrtp")

__all__ = ["DEFAULT_PORTS", "MAX_URI_HEADERS", "Target", "client_headers", "next_hop"]

#: RFC 3261 §19.1.2: 5060 for sip over UDP/TCP, 5061 for TLS.
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
#: Most URI ``?headers`` copied into one INVITE (a bound, not an RFC rule).
MAX_URI_HEADERS = 16
#: Longest ``<Client><Parameter>`` value sent as a header (a bound).
MAX_PARAMETER_VALUE = 256


def next_hop(uri: SipUri | str) -> Address:
    """Where a request for ``uri`` goes: transport, ``maddr`` or host, port (RFC 3263 §4.1/§4.2
    without DNS). ``server_name`` is the URI's own host, the identity TLS must prove."""
    if isinstance(uri, str):
        uri = parse_uri(uri)
    transport = uri.transport
    if transport not in DEFAULT_PORTS:  # SipUri.transport only yields these; a guard for edits
        raise TransportError(f"unsupported SIP transport {transport!r}")
    host = (uri.param("maddr") or uri.host).strip("[]")
    port = uri.port if uri.port is not None else DEFAULT_PORTS[transport]
    return Address(transport, host, port, server_name=uri.bare_host)


@dataclass(frozen=True, slots=True)
class Target:
    """A SIP URI to call, with everything the layers below need, computed once.

    ``uri`` is the URI as written; ``request_uri`` what goes on the request line; ``next_hop``
    where the INVITE is sent without DNS, and ``hop`` the URI it comes from — the target's own,
    or an outbound proxy's (:meth:`via`) — which RFC 3263 locates when DNS is used; ``secure`` that
    signalling goes over TLS and media must be SRTP; ``headers`` the URI headers to add to the
    INVITE (unescaped); ``warnings`` what the author should know (``secure=maybe`` taken as
    false, headers dropped).
    """

    uri: SipUri
    request_uri: SipUri
    next_hop: Address
    hop: SipUri
    secure: bool
    headers: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()
    media_encryption: str | None = None
    srtp_suites: tuple[str, ...] = ()

    @classmethod
    def parse(cls, uri: SipUri | str) -> Target:
        """The target for ``uri``; raises :class:`~callxml.sip.uri.InvalidUri` for bad text."""
        if isinstance(uri, str):
            uri = parse_uri(uri)
        warnings = list(uri.warnings)
        headers: list[tuple[str, str]] = []
        for name, value in uri.headers:
            name = unquote(name)
            if not name.lower().startswith("x-"):
                warnings.append(f"URI header {name!r} is not sent (only X- headers are)")
            elif len(headers) == MAX_URI_HEADERS:
                warnings.append(f"URI header {name!r} is not sent (at most {MAX_URI_HEADERS})")
            else:
                headers.append((name, unquote(value)))
        params = [(k, v) for k, v in uri.params if k.lower() != "secure"]
        if uri.secure and uri.scheme == "sip":
            # A proxy downstream routes on the Request-URI: without ``transport=tls`` it would
            # forward our secure call over UDP (RFC 3261 §19.1.4; sips: says it by itself).
            params = [(k, v) for k, v in params if k.lower() != "transport"]
            params.append(("transport", "tls"))
        request_uri = replace(uri, params=tuple(params), headers=(), password=None, warnings=())
        return cls(
            uri=uri,
            request_uri=request_uri,
            next_hop=next_hop(uri),
            hop=uri,
            secure=uri.secure,
            headers=tuple(headers),
            warnings=tuple(warnings),
        )

    def with_media_encryption(self, value: str | None) -> Target:
        """This target with its media keyed by ``value``: ``"zrtp"`` (RFC 6189, in band, no
        ``a=crypto`` even over TLS), ``"sdes"`` or None (SDES exactly when :attr:`secure`)."""
        if value not in MEDIA_ENCRYPTIONS:
            raise InvalidUri(f"mediaEncryption must be one of {', '.join(MEDIA_ENCRYPTIONS)}")
        return replace(self, media_encryption=None if value == "sdes" else value)

    def with_srtp_suites(self, names: Sequence[str]) -> Target:
        """This target offering these SDES suites, in this order, when it is secure (the callxml
        extension ``<Sip srtpSuites>``); empty: exactly ``AES_CM_128_HMAC_SHA1_80``. Names are
        checked where offers are built (:func:`callxml.sdp.policy.check_suites`)."""
        return replace(self, srtp_suites=tuple(n.strip().upper() for n in names if n.strip()))

    @property
    def zrtp(self) -> bool:
        """The media is keyed by ZRTP (the offer is RTP/AVP with ``a=zrtp-hash``)."""
        return self.media_encryption == "zrtp"

    @property
    def transport(self) -> str:
        """``udp``, ``tcp`` or ``tls``: how the INVITE travels to the next hop."""
        return self.next_hop.transport

    def via(self, proxy: SipUri | str) -> Target:
        """This target reached through an outbound proxy (RFC 3261 §8.1.2).

        The Request-URI stays the target's, so a domain-routed server sees its domain. A secure
        target still goes over TLS (5061 unless the proxy URI names a port) and the proxy's host
        becomes the identity TLS checks; otherwise the proxy URI's ``transport`` parameter, or
        the target's transport when it has none.
        """
        hop = parse_uri(proxy) if isinstance(proxy, str) else proxy
        if self.secure:
            hop = hop.with_params(secure="true")
        elif not hop.has_param("transport"):
            hop = hop.with_params(transport=self.transport)
        return replace(self, next_hop=next_hop(hop), hop=hop)

    def __str__(self) -> str:
        """The URI for logs: no password, no headers."""
        return str(replace(self.uri, password=None, headers=()))


def client_headers(
    identity: str, parameters: Sequence[tuple[str, str]]
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """The headers an INVITE to a ``<Client>`` carries, as Twilio hands them to its clients:
    ``X-Identity`` (the identity dialled), then ``X-<name>`` for each ``<Parameter name value>``
    (a name already starting with ``X-`` is kept), and the warnings for what was left out: a
    name that is not a header token, a value with control characters or longer than
    :data:`MAX_PARAMETER_VALUE`, more than :data:`MAX_URI_HEADERS` headers. Only ``X-``
    headers, for the reason :class:`Target` gives."""
    headers: list[tuple[str, str]] = [("X-Identity", identity)]
    warnings: list[str] = []
    for name, value in parameters:
        header = name if name.lower().startswith("x-") else f"X-{name}"
        if not is_token(header) or any(not c.isprintable() for c in value):
            warnings.append(f"<Parameter name={name!r}> is not a valid SIP header; not sent")
        elif len(value) > MAX_PARAMETER_VALUE:
            warnings.append(
                f"<Parameter name={name!r}> not sent (over {MAX_PARAMETER_VALUE} characters)"
            )
        elif len(headers) > MAX_URI_HEADERS:
            warnings.append(f"<Parameter name={name!r}> not sent (at most {MAX_URI_HEADERS})")
        else:
            headers.append((header, value))
    return tuple(headers), tuple(warnings)
