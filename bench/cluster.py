"""S6: the cluster on this machine — nginx + 2 hubs + 1 router + Redis + MariaDB, all
sharing both cores with the load (as BENCHMARKS.md says for this scenario).

Two phases, each at a fixed offered rate, on sessions connected through nginx:

* **c2c**: client → client through the websocket. Users are paired across hubs (the
  hub of each session is read from the directory), each sender writes
  ``{"type": "send", "users": [peer], "body": {"i", "t"}}`` on its own socket; the
  peer's latency is receive time - ``t``. Every message is stored in the peer's inbox.
* **http**: business server → nginx ``POST /v1/notifications`` (one user each, stored),
  latency of the HTTP answer and of the delivery.

Server CPU = utime+stime of every cluster process (nginx master + workers, hubs,
router, redis-server, and the MariaDB server) before/after each phase.

    .venv/bin/python -m bench.cluster --pairs 500 --c2c-rates 2000,4000 --http-rates 2000 \\
        --runs 3 --json s6.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any, ClassVar

import orjson

from bench.c2cload import PAD, Workers
from bench.httpload import HttpPool
from bench.procs import cpu_seconds, tree
from bench.scenarios import Criterion, Scenario, scenario
from bench.targets import Request

TARGET_C2C = 12_900.0
TARGET_HTTP = 5_000.0


# -- measurement ----------------------------------------------------------------------------


def _pct(sorted_lat: list[float], q: float) -> float:
    if not sorted_lat:
        return float("nan")
    return sorted_lat[min(len(sorted_lat) - 1, int(q * len(sorted_lat)))] * 1000


def _server_pids(cluster: Any) -> dict[str, list[int]]:
    """Process group name -> pids (nginx with its workers; the MariaDB server)."""
    groups: dict[str, list[int]] = {}
    for name, pid in cluster.pids().items():
        groups[name.split("-")[0]] = groups.get(name.split("-")[0], []) + tree(pid)
    mariadb = subprocess.run(["pgrep", "-x", "mariadbd"], capture_output=True, text=True)
    groups["mariadb"] = [int(p) for p in mariadb.stdout.split()]
    return groups


def _cpu(groups: dict[str, list[int]]) -> dict[str, float]:
    return {name: cpu_seconds(pids) for name, pids in groups.items()}


async def _drain(workers: Workers, expected: int, wait_s: float) -> list[dict[str, Any]]:
    """Collect until everything arrived, or nothing new arrived for ``wait_s``."""
    last, since = -1, time.monotonic()
    while True:
        got = await workers.all("collect", [None] * len(workers.pipes))
        n = sum(len(g["lat"]) // 8 for g in got)
        if n != last:
            last, since = n, time.monotonic()
        if n >= expected or time.monotonic() - since > wait_s:
            return got
        await asyncio.sleep(0.2)


def _summary(kind: str, rate: float, sent: int, got: list[dict[str, Any]], duration: float,
             cpu_by: dict[str, float], extra: dict[str, Any]) -> dict[str, Any]:
    cpu = sum(cpu_by.values())
    lat: list[float] = []
    for g in got:
        a = array("d")
        a.frombytes(g["lat"])
        lat.extend(a)
    lat.sort()
    received = len(lat)
    return {
        "phase": kind, "offered_per_s": rate, "sent": sent, "delivered": received,
        "deliveries_per_s": received / duration if duration else 0.0,
        "lost": sent - received, "duplicates": sum(g["dups"] for g in got),
        "errors": sum(g["errors"] for g in got),
        "error_samples": [s for g in got for s in g["error_samples"]][:3],
        "closed": sum(g["closed"] for g in got),
        "p50_ms": _pct(lat, 0.50), "p90_ms": _pct(lat, 0.90), "p99_ms": _pct(lat, 0.99),
        "max_ms": lat[-1] * 1000 if lat else float("nan"),
        "cpu_us_per_delivery": cpu / received * 1e6 if received else float("nan"),
        **{f"cpu_us_{name}": v / received * 1e6 if received else float("nan")
           for name, v in sorted(cpu_by.items())},
        **extra,
    }


async def _http_phase(cluster: Any, receivers: list[str], rate: float, duration: float,
                      prefix: str) -> tuple[int, list[float], int, int, float]:
    """Send at ``rate`` for ``duration``; returns (sent, answer latencies, failed,
    unrouted, seconds from the first send to the last answer)."""
    host, port = "127.0.0.1", int(cluster.url.rsplit(":", 1)[1])
    pool = HttpPool(host, port, max_conns=128)
    await pool.prewarm(32)
    auth = (("Authorization", f"Bearer {cluster.api_key}"),)
    lat: list[float] = []
    failed = 0
    unrouted: list[int] = []  # answered 200 but no live session was found
    tasks: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        nonlocal failed
        body = orjson.dumps({"users": [receivers[n % len(receivers)]], "body": {
            "i": f"{prefix}{n}", "t": time.time(), "p": PAD}})
        from bench.httpload import encode

        t0 = time.perf_counter()
        try:
            status, payload = await pool.send(encode(host, port, Request(
                "/v1/notifications", body, auth)))
        except (ConnectionError, TimeoutError):
            failed += 1
            return
        if status != 200:
            failed += 1
            return
        lat.append(time.perf_counter() - t0)
        if b'"sessions":0' in payload:
            unrouted.append(n)

    start = time.time() + 0.05
    n, total = 0, int(rate * duration)
    while n < total:
        delay = start + n / rate - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        while n < total and start + n / rate <= time.time():
            t = asyncio.create_task(one(n))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            n += 1
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    span = time.time() - start
    pool.close()
    return n, sorted(lat), failed, len(unrouted), span


#: HubLink transports (docs/cluster.md): the router's env for each
LINKS = {"framed": {}, "grpc": {"PUSHGATE_ROUTER_LINK_LISTEN": "off"}}


async def run_once(pairs: int, c2c_rates: list[float], http_rates: list[float], duration: float,
                   load_procs: int, log: Any, link: str = "framed") -> list[dict[str, Any]]:
    from deploy.local.cluster import LocalCluster

    rows: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="pushgate-s6-"))
    cluster = LocalCluster(hubs=2, routers=1, workdir=workdir, nginx_access_log=False,
                           log_level="warning", router_env=LINKS[link])
    await asyncio.to_thread(cluster.start)
    workers = Workers(load_procs)
    try:
        host, port = "127.0.0.1", int(cluster.url.rsplit(":", 1)[1])
        users = [f"s6u{i}" for i in range(2 * pairs)]
        per = [users[i::load_procs] for i in range(load_procs)]
        owner = {u: i for i, us in enumerate(per) for u in us}
        log(f"S6: connecting {len(users)} sessions through nginx ({cluster.url})")
        await workers.all("connect", [{"host": host, "port": port,
                                       "users": [(u, cluster.token(u)) for u in us]}
                                      for us in per])
        hub_of = await _hubs_of(cluster, users)
        by_hub: dict[str, list[str]] = {}
        for u in users:
            by_hub.setdefault(hub_of[u], []).append(u)
        groups = list(by_hub.values())
        if len(groups) != 2:
            raise RuntimeError(f"sessions are on {len(groups)} hubs, expected 2")
        k = min(len(groups[0]), len(groups[1]))
        pairs_x = [(groups[0][i], groups[1][i]) for i in range(k)] + \
                  [(groups[1][i], groups[0][i]) for i in range(k)]
        log(f"S6: {len(groups[0])} + {len(groups[1])} sessions on the two hubs; "
            f"{len(pairs_x)} cross-hub sender->peer pairs")
        server = _server_pids(cluster)
        for rate in c2c_rates:
            prefix = f"c{rate:g}-"
            await workers.all("reset", [prefix] * load_procs)
            by_worker: list[list[tuple[str, str]]] = [[] for _ in range(load_procs)]
            for s, peer in pairs_x:
                by_worker[owner[s]].append((s, peer))
            cpu0, t0 = _cpu(server), time.monotonic()
            sent = sum(await workers.all("send", [
                {"pairs": p, "rate": rate * len(p) / len(pairs_x), "duration": duration,
                 "prefix": prefix} for p in by_worker]))
            got = await _drain(workers, sent, 5)
            elapsed = time.monotonic() - t0
            cpu1 = _cpu(server)
            cpu = {k: cpu1[k] - cpu0[k] for k in cpu1}
            row = _summary("c2c", rate, sent, got, elapsed, cpu, {})
            rows.append(row)
            log(f"S6 c2c @ {rate:g}/s: {row['deliveries_per_s']:.0f} deliveries/s, "
                f"p99 {row['p99_ms']:.1f} ms, lost {row['lost']}, "
                f"{row['cpu_us_per_delivery']:.0f} µs CPU/delivery")
        receivers = [u for u in users]
        for rate in http_rates:
            prefix = f"h{rate:g}-"
            await workers.all("reset", [prefix] * load_procs)
            cpu0, t0 = _cpu(server), time.monotonic()
            sent, http_lat, failed, unrouted, span = await _http_phase(
                cluster, receivers, rate, duration, prefix)
            got = await _drain(workers, sent - failed, 5)
            elapsed = time.monotonic() - t0
            cpu1 = _cpu(server)
            cpu = {k: cpu1[k] - cpu0[k] for k in cpu1}
            row = _summary("http", rate, sent, got, elapsed, cpu, {
                # answered per second of the time the answers took (not of the offered
                # phase: a saturated cluster answers late)
                "http_failed": failed, "http_unrouted": unrouted,
                "http_per_s": len(http_lat) / max(duration, span),
                "http_p50_ms": _pct(http_lat, 0.5), "http_p99_ms": _pct(http_lat, 0.99)})
            rows.append(row)
            log(f"S6 http @ {rate:g}/s: {row['http_per_s']:.0f} answered/s, HTTP p99 "
                f"{row['http_p99_ms']:.1f} ms, delivery p99 {row['p99_ms']:.1f} ms, "
                f"failed {failed}, unrouted {unrouted}, lost {row['lost']}")
    finally:
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(workers.all("quit", [None] * load_procs), 10)
            workers.stop()
        finally:
            await asyncio.to_thread(cluster.stop)
    return rows


async def _hubs_of(cluster: Any, users: list[str]) -> dict[str, str]:
    import httpx

    out: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=cluster.url, timeout=30, headers={
            "Authorization": f"Bearer {cluster.api_key}"}) as http:
        for i in range(0, len(users), 100):
            chunk = users[i:i + 100]
            replies = await asyncio.gather(*(http.get(f"/v1/users/{u}/sessions") for u in chunk))
            for u, r in zip(chunk, replies, strict=True):
                out[u] = r.json()["sessions"][0]["hub"]
    return out


def flat(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The bench.run view: per phase, the row with the most deliveries/s."""
    out: dict[str, Any] = {}
    for phase in ("c2c", "http"):
        mine = [r for r in rows if r["phase"] == phase]
        if not mine:
            continue
        best = max(mine, key=lambda r: r["deliveries_per_s"])
        for key in ("offered_per_s", "deliveries_per_s", "p50_ms", "p99_ms", "lost",
                    "cpu_us_per_delivery"):
            out[f"{phase}_{key}"] = best[key]
        if phase == "http":
            out["http_answered_per_s"] = best["http_per_s"]
            out["http_answer_p99_ms"] = best["http_p99_ms"]
    out["lost"] = sum(r["lost"] for r in rows)
    out["_detail"] = rows  # every phase and rate, with CPU per process group (JSON only)
    return out


@scenario
class S6(Scenario):
    """Runs its own cluster (deploy/local); ignores the target server."""

    name = "S6"
    title = "cluster: nginx + 2 hubs + router + Redis + MariaDB, client->client across hubs"
    standalone: ClassVar[bool] = True
    criteria: ClassVar[list[Criterion]] = [
        Criterion("c2c_deliveries_per_s", "min", TARGET_C2C, ">= 12,900 deliveries/s"),
        Criterion("c2c_p99_ms", "max", 100, "p99 <= 100 ms"),
        Criterion("http_answered_per_s", "min", TARGET_HTTP, "HTTP >= 5,000/s"),
        Criterion("http_answer_p99_ms", "max", 50, "HTTP p99 <= 50 ms"),
    ]

    @property
    def sessions(self) -> int:
        return 0

    def params(self) -> dict[str, Any]:
        return {"pairs": self.n(500, 10)}

    def metrics(self) -> list[tuple[str, str, str]]:
        return [("c2c_deliveries_per_s", "c2c deliveries/s", "{:.0f}"),
                ("c2c_p99_ms", "c2c p99 ms", "{:.1f}"),
                ("c2c_cpu_us_per_delivery", "c2c CPU µs/delivery (all processes)", "{:.0f}"),
                ("http_answered_per_s", "HTTP sends answered/s", "{:.0f}"),
                ("http_answer_p99_ms", "HTTP answer p99 ms", "{:.1f}"),
                ("http_p99_ms", "HTTP delivery p99 ms", "{:.1f}"),
                ("lost", "lost", "{:.0f}")]

    def run_standalone(self, workdir: Any, log: Any) -> dict[str, Any]:
        # the cluster scenario shares both cores among everything: undo bench.run's
        # pinning for the processes started here, restore it afterwards
        pinned = os.sched_getaffinity(0)
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
        try:
            rows = asyncio.run(run_once(self.n(500, 10), [2000.0, 4000.0], [2000.0, 5000.0],
                                        5.0, 2, log))
        finally:
            os.sched_setaffinity(0, pinned)
        return flat(rows)


def median_rows(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per phase/rate, the median of each numeric metric over the runs."""
    out = []
    for i, first in enumerate(runs[0]):
        row = dict(first)
        for key, value in first.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                vals = [r[i][key] for r in runs if i < len(r)]
                row[key] = statistics.median(vals)
        row["runs"] = len(runs)
        out.append(row)
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| phase | offered/s | deliveries/s | p50 ms | p99 ms | lost | CPU µs/delivery | HTTP p99 ms | target |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["phase"] == "c2c":
            ok = r["deliveries_per_s"] >= TARGET_C2C and r["p99_ms"] <= 100 and r["lost"] == 0
            target = f"≥ {TARGET_C2C:,.0f}/s, p99 ≤ 100 ms: {'met' if ok else 'NOT met'}"
            http = "-"
        else:
            ok = r["http_per_s"] >= TARGET_HTTP and r["http_p99_ms"] <= 50 and r["lost"] == 0
            target = f"≥ {TARGET_HTTP:,.0f}/s, p99 ≤ 50 ms: {'met' if ok else 'NOT met'}"
            http = f"{r['http_p99_ms']:.1f}"
        lines.append(f"| {r['phase']} | {r['offered_per_s']:,.0f} | {r['deliveries_per_s']:,.0f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['lost']:.0f} | "
                     f"{r['cpu_us_per_delivery']:.0f} | {http} | {target} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=500, help="cross-hub pairs (2x sessions)")
    ap.add_argument("--c2c-rates", default="2000,4000", help="offered client sends/s")
    ap.add_argument("--http-rates", default="2000,5000", help="offered HTTP sends/s")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    ap.add_argument("--load-procs", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--json", default=None, help="write the rows (median) here")
    ap.add_argument("--links", default="framed", help="HubLink transports to run, "
                    "alternating within each run (framed, grpc: docs/cluster.md)")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    c2c = [float(x) for x in args.c2c_rates.split(",") if x]
    http = [float(x) for x in args.http_rates.split(",") if x]
    links = [x for x in args.links.split(",") if x]
    unknown = sorted(set(links) - set(LINKS))
    if unknown:
        ap.error(f"--links: unknown transport {unknown[0]!r} (known: {', '.join(LINKS)})")
    runs: dict[str, list[list[dict[str, Any]]]] = {link: [] for link in links}
    for i in range(args.runs):
        for link in links:
            log(f"== S6 run {i + 1}/{args.runs}, HubLink {link}")
            runs[link].append(asyncio.run(run_once(args.pairs, c2c, http, args.duration,
                                                   args.load_procs, log, link)))
    out = {}
    for link in links:
        rows = median_rows(runs[link])
        print(f"HubLink {link}:\n{table(rows)}")
        out[link] = {"rows": rows, "runs": runs[link]}
    if args.json:
        Path(args.json).write_text(orjson.dumps(
            {"scenario": "S6", "date": time.strftime("%Y-%m-%d"), **(
                out[links[0]] if len(links) == 1 else {"links": out})},
            option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
