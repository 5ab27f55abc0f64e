"""``pushgate serve`` refuses to start on an unreachable store the way
docs/configuration.md says every bad input is answered: one ``pushgate: …`` line
naming the setting (the password masked), exit code 2, no traceback."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

from deploy.local.cluster import pushgate_bin
from tests.support.server import server_env


def test_serve_with_an_unreachable_store_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = "mysql+asyncmy://root:s3cret@127.0.0.1:1/nodb"  # nothing listens on port 1
    cmd = [pushgate_bin(), "serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
           "--store-url", url]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=server_env(), capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert time.monotonic() - t0 < 30
    assert "Traceback" not in out and "s3cret" not in out, out
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(
        "pushgate: store_url mysql+asyncmy://root:***@127.0.0.1:1/nodb: OperationalError"), out
    assert "Can't connect" in lines[-1]


def test_serve_on_a_schema_newer_than_its_own_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A data dir migrated by a newer version (a revision this one does not know): the
    refusal names the revision, no Alembic traceback; the database is left as it was."""
    data = tmp_path / "data"
    db = data / "pushgate.db"
    env = server_env()
    subprocess.run([pushgate_bin(), "migrate", "--url", f"sqlite+aiosqlite:///{db}"],
                   env=env, check=True, capture_output=True, timeout=60)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    proc = subprocess.run([pushgate_bin(), "serve", "--port", "0", "--data-dir", str(data)],
                          env=env, capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("pushgate: store_url sqlite+aiosqlite:///") and \
        "Can't locate revision identified by '0099'" in line, out
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0099",)]


def test_a_malformed_sentinel_or_cluster_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """docs/cluster.md, Directory (Redis): such a URL is refused at start with a message
    naming directory_url and what is wrong (it was a traceback and exit code 1)."""
    for url, what in (("redis+sentinel://127.0.0.1:26379", "service name is missing"),
                      ("redis+cluster://127.0.0.1:7000/0", "no database or service path"),
                      ("redis+cluster://", "no host:port")):
        proc = subprocess.run(
            [pushgate_bin(), "router", "--router-listen", "127.0.0.1:0",
             "--store-url", "mysql+asyncmy://root@127.0.0.1:1/nodb", "--directory-url", url],
            env=server_env(), capture_output=True, text=True, timeout=60)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2 and "Traceback" not in out, out
        line = proc.stderr.strip().splitlines()[-1]
        assert line.startswith(f"pushgate: directory_url {url!r}: ") and what in line, out


def _one_line_exit_2(args: list[str], tmp_path: Path, **env: str) -> str:
    proc = subprocess.run([pushgate_bin(), *args], env={**server_env(), **env},
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out and "PUSHGATE_LISTENING" not in out, out
    return proc.stderr.strip().splitlines()[-1]


def test_bad_listening_places_and_files_are_one_line_and_exit_2(tmp_path: Path) -> None:
    """configuration.md: every bad start-up input is one ``pushgate:`` line naming the
    setting and exit code 2 (these were tracebacks, or a server that printed its
    listening line and then died)."""
    data = str(tmp_path / "data")
    (tmp_path / "afile").write_text("")
    # the store is a directory, not a database
    (tmp_path / "adir").mkdir()
    line = _one_line_exit_2(["serve", "--port", "0", "--data-dir", data, "--store-url",
                             f"sqlite+aiosqlite:///{tmp_path / 'adir'}"], tmp_path)
    assert line.startswith("pushgate: store_url sqlite+aiosqlite:///"), line
    line = _one_line_exit_2(["router", "--data-dir", data, "--router-listen", "127.0.0.1:0",
                             "--store-url", f"sqlite+aiosqlite:///{tmp_path / 'adir'}"],
                            tmp_path)
    assert line.startswith("pushgate: store_url sqlite+aiosqlite:///"), line
    # an unwritable port file: refused before the server starts
    line = _one_line_exit_2(["serve", "--port", "0", "--data-dir", data, "--port-file",
                             str(tmp_path / "afile" / "port")], tmp_path)
    assert line.startswith("pushgate: --port-file"), line
    # a router port in use
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _one_line_exit_2(["router", "--data-dir", data, "--router-listen",
                                 f"127.0.0.1:{port}", "--router-link-listen", "off"], tmp_path)
        assert line.startswith(f"pushgate: router_listen 127.0.0.1:{port}: cannot listen"), line
        line = _one_line_exit_2(["router", "--data-dir", data, "--router-listen",
                                 "127.0.0.1:0", "--router-link-listen", "off",
                                 "--router-metrics-listen", f"127.0.0.1:{port}"], tmp_path)
        assert line.startswith(f"pushgate: router_metrics_listen 127.0.0.1:{port}"), line
    # a Redis directory for the embedded gateway (configuration.md: memory:// only; it
    # started and answered transient sends 503 directory_unavailable)
    line = _one_line_exit_2(["serve", "--port", "0", "--data-dir", data], tmp_path,
                            PUSHGATE_DIRECTORY_URL="redis://127.0.0.1:1/0")
    assert line.startswith("pushgate: directory_url redis://127.0.0.1:1/0: the embedded"), line
    # an admin key that is the API key kept in the data dir
    env = {k: v for k, v in server_env().items() if k != "PUSHGATE_API_KEYS"}
    key = subprocess.run([pushgate_bin(), "api-key", "--data-dir", data], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    proc = subprocess.run([pushgate_bin(), "serve", "--port", "0", "--data-dir", data],
                          env={**env, "PUSHGATE_ADMIN_KEY": key}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "admin_key must differ" in proc.stderr, proc.stderr
