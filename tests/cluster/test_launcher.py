"""The local cluster launcher and its private nginx: websocket upgrade and HTTP through
nginx, proxy headers, a dead hub skipped and a restarted one taken back after a reload,
Redis restarts, a failed start, and the command line (Ctrl-C and a killed launcher
leave no process behind)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pushgate_client import Client, State

from deploy.local import cli, mysql, redis
from deploy.local.cluster import LocalCluster
from deploy.local.processes import StartError
from tests.support.api import api
from tests.support.ports import refused_port
from tests.support.waiting import wait_for, wait_for_sync
from tests.support.ws import ws_client, ws_connect

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 15.0


@pytest.fixture(scope="module")
def embedded_cluster(cluster_binaries: None, mysql_run_db: str,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Two embedded hubs (no routers) sharing this run's database, behind nginx."""
    with LocalCluster(hubs=2, routers=0, workdir=tmp_path_factory.mktemp("cluster"),
                      store_url=mysql_run_db, migrate=False) as c:
        yield c


def sessions(c: LocalCluster) -> list[int | None]:
    return [c.hub_sessions(i) for i in range(c.n_hubs)]


async def until_sessions(c: LocalCluster, what: str, expected: Any) -> list[int | None]:
    """Until the hubs' session counts (/readyz) satisfy ``expected`` (a predicate)."""
    return await wait_for(lambda: asyncio.to_thread(sessions, c), TIMEOUT, what,
                          until=expected)


async def test_websocket_and_http_send_through_nginx(embedded_cluster: LocalCluster) -> None:
    """Two websockets of alice through nginx land on the two hubs (least_conn); an HTTP
    send through nginx reaches the one on the hub that took the request (embedded hubs
    do not deliver across hubs: that is the routers' job), and the other fetches it
    from the shared store."""
    c = embedded_cluster
    async with ws_client(c.edge, "alice") as one, ws_client(c.edge, "alice") as two, \
            api(c.edge) as http:
        for conn in (one, two):
            assert conn.hello["user"] == "alice"
        await until_sessions(c, "one session on each hub", lambda n: n == [1, 1])
        reply = await http.post("/v1/notifications",
                                json={"users": ["alice"], "body": {"text": "via nginx"}})
        assert reply.status_code == 200, reply.text
        result = reply.json()["results"][0]
        assert result["sessions"] == 1
        first = await asyncio.wait(
            [asyncio.create_task(conn.recv_type("event")) for conn in (one, two)],
            return_when=asyncio.FIRST_COMPLETED, timeout=TIMEOUT)
        done, pending = first
        assert len(done) == 1
        event = done.pop().result()
        assert event["body"] == {"text": "via nginx"} and event["seq"] == result["seq"]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    await until_sessions(c, "the sessions to leave their hubs", lambda n: n == [0, 0])


async def test_proxy_headers_come_from_nginx_not_the_client(embedded_cluster: LocalCluster) -> None:
    """Hubs trust nginx's X-Forwarded-* and Host; a client cannot forge them through it:
    open-connection answers with nginx's address and ws:// although the client claimed
    https."""
    c = embedded_cluster
    async with api(c.edge) as http:
        reply = await http.post("/v1/open-connection", json={"user": "bob"},
                                headers={"X-Forwarded-Proto": "https",
                                         "X-Forwarded-For": "203.0.113.9"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["url"].startswith(f"{c.ws_url}?token=")
    async with ws_connect(reply.json()["url"]) as conn:
        assert conn.hello["user"] == "bob"


async def test_killed_hub_is_skipped_and_its_client_resumes_on_the_other(
        cluster_binaries: None, shared: dict[str, Any], tmp_path: Path) -> None:
    """kill -9 of the hub holding a client: nginx passes every request that picks the
    dead hub on to the other one (no 502); the SDK client reconnects through nginx to
    the other hub and gets everything accepted meanwhile, in order, once; a restarted
    hub (new port) gets traffic again after nginx's reload."""
    with LocalCluster(hubs=2, routers=1, workdir=tmp_path / "cluster", **shared) as c:
        client = Client(c.url, token=c.token("carol"), after=0, backoff_base=0.05,
                        backoff_cap=0.5, stable_after=0.5)
        received: list[int] = []

        async def collect() -> None:
            async for event in client:
                assert event.seq is not None
                received.append(event.seq)

        async with client, api(c.edge) as http:
            await client.wait_connected(TIMEOUT)
            reader = asyncio.create_task(collect())
            counts = await until_sessions(c, "carol on one hub", lambda n: n in ([0, 1], [1, 0]))
            victim = counts.index(1)
            other = 1 - victim
            first = await http.post("/v1/notifications", json={"users": ["carol"], "body": 1})
            assert first.status_code == 200, first.text

            dead_port = c.hub_ports[victim]
            await asyncio.to_thread(c.kill_hub, victim)
            accepted = [first.json()["results"][0]["seq"]]
            for n in range(2, 6):  # while carol reconnects: nginx must not answer 502
                reply = await http.post("/v1/notifications",
                                        json={"users": ["carol"], "body": n})
                assert reply.status_code == 200, reply.text
                accepted.append(reply.json()["results"][0]["seq"])

            await wait_for(lambda: asyncio.to_thread(c.hub_sessions, other), TIMEOUT,
                           "carol on the other hub", until=lambda n: n == 1)
            await wait_for(lambda: len(received), TIMEOUT, "every event",
                           until=lambda n: n >= len(accepted))
            assert received == accepted  # in order, none lost, none twice
            assert client.state is State.CONNECTED

            # restart: new port, nginx reloaded; of the next three websockets least_conn
            # sends at least one to the restarted hub (whether or not the reloaded
            # workers still count carol's connection on the other)
            await asyncio.to_thread(c.start_hub, victim)
            async with ws_client(c.edge, "dave"), ws_client(c.edge, "erin"), \
                    ws_client(c.edge, "fred"):
                # /readyz of a hub that has just started can be slow to answer under load
                await until_sessions(c, "a session on the restarted hub",
                                     lambda n: (n[victim] or 0) >= 1)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        # nginx tried the dead hub and passed the request on ("<dead>, <live>" upstreams,
        # 200 or 101); a websocket's line is written when it closes, hence the wait
        passed_on = f"127.0.0.1:{dead_port}, 127.0.0.1:{c.hub_ports[other]}"
        log = c.workdir / "nginx" / "access.log"

        def skipped() -> list[str]:
            return [line for line in log.read_text().splitlines() if passed_on in line]

        lines = await wait_for(skipped, TIMEOUT, "a request passed on from the dead hub")
        assert all('" 200 ' in line or '" 101 ' in line for line in lines), lines


async def test_async_use_and_redis_restart(cluster_binaries: None, mysql_server: str,
                                           tmp_path: Path) -> None:
    """``async with`` works; restart_redis keeps the address (a unix socket), and loses
    the data unless asked to keep it."""
    async with LocalCluster(hubs=1, routers=0, workdir=tmp_path / "cluster",
                            mysql_url=mysql_server) as c:
        assert c.redis is not None
        url, sock, key = c.redis_url, c.redis.socket, f"{c.redis_prefix}k"
        assert redis.command(sock, "SET", key, "v") == b"+OK\r\n"
        await asyncio.to_thread(c.restart_redis, flush=False)
        assert redis.command(sock, "GET", key) == b"$1\r\nv\r\n"
        await asyncio.to_thread(c.restart_redis, flush=True)
        assert c.redis_url == url
        assert redis.command(sock, "GET", key) == b"$-1\r\n"
        pids = c.pids()
        assert set(pids) == {"redis", "nginx", "hub-0"}
    assert not [p for p in pids.values() if _alive(p)]


def _fill_descriptor_gaps() -> list[int]:
    """Take every free descriptor number below the highest one open (returned, to be
    closed): a socket opened next gets a number no earlier (now closed) one had."""
    top = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    held: list[int] = []
    while (fd := os.open(os.devnull, os.O_RDONLY)) <= top:
        held.append(fd)
    os.close(fd)
    return held


def test_hubs_start_after_nginx_restarted(cluster_binaries: None, shared: dict[str, Any],
                                         tmp_path: Path) -> None:
    """restart_nginx binds a new listening socket, at whatever descriptor number is free
    then (the launcher opens and closes files meanwhile); a later hub (re)start reloads
    that nginx with the hub's new port, and waits for its old workers, as before."""
    with LocalCluster(hubs=2, routers=0, workdir=tmp_path / "cluster", **shared) as c:
        held = _fill_descriptor_gaps()
        try:
            c.restart_nginx()
        finally:
            for fd in held:
                os.close(fd)
        for i in (0, 1, 0):
            c.stop_hub(i)
            c.start_hub(i)
            conf = (c.workdir / "nginx" / "nginx.conf").read_text()
            assert f"server 127.0.0.1:{c.hub_ports[i]} " in conf
        with httpx.Client(base_url=c.url, timeout=TIMEOUT) as http:
            assert http.get("/readyz").status_code == 200


def test_failed_start_says_why_and_leaves_nothing(cluster_binaries: None, tmp_path: Path) -> None:
    with refused_port() as port:
        c = LocalCluster(hubs=1, routers=0, workdir=tmp_path,
                         mysql_url=f"mysql+asyncmy://root@127.0.0.1:{port}")
        with pytest.raises(StartError, match="cannot create the run's database"):
            c.start()
    assert c.pids() == {}


# -- the command line -------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    return "?"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_cli(tmp_path: Path, mysql_server: str, *, hubs: int = 1,
               routers: int = 1) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PUSHGATE_CLUSTER_MYSQL_URL": mysql_server, "PYTHONPATH": str(REPO)}
    # a workdir relative to where the command runs, as the default ./pushgate-cluster is
    # (nginx took its paths relative to its own prefix: it did not start)
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.local.cluster", "up", "--hubs", str(hubs),
         "--routers", str(routers), "--workdir", "cli", "--log-level", "warning"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    out = []
    for line in proc.stdout:  # the summary ends with this line once everything is up
        out.append(line)
        if line.startswith("Ctrl-C stops everything"):
            break
    else:
        proc.wait(10)
        proc.stdout.close()
        pytest.fail("launcher exited:\n" + "".join(out))
    return proc, "".join(out)


def _url(summary: str) -> str:
    return next(line.split()[1] for line in summary.splitlines()
                if line.strip().startswith("url "))


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_cli_up_serves_and_leaves_nothing_behind(cluster_binaries: None, mysql_server: str,
                                                tmp_path: Path, how: str) -> None:
    proc, summary = _start_cli(tmp_path, mysql_server)
    try:
        url = _url(summary)
        assert "api key" in summary and "pushgate listen --user alice" in summary
        # the printed commands work with the env file: send, then listen from seq 0
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGATE_")}
        for line in (tmp_path / "cli" / "cluster.env").read_text().splitlines():
            key, value = line.removeprefix("export ").split("=", 1)
            env[key] = value
        assert env["PUSHGATE_URL"] == url
        pushgate = str(Path(sys.executable).parent / "pushgate")
        sent = subprocess.run([pushgate, "send", '{"text":"hi"}', "--user", "alice"], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        got = subprocess.run([pushgate, "listen", "--user", "alice", "--after", "0", "--count",
                              "1"], env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=60)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["body"] == {"text": "hi"}
        assert not (tmp_path / "pushgate-data").exists()  # no secrets generated aside
        children = _children(proc.pid)
        assert len(children) >= 5  # redis, router, hub, nginx master + worker
        # the PIDs: in the summary, the env file and cluster.json, all the launcher's
        pids = {name: int(env[f"PUSHGATE_{name.upper().replace('-', '_')}_PID"])
                for name in ("redis", "nginx", "router-0", "hub-0")}
        assert set(pids.values()) <= children
        assert int(env["PUSHGATE_LAUNCHER_PID"]) == proc.pid
        assert f"pid {pids['hub-0']}" in summary and f"launcher pid {proc.pid}" in summary
        state = json.loads((tmp_path / "cli" / "cluster.json").read_text())
        assert {p["name"]: p["pid"] for p in state["processes"]} == pids
    finally:
        if how == "ctrl-c":
            proc.send_signal(signal.SIGINT)
        else:
            proc.kill()
        code = proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == (0 if how == "ctrl-c" else -signal.SIGKILL)
    # after SIGKILL: parent-death signal, the hub drains
    wait_for_sync(lambda: [f"{p}: {_cmdline(p)}" for p in children if _alive(p)], 20,
                  "every child gone", until=lambda alive: not alive)
    # cluster.json stays behind, stale: the commands say there is no launcher
    code, out = _cli("status", "--workdir", str(tmp_path / "cli"))
    assert code == 2 and "no running launcher" in out and "stale" in out, out
    database = _store(summary).rsplit("/", 1)[1]
    dropped = mysql.drop_stale(mysql_server)  # what the next launcher does first
    assert (database in dropped) == (how == "sigkill")


def _store(summary: str) -> str:
    return next(line.split()[1] for line in summary.splitlines()
                if line.strip().startswith("store "))


# -- operating a running cluster: status, kill, restart ---------------------------------


def _cli(*args: str) -> tuple[int, str]:
    """``python -m deploy.local.cluster <args>``, in this process: (exit code, output)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return code, out.getvalue()


@dataclass
class Operated:
    """A running ``up --hubs 2 --routers 2`` and how to operate it."""

    proc: subprocess.Popen[str]
    workdir: Path
    summary: str

    def run(self, command: str, *args: str) -> tuple[int, str]:
        return _cli(command, *args, "--workdir", str(self.workdir))

    def status(self) -> tuple[int, dict[str, dict[str, Any]]]:
        code, out = self.run("status", "--json")
        return code, {p["name"]: p for p in json.loads(out)["processes"]}

    def until_status(self, what: str, until: Any) -> dict[str, dict[str, Any]]:
        return wait_for_sync(self.status, TIMEOUT, what, until=lambda s: until(*s))[1]

    def http(self) -> httpx.Client:
        env = dict(line.removeprefix("export ").split("=", 1) for line in
                   (self.workdir / "cluster.env").read_text().splitlines())
        return httpx.Client(base_url=env["PUSHGATE_URL"], timeout=TIMEOUT,
                            headers={"Authorization": f"Bearer {env['PUSHGATE_API_KEY']}"})


@pytest.fixture(scope="module")
def operated(cluster_binaries: None, mysql_server: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operated]:
    tmp = tmp_path_factory.mktemp("operated")
    proc, summary = _start_cli(tmp, mysql_server, hubs=2, routers=2)
    try:
        yield Operated(proc, tmp / "cli", summary)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0


NAMES = {"nginx", "redis", "router-0", "router-1", "hub-0", "hub-1"}


def _sends(http: httpx.Client, n: int = 6) -> list[int]:
    return [http.post("/v1/notifications",
                      json={"users": ["alice"], "body": {"n": i}}).status_code
            for i in range(n)]


def test_cli_status_lists_every_process_healthy(operated: Operated) -> None:
    """One line per process with role, PID, address, state and health, exit 0; the
    real command line too."""
    done = subprocess.run([sys.executable, "-m", "deploy.local.cluster", "status",
                           "--workdir", str(operated.workdir)], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines()[2:-1]}
    assert set(lines) == NAMES, done.stdout
    children = _children(operated.proc.pid)
    code, procs = operated.status()
    assert code == 0
    for name, rec in procs.items():
        assert rec["healthy"] and rec["state"] == "running", rec
        assert rec["pid"] in children and str(rec["pid"]) in lines[name]
        assert rec["role"] == name.split("-")[0] and rec["role"] in lines[name]
        assert f"pid {rec['pid']}" in operated.summary
    assert "/healthz 200, /readyz 200" in lines["hub-0"]
    assert procs["hub-0"]["url"] in lines["hub-0"]
    assert procs["router-1"]["address"] in lines["router-1"]


def test_cli_kill_and_restart_a_hub(operated: Operated) -> None:
    """kill hub-1: status shows it dead (exit 1), nginx still serves sends; restart
    hub-1: a new PID, healthy, serving (directly and through nginx)."""
    _, before = operated.status()
    old = before["hub-1"]["pid"]
    code, out = operated.run("kill", "hub-1")
    assert code == 0 and f"(pid {old}): SIGKILL sent; gone" in out, out
    code, procs = operated.status()
    assert code == 1
    assert procs["hub-1"]["state"] == "dead" and not procs["hub-1"]["healthy"]
    assert all(procs[n]["healthy"] for n in NAMES - {"hub-1"}), procs
    with operated.http() as http:
        assert _sends(http) == [200] * 6  # nginx passes requests on from the dead hub

        code, out = operated.run("restart", "hub-1")
        assert code == 0, out
        printed = re.search(r"hub-1 restarted: pid (\d+) \(was (\d+)\)", out)
        assert printed is not None and int(printed[2]) == old and "healthy" in out, out
        new = int(printed[1])
        assert new != old
        code, procs = operated.status()
        assert code == 0, procs
        assert procs["hub-1"]["pid"] == new and new in _children(operated.proc.pid)
        env = (operated.workdir / "cluster.env").read_text()
        assert f"PUSHGATE_HUB_1_PID={new}\n" in env
        direct = http.post(f"{procs['hub-1']['url']}/v1/notifications",
                           json={"users": ["alice"], "body": "direct"})
        assert direct.status_code == 200, direct.text
        assert _sends(http) == [200] * 6


def test_cli_stop_and_continue_a_router(operated: Operated) -> None:
    """kill router-0 --signal STOP: status shows it stopped (exit 1); CONT: healthy."""
    code, out = operated.run("kill", "router-0", "--signal", "STOP")
    assert code == 0 and "SIGSTOP sent; stopped" in out, out
    code, procs = operated.status()
    assert code == 1 and procs["router-0"]["state"] == "stopped", procs["router-0"]
    assert all(procs[n]["healthy"] for n in NAMES - {"router-0"}), procs
    code, out = operated.run("kill", "router-0", "--signal", "CONT")
    assert code == 0 and "SIGCONT sent; running" in out, out
    operated.until_status("every process healthy again", lambda code, _: code == 0)


def test_cli_unknown_name(operated: Operated) -> None:
    for command in ("kill", "restart", "start"):
        code, out = operated.run(command, "hub-9")
        assert code == 2, out
        assert "unknown process 'hub-9'" in out and "hub-0, hub-1" in out, out
    code, out = operated.run("kill", "hub-0", "--signal", "BOGUS")
    assert code == 2 and "invalid choice" in out, out
    code, out = operated.run("start", "hub-0")  # running: start refuses, restart it is
    assert code == 1 and "hub-0 is running" in out and "use restart" in out, out


def test_cli_without_a_running_launcher(tmp_path: Path) -> None:
    """No cluster.json, or one whose launcher is gone: exit 2 and says so."""
    code, out = _cli("status", "--workdir", str(tmp_path))
    assert code == 2 and "no running launcher" in out and "cluster.json" in out, out
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(30)
    (tmp_path / "cluster.json").write_text(json.dumps({
        "launcher": {"pid": gone.pid, "start_time": None, "stopped": False},
        "workdir": str(tmp_path), "processes": [{"name": "hub-0", "role": "hub", "pid": 1}]}))
    for args in (("status",), ("kill", "hub-0"), ("restart", "hub-0")):
        code, out = _cli(*args, "--workdir", str(tmp_path))
        assert code == 2, out
        assert f"launcher, pid {gone.pid}, is not running" in out and "stale" in out, out


# these change PIDs the summary printed: after the tests that compare with it


def _env_file(workdir: Path) -> dict[str, str]:
    return dict(line.removeprefix("export ").split("=", 1)
                for line in (workdir / "cluster.env").read_text().splitlines())


def test_cli_env_file_empties_the_pid_of_a_process_not_running(operated: Operated) -> None:
    """cluster.env never keeps the PID of a dead process (a later `kill -STOP
    $PUSHGATE_HUB_1_PID` could hit a reused PID): `kill` returns once both files say it
    is not running; a process that dies otherwise is emptied once the launcher sees it;
    a restart writes the new PID. `kill` of a process that is not running exits 1."""
    _, before = operated.status()
    old = before["hub-1"]["pid"]
    assert _env_file(operated.workdir)["PUSHGATE_HUB_1_PID"] == str(old)
    code, out = operated.run("kill", "hub-1")
    assert code == 0 and "gone" in out, out
    assert _env_file(operated.workdir)["PUSHGATE_HUB_1_PID"] == ""
    code, out = operated.run("kill", "hub-1")
    assert code == 1 and "hub-1 is not running" in out, out

    # the process dies without the command (as when it crashes): the launcher notices
    other = before["hub-0"]["pid"]
    os.kill(other, signal.SIGKILL)  # a child of our launcher
    wait_for_sync(lambda: _env_file(operated.workdir)["PUSHGATE_HUB_0_PID"], TIMEOUT,
                  "hub-0's PID emptied in cluster.env", until=lambda pid: pid == "")
    state = json.loads((operated.workdir / "cluster.json").read_text())
    assert {p["name"]: p["running"] for p in state["processes"]}["hub-0"] is False

    for name in ("hub-0", "hub-1"):
        code, out = operated.run("restart", name)
        assert code == 0, out
    code, procs = operated.status()
    assert code == 0, procs
    env = _env_file(operated.workdir)
    for name in ("hub-0", "hub-1"):
        assert env[f"PUSHGATE_{name.upper().replace('-', '_')}_PID"] == str(procs[name]["pid"])
    assert {procs["hub-0"]["pid"], procs["hub-1"]["pid"]}.isdisjoint({old, other})


def test_cli_restart_nginx_then_hubs(operated: Operated) -> None:
    """After `restart nginx`, restarting and starting hubs still works (the new nginx
    has the listening socket at another descriptor than the first): exit 0, the new
    PID printed, nginx reloaded with the hub's new port, requests served."""
    # a hub restarted first takes the launcher's descriptor numbers that nginx's first
    # listening socket had: the new nginx gets its socket at another number
    code, out = operated.run("restart", "hub-1")
    assert code == 0, out
    code, out = operated.run("restart", "nginx")
    assert code == 0 and "nginx restarted" in out, out
    for _ in range(2):  # the second reload waits for the first's workers too
        code, out = operated.run("restart", "hub-0")
        assert code == 0 and "hub-0 restarted" in out and "healthy" in out, out
    code, out = operated.run("kill", "hub-1")
    assert code == 0, out
    code, out = operated.run("start", "hub-1")
    assert code == 0 and "hub-1 started" in out, out
    code, procs = operated.status()
    assert code == 0, procs
    conf = (operated.workdir / "nginx" / "nginx.conf").read_text()
    for name in ("hub-0", "hub-1"):
        assert f"server {procs[name]['address']} " in conf, conf
    with operated.http() as http:
        assert _sends(http) == [200] * 6
