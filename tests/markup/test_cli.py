"""Tests for ``callxml validate``."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from callxml.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", *args], input=stdin)
    return result.exit_code, result.output


def test_all_valid_samples_pass() -> None:
    files = sorted(str(p) for p in (FIXTURES / "valid").glob("*.xml"))
    code, output = run(*files)
    assert code == 0
    assert ": error: " not in output


def test_warnings_alone_exit_zero_and_are_printed(tmp_path: Path) -> None:
    path = tmp_path / "w.xml"
    path.write_text('<Response>\n<Say colour="red">hi</Say></Response>')
    code, output = run(str(path))
    assert code == 0
    assert (
        output
        == f"{path}:2:6: warning: <Say> has no attribute 'colour'; ignored [unknown-attribute]\n"
    )


def test_quiet_hides_warnings(tmp_path: Path) -> None:
    path = tmp_path / "w.xml"
    path.write_text('<Response><Say colour="red">hi</Say></Response>')
    assert run("-q", str(path)) == (0, "")


def test_errors_exit_one_with_file_line_column() -> None:
    bad = FIXTURES / "invalid" / "say_inside_dial.xml"
    good = FIXTURES / "valid" / "hangup.xml"
    code, output = run(str(good), str(bad))
    assert code == 1
    assert output.startswith(f"{bad}:4:9: error: <Say> is not allowed inside <Dial>")


def test_every_invalid_fixture_fails() -> None:
    for path in sorted((FIXTURES / "invalid").glob("*.xml")):
        code, output = run(str(path))
        assert code == 1, path
        assert output.startswith(f"{path}:") and ": error: " in output


def test_stdin() -> None:
    code, output = run("-", stdin="<Response>\n  <Speak/>\n</Response>")
    assert code == 1
    assert output.startswith("<stdin>:2:3: error: unknown verb <Speak>")


def test_missing_file(tmp_path: Path) -> None:
    code, output = run(str(tmp_path / "nope.xml"))
    assert code == 1
    assert ":0:0: error: cannot read" in output
