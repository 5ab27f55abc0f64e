"""A private ``redis-server`` for the local cluster: own directory, no persistence
(``--save "" --appendonly no``), so a restart loses the data unless asked to keep it.

It listens on a unix socket in its directory, not on TCP: ``--port 0`` is Redis' way
of saying "no TCP" (not "any port"), and a socket path needs no free port. Clients use
``unix://<path>?db=0`` (redis-py, ``pushgate router``) or ``redis-cli -s <path>``.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import tempfile
from pathlib import Path

from deploy.local.processes import Child, StartError

# a unix socket path is at most 107 bytes (sun_path); longer workdirs get a short one
_SUN_PATH_MAX = 100
Address = str | Path | tuple[str, int]


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise StartError("redis-server is not installed: apt-get install -y redis-server "
                         "(or run `python -m tests.services`, which installs it as root)")
    return found


def _connect(address: Address, timeout: float) -> socket.socket:
    if isinstance(address, tuple):
        return socket.create_connection(address, timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(address))
    except OSError:
        sock.close()
        raise
    return sock


def ping(address: Address, timeout: float = 1.0) -> bool:
    """Whether a Redis at ``address`` (a unix socket path, or ``(host, port)``) answers
    PING with PONG (RESP, no client library)."""
    try:
        with _connect(address, timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def command(address: Address, *args: str, timeout: float = 5.0) -> bytes:
    """Send one command, return the raw first reply chunk (enough for status replies)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with _connect(address, timeout) as sock:
        sock.sendall(b"".join(parts))
        try:
            return sock.recv(65536)
        except OSError:
            return b""  # SHUTDOWN closes without a reply


class PrivateRedis:
    """``redis-server`` with its data and socket under ``base``; :meth:`restart` keeps
    the socket path, so clients reconnect to the same URL."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._short_dir: Path | None = None
        self.socket = base.resolve() / "redis.sock"
        if len(str(self.socket)) > _SUN_PATH_MAX:
            self._short_dir = Path(tempfile.mkdtemp(prefix="pushgate-redis-"))
            self.socket = self._short_dir / "redis.sock"
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def start(self, timeout: float = 30.0) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        cmd = [redis_binary(), "--port", "0", "--unixsocket", str(self.socket),
               "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
               "--dir", str(self.base), "--dbfilename", "dump.rdb", "--daemonize", "no",
               "--loglevel", "warning", "--maxclients", "10000"]
        self.child = Child("redis", cmd, self.base / "redis.log")
        self.child.start()
        self.child.wait_until(lambda: ping(self.socket), "answering PING", timeout)

    def stop(self, *, keep_data: bool = False) -> None:
        """Stop; with ``keep_data`` an RDB snapshot is written first and loaded by the
        next :meth:`start`."""
        if self.child is None:
            return
        if keep_data and self.child.alive():
            command(self.socket, "SHUTDOWN", "SAVE")
            self.child.stop(signal.SIGTERM, timeout=20)
        else:
            (self.base / "dump.rdb").unlink(missing_ok=True)
            self.child.kill()
        self.socket.unlink(missing_ok=True)  # SIGKILL leaves it behind
        self.child = None

    def restart(self, *, flush: bool = True) -> None:
        self.stop(keep_data=not flush)
        self.start()

    def close(self) -> None:
        """Stop for good: also remove the short socket directory, if one was made."""
        self.stop()
        if self._short_dir is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._short_dir)
