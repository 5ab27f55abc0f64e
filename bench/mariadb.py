"""A private ``mariadbd`` for the store benchmark (S8): own datadir, port and socket under
a temporary directory, never the shared server; stopped and removed at the end.

Server settings are the production-like ones documented in docs/storage.md: a buffer
pool that holds the benchmark's data (2 GiB), a 512 MiB redo log, no binary log.
``flush_log_at_trx_commit``: 1 (default, every commit is fsynced: durable against a
power loss) or 2 (the redo log is written at commit and fsynced once a second: a
server crash loses nothing, an OS crash or power loss may lose the last second of
commits). Which one the figures used is part of the report.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MARIADBD = "/usr/sbin/mariadbd"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.settimeout(1)
            return len(sock.recv(5)) == 5
    except OSError:
        return False


class PrivateMariaDB:
    def __init__(self, *, buffer_pool: str = "2G", log_file_size: str = "512M",
                 flush_log_at_trx_commit: int = 1, core: int | None = None) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="pg-s8-"))
        self.port = _free_port()
        self.options = [f"--innodb-buffer-pool-size={buffer_pool}",
                        f"--innodb-log-file-size={log_file_size}",
                        f"--innodb-flush-log-at-trx-commit={flush_log_at_trx_commit}"]
        self.core = core
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        if not os.path.exists(MARIADBD) or not shutil.which("mariadb-install-db"):
            return f"{MARIADBD} / mariadb-install-db not installed"
        return None

    @property
    def url(self) -> str:
        return f"mysql+asyncmy://root@127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        data = self.base / "data"
        install = ["mariadb-install-db", "--no-defaults", f"--datadir={data}",
                   "--auth-root-authentication-method=normal", "--skip-test-db"]
        if os.geteuid() == 0:
            install.append("--user=root")
        subprocess.run(install, check=True, capture_output=True, timeout=180)
        cmd = [MARIADBD, "--no-defaults", f"--datadir={data}", f"--port={self.port}",
               "--bind-address=127.0.0.1", f"--socket={self.base / 'mysqld.sock'}",
               f"--pid-file={self.base / 'mysqld.pid'}", f"--log-error={self.base / 'error.log'}",
               "--skip-grant-tables", "--skip-log-bin", "--max-connections=500", *self.options]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        if self.core is not None:
            cmd = ["taskset", "-c", str(self.core), *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not _answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (self.base / "error.log")
                raise RuntimeError("private mariadbd did not start: " +
                                   (log.read_text()[-2000:] if log.exists() else ""))
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        shutil.rmtree(self.base, ignore_errors=True)
