"""examples/early_media.py runs as documented: early media with a ringback before the answer,
the same leg answered, a re-INVITE to PCMA with the audio going on, a session refresh."""

from __future__ import annotations

import pytest

from support.examples import load_example

pytestmark = pytest.mark.peer


async def test_the_early_media_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    example = load_example("early_media.py", "example_early_media")
    assert await example.main() == 0
    out = capsys.readouterr().out
    assert "early media demo OK" in out and "bob: remote hangup" in out
