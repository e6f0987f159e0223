"""The SSRF guard (issue 16 §3): which addresses a fetch may connect to, checked on the address
actually connected to, after DNS and on every redirect hop. Only loopback addresses are ever
connected to here; the other rules are checked on the policy alone."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from callxml.errors import WebhookError
from callxml.webhooks import WebhookClient, WebhookRequest
from callxml.webhooks.guard import GuardedConnector, NetworkPolicy, parse_networks
from support.web import Serve

DEFAULT = NetworkPolicy()
TENANTS = NetworkPolicy(multi_tenant=True)


@pytest.mark.parametrize(
    ("address", "default", "multi_tenant"),
    [
        ("169.254.169.254", False, False),  # cloud metadata, always refused
        ("fe80::1", False, False),
        ("fd00:ec2::254", False, False),
        ("100.100.100.200", False, False),
        ("127.0.0.1", True, False),
        ("::1", True, False),
        ("::ffff:127.0.0.1", True, False),  # IPv4-mapped is the IPv4 address
        ("::ffff:169.254.169.254", False, False),
        ("10.1.2.3", True, False),
        ("172.16.0.1", True, False),
        ("192.168.1.1", True, False),
        ("100.64.0.1", True, False),
        ("fd12::1", True, False),
        ("0.0.0.0", True, False),
        ("93.184.216.34", True, True),  # a public address
        ("2001:4860:4860::8888", True, True),
    ],
)
def test_policy(address: str, default: bool, multi_tenant: bool) -> None:
    assert (DEFAULT.refusal(address) is None) is default
    assert (TENANTS.refusal(address) is None) is multi_tenant


def test_allow_and_deny_networks_come_first() -> None:
    policy = NetworkPolicy(
        allow=parse_networks(["10.9.0.0/16", "169.254.10.0/24"]),
        deny=parse_networks(["203.0.113.0/24"]),
        multi_tenant=True,
    )
    assert policy.refusal("10.9.1.1") is None and policy.refusal("169.254.10.5") is None
    assert "203.0.113.0/24" in (policy.refusal("203.0.113.7") or "")
    assert policy.refusal("10.8.1.1") is not None


@pytest.fixture
async def fetch() -> AsyncIterator[Callable[[NetworkPolicy, str], object]]:
    sessions: list[aiohttp.ClientSession] = []

    async def run(policy: NetworkPolicy, url: str) -> object:
        session = aiohttp.ClientSession(connector=GuardedConnector(policy))
        sessions.append(session)
        client = WebhookClient(auth_token="t" * 20, session=session, timeout=5)
        return await client.fetch(WebhookRequest(url, "POST", (("CallSid", "CA1"),)))

    yield run  # type: ignore[misc]
    for session in sessions:
        await session.close()


async def app(serve: Serve, hits: list[str], redirect_to: str | None = None) -> str:
    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        if redirect_to is not None:
            raise web.HTTPFound(redirect_to)
        return web.Response(text="<Response/>", content_type="text/xml")

    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", handler)
    return await serve(application)


async def test_loopback_is_fetched_by_default_and_refused_for_tenants(
    serve: Serve, fetch: Callable[..., object]
) -> None:
    hits: list[str] = []
    base = await app(serve, hits)
    assert (await fetch(DEFAULT, base + "/voice")).status == 200  # type: ignore[attr-defined]
    with pytest.raises(WebhookError, match="network policy") as info:
        await fetch(TENANTS, base + "/voice")
    assert info.value.error_code == 11205 and hits == ["/voice"]  # never connected


async def test_a_name_is_checked_on_the_addresses_it_resolves_to(
    serve: Serve, fetch: Callable[..., object]
) -> None:
    hits: list[str] = []
    base = await app(serve, hits)
    port = base.rsplit(":", 1)[1]
    with pytest.raises(WebhookError, match="network policy"):
        await fetch(TENANTS, f"http://localhost:{port}/voice")  # resolves to loopback
    assert hits == []


async def test_every_redirect_hop_is_checked(serve: Serve, fetch: Callable[..., object]) -> None:
    hits: list[str] = []
    target = await app(serve, hits)
    port = target.rsplit(":", 1)[1]
    denied = f"http://127.0.0.2:{port}/inside"  # loopback too, but denied by the policy
    start = await app(serve, hits, redirect_to=denied)
    policy = NetworkPolicy(deny=parse_networks(["127.0.0.2/32"]))
    with pytest.raises(WebhookError, match=r"127\.0\.0\.2"):
        await fetch(policy, start + "/voice")
    assert hits == ["/voice"]  # the first hop only
