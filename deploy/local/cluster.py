"""The local cluster launcher: private nginx + N hubs + M routers + Redis + MariaDB.

Three ways to use it::

    python -m deploy.local.cluster up --hubs 2 --routers 1    # Ctrl-C stops everything
    make cluster
    with LocalCluster(hubs=2, routers=1, workdir=tmp_path) as c:   # tests, benchmarks
        c.url, c.hub_urls, c.router_addrs, c.api_key, c.token(user="alice")
        c.kill_hub(0); c.start_hub(0); c.restart_router(0); c.restart_redis(flush=True)

Start order: Redis (private ``redis-server``, no persistence), a database of its own on
MariaDB (created, ``pushgate migrate``; dropped at the end) unless ``store_url`` is
given, the routers (``pushgate router``; port 0 the first time, the same port on a
restart so hubs reconnect), the hubs (``pushgate serve --port 0``; with routers they
run in cluster mode), then nginx in front of the hubs. Each step waits for the
process's announcement line and its readiness, never a fixed time. ``routers=0`` runs
embedded hubs sharing the store (no cross-hub delivery: for trying nginx alone).

Every process is a child of the launcher, logs to ``<workdir>/<name>.log``, and is
stopped when the launcher stops, also on errors (and, when started from the main
thread, if the launcher itself is killed). The methods block; from async code call the
slow ones (``start_hub``, ``restart_router``, ``restart_redis``) with
``asyncio.to_thread``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from deploy.local import mysql
from deploy.local.nginx import PrivateNginx
from deploy.local.processes import Child, StartError, free_port
from deploy.local.redis import PrivateRedis

LISTENING = "PUSHGATE_LISTENING "
ROUTER_LISTENING = "PUSHGATE_ROUTER_LISTENING "


def pushgate_bin() -> str:
    exe = Path(sys.executable).parent / "pushgate"
    if exe.exists():
        return str(exe)
    import shutil

    found = shutil.which("pushgate")
    if found is None:
        raise StartError("the pushgate command is not installed: pip install -e '.[mysql]'")
    return found


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PUSHGATE_")}


# loopback only: never through an http_proxy from the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_ok(url: str) -> bool:
    try:
        with _OPENER.open(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


class LocalCluster:
    """A whole cluster on 127.0.0.1 (see the module docstring).

    ``mysql_url``: server to create the run's database on (default root@127.0.0.1:3306);
    ``store_url``: use this database as is (not created, not dropped, migrated).
    ``hub_env`` / ``router_env``: extra ``PUSHGATE_*`` variables for those processes.
    """

    def __init__(self, hubs: int = 2, routers: int = 1, workdir: str | Path | None = None, *,
                 mysql_url: str | None = None, store_url: str | None = None,
                 api_key: str | None = None, jwt_secret: str | None = None,
                 prefix: str | None = None, nginx_workers: int = 1,
                 nginx_access_log: bool = True, log_level: str = "warning",
                 shutdown_grace_s: float = 5.0, hub_env: Mapping[str, str] | None = None,
                 router_env: Mapping[str, str] | None = None,
                 start_timeout: float = 60.0) -> None:
        if hubs < 1:
            raise ValueError("hubs: at least one hub is needed")
        if routers < 0:
            raise ValueError("routers: must be 0 (embedded hubs) or more")
        self.n_hubs, self.n_routers = hubs, routers
        self.workdir = Path(workdir) if workdir is not None else Path(
            tempfile.mkdtemp(prefix="pushgate-cluster-"))
        self.mysql_url = mysql_url or os.environ.get("PUSHGATE_CLUSTER_MYSQL_URL",
                                                     mysql.DEFAULT_SERVER)
        self._given_store = store_url
        self.store_url = store_url or ""
        self._database: str | None = None
        self.api_key = api_key or "cluster-key-" + secrets.token_hex(12)
        self.jwt_secret = jwt_secret or secrets.token_urlsafe(32)
        self.prefix = prefix or f"pushgate:{secrets.token_hex(3)}:"
        self.log_level = log_level
        self.shutdown_grace_s = shutdown_grace_s
        self.hub_env = dict(hub_env or {})
        self.router_env = dict(router_env or {})
        self.start_timeout = start_timeout
        self.redis = PrivateRedis(self.workdir / "redis")
        self.nginx = PrivateNginx(self.workdir / "nginx", [], workers=nginx_workers,
                                  access_log=nginx_access_log)
        self.hubs: list[Child | None] = [None] * hubs
        self.hub_ports: list[int] = [0] * hubs
        self.routers: list[Child | None] = [None] * routers
        self.router_ports: list[int] = [0] * routers
        self._lock = threading.RLock()
        self._started = False

    # -- addresses ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of nginx: what clients and business servers use."""
        return self.nginx.url

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.nginx.port}/v1/ws"

    @property
    def hub_urls(self) -> list[str]:
        """Direct URL of each hub (bypassing nginx); a stopped hub keeps its last one."""
        return [f"http://127.0.0.1:{p}" for p in self.hub_ports]

    @property
    def router_addrs(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.router_ports]

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def pids(self) -> dict[str, int]:
        """Name -> pid of every running process (nginx: the master; its workers are its
        children), e.g. for CPU accounting in benchmarks."""
        named: list[tuple[str, Child | None]] = [("redis", self.redis.child),
                                                 ("nginx", self.nginx.child)]
        named += [(f"router-{i}", c) for i, c in enumerate(self.routers)]
        named += [(f"hub-{i}", c) for i, c in enumerate(self.hubs)]
        return {name: c.pid for name, c in named if c is not None and c.pid is not None}

    def token(self, user: str, *, ttl: float = 3600, **claims: Any) -> str:
        """An HS256 client token for ``user`` (claims ``ws``, ``dev``, ``app`` optional)."""
        import jwt

        payload = {"sub": user, "exp": int(time.time() + ttl), **claims}
        return jwt.encode(payload, self.jwt_secret, algorithm="HS256")

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> LocalCluster:
        self.start()  # blocks the loop while starting: nothing else runs yet
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._started = True
        try:
            self.redis.start(self.start_timeout)
            self._prepare_store()
            # processes of one kind start in parallel (most of a start is imports)
            for i in range(self.n_routers):
                self._spawn_router(i)
            for i in range(self.n_routers):
                self._await_router(i)
            for i in range(self.n_hubs):
                self._spawn_hub(i)
            for i in range(self.n_hubs):
                self._await_hub(i)
            self.nginx.upstreams = self._upstreams()
            self.nginx.start(self.start_timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything (nginx, hubs, routers, Redis; drop the run's database). Safe
        to call twice and after a failed start."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            with contextlib.suppress(Exception):
                self.nginx.stop()
            self._stop_all(self.hubs, signal.SIGTERM, self.shutdown_grace_s + 10)
            self._stop_all(self.routers, signal.SIGTERM, self.shutdown_grace_s + 10)
            with contextlib.suppress(Exception):
                self.redis.stop()
            if self._database is not None:
                with contextlib.suppress(Exception):
                    mysql.drop_database(self.mysql_url, self._database)
                self._database = None

    @staticmethod
    def _stop_all(children: list[Child | None], sig: int, timeout: float) -> None:
        running = [c for c in children if c is not None]
        for c in running:  # signal all first: they drain in parallel
            c.send_signal(sig)
        for c in running:
            c.stop(None, timeout)
        children[:] = [None] * len(children)

    def _prepare_store(self) -> None:
        if not self._given_store:
            name = mysql.new_database_name()
            try:
                mysql.drop_stale(self.mysql_url)
                self.store_url = mysql.create_database(self.mysql_url, name)
            except Exception as exc:
                raise StartError(f"cannot create the run's database on "
                                 f"{mysql.masked(self.mysql_url)}: {exc}") from exc
            self._database = name
        migrate = Child("migrate", [pushgate_bin(), "migrate", "--url", self.store_url],
                        self.workdir / "migrate.log", env=self._env())
        migrate.start()
        code = migrate.wait_exit(self.start_timeout)
        if code != 0:
            tail = migrate.log_tail()
            migrate.stop()
            raise StartError(f"pushgate migrate failed (exit {code}){tail}")
        migrate.stop()

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = _base_env()
        env.update({
            "PUSHGATE_JWT_SECRET": self.jwt_secret,
            "PUSHGATE_API_KEYS": self.api_key,
            "PUSHGATE_LOG_LEVEL": self.log_level,
            "PUSHGATE_SHUTDOWN_GRACE_S": str(self.shutdown_grace_s),
        })
        env.update(extra or {})
        return env

    # -- routers -------------------------------------------------------------------------------

    def start_router(self, i: int) -> None:
        """Start router ``i``: on a free port the first time, on its old port after."""
        with self._lock:
            self._spawn_router(i)
            self._await_router(i)

    def _spawn_router(self, i: int) -> None:
        if self.routers[i] is not None:
            raise RuntimeError(f"router {i} is running")
        env = self._env({
            "PUSHGATE_ROUTER_LISTEN": f"127.0.0.1:{self.router_ports[i]}",
            "PUSHGATE_STORE_URL": self.store_url,
            "PUSHGATE_DIRECTORY_URL": self.redis_url,
            "PUSHGATE_DIRECTORY_PREFIX": self.prefix,
            **self.router_env,
        })
        child = Child(f"router-{i}", [pushgate_bin(), "router"],
                      self.workdir / f"router-{i}.log", env=env, cwd=self._dir(f"router-{i}"))
        child.start()
        self.routers[i] = child

    def _await_router(self, i: int) -> None:
        child = self.routers[i]
        assert child is not None
        try:
            addr = child.wait_line(ROUTER_LISTENING, self.start_timeout)
        except StartError:
            child.kill()
            self.routers[i] = None
            raise
        self.router_ports[i] = int(addr.rsplit(":", 1)[1])

    def stop_router(self, i: int, sig: int = signal.SIGTERM) -> None:
        with self._lock:
            child = self.routers[i]
            if child is not None:
                child.stop(sig, self.shutdown_grace_s + 10)
                self.routers[i] = None

    def kill_router(self, i: int) -> None:
        self.stop_router(i, signal.SIGKILL)

    def restart_router(self, i: int, sig: int = signal.SIGTERM) -> None:
        """Stop (``sig``) and start again on the same port, so hubs reconnect to it."""
        self.stop_router(i, sig)
        self.start_router(i)

    # -- hubs --------------------------------------------------------------------------------

    def _upstreams(self) -> list[str]:
        live = [f"127.0.0.1:{p}" for p, c in zip(self.hub_ports, self.hubs, strict=True)
                if c is not None]
        # nginx needs at least one server line: a stopped hub's address refuses connections
        return live or [f"127.0.0.1:{self.hub_ports[0] or free_port()}"]

    def _spawn_hub(self, i: int) -> None:
        if self.hubs[i] is not None:
            raise RuntimeError(f"hub {i} is running")
        extra = {"PUSHGATE_TRUSTED_PROXIES": "127.0.0.1"}
        if self.n_routers:
            extra["PUSHGATE_ROUTERS"] = ",".join(self.router_addrs)
        else:
            extra["PUSHGATE_STORE_URL"] = self.store_url
        env = self._env({**extra, **self.hub_env})
        child = Child(f"hub-{i}", [pushgate_bin(), "serve", "--port", "0", "--data-dir",
                                   str(self._dir(f"hub-{i}"))],
                      self.workdir / f"hub-{i}.log", env=env)
        child.start()
        self.hubs[i] = child

    def _await_hub(self, i: int) -> None:
        child = self.hubs[i]
        assert child is not None
        try:
            url = child.wait_line(LISTENING, self.start_timeout)
            self.hub_ports[i] = int(url.rsplit(":", 1)[1])
            child.wait_until(lambda: _http_ok(f"{url}/readyz"), "ready (/readyz 200)",
                             self.start_timeout)
        except StartError:
            child.kill()
            self.hubs[i] = None
            raise

    def _start_hub_process(self, i: int) -> None:
        self._spawn_hub(i)
        self._await_hub(i)

    def start_hub(self, i: int) -> None:
        """Start hub ``i`` (on a new port) once it is ready, and reload nginx with it."""
        with self._lock:
            self._start_hub_process(i)
            self.nginx.set_upstreams(self._upstreams(), self.start_timeout)

    def stop_hub(self, i: int, sig: int = signal.SIGTERM) -> int | None:
        """Stop hub ``i`` with ``sig`` (SIGTERM drains) and return its exit code. nginx
        keeps its address and skips it while it refuses connections."""
        with self._lock:
            child = self.hubs[i]
            if child is None:
                return None
            self.hubs[i] = None
            return child.stop(sig, self.shutdown_grace_s + 10)

    def kill_hub(self, i: int) -> None:
        """SIGKILL hub ``i``: no drain, its sockets die with it."""
        self.stop_hub(i, signal.SIGKILL)

    def hub_ready(self, i: int) -> bool:
        return self.hubs[i] is not None and _http_ok(f"{self.hub_urls[i]}/readyz")

    def hub_sessions(self, i: int) -> int | None:
        """Live sessions on hub ``i`` (its /readyz), ``None`` if it does not answer."""
        try:
            with _OPENER.open(f"{self.hub_urls[i]}/readyz", timeout=2) as resp:
                return int(json.loads(resp.read())["sessions"])
        except (OSError, urllib.error.URLError, KeyError, ValueError):
            return None

    # -- redis -------------------------------------------------------------------------------

    def restart_redis(self, *, flush: bool = True) -> None:
        """Restart the private Redis on the same port; ``flush`` (default): its data is
        gone, as after a crash without persistence."""
        with self._lock:
            self.redis.restart(flush=flush)

    def _dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- for people ----------------------------------------------------------------------------

    def summary(self) -> str:
        env_file = self.workdir / "cluster.env"
        lines = [
            f"pushgate cluster up ({self.n_hubs} hubs, {self.n_routers} routers) "
            f"- logs in {self.workdir}",
            f"  url      {self.url}          (nginx; websockets at {self.ws_url})",
            *(f"  hub {i}    {u}" for i, u in enumerate(self.hub_urls)),
            *(f"  router {i} {a}" for i, a in enumerate(self.router_addrs)),
            f"  redis    {self.redis_url}  (prefix {self.prefix!r})",
            f"  store    {mysql.masked(self.store_url)}",
            f"  api key  {self.api_key}",
            "",
            f"In another shell: source {env_file}   (URL, API key, JWT secret), then",
            "  listen   .venv/bin/pushgate listen --user alice",
            "  send     .venv/bin/pushgate send '{\"text\":\"hi\"}' --user alice",
            "  token    .venv/bin/pushgate token --user alice",
            "  curl     curl -s -X POST $PUSHGATE_URL/v1/notifications "
            "-H \"Authorization: Bearer $PUSHGATE_API_KEY\" "
            "-d '{\"users\":[\"alice\"],\"body\":{\"text\":\"hi\"}}'",
            "",
            "Ctrl-C stops everything.",
        ]
        return "\n".join(lines)

    def write_env_file(self) -> Path:
        path = self.workdir / "cluster.env"
        path.write_text("".join(f"export {k}={v}\n" for k, v in {
            # PUSHGATE_URL / PUSHGATE_API_KEY: `pushgate listen` / `send`; the secrets:
            # `pushgate token` (and no secrets.json generated by these commands)
            "PUSHGATE_URL": self.url, "PUSHGATE_API_KEY": self.api_key,
            "PUSHGATE_API_KEYS": self.api_key, "PUSHGATE_JWT_SECRET": self.jwt_secret, "PUSHGATE_STORE_URL": self.store_url,
            "PUSHGATE_DIRECTORY_URL": self.redis_url,
            "PUSHGATE_DIRECTORY_PREFIX": self.prefix}.items()))
        path.chmod(0o600)
        return path

    def watch(self) -> None:
        """Block until Ctrl-C / SIGTERM; report children that exit on their own."""
        reported: set[str] = set()
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                named = [(f"hub-{i}", c) for i, c in enumerate(self.hubs)]
                named += [(f"router-{i}", c) for i, c in enumerate(self.routers)]
                named += [("nginx", self.nginx.child), ("redis", self.redis.child)]
                for name, child in named:
                    if child is not None and not child.alive() and name not in reported:
                        reported.add(name)
                        print(f"{name} exited on its own; see {child.log_path}",
                              file=sys.stderr, flush=True)
        finally:
            signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local.cluster",
                                     description="Run a pushgate cluster on 127.0.0.1.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster and keep it running until Ctrl-C")
    up.add_argument("--hubs", type=int, default=2, help="hub processes (default 2)")
    up.add_argument("--routers", type=int, default=1,
                    help="router processes (default 1; 0 = embedded hubs sharing the store)")
    up.add_argument("--workdir", default="pushgate-cluster",
                    help="logs, configs and data (default ./pushgate-cluster)")
    up.add_argument("--mysql-url", default=None,
                    help=f"server for the run's database (default {mysql.DEFAULT_SERVER})")
    up.add_argument("--store-url", default=None, help="use this database as is")
    up.add_argument("--nginx-workers", type=int, default=1)
    up.add_argument("--log-level", default="info",
                    choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    try:
        cluster = LocalCluster(args.hubs, args.routers, args.workdir,
                               mysql_url=args.mysql_url, store_url=args.store_url,
                               nginx_workers=args.nginx_workers, log_level=args.log_level)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        cluster.start()
    except (StartError, RuntimeError, OSError) as exc:
        print(f"cluster did not start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    try:
        cluster.write_env_file()
        print(cluster.summary(), flush=True)
        cluster.watch()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping...", file=sys.stderr, flush=True)
        cluster.stop()
        print("stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
