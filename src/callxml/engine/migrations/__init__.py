"""Versioned schema migrations for both stores, shipped in the package.

Each migration is a pair of files, ``NNNN_name.sqlite.sql`` and ``NNNN_name.postgres.sql``
(the dialects differ in types and identity columns, nothing else). The store applies the ones
its database lacks, in order, each in one transaction together with its row in
``schema_migrations``, when it opens. Two engines opening one PostgreSQL database at once take an
advisory lock, so a migration runs once. A database whose newest migration is one this code does
not know was migrated by a newer callxml: the store refuses to open it
(:class:`SchemaTooNew`) rather than write records an older schema cannot describe.

To change the schema, add the next pair of files; never edit a released one (a database that
already applied it would not see the change).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from callxml.errors import ConfigError

__all__ = ["DIALECTS", "MIGRATIONS", "Migration", "SchemaTooNew", "latest", "migrate"]

DIALECTS = ("sqlite", "postgres")
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sqlite|postgres)\.sql$")
#: pg_advisory_xact_lock key: "callxml" as a number, so unrelated applications' locks differ.
ADVISORY_LOCK = 0x63616C6C786D6C


class SchemaTooNew(ConfigError):
    """The database was migrated by a newer callxml than this one."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: dict[str, str]  # dialect -> script

    def statements(self, dialect: str) -> list[str]:
        """The script's statements (split on ``;`` at a line end; the scripts keep no ``;``
        inside literals), without comments."""
        lines = [ln for ln in self.sql[dialect].splitlines() if not ln.lstrip().startswith("--")]
        return [s.strip() for s in re.split(r";\s*$", "\n".join(lines), flags=re.M) if s.strip()]


def _load() -> tuple[Migration, ...]:
    found: dict[tuple[int, str], dict[str, str]] = {}
    for entry in resources.files(__name__).iterdir():
        match = _FILE.match(entry.name)
        if match:
            number, name, dialect = match.groups()
            found.setdefault((int(number), name), {})[dialect] = entry.read_text()
    migrations = []
    for (version, name), sql in sorted(found.items()):
        missing = set(DIALECTS) - set(sql)
        if missing:
            raise RuntimeError(f"migration {version:04d}_{name} lacks {sorted(missing)}")
        migrations.append(Migration(version, name, sql))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations must be numbered 1, 2, 3...: {versions}")
    return tuple(migrations)


MIGRATIONS = _load()


def latest() -> int:
    """The schema version this code writes."""
    return MIGRATIONS[-1].version


class Executor(Protocol):
    def execute(self, sql: str, params: Any = ..., /) -> Any: ...


_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at {real} NOT NULL
)"""


def migrate(
    dialect: str,
    transaction: Callable[[], AbstractContextManager[Executor]],
    *,
    where: str,
) -> list[int]:
    """Bring the database up to :func:`latest`; returns the versions applied (empty when it
    was current). ``transaction`` opens one transaction; ``where`` names the database in
    errors. Raises :class:`SchemaTooNew` for a database ahead of this code."""
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    applied: list[int] = []
    with transaction() as db:
        if dialect == "postgres":
            db.execute(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK})")
        db.execute(_TABLE.format(real=real))
        rows = db.execute("SELECT version FROM schema_migrations").fetchall()
        done = {int(row["version"]) for row in rows}
        newest = max(done, default=0)
        if newest > latest():
            raise SchemaTooNew(
                f"store: {where} has schema version {newest}, newer than this callxml knows "
                f"({latest()}); run the callxml release that migrated it, or a later one"
            )
        for migration in _pending(done):
            for statement in migration.statements(dialect):
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            applied.append(migration.version)
    return applied


def _pending(done: set[int]) -> Iterator[Migration]:
    return (m for m in MIGRATIONS if m.version not in done)
