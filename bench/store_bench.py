"""S8: the event store on MySQL/MariaDB. Batched append throughput, then TTL cleanup of
the appended events while a send load runs.

    .venv/bin/python -m bench.store_bench --url mysql+asyncmy://root@127.0.0.1:3306/pushgate_s8

Creates the database named in the URL (refuses if it exists, unless ``--replace``),
migrates it, and drops it at the end (unless ``--keep``). Phases:

1. **append**: ``--procs`` writer processes x ``--writers`` concurrent writers each append
   batches of ``--batch`` events (random users out of ``--users``, idempotency ids,
   ~100-byte bodies) until ``--events`` are stored. The store's clock is set two hours
   back and the TTL is one hour, so everything appended here is already expired.
2. **size**: bytes per event and per user from ``information_schema`` (data + index).
3. **send, no cleanup**: one process sends ``--send-rate`` single-event notifications/s
   (open loop, through a GroupCommitter, as the router does) for ``--baseline-s``;
   latency = completion - scheduled time.
4. **send during cleanup**: the same send load while another process (a router holding
   the cleanup lease) deletes every expired event with the Cleaner (batches of
   ``--cleanup-batch``); the load runs until the cleanup is done.

Prints a table; ``--json PATH`` writes the figures. Targets (BENCHMARKS.md, S8):
append >= 50,000 events/s; send p99 during cleanup <= 2x without.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/store_bench.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.engine import make_url

from pushgate.store import Cleaner, GroupCommitter, NewEvent, SqlEventStore, migrate

BODY = b'{"title":"Spring sale","text":"Everything 20% off until Sunday","campaign":"c-2024-05"}'
TTL_S = 3600
PAST_S = 7200  # appended events are created this long ago: expired by TTL_S


def _say(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- server helpers ------------------------------------------------------------------------


async def _sql(url: str, *statements: str, database: bool = True) -> list[Any]:
    import asyncmy

    u = make_url(url)
    conn = await asyncmy.connect(
        host=u.host or "127.0.0.1", port=u.port or 3306, user=u.username or "root",
        password=u.password or "", db=u.database if database else None, autocommit=True,
    )
    rows: list[Any] = []
    try:
        async with conn.cursor() as cur:
            for statement in statements:
                await cur.execute(statement)
                rows.extend(await cur.fetchall() or ())
    finally:
        await conn.ensure_closed()
    return rows


def sql(url: str, *statements: str, database: bool = True) -> list[Any]:
    return asyncio.run(_sql(url, *statements, database=database))


def settle(url: str, timeout: float = 60.0) -> float:
    """Wait until InnoDB has flushed its dirty pages and purged deleted rows (the
    background work a previous phase left), so that each latency phase starts from the
    same quiet state. Returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        status = dict(sql(url, "SHOW GLOBAL STATUS WHERE Variable_name IN ("
                               "'Innodb_buffer_pool_pages_dirty', 'Innodb_buffer_pool_pages_total',"
                               " 'Innodb_history_list_length')"))
        dirty = int(status["Innodb_buffer_pool_pages_dirty"])
        total = int(status["Innodb_buffer_pool_pages_total"])
        if dirty <= total * 0.02 and int(status["Innodb_history_list_length"]) <= 1000:
            break
        time.sleep(1.0)
    return time.monotonic() - start


class ServerCpu:
    """CPU seconds of the local mariadbd/mysqld (``/proc``), when it runs on this host."""

    def __init__(self, url: str) -> None:
        self.pid: int | None = None
        try:
            [(pid_file,)] = sql(url, "SELECT @@pid_file")
            self.pid = int(Path(pid_file).read_text().split()[0])
            self.seconds()
        except Exception:
            self.pid = None

    def seconds(self) -> float | None:
        if self.pid is None:
            return None
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run(coro: Any) -> Any:
    """Run on uvloop, as the gateway and the router do."""
    import uvloop

    return uvloop.run(coro)


# -- phase 1: append ---------------------------------------------------------------------------


def append_worker(url: str, proc: int, writers: int, events: int, batch: int, users: int,
                  barrier: Any, out: Any) -> None:
    out.put(_run(_append(url, proc, writers, events, batch, users, barrier)))


async def _append(url: str, proc: int, writers: int, events: int, batch: int, users: int,
                  barrier: Any) -> dict[str, Any]:
    store = SqlEventStore(url, clock=lambda: time.time() - PAST_S,
                          engine_options={"pool_size": writers, "max_overflow": 0})
    await store.start()
    latencies: list[float] = []
    per_writer = [events // writers + (1 if w < events % writers else 0) for w in range(writers)]

    async def writer(w: int, count: int) -> None:
        rng = random.Random(proc * 1000 + w)
        n = 0
        while n < count:
            size = min(batch, count - n)
            evs = [NewEvent(f"user-{rng.randrange(users)}", BODY, TTL_S, f"p{proc}w{w}-{n + i}")
                   for i in range(size)]
            t0 = time.perf_counter()
            await store.append(evs)
            latencies.append(time.perf_counter() - t0)
            n += size

    await asyncio.to_thread(barrier.wait)
    start, cpu0 = time.time(), time.process_time()
    await asyncio.gather(*(writer(w, c) for w, c in enumerate(per_writer)))
    end, cpu = time.time(), time.process_time() - cpu0
    await store.close()
    return {"start": start, "end": end, "events": events, "latencies": latencies,
            "client_cpu_s": cpu, "conflicts": store.conflicts}


def run_append(url: str, args: argparse.Namespace) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(args.procs), ctx.Queue()
    shares = [args.events // args.procs + (1 if p < args.events % args.procs else 0)
              for p in range(args.procs)]
    procs = [ctx.Process(target=append_worker, args=(url, p, args.writers, shares[p], args.batch,
                                                    args.users, barrier, out))
             for p in range(args.procs)]
    cpu = ServerCpu(url)
    for p in procs:
        p.start()
    server0 = cpu.seconds()
    results = [out.get() for _ in procs]
    server1 = cpu.seconds()
    for p in procs:
        p.join()
    elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    total = sum(r["events"] for r in results)
    return {
        "events": total,
        "seconds": elapsed,
        "events_per_s": total / elapsed,
        "batch_p50_ms": _pct(latencies, 0.50) * 1000,
        "batch_p99_ms": _pct(latencies, 0.99) * 1000,
        "client_cpu_us_per_event": sum(r["client_cpu_s"] for r in results) / total * 1e6,
        "server_cpu_us_per_event": (server1 - server0) / total * 1e6
        if server0 is not None and server1 is not None else None,
        "conflict_retries": sum(r["conflicts"] for r in results),
    }


# -- phase 2: size -------------------------------------------------------------------------------


def measure_size(url: str) -> dict[str, Any]:
    db = make_url(url).database
    sql(url, "ANALYZE TABLE events, inboxes")
    [(events,)] = sql(url, "SELECT COUNT(*) FROM events")
    [(users,)] = sql(url, "SELECT COUNT(*) FROM inboxes")
    sizes = {name: (int(data), int(index)) for name, data, index in sql(
        url, "SELECT table_name, data_length, index_length FROM information_schema.tables "
             f"WHERE table_schema = '{db}'")}
    ev_data, ev_index = sizes["events"]
    ib_data, ib_index = sizes["inboxes"]
    return {
        "events": events, "users": users, "body_bytes": len(BODY),
        "events_data_bytes": ev_data, "events_index_bytes": ev_index,
        "bytes_per_event": (ev_data + ev_index) / max(events, 1),
        "data_bytes_per_event": ev_data / max(events, 1),
        "index_bytes_per_event": ev_index / max(events, 1),
        "bytes_per_user": (ib_data + ib_index) / max(users, 1),
    }


# -- phases 3 and 4: send load, cleanup ----------------------------------------------------------------


def send_worker(url: str, rate: int, users: int, seconds: float, stop: Any, ready: Any,
                out: Any) -> None:
    out.put(_run(_send(url, rate, users, seconds, stop, ready)))


async def _send(url: str, rate: int, users: int, seconds: float, stop: Any,
                ready: Any) -> dict[str, Any]:
    store = SqlEventStore(url)
    await store.start()
    committer = GroupCommitter(store)
    await committer.start()
    rng = random.Random(7)
    latencies: list[float] = []
    by_second: dict[int, list[float]] = {}
    errors = 0
    pending: set[asyncio.Task[None]] = set()

    async def send(n: int, scheduled: float) -> None:
        nonlocal errors
        try:
            await committer.append([NewEvent(f"user-{rng.randrange(users)}", BODY, 86400,
                                             f"send-{os.getpid()}-{n}")])
            latency = time.perf_counter() - scheduled
            latencies.append(latency)
            by_second.setdefault(int(scheduled - start), []).append(latency)
        except Exception:
            errors += 1

    ready.set()
    start = time.perf_counter()
    n = 0
    while not stop.is_set() and time.perf_counter() - start < seconds:
        due = int((time.perf_counter() - start) * rate)
        while n < due:
            scheduled = start + n / rate
            task = asyncio.create_task(send(n, scheduled))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    await asyncio.gather(*pending)
    await committer.close()
    await store.close()
    return {"sent": n, "seconds": elapsed, "errors": errors,
            "p50_ms": _pct(latencies, 0.50) * 1000, "p99_ms": _pct(latencies, 0.99) * 1000,
            "max_ms": max(latencies, default=float("nan")) * 1000,
            "batches": committer.batches,
            "p99_ms_by_second": [round(_pct(v, 0.99) * 1000, 1) for _, v in sorted(by_second.items())]}


def clean_worker(url: str, batch: int, duty: float, ready: Any, done: Any, out: Any) -> None:
    out.put(_run(_clean(url, batch, duty, ready, done)))


async def _clean(url: str, batch: int, duty: float, ready: Any, done: Any) -> dict[str, Any]:
    store = SqlEventStore(url)
    await store.start()
    cleaner = Cleaner(store, batch=batch, duty=duty, lease=store)
    await asyncio.to_thread(ready.wait)
    await asyncio.sleep(1.0)  # let the send load settle first
    start = time.perf_counter()
    deleted = await cleaner.run_once()
    elapsed = time.perf_counter() - start
    done.set()
    await cleaner.close()
    await store.close()
    return {"deleted": deleted, "seconds": elapsed, "events_per_s": deleted / elapsed}


def run_send(url: str, args: argparse.Namespace, *, with_cleanup: bool) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    stop, ready, out_send, out_clean = ctx.Event(), ctx.Event(), ctx.Queue(), ctx.Queue()
    seconds = 1e9 if with_cleanup else args.baseline_s
    sender = ctx.Process(target=send_worker,
                         args=(url, args.send_rate, args.users, seconds, stop, ready, out_send))
    sender.start()
    cleaner = None
    if with_cleanup:
        cleaner = ctx.Process(target=clean_worker,
                              args=(url, args.cleanup_batch, args.cleanup_duty, ready, stop,
                                    out_clean))
        cleaner.start()
    result = {"send": out_send.get()}
    if cleaner is not None:
        result["cleanup"] = out_clean.get()
        cleaner.join()
    sender.join()
    return result


# -- main ------------------------------------------------------------------------------------------------


def main() -> int:
    ap = build_parser()
    args = ap.parse_args()
    if args.private:
        from bench.mariadb import PrivateMariaDB

        server = PrivateMariaDB(flush_log_at_trx_commit=args.flush_log_at_trx_commit)
        _say(f"starting a private mariadbd in {server.base}")
        server.start()
        try:
            args.url = args.url or f"{server.url}/pushgate_s8"
            return _main(ap, args)
        finally:
            server.stop()
    if not args.url:
        ap.error("--url or --private is required")
    return _main(ap, args)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="mysql+asyncmy://user:pw@host:port/<new db> (default with "
                    "--private: a database on the private server)")
    ap.add_argument("--private", action="store_true",
                    help="run a private mariadbd for the benchmark (bench/mariadb.py: 2 GiB "
                    "buffer pool, 512 MiB redo log, no binlog), stopped at the end")
    ap.add_argument("--flush-log-at-trx-commit", type=int, choices=[1, 2], default=1,
                    help="with --private: innodb_flush_log_at_trx_commit (2 = fsync once a "
                    "second; see docs/storage.md for what that risks)")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--procs", type=int, default=2, help="writer processes")
    ap.add_argument("--writers", type=int, default=2, help="concurrent writers per process")
    ap.add_argument("--send-rate", type=int, default=3000, help="sends/s of the send load")
    ap.add_argument("--baseline-s", type=float, default=30.0)
    ap.add_argument("--cleanup-batch", type=int, default=250)
    ap.add_argument("--cleanup-duty", type=float, default=0.25,
                    help="Cleaner duty: share of time in cleanup transactions")
    ap.add_argument("--append-only", action="store_true", help="phases 1 and 2 only")
    ap.add_argument("--runs", type=int, default=1, help="repeat; the table shows medians")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--replace", action="store_true", help="drop the database first if it exists")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    return ap


def _main(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    url = make_url(args.url)
    if url.get_backend_name() not in ("mysql", "mariadb") or not url.database:
        ap.error("--url must be a mysql+asyncmy:// URL naming a database")
    url_s = url.render_as_string(hide_password=False)
    if sql(url_s, f"SHOW DATABASES LIKE '{url.database}'", database=False) and not args.replace:
        ap.error(f"database {url.database} exists: pass --replace to drop it")
    reports = []
    for n in range(args.runs):
        if args.runs > 1:
            _say(f"run {n + 1} of {args.runs}")
        reports.append(run_once(url_s, args))
        print_table(reports[-1])
    if args.runs > 1:
        print_table(median_report(reports), title="median of runs")
    if args.json:
        args.json.write_text(json.dumps(reports if args.runs > 1 else reports[0], indent=2))
    return 0


def run_once(url_s: str, args: argparse.Namespace) -> dict[str, Any]:
    db = make_url(url_s).database
    if sql(url_s, f"SHOW DATABASES LIKE '{db}'", database=False):
        sql(url_s, f"DROP DATABASE `{db}`", database=False)
    sql(url_s, f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4", database=False)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "args": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "url"}}
    try:
        asyncio.run(migrate(url_s))
        [(version,)] = sql(url_s, "SELECT VERSION()")
        [(pool,)] = sql(url_s, "SELECT @@innodb_buffer_pool_size")
        [(flush,)] = sql(url_s, "SELECT @@innodb_flush_log_at_trx_commit")
        report["server"] = {"version": version, "innodb_buffer_pool_size": int(pool),
                            "innodb_flush_log_at_trx_commit": int(flush),
                            "host": platform.node(), "cpus": os.cpu_count(),
                            "loadavg": os.getloadavg()}
        _say(f"server {version}, buffer pool {int(pool) >> 20} MiB; "
             f"append {args.events:,} events ({args.procs} procs x {args.writers} writers, "
             f"batches of {args.batch})")
        report["append"] = run_append(url_s, args)
        _say(f"append: {report['append']['events_per_s']:,.0f} events/s")
        report["size"] = measure_size(url_s)
        _say(f"size: {report['size']['bytes_per_event']:.0f} B/event; settling")
        if args.append_only:
            return report
        report["settle_s"] = settle(url_s)
        _say(f"send load {args.send_rate}/s for {args.baseline_s:.0f} s, no cleanup")
        report["baseline"] = run_send(url_s, args, with_cleanup=False)["send"]
        settle(url_s)
        _say(f"send load {args.send_rate}/s during the cleanup of "
             f"{report['size']['events']:,} expired events")
        during = run_send(url_s, args, with_cleanup=True)
        report["during_cleanup"], report["cleanup"] = during["send"], during["cleanup"]
        [(left,)] = sql(url_s, f"SELECT COUNT(*) FROM events WHERE expires_at <= {time.time()}")
        report["cleanup"]["expired_left"] = left
    finally:
        if not args.keep:
            sql(url_s, f"DROP DATABASE IF EXISTS `{db}`", database=False)
    if "during_cleanup" in report:
        report["p99_ratio"] = report["during_cleanup"]["p99_ms"] / report["baseline"]["p99_ms"]
    return report


def median_report(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Field-wise median of numeric figures (the structure of the first report)."""

    def merge(values: list[Any]) -> Any:
        first = values[0]
        if isinstance(first, dict):
            return {k: merge([v[k] for v in values]) for k in first}
        if isinstance(first, int | float) and not isinstance(first, bool):
            return statistics.median(values)
        return first

    return merge(reports)  # type: ignore[no-any-return]


def print_table(r: dict[str, Any], title: str = "") -> None:
    a, s = r["append"], r["size"]
    server_cpu = a["server_cpu_us_per_event"]
    rows = [
        ("append, batched", f"{a['events_per_s']:,.0f} events/s", ">= 50,000",
         f"{a['events']:,.0f} events in {a['seconds']:.1f} s; batch p50 {a['batch_p50_ms']:.0f} ms,"
         f" p99 {a['batch_p99_ms']:.0f} ms; CPU/event client {a['client_cpu_us_per_event']:.1f}"
         f" us" + (f", server {server_cpu:.1f} us" if server_cpu is not None else "")
         + f"; {a['conflict_retries']:.0f} conflict retries"),
        ("size per event", f"{s['bytes_per_event']:.0f} B", "",
         f"data {s['data_bytes_per_event']:.0f} + index {s['index_bytes_per_event']:.0f} B"
         f" ({s['events']:,.0f} events, {s['body_bytes']:.0f} B bodies)"),
        ("size per user", f"{s['bytes_per_user']:.0f} B", "",
         f"inboxes: {s['users']:,.0f} users"),
    ]
    if "during_cleanup" in r:
        b, d, c = r["baseline"], r["during_cleanup"], r["cleanup"]
        rows += [
            ("send p99, no cleanup", f"{b['p99_ms']:.1f} ms", "",
             f"p50 {b['p50_ms']:.1f}, max {b['max_ms']:.0f} ms; {b['sent']:,.0f} sent in"
             f" {b['seconds']:.0f} s, {b['errors']:.0f} errors"),
            ("cleanup", f"{c['events_per_s']:,.0f} events/s", "",
             f"{c['deleted']:,.0f} deleted in {c['seconds']:.1f} s;"
             f" {c['expired_left']:.0f} expired left"),
            ("send p99, during cleanup", f"{d['p99_ms']:.1f} ms", "",
             f"p50 {d['p50_ms']:.1f}, max {d['max_ms']:.0f} ms; {d['sent']:,.0f} sent in"
             f" {d['seconds']:.0f} s, {d['errors']:.0f} errors"),
            ("p99 during / without", f"{r['p99_ratio']:.2f}x", "<= 2x", ""),
        ]
    print()
    print(f"S8 store benchmark, {r['server']['version']}, {r['date']} {title}".rstrip())
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(f"  {row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")
    print(f"  (one run; load average at start {r['server']['loadavg'][0]:.1f} on"
          f" {r['server']['cpus']:.0f} CPUs, shared with the server)")


if __name__ == "__main__":
    sys.exit(main())
