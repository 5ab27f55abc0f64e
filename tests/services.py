"""Test services: a MariaDB/MySQL server for the MySQL tests, provisioned on demand.

Used by the pytest fixtures (``tests/conftest.py``) and by ``scripts/test``::

    python -m tests.services      # make sure a server answers; prints its URL

Order: ``PUSHGATE_TEST_MYSQL_URL`` (a server URL; its database part is ignored) if set;
else MariaDB at 127.0.0.1:3306 as ``root`` without password; else, as root, a test user
created over the local socket; else, as root on Debian, ``apt-get install
mariadb-server`` and start it. Each test run then works in its own database
(``pushgate_test_<pid>_<random>``), dropped at the end.

nginx and redis-server (for the local cluster of ``deploy/local``, which runs private
instances of both) are installed with apt-get as root when missing, without starting
the packages' system services (:func:`provision_binary`).

:class:`PrivateMariaDB` runs a throw-away ``mariadbd`` (own datadir, port and socket)
for tests that kill and restart the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

MYSQL_ENV = "PUSHGATE_TEST_MYSQL_URL"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 3306
TEST_USER, TEST_PASSWORD = "pushgate_test", "pushgate_test"
MARIADBD = "/usr/sbin/mariadbd"
DB_PREFIX = "pushgate_test_"


class ServiceUnavailable(Exception):
    """The service cannot be provided here; the message says why."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# -- probing --------------------------------------------------------------------------


def mysql_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a MySQL-protocol server greets on ``host:port`` (a handshake packet, or an
    error packet such as "too many connections": either way, a server)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            header = sock.recv(5)
    except OSError:
        return False
    return len(header) == 5 and header[4] in (10, 0xFF)


def wait_until_answers(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mysql_answers(host, port):
            return True
        time.sleep(0.1)
    return False


async def _execute(url: URL, *statements: str, database: str | None = None) -> list[Any]:
    import asyncmy

    conn = await asyncmy.connect(
        host=url.host or DEFAULT_HOST, port=url.port or DEFAULT_PORT, user=url.username or "root",
        password=url.password or "", db=database or url.database, connect_timeout=5,
        autocommit=True,
    )
    rows: list[Any] = []
    try:
        async with conn.cursor() as cur:
            for sql in statements:
                await cur.execute(sql)
                rows.extend(await cur.fetchall() or ())
    finally:
        await conn.ensure_closed()
    return rows


def execute(url: str | URL, *statements: str, database: str | None = None) -> list[Any]:
    """Run SQL statements on ``url`` (its database, if any) without SQLAlchemy or pool;
    returns all rows.
    Synchronous, callable from any thread (and from sync fixtures of async tests: the
    work runs on its own event loop in a helper thread)."""
    return run_sync(_execute(make_url(url), *statements, database=database))  # type: ignore[no-any-return]


def run_sync(coro: Any) -> Any:
    """Run a coroutine to completion on its own event loop in a helper thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _login_error(url: str) -> str | None:
    try:
        execute(url, "SELECT 1")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# -- provisioning ---------------------------------------------------------------------


def _run(cmd: list[str], timeout: float, **kw: Any) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        raise ServiceUnavailable(
            f"{' '.join(cmd)} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}"
        )


def _install_and_start(log: Any) -> None:
    """As root on Debian: install mariadb-server if missing and start it in the background."""
    if os.geteuid() != 0:
        raise ServiceUnavailable("no MariaDB at 127.0.0.1:3306 and not root: cannot install one")
    if not os.path.exists(MARIADBD):
        if not shutil.which("apt-get"):
            raise ServiceUnavailable("no MariaDB at 127.0.0.1:3306 and no apt-get to install one")
        log("installing mariadb-server (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update"], timeout=600, env=env)
        _run(["apt-get", "install", "-y", "mariadb-server"], timeout=900, env=env)
    if mysql_answers(DEFAULT_HOST, DEFAULT_PORT):  # the package's scripts started it
        return
    log("starting mariadbd")
    with contextlib.suppress(Exception):
        os.makedirs("/run/mysqld", exist_ok=True)
        shutil.chown("/run/mysqld", "mysql", "mysql")
    _run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", MARIADBD],
         timeout=60)
    if not wait_until_answers(DEFAULT_HOST, DEFAULT_PORT, timeout=60):
        raise ServiceUnavailable("mariadbd was started but 127.0.0.1:3306 did not answer in 60 s")


def _create_test_user() -> str:
    """As root: a password user for the tests, created through the local socket (where a
    fresh Debian MariaDB lets the system root in by unix_socket authentication)."""
    client = shutil.which("mariadb") or shutil.which("mysql")
    if os.geteuid() != 0 or client is None:
        raise ServiceUnavailable("root@127.0.0.1 refused and cannot create a test user here")
    grants = []
    for host in ("localhost", "127.0.0.1"):
        user = f"'{TEST_USER}'@'{host}'"
        grants += [
            f"CREATE USER IF NOT EXISTS {user} IDENTIFIED BY '{TEST_PASSWORD}'",
            f"GRANT ALL PRIVILEGES ON `{DB_PREFIX.replace('_', chr(92) + '_')}%`.* TO {user}",
        ]
    _run([client, "-uroot", "-e", "; ".join(grants)], timeout=30)
    return f"mysql+asyncmy://{TEST_USER}:{TEST_PASSWORD}@{DEFAULT_HOST}:{DEFAULT_PORT}"


def provision_mysql(*, install: bool = True, log: Any = None) -> str:
    """The URL (without database) of a server the tests may create databases on.
    Raises :class:`ServiceUnavailable` with the reason when there is none."""
    log = log or (lambda msg: print(f"[services] {msg}", file=sys.stderr))
    configured = os.environ.get(MYSQL_ENV)
    if configured:
        url = make_url(configured).set(database=None).render_as_string(hide_password=False)
        error = _login_error(url)
        if error:
            raise ServiceUnavailable(f"{MYSQL_ENV}={configured} does not answer: {error}")
        return url
    if not mysql_answers(DEFAULT_HOST, DEFAULT_PORT):
        if not install:
            raise ServiceUnavailable("no MariaDB at 127.0.0.1:3306")
        _install_and_start(log)
    root = f"mysql+asyncmy://root@{DEFAULT_HOST}:{DEFAULT_PORT}"
    error = _login_error(root)
    if error is None:
        return root
    test_url = f"mysql+asyncmy://{TEST_USER}:{TEST_PASSWORD}@{DEFAULT_HOST}:{DEFAULT_PORT}"
    if _login_error(test_url) is None:
        return test_url
    url = _create_test_user()
    error = _login_error(url)
    if error:
        raise ServiceUnavailable(f"test user created but cannot log in: {error}")
    return url


def new_database_name(tag: str = "") -> str:
    return f"{DB_PREFIX}{os.getpid()}_{secrets.token_hex(3)}{tag}"


@contextlib.contextmanager
def mysql_database(server_url: str, name: str | None = None) -> Iterator[str]:
    """Create a database on ``server_url``, yield its URL, drop it afterwards."""
    name = name or new_database_name()
    execute(server_url, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        execute(server_url, f"DROP DATABASE IF EXISTS `{name}`")


def empty_tables(url: str) -> None:
    """Delete every row of the store's tables, keeping the schema and alembic_version."""
    from pushgate.store.schema import metadata

    tables = [t.name for t in reversed(metadata.sorted_tables)]
    execute(url, *(f"DELETE FROM `{t}`" for t in tables))


def _apt_install_quietly(package: str, log: Any) -> None:
    """``apt-get install`` without starting the package's system service: Debian's
    maintainer scripts ask ``/usr/sbin/policy-rc.d`` first, and exit 101 = "not now".
    An existing policy file (containers have one) is left as it is."""
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\n# written by pushgate tests/services.py during an install\nexit 101\n")
        policy.chmod(0o755)
    try:
        log(f"installing {package} (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update"], timeout=600, env=env)
        _run(["apt-get", "install", "-y", package], timeout=900, env=env)
    finally:
        if ours:
            policy.unlink(missing_ok=True)


def provision_binary(name: str, package: str, *, install: bool = True, log: Any = None) -> str:
    """Path of the executable ``name``; as root on Debian, ``apt-get install package``
    first when it is missing (its system service is not started: the tests run private
    instances). Raises :class:`ServiceUnavailable` with the reason when there is none."""
    log = log or (lambda msg: print(f"[services] {msg}", file=sys.stderr))

    def find() -> str | None:
        return shutil.which(name) or next(
            (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)

    found = find()
    if found is not None:
        return found
    if not install:
        raise ServiceUnavailable(f"{name} is not installed")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServiceUnavailable(f"{name} is not installed and cannot be installed here "
                                 f"(needs root and apt-get: apt-get install -y {package})")
    _apt_install_quietly(package, log)
    found = find()
    if found is None:
        raise ServiceUnavailable(f"apt-get installed {package} but there is no {name}")
    return found


def provision_nginx(**kw: Any) -> str:
    return provision_binary("nginx", "nginx", **kw)


def provision_redis_server(**kw: Any) -> str:
    return provision_binary("redis-server", "redis-server", **kw)


# -- a private server ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateMariaDB:
    """A ``mariadbd`` of its own (datadir, port and socket under ``base``), for tests that
    kill it: never the shared server. Root without password (``--skip-grant-tables``)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.datadir = base / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mysql+asyncmy://root@127.0.0.1:{self.port}"

    @staticmethod
    def available() -> str | None:
        """Why a private server cannot run here, or ``None`` if it can."""
        if not os.path.exists(MARIADBD):
            return f"{MARIADBD} not installed"
        if not shutil.which("mariadb-install-db"):
            return "mariadb-install-db not installed"
        return None

    def install(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        cmd = ["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}",
               "--auth-root-authentication-method=normal", "--skip-test-db"]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        _run(cmd, timeout=120)

    def start(self, timeout: float = 60.0) -> None:
        cmd = [MARIADBD, "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}",
               "--bind-address=127.0.0.1", f"--socket={self.base / 'mysqld.sock'}",
               f"--pid-file={self.base / 'mysqld.pid'}", f"--log-error={self.base / 'error.log'}",
               "--skip-grant-tables", "--skip-log-bin", "--innodb-buffer-pool-size=64M"]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_until_answers("127.0.0.1", self.port, timeout):
            self.kill()
            raise ServiceUnavailable(f"private mariadbd did not answer in {timeout} s: "
                                     f"{self.error_log()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush (InnoDB recovers from its redo log on start)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def error_log(self) -> str:
        path = self.base / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def main() -> int:
    failed = False
    try:
        url = provision_mysql()
    except ServiceUnavailable as exc:
        print(f"[services] MySQL tests cannot run: {exc}", file=sys.stderr)
        failed = True
    else:
        print(f"[services] MariaDB/MySQL for the tests: {make_url(url)!r}", file=sys.stderr)
    for what, provision in (("nginx", provision_nginx), ("redis-server", provision_redis_server)):
        try:
            path = provision()
        except ServiceUnavailable as exc:
            print(f"[services] cluster tests cannot run: {exc}", file=sys.stderr)
            failed = True
        else:
            print(f"[services] {what}: {path}", file=sys.stderr)
    return 1 if failed and in_ci() else 0


if __name__ == "__main__":
    sys.exit(main())
