"""Engine configuration: a TOML file, or embedded defaults when there is none.

Owns the shape of ``callxml.toml`` and its validation. Bad configuration must fail at start with
one clear line naming the key (``domains[0].voice_url: must be an http(s) URL``), never later in
the middle of a call. With no file at all the engine runs on loopback with one demo account and
one demo domain, so ``callxml serve`` works on a fresh machine.

It must not start anything: it only reads and checks.
"""

from __future__ import annotations

import ipaddress
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from callxml.errors import ConfigError

__all__ = [
    "DEMO_ACCOUNT_SID",
    "AccountConfig",
    "Credential",
    "DomainConfig",
    "EngineConfig",
    "Listener",
    "load_config",
    "parse_config",
]

DEMO_ACCOUNT_SID = "AC" + "0" * 31 + "1"
# The demo account signs with the bundled example app's default token, and the demo domain points
# at that app's entry (``python examples/ivr_app.py --port 8081``), so both work together as is.
DEMO_AUTH_TOKEN = "example-auth-token"
DEMO_DOMAIN = "demo.callxml.localhost"
DEMO_VOICE_URL = "http://127.0.0.1:8081/ivr"


@dataclass(frozen=True, slots=True)
class Listener:
    transport: str  # udp | tcp | tls
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Credential:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AccountConfig:
    sid: str
    auth_token: str = field(repr=False)
    friendly_name: str = ""


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """A SIP domain: calls to ``anything@name`` run this domain's webhook flow."""

    name: str
    account_sid: str
    voice_url: str
    voice_method: str = "POST"
    fallback_url: str | None = None
    fallback_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    secure_media: bool = False
    allowed_ips: tuple[str, ...] = ()
    credentials: tuple[Credential, ...] = ()

    @property
    def needs_auth(self) -> bool:
        return bool(self.credentials)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    listeners: tuple[Listener, ...] = (
        Listener("udp", "127.0.0.1", 5060),
        Listener("tcp", "127.0.0.1", 5060),
        Listener("tls", "127.0.0.1", 5061),
    )
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    public_url: str = ""  # base URL for RecordingUrl etc.; default http://http_host:http_port
    data_dir: Path = Path("./callxml-data")
    database: Path = Path("./callxml.db")
    tls_cert: Path | None = None  # None: a self-signed development certificate in data_dir
    tls_key: Path | None = None
    tls_ca_bundle: Path | None = None
    tls_verify: bool = True
    media_address: str = "127.0.0.1"
    media_port_min: int = 20000
    media_port_max: int = 29999
    webhook_timeout: float = 15.0
    status_callback_retries: int = 3
    shutdown_grace: float = 30.0
    trunk_uri_template: str | None = None  # e.g. "sip:{number}@trunk.example.com;secure=true"
    accounts: tuple[AccountConfig, ...] = ()
    domains: tuple[DomainConfig, ...] = ()

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.http_host}:{self.http_port}"

    def account(self, sid: str) -> AccountConfig | None:
        return next((a for a in self.accounts if a.sid == sid), None)

    def domain(self, name: str) -> DomainConfig | None:
        lname = name.lower().rstrip(".")
        return next((d for d in self.domains if d.name == lname), None)


def default_config() -> EngineConfig:
    """The embedded defaults: loopback, one demo account and one demo domain."""
    return parse_config({})


def load_config(path: str | Path | None) -> EngineConfig:
    """Read a TOML file (or the embedded defaults for None) and validate it."""
    if path is None:
        return default_config()
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return parse_config(data, base_dir=file.parent)


class _Reader:
    """Typed access to one TOML table that names the key in every error."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where or 'config'}: must be a table")
        self.data = data
        self.where = where
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise ConfigError(f"{self.key(name)}: must be {names}, got {value!r}")
        return value

    def url(self, name: str, default: str | None, *, required: bool = False) -> str | None:
        value = self.get(name, str, default)
        if value is None or value == "":
            if required:
                raise ConfigError(f"{self.key(name)}: required")
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{self.key(name)}: must be an http(s) URL, got {value!r}")
        return str(value)

    def method(self, name: str) -> str:
        value = str(self.get(name, str, "POST")).upper()
        if value not in ("GET", "POST"):
            raise ConfigError(f"{self.key(name)}: must be GET or POST")
        return value

    def path(self, name: str, base_dir: Path, default: Path | None) -> Path | None:
        value = self.get(name, str, None)
        if value is None:
            return default
        file = Path(value)
        return file if file.is_absolute() else base_dir / file

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"{self.key(unknown[0])}: unknown key")


def _port(reader: _Reader, name: str, default: int) -> int:
    value = int(reader.get(name, int, default))
    if not 0 <= value <= 65535:
        raise ConfigError(f"{reader.key(name)}: port out of range: {value}")
    return value


def _host(reader: _Reader, name: str, default: str) -> str:
    value = str(reader.get(name, str, default))
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{reader.key(name)}: must be an IP address, got {value!r}") from None
    return value


def _listener(text: Any, where: str) -> Listener:
    if not isinstance(text, str):
        raise ConfigError(f"{where}: must be a string like 'udp:127.0.0.1:5060'")
    transport, _, rest = text.partition(":")
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ConfigError(f"{where}: must look like 'udp:127.0.0.1:5060', got {text!r}") from None
    if transport not in ("udp", "tcp", "tls") or not 0 <= number <= 65535:
        raise ConfigError(f"{where}: must look like 'udp:127.0.0.1:5060', got {text!r}")
    return Listener(transport, host, number)


def parse_config(data: Mapping[str, Any], *, base_dir: Path = Path(".")) -> EngineConfig:
    """Validate a configuration mapping (as read from TOML); raise ConfigError naming the key."""
    top = _Reader(data, "")
    defaults = EngineConfig()

    sip = _Reader(top.get("sip", dict, {}), "sip")
    listen = sip.get("listen", list, None)
    listeners = (
        defaults.listeners
        if listen is None
        else tuple(_listener(item, f"sip.listen[{i}]") for i, item in enumerate(listen))
    )
    trunk = sip.get("trunk_uri_template", str, None)
    if trunk is not None and "{number}" not in trunk:
        raise ConfigError("sip.trunk_uri_template: must contain '{number}'")
    sip.finish()

    http = _Reader(top.get("http", dict, {}), "http")
    http_host = _host(http, "host", defaults.http_host)
    http_port = _port(http, "port", defaults.http_port)
    public_url = http.url("public_url", None) or ""
    http.finish()

    tls = _Reader(top.get("tls", dict, {}), "tls")
    tls_cert = tls.path("cert", base_dir, None)
    tls_key = tls.path("key", base_dir, None)
    tls_ca = tls.path("ca_bundle", base_dir, None)
    tls_verify = bool(tls.get("verify", bool, True))
    tls.finish()
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("tls.key: cert and key must be given together")
    for key, file in (("tls.cert", tls_cert), ("tls.key", tls_key), ("tls.ca_bundle", tls_ca)):
        if file is not None and not file.is_file():
            raise ConfigError(f"{key}: file not found: {file}")

    store = _Reader(top.get("store", dict, {}), "store")
    database = store.path("path", base_dir, defaults.database)
    data_dir = store.path("data_dir", base_dir, defaults.data_dir)
    store.finish()

    media = _Reader(top.get("media", dict, {}), "media")
    media_address = _host(media, "address", defaults.media_address)
    port_min = _port(media, "port_min", defaults.media_port_min)
    port_max = _port(media, "port_max", defaults.media_port_max)
    media.finish()
    if port_min > port_max or port_max - port_min < 3:
        raise ConfigError("media.port_max: the media port range needs at least 4 ports")

    hooks = _Reader(top.get("webhooks", dict, {}), "webhooks")
    timeout = float(hooks.get("timeout", float, defaults.webhook_timeout))
    retries = int(hooks.get("status_callback_retries", int, defaults.status_callback_retries))
    hooks.finish()
    if not 0 < timeout <= 120:
        raise ConfigError("webhooks.timeout: must be between 0 and 120 seconds")
    if not 0 <= retries <= 10:
        raise ConfigError("webhooks.status_callback_retries: must be between 0 and 10")

    engine = _Reader(top.get("engine", dict, {}), "engine")
    grace = float(engine.get("shutdown_grace", float, defaults.shutdown_grace))
    engine.finish()

    accounts_data = top.get("accounts", list, None)
    domains_data = top.get("domains", list, None)
    top.finish()
    if accounts_data is None:
        accounts: tuple[AccountConfig, ...] = (
            AccountConfig(DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN, "demo"),
        )
    else:
        accounts = tuple(_account(item, f"accounts[{i}]") for i, item in enumerate(accounts_data))
    sids = [a.sid for a in accounts]
    if len(set(sids)) != len(sids):
        raise ConfigError("accounts: duplicate sid")
    if domains_data is None:
        domains: tuple[DomainConfig, ...] = (
            DomainConfig(DEMO_DOMAIN, accounts[0].sid if accounts else "", DEMO_VOICE_URL),
        )
    else:
        domains = tuple(_domain(item, f"domains[{i}]") for i, item in enumerate(domains_data))
    for i, domain in enumerate(domains):
        if domain.account_sid not in sids:
            raise ConfigError(f"domains[{i}].account: no account {domain.account_sid!r}")
    names = [d.name for d in domains]
    if len(set(names)) != len(names):
        raise ConfigError("domains: duplicate name")

    return EngineConfig(
        listeners=listeners,
        http_host=http_host,
        http_port=http_port,
        public_url=public_url.rstrip("/"),
        data_dir=data_dir or defaults.data_dir,
        database=database or defaults.database,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca_bundle=tls_ca,
        tls_verify=tls_verify,
        media_address=media_address,
        media_port_min=port_min,
        media_port_max=port_max,
        webhook_timeout=timeout,
        status_callback_retries=retries,
        shutdown_grace=grace,
        trunk_uri_template=trunk,
        accounts=accounts,
        domains=domains,
    )


def _account(data: Any, where: str) -> AccountConfig:
    reader = _Reader(data, where)
    sid = reader.get("sid", str, None)
    if sid is None or not (sid.startswith("AC") and len(sid) == 34):
        raise ConfigError(f"{where}.sid: must be 'AC' followed by 32 hex digits")
    try:
        int(sid[2:], 16)
    except ValueError:
        raise ConfigError(f"{where}.sid: must be 'AC' followed by 32 hex digits") from None
    token = reader.get("auth_token", str, None)
    if not token or len(token) < 16:
        raise ConfigError(f"{where}.auth_token: required, at least 16 characters")
    name = str(reader.get("friendly_name", str, ""))
    reader.finish()
    return AccountConfig(sid, token, name)


def _domain(data: Any, where: str) -> DomainConfig:
    reader = _Reader(data, where)
    name = reader.get("name", str, None)
    if not name:
        raise ConfigError(f"{where}.name: required")
    account = reader.get("account", str, None)
    if not account:
        raise ConfigError(f"{where}.account: required (an account sid)")
    voice_url = reader.url("voice_url", None, required=True)
    assert voice_url is not None
    allowed = reader.get("allowed_ips", list, [])
    for j, net in enumerate(allowed):
        try:
            ipaddress.ip_network(net, strict=False)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}.allowed_ips[{j}]: not an IP network: {net!r}") from None
    creds = []
    for j, item in enumerate(reader.get("credentials", list, [])):
        cred = _Reader(item, f"{where}.credentials[{j}]")
        user = cred.get("username", str, None)
        password = cred.get("password", str, None)
        if not user or not password:
            raise ConfigError(f"{where}.credentials[{j}]: username and password required")
        cred.finish()
        creds.append(Credential(user, password))
    domain = DomainConfig(
        name=name.lower().rstrip("."),
        account_sid=account,
        voice_url=voice_url,
        voice_method=reader.method("voice_method"),
        fallback_url=reader.url("fallback_url", None),
        fallback_method=reader.method("fallback_method"),
        status_callback=reader.url("status_callback", None),
        status_callback_method=reader.method("status_callback_method"),
        secure_media=bool(reader.get("secure_media", bool, False)),
        allowed_ips=tuple(str(n) for n in allowed),
        credentials=tuple(creds),
    )
    reader.finish()
    return domain


def new_auth_token() -> str:
    """A fresh auth token for a new account (32 hex characters, as Twilio's)."""
    return secrets.token_hex(16)
