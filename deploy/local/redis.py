"""A private ``redis-server`` for the local cluster: own port and directory, no
persistence (``--save "" --appendonly no``), so a restart loses the data unless asked
to keep it."""

from __future__ import annotations

import shutil
import signal
import socket
from pathlib import Path

from deploy.local.processes import Child, StartError, free_port


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise StartError("redis-server is not installed: apt-get install -y redis-server "
                         "(or run `python -m tests.services`, which installs it as root)")
    return found


def ping(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """Whether a Redis answers PING with PONG (RESP, no client library)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def command(port: int, *args: str, host: str = "127.0.0.1", timeout: float = 5.0) -> bytes:
    """Send one command, return the raw first reply chunk (enough for status replies)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"".join(parts))
        try:
            return sock.recv(65536)
        except OSError:
            return b""  # SHUTDOWN closes without a reply


class PrivateRedis:
    def __init__(self, base: Path, port: int | None = None) -> None:
        self.base = base
        self.port = port or free_port()
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        cmd = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", str(self.base),
               "--dbfilename", "dump.rdb", "--protected-mode", "no", "--daemonize", "no",
               "--loglevel", "warning", "--maxclients", "10000"]
        self.child = Child("redis", cmd, self.base / "redis.log")
        self.child.start()
        self.child.wait_until(lambda: ping(self.port), "answering PING", timeout)

    def stop(self, *, keep_data: bool = False) -> None:
        """Stop; with ``keep_data`` an RDB snapshot is written first and loaded by the
        next :meth:`start` (same port)."""
        if self.child is None:
            return
        if keep_data and self.child.alive():
            command(self.port, "SHUTDOWN", "SAVE")
            self.child.stop(signal.SIGTERM, timeout=20)
        else:
            (self.base / "dump.rdb").unlink(missing_ok=True)
            self.child.kill()
        self.child = None

    def restart(self, *, flush: bool = True) -> None:
        self.stop(keep_data=not flush)
        self.start()
