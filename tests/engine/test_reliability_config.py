"""The configuration keys of docs/reliability.md: defaults, bounds, and that the engine honours
them (each key's refusal names the key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from callxml.engine.config import EngineConfig, parse_config
from callxml.errors import ConfigError
from support.engine import engine_config, running_engine, sip_port
from support.rawsip import RawPeer
from support.waiting import until

DEFAULTS = {
    "max_inbound_connections": 1024,
    "max_outbound_connections": 256,
    "connect_timeout": 10.0,
    "connection_idle_timeout": 120.0,
    "connection_read_timeout": 30.0,
}


def test_sip_connection_defaults() -> None:
    config = parse_config({})
    for name, value in DEFAULTS.items():
        assert getattr(config, name) == value == getattr(EngineConfig(), name)


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("sip", "max_inbound_connections", 0, "sip.max_inbound_connections: must be between"),
        ("sip", "max_outbound_connections", "9", "sip.max_outbound_connections: must be int"),
        ("sip", "connection_idle_timeout", 0, "sip.connection_idle_timeout: must be between"),
        ("sip", "connection_read_timeout", -1, "sip.connection_read_timeout: must be between"),
        ("sip", "connect_timeout", 1e9, "sip.connect_timeout: must be between"),
    ],
)
def test_out_of_bounds_values_name_the_key(
    section: str, key: str, value: Any, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({section: {key: value}})
    assert str(info.value).startswith(message), str(info.value)


async def test_the_engine_times_out_idle_connections_as_configured(tmp_path: Path) -> None:
    config = engine_config(tmp_path, [], extra={"sip": {"connection_idle_timeout": 0.3}})
    async with (
        running_engine(config) as engine,
        RawPeer("tcp", "127.0.0.1", sip_port(engine, "tcp")) as peer,
    ):
        await until(lambda: peer.closed, timeout=10)
