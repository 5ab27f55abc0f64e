"""Alembic environment of the event store (async engines).

:func:`pushgate.store.migrate` passes an open connection in
``config.attributes["connection"]`` and runs everything inside its transaction.
Without one (the ``alembic`` command line) the URL comes from
``config.attributes["url"]``, the ``sqlalchemy.url`` option or ``PUSHGATE_STORE_URL``,
and an async engine is created here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Collection, Mapping
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from pushgate.store._dialects import for_url, normalize_url

config = context.config


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    url = url or os.environ.get("PUSHGATE_STORE_URL")
    if not url:
        raise RuntimeError("no database URL: set sqlalchemy.url or PUSHGATE_STORE_URL")
    return str(url)


def _commit_step(ctx: MigrationContext, step: Any, heads: Collection[Any],
                 run_args: Mapping[str, Any]) -> None:
    """MySQL: commit each step's version update at once. Its DDL is not transactional
    (every statement commits what came before it), but the version update of the step
    just done stayed open until the next step's first DDL: a step that failed before
    changing anything (0002's downgrade refusing keys that would collide) rolled it back
    and left the previous step's changes under that step's revision, which no upgrade
    repairs (a downgrade from head: push_outbox dropped, alembic_version still 0003)."""
    conn = ctx.connection
    if conn is not None and conn.dialect.name in ("mysql", "mariadb"):
        conn.exec_driver_sql("COMMIT")


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=None,  # migrations are explicit; no autogenerate from live metadata
        render_as_batch=connection.dialect.name == "sqlite",
        on_version_apply=_commit_step,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    dialect = for_url(url)
    engine = create_async_engine(normalize_url(url), poolclass=NullPool)
    dialect.configure(engine)
    try:
        async with dialect.write_engine(engine).begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def main() -> None:
    connection: Any = config.attributes.get("connection")
    if context.is_offline_mode():
        context.configure(url=_url(), literal_binds=True, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    elif connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async(_url()))


main()
