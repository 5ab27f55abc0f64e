"""The local cluster launcher: private nginx + N hubs + M routers + Redis + MariaDB.

Three ways to use it::

    python -m deploy.local.cluster up --hubs 2 --routers 1    # Ctrl-C stops everything
    make cluster
    with LocalCluster(hubs=2, routers=1, workdir=tmp_path) as c:   # tests, benchmarks
        c.url, c.hub_urls, c.router_addrs, c.api_key, c.token(user="alice")
        c.kill_hub(0); c.start_hub(0); c.restart_router(0); c.restart_redis(flush=True)

Start order: Redis (private ``redis-server`` on a unix socket, no persistence) unless
``redis_url`` is given, a database of its own on MariaDB (created, ``pushgate
migrate``; dropped at the end) unless ``store_url`` is given, the routers (``pushgate
router``; port 0 the first time, the same port on a restart so hubs reconnect), the
hubs (``pushgate serve --port 0``; with routers they run in cluster mode), then nginx
in front of the hubs (``nginx=False``: none, clients use :meth:`LocalCluster.hub`).
Each step waits for the process's announcement line and its readiness, never a fixed
time. ``routers=0`` runs embedded hubs sharing the store (no cross-hub delivery: for
trying nginx alone).

Every process is a child of the launcher, logs to ``<workdir>/<name>.log``, and is
stopped when the launcher stops, also on errors (and, when started from the main
thread, if the launcher itself is killed). The methods block; from async code call the
slow ones (``start_hub``, ``restart_router``, ``restart_redis``) with
``asyncio.to_thread``. The command line is in :mod:`deploy.local.cli`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from deploy.local import _http, mysql
from deploy.local.nginx import PrivateNginx
from deploy.local.processes import Child, StartError
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


def client_token(secret: str, user: str, *, ttl: float = 3600, **claims: Any) -> str:
    """An HS256 client token for ``user`` (claims ``ws``, ``dev``, ``app`` optional)."""
    import jwt

    payload = {"sub": user, "exp": int(time.time() + ttl), **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def base_env() -> dict[str, str]:
    """This process's environment without its ``PUSHGATE_*`` settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PUSHGATE_")}


@dataclass(frozen=True)
class Endpoint:
    """One way into the cluster, with what clients and business servers need: nginx
    (:attr:`LocalCluster.edge`) or one hub directly (:meth:`LocalCluster.hub`)."""

    base_url: str
    api_key: str
    jwt_secret: str

    @property
    def ws_url(self) -> str:
        return f"ws://{self.base_url.removeprefix('http://')}/v1/ws"

    def token(self, user: str, *, ttl: float = 3600, **claims: Any) -> str:
        return client_token(self.jwt_secret, user, ttl=ttl, **claims)


class LocalCluster:
    """A whole cluster on 127.0.0.1 (see the module docstring).

    ``nginx``: start nginx in front of the hubs (tests that do not check nginx talk to
    the hubs directly, which is faster). ``redis_url`` / ``redis_prefix``: use this
    Redis with this key prefix instead of a private ``redis-server`` (no
    :meth:`restart_redis` then). ``mysql_url``: server to create the run's database on
    (default root@127.0.0.1:3306); ``store_url``: use this database as is (not created,
    not dropped; migrated unless ``migrate=False``). ``hub_env`` / ``router_env``: extra
    ``PUSHGATE_*`` variables for those processes.
    """

    def __init__(self, hubs: int = 2, routers: int = 1, workdir: str | Path | None = None, *,
                 nginx: bool = True, redis_url: str | None = None,
                 redis_prefix: str | None = None, mysql_url: str | None = None,
                 store_url: str | None = None, migrate: bool = True,
                 api_key: str | None = None, jwt_secret: str | None = None,
                 nginx_workers: int = 1, nginx_access_log: bool = True,
                 log_level: str = "warning", shutdown_grace_s: float = 5.0,
                 hub_env: Mapping[str, str] | None = None,
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
        self.migrate = migrate
        self._database: str | None = None
        self.api_key = api_key or "cluster-key-" + secrets.token_hex(12)
        self.jwt_secret = jwt_secret or secrets.token_urlsafe(32)
        self.redis_prefix = redis_prefix or f"pushgate:{secrets.token_hex(3)}:"
        self.log_level = log_level
        self.shutdown_grace_s = shutdown_grace_s
        self.hub_env = dict(hub_env or {})
        self.router_env = dict(router_env or {})
        self.start_timeout = start_timeout
        self._redis_url = redis_url
        self.redis = PrivateRedis(self.workdir / "redis") if redis_url is None else None
        self.nginx = PrivateNginx(self.workdir / "nginx", [], workers=nginx_workers,
                                  access_log=nginx_access_log) if nginx else None
        self.hubs: list[Child | None] = [None] * hubs
        self.hub_ports: list[int] = [0] * hubs
        self.routers: list[Child | None] = [None] * routers
        self.router_ports: list[int] = [0] * routers
        self.router_metrics_ports: list[int | None] = [None] * routers
        self._lock = threading.RLock()
        self._started = False

    # -- addresses ---------------------------------------------------------------------------

    def _nginx(self) -> PrivateNginx:
        if self.nginx is None:
            raise RuntimeError("this cluster runs without nginx: use hub(i)")
        return self.nginx

    @property
    def url(self) -> str:
        """Base URL of nginx: what clients and business servers use."""
        return self._nginx().url

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self._nginx().port}/v1/ws"

    @property
    def edge(self) -> Endpoint:
        """nginx, as clients and business servers see it."""
        return Endpoint(self.url, self.api_key, self.jwt_secret)

    def hub(self, i: int) -> Endpoint:
        """Hub ``i`` directly (bypassing nginx)."""
        return Endpoint(self.hub_urls[i], self.api_key, self.jwt_secret)

    @property
    def hub_urls(self) -> list[str]:
        """Direct URL of each hub (bypassing nginx); a stopped hub keeps its last one."""
        return [f"http://127.0.0.1:{p}" for p in self.hub_ports]

    @property
    def router_addrs(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.router_ports]

    @property
    def router_metrics_urls(self) -> list[str | None]:
        """Each router's Prometheus ``/metrics`` (``None`` while it is not running)."""
        return [f"http://127.0.0.1:{p}/metrics" if p else None
                for p in self.router_metrics_ports]

    @property
    def redis_url(self) -> str:
        return self.redis.url if self.redis is not None else str(self._redis_url)

    def pids(self) -> dict[str, int]:
        """Name -> pid of every running process (nginx: the master; its workers are its
        children), e.g. for CPU accounting in benchmarks. A process that died (killed
        from outside, crashed) is not listed, although its slot is kept until it is
        stopped or restarted: its PID may belong to another process by now."""
        return {name: c.pid for name, c in self.children()
                if c is not None and c.pid and c.alive()}

    def children(self) -> list[tuple[str, Child | None]]:
        """Every process slot by name (``None``: not running)."""
        named: list[tuple[str, Child | None]] = []
        if self.redis is not None:
            named.append(("redis", self.redis.child))
        if self.nginx is not None:
            named.append(("nginx", self.nginx.child))
        named += [(f"router-{i}", c) for i, c in enumerate(self.routers)]
        named += [(f"hub-{i}", c) for i, c in enumerate(self.hubs)]
        return named

    def token(self, user: str, *, ttl: float = 3600, **claims: Any) -> str:
        """An HS256 client token for ``user`` (claims ``ws``, ``dev``, ``app`` optional)."""
        return client_token(self.jwt_secret, user, ttl=ttl, **claims)

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> LocalCluster:
        # blocks the loop while starting (nothing else runs yet), in this thread: children
        # spawned by the main thread get the parent-death signal
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._started = True
        try:
            if self.redis is not None:
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
            if self.nginx is not None:
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
            if self.nginx is not None:
                with contextlib.suppress(Exception):
                    self.nginx.stop()
            self._stop_all(self.hubs, signal.SIGTERM, self.shutdown_grace_s + 10)
            self._stop_all(self.routers, signal.SIGTERM, self.shutdown_grace_s + 10)
            if self.redis is not None:
                with contextlib.suppress(Exception):
                    self.redis.close()
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
        if not self.migrate:
            return
        # the URL (it may hold a password) in the environment: the log's start line shows
        # the command line, and the launcher prints that log's tail when migrate fails
        migrate = Child("migrate", [pushgate_bin(), "migrate"], self.workdir / "migrate.log",
                        env=self._env({"PUSHGATE_STORE_URL": self.store_url}))
        migrate.start()
        code = migrate.wait_exit(self.start_timeout)
        if code != 0:
            tail = migrate.log_tail()
            migrate.stop()
            raise StartError(f"pushgate migrate failed (exit {code}){tail}")
        migrate.stop()

    def _spawn(self, slots: list[Child | None], i: int, kind: str, cmd: list[str],
               env: Mapping[str, str], cwd: Path | None = None) -> None:
        if slots[i] is not None:
            raise RuntimeError(f"{kind} {i} is running")
        child = Child(f"{kind}-{i}", cmd, self.workdir / f"{kind}-{i}.log", env=env, cwd=cwd)
        child.start()
        slots[i] = child

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = base_env()
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
        env = self._env({
            "PUSHGATE_ROUTER_LISTEN": f"127.0.0.1:{self.router_ports[i]}",
            "PUSHGATE_ROUTER_METRICS_LISTEN": "127.0.0.1:0",
            "PUSHGATE_STORE_URL": self.store_url,
            "PUSHGATE_DIRECTORY_URL": self.redis_url,
            "PUSHGATE_DIRECTORY_PREFIX": self.redis_prefix,
            **self.router_env,
        })
        self._spawn(self.routers, i, "router", [pushgate_bin(), "router"], env,
                    cwd=self._dir(f"router-{i}"))

    def _await_router(self, i: int) -> None:
        child = self.routers[i]
        assert child is not None
        try:
            addr = child.wait_line(ROUTER_LISTENING, self.start_timeout)
        except StartError:
            self.routers[i] = None
            raise
        # "host:port link=host:port metrics=host:port"
        grpc_addr, *named = addr.split()
        ports = {k: int(v.rpartition(":")[2]) for k, _, v in (x.partition("=") for x in named)}
        self.router_ports[i] = int(grpc_addr.rsplit(":", 1)[1])
        self.router_metrics_ports[i] = ports.get("metrics")

    def stop_router(self, i: int, sig: int = signal.SIGTERM) -> None:
        with self._lock:
            child = self.routers[i]
            if child is not None:
                child.stop(sig, self.shutdown_grace_s + 10)
                self.routers[i] = None
                self.router_metrics_ports[i] = None

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
        return live or [f"127.0.0.1:{p}" for p in self.hub_ports if p][:1]

    def _spawn_hub(self, i: int) -> None:
        extra = {"PUSHGATE_TRUSTED_PROXIES": "127.0.0.1"}
        if self.n_routers:
            extra["PUSHGATE_ROUTERS"] = ",".join(self.router_addrs)
        else:
            extra["PUSHGATE_STORE_URL"] = self.store_url
        self._spawn(self.hubs, i, "hub", [pushgate_bin(), "serve", "--port", "0", "--data-dir",
                                          str(self._dir(f"hub-{i}"))],
                    self._env({**extra, **self.hub_env}))

    def _await_hub(self, i: int) -> None:
        child = self.hubs[i]
        assert child is not None
        try:
            url = child.wait_line(LISTENING, self.start_timeout)
            self.hub_ports[i] = int(url.rsplit(":", 1)[1])
            child.wait_until(lambda: _http.get(f"{url}/readyz") is not None,
                             "ready (/readyz 200)", self.start_timeout)
        except StartError:
            self.hubs[i] = None
            raise

    def start_hub(self, i: int) -> None:
        """Start hub ``i`` (on a new port) once it is ready, and reload nginx with it."""
        with self._lock:
            self._spawn_hub(i)
            self._await_hub(i)
            if self.nginx is not None:
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
        return self.hubs[i] is not None and _http.get(f"{self.hub_urls[i]}/readyz") is not None

    def hub_sessions(self, i: int) -> int | None:
        """Live sessions on hub ``i`` (its /readyz), ``None`` if it does not answer."""
        body = _http.get(f"{self.hub_urls[i]}/readyz")
        try:
            return int(json.loads(body)["sessions"]) if body is not None else None
        except (KeyError, ValueError):
            return None

    # -- redis -------------------------------------------------------------------------------

    def restart_redis(self, *, flush: bool = True) -> None:
        """Restart the private Redis on the same socket; ``flush`` (default): its data
        is gone, as after a crash without persistence."""
        if self.redis is None:
            raise RuntimeError("this cluster uses a shared Redis (redis_url): no restart")
        with self._lock:
            self.redis.restart(flush=flush)

    # -- nginx --------------------------------------------------------------------------------

    def restart_nginx(self) -> None:
        """Stop nginx (and workers a SIGKILLed master left behind) and start it again on
        the same port, in front of the running hubs."""
        nginx = self._nginx()
        with self._lock:
            old = nginx.child.pid if nginx.child is not None else None
            if old:
                with contextlib.suppress(OSError):
                    os.killpg(old, signal.SIGCONT)  # a stopped master handles SIGTERM
            nginx.stop()
            if old:
                with contextlib.suppress(OSError):
                    os.killpg(old, signal.SIGKILL)  # orphaned workers hold the socket
            nginx.upstreams = self._upstreams()
            # started as the first time (PrivateNginx.start), which also records the new
            # socket for the reloads of later hub (re)starts
            with self._bind_again(nginx.port) as listener:
                nginx.start(self.start_timeout, listener)

    def _bind_again(self, port: int) -> socket.socket:
        """A socket bound to 127.0.0.1:``port`` again. Connections the old nginx closed
        stay in TIME_WAIT for up to a minute, and block the port unless the listening
        socket they came from had SO_REUSEADDR (PrivateNginx.start sets it; a socket
        bound otherwise may not have): wait for them then."""
        deadline = time.monotonic() + max(self.start_timeout, 65.0)
        while True:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind(("127.0.0.1", port))
                return listener
            except OSError as exc:
                listener.close()
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise StartError(f"nginx: cannot bind 127.0.0.1:{port} again: {exc}") from None
            time.sleep(0.5)

    def _dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


if __name__ == "__main__":  # python -m deploy.local.cluster up ...
    from deploy.local.cli import main

    sys.exit(main())
