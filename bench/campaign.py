"""S7: a push campaign. ``pushgate serve`` (MariaDB store, pushes queued) takes sends of
10,000 users each (every user has one device: half APNs, half FCM, no live session);
one ``pushgate bridge`` process pushes them to the fake APNs and FCM processes
(``pushgate fake-apns`` / ``fake-fcm``: HTTP/2 + TLS, real auth). Measured: deliveries/s
from the first send to the last push the fakes accepted, the bridge's CPU per push and
its peak RSS.

    .venv/bin/python -m bench.campaign --users 1000000 [--runs 3] [--json out.json]
    .venv/bin/python -m bench.run S7 --targets pushgate --scale 0.05   # the same, as S7

The store is a private ``mariadbd`` started for the run (``bench/mariadb.py``: the
production-like settings of S8, a 2 GiB buffer pool, so that a million events, outbox
rows and devices stay in memory); ``--mysql HOST:PORT`` uses a running server instead
(root, no password): a database ``pushgate_bench_s7_<pid>`` is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import cpu_seconds
from bench.scenarios import Criterion, Scenario, scenario

PER_SEND = 10_000
KEY_ID, TEAM_ID, TOPIC = "BENCHKEY01", "BENCHTEAM1", "com.example.bench"


def _bin() -> str:
    return str(Path(sys.executable).parent / "pushgate")


class Proc:
    """A child process whose stdout lines are collected; waits for a ready prefix."""

    def __init__(self, args: list[str], env: dict[str, str], ready: str, timeout: float = 60):
        # all cores: bench.run pins itself (and so its children) to the load core
        self.p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True,
                                  preexec_fn=lambda: os.sched_setaffinity(0, range(os.cpu_count() or 1)))
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line.startswith(ready):
                self.ready_line = line
                return
            if line == "":
                raise RuntimeError(f"{args[:2]} exited:\n" + "".join(self.out[-30:]))

    def _pump(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.out.append(line)
            self.lines.put(line.strip())
        self.lines.put("")

    def rss_kb(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in KB."""
        got = {}
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    got[line.split(":")[0]] = int(line.split()[1])
        return got.get("VmRSS", 0), got.get("VmHWM", 0)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


async def _sql(server: str, *statements: str, db: str | None = None) -> None:
    import asyncmy

    host, _, port = server.partition(":")
    conn = await asyncmy.connect(host=host, port=int(port or 3306), user="root", password="",
                                 db=db, autocommit=True)
    try:
        async with conn.cursor() as cur:
            for s in statements:
                await cur.execute(s)
    finally:
        conn.close()


def token_of(i: int) -> tuple[str, str]:
    return ("apns", f"{i + 1:064x}") if i % 2 == 0 else ("fcm", f"bench-fcm-{i}")


async def _add_devices(url: str, n: int) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        for start in range(0, n, 20_000):
            async with engine.begin() as conn:
                rows = [(*token_of(i), f"c{i}", TOPIC, 0.0)
                        for i in range(start, min(n, start + 20_000))]
                await conn.exec_driver_sql(
                    "INSERT INTO devices (platform, token, user_id, app, updated_at) "
                    "VALUES (%s, %s, %s, %s, %s)", rows)
    finally:
        await engine.dispose()


async def _fake_total(client: Any, urls: list[str]) -> int:
    total = 0
    for u in urls:
        r = await client.get(f"{u}/_fake/stats")
        total += r.json()["total"]
    return total


async def run_campaign(users: int, log: Any = print, mysql: str | None = None,
                       bridge_env: dict[str, str] | None = None) -> dict[str, Any]:
    """One campaign; ``mysql``: HOST:PORT of a running server, None = a private one;
    ``bridge_env``: extra settings of the bridge (``PUSHGATE_PUSH_CONCURRENCY``, ...)."""
    if mysql is None:
        from bench.mariadb import PrivateMariaDB

        server = PrivateMariaDB()
        log(f"S7: starting a private mariadbd ({server.base})")
        await asyncio.to_thread(server.start)
        try:
            return await run_campaign(users, log, f"127.0.0.1:{server.port}", bridge_env)
        finally:
            await asyncio.to_thread(server.stop)
    import httpx

    from pushgate.store import migrate

    work = Path(tempfile.mkdtemp(prefix="pushgate-s7-"))
    db = f"pushgate_bench_s7_{os.getpid()}"
    url = f"mysql+asyncmy://root@{mysql}/{db}"
    await _sql(mysql, f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
    procs: list[Proc] = []
    try:
        await migrate(url)
        t = time.monotonic()
        await _add_devices(url, users)
        log(f"S7: {users} devices registered in {time.monotonic() - t:.1f} s")
        base = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGATE_")}
        apns = Proc([_bin(), "fake-apns", "--dir", str(work / "apns"), "--key-id", KEY_ID,
                     "--team-id", TEAM_ID, "--no-record"], base, "FAKE_APNS_LISTENING")
        procs.append(apns)
        fcm = Proc([_bin(), "fake-fcm", "--dir", str(work / "fcm"), "--no-record"], base,
                   "FAKE_FCM_LISTENING")
        procs.append(fcm)
        apns_url, fcm_url = apns.ready_line.split()[1], fcm.ready_line.split()[1]
        ca = work / "ca.pem"
        ca.write_bytes((work / "apns/tls/cert.pem").read_bytes()
                       + (work / "fcm/tls/cert.pem").read_bytes())
        push_env = {**base, "PUSHGATE_STORE_URL": url, "PUSHGATE_LOG_LEVEL": "warning",
                    "PUSHGATE_APNS_KEY_FILE": str(work / f"apns/AuthKey_{KEY_ID}.p8"),
                    "PUSHGATE_APNS_KEY_ID": KEY_ID, "PUSHGATE_APNS_TEAM_ID": TEAM_ID,
                    "PUSHGATE_APNS_TOPIC": TOPIC, "PUSHGATE_APNS_URL": apns_url,
                    "PUSHGATE_FCM_SERVICE_ACCOUNT_FILE": str(work / "fcm/service-account.json"),
                    "PUSHGATE_FCM_URL": fcm_url, "PUSHGATE_PUSH_CA_FILE": str(ca)}
        key = "bench-key"
        serve = Proc([_bin(), "serve", "--port", "0", "--data-dir", str(work / "data")],
                     {**push_env, "PUSHGATE_API_KEYS": key, "PUSHGATE_JWT_SECRET": "s" * 32,
                      "PUSHGATE_PUSH_WORKER": "false", "PUSHGATE_PUSH_ENABLED": "true",
                      "PUSHGATE_MAX_USERS_PER_SEND": str(PER_SEND),
                      "PUSHGATE_COMMIT_MAX_PENDING": "1000000"}, "PUSHGATE_LISTENING")
        procs.append(serve)
        gw = serve.ready_line.split()[1]
        bridge = Proc([_bin(), "bridge"], {**push_env, **(bridge_env or {})},
                      "PUSHGATE_BRIDGE_READY")
        procs.append(bridge)
        rss0 = bridge.rss_kb()[0]
        cpu0 = cpu_seconds([bridge.p.pid])
        peak = [rss0]
        done_sending = [0.0]

        async def sample_rss() -> None:
            while True:
                peak[0] = max(peak[0], bridge.rss_kb()[0])
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample_rss())
        t0 = time.monotonic()

        async def send_all() -> None:
            async with httpx.AsyncClient(base_url=gw, timeout=300,
                                         headers={"Authorization": f"Bearer {key}"}) as http:
                for start in range(0, users, PER_SEND):
                    body = {"users": [f"c{i}" for i in range(start, min(users, start + PER_SEND))],
                            "body": {"campaign": "s7", "pad": "x" * 40},
                            "push": {"title": "Spring sale", "body": "-20 % today"}}
                    r = await http.post("/v1/notifications", json=body)
                    r.raise_for_status()
            done_sending[0] = time.monotonic() - t0

        sender = asyncio.create_task(send_all())
        async with httpx.AsyncClient(http2=True, verify=str(ca), timeout=30) as fakes:
            last, last_t = 0, time.monotonic()
            while True:
                await asyncio.sleep(1.0)
                total = await _fake_total(fakes, [apns_url, fcm_url])
                if sender.done() and sender.exception():
                    raise sender.exception()  # type: ignore[misc]
                if total >= users:
                    break
                if total > last:
                    last, last_t = total, time.monotonic()
                elif time.monotonic() - last_t > 120:
                    raise RuntimeError(f"stalled at {total} of {users} pushes")
                if int(time.monotonic() - t0) % 10 == 0:
                    log(f"S7: {total}/{users} pushed after {time.monotonic() - t0:.0f} s, "
                        f"bridge RSS {bridge.rss_kb()[0] / 1024:.0f} MB")
        elapsed = time.monotonic() - t0
        await sender
        sampler.cancel()
        cpu = cpu_seconds([bridge.p.pid]) - cpu0
        rss, hwm = bridge.rss_kb()
        return {"users": users, "deliveries": users, "deliveries_per_s": users / elapsed,
                "elapsed_s": elapsed, "send_phase_s": done_sending[0],
                "stored_per_s": users / done_sending[0] if done_sending[0] else 0.0,
                "bridge_cpu_us_per_push": cpu / users * 1e6,
                "bridge_rss_mb_peak": max(peak[0], hwm) / 1024, "bridge_rss_mb_end": rss / 1024,
                "lost": 0, "duplicates": 0, "http_errors": 0,
                # keys bench.run's one-line summary prints (not measured by S7)
                **dict.fromkeys(("cpu_us_per_delivery", "p50_ms", "p99_ms", "max_ms",
                                 "rss_kb_per_session", "load_cpu_pct"), float("nan"))}
    finally:
        for p in reversed(procs):
            p.stop()
        await _sql(mysql, f"DROP DATABASE IF EXISTS {db}")


@scenario
class S7(Scenario):
    """Runs its own processes (MariaDB store, fakes, bridge); ignores the target server."""

    name = "S7"
    title = "campaign: users with a device each, pushed through fake APNs/FCM"
    standalone: ClassVar[bool] = True
    criteria: ClassVar[list[Criterion]] = [
        Criterion("deliveries_per_s", "min", 20_000, ">= 20,000 deliveries/s"),
        Criterion("bridge_rss_mb_peak", "max", 100, "bridge RSS <= 100 MB"),
    ]

    @property
    def sessions(self) -> int:
        return 0

    def params(self) -> dict[str, Any]:
        return {"users": self.n(1_000_000)}

    def metrics(self) -> list[tuple[str, str, str]]:
        return [("deliveries_per_s", "deliveries/s (end to end)", "{:.0f}"),
                ("stored_per_s", "stored + queued/s (send phase)", "{:.0f}"),
                ("bridge_cpu_us_per_push", "bridge CPU µs/push", "{:.0f}"),
                ("bridge_rss_mb_peak", "bridge RSS MB (peak)", "{:.1f}"),
                ("elapsed_s", "campaign s", "{:.1f}")]

    def run_standalone(self, workdir: Any, log: Any) -> dict[str, Any]:
        return asyncio.run(run_campaign(self.n(1_000_000), log))


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.campaign", description=__doc__)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--mysql", default=None, metavar="HOST:PORT",
                    help="use this MariaDB/MySQL server (default: a private one per run)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--bridge-env", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting of the bridge process, e.g. PUSHGATE_PUSH_CONCURRENCY=500")
    args = ap.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.bridge_env)
    runs = [asyncio.run(run_campaign(args.users, print, args.mysql, extra))
            for _ in range(args.runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(json.dumps({"runs": runs, "median": med}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "median": med}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
