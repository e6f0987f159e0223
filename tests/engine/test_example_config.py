"""The example configuration shipped in examples/ is valid and means what its comments say."""

from __future__ import annotations

from pathlib import Path

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
