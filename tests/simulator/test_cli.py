"""``callxml simulate`` end to end on local files (click's runner, no terminal)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from callxml.cli import main


def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"<Response>{body}</Response>")
    return path


def test_simulate_file_prints_transcript_and_exits_0(tmp_path: Path) -> None:
    flow = write(
        tmp_path,
        "flow.xml",
        "<Gather action='next.xml' numDigits='2'><Say>Two digits</Say></Gather>",
    )
    write(tmp_path, "next.xml", "<Dial><Sip>sip:bob@example.com;secure=true</Sip></Dial>")
    result = CliRunner().invoke(
        main, ["simulate", str(flow), "--digits", "42", "--from", "+15550001"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "→ POST file://" in out and "From=+15550001" in out
    assert 'Say: "Two digits"' in out
    assert "Gather collected '42'" in out
    assert "Digits=42" in out
    assert "TLS port 5061, SRTP AES_CM_128_HMAC_SHA1_80" in out
    assert "call ended: completed" in out


def test_dial_outcome_and_hangup_after(tmp_path: Path) -> None:
    flow = write(tmp_path, "flow.xml", "<Dial action='a.xml'>+15551112222</Dial>")
    write(tmp_path, "a.xml", "<Say>after</Say>")
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            str(flow),
            "--dial-outcome",
            "+15551112222=busy",
            "--hangup-after",
            "60",
            "--trunk",
            "sip:{number}@trunk.test;secure=true",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "DialCallStatus=busy" in result.output
    assert "number +15551112222: TLS port 5061" in result.output


def test_error_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    flow = write(tmp_path, "flow.xml", "<Redirect>flow.xml</Redirect>")
    result = CliRunner().invoke(main, ["simulate", "-q", str(flow)])
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: more than 10 documents")


def test_missing_file_and_bad_options(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["simulate", str(tmp_path / "none.xml")])
    assert result.exit_code == 1
    assert "error:" in result.stderr and "not found" in result.stderr
    flow = write(tmp_path, "f.xml", "<Hangup/>")
    bad = CliRunner().invoke(main, ["simulate", str(flow), "--digits", "12x"])
    assert bad.exit_code == 2
    bad = CliRunner().invoke(main, ["simulate", str(flow), "--dial-outcome", "sip:x@y=maybe"])
    assert bad.exit_code == 2


def test_quiet_prints_only_outcome(tmp_path: Path) -> None:
    flow = write(tmp_path, "f.xml", "<Say>hi</Say>")
    result = CliRunner().invoke(main, ["simulate", "-q", str(flow)])
    assert result.exit_code == 0
    assert result.output.strip() == "call ended: completed after 0.50 s"
