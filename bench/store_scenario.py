"""S8 in ``bench.run``: the event store on a private MariaDB (``bench/store_bench.py``
does the work; this adapts it to the runner's table, JSON and medians).

No websocket sessions and no baseline: each run starts a private ``mariadbd``
(``bench/mariadb.py``), appends ``1,000,000 x scale`` already-expired events in batches
of 1,000 from 2 processes x 2 writers, then measures the send p99 (3,000 sends/s
through a GroupCommitter) without and during the cleanup of all of them. Server and
writers share both cores (the runner's core pinning is lifted for this scenario).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from bench.scenarios import Criterion, Scenario, scenario


@scenario
class S8(Scenario):
    name = "S8"
    title = "store: MariaDB batched append; TTL cleanup of the appended events under a send load"
    standalone: ClassVar[bool] = True
    criteria = [Criterion("append_events_per_s", "min", 50000, "≥ 50,000/s"),
                Criterion("send_p99_ratio", "max", 2.0, "≤ 2x"),
                Criterion("cleanup_expired_left", "max", 0, "0")]
    extra_metrics = [
        ("append_events_per_s", "append events/s (batched)", "{:.0f}"),
        ("append_batch_p99_ms", "append batch p99 ms", "{:.0f}"),
        ("append_client_cpu_us", "append CPU µs/event, client", "{:.1f}"),
        ("append_server_cpu_us", "append CPU µs/event, mariadbd", "{:.1f}"),
        ("bytes_per_event", "bytes/event (data+index)", "{:.0f}"),
        ("send_p99_ms_no_cleanup", "send p99 ms, no cleanup", "{:.1f}"),
        ("send_p99_ms_during_cleanup", "send p99 ms, during cleanup", "{:.1f}"),
        ("send_p99_ratio", "send p99 during / without", "{:.2f}"),
        ("cleanup_events_per_s", "cleanup events/s", "{:.0f}"),
        ("cleanup_expired_left", "expired events left", "{:.0f}"),
        ("send_errors", "send errors", "{:.0f}"),
    ]

    def __init__(self, scale: float = 1.0, flush_log_at_trx_commit: int = 1) -> None:
        super().__init__(scale)
        self.events = self.n(1_000_000, 10_000)
        self.flush = flush_log_at_trx_commit

    @property
    def sessions(self) -> int:
        return 0

    def n_workers(self) -> int:
        return 0

    def params(self) -> dict[str, Any]:
        return {"events": self.events, "batch": 1000, "writers": "2 procs x 2",
                "send_rate": 3000, "innodb_flush_log_at_trx_commit": self.flush}

    def metrics(self) -> list[tuple[str, str, str]]:
        return self.extra_metrics

    def run_standalone(self, workdir: Path, log: Any) -> dict[str, Any]:
        from bench import store_bench
        from bench.mariadb import PrivateMariaDB

        reason = PrivateMariaDB.available()
        if reason:
            raise RuntimeError(f"S8 needs a private mariadbd: {reason}")
        affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))  # children use both cores
        server = PrivateMariaDB(flush_log_at_trx_commit=self.flush)
        try:
            log(f"starting a private mariadbd ({server.base})")
            server.start()
            args = store_bench.build_parser().parse_args(
                ["--url", f"{server.url}/pushgate_s8", "--events", str(self.events),
                 "--users", str(self.events),
                 "--baseline-s", str(max(5.0, 30 * min(1.0, self.scale)))])
            r = store_bench.run_once(args.url, args)
        finally:
            server.stop()
            os.sched_setaffinity(0, affinity)
        a, b, d, c = r["append"], r["baseline"], r["during_cleanup"], r["cleanup"]
        out = {
            "append_events_per_s": a["events_per_s"],
            "append_batch_p99_ms": a["batch_p99_ms"],
            "append_client_cpu_us": a["client_cpu_us_per_event"],
            "append_server_cpu_us": a["server_cpu_us_per_event"],
            "bytes_per_event": r["size"]["bytes_per_event"],
            "send_p99_ms_no_cleanup": b["p99_ms"],
            "send_p99_ms_during_cleanup": d["p99_ms"],
            "send_p99_ratio": r["p99_ratio"],
            "cleanup_events_per_s": c["events_per_s"],
            "cleanup_expired_left": c["expired_left"],
            "send_errors": b["errors"] + d["errors"],
            "loadavg_at_start": r["server"]["loadavg"][0],
            "_detail": r,
        }
        log(f"append {out['append_events_per_s']:,.0f}/s, send p99 {b['p99_ms']:.1f} -> "
            f"{d['p99_ms']:.1f} ms ({r['p99_ratio']:.2f}x), cleanup {c['events_per_s']:,.0f}/s")
        return out
