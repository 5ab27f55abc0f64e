"""A throw-away ``mariadbd`` of its own (datadir, port and socket under ``base``), for
the tests that kill the server and for the store benchmarks: never the shared server.
Root without password (``--skip-grant-tables``).

mariadbd can neither take port 0 nor inherit a listening socket (MariaDB 10.11), so the
port is a random one below the kernel's ephemeral range (which port-0 binds and
outgoing connections use); when it is taken, mariadbd says "Address already in use"
and the next candidate is tried. A restart keeps the port.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from deploy.local.processes import StartError

MARIADBD = "/usr/sbin/mariadbd"
ATTEMPTS = 20
_IN_USE = "Address already in use"
_READY = "ready for connections"


def candidate_ports(count: int = ATTEMPTS) -> list[int]:
    """Random ports between 20000 and the start of the ephemeral range."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return random.sample(range(20000, max(low, 20000 + count)), count)


class PrivateMariaDB:
    def __init__(self, base: Path, options: Sequence[str] = ("--innodb-buffer-pool-size=64M",),
                 *, core: int | None = None) -> None:
        self.base = base
        self.datadir = base / "data"
        self.options = list(options)
        self.core = core  # pin to this CPU (taskset), for benchmarks
        self.port = 0  # chosen by the first start, kept by restarts
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mysql+asyncmy://root@127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.base / "error.log"

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
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            raise StartError(f"mariadb-install-db exited {proc.returncode}: "
                             f"{(proc.stderr or proc.stdout)[-2000:]}")

    def start(self, timeout: float = 60.0) -> None:
        """Start (the first time on a free port, then on the same one) and wait until
        the server says it is ready for connections."""
        for port in [self.port] if self.port else candidate_ports():
            if self._start_on(port, timeout):
                self.port = port
                return
        raise StartError(f"private mariadbd: {ATTEMPTS} ports in use")

    def _start_on(self, port: int, timeout: float) -> bool:
        """True once ready; False if the port was taken (the process has exited)."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        cmd = [MARIADBD, "--no-defaults", f"--datadir={self.datadir}", f"--port={port}",
               "--bind-address=127.0.0.1", f"--socket={self.base / 'mysqld.sock'}",
               f"--pid-file={self.base / 'mysqld.pid'}", f"--log-error={self.log_path}",
               "--skip-grant-tables", "--skip-log-bin", *self.options]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        if self.core is not None:
            cmd = ["taskset", "-c", str(self.core), *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            log = self.error_log()[offset:]
            if _READY in log:
                return True
            if self.proc.poll() is not None:
                self.proc = None
                if _IN_USE in log:
                    return False
                raise StartError(f"private mariadbd exited: {log[-2000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise StartError(f"private mariadbd not ready in {timeout} s: {log[-2000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush (InnoDB recovers from its redo log on start)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def error_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
