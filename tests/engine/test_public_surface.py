"""What a program embedding the engine imports from ``callxml.engine``: every exported name
resolves, and importing the package stays cheap (no SIP, media, runtime or aiohttp) until the
engine itself is used."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import callxml
import callxml.engine


def test_every_exported_name_resolves() -> None:
    for name in callxml.engine.__all__:
        assert getattr(callxml.engine, name) is not None, name
    assert set(callxml.engine.__all__) <= set(dir(callxml.engine))
    assert callxml.engine.Engine.__module__ == "callxml.engine.server"


def test_importing_the_package_does_not_load_the_engine() -> None:
    src = str(Path(callxml.__file__).resolve().parents[1])
    probe = (
        "import sys, callxml.engine as e\n"
        "heavy = [m for m in ('aiohttp', 'callxml.runtime', 'callxml.sip', 'callxml.media')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "e.Engine\n"
        "assert 'callxml.engine.server' in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": src}
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
