"""Two gateways on one MariaDB database: only the lease holder cleans; when it is killed
(SIGKILL, no release) the other takes over after the lease TTL and cleans everything."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx

from pushgate.store import migrate
from tests import services
from tests.integration.conftest import ServerProcess, running_server

LEASE_TTL_S = 2.0


def expired_total(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("pushgate_events_expired_total "):
            return float(line.split()[1])
    raise AssertionError("no pushgate_events_expired_total in /metrics")


class Watch:
    """Polls the lease row and both gateways' cleanup counters."""

    def __init__(self, url: str, servers: list[ServerProcess]) -> None:
        self.url = url
        self.servers = servers
        self.holders: list[int] = []  # pid of each lease holder seen, in order
        self.cleaned: dict[int, float] = {}

    async def poll(self) -> None:
        rows = await asyncio.to_thread(
            services.execute, self.url, "SELECT holder FROM leases WHERE name = 'cleanup'")
        if rows:
            pid = int(rows[0][0].split(":")[-2])
            if not self.holders or self.holders[-1] != pid:
                self.holders.append(pid)
        for srv in self.servers:
            if srv.proc is None:
                continue
            async with httpx.AsyncClient(base_url=srv.base_url, timeout=5) as http:
                r = await http.get("/metrics")
            self.cleaned[srv.proc.pid] = expired_total(r.text)


async def send_expiring(srv: ServerProcess, n: int, tag: str) -> None:
    async with srv.http() as http:
        for i in range(n):
            r = await http.post("/v1/notifications", json={
                "users": [f"u{i % 7}"], "body": {"i": f"{tag}{i}"}, "ttl": 1})
            assert r.status_code == 200, r.text


async def until(cond, timeout: float, what: str, watch: Watch) -> None:
    deadline = time.monotonic() + timeout
    while True:
        await watch.poll()
        if await cond():
            return
        assert time.monotonic() < deadline, f"{what}: holders {watch.holders}, {watch.cleaned}"
        await asyncio.sleep(0.05)


async def test_one_cleaner_at_a_time_and_takeover_after_kill(
    tmp_path: Path, mysql_server: str
) -> None:
    with services.mysql_database(mysql_server) as url:
        await migrate(url)
        args = ("--store-url", url, "--cleanup-interval-s", "0.2", "--cleanup-batch", "5",
                "--cleanup-lease-ttl-s", str(LEASE_TTL_S))
        with running_server(tmp_path / "a", *args) as a, \
                running_server(tmp_path / "b", *args) as b:
            assert a.proc is not None and b.proc is not None
            pids = {a.proc.pid: a, b.proc.pid: b}
            watch = Watch(url, [a, b])

            # events expire at once (ttl 1 s) and are sent through both gateways
            await asyncio.gather(send_expiring(a, 30, "a"), send_expiring(b, 30, "b"))

            async def first_cleaned() -> bool:
                return sum(watch.cleaned.values()) >= 60

            await until(first_cleaned, 20, "the 60 expired events were not cleaned", watch)
            assert len(watch.holders) == 1, watch.holders
            holder = watch.holders[0]
            other = next(p for p in pids if p != holder)
            assert watch.cleaned[holder] == 60 and watch.cleaned[other] == 0, watch.cleaned

            # more expiring events, then the holder dies without releasing its lease
            await send_expiring(pids[other], 20, "c")
            killed_at = time.monotonic()
            pids[holder].stop(signal.SIGKILL)
            watch.servers = [pids[other]]

            async def taken_over() -> bool:
                return watch.holders[-1] == other and watch.cleaned.get(other, 0) > 0

            await until(taken_over, LEASE_TTL_S + 15, "no takeover", watch)
            assert watch.holders == [holder, other]
            # it could not take the lease before the dead holder's had expired
            assert time.monotonic() - killed_at >= LEASE_TTL_S - 0.5

            async def all_clean() -> bool:
                rows = await asyncio.to_thread(services.execute, url,
                                               "SELECT COUNT(*) FROM events")
                return rows[0][0] == 0

            await until(all_clean, 20, "expired events left", watch)
            inboxes = await asyncio.to_thread(services.execute, url,
                                              "SELECT user_id, head_seq, live FROM inboxes")
            assert sum(h for _, h, _ in inboxes) == 80  # every event stored once
            assert all(live == 0 for _, _, live in inboxes)  # and cleaned once
