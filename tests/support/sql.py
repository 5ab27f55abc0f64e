"""Raw SQL on a store's database, beside the store: what an operator or an older
version of pushgate would have written there."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import create_async_engine


async def run_sql(url: str, *statements: str) -> None:
    """Runs *statements* in one transaction on the database at *url* (a store URL)."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()
