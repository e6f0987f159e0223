"""The engine's registrar: devices register to our SIP domains, and calls find them there.

Owns what the sans-IO :class:`~callxml.sip.register.Registrar` leaves to its application:

* which REGISTERs it may see (RFC 3261 §10.3 steps 1-3): the Request-URI's domain must be one
  of ours (404 otherwise), a domain takes registrations only when it has ``credentials`` (403
  otherwise: an open registrar would let anyone take over a user's calls), a domain with
  ``secure_media = true`` only over TLS (403 otherwise: its calls are TLS + SRTP only, and its
  users' digest exchanges must not cross the network in the clear), and the user agent core
  has already challenged it with the domain's digest realm (the same
  :class:`~callxml.engine.server.DomainAuthenticator` as INVITEs);
* keeping the bindings in the :class:`~callxml.engine.store.Store`: loaded at start (expired
  ones ignored), each REGISTER's changes written as one transaction *before* the 200 is sent,
  expired ones purged every minute;
* finding a user's devices for a call (:class:`AccountDirectory`, the runtime's
  :class:`~callxml.runtime.dial.Directory`): ``<Client>alice</Client>``, ``<Sip>`` to
  ``alice@<our domain>`` and REST ``To=client:alice`` become a
  :class:`~callxml.runtime.fork.Callee` whose branches are the current bindings: each called
  at its Contact, over the flow its REGISTER came over (then, for a binding without RFC 5626
  outbound, the Contact's own address), with SRTP when the domain requires secure media.

It logs each binding change (never a credential) and answers every REGISTER, a store failure
included (500).

Engines sharing a PostgreSQL store (docs/deploy.md) share their bindings: a device's REGISTER
reaches one engine (the proxy hashes REGISTERs over the To URI), which stores the binding before
its 200; every engine follows the store every :data:`SHARED_SYNC_INTERVAL` seconds, so a call
placed on any engine finds the device within that time. Lookups stay in memory (a call's setup
never waits on the database), and the device is called over the flow its REGISTER came over,
which for a device behind the proxy is the proxy (it relays the INVITE by its Request-URI, the
device's Contact).

Following the store reads its change log (``binding_changes``: each write to the bindings logs
the keys it touched, with a sequence number, in the same transaction), not every binding: with
10,000 registered devices, re-reading them all each second on every engine would be a full
table scan and a rebuild of the registrar per engine per second, where the log costs a read by
its index of what changed since the last sync (a few rows: 10,000 devices refreshing hourly
make about three a second) and touches only those keys in memory. The log's sequence numbers
are taken at insert but seen at commit, so a sync can see seq 11 before seq 10 commits, and a
rolled-back write leaves a seq that never appears: a seq missing below the highest one read is
asked for again at each sync until it shows up or :data:`HOLE_TIMEOUT` seconds have passed (no
REGISTER's transaction lasts that long). As a safety net every binding is read again every
:data:`FULL_SYNC_INTERVAL` seconds, and at once when this engine fell so far behind (its syncs
failing) that the log was pruned past it (:data:`CHANGE_RETENTION`). Engines' clocks should
agree within seconds (NTP): the log's times are its writers', and bindings expire by them
already.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from callxml.engine.config import AccountConfig, DomainConfig, EngineConfig
from callxml.engine.store import BindingChanges, BindingRecord, Store
from callxml.errors import CallXmlError
from callxml.runtime.fork import Branch, Callee
from callxml.sip.aio.transport import label
from callxml.sip.aio.useragent import RegisterRequest
from callxml.sip.register import Binding, Registrar, RegistrarPolicy
from callxml.sip.target import Target
from callxml.sip.uri import parse_uri

__all__ = [
    "CHANGE_RETENTION",
    "FULL_SYNC_INTERVAL",
    "HOLE_TIMEOUT",
    "MAX_HOLES",
    "PURGE_INTERVAL",
    "SHARED_SYNC_INTERVAL",
    "AccountDirectory",
    "RegistrarService",
    "policy_of",
]

log = logging.getLogger(__name__)

#: How often expired bindings are dropped from memory and the store.
PURGE_INTERVAL = 60.0
#: With a store other engines share: how often the bindings they took are read (seconds).
SHARED_SYNC_INTERVAL = 1.0
#: How often a shared sync reads every binding anyway, should a change have slipped past the
#: log (a write's transaction outliving HOLE_TIMEOUT, clocks far apart).
FULL_SYNC_INTERVAL = 60.0
#: How long a change log seq missing below the newest one read is asked for again (seconds):
#: past it, its transaction is taken as rolled back.
HOLE_TIMEOUT = 30.0
#: More missing seqs than this at once (a sequence jump): read every binding instead.
MAX_HOLES = 1000
#: How long the store keeps the change log's rows (seconds); an engine whose syncs failed for
#: longer reads every binding again.
CHANGE_RETENTION = 300.0


def policy_of(config: EngineConfig) -> RegistrarPolicy:
    """The ``[registrar]`` bounds as the sans-IO registrar's policy."""
    return RegistrarPolicy(
        min_expires=config.registrar_min_expires,
        max_expires=config.registrar_max_expires,
        default_expires=config.registrar_default_expires,
        max_bindings=config.registrar_max_bindings,
    )


def _record(binding: Binding) -> BindingRecord:
    return BindingRecord(
        aor=binding.aor,
        key=binding.key,
        contact=binding.contact,
        expires_at=binding.expires_at,
        q=binding.q,
        call_id=binding.call_id,
        cseq=binding.cseq,
        instance=binding.instance,
        reg_id=binding.reg_id,
        transport=binding.transport,
        source_host=binding.source_host,
        source_port=binding.source_port,
        registered_at=binding.registered_at,
        user_agent=binding.user_agent,
    )


def _binding(record: BindingRecord) -> Binding:
    return Binding(
        aor=record.aor,
        contact=record.contact,
        expires_at=record.expires_at,
        q=record.q,
        call_id=record.call_id,
        cseq=record.cseq,
        instance=record.instance,
        reg_id=record.reg_id,
        transport=record.transport,
        source_host=record.source_host,
        source_port=record.source_port,
        registered_at=record.registered_at,
        user_agent=record.user_agent,
    )


class RegistrarService:
    """The registrar of every domain with ``credentials``: the user agent's ``on_register``
    handler, and the directory calls look users up in. ``clock`` is wall-clock seconds (the
    bindings' expiry survives a restart); ``monotonic`` times the shared sync's own intervals.
    ``shared_sync``: seconds between reads of the store's bindings when other engines write
    them too (None: this engine is the store's only writer)."""

    def __init__(
        self,
        config: EngineConfig,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        shared_sync: float | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.monotonic = monotonic
        self.shared_sync = shared_sync
        #: Reads of every binding (the one at start included) and of the change log only.
        self.full_reads = 0
        self.log_reads = 0
        self._after, records = self._read_all(clock())
        self.registrar = Registrar(policy_of(config), [_binding(r) for r in records])
        self._holes: dict[int, float] = {}  # log seqs missing below _after -> when first missed
        self._full_at = monotonic()
        self._full_due = False
        self._writes = asyncio.Lock()  # one REGISTER's changes reach the store before the next
        self._changes = 0  # local changes to the bindings in memory (see sync)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._purge(), name="registrar"))
        if self.shared_sync is not None:
            self._tasks.append(loop.create_task(self._follow(), name="registrar sync"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _follow(self) -> None:
        assert self.shared_sync is not None
        while True:
            await asyncio.sleep(self.shared_sync)
            try:
                await self.sync()
            except Exception:
                log.exception("registrar: reading the shared bindings failed")

    async def sync(self) -> bool:
        """Take the store's changes to the bindings since the last sync as ours (the other
        engines' REGISTERs included), or every binding when one is due; False when a REGISTER
        here changed ours meanwhile: what was read may predate it, so nothing is applied and
        the next sync reads from the same place again."""
        seen = self._changes
        now = self.clock()
        full = (
            self._full_due
            or len(self._holes) > MAX_HOLES
            or self.monotonic() - self._full_at >= FULL_SYNC_INTERVAL
        )
        changes: BindingChanges | None = None
        everything: tuple[int, list[BindingRecord]] | None = None
        async with self._writes:
            if not full:
                changes = await asyncio.to_thread(
                    self.store.binding_changes, self._after, holes=tuple(self._holes), now=now
                )
                self.log_reads += 1
                if changes.behind:
                    log.info("registrar: the bindings' change log was pruned past us: full read")
            if changes is None or changes.behind:
                everything = await asyncio.to_thread(self._read_all, now)
        if self._changes != seen:
            return False
        if everything is None:
            assert changes is not None
            self._take(changes)
        else:
            head, records = everything
            self.registrar = Registrar(policy_of(self.config), [_binding(r) for r in records])
            # A missing seq at or below the new position is not in the full read either (its
            # transaction had not committed): keep asking for it.
            self._holes = {seq: at for seq, at in self._holes.items() if seq <= head}
            self._after = head
            self._full_at = self.monotonic()
            self._full_due = False
        return True

    def _read_all(self, now: float) -> tuple[int, list[BindingRecord]]:
        """Every binding, and the change log position to follow from after it. The position
        is read first: a change logged between the two reads is then both in the bindings and
        past the position, read twice (harmless: a change is a key to read again), never
        missed."""
        self.full_reads += 1
        head = self.store.binding_log_head(settled_before=now - HOLE_TIMEOUT)
        return head, self.store.list_bindings(now=now)

    def _take(self, changes: BindingChanges) -> None:
        t = self.monotonic()
        for seq in changes.seqs:
            self._holes.pop(seq, None)
        missing = changes.last_seq - self._after - sum(1 for s in changes.seqs if s > self._after)
        if missing > MAX_HOLES:
            self._full_due = True  # a sequence jump: read everything rather than ask for each
        else:
            for seq in range(self._after + 1, changes.last_seq):
                if seq not in changes.seqs:
                    self._holes[seq] = t
        for seq, at in list(self._holes.items()):
            if t - at >= HOLE_TIMEOUT:
                log.debug("registrar: change log seq %d never appeared (rolled back)", seq)
                del self._holes[seq]
        self._after = max(self._after, changes.last_seq)
        self.registrar.apply([_binding(r) for r in changes.present], changes.absent)

    async def _purge(self) -> None:
        while True:
            await asyncio.sleep(PURGE_INTERVAL)
            try:
                await self.expire()
            except Exception:
                log.exception("registrar: purging expired bindings failed")

    async def expire(self) -> None:
        """Forget the bindings that lapsed, in memory and in the store, and the change log's
        rows no sync needs any more."""
        now = self.clock()
        self._changes += 1
        for binding in self.registrar.expire(now):
            log.info("registrar: %s binding %s expired", binding.aor, binding.contact)
        async with self._writes:
            await asyncio.to_thread(self.store.purge_bindings, now)
            await asyncio.to_thread(self.store.prune_binding_changes, now - CHANGE_RETENTION)

    # -- REGISTER ----------------------------------------------------------------------------

    async def __call__(self, register: RegisterRequest) -> None:
        """Answer one REGISTER (RFC 3261 §10.3)."""
        request, source = register.request, register.source
        try:
            name = parse_uri(request.uri).bare_host.lower().rstrip(".")
        except CallXmlError:
            register.respond(400, warning="Request-URI: not a SIP URI")
            return
        domain = self.config.domain(name)
        if domain is None:
            register.respond(404, warning=f"no SIP domain {name!r}")
            return
        if not domain.credentials:
            register.respond(403, warning=f"{domain.name} takes no registrations (no credentials)")
            return
        if domain.secure_media and source.transport != "tls":
            register.respond(403, warning=f"{domain.name} takes registrations over TLS only")
            return
        result = self.registrar.register(
            request, domain=domain.name, user=register.auth_user, source=source, now=self.clock()
        )
        self._changes += 1
        if result.saved or result.removed:
            try:
                async with self._writes:
                    await asyncio.to_thread(
                        self.store.update_bindings,
                        [_record(b) for b in result.saved],
                        [(b.aor, b.key) for b in result.removed],
                        now=self.clock(),
                    )
            except Exception:
                log.exception("registrar: bindings of %s not stored", result.aor)
                register.respond(500, warning="the binding could not be stored")
                return
        for binding in result.saved:
            log.info(
                "registrar: %s registered %s from %s for %d s",
                binding.aor,
                binding.contact,
                label(binding.flow),
                binding.expires_in(self.clock()),
            )
        for binding in result.removed:
            log.info("registrar: %s removed %s", binding.aor, binding.contact)
        if result.status >= 300:
            log.info(
                "registrar: REGISTER from %s refused %d: %s",
                label(source),
                result.status,
                result.warning,
            )
        register.respond(result.status, headers=result.headers, warning=result.warning)

    # -- calls -------------------------------------------------------------------------------

    def registered_flow(self, transport: str, host: str, port: int) -> bool:
        """Whether a TCP/TLS connection from ``host``:``port`` is the flow a current binding
        came over (a registered device calling over it)."""
        if transport == "udp":
            return False
        return bool(self.registrar.over_flow(transport, host, port, self.clock()))

    def directory(self, account: AccountConfig) -> AccountDirectory:
        """The users of ``account``'s registrar domains, for its calls."""
        domains = tuple(
            d for d in self.config.domains if d.account_sid == account.sid and d.credentials
        )
        return AccountDirectory(self, domains)

    def callee(self, label_: str, users: list[tuple[DomainConfig, str]]) -> Callee:
        """The current devices of ``users`` (domain, user name) as one callee."""
        now = self.clock()
        branches: list[Branch] = []
        for domain, user in users:
            for binding in self.registrar.lookup(f"{user}@{domain.name}", now):
                branch = _branch(binding, domain)
                if branch is not None:
                    branches.append(branch)
        return Callee(label_, tuple(branches))


class AccountDirectory:
    """Who is registered in one account's domains (a runtime
    :class:`~callxml.runtime.dial.Directory`)."""

    def __init__(self, service: RegistrarService, domains: tuple[DomainConfig, ...]) -> None:
        self._service = service
        self._domains = domains

    def client(self, identity: str) -> Callee:
        """``<Client>identity</Client>``: the user in every registrar domain of the account."""
        return self._service.callee(f"client:{identity}", [(d, identity) for d in self._domains])

    def sip(self, target: Target) -> Callee | None:
        """A SIP URI naming a user of one of the account's registrar domains, else None."""
        host = target.uri.bare_host.lower().rstrip(".")
        user = target.uri.user_unescaped
        domain = next((d for d in self._domains if d.name == host), None)
        if domain is None or not user:
            return None
        return self._service.callee(str(target), [(domain, user)])


def _branch(binding: Binding, domain: DomainConfig) -> Branch | None:
    """How to call one binding: its Contact as the Request-URI (SRTP when the domain requires
    secure media), sent over its flow (RFC 5626 §5.3), then — unless it registered with RFC 5626
    outbound, which forbids new connections — to its Contact's own address (§10.3, §16.5)."""
    try:
        uri = parse_uri(binding.contact)
        if domain.secure_media and not uri.secure:
            uri = uri.with_params(secure="true")
        target = Target.parse(uri)
    except CallXmlError:
        log.warning("registrar: %s has an unusable Contact %s", binding.aor, binding.contact)
        return None
    destinations = [binding.flow]
    if binding.transport != "udp" and not binding.outbound:
        destinations.append(target.next_hop)
    return Branch(target, tuple(destinations))
