"""Test services: a MariaDB/MySQL server for the MySQL tests, provisioned on demand.

Used by the pytest fixtures (``tests/conftest.py``) and by ``scripts/test``::

    python -m tests.services      # make sure a server answers; prints its URL

Order: ``PUSHGATE_TEST_MYSQL_URL`` (a server URL; its database part is ignored) if set;
else MariaDB at 127.0.0.1:3306 as ``root`` without password; else, as root, a test user
created over the local socket; else, as root on Debian, ``apt-get install
mariadb-server`` and start it. Each test run then works in its own database
(``pushgate_test_<pid>_<random>``), dropped at the end.

nginx and redis-server (for the local cluster of ``deploy/local``, which runs private
instances of both), redis-sentinel and redis-cli (for the Redis Cluster and Sentinel
engines of ``tests/redis_engines.py``) are installed with apt-get as root when missing,
without starting the packages' system services (:func:`provision_binary`); so is
promtool (Debian's ``prometheus`` package) for the alert rule tests.

Tests that kill and restart the server run a throw-away one of their own
(:class:`deploy.local.mariadb.PrivateMariaDB`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

from deploy.local import mysql
from deploy.local.mariadb import MARIADBD
from deploy.local.mysql import execute, run_sync
from tests.support.waiting import wait_for_sync

__all__ = ["ServiceUnavailable", "empty_tables", "execute", "in_ci", "mysql_database",
           "new_database_name", "provision_binary", "provision_mysql", "provision_nginx",
           "provision_redis_server", "require", "run_sync"]

MYSQL_ENV = "PUSHGATE_TEST_MYSQL_URL"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 3306
TEST_USER, TEST_PASSWORD = "pushgate_test", "pushgate_test"
DB_PREFIX = "pushgate_test_"
T = TypeVar("T")


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
    try:
        wait_for_sync(lambda: mysql_answers(DEFAULT_HOST, DEFAULT_PORT), 60, "127.0.0.1:3306",
                      interval=0.1)
    except AssertionError as exc:
        raise ServiceUnavailable(f"mariadbd was started but did not answer: {exc}") from None


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
    url = mysql.create_database(server_url, name)
    try:
        yield url
    finally:
        mysql.drop_database(server_url, name)


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


def provision_promtool(**kw: Any) -> str:
    """Prometheus's rule checker (Debian's ``prometheus`` package; its server is not
    started): ``promtool check rules`` / ``test rules`` on deploy/monitoring."""
    return provision_binary("promtool", "prometheus", **kw)


def require(tests: str, provide: Callable[[], T]) -> T:
    """``provide()`` for a fixture: without the service the test is skipped with the
    reason, except in CI (``CI=true``) where it fails: ``tests`` must run there."""
    import pytest

    try:
        return provide()
    except ServiceUnavailable as exc:
        if in_ci():
            pytest.fail(f"{tests} cannot run in CI: {exc}")
        pytest.skip(f"{tests} cannot run: {exc}")


def main() -> int:
    failed = False
    for what, tests, provide in (
            ("MariaDB/MySQL for the tests", "MySQL tests",
             lambda: repr(make_url(provision_mysql()))),
            ("nginx", "cluster tests", provision_nginx),
            ("redis-server", "cluster tests", provision_redis_server),
            # the Redis Cluster and Sentinel engines of tests/redis_engines.py
            ("redis-sentinel", "Redis Sentinel tests",
             lambda: provision_binary("redis-sentinel", "redis-sentinel")),
            ("redis-cli", "Redis Cluster tests",
             lambda: provision_binary("redis-cli", "redis-tools")),
            ("promtool", "alert rule tests", provision_promtool)):
        try:
            found = provide()
        except ServiceUnavailable as exc:
            print(f"[services] {tests} cannot run: {exc}", file=sys.stderr)
            failed = True
        else:
            print(f"[services] {what}: {found}", file=sys.stderr)
    return 1 if failed and in_ci() else 0


if __name__ == "__main__":
    sys.exit(main())
