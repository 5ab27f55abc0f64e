"""Operating a running local cluster: ``status``, ``kill``, ``restart`` and ``start`` of
one process by name (``hub-0``, ``router-1``, ``nginx``, ``redis``).

The launcher (``python -m deploy.local.cluster up``, :mod:`deploy.local.cli`) describes
its cluster in ``<workdir>/cluster.json`` (its own PID; each process's name, role, PID,
address, log) and rewrites it whenever something changes. The commands read it:

* ``status`` looks at each process itself (``/proc/<pid>/stat``: running, stopped by
  SIGSTOP, dead) and checks its health: a hub's ``/healthz`` and ``/readyz``, a router's
  gRPC port (it answers the HTTP/2 handshake; the router has no gRPC health service), nginx's
  ``/nginx-health``, Redis' ``PING``. Exit code 0 when every process is healthy, 1 if not.
* ``kill`` signals the process itself, as an operator's ``kill`` would (nginx: its
  whole process group, master and workers), and waits until the signal took effect;
  after a process is gone, also until the launcher has written that into ``cluster.json``
  and ``cluster.env`` (whose PID for it is then empty). Exit code 0 once the signal took
  effect, 1 if it did not in time or the process was not running.
* ``restart`` / ``start`` are done by the launcher, which owns the children (they die
  with it; a restarted router gets its old port back, a restarted hub is put into
  nginx's upstreams): the command writes ``<workdir>/control/<id>.request.json``,
  sends the launcher SIGUSR1 and waits for ``<id>.reply.json``, then until the new
  process is healthy. Exit code 0 then, 1 if it failed, was refused (``start`` of a
  running process) or is not healthy in time.

Errors the command cannot act on (no ``cluster.json``, its launcher not running, an
unknown name) exit with code 2 and a message naming the problem.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from deploy.local import redis
from deploy.local.cluster import LocalCluster
from deploy.local.processes import Child, StartError


def _python() -> str:
    """This interpreter as the user would type it: ``.venv/bin/python`` from the checkout
    (a bare ``python`` is the machine's, without pushgate's dependencies)."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


PROG: str = f"{_python()} -m deploy.local.cluster"

STATE_FILE = "cluster.json"
CONTROL_DIR = "control"
EXIT_OK, EXIT_UNHEALTHY, EXIT_ERROR = 0, 1, 2
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "STOP": signal.SIGSTOP,
           "CONT": signal.SIGCONT}
CHECK_TIMEOUT = 1.0
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # empty SETTINGS frame
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

Record = dict[str, Any]


class ControlError(Exception):
    """The command cannot act: no launcher, stale state, unknown name (exit code 2)."""


# -- processes, from /proc -----------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of ``pid``, ``None`` if there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])


def start_time(pid: int | None) -> int | None:
    stat = _stat(pid) if pid else None
    return stat[1] if stat else None


def process_state(pid: int | None, started: int | None = None) -> str:
    """``running``, ``stopped`` (SIGSTOP) or ``dead`` (gone, a zombie, or the PID now
    belongs to another process: its start time is not ``started``)."""
    stat = _stat(pid) if pid else None
    if stat is None or stat[0] in ("Z", "X", "x") or (started is not None and stat[1] != started):
        return "dead"
    return "stopped" if stat[0] in ("T", "t") else "running"


# -- the state file (written by the launcher) ---------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def describe(c: LocalCluster, exit_codes: dict[str, int | None] | None = None,
             busy: dict[str, str] | None = None) -> list[Record]:
    """One record per process of ``c`` (see the module doc)."""
    records: list[Record] = []
    for name, child in c.children():
        role, _, index = name.partition("-")
        rec: Record = {"name": name, "role": role, "pid": None, "start_time": None,
                       "address": None, "url": None, "log": None, "running": False,
                       "exit_code": (exit_codes or {}).get(name)}
        if child is not None and child.pid:
            rec["pid"] = child.pid
            rec["start_time"] = start_time(child.pid)
            rec["running"] = child.alive()
            if not rec["running"] and child.proc is not None:
                rec["exit_code"] = child.proc.returncode
        if role == "hub":
            i = int(index)
            if c.hub_ports[i]:
                rec["address"] = f"127.0.0.1:{c.hub_ports[i]}"
                rec["url"] = c.hub_urls[i]
            rec["log"] = str(c.workdir / f"{name}.log")
        elif role == "router":
            i = int(index)
            if c.router_ports[i]:
                rec["address"] = c.router_addrs[i]
            rec["metrics_url"] = c.router_metrics_urls[i]
            rec["log"] = str(c.workdir / f"{name}.log")
        elif role == "nginx" and c.nginx is not None:
            rec["address"] = f"127.0.0.1:{c.nginx.port}"
            rec["url"] = c.nginx.url
            rec["log"] = str(c.nginx.base / "error.log")
            rec["access_log"] = str(c.nginx.base / "access.log")
        elif role == "redis" and c.redis is not None:
            rec["address"] = str(c.redis.socket)
            rec["url"] = c.redis.url
            rec["log"] = str(c.redis.base / "redis.log")
        if busy and name in busy:
            rec["busy"] = busy[name]
        records.append(rec)
    return records


def write_state(c: LocalCluster, processes: list[Record], *, stopped: bool = False) -> Path:
    pid = os.getpid()
    path = c.workdir / STATE_FILE
    _write_json(path, {
        "launcher": {"pid": pid, "start_time": start_time(pid), "stopped": stopped},
        "workdir": str(c.workdir.resolve()),
        "url": c.url if c.nginx is not None else None,
        "hubs": c.n_hubs, "routers": c.n_routers,
        "updated_at": time.time(),
        "processes": processes,
    })
    return path


def env_name(name: str) -> str:
    """``hub-0`` -> ``PUSHGATE_HUB_0_PID``."""
    return f"PUSHGATE_{name.upper().replace('-', '_')}_PID"


# -- reading it (the commands) ------------------------------------------------------------


def launcher_running(state: Record) -> bool:
    launcher = state.get("launcher") or {}
    return (not launcher.get("stopped")
            and process_state(launcher.get("pid"), launcher.get("start_time")) != "dead")


def load(workdir: Path) -> Record:
    """The state of the cluster in ``workdir``, whose launcher runs; else ControlError."""
    path = workdir / STATE_FILE
    try:
        state: Record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ControlError(f"no running launcher for {workdir}: there is no {path} "
                           f"(start one with `{PROG} up "
                           f"--workdir {workdir}`)") from None
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot read {path}: {exc}") from None
    if not launcher_running(state):
        pid = (state.get("launcher") or {}).get("pid")
        raise ControlError(f"no running launcher for {workdir}: {path} is stale (its "
                           f"launcher, pid {pid}, is not running; the cluster was stopped "
                           f"or the launcher killed)")
    return state


def find(state: Record, name: str) -> Record:
    for rec in state["processes"]:
        if rec["name"] == name:
            return dict(rec)
    names = ", ".join(r["name"] for r in state["processes"])
    raise ControlError(f"unknown process {name!r}: this cluster has {names}")


# -- health ---------------------------------------------------------------------------------


def _http_status(url: str, timeout: float) -> int | None:
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, urllib.error.URLError):
        return None


def _h2_answers(address: str, timeout: float) -> str | None:
    """``None`` if a gRPC server at ``address`` answers the HTTP/2 connection preface
    with its SETTINGS frame in time, else what went wrong. (A process stopped with
    SIGSTOP still gets TCP connections accepted by the kernel, but answers nothing.)"""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(_H2_PREFACE + _H2_SETTINGS)
            head = b""
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    return "closed the connection"
                head += chunk
    except ConnectionRefusedError:
        return "port refuses connections"
    except TimeoutError:
        return f"no HTTP/2 answer in {timeout:g} s"
    except OSError as exc:
        return f"connection failed: {exc}"
    return None if head[3] == 0x04 else "answer is not HTTP/2"


def check(rec: Record, timeout: float = CHECK_TIMEOUT) -> tuple[bool, str]:
    """(healthy, what was seen) of one process record."""
    role, url, address = rec["role"], rec.get("url"), rec.get("address")
    if role == "hub":
        if not url:
            return False, "no address"
        codes = {path: _http_status(f"{url}{path}", timeout) for path in ("/healthz", "/readyz")}
        seen = ", ".join(f"{p} {c if c is not None else 'no answer'}" for p, c in codes.items())
        return all(c == 200 for c in codes.values()), seen
    if role == "router":
        if not address:
            return False, "no address"
        problem = _h2_answers(address, timeout)
        return problem is None, problem or "gRPC port answers"
    if role == "nginx":
        if not url:
            return False, "no address"
        code = _http_status(f"{url}/nginx-health", timeout)
        return code == 200, f"/nginx-health {code if code is not None else 'no answer'}"
    if role == "redis":
        if not address:
            return False, "no address"
        ok = redis.ping(address, timeout)
        return ok, "PING: PONG" if ok else "PING: no answer"
    return False, f"unknown role {role}"


def health(rec: Record, timeout: float = CHECK_TIMEOUT) -> tuple[str, bool, str]:
    """(state, healthy, detail): the state from /proc, then the check if it runs."""
    state = process_state(rec.get("pid"), rec.get("start_time"))
    if rec.get("busy"):
        return rec["busy"], False, f"the launcher is doing: {rec['busy']}"
    if state == "dead":
        code = rec.get("exit_code")
        return state, False, "not running" + (f" (exit code {code})" if code is not None
                                              else "") + f"; `restart {rec['name']}` starts it"
    if state == "stopped":
        return state, False, f"stopped (SIGSTOP); `kill {rec['name']} --signal CONT` resumes it"
    ok, detail = check(rec, timeout)
    return state, ok, detail


# -- commands -------------------------------------------------------------------------------


def status(workdir: Path, *, as_json: bool = False, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    state = load(workdir)
    procs: list[Record] = state["processes"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(procs))) as pool:
        results = list(pool.map(health, procs))
    healthy = all(ok for _, ok, _ in results)
    if as_json:
        rows = [{**rec, "state": st, "healthy": ok, "health": detail}
                for rec, (st, ok, detail) in zip(procs, results, strict=True)]
        print(json.dumps({"launcher": state["launcher"], "healthy": healthy,
                          "processes": rows}, indent=2), file=out)
        return EXIT_OK if healthy else EXIT_UNHEALTHY
    launcher = state["launcher"]
    print(f"cluster in {state['workdir']}: launcher pid {launcher['pid']}"
          + (f", {state['url']}" if state.get("url") else ""), file=out)
    table = [("NAME", "ROLE", "PID", "ADDRESS", "STATE", "HEALTH")]
    for rec, (st, ok, detail) in zip(procs, results, strict=True):
        where = rec.get("url") if rec["role"] in ("hub", "nginx") else rec.get("address")
        table.append((rec["name"], rec["role"], str(rec.get("pid") or "-"), str(where or "-"),
                      st, ("ok: " if ok else "FAILING: ") + detail))
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for r in table:
        print("  ".join(v.ljust(w) for v, w in zip(r[:5], widths, strict=True)) + "  " + r[5],
              file=out)
    bad = [rec["name"] for rec, (_, ok, _) in zip(procs, results, strict=True) if not ok]
    print("all healthy" if healthy else f"not healthy: {', '.join(bad)}", file=out)
    return EXIT_OK if healthy else EXIT_UNHEALTHY


def _wait(check_fn: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not check_fn():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def kill(workdir: Path, name: str, signame: str = "KILL", *, wait: bool = True,
         timeout: float = 30.0, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    sig = SIGNALS[signame]
    rec = find(load(workdir), name)
    pid, started = rec.get("pid"), rec.get("start_time")
    state = process_state(pid, started)
    if state == "dead":
        print(f"{name} is not running; `restart {name}` starts it", file=out)
        return EXIT_UNHEALTHY
    assert pid is not None
    with contextlib.suppress(OSError):
        if rec["role"] == "nginx" and os.getpgid(pid) == pid:
            os.killpg(pid, sig)  # master and workers (a SIGKILLed master leaves workers)
        else:
            os.kill(pid, sig)
    what = f"{name} (pid {pid}): SIG{signame} sent"
    if not wait:
        print(what, file=out)
        return EXIT_OK
    if sig == signal.SIGSTOP:
        goal, done = "stopped", lambda: process_state(pid, started) == "stopped"
    elif sig == signal.SIGCONT:
        goal, done = "running", lambda: process_state(pid, started) != "stopped"
    elif state == "stopped" and sig == signal.SIGTERM:
        print(f"{what}; it is stopped (SIGSTOP): SIGTERM takes effect after "
              f"`kill {name} --signal CONT`", file=out)
        return EXIT_OK
    else:
        goal, done = "gone", lambda: process_state(pid, started) == "dead"
    started_at = time.monotonic()
    if not _wait(done, timeout):
        print(f"{what}; not {goal} after {timeout:g} s", file=out)
        return EXIT_UNHEALTHY
    if goal == "gone" and not _published_gone(
            workdir, name, pid, max(1.0, timeout - (time.monotonic() - started_at))):
        print(f"{what}; gone (the launcher has not updated {STATE_FILE} and cluster.env "
              f"yet)", file=out)
        return EXIT_OK
    print(f"{what}; {goal}", file=out)
    return EXIT_OK


def _published_gone(workdir: Path, name: str, pid: int, timeout: float) -> bool:
    """Wake the launcher (SIGUSR1: it looks at its children at once) and wait until its
    ``cluster.json`` (and ``cluster.env``, written before it) no longer has ``pid``
    running as ``name``. ``True`` too when the launcher is gone (nothing to wait for)."""
    try:
        launcher_pid = load(workdir)["launcher"]["pid"]
        os.kill(launcher_pid, signal.SIGUSR1)
    except (ControlError, OSError):
        return True

    def published() -> bool:
        try:
            rec = find(load(workdir), name)
        except ControlError:
            return True
        return rec.get("pid") != pid or not rec.get("running")

    return _wait(published, timeout)


def request(workdir: Path, action: str, name: str, *, timeout: float = 90.0,
            out: IO[str] | None = None) -> int:
    """Have the launcher ``restart`` / ``start`` process ``name``; wait until it is
    healthy."""
    out = out or sys.stdout
    state = load(workdir)
    old = find(state, name)
    launcher_pid = state["launcher"]["pid"]
    control = workdir / CONTROL_DIR
    control.mkdir(exist_ok=True)
    rid = f"{os.getpid()}-{secrets.token_hex(4)}"
    req_path, reply_path = control / f"{rid}.request.json", control / f"{rid}.reply.json"
    _write_json(req_path, {"id": rid, "action": action, "name": name})
    deadline = time.monotonic() + timeout
    try:
        os.kill(launcher_pid, signal.SIGUSR1)
        while not reply_path.exists():
            if not launcher_running(state):
                raise ControlError(f"the launcher (pid {launcher_pid}) exited before "
                                   f"answering {action} {name}")
            if time.monotonic() >= deadline:
                print(f"{action} {name}: no answer from the launcher (pid {launcher_pid}) "
                      f"in {timeout:g} s", file=out)
                return EXIT_UNHEALTHY
            time.sleep(0.05)
        reply: Record = json.loads(reply_path.read_text())
    finally:
        req_path.unlink(missing_ok=True)
        reply_path.unlink(missing_ok=True)
    if not reply.get("ok"):
        print(f"{action} {name} failed: {reply.get('error')}", file=out)
        return EXIT_UNHEALTHY
    new: Record = reply["process"]
    seen: list[str] = []

    def healthy() -> bool:
        _, ok, detail = health(new)
        seen[:] = [detail]
        return ok

    was = f" (was {old['pid']})" if old.get("pid") and old["pid"] != new["pid"] else ""
    where = new.get("url") if new["role"] in ("hub", "nginx") else new.get("address")
    if not _wait(healthy, max(1.0, deadline - time.monotonic()), interval=0.1):
        print(f"{name} {action}ed: pid {new['pid']}{was}, {where}, but not healthy: "
              f"{seen[0] if seen else '?'}", file=out)
        return EXIT_UNHEALTHY
    print(f"{name} {action}ed: pid {new['pid']}{was}, {where}, healthy", file=out)
    return EXIT_OK


# -- the launcher's side ----------------------------------------------------------------------


class Supervisor:
    """What the launcher does between Ctrl-Cs: keeps ``cluster.json`` current, reports
    children that exit, and carries out ``restart`` / ``start`` requests. Runs in the
    launcher's main thread (children it starts get the parent-death signal)."""

    def __init__(self, cluster: LocalCluster, *, on_change: Callable[[], object] | None = None,
                 err: IO[str] | None = None) -> None:
        self.cluster = cluster
        self.on_change = on_change
        self.err = err or sys.stderr
        self.exit_codes: dict[str, int | None] = {}
        self.reported: set[tuple[str, int]] = set()
        self.busy: dict[str, str] = {}
        self.control = cluster.workdir / CONTROL_DIR

    def clear_requests(self) -> None:
        """Forget requests left by an earlier launcher in this workdir."""
        if self.control.is_dir():
            for path in self.control.glob("*.json"):
                path.unlink(missing_ok=True)

    def publish(self, *, stopped: bool = False) -> None:
        """Write ``cluster.json`` (and what ``on_change`` writes, the launcher's
        ``cluster.env``, first: a command that saw ``cluster.json`` change finds that
        current too)."""
        if self.on_change is not None:
            self.on_change()
        write_state(self.cluster, describe(self.cluster, self.exit_codes, self.busy),
                    stopped=stopped)

    def poll(self) -> None:
        """Report children that exited since the last call (and publish the change)."""
        changed = False
        for name, child in self.cluster.children():
            if child is None or child.pid is None or child.alive():
                continue
            key = (name, child.pid)
            if key in self.reported:
                continue
            self.reported.add(key)
            code = child.proc.returncode if child.proc is not None else None
            self.exit_codes[name] = code
            how = (f"signal {signal.Signals(-code).name}" if code is not None and code < 0
                   else f"code {code}")
            print(f"{name} (pid {child.pid}) exited ({how}); see {child.log_path}; "
                  f"`{PROG} restart {name} --workdir "
                  f"{self.cluster.workdir}` starts it again", file=self.err, flush=True)
            changed = True
        if changed:
            self.publish()

    def serve(self) -> None:
        """Carry out the requests waiting in the control directory, oldest first."""
        if not self.control.is_dir():
            return
        pending = sorted(self.control.glob("*.request.json"), key=_mtime)
        for path in pending:
            try:
                req = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being written, or gone
            path.unlink(missing_ok=True)
            reply = self.handle(str(req.get("action")), str(req.get("name")))
            _write_json(self.control / f"{req.get('id', path.stem)}.reply.json", reply)

    def handle(self, action: str, name: str) -> Record:
        slots = dict(self.cluster.children())
        if name not in slots:
            return {"ok": False, "error": f"unknown process {name!r}"}
        if action not in ("restart", "start"):
            return {"ok": False, "error": f"unknown action {action!r}"}
        child = slots[name]
        if action == "start" and child is not None and child.alive():
            return {"ok": False, "error": f"{name} is running (pid {child.pid}); use restart"}
        print(f"{action} {name}...", file=self.err, flush=True)
        self.busy[name] = f"{action}ing"
        try:
            self.publish()
            if child is not None:
                resume(child)  # a stopped process handles the SIGTERM that stops it
            self._restart(name)
        except (StartError, RuntimeError, OSError) as exc:
            self.exit_codes[name] = None
            return {"ok": False, "error": str(exc)}
        finally:
            self.busy.pop(name, None)
            self.publish()
        rec = next(r for r in describe(self.cluster, self.exit_codes) if r["name"] == name)
        print(f"{name} {action}ed: pid {rec['pid']}", file=self.err, flush=True)
        return {"ok": True, "process": rec}

    def _restart(self, name: str) -> None:
        c = self.cluster
        role, _, index = name.partition("-")
        self.exit_codes.pop(name, None)
        if role == "hub":
            c.stop_hub(int(index))
            c.start_hub(int(index))
        elif role == "router":
            c.stop_router(int(index))
            c.start_router(int(index))
        elif role == "redis":
            c.restart_redis(flush=True)
        elif role == "nginx":
            c.restart_nginx()

    def resume_all(self) -> None:
        """SIGCONT every stopped child, so that stopping the cluster does not wait."""
        for _, child in self.cluster.children():
            if child is not None:
                resume(child)


def resume(child: Child) -> None:
    if child.pid and process_state(child.pid) == "stopped":
        with contextlib.suppress(OSError):
            if os.getpgid(child.pid) == child.pid:
                os.killpg(child.pid, signal.SIGCONT)
            else:
                os.kill(child.pid, signal.SIGCONT)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
