"""Helpers for engine tests: free loopback ports and generated configuration files."""

from __future__ import annotations

import socket
from pathlib import Path

ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "test-auth-token-0123456789"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free for both TCP and UDP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
            with socket.socket(socket.AF_INET, other) as second:
                try:
                    second.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def write_config(
    tmp_path: Path,
    *,
    domains: str = "",
    http_port: int | None = None,
    sip_port: int | None = None,
    tls_port: int | None = None,
    extra: str = "",
) -> tuple[Path, dict[str, int]]:
    ports = {
        "http": http_port or free_port(),
        "sip": sip_port or free_port(),
        "tls": tls_port or free_port(),
    }
    media = free_port(socket.SOCK_DGRAM) & ~1
    text = f"""
[sip]
listen = ["udp:127.0.0.1:{ports["sip"]}", "tcp:127.0.0.1:{ports["sip"]}",
          "tls:127.0.0.1:{ports["tls"]}"]

[http]
host = "127.0.0.1"
port = {ports["http"]}

[store]
path = "{tmp_path / "callxml.db"}"
data_dir = "{tmp_path / "data"}"

[media]
address = "127.0.0.1"
port_min = 30000
port_max = 39999

[engine]
shutdown_grace = 2

[[accounts]]
sid = "{ACCOUNT_SID}"
auth_token = "{AUTH_TOKEN}"
{extra}
{domains}
"""
    del media
    path = tmp_path / "callxml.toml"
    path.write_text(text)
    return path, ports
