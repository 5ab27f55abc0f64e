"""Real Redis engines for the tests: a Redis Cluster (3 masters, 3 replicas) and a
Sentinel-managed primary (primary + replica + 3 ``redis-sentinel``), all on 127.0.0.1.

They are Debian's ``redis-server`` / ``redis-sentinel`` / ``redis-cli`` (installed by
``tests.services`` when missing), each process in a temporary directory without
persistence, stopped and removed by :meth:`close`. Redis listens on TCP here (the
cluster bus and Sentinel need it; ``--port 0`` means "no TCP" to Redis), so ports are
picked free (:func:`tests.support.ports.free_tcp_ports`) and a start that finds one
taken is retried with new ports.

Failure knobs used by ``tests/cluster/test_redis_failover.py``: :meth:`RedisClusterEngine.kill_master`
(``kill -9`` of the master serving a slot; its replica is promoted after
``cluster-node-timeout``) and :meth:`SentinelEngine.kill_primary` (``kill -9`` of the
primary; the Sentinels promote the replica after ``down-after-milliseconds``).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from deploy.local.processes import Child, StartError
from deploy.local.redis import command, ping
from tests import services
from tests.support.ports import free_tcp_ports
from tests.support.waiting import wait_for_sync

NODE_TIMEOUT_MS = 1000  # cluster-node-timeout: a master unreachable this long fails over
DOWN_AFTER_MS = 1000  # Sentinel's down-after-milliseconds
SERVICE = "pgtest"
HOST = "127.0.0.1"


def _binaries() -> tuple[str, str, str]:
    server = services.provision_binary("redis-server", "redis-server")
    sentinel = services.provision_binary("redis-sentinel", "redis-sentinel")
    cli = services.provision_binary("redis-cli", "redis-tools")
    return server, sentinel, cli


def _info(port: int, *args: str) -> str:
    return command((HOST, port), *args).decode(errors="replace")


def _server_cmd(server: str, port: int, workdir: Path, *extra: str) -> list[str]:
    return [server, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--daemonize", "no", "--loglevel", "notice",
            "--protected-mode", "no", *extra]


class _Engine:
    def __init__(self, name: str) -> None:
        self.base = Path(tempfile.mkdtemp(prefix=f"pushgate-{name}-"))
        self.children: dict[int, Child] = {}  # port -> process

    def _spawn(self, name: str, port: int, cmd: list[str]) -> Child:
        child = Child(f"{name}:{port}", cmd, self.base / f"{name}-{port}.log")
        self.children.pop(port, None)
        child.start()
        self.children[port] = child
        child.wait_until(lambda: ping((HOST, port), 0.5), "answering PING", 30)
        return child

    def kill(self, port: int) -> None:
        """``kill -9`` the process on ``port`` and wait until it is gone."""
        self.children[port].kill()

    def heal(self) -> None:
        """Start the killed processes again on their ports (a cluster node rejoins as a
        replica of the master that replaced it; an old primary is turned into a replica
        by the Sentinels) and wait until the engine is whole."""
        for port, child in list(self.children.items()):
            if not child.alive():
                name = child.name.split(":")[0]
                self._spawn(name, port, child.cmd)
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 60) -> None:
        raise NotImplementedError

    def close(self) -> None:
        for child in self.children.values():
            child.stop(signal.SIGKILL, timeout=10)
        self.children.clear()
        shutil.rmtree(self.base, ignore_errors=True)


def start_with_retries(make: type[_Engine], attempts: int = 3) -> _Engine:
    """Start an engine; a port taken between picking it and binding it is retried."""
    for attempt in range(attempts):
        engine = make()
        try:
            engine.start()  # type: ignore[attr-defined]
            return engine
        except (StartError, AssertionError, subprocess.SubprocessError) as exc:
            engine.close()
            if attempt == attempts - 1:
                raise services.ServiceUnavailable(f"{make.__name__} did not start: {exc}") from exc
    raise AssertionError("unreachable")


class RedisClusterEngine(_Engine):
    """3 masters + 3 replicas (``redis-cli --cluster create --cluster-replicas 1``)."""

    def __init__(self) -> None:
        super().__init__("cluster")
        self.ports: list[int] = []

    def start(self) -> None:
        server, _, cli = _binaries()
        self.ports = free_tcp_ports(6, plus=10000)
        for port in self.ports:
            d = self.base / str(port)
            d.mkdir()
            self._spawn("node", port, _server_cmd(
                server, port, d, "--cluster-enabled", "yes",
                "--cluster-config-file", str(d / "nodes.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--cluster-replica-validity-factor", "0",  # a replica may always take over
                "--appendonly", "no"))
        subprocess.run([cli, "--cluster", "create", *(f"{HOST}:{p}" for p in self.ports),
                        "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        self.wait_healthy()

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{p}" for p in self.ports[:2])

    def alive_ports(self) -> list[int]:
        return [p for p, c in self.children.items() if c.alive()]

    def masters(self) -> list[int]:
        """Ports of the live nodes that are masters now."""
        return [p for p in self.alive_ports() if "role:master" in _info(p, "INFO", "replication")]

    def master_of_slot(self, slot: int) -> int:
        for line in _info(self.alive_ports()[0], "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if len(fields) >= 8 and "master" in fields[2] and "fail" not in fields[2]:
                for r in fields[8:]:
                    lo, _, hi = r.partition("-")
                    if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                        return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise AssertionError(f"no master serves slot {slot}")

    def _ok(self) -> bool:
        ports = self.alive_ports()
        if not all("cluster_state:ok" in _info(p, "CLUSTER", "INFO") for p in ports):
            return False
        masters = self.masters()
        if len(masters) != 3:
            return False
        for p in ports:  # every node sees the same three masters, no failed one
            nodes = _info(p, "CLUSTER", "NODES")
            live = [ln for ln in nodes.splitlines() if len(ln.split()) >= 8
                    and int(ln.split()[1].split("@")[0].rsplit(":", 1)[1]) in ports]
            if sum("master" in ln.split()[2] for ln in live) != 3:
                return False
        return all("master_link_status:up" in _info(p, "INFO", "replication")
                   for p in ports if p not in masters)

    def wait_healthy(self, timeout: float = 60) -> None:
        wait_for_sync(self._ok, timeout, "the Redis Cluster: state ok, 3 masters, replicas "
                      "linked", interval=0.1)

    def kill_master(self, slot: int) -> int:
        """``kill -9`` the master serving ``slot``; returns its port."""
        port = self.master_of_slot(slot)
        self.kill(port)
        return port


class SentinelEngine(_Engine):
    """A primary, its replica and 3 Sentinels monitoring them as ``pgtest``."""

    def __init__(self) -> None:
        super().__init__("sentinel")
        self.primary = self.replica = 0
        self.sentinels: list[int] = []

    def start(self) -> None:
        server, sentinel, _ = _binaries()
        self.primary, self.replica, *self.sentinels = free_tcp_ports(5)
        for port, extra in ((self.primary, ()), (self.replica,
                                                 ("--replicaof", HOST, str(self.primary)))):
            d = self.base / str(port)
            d.mkdir()
            self._spawn("redis", port, _server_cmd(server, port, d, *extra))
        for port in self.sentinels:
            conf = self.base / f"sentinel-{port}.conf"
            conf.write_text(
                f"bind {HOST}\nport {port}\nprotected-mode no\ndir {self.base}\n"
                f"sentinel monitor {SERVICE} {HOST} {self.primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n")
            self._spawn("sentinel", port, [sentinel, str(conf)])
        self.wait_healthy()

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"{HOST}:{p}" for p in self.sentinels) + \
            f"/{SERVICE}"

    def current_primary(self) -> int:
        """The port the Sentinels name as the primary now."""
        for port in self.sentinels:
            if not self.children[port].alive():
                continue
            reply = _info(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            lines = reply.split("\r\n")
            if len(lines) >= 5:
                return int(lines[4])
        raise AssertionError("no Sentinel answers")

    def _ok(self) -> bool:
        try:
            return self._healthy()
        except OSError:  # the primary the Sentinels still name is dead: not yet
            return False

    def _healthy(self) -> bool:
        """Every Sentinel names the same live primary, which says it is one; with both
        data nodes alive the replica is linked and known to all three Sentinels."""
        named = {int(self._named(p)) for p in self.sentinels}
        if len(named) != 1 or 0 in named:
            return False
        primary = named.pop()
        if not self.children[primary].alive():
            return False
        if "role:master" not in _info(primary, "INFO", "replication"):
            return False
        others = [p for p in (self.primary, self.replica) if p != primary]
        if not all(self.children[p].alive() for p in others):
            return all("sentinels=3" in _info(p, "INFO", "sentinel") for p in self.sentinels)
        if any("master_link_status:up" not in _info(p, "INFO", "replication") for p in others):
            return False
        return all("slaves=1,sentinels=3" in _info(p, "INFO", "sentinel")
                   for p in self.sentinels)

    def _named(self, sentinel: int) -> str:
        lines = _info(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE).split("\r\n")
        return lines[4] if len(lines) >= 5 else "0"

    def wait_healthy(self, timeout: float = 60) -> None:
        wait_for_sync(self._ok, timeout, "the Sentinel set: primary, linked replica, "
                      "3 Sentinels that know each other", interval=0.1)

    def kill_primary(self) -> int:
        port = self.current_primary()
        self.kill(port)
        return port


@contextlib.contextmanager
def running(make: type[_Engine]):  # type: ignore[no-untyped-def]
    engine = start_with_retries(make)
    try:
        yield engine
    finally:
        engine.close()


def _time(make: type[_Engine]) -> None:  # python -m tests.redis_engines: a smoke run
    t = time.monotonic()
    with running(make) as e:
        print(f"{make.__name__}: {getattr(e, 'url', '')} up in {time.monotonic() - t:.1f} s")


if __name__ == "__main__":
    _time(RedisClusterEngine)
    _time(SentinelEngine)
