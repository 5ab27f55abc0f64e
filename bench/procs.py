"""Server processes under test: start pinned to a core, wait for the ready line, read
CPU time and RSS from /proc (the whole process tree), always stop."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the benchmark process dies (even by
    SIGKILL), so that no server outlives it."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    kids = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime (all threads) of the given processes, in seconds."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def core_busy_seconds(cores: list[int]) -> dict[int, float]:
    """Per-core busy time (user+nice+system) from /proc/stat, in seconds."""
    out: dict[int, float] = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                core = int(parts[0][3:])
                if core in cores:
                    out[core] = (int(parts[1]) + int(parts[2]) + int(parts[3])) / CLK_TCK
    return out


def rss_kb(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


class ServerProcess:
    """One server under test, started with ``taskset -c CORE`` and logging to files."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], ready_prefix: str,
                 workdir: Path, core: int | str = 0, cwd: str | None = None,
                 pass_fds: tuple[int, ...] = (),
                 ready: Callable[[], str | None] | None = None) -> None:
        """``ready_prefix``: the stdout line that says the server is ready (its second word
        is the URL); or ``ready``, called until it returns the URL (servers that print
        nothing, e.g. nginx). ``pass_fds``: descriptors the server inherits."""
        self.name = name
        self.argv = ["taskset", "-c", str(core), *argv]
        self.env = env
        self.ready_prefix = ready_prefix
        self.out_path = workdir / f"{name}.stdout"
        self.err_path = workdir / f"{name}.stderr"
        self.cwd = cwd
        self.pass_fds = pass_fds
        self.ready = ready
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> str:
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, cwd=self.cwd,
                                         start_new_session=True, pass_fds=self.pass_fds,
                                         preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready is not None:
                url = self.ready()
                if url:
                    self.url = url.rstrip("/")
                    return self.url
            for line in self.out_path.read_text(errors="replace").splitlines():
                if self.ready_prefix and line.startswith(self.ready_prefix):
                    self.url = line.split()[1].rstrip("/")
                    return self.url
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before it was "
                                   f"ready:\n{self.stderr_tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s:\n{self.stderr_tail()}")

    def stderr_tail(self, n: int = 30) -> str:
        try:
            lines = self.err_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stderr_problems(self) -> list[str]:
        """Lines of the server's stderr that look like warnings/errors/tracebacks."""
        try:
            lines = self.err_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        keys = ("error", "exception", "traceback", "warning", "critical",
                "[warn]", "[crit]", "[alert]", "[emerg]")  # the last: nginx's levels
        return [ln for ln in lines if any(k in ln.lower() for k in keys)]

    def pids(self) -> list[int]:
        """Server process tree, without the taskset wrapper (taskset execs, same pid)."""
        return tree(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def rss_kb(self) -> int:
        return rss_kb(self.pids())

    def gc_snapshot(self, timeout: float = 3.0) -> dict | None:
        """With ``--gc-probe``: ask the server (SIGUSR2) for its GC pause totals since the
        previous snapshot. None when the probe is not loaded or did not answer."""
        path = self.env.get("BENCH_GC_PROBE_OUT")
        if not path or not self.alive():
            return None
        import json
        out = Path(path.replace("{pid}", str(self.pid)))
        before = out.stat().st_mtime_ns if out.exists() else 0
        os.kill(self.pid, signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if out.exists() and out.stat().st_mtime_ns != before:
                try:
                    return json.loads(out.read_text())
                except ValueError:
                    pass
            time.sleep(0.01)
        return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``grace`` s, then SIGKILL the process group."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                # still running (so its pid/process group cannot have been reused): kill
                # the process group it was started in
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        return self.proc.returncode
