"""Engine configuration: a TOML file, or embedded defaults when there is none.

Owns the shape of ``callxml.toml`` and its validation. Bad configuration must fail at start with
one clear line naming the key (``domains[0].voice_url: must be an http(s) URL``), never later in
the middle of a call. With no file at all the engine runs on loopback with one demo account and
one demo domain, so ``callxml serve`` works on a fresh machine.

It must not start anything: it only reads and checks.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from callxml.engine.admission import AdmissionLimits
from callxml.errors import CallXmlError, ConfigError

__all__ = [
    "DEMO_ACCOUNT_SID",
    "AccountConfig",
    "Credential",
    "DomainConfig",
    "EngineConfig",
    "Listener",
    "RegistrationSettings",
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
    """An account. ``media_auth``: whether recording media (``RecordingUrl``, ``.wav``,
    ``.mp3``) needs HTTP Basic auth with the account's sid and token (Twilio's "enforce HTTP
    auth on media URLs"); metadata always does."""

    sid: str
    auth_token: str = field(repr=False)
    friendly_name: str = ""
    media_auth: bool = True


#: :data:`callxml.sdp.policy.INBOUND_SUITES`, spelled out: importing sdp here would load media.
DEFAULT_SRTP_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")


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
    #: ``none``, ``sdes`` (= ``secure_media``), ``zrtp`` or ``sdes-or-zrtp`` (docs/sdp.md).
    media_encryption: str = "none"
    #: SDES suites this domain accepts, in order (docs/sdp.md).
    srtp_suites: tuple[str, ...] = DEFAULT_SRTP_SUITES
    allowed_ips: tuple[str, ...] = ()
    credentials: tuple[Credential, ...] = ()
    # One digest challenge per algorithm, in this order (RFC 8760 §2.4). MD5 first: many phones
    # (and SIPp) answer only the first challenge and know only MD5; some (baresip 1.0) refuse a
    # 401 that offers any algorithm they do not know, and need ("MD5",) alone.
    digest_algorithms: tuple[str, ...] = ("MD5", "SHA-256")

    @property
    def needs_auth(self) -> bool:
        return bool(self.credentials)


@dataclass(frozen=True, slots=True)
class RegistrationSettings:
    """A registration with a carrier (``[[registrations]]``): callxml registers ``username`` at
    ``registrar`` over TLS and runs ``domain``'s flow on the calls that come back over that
    connection. The password comes from the file, ``password_file``, or the environment,
    ``password_env``, when not written in the configuration itself."""

    name: str
    registrar: str
    username: str
    password: str = field(repr=False)
    domain: str
    realm: str | None = None
    aor: str | None = None
    contact_user: str | None = None
    expires: int = 3600
    outbound_proxy: str | None = None
    keepalive: float = 30.0
    retry_base: float = 30.0
    retry_max: float = 1800.0


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
    # [store] url: PostgreSQL shared by several engines (None: the SQLite file above)
    database_url: str | None = None
    store_pool_size: int = 10
    recordings_dir: Path | None = None  # None: data_dir/recordings (several engines: share it)
    # [cluster] engines sharing a PostgreSQL store (docs/deploy.md)
    node_id: str = ""  # "": the host name
    node_lease: float = 10.0  # seconds a node counts as alive after its last heartbeat
    node_api_url: str = ""  # where the other engines reach this one's REST API: base_url
    tls_cert: Path | None = None  # None: a self-signed development certificate in data_dir
    tls_key: Path | None = None
    tls_ca_bundle: Path | None = None
    tls_verify: bool = True
    media_address: str = "127.0.0.1"
    media_port_min: int = 20000
    media_port_max: int = 29999
    media_rtp_timeout: float = 60.0  # no RTP/RTCP this long on an answered leg: BYE (0: never)
    webhook_timeout: float = 15.0
    # [webhooks] which addresses fetches may connect to (the SSRF guard, webhooks/guard.py)
    webhook_allow_networks: tuple[str, ...] = ()
    webhook_deny_networks: tuple[str, ...] = ()
    multi_tenant: bool = False
    status_callback_retries: int = 3
    shutdown_grace: float = 30.0
    trunk_uri_template: str | None = None  # e.g. "sip:{number}@trunk.example.com;secure=true"
    dns_servers: tuple[str, ...] = ()  # empty: the system resolver (/etc/hosts, resolv.conf)
    failover_timeout: float = 4.0  # a located server silent this long: try the next (RFC 3263)
    session_expires: int = 1800  # RFC 4028 session interval we ask for; 0: no session timers
    min_se: int = 90  # RFC 4028 Min-SE: shorter intervals are refused with 422
    # [sip] connection bounds (docs/reliability.md)
    max_inbound_connections: int = 1024
    max_outbound_connections: int = 256
    connect_timeout: float = 10.0  # our TCP connects and every TLS handshake
    connection_idle_timeout: float = 120.0
    connection_read_timeout: float = 30.0
    limits: AdmissionLimits = field(default_factory=AdmissionLimits)  # [limits]: admission
    # [metrics] GET /metrics: off, or bearer token instead of an account's Basic credentials
    metrics_enabled: bool = True
    metrics_token: str | None = None
    # [registrar] bounds on the bindings of devices registered to domains with credentials
    registrar_min_expires: int = 60
    registrar_max_expires: int = 3600
    registrar_default_expires: int = 3600
    registrar_max_bindings: int = 10
    accounts: tuple[AccountConfig, ...] = ()
    domains: tuple[DomainConfig, ...] = ()
    registrations: tuple[RegistrationSettings, ...] = ()

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.http_host}:{self.http_port}"

    @property
    def recordings(self) -> Path:
        """Where recordings are written (and read back by the REST API of any engine)."""
        return self.recordings_dir or self.data_dir / "recordings"

    @property
    def node(self) -> str:
        return self.node_id or socket.gethostname()

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
    """Validate a configuration mapping (as read from TOML); raise ConfigError naming the key.

    Each ``[section]`` has its own parser, which starts from the defaults of ``EngineConfig``
    and rejects unknown keys; relative paths are resolved against ``base_dir``.
    """
    top = _Reader(data, "")
    config = EngineConfig()
    config = _parse_sip(_table(top, "sip"), config)
    config = _parse_http(_table(top, "http"), config)
    config = _parse_tls(_table(top, "tls"), config, base_dir)
    config = _parse_store(_table(top, "store"), config, base_dir)
    config = _parse_media(_table(top, "media"), config)
    config = _parse_webhooks(_table(top, "webhooks"), config)
    config = _parse_engine(_table(top, "engine"), config)
    config = _parse_limits(_table(top, "limits"), config)
    config = _parse_metrics(_table(top, "metrics"), config)
    config = _parse_cluster(_table(top, "cluster"), config)
    config = _parse_registrar(_table(top, "registrar"), config)
    accounts_data = top.get("accounts", list, None)
    domains_data = top.get("domains", list, None)
    registrations_data = top.get("registrations", list, [])
    top.finish()
    accounts = _parse_accounts(accounts_data)
    config = replace(config, accounts=accounts, domains=_parse_domains(domains_data, accounts))
    return replace(config, registrations=_parse_registrations(registrations_data, config, base_dir))


def _table(top: _Reader, name: str) -> _Reader:
    """The ``[name]`` table (empty when absent)."""
    return _Reader(top.get(name, dict, {}), name)


def _parse_sip(sip: _Reader, config: EngineConfig) -> EngineConfig:
    listen = sip.get("listen", list, None)
    listeners = (
        config.listeners
        if listen is None
        else tuple(_listener(item, f"sip.listen[{i}]") for i, item in enumerate(listen))
    )
    trunk = sip.get("trunk_uri_template", str, None)
    if trunk is not None and "{number}" not in trunk:
        raise ConfigError("sip.trunk_uri_template: must contain '{number}'")
    servers = sip.get("dns_servers", list, [])
    for index, server in enumerate(servers):
        if not isinstance(server, str) or not _dns_server_ok(server):
            raise ConfigError(
                f"sip.dns_servers[{index}]: must be an IP address with an optional port, "
                f"got {server!r}"
            )
    failover = float(sip.get("failover_timeout", float, config.failover_timeout))
    if not 0.5 <= failover <= 32:
        raise ConfigError("sip.failover_timeout: must be between 0.5 and 32 seconds")
    bounds = {
        name: _bounded(sip, name, int, getattr(config, name), 1, 1_000_000)
        for name in ("max_inbound_connections", "max_outbound_connections")
    }
    timeouts = {
        name: _bounded(sip, name, float, getattr(config, name), 0.1, 86_400)
        for name in ("connect_timeout", "connection_idle_timeout", "connection_read_timeout")
    }
    expires = int(sip.get("session_expires", int, config.session_expires))
    min_se = _bounded(sip, "min_se", int, config.min_se, 90, 86_400)  # RFC 4028 §4: >= 90
    if expires != 0 and not min_se <= expires <= 86_400:
        raise ConfigError(
            f"sip.session_expires: 0 (no session timers) or between sip.min_se ({min_se}) "
            "and 86400 seconds"
        )
    sip.finish()
    return replace(
        config,
        listeners=listeners,
        trunk_uri_template=trunk,
        dns_servers=tuple(servers),
        failover_timeout=failover,
        session_expires=expires,
        min_se=min_se,
        **bounds,
        **timeouts,
    )


def _dns_server_ok(server: str) -> bool:
    """``192.0.2.53``, ``127.0.0.1:5353``, ``[2001:db8::53]:53``."""
    host, port = server, "53"
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "53"
    elif server.count(":") == 1:
        host, _, port = server.partition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return port.isdigit() and 0 < int(port) < 65536


def _bounded(reader: _Reader, name: str, kind: type, default: Any, low: float, high: float) -> Any:
    """A number between ``low`` and ``high`` (a bound of docs/reliability.md)."""
    value = kind(reader.get(name, kind, default))
    if not low <= value <= high:
        raise ConfigError(f"{reader.key(name)}: must be between {low:g} and {high:g}")
    return value


def _parse_http(http: _Reader, config: EngineConfig) -> EngineConfig:
    host = _host(http, "host", config.http_host)
    port = _port(http, "port", config.http_port)
    public_url = http.url("public_url", None) or ""
    http.finish()
    return replace(config, http_host=host, http_port=port, public_url=public_url.rstrip("/"))


def _parse_tls(tls: _Reader, config: EngineConfig, base_dir: Path) -> EngineConfig:
    cert = tls.path("cert", base_dir, None)
    key = tls.path("key", base_dir, None)
    ca_bundle = tls.path("ca_bundle", base_dir, None)
    verify = bool(tls.get("verify", bool, True))
    tls.finish()
    if (cert is None) != (key is None):
        raise ConfigError("tls.key: cert and key must be given together")
    for name, file in (("tls.cert", cert), ("tls.key", key), ("tls.ca_bundle", ca_bundle)):
        if file is not None and not file.is_file():
            raise ConfigError(f"{name}: file not found: {file}")
    return replace(config, tls_cert=cert, tls_key=key, tls_ca_bundle=ca_bundle, tls_verify=verify)


def _parse_store(store: _Reader, config: EngineConfig, base_dir: Path) -> EngineConfig:
    database = store.path("path", base_dir, config.database)
    data_dir = store.path("data_dir", base_dir, config.data_dir)
    recordings = store.path("recordings_dir", base_dir, config.recordings_dir)
    url = store.get("url", str, config.database_url)
    if url is not None:
        if urlsplit(url).scheme not in ("postgresql", "postgres"):
            raise ConfigError(f"{store.key('url')}: must be a postgresql:// URL")
        if "path" in store.data:
            raise ConfigError(f"{store.key('url')}: give path (SQLite) or url, not both")
    pool = _bounded(store, "pool_size", int, config.store_pool_size, 1, 1000)
    store.finish()
    return replace(
        config,
        database=database or config.database,
        data_dir=data_dir or config.data_dir,
        recordings_dir=recordings,
        database_url=url,
        store_pool_size=pool,
    )


_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _parse_cluster(cluster: _Reader, config: EngineConfig) -> EngineConfig:
    """``[cluster]``: this engine among several sharing a PostgreSQL store (docs/deploy.md)."""
    node_id = str(cluster.get("node_id", str, config.node_id))
    if node_id and not _NODE_ID.match(node_id):
        raise ConfigError(f"{cluster.key('node_id')}: letters, digits, '.', '_', '-' (<= 63)")
    lease = _bounded(cluster, "lease", float, config.node_lease, 2, 3600)
    api_url = cluster.url("api_url", None) or ""
    cluster.finish()
    return replace(config, node_id=node_id, node_lease=lease, node_api_url=api_url.rstrip("/"))


def _parse_media(media: _Reader, config: EngineConfig) -> EngineConfig:
    address = _host(media, "address", config.media_address)
    port_min = _port(media, "port_min", config.media_port_min)
    port_max = _port(media, "port_max", config.media_port_max)
    rtp_timeout = float(media.get("rtp_timeout", float, config.media_rtp_timeout))
    media.finish()
    if port_min > port_max or port_max - port_min < 3:
        raise ConfigError("media.port_max: the media port range needs at least 4 ports")
    if rtp_timeout != 0 and not 5 <= rtp_timeout <= 86400:
        raise ConfigError("media.rtp_timeout: 0 (never) or between 5 seconds and a day")
    return replace(
        config,
        media_address=address,
        media_port_min=port_min,
        media_port_max=port_max,
        media_rtp_timeout=rtp_timeout,
    )


def _parse_webhooks(hooks: _Reader, config: EngineConfig) -> EngineConfig:
    timeout = float(hooks.get("timeout", float, config.webhook_timeout))
    retries = int(hooks.get("status_callback_retries", int, config.status_callback_retries))
    allow = _networks(hooks, "allow_networks")
    deny = _networks(hooks, "deny_networks")
    multi_tenant = bool(hooks.get("multi_tenant", bool, config.multi_tenant))
    hooks.finish()
    if not 0 < timeout <= 120:
        raise ConfigError("webhooks.timeout: must be between 0 and 120 seconds")
    if not 0 <= retries <= 10:
        raise ConfigError("webhooks.status_callback_retries: must be between 0 and 10")
    return replace(
        config,
        webhook_timeout=timeout,
        status_callback_retries=retries,
        webhook_allow_networks=allow,
        webhook_deny_networks=deny,
        multi_tenant=multi_tenant,
    )


def _networks(reader: _Reader, name: str) -> tuple[str, ...]:
    values = reader.get(name, list, [])
    for j, net in enumerate(values):
        try:
            ipaddress.ip_network(net, strict=False)
        except (TypeError, ValueError):
            raise ConfigError(f"{reader.key(name)}[{j}]: not an IP network: {net!r}") from None
    return tuple(str(net) for net in values)


def _parse_limits(limits: _Reader, config: EngineConfig) -> EngineConfig:
    """``[limits]``: admission control (docs/reliability.md)."""
    d = config.limits
    parsed = AdmissionLimits(
        max_calls=_bounded(limits, "max_calls", int, d.max_calls, 1, 1_000_000),
        max_setups=_bounded(limits, "max_setups", int, d.max_setups, 1, 100_000),
        invites_per_second=_bounded(
            limits, "invites_per_second", float, d.invites_per_second, 0.1, 100_000
        ),
        invites_per_second_per_source=_bounded(
            limits,
            "invites_per_second_per_source",
            float,
            d.invites_per_second_per_source,
            0.1,
            100_000,
        ),
        creates_per_second=_bounded(
            limits, "creates_per_second", float, d.creates_per_second, 0.1, 100_000
        ),
        max_webhook_fetches=_bounded(
            limits, "max_webhook_fetches", int, d.max_webhook_fetches, 1, 1_000_000
        ),
        retry_after=_bounded(limits, "retry_after", int, d.retry_after, 1, 3600),
    )
    limits.finish()
    return replace(config, limits=parsed)


def _parse_metrics(metrics: _Reader, config: EngineConfig) -> EngineConfig:
    """``[metrics]``: ``GET /metrics`` (docs/engine.md)."""
    enabled = bool(metrics.get("enabled", bool, config.metrics_enabled))
    token = metrics.get("token", str, config.metrics_token)
    if token is not None and len(token) < 16:
        raise ConfigError(f"{metrics.key('token')}: use at least 16 characters")
    metrics.finish()
    return replace(config, metrics_enabled=enabled, metrics_token=token)


def _parse_registrar(registrar: _Reader, config: EngineConfig) -> EngineConfig:
    """``[registrar]``: expiry bounds (RFC 3261 §10.3 step 7) and bindings per user."""
    low = _bounded(registrar, "min_expires", int, config.registrar_min_expires, 1, 86_400)
    high = _bounded(registrar, "max_expires", int, config.registrar_max_expires, 1, 604_800)
    default = _bounded(
        registrar, "default_expires", int, min(config.registrar_default_expires, high), 1, 604_800
    )
    bindings = _bounded(registrar, "max_bindings", int, config.registrar_max_bindings, 1, 1000)
    registrar.finish()
    if low > high:
        raise ConfigError("registrar.min_expires: must not exceed registrar.max_expires")
    if not low <= default <= high:
        raise ConfigError("registrar.default_expires: must lie between min_expires and max_expires")
    return replace(
        config,
        registrar_min_expires=low,
        registrar_max_expires=high,
        registrar_default_expires=default,
        registrar_max_bindings=bindings,
    )


def _parse_engine(engine: _Reader, config: EngineConfig) -> EngineConfig:
    grace = float(engine.get("shutdown_grace", float, config.shutdown_grace))
    engine.finish()
    return replace(config, shutdown_grace=grace)


def _parse_accounts(data: list[Any] | None) -> tuple[AccountConfig, ...]:
    """``[[accounts]]``, or the demo account when the file has none."""
    if data is None:
        return (AccountConfig(DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN, "demo"),)
    accounts = tuple(_account(item, f"accounts[{i}]") for i, item in enumerate(data))
    sids = [a.sid for a in accounts]
    if len(set(sids)) != len(sids):
        raise ConfigError("accounts: duplicate sid")
    return accounts


def _parse_domains(
    data: list[Any] | None, accounts: tuple[AccountConfig, ...]
) -> tuple[DomainConfig, ...]:
    """``[[domains]]``, each owned by one of ``accounts``; the demo domain when there are none."""
    if data is None:
        owner = accounts[0].sid if accounts else ""
        domains: tuple[DomainConfig, ...] = (DomainConfig(DEMO_DOMAIN, owner, DEMO_VOICE_URL),)
    else:
        domains = tuple(_domain(item, f"domains[{i}]") for i, item in enumerate(data))
    sids = {a.sid for a in accounts}
    for i, domain in enumerate(domains):
        if domain.account_sid not in sids:
            raise ConfigError(f"domains[{i}].account: no account {domain.account_sid!r}")
    names = [d.name for d in domains]
    if len(set(names)) != len(names):
        raise ConfigError("domains: duplicate name")
    return domains


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
    media_auth = bool(reader.get("media_auth", bool, True))
    reader.finish()
    return AccountConfig(sid, token, name, media_auth)


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
    allowed = _allowed_ips(reader.get("allowed_ips", list, []), f"{where}.allowed_ips")
    creds = _credentials(reader.get("credentials", list, []), f"{where}.credentials")
    algorithms = _digest_algorithms(reader.get("digest_algorithms", list, None), where)
    domain = DomainConfig(
        name=name.lower().rstrip("."),
        account_sid=account,
        voice_url=voice_url,
        voice_method=reader.method("voice_method"),
        fallback_url=reader.url("fallback_url", None),
        fallback_method=reader.method("fallback_method"),
        status_callback=reader.url("status_callback", None),
        status_callback_method=reader.method("status_callback_method"),
        **_media_encryption(reader, where),
        srtp_suites=_srtp_suites(reader.get("srtp_suites", list, None), f"{where}.srtp_suites"),
        allowed_ips=allowed,
        credentials=creds,
    )
    if algorithms:
        domain = replace(domain, digest_algorithms=algorithms)
    reader.finish()
    return domain


#: :data:`callxml.sdp.policy.MEDIA_ENCRYPTIONS`, spelled out like the default suites.
MEDIA_ENCRYPTIONS = ("none", "sdes", "zrtp", "sdes-or-zrtp")


def _media_encryption(reader: _Reader, where: str) -> dict[str, Any]:
    """``media_encryption``, and ``secure_media = true`` as the older spelling of ``sdes``."""
    secure = reader.get("secure_media", bool, None)
    chosen = reader.get("media_encryption", str, None)
    if chosen is None:
        chosen = "sdes" if secure else "none"
    elif chosen not in MEDIA_ENCRYPTIONS:
        raise ConfigError(
            f"{where}.media_encryption: must be one of {', '.join(MEDIA_ENCRYPTIONS)}"
        )
    sdes = chosen in ("sdes", "sdes-or-zrtp")
    if secure is not None and secure != sdes:
        raise ConfigError(
            f"{where}.secure_media: contradicts media_encryption = {chosen!r} (drop secure_media)"
        )
    return {"secure_media": sdes, "media_encryption": chosen}


def _srtp_suites(names: list[Any] | None, where: str) -> tuple[str, ...]:
    if names is None:
        return DEFAULT_SRTP_SUITES
    from callxml.sdp.policy import check_suites  # loads media: only when the key is there

    try:
        return check_suites(names)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _digest_algorithms(names: list[Any] | None, where: str) -> tuple[str, ...]:
    """``digest_algorithms``: the challenges a domain sends, in order (RFC 8760)."""
    if names is None:
        return ()
    known = ("MD5", "SHA-256", "SHA-512-256")
    out: list[str] = []
    for name in names:
        upper = str(name).upper()
        if upper not in known:
            raise ConfigError(
                f"{where}.digest_algorithms: {name!r} is not one of {', '.join(known)}"
            )
        if upper not in out:
            out.append(upper)
    if not out:
        raise ConfigError(f"{where}.digest_algorithms: name at least one algorithm")
    return tuple(out)


def _allowed_ips(networks: list[Any], where: str) -> tuple[str, ...]:
    for j, net in enumerate(networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}[{j}]: not an IP network: {net!r}") from None
    return tuple(str(n) for n in networks)


def _credentials(items: list[Any], where: str) -> tuple[Credential, ...]:
    creds = []
    for j, item in enumerate(items):
        cred = _Reader(item, f"{where}[{j}]")
        user = cred.get("username", str, None)
        password = cred.get("password", str, None)
        if not user or not password:
            raise ConfigError(f"{where}[{j}]: username and password required")
        cred.finish()
        creds.append(Credential(user, password))
    return tuple(creds)


def _parse_registrations(
    data: list[Any], config: EngineConfig, base_dir: Path
) -> tuple[RegistrationSettings, ...]:
    """``[[registrations]]``: registrations with carriers, over TLS only (their calls come back
    over that connection, and the digest exchange must not cross the network in the clear)."""
    out = tuple(_registration(item, f"registrations[{i}]", base_dir) for i, item in enumerate(data))
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise ConfigError("registrations: duplicate name")
    for i, registration in enumerate(out):
        if config.domain(registration.domain) is None:
            raise ConfigError(f"registrations[{i}].domain: no domain {registration.domain!r}")
    if out and not any(lis.transport == "tls" for lis in config.listeners):
        raise ConfigError("registrations: need a tls listener in sip.listen (our Contact)")
    return out


def _registration(data: Any, where: str, base_dir: Path) -> RegistrationSettings:
    # Imported here: ``import callxml.engine`` (config and records) must not load the SIP stack.
    from callxml.sip.headers import is_token
    from callxml.sip.uri import parse_uri

    reader = _Reader(data, where)
    registrar = reader.get("registrar", str, None)
    if not registrar:
        raise ConfigError(f"{where}.registrar: required (e.g. 'sips:carrier.example.com')")
    try:
        uri = parse_uri(registrar)
    except CallXmlError as exc:
        raise ConfigError(f"{where}.registrar: {exc}") from None
    if not (uri.secure or uri.transport == "tls"):
        raise ConfigError(
            f"{where}.registrar: must be sips: or ;transport=tls (calls come back over that "
            f"TLS connection), got {registrar!r}"
        )
    if uri.user is not None or uri.password is not None:
        raise ConfigError(f"{where}.registrar: names the registrar's domain, not a user")
    username = reader.get("username", str, None)
    if not username or not is_token(username.replace("@", "").replace("+", "")):
        raise ConfigError(f"{where}.username: required, a SIP user name")
    password = _secret(reader, where, base_dir)
    domain = reader.get("domain", str, None)
    if not domain:
        raise ConfigError(f"{where}.domain: required (the domain whose flow runs its calls)")
    proxy = reader.get("outbound_proxy", str, None)
    if proxy is not None:
        try:
            parse_uri(proxy)
        except CallXmlError as exc:
            raise ConfigError(f"{where}.outbound_proxy: {exc}") from None
    aor = reader.get("aor", str, None)
    if aor is not None:
        try:
            parse_uri(aor)
        except CallXmlError as exc:
            raise ConfigError(f"{where}.aor: {exc}") from None
    contact_user = reader.get("contact_user", str, None)
    if contact_user is not None and not is_token(contact_user):
        raise ConfigError(f"{where}.contact_user: must be a SIP user name")
    retry_base = float(_bounded(reader, "retry_base", float, 30.0, 1, 3600))
    settings = RegistrationSettings(
        name=str(reader.get("name", str, f"{username}@{uri.bare_host}")),
        registrar=registrar,
        username=username,
        password=password,
        domain=str(domain).lower().rstrip("."),
        realm=reader.get("realm", str, None),
        aor=aor,
        contact_user=contact_user,
        expires=int(_bounded(reader, "expires", int, 3600, 60, 86_400)),
        outbound_proxy=proxy,
        keepalive=float(_bounded(reader, "keepalive", float, 30.0, 1, 3600)),
        retry_base=retry_base,
        retry_max=float(
            _bounded(reader, "retry_max", float, max(1800.0, retry_base), retry_base, 86_400)
        ),
    )
    reader.finish()
    return settings


def _secret(reader: _Reader, where: str, base_dir: Path) -> str:
    """Exactly one of ``password``, ``password_file`` (its first line) or ``password_env``."""
    given = [k for k in ("password", "password_file", "password_env") if k in reader.data]
    inline = reader.get("password", str, None)
    file = reader.path("password_file", base_dir, None)
    env = reader.get("password_env", str, None)
    if len(given) != 1:
        raise ConfigError(f"{where}.password: give one of password, password_file, password_env")
    if inline is not None:
        secret: str = inline
    elif file is not None:
        try:
            secret = file.read_text(encoding="utf-8").splitlines()[0] if file.stat().st_size else ""
        except OSError as exc:
            raise ConfigError(
                f"{where}.password_file: cannot read {file}: {exc.strerror}"
            ) from None
    else:
        assert env is not None
        if env not in os.environ:
            raise ConfigError(f"{where}.password_env: the environment has no {env}")
        secret = os.environ[env]
    if not secret:
        raise ConfigError(f"{where}.password: empty")
    return secret
