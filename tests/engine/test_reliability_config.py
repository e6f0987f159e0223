"""The configuration keys of docs/reliability.md: defaults, bounds, and that the engine honours
them (each key's refusal names the key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from callxml.engine.admission import AdmissionLimits
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
        ("webhooks", "allow_networks", ["10.0.0.0/8", "x"], "webhooks.allow_networks[1]: not"),
        ("webhooks", "deny_networks", "10.0.0.0/8", "webhooks.deny_networks: must be list"),
        ("webhooks", "multi_tenant", "yes", "webhooks.multi_tenant: must be bool"),
        ("limits", "max_calls", 0, "limits.max_calls: must be between"),
        ("limits", "max_setups", 1.5, "limits.max_setups: must be int"),
        ("limits", "invites_per_second", 0, "limits.invites_per_second: must be between"),
        ("limits", "invites_per_second_per_source", -1, "limits.invites_per_second_per_source"),
        ("limits", "creates_per_second", 0, "limits.creates_per_second: must be between"),
        ("limits", "max_webhook_fetches", 0, "limits.max_webhook_fetches: must be between"),
        ("limits", "retry_after", 0, "limits.retry_after: must be between"),
        ("limits", "max_cals", 1, "limits.max_cals: unknown key"),
    ],
)
def test_out_of_bounds_values_name_the_key(
    section: str, key: str, value: Any, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({section: {key: value}})
    assert str(info.value).startswith(message), str(info.value)


def test_limits_and_webhook_network_defaults() -> None:
    config = parse_config({})
    assert config.limits == AdmissionLimits()
    assert (config.limits.max_calls, config.limits.max_setups) == (1000, 60)
    assert (config.limits.invites_per_second, config.limits.creates_per_second) == (1000, 50)
    assert config.limits.invites_per_second_per_source == 500
    assert config.limits.max_webhook_fetches == 200 and config.limits.retry_after == 5
    assert config.webhook_allow_networks == config.webhook_deny_networks == ()
    assert config.multi_tenant is False
    full = parse_config(
        {
            "limits": {"max_setups": 9, "invites_per_second": 12.5},
            "webhooks": {"allow_networks": ["10.1.0.0/16"], "multi_tenant": True},
        }
    )
    assert full.limits.max_setups == 9 and full.limits.invites_per_second == 12.5
    assert full.webhook_allow_networks == ("10.1.0.0/16",) and full.multi_tenant


async def test_the_engine_times_out_idle_connections_as_configured(tmp_path: Path) -> None:
    config = engine_config(tmp_path, [], extra={"sip": {"connection_idle_timeout": 0.3}})
    async with (
        running_engine(config) as engine,
        RawPeer("tcp", "127.0.0.1", sip_port(engine, "tcp")) as peer,
    ):
        await until(lambda: peer.closed, timeout=10)
