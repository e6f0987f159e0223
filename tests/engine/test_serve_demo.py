"""examples/serve_demo.py: the engine and the bundled example IVR together. A SIPp caller on the
demo domain gets the IVR's signed webhook flow (the demo account signs with the token the app
checks), and the call record shows it."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from callxml.engine.store import SqliteStore
from support.engine import ACCOUNT_SID, write_config
from support.examples import EXAMPLES
from support.ports import free_port
from support.sipp import Sipp

pytestmark = pytest.mark.peer

DEMO = EXAMPLES / "serve_demo.py"


async def test_serve_demo_runs_the_example_ivr(tmp_path: Path, sipp: Sipp) -> None:
    app_port = free_port("both")
    domain = f"""
[[domains]]
name = "demo.test"
account = "{ACCOUNT_SID}"
voice_url = "http://127.0.0.1:{app_port}/ivr"
"""
    config, ports = write_config(tmp_path, domains=domain)
    # the example app checks signatures made with the demo token
    text = config.read_text().replace(
        'auth_token = "test-auth-token-0123456789"', 'auth_token = "example-auth-token"'
    )
    config.write_text(text)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(DEMO), "--config", str(config), "--app-port", str(app_port),
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        while b"ready" not in (line := await asyncio.wait_for(proc.stderr.readline(), 20)):
            assert line, "serve_demo exited early"
        caller = await sipp.uac(
            "uac_hangs_up", "udp", f"127.0.0.1:{ports['sip']}", "ivr", keys={"domain": "demo.test"}
        )
        outcome = await caller.result()
        assert outcome.returncode == 0, outcome.explain()
        await asyncio.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    store = SqliteStore(tmp_path / "callxml.db")
    try:
        (call,) = store.list_calls(ACCOUNT_SID)
        hooks = store.list_events(call.sid, kind="webhook")
    finally:
        store.close()
    assert call.status == "completed"
    assert hooks[0].data["url"].endswith("/ivr") and hooks[0].data["status"] == 200
    assert "<Gather" in hooks[0].data["body"]  # signed correctly: the app answered its menu
