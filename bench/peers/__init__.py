"""The real peers as benchmark targets, beside pushgate and the hand-written baseline
(shared/BENCHMARKS.md: "Run the real peers in the same run too"):

- ``nchan``: Debian's nginx + ``libnginx-mod-nchan``, a private nginx (own prefix dir,
  own config from :func:`nchan_conf`, ``master_process on; worker_processes 1``) on a
  port of 127.0.0.1 bound by the benchmark and inherited by nginx (``NGINX=fd;``).
  ``POST /pub/<user>`` publishes to channel ``<user>``, ``/sub/<user>`` is a websocket
  subscriber of it. Broadcast (S4) = one channel (``everyone``) all the sessions of
  the scenario subscribe to (``/sub/everyone``): nchan's own way of fanning out. Target
  ``nchan-multi`` (not in ``--peers``): every session subscribes to its user's channel
  and ``everyone`` at once (nchan's multiplexed channels, ``/multi/<user>``), so the
  same sessions take unicasts and broadcasts, as pushgate's do. Messages stay in nchan's
  default in-memory buffer (per channel, 10 messages, 1 h).
- ``socketio``: Socket.IO 4 on Node 20 (``bench/peers/socketio/server.js``; ``npm ci``
  by :func:`ensure_socketio`): each client joins the room of its user (query string),
  ``POST /pub/<user>`` emits to that room, ``POST /pub {"users": [...], "body"}`` to
  several rooms (S3), ``POST /broadcast`` to everyone. Websocket transport only.

The load processes speak to them through the :class:`~bench.targets.ClientSpec`
adapters below (``wire``: how frames look; the send requests; what a reply means).
Their server CPU and RSS are those of the whole process tree: nginx master + worker,
the node process (all its threads).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import orjson

from bench.procs import ServerProcess
from bench.targets import (
    TARGETS,
    BadReply,
    ClientSpec,
    Request,
    RunningTarget,
    Target,
    json_sessions_reply,
)

HERE = Path(__file__).resolve().parent
SOCKETIO_DIR = HERE / "socketio"
NCHAN_PACKAGE = "libnginx-mod-nchan"
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
BROADCAST_CHANNEL = "everyone"
PING_INTERVAL_S = 20  # websocket keep-alive pings, as pushgate's and the baseline's
NODE_MAJOR = 20


class PeerUnavailable(RuntimeError):
    """The peer cannot run here; the message says why (and how to install it)."""


def _say(msg: str) -> None:
    print(f"[peers] {msg}", flush=True)


# --------------------------------------------------------------------------- setup


def _apt_install(packages: list[str], log: Callable[[str], None]) -> None:
    """``apt-get install`` as root without starting the packages' system services (the
    maintainer scripts ask ``/usr/sbin/policy-rc.d``; exit 101 = "not now")."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise PeerUnavailable(f"needs root and apt-get: apt-get install -y {' '.join(packages)}")
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\n# written by pushgate bench/peers during an install\n"
                          "exit 101\n")
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        log(f"installing {' '.join(packages)} (apt-get)")
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                raise PeerUnavailable(f"{' '.join(cmd)} exited {proc.returncode}: "
                                      f"{(proc.stderr or proc.stdout)[-1000:]}")
    finally:
        if ours:
            policy.unlink(missing_ok=True)


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)


def _nchan_module() -> Path | None:
    if NCHAN_MODULE.is_file():
        return NCHAN_MODULE
    try:  # another layout: ask dpkg where the package put it
        out = subprocess.run(["dpkg", "-L", NCHAN_PACKAGE], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = [Path(line) for line in out.splitlines() if line.endswith("ngx_nchan_module.so")]
    return found[0] if found and found[0].is_file() else None


def ensure_nchan(install: bool = True, log: Callable[[str], None] = _say) -> tuple[str, Path]:
    """(nginx binary, nchan module); as root on Debian, ``apt-get install nginx
    libnginx-mod-nchan`` first when either is missing. :class:`PeerUnavailable` if not."""
    nginx, module = _nginx_binary(), _nchan_module()
    if nginx is None or module is None:
        if not install:
            raise PeerUnavailable(f"nginx or {NCHAN_PACKAGE} is not installed")
        _apt_install(["nginx", NCHAN_PACKAGE], log)
        nginx, module = _nginx_binary(), _nchan_module()
        if nginx is None or module is None:
            raise PeerUnavailable(f"apt-get installed nginx {NCHAN_PACKAGE}, but there is no "
                                  f"nginx binary or ngx_nchan_module.so")
    return nginx, module


def node_binary() -> str:
    """Path of node (version ≥ 20); :class:`PeerUnavailable` if there is none."""
    node = shutil.which("node")
    if node is None:
        raise PeerUnavailable(f"node is not installed (the Socket.IO peer needs Node "
                              f"{NODE_MAJOR}+)")
    out = subprocess.run([node, "-v"], capture_output=True, text=True, timeout=30).stdout
    m = re.match(r"v(\d+)\.", out.strip())
    if m is None or int(m[1]) < NODE_MAJOR:
        raise PeerUnavailable(f"node {out.strip()!r}: the Socket.IO peer needs Node "
                              f"{NODE_MAJOR}+")
    return node


def _npm_ci_needed(d: Path) -> bool:
    """Whether ``node_modules`` is missing or older than ``package-lock.json``."""
    stamp = d / "node_modules" / ".package-lock.json"  # written by npm ci / install
    if not stamp.is_file() or not (d / "node_modules" / "socket.io").is_dir():
        return True
    return stamp.stat().st_mtime < (d / "package-lock.json").stat().st_mtime


def ensure_socketio(install: bool = True, log: Callable[[str], None] = _say) -> str:
    """node's path, after ``npm ci`` into ``bench/peers/socketio/node_modules`` when it
    is missing or stale (the npm registry). :class:`PeerUnavailable` if not possible."""
    node = node_binary()
    if _npm_ci_needed(SOCKETIO_DIR):
        npm = shutil.which("npm")
        if not install or npm is None:
            raise PeerUnavailable(f"no {SOCKETIO_DIR / 'node_modules'}: run npm ci there")
        log(f"npm ci in {SOCKETIO_DIR}")
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=SOCKETIO_DIR, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise PeerUnavailable(f"npm ci exited {proc.returncode}: "
                                  f"{(proc.stderr or proc.stdout)[-1000:]}")
    return node


# --------------------------------------------------------------------------- nchan


def _hard_nofile() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 65536 if hard == resource.RLIM_INFINITY else min(int(hard), 1 << 20)


def nchan_conf(base: Path, port: int, module: Path, *, nofile: int | None = None,
               user: str | None = None, ping_interval_s: int = PING_INTERVAL_S) -> str:
    """nginx.conf of a private nchan server under ``base`` on 127.0.0.1:``port`` (pure).

    One worker (the server core is one core, as for pushgate's one process); as many
    connections as the open-file limit allows; logs to stderr (``warn``), no access log;
    keep-alive as pushgate's (75 s, no request limit per connection)."""
    nofile = nofile or _hard_nofile()
    temp = base / "temp"
    lines = [
        f"load_module {module};",
        "daemon off;",
        "master_process on;",
        "worker_processes 1;",
        f"worker_rlimit_nofile {nofile};",
        f"pid {base / 'nginx.pid'};",
        "error_log stderr warn;",
        *([f"user {user};"] if user else []),
        f"events {{ worker_connections {max(512, nofile - 64)}; multi_accept on; }}",
        "http {",
        "  access_log off;",
        "  keepalive_timeout 75s;",
        "  keepalive_requests 1000000;",
        *(f"  {name}_temp_path {temp / name};"
          for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
        "  server {",
        f"    listen 127.0.0.1:{port} backlog=4096;",
        "    location = /ready { return 200 \"ready\\n\"; }",
        "    # HTTP POST publishes to the channel named in the path",
        "    location ~ ^/pub/([^/]+)$ { nchan_publisher http; nchan_channel_id $1; }",
        "    # websocket subscriber of one channel (a user's, or the broadcast channel)",
        "    location ~ ^/sub/([^/]+)$ {",
        "      nchan_subscriber websocket;",
        "      nchan_channel_id $1;",
        f"      nchan_websocket_ping_interval {ping_interval_s};",
        "    }",
        "    # nchan-multi: the user's channel and the broadcast channel on one socket",
        "    location ~ ^/multi/([^/]+)$ {",
        "      nchan_subscriber websocket;",
        f"      nchan_channel_id $1 {BROADCAST_CHANNEL};",
        f"      nchan_websocket_ping_interval {ping_interval_s};",
        "    }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


_SUBSCRIBERS = re.compile(rb"active subscribers: (\d+)")


@dataclass
class NchanClient(ClientSpec):
    """nchan's adapter: sessions are websocket subscribers (open at the 101, each text
    frame is a published body); a send is ``POST /pub/<channel>`` with the body."""

    wire: ClassVar[str] = "raw"
    # "": /sub/<user>; "single": /sub/everyone (S4); "multi": /multi/<user> (always)
    mode: str = ""

    def ws_path(self, user: str) -> str:
        if self.mode == "multi":
            return f"/multi/{user}"
        if self.mode == "single":
            return f"/sub/{BROADCAST_CHANNEL}"
        return f"/sub/{user}"

    def for_fanout(self) -> ClientSpec:
        return self if self.mode == "multi" else replace(self, mode="single")

    def reply_sessions(self, status: int, resp: bytes) -> int:
        # 201 Created (the channel has subscribers) or 202 Accepted (none); text body
        if status not in (200, 201, 202):
            raise BadReply(f"HTTP {status}: {resp[:200]!r}")
        m = _SUBSCRIBERS.search(resp)
        if m is None:
            raise BadReply(f"bad reply {resp[:200]!r}")
        return int(m[1])

    def unicast(self, user: str, body: dict) -> Request:
        return Request(f"/pub/{user}", orjson.dumps(body))

    def multicast(self, users: list[str], body: dict) -> Request:
        raise NotImplementedError("nchan publishes to one channel per request")

    def broadcast(self, body: dict) -> Request:
        return Request(f"/pub/{BROADCAST_CHANNEL}", orjson.dumps(body))


def _http_ready(url: str) -> Callable[[], str | None]:
    def check() -> str | None:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=1) as r:
                return url if r.status == 200 else None
        except (OSError, urllib.error.URLError):
            return None
    return check


class Nchan(Target):
    name = "nchan"

    def __init__(self, name: str = "nchan", multi: bool = False) -> None:
        self.name = name  # type: ignore[misc]
        self.multi = multi
        self.nginx = ""
        self.module = NCHAN_MODULE

    def prepare(self, log: Callable[[str], None]) -> str | None:
        try:
            self.nginx, self.module = ensure_nchan(log=log)
        except PeerUnavailable as e:
            return str(e)
        return None

    def skip_reason(self, scenario: str) -> str | None:
        if scenario == "S3":
            return ("nchan publishes to one channel per request: there is no one-request "
                    "send to 1,000 users")
        return None

    def start(self, workdir: Path, core: int | str, gc_probe: bool = False,
              env: dict[str, str] | None = None) -> RunningTarget:
        if not self.nginx:
            self.nginx, self.module = ensure_nchan()
        base = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=workdir))
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (base / "temp" / name).mkdir(parents=True, exist_ok=True)
        user = None
        if os.geteuid() == 0:  # workers as this user: they reach the temp dirs under base
            user = f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"
        # the port is bound here and inherited by nginx (NGINX="fd;"): no race for a port
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(4096)
            listener.setblocking(False)  # nginx expects its listening sockets non-blocking
            port = listener.getsockname()[1]
            conf = base / "nginx.conf"
            conf.write_text(nchan_conf(base, port, self.module, user=user))
            fd = listener.fileno()
            url = f"http://127.0.0.1:{port}"
            srv = ServerProcess(self.name, [self.nginx, "-p", str(base), "-e", "stderr",
                                            "-c", str(conf)],
                                {**os.environ, **(env or {}), "NGINX": f"{fd};"}, "", workdir,
                                core, cwd=str(base), pass_fds=(fd,), ready=_http_ready(url))
            srv.start(timeout=30)
        client = NchanClient("nchan", "127.0.0.1", port, mode="multi" if self.multi else "")
        notes = ["sessions subscribe to their user's channel and the broadcast channel "
                 "(multiplexed)"] if self.multi else []
        return RunningTarget(self.name, srv, client, notes)


# --------------------------------------------------------------------------- Socket.IO


@dataclass
class SocketIOClient(ClientSpec):
    """Socket.IO's adapter: ``/socket.io/?EIO=4&transport=websocket&user=U``; the load
    client answers the engine.io open with ``40`` and pings ``2`` with ``3``, counts the
    session open at ``40{"sid":…}`` and reads events ``42["m",body]``."""

    wire: ClassVar[str] = "socketio"

    def ws_path(self, user: str) -> str:
        return f"/socket.io/?EIO=4&transport=websocket&user={user}"

    def reply_sessions(self, status: int, resp: bytes) -> int:
        return json_sessions_reply(status, resp)

    def unicast(self, user: str, body: dict) -> Request:
        return Request(f"/pub/{user}", orjson.dumps(body))

    def multicast(self, users: list[str], body: dict) -> Request:
        return Request("/pub", orjson.dumps({"users": users, "body": body}))

    def broadcast(self, body: dict) -> Request:
        return Request("/broadcast", orjson.dumps(body))


class SocketIO(Target):
    name = "socketio"

    def __init__(self) -> None:
        self.node = ""

    def prepare(self, log: Callable[[str], None]) -> str | None:
        try:
            self.node = ensure_socketio(log=log)
        except PeerUnavailable as e:
            return str(e)
        return None

    def start(self, workdir: Path, core: int | str, gc_probe: bool = False,
              env: dict[str, str] | None = None) -> RunningTarget:
        if not self.node:
            self.node = ensure_socketio()
        srv = ServerProcess(self.name, [self.node, str(SOCKETIO_DIR / "server.js"), "0"],
                            {**os.environ, "NODE_ENV": "production", **(env or {})},
                            "SOCKETIO_LISTENING", workdir, core, cwd=str(SOCKETIO_DIR))
        url = srv.start(timeout=30)
        port = int(url.rsplit(":", 1)[1])
        return RunningTarget(self.name, srv, SocketIOClient("socketio", "127.0.0.1", port))


PEERS = ("nchan", "socketio")  # what --peers adds to the targets
TARGETS.update({t.name: t for t in (Nchan(), Nchan("nchan-multi", multi=True), SocketIO())})
