"""``GET /metrics``: Prometheus text a real scrape can parse, behind the REST API's credentials
or a bearer token, with figures that move when calls happen: calls started and ended by status,
the webhook and store histograms, SIP transactions, RTP packets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from callxml.engine.metrics import failure_reason
from callxml.engine.store import CallRecord
from callxml.errors import ConfigError
from callxml.runtime import Phone
from callxml.sip.aio.transport import ListenerConfig
from support.engine import (
    ACCOUNT_SID,
    API_AUTH,
    engine_config,
    running_engine,
    sip_port,
    wait_status,
    web_app,
)
from support.sipp import Sipp

pytestmark = pytest.mark.peer

FLOW = "<Response><Say>Hello.</Say><Hangup/></Response>"
TOKEN = "metrics-token-0123456789"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, keyed by name and sorted labels (parsed by prometheus-client's parser, as
    Prometheus would)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def scrape(port: int, headers: dict[str, str]) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics", headers=headers) as response,
    ):
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def test_metrics_follow_an_inbound_call(tmp_path: Path) -> None:
    async with web_app({"/voice": lambda form: FLOW}) as app:
        domain = {"name": "metrics.test", "voice_url": app.url("/voice")}
        async with running_engine(engine_config(tmp_path, [domain])) as engine:
            port = engine.http_port
            status, _, _ = await scrape(port, {})
            assert status == 401
            status, kind, before_text = await scrape(port, API_AUTH)
            assert status == 200 and kind.startswith("text/plain")
            before = samples(before_text)
            assert before["callxml_calls_started_total", (("direction", "inbound"),)] == 0

            phone = await Phone.start(listeners=[ListenerConfig("udp", "127.0.0.1", 0)])
            try:
                proxy = f"sip:127.0.0.1:{sip_port(engine, 'udp')}"
                result = await phone.dial("sip:ivr@metrics.test", proxy=proxy, timeout=10)
                assert result.status == "answered" and result.leg is not None, result.reason
                in_progress = ("callxml_calls", (("status", "in-progress"),))
                for _ in range(100):  # the record turns in-progress once the answer is booked
                    during = samples((await scrape(port, API_AUTH))[2])
                    if in_progress in during:
                        break
                    await asyncio.sleep(0.05)
                assert during[in_progress] == 1
                await result.leg.wait_ended(15)
            finally:
                await phone.close()
            for _ in range(100):  # the engine finishes the call's books just after the BYE
                if engine.live_statuses() == {}:
                    break
                await asyncio.sleep(0.05)
            after = samples((await scrape(port, API_AUTH))[2])

    assert after["callxml_calls_started_total", (("direction", "inbound"),)] == 1
    assert after["callxml_calls_ended_total", (("status", "completed"),)] == 1
    assert ("callxml_calls", (("status", "in-progress"),)) not in after
    assert after["callxml_webhook_duration_seconds_count", (("outcome", "ok"),)] == 1
    assert after["callxml_store_duration_seconds_count", (("operation", "create_call"),)] >= 1
    assert after["callxml_store_duration_seconds_count", (("operation", "update_call"),)] >= 1
    assert after["callxml_sip_transactions_total", (("method", "INVITE"), ("side", "server"))] == 1
    # <Hangup/>: the engine sends the BYE
    assert after["callxml_sip_transactions_total", (("method", "BYE"), ("side", "client"))] == 1
    sent = after["callxml_rtp_packets_total", (("direction", "sent"),)]
    assert sent >= 25  # "Hello." is well over half a second of 20 ms packets
    assert after["callxml_srtp_auth_failures_total", ()] == 0
    assert after["callxml_store_healthy", ()] == 1


async def test_a_token_replaces_account_credentials(tmp_path: Path) -> None:
    config = engine_config(tmp_path, [], extra={"metrics": {"token": TOKEN}})
    async with running_engine(config) as engine:
        port = engine.http_port
        assert (await scrape(port, API_AUTH))[0] == 401
        assert (await scrape(port, {"Authorization": "Bearer wrong-token-0123456789"}))[0] == 401
        status, _, text = await scrape(port, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert ("callxml_calls_refused_total", ()) not in samples(text)  # none refused, no samples


async def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    config = engine_config(tmp_path, [], extra={"metrics": {"enabled": False}})
    async with running_engine(config) as engine:
        assert (await scrape(engine.http_port, API_AUTH))[0] == 404


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"token": "short"}, "metrics.token: use at least 16 characters"),
        ({"enabled": "yes"}, "metrics.enabled"),
        ({"path": "/m"}, "metrics.path"),
    ],
)
def test_metrics_config_is_checked(tmp_path: Path, section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        engine_config(tmp_path, [], extra={"metrics": section})


async def test_failed_calls_are_counted_by_reason(tmp_path: Path, sipp: Sipp) -> None:
    """A REST call to a busy SIPp callee counts under ``sip-486``; the reasons are bounded
    labels (the final response code, never free text)."""
    callee = await sipp.uas("uas_busy", media_port=True)
    async with running_engine(engine_config(tmp_path, [])) as engine:
        base = f"http://127.0.0.1:{engine.http_port}/2010-04-01/Accounts/{ACCOUNT_SID}"
        form = {
            "To": f"sip:bob@127.0.0.1:{callee.port}",
            "From": "+15550100",
            "Twiml": "<Response><Say>never</Say></Response>",
        }
        async with (
            aiohttp.ClientSession(headers=API_AUTH) as http,
            http.post(f"{base}/Calls.json", data=form) as resp,
        ):
            sid = (await resp.json())["sid"]
        await wait_status(engine, sid, {"busy", "failed", "completed"})
        for _ in range(100):  # the engine counts the call once it has forgotten it
            if engine.live_statuses() == {}:
                break
            await asyncio.sleep(0.05)
        after = samples((await scrape(engine.http_port, API_AUTH))[2])
    assert (await callee.result()).returncode == 0
    assert after["callxml_calls_ended_total", (("status", "busy"),)] == 1
    assert after["callxml_call_failures_total", (("reason", "sip-486"),)] == 1


def test_failure_reasons_are_few() -> None:
    def record(status: str, code: int | None) -> CallRecord:
        return CallRecord(
            "CA1", ACCOUNT_SID, "outbound-api", "a", "b", status, sip_response_code=code
        )

    assert failure_reason(record("completed", 200)) is None
    assert failure_reason(record("failed", 503)) == "sip-503"
    assert failure_reason(record("no-answer", None)) == "no-answer"
    assert failure_reason(record("failed", None)) == "error"
    assert failure_reason(record("failed", 200)) == "error"  # answered, then our own failure
