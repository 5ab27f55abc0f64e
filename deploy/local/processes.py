"""Child processes of the launcher: log files, announcement lines, readiness, cleanup.

Every child gets its own process group (Ctrl-C in a terminal reaches only the launcher,
which then stops the children in order) and, when spawned from the main thread, a
parent-death signal (SIGTERM), so that even a launcher killed with SIGKILL leaves no
process behind. (Linux delivers the parent-death signal when the spawning *thread*
exits, hence main thread only.)

Servers here never get a port picked for them in advance (binding a free port, closing
it and passing the number on races with every other process): they bind port 0 and
announce what they got (:meth:`Child.wait_line`), or inherit a socket bound by the
launcher (``pass_fds``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO


class StartError(RuntimeError):
    """A child did not start (or not in time); the message ends with its log tail."""


def _with_parent_death_signal(cmd: list[str]) -> list[str]:
    """``cmd`` run so that it gets SIGTERM when this process dies (util-linux's
    ``setpriv --pdeathsig``, which sets it and execs ``cmd``), where that is available.
    Not a ``preexec_fn``: that makes ``subprocess`` fork() instead of vfork(), so the
    fork handlers of a gRPC loaded here run in the child, and gRPC 1.81+ restarts its
    poller there, whose epoll descriptor ``close_fds`` then closes: the child aborts
    before its exec (grpc/grpc#43055; seen as "epoll_wait error: Bad file descriptor",
    exit -6)."""
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    if setpriv is None:
        return cmd
    return [setpriv, "--pdeathsig", "TERM", "--", *cmd]


class Child:
    """One process: started with :meth:`start`, output in ``log_path`` (stdout and
    stderr; stdout lines are also matched against an announcement prefix). ``pass_fds``:
    descriptors the process inherits (e.g. a listening socket)."""

    def __init__(self, name: str, cmd: Sequence[str], log_path: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 pass_fds: Sequence[int] = ()) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log_path = log_path
        self.env = dict(env) if env is not None else dict(os.environ)
        self.cwd = cwd
        self.pass_fds = tuple(pass_fds)
        self.proc: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._pump: threading.Thread | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab", buffering=0)
        self._log.write(f"--- {time.strftime('%H:%M:%S')} start: {' '.join(self.cmd)}\n".encode())
        self._lines = queue.Queue()
        # the death signal follows the thread that started the child: only the main one's
        main = threading.current_thread() is threading.main_thread()
        self.proc = subprocess.Popen(
            _with_parent_death_signal(self.cmd) if main else self.cmd, env=self.env,
            cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self._log, start_new_session=True, pass_fds=self.pass_fds)
        self._pump = threading.Thread(target=self._copy_stdout, args=(self.proc, self._log),
                                      name=f"{self.name}-stdout", daemon=True)
        self._pump.start()

    def _copy_stdout(self, proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            with contextlib.suppress(ValueError, OSError):
                log.write(raw)
            self._lines.put(raw.decode(errors="replace").strip())
        self._lines.put(None)

    def wait_line(self, prefix: str, timeout: float) -> str:
        """The rest of the first stdout line starting with ``prefix``. Without one in
        time the process is killed (a half-started server is of no use)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise self._failed(f": no {prefix!r} line in {timeout:.0f} s") from None
            if line is None:
                self.wait_exit(5)
                raise self._failed(f" exited (code {self._code()}) before {prefix!r}")
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def wait_until(self, check: Callable[[], bool], what: str, timeout: float,
                   interval: float = 0.05) -> None:
        """Poll ``check`` until true; fail early if the process exits. When it fails the
        process is killed, as in :meth:`wait_line`."""
        deadline = time.monotonic() + timeout
        while not check():
            if not self.alive():
                raise self._failed(f" exited (code {self._code()}) before {what}")
            if time.monotonic() > deadline:
                raise self._failed(f": not {what} after {timeout:.0f} s")
            time.sleep(interval)

    def _code(self) -> int | None:
        return self.proc.returncode if self.proc is not None else None

    def _failed(self, why: str) -> StartError:
        self.kill()
        return StartError(f"{self.name}{why}{self.log_tail()}")

    def send_signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int | None = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Send ``sig`` (``None``: already sent) and wait; SIGKILL if it is still there
        after ``timeout``."""
        if self.proc is None:
            return None
        if sig is not None:
            self.send_signal(sig)
        code = self.wait_exit(timeout)
        if code is None:
            self.proc.kill()
            code = self.wait_exit(10)
        if self._pump is not None:
            self._pump.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.write(f"--- {time.strftime('%H:%M:%S')} exit {code}\n".encode())
            self._log.close()
        self.proc = None
        return code

    def kill(self) -> int | None:
        return self.stop(signal.SIGKILL, timeout=10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 3000) -> str:
        text = self.log_text()
        return f"\n--- {self.log_path} (tail) ---\n{text[-chars:]}" if text else ""


def socket_links(pid: int) -> set[str]:
    """The sockets ``pid`` has open, as their ``/proc/<pid>/fd`` links
    (``socket:[inode]``); empty when the process is gone."""
    links = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    links.add(target)
    return links


def children(pid: int) -> list[int]:
    """The PIDs whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2:].split()[1]) == pid:
                found.append(int(entry))
    return found
