"""The private nginx of the local cluster, rendered from ``deploy/nginx/pushgate.conf``.

:func:`render` is pure (text in, text out); :class:`PrivateNginx` runs
``nginx -p <dir> -c <dir>/nginx.conf -g 'daemon off;'`` with its pid file, logs and temp
directories inside ``<dir>``, listening on 127.0.0.1 only.

The listening socket is bound (port 0 unless a port is asked for) by the launcher and
inherited by nginx, which takes sockets named in its ``NGINX`` environment variable
(``NGINX="5;"``: descriptor 5, the way nginx hands sockets to a new binary on upgrade)
instead of binding the ``listen`` address itself. A reload keeps the socket.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

from deploy.local import _http
from deploy.local.processes import Child, StartError, children, socket_links

TEMPLATE = Path(__file__).resolve().parents[1] / "nginx" / "pushgate.conf"
TEMP_PATHS = ("client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path",
              "uwsgi_temp_path", "scgi_temp_path")
_TAGGED = re.compile(r"^(?P<indent>\s*)(?P<directive>[a-z_]+)\s+(?P<args>[^;#]*?)\s*;"
                     r"\s*#@(?P<tag>[a-z_]+)\s*$")

Value = str | Sequence[str] | None


class RenderError(ValueError):
    """The template and the values do not fit (unknown tag, tag without value)."""


def tags(template: str) -> dict[str, list[str]]:
    """Tag -> the argument strings of its lines, in order."""
    found: dict[str, list[str]] = {}
    for line in template.splitlines():
        m = _TAGGED.match(line)
        if m:
            found.setdefault(m["tag"], []).append(m["args"])
    return found


def render(template: str, values: Mapping[str, Value], *, strict: bool = True) -> str:
    """Replace tagged lines (``directive args; #@tag``) of ``template``.

    A list value gives one line per item at the place of the tag's first line, each item
    replacing the first argument and keeping the template's other arguments (so
    ``server hub1:8080 max_fails=1;`` keeps ``max_fails``); a string replaces all the
    arguments; ``None`` drops the lines. Untagged lines and tags without a value stay.
    With ``strict``, a value whose tag is not in the template raises :class:`RenderError`.
    """
    known = tags(template)
    unknown = sorted(set(values) - set(known))
    if strict and unknown:
        raise RenderError(f"no line tagged #@{unknown[0]} in the template")
    out: list[str] = []
    done: set[str] = set()
    for line in template.splitlines():
        m = _TAGGED.match(line)
        if m is None or m["tag"] not in values:
            out.append(line)
            continue
        tag = m["tag"]
        if tag in done:
            continue
        done.add(tag)
        value = values[tag]
        if value is None:
            continue
        head = f"{m['indent']}{m['directive']} "
        if isinstance(value, str):
            out.append(f"{head}{value};")
            continue
        if not value:
            raise RenderError(f"#@{tag}: an empty list would leave no {m['directive']} line")
        rest = m["args"].split()[1:]
        out.extend(f"{head}{' '.join([item, *rest])};" for item in value)
    return "\n".join(out) + "\n"


def nginx_binary() -> str:
    """Path of the nginx executable; :class:`StartError` (with the install command) if none."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)
    if found is None:
        raise StartError("nginx is not installed: apt-get install -y nginx "
                         "(or run `python -m tests.services`, which installs it as root)")
    return found


class PrivateNginx:
    """An nginx of its own under ``base`` in front of ``upstreams`` ("host:port" each),
    on 127.0.0.1:``port`` (any free port when not given: known once started).

    ``generation`` counts renders; ``/nginx-health`` answers it, which is how a reload
    is known to be in effect."""

    def __init__(self, base: Path, upstreams: Sequence[str], *, port: int | None = None,
                 workers: int = 1, limit_conn: int = 65_535,
                 access_log: bool = True, template: Path = TEMPLATE) -> None:
        self.base = base
        self.upstreams = list(upstreams)
        self.port = port or 0
        self.workers = workers
        self.limit_conn = limit_conn
        self.access_log = access_log
        self.template = template
        self.generation = 0
        self.child: Child | None = None
        # the listening socket nginx inherited, as /proc/<pid>/fd links name it
        # (``socket:[inode]``): the same in the launcher and in every nginx it started
        self._listener = ""

    @property
    def conf_path(self) -> Path:
        return self.base / "nginx.conf"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def values(self) -> dict[str, Value]:
        nofile = _hard_nofile()
        user: str | None = None
        if os.geteuid() == 0:
            # workers must reach the temp dirs under base, wherever that is (pytest's
            # tmp dirs are 0700): run them as the launcher's user
            user = f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"
        temp = {name: str(self.base / "temp" / name.removesuffix("_temp_path"))
                for name in TEMP_PATHS}
        return {
            "user": user,
            "worker_processes": str(self.workers),
            "worker_rlimit_nofile": str(nofile),
            "worker_connections": str(max(512, nofile - 64)),
            "pid": str(self.base / "nginx.pid"),
            "error_log": f"{self.base / 'error.log'} warn",
            "access_log": (f"{self.base / 'access.log'} pushgate" if self.access_log else "off"),
            **temp,
            "hub": self.upstreams,
            "send_hub": self.upstreams,
            "listen": [f"127.0.0.1:{self.port}"],
            "limit_conn": f"pushgate_perip {self.limit_conn}",
            "health": f'200 "generation {self.generation}\\n"',
        }

    def write_conf(self) -> None:
        self.generation += 1
        (self.base / "temp").mkdir(parents=True, exist_ok=True)
        text = render(self.template.read_text(), self.values())
        tmp = self.conf_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.conf_path)

    def command(self, *extra: str) -> list[str]:
        return [nginx_binary(), "-p", str(self.base), "-e", str(self.base / "error.log"),
                "-c", str(self.conf_path), *extra]

    def start(self, timeout: float = 30.0, listener: socket.socket | None = None) -> None:
        """Start nginx on ``listener`` (a socket bound to 127.0.0.1:``port``; by
        default one bound here) and return once it serves this configuration. The
        socket is nginx's then: the caller may close its own descriptor."""
        self.base.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            if listener is None:
                listener = stack.enter_context(socket.socket())
                # a restart on the same port must not wait for the old connections'
                # TIME_WAIT
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", self.port))
            listener.listen(4096)
            # nginx takes inherited sockets as non-blocking (as its own are); a blocking
            # one hangs a worker in accept() (multi_accept accepts until EAGAIN)
            listener.setblocking(False)
            self.port = listener.getsockname()[1]
            self.write_conf()
            fd = listener.fileno()  # the same number in nginx
            self._listener = os.readlink(f"/proc/self/fd/{fd}")
            self.child = Child("nginx", self.command("-g", "daemon off;"),
                               self.base / "nginx.log", env={**os.environ, "NGINX": f"{fd};"},
                               pass_fds=(fd,))
            self.child.start()
        try:  # nginx holds the socket now: connections wait in its backlog meanwhile
            self.child.wait_until(self._serves_generation, "serving", timeout)
        except StartError as exc:
            raise StartError(f"{exc}{_tail(self.base / 'error.log')}") from None

    def set_upstreams(self, upstreams: Sequence[str], timeout: float = 30.0) -> None:
        """Re-render with new hub addresses and reload (SIGHUP); returns once new
        connections get the new configuration."""
        self.upstreams = list(upstreams)
        self.write_conf()
        assert self.child is not None and self.child.pid is not None
        old = children(self.child.pid)
        self.child.send_signal(signal.SIGHUP)
        self.child.wait_until(self._serves_generation, f"reloaded (generation "
                              f"{self.generation})", timeout)
        # an old worker accepts on the shared socket until it has handled the master's
        # QUIT (then it only finishes its open connections): until then a new connection
        # may still get the old upstreams. (The socket is known by its inode: its
        # descriptor number in the launcher was free again once nginx started.)
        listener = self._listener
        self.child.wait_until(lambda: not any(listener in socket_links(pid) for pid in old),
                              "old workers stopped accepting", timeout)

    def _serves_generation(self) -> bool:
        body = _http.get(f"{self.url}/nginx-health")
        return body is not None and body.decode().strip() == f"generation {self.generation}"

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(signal.SIGTERM, timeout=10)  # fast shutdown: workers exit now
            self.child = None


def _hard_nofile() -> int:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 65536 if hard == resource.RLIM_INFINITY else min(int(hard), 1 << 20)


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return f"\n--- {path} (tail) ---\n{path.read_text(errors='replace')[-chars:]}"
    except OSError:
        return ""
