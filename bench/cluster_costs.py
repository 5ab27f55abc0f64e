"""What one connect and one send cost the shared services of a cluster, measured: the
figures of the 1M-session plan (docs/deploy.md) come from this command.

A private MariaDB (its counters are this run's alone) and a private Redis under the
local cluster launcher (1 router, ``--hubs`` hubs, no nginx). Each phase reads the
counters before and after:

* Redis: ``INFO commandstats`` (calls per command; an ``EVALSHA`` is one script);
* MariaDB: ``SHOW GLOBAL STATUS`` (``Com_insert`` / ``Com_update`` / ``Com_delete`` /
  ``Com_replace`` statements, ``Com_commit``, ``Innodb_rows_*``);
* the hub: CPU seconds and RSS from ``/proc``.

Phases: idle (the background rate: router heartbeats, liveness rounds — subtracted
from the others by duration), connect ``--sessions`` websockets to hub 0 (``--parallel``
handshakes in flight), sends to online users (one user per ``POST
/v1/notifications``, ``--parallel`` in flight), sends to offline users, disconnect.

    .venv/bin/python -m bench.cluster_costs --sessions 2000 --sends 2000 --json costs.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from websockets.asyncio.client import ClientConnection, connect

from bench.procs import cpu_seconds, rss_kb
from deploy.local import mysql
from deploy.local.cluster import LocalCluster
from deploy.local.mariadb import PrivateMariaDB

MYSQL_COUNTERS = ("Com_insert", "Com_update", "Com_delete", "Com_replace", "Com_commit",
                  "Com_select", "Innodb_rows_inserted", "Innodb_rows_updated",
                  "Innodb_rows_deleted")
WRITES = ("Com_insert", "Com_update", "Com_delete", "Com_replace")


def redis_calls(url: str) -> dict[str, int]:
    r = redis.Redis.from_url(url)
    try:
        stats = r.info("commandstats")
    finally:
        r.close()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def redis_memory(url: str) -> int:
    r = redis.Redis.from_url(url)
    try:
        return int(r.info("memory")["used_memory"])
    finally:
        r.close()


def mysql_counters(server_url: str) -> dict[str, int]:
    rows = mysql.execute(server_url, "SHOW GLOBAL STATUS")
    found = {str(name): int(value) for name, value in rows if name in MYSQL_COUNTERS}
    return {k: found.get(k, 0) for k in MYSQL_COUNTERS}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)
            if after.get(k, 0) != before.get(k, 0)}


class Meter:
    def __init__(self, cluster: LocalCluster, server_url: str) -> None:
        self.cluster = cluster
        self.server_url = server_url
        self.hub_pid = cluster.pids()["hub-0"]
        self.idle_redis_per_s: dict[str, float] = {}

    def snapshot(self) -> dict[str, Any]:
        return {"t": time.monotonic(), "redis": redis_calls(self.cluster.redis_url),
                "redis_memory": redis_memory(self.cluster.redis_url),
                "mysql": mysql_counters(self.server_url),
                "hub_cpu": cpu_seconds([self.hub_pid]), "hub_rss_kb": rss_kb([self.hub_pid])}

    async def measure(self, name: str, n: int, work: Callable[[], Awaitable[None]]) -> dict[str, Any]:
        before = await asyncio.to_thread(self.snapshot)
        await work()
        after = await asyncio.to_thread(self.snapshot)
        seconds = after["t"] - before["t"]
        redis_d = delta(after["redis"], before["redis"])
        background = {k: v * seconds for k, v in self.idle_redis_per_s.items()}
        net = {k: redis_d.get(k, 0) - background.get(k, 0.0) for k in redis_d}
        mysql_d = delta(after["mysql"], before["mysql"])
        out = {
            "phase": name, "n": n, "seconds": round(seconds, 3),
            "per_s": round(n / seconds, 1) if seconds else None,
            "redis_calls": redis_d,
            "redis_per_op": {k: round(v / n, 3) for k, v in sorted(net.items()) if n},
            "redis_total_per_op": round(sum(net.values()) / n, 3) if n else None,
            "mysql": mysql_d,
            "mysql_writes_per_op": round(sum(mysql_d.get(k, 0) for k in WRITES) / n, 3)
            if n else None,
            "mysql_commits_per_op": round(mysql_d.get("Com_commit", 0) / n, 3) if n else None,
            "hub_cpu_ms_per_op": round((after["hub_cpu"] - before["hub_cpu"]) * 1000 / n, 3)
            if n else None,
            "hub_rss_kb_delta": after["hub_rss_kb"] - before["hub_rss_kb"],
            "redis_memory_bytes_per_op": round(
                (after["redis_memory"] - before["redis_memory"]) / n) if n else None,
        }
        print(f"{name:>12}: n={n} in {seconds:.2f} s ({out['per_s']}/s); Redis commands "
              f"{out['redis_total_per_op']}/op {out['redis_per_op']}; MySQL writes "
              f"{out['mysql_writes_per_op']}/op, commits {out['mysql_commits_per_op']}/op; "
              f"hub CPU {out['hub_cpu_ms_per_op']} ms/op; Redis memory "
              f"{out['redis_memory_bytes_per_op']} B/op", file=sys.stderr)
        return out


async def gather_limited(n: int, parallel: int, one: Callable[[int], Awaitable[Any]]) -> list[Any]:
    gate = asyncio.Semaphore(parallel)

    async def run(i: int) -> Any:
        async with gate:
            return await one(i)

    return list(await asyncio.gather(*(run(i) for i in range(n))))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="pushgate-costs-"))
    db = PrivateMariaDB(base / "mariadb")
    db.install()
    db.start()
    try:
        with LocalCluster(hubs=args.hubs, routers=1, nginx=False, workdir=base / "cluster",
                          mysql_url=db.url) as c:
            meter = Meter(c, db.url)
            hub = c.hub(0)
            phases: list[dict[str, Any]] = []

            async def idle() -> None:
                await asyncio.sleep(args.idle_s)

            idle_out = await meter.measure("idle", 1, idle)
            meter.idle_redis_per_s = {k: v / idle_out["seconds"]
                                      for k, v in idle_out["redis_calls"].items()}
            phases.append(idle_out)

            sockets: list[ClientConnection] = []

            async def open_one(i: int) -> None:
                ws = await connect(f"{hub.ws_url}?token={hub.token(f'u{i}')}",
                                   open_timeout=60, max_queue=None)
                hello = orjson.loads(await ws.recv())
                assert hello["type"] == "hello", hello
                sockets.append(ws)

            rss_before = rss_kb([meter.hub_pid])

            async def connect_all() -> None:
                await gather_limited(args.sessions, args.parallel, open_one)

            phases.append(await meter.measure("connect", args.sessions, connect_all))
            rss_per_session = (rss_kb([meter.hub_pid]) - rss_before) / args.sessions

            async with httpx.AsyncClient(base_url=hub.base_url, timeout=60, headers={
                    "Authorization": f"Bearer {hub.api_key}"}) as http:
                async def send(user: str) -> None:
                    r = await http.post("/v1/notifications",
                                        json={"users": [user], "body": {"n": 1}})
                    r.raise_for_status()

                async def sends_online() -> None:
                    await gather_limited(args.sends, args.parallel,
                                         lambda i: send(f"u{i % args.sessions}"))

                async def sends_offline() -> None:
                    await gather_limited(args.sends, args.parallel,
                                         lambda i: send(f"off{i}"))

                phases.append(await meter.measure("send online", args.sends, sends_online))
                phases.append(await meter.measure("send offline", args.sends, sends_offline))

            scripts_before = redis_calls(c.redis_url).get("evalsha", 0)

            async def close_all() -> None:
                """Until the router ran every compare-and-delete (one EVALSHA each)."""
                await gather_limited(len(sockets), args.parallel,
                                     lambda i: sockets[i].close())
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    done = redis_calls(c.redis_url).get("evalsha", 0) - scripts_before
                    if done >= len(sockets):
                        break
                    await asyncio.sleep(0.05)

            phases.append(await meter.measure("disconnect", len(sockets), close_all))
            for ws in sockets:
                with contextlib.suppress(Exception):
                    await ws.close()
            return {"hubs": args.hubs, "sessions": args.sessions, "sends": args.sends,
                    "parallel": args.parallel,
                    "hub_rss_kb_per_session": round(rss_per_session, 1), "phases": phases}
    finally:
        db.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hubs", type=int, default=1)
    p.add_argument("--sessions", type=int, default=2000)
    p.add_argument("--sends", type=int, default=2000)
    p.add_argument("--parallel", type=int, default=50)
    p.add_argument("--idle-s", type=float, default=5.0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    result = asyncio.run(run(args))
    print(f"hub RSS per session (cluster mode, this run): {result['hub_rss_kb_per_session']} KB",
          file=sys.stderr)
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
