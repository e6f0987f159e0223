"""``GET /metrics``: the engine's state in the Prometheus text format (prometheus-client).

Most figures are read from the engine when Prometheus scrapes (live calls by status, admission
refusals, SIP transactions and refusals, RTP and SRTP counters), so the hot paths pay nothing for
them: the SIP core and the RTP endpoints already keep those counters. Only what cannot be read
later is recorded as it happens: webhook and store latencies (histograms) and calls started and
ended (counters).

Each engine has its own registry, so two engines in one process (tests, an embedding program)
never mix their figures; nothing registers with prometheus-client's global default registry.

Access: the figures name no caller, number or key, but they do show traffic, so ``/metrics`` asks
for ``Authorization: Bearer <[metrics] token>`` when a token is configured, else for any
account's HTTP Basic credentials (the REST API's), and ``[metrics] enabled = false`` removes it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from callxml.engine.admission import Admission
from callxml.engine.cluster import Cluster
from callxml.engine.config import EngineConfig
from callxml.engine.health import StoreHealth
from callxml.engine.store import TERMINAL_STATUSES, CallRecord
from callxml.runtime import Phone

#: Webhook round trips (seconds): a fast app answers in milliseconds, the default timeout is 15 s.
WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
#: Store operations (seconds): SQLite commits take ~0.1-1 ms, PostgreSQL on a LAN a few ms.
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)

#: The SIP layer's refusal and loss counters exported, by the name :attr:`Engine.counters` uses.
SIP_PROBLEMS = {
    "sip.core.bad_request": "bad_request",
    "sip.core.dropped": "dropped",
    "sip.core.refused": "refused",
    "sip.core.stray": "stray",
    "sip.transport.bad_message": "bad_message",
    "sip.transport.dropped": "transport_dropped",
    "sip.transport.unframed": "unframed",
    "sip.transport.timed_out": "timed_out",
    "sip.transport.stalled": "stalled",
    "sip.faults": "fault",
}


class _Observed(Protocol):
    def observe(self, amount: float) -> None: ...


class Observed(Protocol):
    """What the metrics read from the engine at scrape time (:class:`~callxml.engine.Engine`
    is one; a protocol keeps this module below the server in the layers)."""

    admission: Admission
    store_health: StoreHealth
    phone: Phone | None
    cluster: Cluster | None

    def live_statuses(self) -> dict[str, int]: ...

    @property
    def counters(self) -> dict[str, int]: ...


class EngineMetrics:
    """The engine's registry and the figures recorded as they happen."""

    def __init__(self, engine: Observed) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhook_seconds = Histogram(
            "callxml_webhook_duration_seconds",
            "Webhook round trips (voice URL, action and fallback fetches), by outcome.",
            ["outcome"],
            buckets=WEBHOOK_BUCKETS,
            registry=self.registry,
        )
        self.store_seconds = Histogram(
            "callxml_store_duration_seconds",
            "Store operations (one commit or query each), by operation.",
            ["operation"],
            buckets=STORE_BUCKETS,
            registry=self.registry,
        )
        self.calls_started = Counter(
            "callxml_calls_started",
            "Calls the engine took on (inbound INVITEs admitted, REST calls created).",
            ["direction"],
            registry=self.registry,
        )
        self.calls_ended = Counter(
            "callxml_calls_ended",
            "Calls over, by final status (completed, busy, no-answer, failed, canceled).",
            ["status"],
            registry=self.registry,
        )
        self.call_failures = Counter(
            "callxml_call_failures",
            "Calls that did not end completed, by reason: sip-<final response code> (486, 487, "
            "503...), or no-answer, error (callxml's own, see the call's notifications).",
            ["reason"],
            registry=self.registry,
        )
        # Zero samples for the usual labels from the start, so a rate() has a baseline and a
        # dashboard shows 0 rather than "no data" before the first call.
        for direction in ("inbound", "outbound-api"):
            self.calls_started.labels(direction)
        for status in sorted(TERMINAL_STATUSES):
            self.calls_ended.labels(status)
        for outcome in ("ok", "failed"):
            self.webhook_seconds.labels(outcome)
        self.registry.register(_EngineCollector(engine))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def timed_store(self, store: Any) -> Any:
        """``store`` with every public method timed into :attr:`store_seconds` (same calls,
        same results, same exceptions)."""
        return _TimedStore(store, self.store_seconds)


class _TimedStore:
    """A store proxy: each public method call is observed under its name. The proxy keeps the
    seam untouched, so every backend is measured the same way."""

    def __init__(self, store: Any, histogram: Histogram) -> None:
        self._store = store
        self._histogram = histogram
        self._wrapped: dict[str, Callable[..., Any]] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name.startswith("_") or not callable(attr):
            return attr
        wrapped = self._wrapped.get(name)
        if wrapped is None:
            child: _Observed = self._histogram.labels(name)

            def wrapped(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return getattr(self._store, name)(*args, **kwargs)
                finally:
                    child.observe(time.perf_counter() - start)

            self._wrapped[name] = wrapped
        return wrapped


class _EngineCollector:
    """Figures read from the engine at scrape time."""

    def __init__(self, engine: Observed) -> None:
        self._engine = engine

    def describe(self) -> list[Metric]:
        return []  # families depend on the engine's state; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        engine = self._engine
        live = GaugeMetricFamily(
            "callxml_calls", "Calls the engine is running now, by status.", labels=["status"]
        )
        for status, count in sorted(engine.live_statuses().items()):
            live.add_metric([status], count)
        yield live

        admission = engine.admission
        yield GaugeMetricFamily(
            "callxml_call_setups", "Calls being set up now (admission).", value=admission.setups
        )
        yield GaugeMetricFamily(
            "callxml_webhook_fetches", "Webhook fetches in flight.", value=admission.fetches
        )
        refused = CounterMetricFamily(
            "callxml_calls_refused",
            "New calls refused by admission control, by limit (SIP 503 / REST 429 or 503).",
            labels=["reason"],
        )
        for reason, count in sorted(admission.refused.items()):
            refused.add_metric([reason], count)
        yield refused
        yield GaugeMetricFamily(
            "callxml_store_healthy",
            "1 while the store accepts writes, 0 while writes are being retried.",
            value=0 if engine.store_health.failing else 1,
        )

        if engine.cluster is not None:
            yield CounterMetricFamily(
                "callxml_cluster_calls_reaped",
                "Calls of dead engines (lease run out) this engine marked failed.",
                value=engine.cluster.reaped,
            )

        phone = engine.phone
        if phone is None:
            return
        transactions = CounterMetricFamily(
            "callxml_sip_transactions",
            "SIP transactions started, by side (server: received, client: sent) and method.",
            labels=["side", "method"],
        )
        for (side, method), count in sorted(phone.user_agent.transactions.items()):
            transactions.add_metric([side, method], count)
        yield transactions
        problems = CounterMetricFamily(
            "callxml_sip_problems",
            "SIP messages refused, dropped or timed out, and contained faults, by kind.",
            labels=["kind"],
        )
        counters = engine.counters
        tally: Tally[str] = Tally()
        for name, kind in SIP_PROBLEMS.items():
            tally[kind] += counters.get(name, 0)
        for kind, count in sorted(tally.items()):
            problems.add_metric([kind], count)
        yield problems

        rtp = phone.rtp_totals()
        packets = CounterMetricFamily(
            "callxml_rtp_packets", "RTP packets (all legs), by direction.", labels=["direction"]
        )
        packets.add_metric(["sent"], rtp.packets_sent)
        packets.add_metric(["received"], rtp.packets_received)
        yield packets
        yield CounterMetricFamily(
            "callxml_rtp_packets_lost",
            "RTP packets that never arrived (gaps the jitter buffer skipped).",
            value=rtp.lost,
        )
        yield CounterMetricFamily(
            "callxml_srtp_auth_failures",
            "SRTP/SRTCP packets that failed authentication (tampered, wrong key), dropped.",
            value=rtp.dropped_auth,
        )
        dropped = CounterMetricFamily(
            "callxml_rtp_dropped", "RTP datagrams dropped, by reason.", labels=["reason"]
        )
        dropped.add_metric(["replay"], rtp.dropped_replay)
        dropped.add_metric(["invalid"], rtp.dropped_invalid)
        dropped.add_metric(["unkeyed"], rtp.dropped_unkeyed)
        yield dropped


def metrics_handler(config: EngineConfig, metrics: EngineMetrics) -> Callable[[web.Request], Any]:
    """The ``GET /metrics`` handler (see the module docstring for access)."""

    async def handle(request: web.Request) -> web.Response:
        if not _allowed(config, request.headers.get("Authorization", "")):
            return web.Response(
                status=401,
                text="Authenticate\n",
                headers={"WWW-Authenticate": 'Bearer realm="callxml metrics"'},
            )
        body = metrics.exposition()
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return handle


def _allowed(config: EngineConfig, header: str) -> bool:
    scheme, _, credentials = header.partition(" ")
    token = config.metrics_token
    if token is not None:
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), token.encode()
        )
    if scheme.lower() != "basic":
        return False
    try:
        username, _, password = base64.b64decode(credentials).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    account = config.account(username)
    return account is not None and hmac.compare_digest(
        account.auth_token.encode(), password.encode()
    )


def failure_reason(record: CallRecord) -> str | None:
    """Why a call did not complete, as a label with few values (a final SIP response code is
    one of a few hundred; free-text errors would make a series per call): None when it did."""
    if record.status == "completed":
        return None
    code = record.sip_response_code
    if code is not None and 300 <= code <= 699:
        return f"sip-{code}"
    if record.status in ("no-answer", "canceled", "busy"):
        return record.status
    return "error"
