"""Which addresses an engine may fetch from: the guard against server-side request forgery.

Webhook, ``<Play>``, ``<Redirect>`` and status-callback URLs are written by tenants. Fetched
blindly, ``http://169.254.169.254/`` reads a cloud's instance credentials and ``http://10.0.0.5/``
probes the operator's network. :class:`NetworkPolicy` decides per IP address; the check is made
by :class:`GuardedConnector` on the addresses a connection is actually opened to, *after* DNS
(so a name that resolves, or later re-resolves, to a refused address is refused: no DNS-rebinding
bypass) and for every redirect hop (each hop opens its own connection through the connector).

The rules, in order: an address inside ``allow`` networks is allowed; inside ``deny`` networks,
refused; link-local (169.254.0.0/16, fe80::/10) and known cloud metadata addresses are always
refused; with ``multi_tenant`` so are loopback, private (RFC 1918), shared (100.64.0.0/10),
unique-local (fc00::/7), unspecified, multicast and reserved addresses. Everything else is
allowed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

__all__ = ["ALWAYS_DENIED", "GuardedConnector", "NetworkPolicy", "NetworkRefused", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Refused whatever the configuration says, unless listed in ``allow``: link-local ranges (where
#: every major cloud serves instance metadata) and the metadata addresses outside them.
ALWAYS_DENIED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "169.254.0.0/16",  # IPv4 link-local, incl. 169.254.169.254 (AWS, GCP, Azure, OpenStack)
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
    )
)


class NetworkRefused(OSError):
    """A connection refused by the :class:`NetworkPolicy` (an OSError, as aiohttp expects of a
    failed resolution, so it fails the fetch like any unreachable host)."""


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "2001:db8::1"]`` as networks; raises ValueError for a bad one."""
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def _address(text: str) -> Address:
    address = ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


@dataclass(frozen=True)
class NetworkPolicy:
    """Which addresses fetches may connect to (see the module docstring for the rules)."""

    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()
    multi_tenant: bool = False

    def refusal(self, host: str) -> str | None:
        """Why a connection to the IP address ``host`` is refused, or None when allowed."""
        try:
            address = _address(host)
        except ValueError:
            return f"{host!r} is not an IP address"
        if any(address in net for net in self.allow if net.version == address.version):
            return None
        for net in (*self.deny, *ALWAYS_DENIED):
            if net.version == address.version and address in net:
                return f"{address} is in the refused network {net}"
        if self.multi_tenant and (
            address.is_loopback
            or address.is_private
            or address.is_unspecified
            or address.is_multicast
            or address.is_reserved
            or address in _SHARED
        ):
            return f"{address} is a loopback, private or reserved address (multi_tenant)"
        return None


_SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT


class GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector that opens connections only to addresses its policy allows.

    It filters what name resolution returns (IP-literal URLs included), so the check is on
    the addresses connected to; a host left with none fails with :class:`NetworkRefused`.
    """

    def __init__(self, policy: NetworkPolicy, **options: Any) -> None:
        super().__init__(**options)
        self.policy = policy

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> list[Any]:
        found = await super()._resolve_host(host, port, traces=traces)
        allowed = [entry for entry in found if self.policy.refusal(entry["host"]) is None]
        if not allowed:
            why = self.policy.refusal(found[0]["host"]) if found else "no address"
            raise NetworkRefused(f"refused by the webhooks network policy: {host}: {why}")
        return allowed
