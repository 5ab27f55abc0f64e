"""S5: idle sessions at machine scale — 100,000 websocket sessions held on this machine.

The open-file limit is 20,000 per process, so the sessions are spread over several
server processes (``ceil(sessions / 15,000)`` embedded hubs, each ``pushgate serve``
with its own data dir, all pinned to the server core) and several load processes (≤
5,000 sessions each, each on its own 127.0.0.x source address, pinned to the load
core). Measured: connect rate and server CPU per connect, RSS per session (VmRSS of
all server processes after - before), idle CPU of all server processes over
``idle_s`` with every session open (this includes the servers' websocket pings, every
20 s), sessions closed while idle. A progress bar shows the ramp-up.

Every target runs the same way: the baseline, and the peers (``--peers``) with one
nginx + nchan (master and one worker) or one node (Socket.IO) per 15,000 sessions.

The load client answers websocket pings but sends no application frames, so the hubs
run with ``PUSHGATE_IDLE_TIMEOUT_S=3600`` (a real client sends a ``ping`` frame within
``idle_timeout_s``, default 120 s; that traffic is not part of this scenario).
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any, ClassVar

from bench.procs import cpu_seconds, rss_kb
from bench.progress import Progress
from bench.scenarios import Criterion, Scenario, scenario
from bench.targets import TARGETS, RunningTarget
from bench.wsload import LoadWorkers

PER_HUB = 15_000
PER_WORKER = 5_000


@scenario
class S5(Scenario):
    name = "S5"
    title = "idle sessions: 15,000 per hub process, 100,000 on the machine"
    standalone: ClassVar[bool] = True
    uses_targets: ClassVar[bool] = True
    criteria = [Criterion("rss_kb_per_session", "max", 12.0, "≤ 12 KB"),
                Criterion("idle_cpu_pct", "max", 10.0, "≤ 10 % of a core"),
                Criterion("connect_failed", "max", 0, "0"),
                Criterion("sessions_closed", "max", 0, "0")]
    extra_metrics = [
        ("connected", "sessions held", "{:.0f}"),
        ("hubs", "server processes", "{:.0f}"),
        ("load_procs", "load processes", "{:.0f}"),
        ("rss_kb_per_session", "RSS KB/session", "{:.1f}"),
        ("server_rss_mb", "server RSS MB (all processes)", "{:.0f}"),
        ("idle_cpu_pct", "idle CPU % of a core (all servers)", "{:.1f}"),
        ("connects_per_s", "connects/s", "{:.0f}"),
        ("connect_cpu_ms_per_session", "connect CPU ms/session", "{:.2f}"),
        ("connect_failed", "connect failures", "{:.0f}"),
        ("sessions_closed", "sessions closed while idle", "{:.0f}"),
        ("load_rss_kb_per_session", "load-side RSS KB/session", "{:.1f}"),
    ]

    def __init__(self, scale: float = 1.0, sessions: int = 100_000, idle_s: float = 25.0) -> None:
        super().__init__(scale)
        self._sessions = self.n(sessions, 10)
        self.idle_s = idle_s

    @property
    def sessions(self) -> int:
        return self._sessions

    @property
    def hubs(self) -> int:
        return max(1, math.ceil(self.sessions / PER_HUB))

    def n_workers(self) -> int:
        return 0  # started per hub in run_standalone

    def params(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "hubs": self.hubs, "per_hub_max": PER_HUB,
                "per_load_process_max": PER_WORKER, "idle_s": self.idle_s}

    def metrics(self) -> list[tuple[str, str, str]]:
        return self.extra_metrics

    def run_standalone(self, workdir: Path, log: Any, target: str = "pushgate",
                       server_core: int = 0, load_core: int = 1) -> dict[str, Any]:
        try:
            import uvloop
            return uvloop.run(self._run(workdir, log, target, server_core, load_core))
        except ImportError:
            return asyncio.run(self._run(workdir, log, target, server_core, load_core))

    async def _run(self, workdir: Path, log: Any, target: str, server_core: int,
                   load_core: int) -> dict[str, Any]:
        servers: list[RunningTarget] = []
        workers: LoadWorkers | None = None
        try:
            per_hub = math.ceil(self.sessions / self.hubs)
            log(f"starting {self.hubs} {target} server processes")
            env = {"PUSHGATE_IDLE_TIMEOUT_S": "3600"} if target.startswith("pushgate") else {}
            for h in range(self.hubs):
                own = workdir / f"{target}-hub{h}"  # own logs and data dir per process
                own.mkdir(parents=True, exist_ok=True)
                servers.append(TARGETS[target].start(own, server_core, env=env))
            await asyncio.sleep(1.0)
            # shards: (hub, users), at most PER_WORKER sessions each
            shards: list[tuple[int, list[str]]] = []
            left = self.sessions
            for h in range(self.hubs):
                n = min(per_hub, left)
                left -= n
                users = [f"h{h}u{i}" for i in range(n)]
                k = max(1, math.ceil(n / PER_WORKER))
                shards += [(h, users[j::k]) for j in range(k)]
            workers = LoadWorkers(len(shards), load_core)
            pids = [p for s in servers for p in s.server.pids()]
            rss0 = rss_kb(pids)
            load_rss0 = rss_kb(workers.pids)
            cpu0 = cpu_seconds(pids)
            args = [{"client": servers[h].client, "users": users,
                     "src_ip": f"127.0.0.{2 + i % 250}", "concurrency": 25, "timeout": 60.0,
                     "kind": "raw"} for i, (h, users) in enumerate(shards)]
            log(f"opening {self.sessions:,} sessions: {len(shards)} load processes, "
                f"{self.hubs} servers")
            t0 = time.monotonic()
            await workers.call_all("connect", args)
            bar = Progress(self.sessions, "  sessions")
            deadline = t0 + max(300.0, self.sessions / 100)
            try:
                while True:
                    await asyncio.sleep(0.5)
                    st = await workers.stats()
                    bar.update(st["connected"], st["failed"],
                               f"server RSS {rss_kb(pids) / 1024:,.0f} MB")
                    if st["connect_done"] or time.monotonic() > deadline:
                        break
                    dead = [s.server.name for s in servers if not s.server.alive()]
                    if dead:
                        raise RuntimeError(f"server died while sessions connected: "
                                           f"{servers[0].server.stderr_tail()}")
            finally:
                bar.close()
            secs = time.monotonic() - t0
            cpu1 = cpu_seconds(pids)
            connected = max(1, st["connected"])
            log(f"{st['connected']:,} sessions open in {secs:.0f}s, failed {st['failed']}; "
                f"idle for {self.idle_s:.0f}s")
            await asyncio.sleep(2.0)  # settle
            closed0 = st["closed"]
            c0 = cpu_seconds(pids)
            t_idle = time.monotonic()
            await asyncio.sleep(self.idle_s)
            idle = (cpu_seconds(pids) - c0) / (time.monotonic() - t_idle) * 100
            st = await workers.stats()
            rss1 = rss_kb(pids)
            load_rss1 = rss_kb(workers.pids)
            per_server = [s.server.rss_kb() for s in servers]
            m: dict[str, Any] = {
                "connected": st["connected"], "connect_failed": st["failed"],
                "hubs": self.hubs, "load_procs": len(shards), "connect_s": secs,
                "connects_per_s": st["connected"] / secs,
                "connect_cpu_ms_per_session": (cpu1 - cpu0) / connected * 1e3,
                "rss_kb_per_session": (rss1 - rss0) / connected,
                "server_rss_mb": rss1 / 1024,
                "server_rss_mb_each": [round(r / 1024) for r in per_server],
                "idle_cpu_pct": idle,
                "sessions_closed": st["closed"],
                "sessions_closed_while_idle": st["closed"] - closed0,
                "load_rss_kb_per_session": (load_rss1 - load_rss0) / connected,
            }
            if st["failed"] or st["closed"]:
                parts = await workers.call_all("collect")
                m["connect_fail_samples"] = [s for p in parts for s in p["fail_samples"]][:5]
                m["close_samples"] = [s for p in parts for s in p["close_samples"]][:5]
            log(f"held {st['connected']:,} sessions: RSS {m['rss_kb_per_session']:.1f} "
                f"KB/session ({rss1 / 1024:,.0f} MB in {self.hubs} processes), idle CPU "
                f"{idle:.1f}% of a core, connect {m['connect_cpu_ms_per_session']:.2f} "
                f"ms/session, closed {st['closed']}")
            return m
        finally:
            if workers is not None:
                workers.stop()
            await asyncio.gather(*(asyncio.to_thread(s.server.stop) for s in servers))
