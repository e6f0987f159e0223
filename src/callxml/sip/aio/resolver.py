"""Resolving a SIP next hop's host name to addresses (the DNS half of RFC 3263 §4).

Which transport, host and port a URI asks for is decided once, without DNS, by
:mod:`callxml.sip.target`; this module owns the step after it: turning the host of that next hop
into IP literals to try, in order. DNS itself sits behind the small :class:`HostResolver` seam
so tests can map names like ``sip.example.test`` to loopback without touching the system
resolver. IPv4 and IPv6 literals are used as they are; names go through the resolver (A/AAAA).

The TLS identity checked later (RFC 5922 §7.2) is always the URI's own host, never an address
this module returns: each result keeps the target's :attr:`Address.server_name`. It knows
nothing about sockets or messages.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping, Sequence
from typing import Protocol

from callxml.errors import TransportError
from callxml.sip.events import Address
from callxml.sip.target import DEFAULT_PORTS

__all__ = [
    "HostResolver",
    "StaticResolver",
    "SystemResolver",
    "is_ip_literal",
    "resolve_target",
]

_TRANSPORTS = frozenset(DEFAULT_PORTS)
#: At most this many addresses are tried for one name (a bound, not an RFC rule).
MAX_ADDRESSES = 8


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class HostResolver(Protocol):
    """The DNS seam: names to IP literals (A/AAAA), in preference order."""

    async def lookup(self, host: str, port: int, transport: str) -> list[str]: ...


class SystemResolver:
    """Uses the event loop's ``getaddrinfo`` (the system resolver, /etc/hosts included)."""

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


class StaticResolver:
    """A fixed name → addresses table, for tests and for static peer configuration.

    Names not in the table fall through to ``fallback`` when given, else fail.
    """

    def __init__(
        self,
        table: Mapping[str, str | Sequence[str]],
        fallback: HostResolver | None = None,
    ) -> None:
        self._table = {
            name.lower(): [value] if isinstance(value, str) else list(value)
            for name, value in table.items()
        }
        self._fallback = fallback

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
