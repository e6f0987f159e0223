"""End to end: the simulator runs the example flows and the live example app to the secure dial.

Also runs ``examples/run_demo.py`` (the main job behind ``make run``) as a subprocess.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from callxml.cli import main as cli
from callxml.simulator import SimulationResult, simulate
from support.examples import EXAMPLES, load_example
from support.web import Serve

IVR_FLOW = str(EXAMPLES / "flows" / "ivr.xml")
TOKEN = "demo-test-token"
JACK = "sip:jack@example.com;secure=true"


ivr_app = load_example("ivr_app.py", "callxml_example_ivr_demo")


def assert_secure_dial_to_jack(result: SimulationResult) -> None:
    assert result.error is None, result.error
    assert result.status == "completed"
    [dial] = result.dials
    assert dial.target == JACK
    assert (dial.transport, dial.port, dial.srtp_suite) == ("tls", 5061, "AES_CM_128_HMAC_SHA1_80")
    assert dial.outcome == "completed"
    assert result.gathered == ["1"]


async def test_static_flow_reaches_secure_dial() -> None:
    result = await simulate(IVR_FLOW, digits=["1"])
    assert_secure_dial_to_jack(result)
    assert result.urls[-1].endswith("dial-status-{{DialCallStatus}}.xml")
    assert result.said[-1] == "Thank you for calling. Goodbye."


async def test_live_app_reaches_secure_dial(serve: Serve) -> None:
    base = await serve(ivr_app.make_app(TOKEN))
    result = await simulate(f"{base}/ivr", digits=["1"], auth_token=TOKEN)
    assert_secure_dial_to_jack(result)
    assert result.urls == [f"{base}/ivr", f"{base}/ivr/menu", f"{base}/ivr/dial-status"]
    assert all(r.response is not None and r.response.status == 200 for r in result.requests)


@pytest.mark.parametrize(
    ("digits", "outcomes", "last_said"),
    [
        (["2"], {}, "Thank you. Your message"),
        (["9"], {}, "We did not receive any input. Goodbye."),  # menu again, then silence
        (["1"], {"*": "busy"}, "Sorry, Jack could not be reached"),
    ],
)
async def test_app_and_static_flow_say_the_same(
    serve: Serve, digits: list[str], outcomes: dict[str, str], last_said: str
) -> None:
    base = await serve(ivr_app.make_app(TOKEN))
    live = await simulate(f"{base}/ivr", digits=digits, dial_outcomes=outcomes, auth_token=TOKEN)
    static = await simulate(IVR_FLOW, digits=digits, dial_outcomes=outcomes)
    assert live.error is None and static.error is None
    assert live.said[-1].startswith(last_said)
    assert static.said[-1].startswith(last_said)
    assert len(live.said) == len(static.said)
    assert live.said[:2] == static.said[:2]


async def test_live_app_refuses_a_wrongly_signed_simulator(serve: Serve) -> None:
    base = await serve(ivr_app.make_app(TOKEN))
    result = await simulate(f"{base}/ivr", digits=["1"], auth_token="wrong-token")
    assert result.error is not None
    assert "403" in result.error
    assert result.dials == []


def test_cli_simulate_static_flow() -> None:
    out = CliRunner().invoke(cli, ["simulate", IVR_FLOW, "--digits", "1"])
    assert out.exit_code == 0, out.output
    assert f"sip {JACK}: TLS port 5061, SRTP AES_CM_128_HMAC_SHA1_80" in out.output
    assert "call ended: completed" in out.output


def test_run_demo_main_job() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "run_demo.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TLS port 5061, SRTP AES_CM_128_HMAC_SHA1_80" in proc.stdout
    assert "demo OK: status=completed" in proc.stdout
