"""Locating a SIP server (RFC 3263 §4): from the next hop's URI to the addresses to try, in order.

Which transport, host and port a URI asks for *without* DNS is decided once by
:mod:`callxml.sip.target`; this module owns the DNS half:

* a numeric host or an explicit port: the URI's transport, A/AAAA for a name;
* a known transport (``;transport=``, ``sips:`` or our ``;secure=true``) but no port: SRV for that
  transport (``_sips._tcp`` then the older ``_sip._tls`` for TLS, ``_sip._tcp``, ``_sip._udp``),
  ordered by priority and weight (RFC 2782), then A/AAAA per target;
* neither: NAPTR (RFC 3403) picks the transport — ``SIPS+D2T``, ``SIP+D2T``, ``SIP+D2U``, only
  ``SIPS+D2T`` for a secure URI — in order/preference, each through its SRV; without NAPTR, SRV
  for each transport we support; without SRV, A/AAAA with the default port and transport.

The TLS identity checked later (RFC 5922 §7.2) is always the URI's own domain, never an SRV
target or an address: every result keeps it as :attr:`Address.server_name`. DNS sits behind the
:class:`HostResolver` seam (A/AAAA) and :class:`ServiceResolver` (NAPTR/SRV): the system
resolver by default, :class:`DnsResolver` for configured servers (a maintained library,
dnspython, does the wire format), :class:`StaticResolver` for tests and static peers. Every
lookup is bounded in time and in the number of records kept. It knows nothing about sockets or
messages.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import dns.asyncresolver
import dns.exception
import dns.resolver

from callxml.errors import TransportError
from callxml.sip.events import Address
from callxml.sip.target import DEFAULT_PORTS
from callxml.sip.uri import SipUri

__all__ = [
    "DnsResolver",
    "HostResolver",
    "Naptr",
    "ServiceResolver",
    "Srv",
    "StaticResolver",
    "SystemResolver",
    "is_ip_literal",
    "locate",
    "order_srv",
    "resolve_target",
]

_TRANSPORTS = frozenset(DEFAULT_PORTS)
#: At most this many addresses are tried for one name (a bound, not an RFC rule).
MAX_ADDRESSES = 8
#: At most this many candidates one :func:`locate` returns, and records kept per lookup.
MAX_CANDIDATES = 16
MAX_RECORDS = 16
#: Seconds one DNS lookup may take (all retries and servers included).
DNS_TIMEOUT = 5.0
#: NAPTR services (RFC 3263 §4.1) → our transport; SCTP is not offered.
NAPTR_SERVICES = {"SIPS+D2T": "tls", "SIP+D2T": "tcp", "SIP+D2U": "udp"}
#: SRV owner-name prefixes per transport, in the order they are tried (``_sip._tls`` is the
#: pre-RFC 3263 spelling some carriers still publish).
SRV_PREFIXES = {"tls": ("_sips._tcp", "_sip._tls"), "tcp": ("_sip._tcp",), "udp": ("_sip._udp",)}
#: Transports tried, in our preference order, when a domain publishes no NAPTR.
PLAIN_PREFERENCE = ("udp", "tcp")
SECURE_PREFERENCE = ("tls",)


@dataclass(frozen=True, slots=True)
class Naptr:
    """One NAPTR record (RFC 3403 §4.1), as far as SIP uses it."""

    order: int
    preference: int
    flags: str
    service: str
    replacement: str


@dataclass(frozen=True, slots=True)
class Srv:
    """One SRV record (RFC 2782)."""

    priority: int
    weight: int
    port: int
    target: str


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class HostResolver(Protocol):
    """The DNS seam: names to IP literals (A/AAAA), in preference order."""

    async def lookup(self, host: str, port: int, transport: str) -> list[str]: ...


@runtime_checkable
class ServiceResolver(Protocol):
    """The NAPTR/SRV half of the seam; a resolver without it is used for A/AAAA only.

    Both return ``[]`` when the name has no such records (NXDOMAIN, no answer, a server
    failure or a timeout: RFC 3263 then falls back to the next step).
    """

    async def naptr(self, domain: str) -> list[Naptr]: ...

    async def srv(self, name: str) -> list[Srv]: ...


class _DnsLookups:
    """NAPTR, SRV (and A/AAAA) through dnspython's asyncio resolver, every lookup bounded."""

    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        resolver.lifetime = DNS_TIMEOUT
        self._resolver = resolver

    async def _query(self, name: str, kind: str) -> list[Any]:
        try:
            answer = await self._resolver.resolve(name, kind, search=False)
        except (dns.exception.DNSException, OSError, ValueError):
            return []  # no such name or record, refused, timed out: the next RFC 3263 step
        return list(answer)[:MAX_RECORDS]

    async def naptr(self, domain: str) -> list[Naptr]:
        return [
            Naptr(
                int(r.order),
                int(r.preference),
                r.flags.decode(errors="replace"),
                r.service.decode(errors="replace"),
                r.replacement.to_text(omit_final_dot=True),
            )
            for r in await self._query(domain, "NAPTR")
        ]

    async def srv(self, name: str) -> list[Srv]:
        return [
            Srv(int(r.priority), int(r.weight), int(r.port), r.target.to_text(omit_final_dot=True))
            for r in await self._query(name, "SRV")
        ]

    async def addresses(self, host: str) -> list[str]:
        found: list[str] = []
        for kind in ("A", "AAAA"):
            found += [r.to_text() for r in await self._query(host, kind)]
        return found


class SystemResolver:
    """The system's resolvers: the loop's ``getaddrinfo`` for A/AAAA (so /etc/hosts works) and
    the servers of /etc/resolv.conf, through dnspython, for NAPTR and SRV."""

    def __init__(self) -> None:
        self._dns: _DnsLookups | None = None

    def _service_lookups(self) -> _DnsLookups | None:
        if self._dns is None:
            try:
                self._dns = _DnsLookups(dns.asyncresolver.Resolver())
            except (dns.exception.DNSException, OSError):
                return None  # no usable resolv.conf: names resolve through getaddrinfo only
        return self._dns

    async def naptr(self, domain: str) -> list[Naptr]:
        lookups = self._service_lookups()
        return await lookups.naptr(domain) if lookups is not None else []

    async def srv(self, name: str) -> list[Srv]:
        lookups = self._service_lookups()
        return await lookups.srv(name) if lookups is not None else []

    async def lookup(self, host: str, port: int, transport: str) -> list[str]:
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=kind)
        except (OSError, UnicodeError) as exc:
            raise TransportError(f"cannot resolve {host!r}: {exc}") from exc
        out: list[str] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            address = str(sockaddr[0])
            if address not in out:
                out.append(address)
        return out


class DnsResolver:
    """Configured DNS servers (``sip.dns_servers``: ``"192.0.2.53"`` or ``"127.0.0.1:5353"``)
    for every lookup, A/AAAA included; /etc/hosts is not read."""

    def __init__(self, servers: Sequence[str]) -> None:
        if not servers:
            raise TransportError("DnsResolver needs at least one server")
        resolver = dns.asyncresolver.Resolver(configure=False)
        hosts: list[str] = []
        ports: dict[str, int] = {}
        for server in servers:
            host, port = _split_server(server)
            hosts.append(host)
            ports[host] = port
        resolver.nameservers = hosts
        resolver.nameserver_ports = ports
        self._dns = _DnsLookups(resolver)

    async def lookup(self, host: str, port: int, transport: str) -> list[str]:
        found = await self._dns.addresses(host)
        if not found:
            raise TransportError(f"cannot resolve {host!r}: no A or AAAA record")
        return found

    async def naptr(self, domain: str) -> list[Naptr]:
        return await self._dns.naptr(domain)

    async def srv(self, name: str) -> list[Srv]:
        return await self._dns.srv(name)


def _split_server(server: str) -> tuple[str, int]:
    """``"192.0.2.53"``, ``"192.0.2.53:5353"``, ``"[2001:db8::53]:53"`` → (address, port)."""
    text = server.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    if not is_ip_literal(host) or not 0 < port < 65536:
        raise TransportError(f"DNS server {server!r}: give an IP address and optional port")
    return host, port


class StaticResolver:
    """A fixed name → addresses table, for tests and for static peer configuration.

    Names not in the table fall through to ``fallback`` when given, else fail.
    """

    def __init__(
        self,
        table: Mapping[str, str | Sequence[str]],
        fallback: HostResolver | None = None,
        *,
        naptr: Mapping[str, Sequence[Naptr]] | None = None,
        srv: Mapping[str, Sequence[Srv]] | None = None,
    ) -> None:
        self._table = {
            name.lower(): [value] if isinstance(value, str) else list(value)
            for name, value in table.items()
        }
        self._fallback = fallback
        self._naptr = {k.lower(): list(v) for k, v in (naptr or {}).items()}
        self._srv = {k.lower(): list(v) for k, v in (srv or {}).items()}

    async def naptr(self, domain: str) -> list[Naptr]:
        return list(self._naptr.get(domain.lower().rstrip("."), []))

    async def srv(self, name: str) -> list[Srv]:
        return list(self._srv.get(name.lower().rstrip("."), []))

    async def lookup(self, host: str, port: int, transport: str) -> list[str]:
        found = self._table.get(host.lower().rstrip("."))
        if found is not None:
            return list(found)
        if self._fallback is not None:
            return await self._fallback.lookup(host, port, transport)
        raise TransportError(f"cannot resolve {host!r}: not in the static table")


async def resolve_target(target: Address, resolver: HostResolver) -> list[Address]:
    """The IP-literal addresses to try for ``target``, in order.

    Each keeps ``server_name`` (defaulting to the target's host name), so the TLS identity check
    sees the name, not the address. Raises TransportError when there are none.
    """
    if target.transport not in _TRANSPORTS:
        raise TransportError(f"unsupported SIP transport {target.transport!r}")
    if not 0 < target.port < 65536:
        raise TransportError(f"port {target.port} out of range")
    name = target.server_name or target.host.strip("[]")
    if is_ip_literal(target.host):
        host = str(ipaddress.ip_address(target.host.strip("[]")))
        return [Address(target.transport, host, target.port, name)]
    addresses = await resolver.lookup(target.host, target.port, target.transport)
    if not addresses:
        raise TransportError(f"cannot resolve {target.host!r}: no addresses")
    return [
        Address(target.transport, address, target.port, name)
        for address in addresses[:MAX_ADDRESSES]
    ]


def order_srv(records: Sequence[Srv], rand: Callable[[int], int] | None = None) -> list[Srv]:
    """RFC 2782 order: ascending priority; within a priority, a weighted random permutation
    (weight 0 records first among equals, each pick with probability weight / remaining sum).
    ``rand(n)`` returns an integer in ``[0, n]``; tests pass a fixed one."""
    pick = rand or (lambda n: random.randint(0, n))
    ordered: list[Srv] = []
    for priority in sorted({r.priority for r in records}):
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight)
        while group:
            total = sum(r.weight for r in group)
            chosen = pick(total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= chosen:
                    ordered.append(group.pop(index))
                    break
    return ordered


async def locate(
    uri: SipUri, resolver: HostResolver, *, rand: Callable[[int], int] | None = None
) -> list[Address]:
    """The addresses to try for a request to ``uri`` (the next hop's URI), in order (RFC 3263).

    Raises :class:`TransportError` when there are none, naming the name that failed.
    """
    host = (uri.param("maddr") or uri.host).strip("[]")
    name = uri.bare_host
    secure = uri.secure  # sips: or our ;secure=true: TLS only, whatever DNS offers
    param = (uri.param("transport") or "").lower()
    fixed = "tls" if secure else (param if param in _TRANSPORTS else None)
    services = resolver if isinstance(resolver, ServiceResolver) else None
    if is_ip_literal(host) or uri.port is not None or services is None:
        transport = fixed or "udp"
        port = uri.port or DEFAULT_PORTS[transport]
        return await resolve_target(Address(transport, host, port, name), resolver)
    plan: list[tuple[str, list[Srv]]] = []  # (transport, SRV records in order)
    if param not in _TRANSPORTS or secure:  # an explicit transport skips NAPTR (§4.1)
        for naptr in await _usable_naptr(services, host, secure=secure):
            records = await services.srv(naptr.replacement)
            if records:
                plan.append((NAPTR_SERVICES[naptr.service.upper()], order_srv(records, rand)))
    if not plan:
        preference = (fixed,) if fixed is not None else PLAIN_PREFERENCE
        for transport in preference:
            for prefix in SRV_PREFIXES[transport]:
                records = await services.srv(f"{prefix}.{host}")
                if records:
                    plan.append((transport, order_srv(records, rand)))
                    break
    if not plan:  # no NAPTR, no SRV: the host itself (RFC 3263 §4.2)
        transport = fixed or "udp"
        target = Address(transport, host, DEFAULT_PORTS[transport], name)
        return await resolve_target(target, resolver)
    candidates: list[Address] = []
    errors: list[str] = []
    for transport, records in plan:
        for record in records:
            if record.target in ("", ".") or not 0 < record.port < 65536:
                continue  # "." means the service is decidedly not available (RFC 2782)
            try:
                found = await resolve_target(
                    Address(transport, record.target, record.port, name), resolver
                )
            except TransportError as exc:
                errors.append(str(exc))
                continue
            candidates += [c for c in found if c not in candidates]
            if len(candidates) >= MAX_CANDIDATES:
                return candidates[:MAX_CANDIDATES]
    if not candidates:
        raise TransportError(f"cannot locate {name!r}: " + ("; ".join(errors) or "no targets"))
    return candidates


async def _usable_naptr(services: ServiceResolver, domain: str, *, secure: bool) -> list[Naptr]:
    """NAPTR records for SIP transports we support, in order/preference (RFC 3403 §4.1)."""
    usable = [
        r
        for r in await services.naptr(domain)
        if r.flags.lower() == "s"
        and r.service.upper() in NAPTR_SERVICES
        and (not secure or NAPTR_SERVICES[r.service.upper()] == "tls")
    ]
    return sorted(usable, key=lambda r: (r.order, r.preference))
