"""TLS for SIP: ``ssl`` contexts and the RFC 5922 server-identity check.

This module owns how a TLS connection is set up and what makes a peer's certificate acceptable.
It knows nothing about SIP messages or sockets; the transport layer calls
:func:`client_context` / :func:`server_context` when it opens or accepts a connection and
:func:`verify_sip_identity` after the handshake.

Why our own identity check instead of ``ssl.match_hostname``: RFC 5922 differs from HTTPS
(RFC 2818/6125) in two ways that matter here:

* subjectAltName entries of type URI with the ``sip:`` scheme and no user part are identities
  (RFC 5922 §7.1 step 1), and a URI of any other scheme is not;
* wildcard certificates MUST NOT match (RFC 5922 §7.2). We make that configurable
  (:attr:`TlsConfig.allow_wildcards`) because some carriers ship ``*.example.com`` anyway.

The ``ssl`` module still verifies the chain (``CERT_REQUIRED``) against the system store or a
custom CA bundle; only the name check is ours, so ``check_hostname`` is switched off.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from callxml.errors import ConfigError, TransportError

__all__ = [
    "TlsConfig",
    "certificate_identities",
    "client_context",
    "server_context",
    "verify_sip_identity",
]


@dataclass(frozen=True)
class TlsConfig:
    """How we speak TLS, as a client and as a server.

    ``ca_file`` / ``ca_data`` (PEM) replace the system trust store when given (appliances ship
    their own CA). ``cert_file`` + ``key_file`` are our certificate chain: required for a TLS
    listener, optional for a client (mutual TLS). ``verify`` = False disables chain *and*
    identity checks (tests and lab setups only). ``require_client_cert`` makes a listener ask
    for and verify a client certificate against the same CA settings.
    """

    ca_file: str | None = None
    ca_data: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = None
    verify: bool = True
    allow_wildcards: bool = False
    require_client_cert: bool = False
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2


def _load_trust(ctx: ssl.SSLContext, config: TlsConfig) -> None:
    try:
        if config.ca_file is not None or config.ca_data is not None:
            ctx.load_verify_locations(cafile=config.ca_file, cadata=config.ca_data)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls.ca_file: cannot load CA bundle: {exc}") from exc


def _load_chain(ctx: ssl.SSLContext, config: TlsConfig) -> None:
    if config.cert_file is None:
        return
    try:
        ctx.load_cert_chain(config.cert_file, config.key_file, password=config.key_password)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls.cert_file: cannot load certificate/key: {exc}") from exc


def client_context(config: TlsConfig) -> ssl.SSLContext:
    """An ``SSLContext`` for outgoing connections.

    The chain is verified by ``ssl`` (``CERT_REQUIRED``); the host name is checked afterwards by
    :func:`verify_sip_identity` (RFC 5922 §7), so ``check_hostname`` stays off. SNI is still sent:
    the transport passes ``server_hostname`` (RFC 5922 §7.2 relies on the server picking the
    certificate for the requested domain).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = config.minimum_version
    ctx.check_hostname = False
    if config.verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        _load_trust(ctx, config)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if config.cert_file is not None and config.key_file is None:
        raise ConfigError("tls.key_file: a client certificate needs its key")
    _load_chain(ctx, config)
    return ctx


def server_context(config: TlsConfig) -> ssl.SSLContext:
    """An ``SSLContext`` for a TLS listener; needs ``cert_file`` (and ``key_file`` unless the
    key is in the same PEM file)."""
    if config.cert_file is None:
        raise ConfigError("tls.cert_file: a TLS listener needs a certificate")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = config.minimum_version
    _load_chain(ctx, config)
    if config.require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        _load_trust(ctx, config)
    return ctx


def certificate_identities(der: bytes) -> tuple[frozenset[str], frozenset[str]]:
    """The SIP domain identities of a DER certificate per RFC 5922 §7.1, lower-cased.

    Returns ``(domains, ip_addresses)``. Domains come from subjectAltName ``sip:`` URIs without a
    user part and from dNSName entries; only when the certificate has no subjectAltName at all is
    the subject Common Name used (§7.1 step 2). iPAddress entries are returned separately; they
    are not RFC 5922 identities but are how a certificate names a target given as an IP literal.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise TransportError(f"TLS peer certificate cannot be parsed: {exc}") from exc
    domains: set[str] = set()
    addresses: set[str] = set()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            if isinstance(attr.value, str):
                domains.add(attr.value.lower())
        return frozenset(domains), frozenset()
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        host = _sip_uri_domain(uri)
        if host is not None:
            domains.add(host)
    for name in san.get_values_for_type(x509.DNSName):
        domains.add(name.lower().rstrip("."))
    for ip in san.get_values_for_type(x509.IPAddress):
        addresses.add(str(ip))
    return frozenset(domains), frozenset(addresses)


def _sip_uri_domain(uri: str) -> str | None:
    """The host of ``sip:host[:port][;params]`` with no user part, else None (§7.1 step 1)."""
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() != "sip" or "@" in rest:
        return None  # §7.1 1.B: other schemes (sips:, http:) are not identities; user part => user
    host = rest.split(";", 1)[0].split("?", 1)[0]
    if host.startswith("["):
        return None
    host = host.split(":", 1)[0]
    return host.lower().rstrip(".") or None


def _wildcard_match(pattern: str, host: str) -> bool:
    """``*.example.com`` matches exactly one leftmost label (``a.example.com``)."""
    if not pattern.startswith("*.") or "*" in pattern[2:]:
        return False
    first, dot, rest = host.partition(".")
    return bool(first) and bool(dot) and rest == pattern[2:]


def verify_sip_identity(der: bytes | None, target: str, *, allow_wildcards: bool = False) -> None:
    """Check that the peer certificate ``der`` names ``target`` (RFC 5922 §7.2).

    ``target`` is the host we meant to reach: the domain of the Request-URI (or of the
    outbound proxy), not the address DNS resolved it to. A match is an exact, case-insensitive
    comparison; wildcards only match when ``allow_wildcards`` is set. An IP literal target
    matches an iPAddress subjectAltName. Raises :class:`TransportError` on any mismatch.
    """
    if der is None:
        raise TransportError(f"TLS peer {target} presented no certificate")
    domains, addresses = certificate_identities(der)
    wanted = target.strip("[]").lower().rstrip(".")
    try:
        literal = str(ipaddress.ip_address(wanted))
    except ValueError:
        literal = None
    if literal is not None:
        matched = literal in addresses
    else:
        matched = wanted in domains or (
            allow_wildcards and any(_wildcard_match(d, wanted) for d in domains)
        )
    if matched:
        return
    names = sorted(domains | addresses) or ["<none>"]
    hint = ""
    if literal is None and any(d.startswith("*.") for d in domains) and not allow_wildcards:
        hint = " (wildcard certificates are refused, RFC 5922 §7.2)"
    raise TransportError(
        f"TLS certificate does not match {target!r}: it names {', '.join(names)}{hint}"
    )
