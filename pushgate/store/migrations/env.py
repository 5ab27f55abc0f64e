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
from typing import Any

from alembic import context
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


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=None,  # migrations are explicit; no autogenerate from live metadata
        render_as_batch=connection.dialect.name == "sqlite",
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
