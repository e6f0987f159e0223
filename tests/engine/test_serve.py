"""``callxml serve`` as a subprocess: starts on a generated config, serves /healthz, stops on
SIGTERM with a clean exit; bad configuration is one line naming the key."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp

from callxml.engine import Engine
from support.engine import engine_config, serve_process, write_config


async def wait_http(port: int, proc: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            if proc.returncode is not None:
                raise AssertionError("the engine exited early")
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    assert resp.status == 200
                    assert await resp.json() == {"status": "ok"}
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise AssertionError("the engine did not start")


async def test_serve_starts_and_stops_on_sigterm(tmp_path: Path) -> None:
    config, ports = write_config(tmp_path)
    proc = await serve_process(
        config,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        await wait_http(ports["http"], proc)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = err.decode()
    assert proc.returncode == 0, text
    assert f"udp:127.0.0.1:{ports['sip']}" in text
    assert "fingerprint" in text  # the development certificate was made and shown
    assert "callxml engine stopped" in text
    assert (tmp_path / "data" / "tls" / "dev-ca.pem").is_file()
    assert (tmp_path / "callxml.db").is_file()


async def test_bad_config_is_one_line_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[http]\nport = "eighty"\n')
    proc = await serve_process(
        config, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "http.port" in lines[0]


async def test_serve_in_process_for_a_while(tmp_path: Path) -> None:
    """``Engine.serve(seconds=…)``, what ``callxml serve`` and examples/serve_demo.py run:
    start, wait, drain and stop, then leave the loop's signal handling as it was."""
    lines: list[str] = []
    engine = Engine(engine_config(tmp_path, []), echo=lines.append)
    await engine.serve(seconds=0.2)
    assert lines[-3:] == [
        "callxml engine ready (Ctrl-C or SIGTERM to stop)",
        "callxml engine stopping",
        "callxml engine stopped",
    ]
    assert any(line.startswith("HTTP: REST API on") for line in lines)
    assert not engine.accepting
    loop = asyncio.get_running_loop()
    assert not loop.remove_signal_handler(signal.SIGTERM)  # none left behind
    assert not loop.remove_signal_handler(signal.SIGINT)
