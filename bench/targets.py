"""Servers under test. A target knows how to start its server and how clients talk to
it (websocket path per user, unicast and broadcast HTTP requests). Add a target by
subclassing :class:`Target` and registering it in :data:`TARGETS`."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
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


@dataclass
class ClientSpec:
    """Picklable description of how load processes reach one running target."""

    kind: str
    host: str
    port: int
    jwt_secret: str = ""
    api_key: str = ""
    token_ttl_s: int = 3600

    def ws_path(self, user: str) -> str:
        if self.kind == "pushgate":
            import jwt
            token = jwt.encode({"sub": user, "exp": int(time.time()) + self.token_ttl_s},
                               self.jwt_secret, algorithm="HS256")
            return f"/v1/ws?token={token}"
        return f"/ws?user={user}"

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
        exe = VENV_BIN / "pushgate"
        if self.source is None and exe.exists():
            argv = [str(exe)]
        else:  # python -m from the source tree's directory: its package wins
            argv = [sys.executable, "-m", "pushgate.cli"]
        argv += ["serve", "--port", "0", "--data-dir", data_dir]
        extra: dict[str, str] = {}
        if self.source is not None:
            extra["PYTHONPATH"] = str(self.source)
        cwd = str(self.source or ROOT)
        base_env = probe_env({**os.environ, "PUSHGATE_JWT_SECRET": secret,
                              "PUSHGATE_LOG_LEVEL": "warning", **extra, **(env or {})},
                             workdir, self.name, gc_probe)
        notes: list[str] = []
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
