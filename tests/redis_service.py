"""Test service: Redis for the directory and cluster tests, provisioned on demand.

    python -m tests.redis_service     # make sure a Redis answers; prints its URL

Order: ``PUSHGATE_TEST_REDIS_URL`` if set; else Redis at 127.0.0.1:6379; else, as root
on Debian, ``apt-get install redis-server`` and start it (no persistence). Tests never
share keys: each test uses its own key prefix (:func:`new_prefix`) and deletes it.

:class:`PrivateRedis` runs a throw-away ``redis-server`` on its own port, for tests that
restart Redis with its data gone.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REDIS_ENV = "PUSHGATE_TEST_REDIS_URL"
DEFAULT = "redis://127.0.0.1:6379/0"
REDIS_SERVER = "redis-server"


class ServiceUnavailable(Exception):
    """Redis cannot be provided here; the message says why."""


def redis_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def wait_until_answers(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis_answers(host, port):
            return True
        time.sleep(0.05)
    return False


def _install() -> None:
    if shutil.which(REDIS_SERVER):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServiceUnavailable("redis-server is not installed and cannot be installed "
                                 "here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env,
                   timeout=600, stdout=subprocess.DEVNULL)


def provision_redis() -> str:
    """URL of a Redis server that answers (installing and starting one if needed)."""
    url = os.environ.get(REDIS_ENV)
    if url:
        return url
    if redis_answers("127.0.0.1", 6379):
        return DEFAULT
    _install()
    subprocess.run([REDIS_SERVER, "--daemonize", "yes", "--bind", "127.0.0.1", "--port",
                    "6379", "--save", "", "--appendonly", "no"], check=True, timeout=30,
                   stdout=subprocess.DEVNULL)
    if not wait_until_answers("127.0.0.1", 6379, 15):
        raise ServiceUnavailable("redis-server was started but does not answer on :6379")
    return DEFAULT


def new_prefix(tag: str = "t") -> str:
    return f"pgtest:{tag}:{os.getpid()}:{secrets.token_hex(4)}:"


def delete_prefix(url: str, prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(url)
    try:
        keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i:i + 500])
    finally:
        r.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A ``redis-server`` of its own (port, dir under ``base``, nothing on disk): a
    restart loses every key, like a Redis that lost its data."""

    def __init__(self, base: Path, port: int | None = None) -> None:
        self.base = base
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        _install()
        self.base.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [shutil.which(REDIS_SERVER) or REDIS_SERVER, "--bind", "127.0.0.1", "--port",
             str(self.port), "--save", "", "--appendonly", "no", "--dir", str(self.base),
             "--logfile", str(self.base / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_until_answers("127.0.0.1", self.port, timeout):
            self.stop()
            raise ServiceUnavailable(f"private redis-server on :{self.port} did not answer")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def main() -> int:
    try:
        print(provision_redis())
    except (ServiceUnavailable, subprocess.SubprocessError) as e:
        print(f"no Redis: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
