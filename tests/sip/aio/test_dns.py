"""RFC 3263 server location against a real DNS server (dnsmasq on loopback) with dnspython."""

from __future__ import annotations

from pathlib import Path

import pytest

from callxml.errors import TransportError
from callxml.sip.aio.resolver import DnsResolver, Naptr, Srv, locate
from callxml.sip.events import Address
from callxml.sip.uri import parse_uri
from support.dns import DnsRecords, dns_server

pytestmark = pytest.mark.peer


def _records() -> DnsRecords:
    records = DnsRecords("pbx.test")
    records.add_naptr("pbx.test", 10, 50, "SIPS+D2T", "_sips._tcp.pbx.test")
    records.add_naptr("pbx.test", 20, 50, "SIP+D2U", "_sip._udp.pbx.test")
    records.add_srv("_sips._tcp.pbx.test", "down.pbx.test", 5999, 10)
    records.add_srv("_sips._tcp.pbx.test", "up.pbx.test", 6001, 20)
    records.add_srv("_sip._udp.pbx.test", "up.pbx.test", 6000, 10)
    records.add_srv("_sip._tcp.plain.pbx.test", "up.pbx.test", 6002, 10)
    records.add_host("down.pbx.test", "127.0.0.2")
    records.add_host("up.pbx.test", "127.0.0.3")
    records.add_host("bare.pbx.test", "127.0.0.4")
    return records


async def test_dns_resolver_reads_naptr_srv_and_a_records(tmp_path: Path) -> None:
    async with dns_server(_records(), tmp_path) as server:
        resolver = DnsResolver([server])
        naptr = sorted(await resolver.naptr("pbx.test"), key=lambda r: r.order)
        assert naptr == [
            Naptr(10, 50, "s", "SIPS+D2T", "_sips._tcp.pbx.test"),
            Naptr(20, 50, "s", "SIP+D2U", "_sip._udp.pbx.test"),
        ]
        assert sorted(await resolver.srv("_sips._tcp.pbx.test"), key=lambda r: r.priority) == [
            Srv(10, 0, 5999, "down.pbx.test"),
            Srv(20, 0, 6001, "up.pbx.test"),
        ]
        assert await resolver.lookup("up.pbx.test", 5060, "udp") == ["127.0.0.3"]
        assert await resolver.naptr("nothing.pbx.test") == []  # NXDOMAIN: the next step
        with pytest.raises(TransportError, match="no A or AAAA"):
            await resolver.lookup("nothing.pbx.test", 5060, "udp")


async def test_locate_follows_naptr_then_srv_in_priority_order(tmp_path: Path) -> None:
    async with dns_server(_records(), tmp_path) as server:
        resolver = DnsResolver([server])
        # NAPTR order 10 (SIPS+D2T) beats order 20 (SIP+D2U); SRV priority orders the targets;
        # the TLS identity stays the URI's domain (RFC 5922), never the SRV target's name.
        assert await locate(parse_uri("sip:jack@pbx.test"), resolver) == [
            Address("tls", "127.0.0.2", 5999, "pbx.test"),
            Address("tls", "127.0.0.3", 6001, "pbx.test"),
            Address("udp", "127.0.0.3", 6000, "pbx.test"),
        ]
        # secure: only TLS services count
        assert [a.transport for a in await locate(parse_uri("sips:jack@pbx.test"), resolver)] == [
            "tls",
            "tls",
        ]
        # an explicit transport skips NAPTR (RFC 3263 §4.1) and asks SRV for that transport
        tcp = await locate(parse_uri("sip:jack@plain.pbx.test;transport=tcp"), resolver)
        assert tcp == [Address("tcp", "127.0.0.3", 6002, "plain.pbx.test")]
        # an explicit port skips NAPTR and SRV: A records only
        assert await locate(parse_uri("sip:jack@up.pbx.test:7000"), resolver) == [
            Address("udp", "127.0.0.3", 7000, "up.pbx.test")
        ]
        # no NAPTR, no SRV: the host itself on the default port and transport (§4.2)
        assert await locate(parse_uri("sip:jack@bare.pbx.test"), resolver) == [
            Address("udp", "127.0.0.4", 5060, "bare.pbx.test")
        ]
        with pytest.raises(TransportError, match=r"nothing\.pbx\.test"):
            await locate(parse_uri("sip:jack@nothing.pbx.test"), resolver)
