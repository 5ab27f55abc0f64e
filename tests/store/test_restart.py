"""MariaDB killed (SIGKILL) and restarted under a write load, on uvloop like the gateway:
callers get retryable StoreUnavailable during the outage, the pool recovers without a
process restart, and no acknowledged event is lost.

Runs its own ``mariadbd`` (private datadir, port and socket): the shared server is
never restarted.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from deploy.local.mariadb import PrivateMariaDB
from pushgate.store import NewEvent, SqlEventStore, StoreUnavailable, migrate
from pushgate.store._pool_log import pool_noise_filter
from tests import services
from tests.support.waiting import wait_for

WRITERS = 4
USERS = 40


@pytest.fixture(scope="module")
def private_mariadb() -> Iterator[PrivateMariaDB]:
    reason = PrivateMariaDB.available()
    if reason:
        if services.in_ci():
            pytest.fail(f"cannot run a private MariaDB in CI: {reason}")
        pytest.skip(f"cannot run a private MariaDB: {reason}")
    base = Path(tempfile.mkdtemp(prefix="pushgate-mariadb-"))  # short: socket path limit
    server = PrivateMariaDB(base)
    try:
        server.install()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


class Load:
    """Writers appending batches with idempotency ids; a batch that fails is sent again
    (same ids) until it is acknowledged, as a router would."""

    def __init__(self, store: SqlEventStore) -> None:
        self.store = store
        self.acked: dict[tuple[str, str], int] = {}  # (user, id) -> seq returned
        self.errors: list[StoreUnavailable] = []
        self.stop = asyncio.Event()

    async def writer(self, w: int) -> None:
        n = 0
        while not self.stop.is_set():
            batch = [
                NewEvent(f"user-{(n * 7 + i) % USERS}", b'{"n":%d}' % n, 3600, f"w{w}-{n}-{i}")
                for i in range(20)
            ]
            n += 1
            while True:
                try:
                    results = await self.store.append(batch)
                    break
                except StoreUnavailable as exc:
                    self.errors.append(exc)
                    await asyncio.sleep(0.05)
            for r in results:
                assert r.id is not None
                assert self.acked.setdefault((r.user, r.id), r.seq) == r.seq

    async def reader(self) -> None:  # takes pooled connections now and then: pre-ping
        while not self.stop.is_set():
            try:
                await self.store.heads([f"user-{i}" for i in range(USERS)])
            except StoreUnavailable as exc:
                self.errors.append(exc)
            await asyncio.sleep(0.2)

    async def until_acked(self, count: int, timeout: float) -> None:
        await wait_for(lambda: len(self.acked), timeout, f"{count} acked events",
                       until=lambda n: n >= count, interval=0.02)


async def new_database(server: PrivateMariaDB) -> str:
    name = services.new_database_name()
    await asyncio.to_thread(services.execute, server.url, f"CREATE DATABASE {name}")
    url = f"{server.url}/{name}"
    await migrate(url)
    return url


async def idle_pool_after_restart(server: PrivateMariaDB) -> None:
    url = await new_database(server)
    store = SqlEventStore(url, engine_options={"pool_size": 4})
    await store.start()
    try:
        # four pooled connections, idle when the server dies
        await asyncio.gather(*(store.append([NewEvent(f"u{i}", b"{}", 60)]) for i in range(4)))
        server.kill()
        await asyncio.to_thread(server.start)
        # Each stale connection fails its pre-ping (uvloop: a closed transport) and is
        # replaced: not one call fails.
        results = await asyncio.gather(
            *(store.append([NewEvent(f"u{i % 4}", b"{}", 60)]) for i in range(8))
        )
        assert sorted(r.seq for [r] in results) == [2, 2, 2, 2, 3, 3, 3, 3]
        assert await store.heads(["u0", "u1", "u2", "u3"]) == dict.fromkeys(
            ["u0", "u1", "u2", "u3"], 3
        )
    finally:
        await store.close()


@pytest.mark.timeout(60)
def test_idle_pooled_connections_survive_a_restart_on_uvloop(
    private_mariadb: PrivateMariaDB,
) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(idle_pool_after_restart(private_mariadb))


async def scenario(server: PrivateMariaDB) -> None:
    url = await new_database(server)
    store = SqlEventStore(url, connect_timeout_s=2, engine_options={"pool_size": 6})
    await store.start()
    load = Load(store)
    tasks = [asyncio.create_task(load.writer(w)) for w in range(WRITERS)]
    tasks.append(asyncio.create_task(load.reader()))
    try:
        await load.until_acked(1000, timeout=30)

        server.kill()
        outage_start = len(load.errors)
        await asyncio.sleep(1.0)
        assert len(load.errors) > outage_start, "no caller noticed the outage"
        acked_during_outage = len(load.acked)
        await asyncio.to_thread(server.start)

        # The same pool and engine serve again: no restart of anything on our side.
        await load.until_acked(acked_during_outage + 1000, timeout=60)
    finally:
        load.stop.set()
        await asyncio.gather(*tasks)
        await store.close()

    assert all(e.retryable for e in load.errors)
    messages = {str(e).split(":")[0] for e in load.errors}
    assert messages <= {"OperationalError", "InterfaceError"}, messages
    rows = await asyncio.to_thread(
        services.execute, url, "SELECT user_id, seq, msg_id FROM events"
    )
    stored = {(user, id_): seq for user, seq, id_ in rows}
    lost = {k: v for k, v in load.acked.items() if stored.get(k) != v}
    assert not lost, f"{len(lost)} acknowledged events lost or changed"
    heads = await asyncio.to_thread(
        services.execute, url, "SELECT user_id, head_seq, live FROM inboxes"
    )
    for user, head, live in heads:
        seqs = sorted(s for (u, _), s in stored.items() if u == user)
        assert seqs == list(range(1, head + 1)) and live == head, user


@pytest.mark.timeout(180)
def test_restart_under_write_load_loses_no_acknowledged_event(
    private_mariadb: PrivateMariaDB, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    pool_noise_filter().reset()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario(private_mariadb))
    # The outage is reported once, clearly, instead of a pool traceback per connection
    # ("Exception during reset or similar" at ERROR).
    pool_errors = [r for r in caplog.records
                   if r.name.startswith("sqlalchemy") and r.levelno >= logging.ERROR]
    assert not pool_errors, [r.getMessage() for r in pool_errors[:3]]
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "pushgate.store" and r.levelno == logging.WARNING]
    # (whether the pool hits a dead connection while resetting one depends on timing)
    assert len(warnings) == (1 if pool_noise_filter().suppressed else 0), warnings
    assert all("lost the connection to the database" in w for w in warnings)
