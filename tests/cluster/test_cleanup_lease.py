"""Two embedded hubs (``routers=0``) on one MariaDB database: only the lease holder
cleans; when it is killed (SIGKILL, no release) the other takes over after the lease
TTL and cleans everything."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from deploy.local.cluster import LocalCluster
from pushgate.store import migrate
from tests import services
from tests.support.api import api
from tests.support.waiting import wait_for

LEASE_TTL_S = 2.0
CLEANUP = {"PUSHGATE_CLEANUP_INTERVAL_S": "0.2", "PUSHGATE_CLEANUP_BATCH": "5",
           "PUSHGATE_CLEANUP_LEASE_TTL_S": str(LEASE_TTL_S)}


def expired_total(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("pushgate_events_expired_total "):
            return float(line.split()[1])
    raise AssertionError("no pushgate_events_expired_total in /metrics")


class Watch:
    """Polls the lease row and the cleanup counter of each running hub (by pid)."""

    def __init__(self, url: str, cluster: LocalCluster) -> None:
        self.url = url
        self.cluster = cluster
        self.holders: list[int] = []  # pid of each lease holder seen, in order
        self.cleaned: dict[int, float] = {}

    async def poll(self) -> None:
        rows = await asyncio.to_thread(
            services.execute, self.url, "SELECT holder FROM leases WHERE name = 'cleanup'")
        if rows:
            pid = int(rows[0][0].split(":")[-2])
            if not self.holders or self.holders[-1] != pid:
                self.holders.append(pid)
        for i, child in enumerate(self.cluster.hubs):
            if child is None or child.pid is None:
                continue
            async with httpx.AsyncClient(base_url=self.cluster.hub_urls[i], timeout=5) as http:
                r = await http.get("/metrics")
            self.cleaned[child.pid] = expired_total(r.text)

    async def until(self, check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        async def polled() -> object:
            await self.poll()
            return await check()

        try:
            await wait_for(polled, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: holders {self.holders}, cleaned {self.cleaned}") from None


async def send_expiring(c: LocalCluster, hub: int, n: int, tag: str) -> None:
    async with api(c.hub(hub)) as http:
        for i in range(n):
            r = await http.post("/v1/notifications", json={
                "users": [f"u{i % 7}"], "body": {"i": f"{tag}{i}"}, "ttl": 1})
            assert r.status_code == 200, r.text


async def test_one_cleaner_at_a_time_and_takeover_after_kill(
    tmp_path: Path, mysql_server: str, redis_server: str
) -> None:
    with services.mysql_database(mysql_server) as url:
        await migrate(url)
        with LocalCluster(hubs=2, routers=0, workdir=tmp_path / "cluster", nginx=False,
                          redis_url=redis_server, store_url=url, migrate=False,
                          hub_env=CLEANUP) as c:
            index = {pid: i for i, pid in enumerate(child.pid for child in c.hubs if child)}
            watch = Watch(url, c)

            # events expire at once (ttl 1 s) and are sent through both hubs
            await asyncio.gather(send_expiring(c, 0, 30, "a"), send_expiring(c, 1, 30, "b"))

            async def first_cleaned() -> bool:
                return sum(watch.cleaned.values()) >= 60

            await watch.until(first_cleaned, 20, "the 60 expired events cleaned")
            assert len(watch.holders) == 1, watch.holders
            holder = watch.holders[0]
            other = next(p for p in index if p != holder)
            assert watch.cleaned[holder] == 60 and watch.cleaned[other] == 0, watch.cleaned

            # more expiring events, then the holder dies without releasing its lease
            await send_expiring(c, index[other], 20, "c")
            killed_at = time.monotonic()
            await asyncio.to_thread(c.kill_hub, index[holder])

            async def taken_over() -> bool:
                return watch.holders[-1] == other and watch.cleaned.get(other, 0) > 0

            await watch.until(taken_over, LEASE_TTL_S + 15, "the other hub taking over")
            assert watch.holders == [holder, other]
            # it could not take the lease before the dead holder's had expired
            assert time.monotonic() - killed_at >= LEASE_TTL_S - 0.5

            async def all_clean() -> bool:
                rows = await asyncio.to_thread(services.execute, url,
                                               "SELECT COUNT(*) FROM events")
                return rows[0][0] == 0

            await watch.until(all_clean, 20, "every expired event cleaned")
            inboxes = await asyncio.to_thread(services.execute, url,
                                              "SELECT user_id, head_seq, live FROM inboxes")
            assert sum(h for _, h, _ in inboxes) == 80  # every event stored once
            assert all(live == 0 for _, _, live in inboxes)  # and cleaned once
