"""Servers under test. A target knows how to start its server and how clients talk to
it (websocket path per user, unicast and broadcast HTTP requests). Add a target by
subclassing :class:`Target` and registering it in :data:`TARGETS`."""

from __future__ import annotations

import functools
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import orjson

from bench.procs import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@dataclass
class Request:
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class BadReply(ValueError):
    """A send's HTTP reply that is not a success (the message says what it was)."""


def json_sessions_reply(status: int, resp: bytes) -> int:
    """Sessions reached, from a ``200 {"sessions": n}`` reply (pushgate, the baseline,
    the Socket.IO peer)."""
    if status != 200:
        raise BadReply(f"HTTP {status}: {resp[:200]!r}")
    try:
        return int(orjson.loads(resp).get("sessions", 0))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        raise BadReply(f"bad reply {resp[:200]!r}") from None


@dataclass
class ClientSpec:
    """Picklable description of how load processes reach one running target: the
    target's adapter (websocket path per user, the send requests, what a reply means,
    how its frames look on the wire). Peers subclass it (bench/peers)."""

    kind: str
    host: str
    port: int
    jwt_secret: str = ""
    api_key: str = ""
    token_ttl_s: int = 3600

    # How the load client reads the target's websocket (bench/wsload.py):
    # "json": the session counts as open at a {"type":"hello"} frame; then one JSON
    #         notification per text frame (pushgate's {"type":"event","body":…} or a bare body);
    # "raw": open once the 101 handshake is done; every text frame is a body (nchan);
    # "socketio": engine.io/Socket.IO framing (open at `40{…}`, events `42["m",body]`).
    wire: ClassVar[str] = "json"

    def ws_path(self, user: str) -> str:
        if self.kind == "pushgate":
            import jwt
            token = jwt.encode({"sub": user, "exp": int(time.time()) + self.token_ttl_s},
                               self.jwt_secret, algorithm="HS256")
            return f"/v1/ws?token={token}"
        return f"/ws?user={user}"

    def for_fanout(self) -> ClientSpec:
        """The spec the sessions of a broadcast scenario (S4) connect with: the same, except
        for a target whose broadcast needs a subscription of its own (nchan's channel)."""
        return self

    def reply_sessions(self, status: int, resp: bytes) -> int:
        """Sessions a send reached, from its HTTP reply; :class:`BadReply` if it failed."""
        return json_sessions_reply(status, resp)

    def _auth(self) -> tuple[tuple[str, str], ...]:
        return (("Authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    def unicast(self, user: str, body: dict) -> Request:
        if self.kind == "pushgate":
            return Request("/v1/notifications", orjson.dumps({"users": [user], "body": body}),
                           self._auth())
        return Request("/send", orjson.dumps({"user": user, "body": body}))

    def multicast(self, users: list[str], body: dict) -> Request:
        """One request to many users (S3); pushgate stores an event per user."""
        if self.kind == "pushgate":
            return Request("/v1/notifications", orjson.dumps({"users": users, "body": body}),
                           self._auth())
        return Request("/send", orjson.dumps({"users": users, "body": body}))

    def broadcast(self, body: dict) -> Request:
        if self.kind == "pushgate":
            return Request("/v1/notifications",
                           orjson.dumps({"filter": {"workspace": "default"}, "body": body}),
                           self._auth())
        return Request("/broadcast", orjson.dumps({"body": body}))


@dataclass
class RunningTarget:
    name: str
    server: ServerProcess
    client: ClientSpec
    notes: list[str] = field(default_factory=list)


class Target:
    name: ClassVar[str]

    def prepare(self, log: Callable[[str], None]) -> str | None:
        """Once per benchmark, before any run: install what the target needs (peers:
        apt-get / npm ci). None when it can run, else the reason it cannot."""
        return None

    def skip_reason(self, scenario: str) -> str | None:
        """Why this target does not run ``scenario`` (None: it does)."""
        return None

    def start(self, workdir: Path, core: int | str, gc_probe: bool = False,
              env: dict[str, str] | None = None) -> RunningTarget:
        """``core``: what ``taskset -c`` gets; ``env``: extra environment of the server."""
        raise NotImplementedError


def probe_env(env: dict[str, str], workdir: Path, name: str, gc_probe: bool) -> dict[str, str]:
    """Environment additions that load bench/gcprobe into the server (``--gc-probe``)."""
    if not gc_probe:
        return env
    path = str(Path(__file__).resolve().parent / "gcprobe")
    old = env.get("PYTHONPATH")
    return {**env, "PYTHONPATH": path + (os.pathsep + old if old else ""),
            "BENCH_GC_PROBE_OUT": str(workdir / f"gc-{name}.{{pid}}.json")}


def _host_port(url: str) -> tuple[str, int]:
    hostport = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    return host, int(port)


class Baseline(Target):
    name = "baseline"

    def start(self, workdir: Path, core: int | str, gc_probe: bool = False,
              env: dict[str, str] | None = None) -> RunningTarget:
        env = probe_env({**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, workdir,
                        self.name, gc_probe)
        srv = ServerProcess("baseline", [sys.executable, "-m", "bench.baseline", "--port", "0"],
                            env, "BASELINE_LISTENING", workdir, core, cwd=str(ROOT))
        url = srv.start()
        host, port = _host_port(url)
        return RunningTarget(self.name, srv, ClientSpec("baseline", host, port))


# The load comes from a few 127.0.0.x addresses (≤ 5,000 sessions each, opened at up to
# ~2,000/s): pushgate's per-client-IP guard (max_connections_per_ip 1000,
# connect_rate_per_ip 200/s) would refuse most of them. Off, as for a server behind a
# trusted proxy; settings a pushgate does not have are ignored (--ref of older commits).
NO_PER_IP_LIMITS = {"PUSHGATE_MAX_CONNECTIONS_PER_IP": "0", "PUSHGATE_CONNECT_RATE_PER_IP": "0"}


@functools.cache
def venv_runs_root() -> bool:
    """Whether this interpreter's ``pushgate`` (outside any source tree) is ROOT's."""
    import subprocess
    out = subprocess.run([sys.executable, "-c", "import pushgate; print(pushgate.__file__)"],
                         cwd="/", capture_output=True, text=True, timeout=60).stdout.strip()
    return bool(out) and Path(out).resolve().parent == (ROOT / "pushgate").resolve()


class Pushgate(Target):
    """``pushgate serve`` in embedded mode (SQLite store in a fresh data dir).

    With ``source``, the pushgate of that source tree (e.g. a ``git worktree`` of another
    commit) runs instead of this checkout's, on the same dependencies: the target
    ``pushgate-ref`` of ``--ref DIR``, for same-run comparisons between commits."""

    name = "pushgate"

    def __init__(self, name: str = "pushgate", source: Path | None = None) -> None:
        self.name = name  # type: ignore[misc]
        self.source = source

    def start(self, workdir: Path, core: int | str, gc_probe: bool = False,
              env: dict[str, str] | None = None) -> RunningTarget:
        secret = secrets.token_urlsafe(32)
        key = "bench-" + secrets.token_hex(16)
        data_dir = tempfile.mkdtemp(prefix="pushgate-data-", dir=workdir)
        notes: list[str] = []
        exe = VENV_BIN / "pushgate"
        # the pushgate of this checkout: the venv's, unless the venv's editable install
        # is of another checkout (bench run from a `git worktree` with the main .venv)
        source = self.source or (None if venv_runs_root() else ROOT)
        if source is None and exe.exists():
            argv = [str(exe)]
        else:  # python -m from the source tree's directory: its package wins
            argv = [sys.executable, "-m", "pushgate.cli"]
        argv += ["serve", "--port", "0", "--data-dir", data_dir]
        extra: dict[str, str] = {}
        if source is not None:
            extra["PYTHONPATH"] = str(source)
            notes.append(f"pushgate of {source} (python -m pushgate.cli)")
        cwd = str(source or ROOT)
        base_env = probe_env({**os.environ, "PUSHGATE_JWT_SECRET": secret,
                              "PUSHGATE_LOG_LEVEL": "warning", **NO_PER_IP_LIMITS, **extra,
                              **(env or {})},
                             workdir, self.name, gc_probe)
        srv = ServerProcess(self.name, argv, {**base_env, "PUSHGATE_API_KEYS": key},
                            "PUSHGATE_LISTENING", workdir, core, cwd=cwd)
        try:
            url = srv.start()
        except RuntimeError as e:
            if "api_keys" not in str(e):
                raise
            # pydantic-settings parses list-valued env vars as JSON: retry in that form
            notes.append("PUSHGATE_API_KEYS=<key> was rejected (list settings are parsed as "
                         "JSON from the environment); used PUSHGATE_API_KEYS='[\"<key>\"]'")
            srv = ServerProcess(self.name, argv,
                                {**base_env, "PUSHGATE_API_KEYS": orjson.dumps([key]).decode()},
                                "PUSHGATE_LISTENING", workdir, core, cwd=cwd)
            url = srv.start()
        host, port = _host_port(url)
        return RunningTarget(self.name, srv, ClientSpec("pushgate", host, port, secret, key),
                             notes)


TARGETS: dict[str, Target] = {t.name: t for t in (Baseline(), Pushgate())}
