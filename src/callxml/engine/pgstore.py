"""The PostgreSQL store: the one several engines share (``[store] url = "postgresql://…"``).

The same :class:`~callxml.engine.store.SqlStore` as the embedded SQLite store, over psycopg 3's
synchronous API with a connection pool (psycopg_pool). Why psycopg and not asyncpg: the store
seam is synchronous and the engine already calls it in worker threads (so a slow database never
stalls the event loop), which a thread-safe pool of blocking connections serves directly; asyncpg
would need an async twin of every store method and of every caller. ``bench/store.py`` measures
the cost against raw psycopg statements.

Durability is PostgreSQL's: each store call is one transaction, committed (``synchronous_commit``
as the server has it; its default, ``on``, waits for the WAL flush) before the call returns.

Needs the ``postgres`` extra: ``pip install 'callxml[postgres]'``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from callxml.engine.store import Cursor, SqlStore
from callxml.errors import ConfigError

__all__ = ["PostgresBackend", "PostgresStore", "redacted"]

DEFAULT_POOL_SIZE = 10  # the engine's worker threads rarely hold more at once
CONNECT_TIMEOUT = 10.0  # seconds to reach the server at start (then: the pool's own retries)


def redacted(url: str) -> str:
    """``url`` without its password, for logs and errors."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


@functools.lru_cache(maxsize=512)
def _translated(sql: str) -> str:
    """The store's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Connection:
    """A pooled psycopg connection that takes the store's SQL."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        cursor: Cursor = self._connection.execute(_translated(sql), params or None)
        return cursor


class PostgresBackend:
    dialect = "postgres"

    def __init__(self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        try:
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool
        except ImportError:  # pragma: no cover - depends on the installation
            raise ConfigError(
                "store.url: PostgreSQL needs psycopg: pip install 'callxml[postgres]'"
            ) from None
        import psycopg

        self.where = redacted(url)
        # One plain connection first: a wrong address, password or database name fails at
        # once with the server's own words (the pool would retry until its timeout instead).
        try:
            psycopg.connect(url, connect_timeout=int(CONNECT_TIMEOUT)).close()
        except (psycopg.Error, OSError) as exc:
            raise ConfigError(f"store.url: cannot connect to {self.where}: {exc}") from None
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=False,
            name="callxml-store",
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except (psycopg.Error, OSError) as exc:
            self._pool.close()
            raise ConfigError(f"store.url: cannot connect to {self.where}: {exc}") from None

    @contextmanager
    def transaction(self) -> Iterator[_Connection]:
        with self._pool.connection() as connection, connection.transaction():
            yield _Connection(connection)

    @contextmanager
    def read(self) -> Iterator[_Connection]:
        with self._pool.connection() as connection:
            yield _Connection(connection)

    def close(self) -> None:
        self._pool.close()


class PostgresStore(SqlStore):
    """The :class:`~callxml.engine.store.Store` on PostgreSQL; ``url`` is a libpq URL
    (``postgresql://user:password@host:5432/callxml``) or key/value string."""

    def __init__(
        self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE, node: str | None = None
    ) -> None:
        self.url = redacted(url)
        super().__init__(PostgresBackend(url, pool_size=pool_size), node=node)
