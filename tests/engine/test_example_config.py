"""The example configuration shipped in examples/ is valid and means what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from callxml.engine.config import load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "callxml.toml"


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert [lis.transport for lis in config.listeners] == ["udp", "tcp", "tls"]
    plain = config.domain("ivr.localhost")
    secure = config.domain("secure.localhost")
    assert plain is not None and not plain.secure_media
    assert secure is not None and secure.secure_media and secure.allowed_ips == ("127.0.0.0/8",)
    assert config.database == EXAMPLE.parent / "callxml.db"


def test_example_zrtp_domains() -> None:
    config = load_config(EXAMPLE)
    zrtp = config.domain("zrtp.localhost")
    both = config.domain("carrier.localhost")
    assert zrtp is not None and zrtp.media_encryption == "zrtp" and not zrtp.secure_media
    assert both is not None and both.media_encryption == "sdes-or-zrtp" and both.secure_media
    assert both.srtp_suites[0] == "AEAD_AES_256_GCM"


def test_the_commented_registrar_domain_and_carrier_registration_mean_what_they_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uncommented, the example's registrar domain and carrier registration load as described."""
    lines = EXAMPLE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# A registrar domain"))
    setting = re.compile(r"^# (\[\[?[a-z]+\]\]?$|[a-z_]+ = )")  # a commented-out TOML line
    enabled = lines[:start] + [line[2:] if setting.match(line) else line for line in lines[start:]]
    copy = tmp_path / "callxml.toml"
    copy.write_text("\n".join(enabled) + "\n")
    monkeypatch.setenv("CARRIER_PASSWORD", "from-the-environment")
    config = load_config(copy)
    office = config.domain("office.localhost")
    assert office is not None and office.secure_media and len(office.credentials) == 2
    [carrier] = config.registrations
    assert carrier.registrar == "sips:sip.carrier.example" and carrier.domain == "secure.localhost"
    assert carrier.password == "from-the-environment" and carrier.expires == 600
    assert config.registrar_max_bindings == 10
