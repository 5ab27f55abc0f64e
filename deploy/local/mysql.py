"""A database of its own for each local cluster run, on a MariaDB/MySQL server.

Uses asyncmy (``pip install -e '.[mysql]'``) on a private event loop, so it works from
synchronous code and from inside a running loop alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
from typing import Any

from sqlalchemy.engine import URL, make_url

DEFAULT_SERVER = "mysql+asyncmy://root@127.0.0.1:3306"
DB_PREFIX = "pushgate_cluster_"


async def _execute(url: URL, *statements: str, database: str | None = None) -> list[Any]:
    try:
        import asyncmy
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("the local cluster needs asyncmy: pip install -e '.[mysql]'") from exc
    conn = await asyncmy.connect(
        host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
        password=url.password or "", db=database or url.database, connect_timeout=5,
        autocommit=True)
    rows: list[Any] = []
    try:
        async with conn.cursor() as cur:
            for sql in statements:
                await cur.execute(sql)
                rows.extend(await cur.fetchall() or ())
    finally:
        await conn.ensure_closed()
    return rows


def run_sync(coro: Any) -> Any:
    """Run a coroutine to completion on its own event loop in a helper thread (works
    from synchronous code and from inside a running loop alike)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def execute(url: str | URL, *statements: str, database: str | None = None) -> list[Any]:
    """Run statements on ``url``'s server, in ``database`` or the URL's (none: no
    database selected), without SQLAlchemy or a pool; all rows."""
    return run_sync(_execute(make_url(url), *statements, database=database))  # type: ignore[no-any-return]


def new_database_name() -> str:
    return f"{DB_PREFIX}{os.getpid()}_{secrets.token_hex(3)}"


def create_database(server_url: str, name: str) -> str:
    """Create ``name`` on the server; return the store URL (asyncmy driver)."""
    execute(server_url, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    url = make_url(server_url).set(drivername="mysql+asyncmy", database=name)
    return url.render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    execute(server_url, f"DROP DATABASE IF EXISTS `{name}`")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_stale(server_url: str) -> list[str]:
    """Drop the databases of launchers that are gone (killed before they could clean
    up): ``pushgate_cluster_<pid>_*`` whose pid no longer runs on this machine."""
    rows = execute(server_url, "SHOW DATABASES LIKE 'pushgate\\_cluster\\_%'")
    stale = []
    for (name,) in rows:
        pid = name[len(DB_PREFIX):].split("_", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            stale.append(name)
    if stale:
        execute(server_url, *(f"DROP DATABASE IF EXISTS `{n}`" for n in stale))
    return stale


def masked(url: str) -> str:
    """The URL with its password hidden, for printing."""
    return make_url(url).render_as_string(hide_password=True)
