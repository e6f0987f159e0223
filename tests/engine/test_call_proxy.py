"""`callxml call --proxy` reaches a domain-routed engine: the Request-URI keeps the domain while
the INVITE goes to the engine's address. The flow's speech comes back as real RTP audio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from callxml.cli.call import call_command, place_call
from callxml.media.tone import sine
from support.engine import WebApp, engine_config, running_engine, sip_port, web_app

pytestmark = pytest.mark.peer

FLOW = "<Response><Say>Hello from the proxy test.</Say><Pause length='3'/></Response>"


@pytest.fixture
async def app() -> AsyncIterator[WebApp]:
    async with web_app({"/voice": lambda form: FLOW}) as web:
        yield web


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_call_through_proxy_runs_the_domain_flow(
    tmp_path: Path, app: WebApp, transport: str
) -> None:
    domain = {"name": "proxy.test", "voice_url": app.url("/voice")}
    async with running_engine(engine_config(tmp_path, [domain])) as engine:
        proxy = f"sip:127.0.0.1:{sip_port(engine, transport)};transport={transport}"
        report = await place_call(
            "sip:ivr@proxy.test",
            pcm=sine(1000, 2000, amplitude=0.2),
            duration=2.0,
            proxy=proxy,
            bind="127.0.0.1",
            timeout=10,
        )
    assert report.status == "completed", report.reason
    assert report.transport == transport
    assert app.paths()[0] == "/voice"
    assert app.requests[0][1]["To"].endswith("@proxy.test")
    heard = np.frombuffer(bytes(report.audio), dtype="<i2")
    assert heard.size > 8000 and np.abs(heard).max() > 1000  # espeak's speech, not silence


def test_bad_proxy_is_a_usage_error() -> None:
    result = CliRunner().invoke(call_command, ["sip:a@127.0.0.1", "--proxy", "tel:123"])
    assert result.exit_code == 2 and "--proxy" in result.output
