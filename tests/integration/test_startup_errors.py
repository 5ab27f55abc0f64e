"""``pushgate serve`` refuses to start on an unreachable store the way
docs/configuration.md says every bad input is answered: one ``pushgate: …`` line
naming the setting (the password masked), exit code 2, no traceback."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from deploy.local.cluster import pushgate_bin
from tests.support.server import server_env


def _one_line_exit_2(args: list[str], tmp_path: Path, *, secret: str = "",
                     **env: str) -> str:
    """Runs ``pushgate *args``, checks it refused to start (exit code 2, no traceback,
    never listened, *secret* nowhere in its output) and returns its last line."""
    proc = subprocess.run([pushgate_bin(), *args], env={**server_env(), **env},
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out and "PUSHGATE_LISTENING" not in out, out
    assert not secret or secret not in out, out
    return proc.stderr.strip().splitlines()[-1]


def test_serve_with_an_unreachable_store_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = "mysql+asyncmy://root:s3cret@127.0.0.1:1/nodb"  # nothing listens on port 1
    t0 = time.monotonic()
    line = _one_line_exit_2(["serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
                             "--store-url", url], tmp_path, secret="s3cret")
    assert time.monotonic() - t0 < 30
    assert line.startswith(
        "pushgate: store_url mysql+asyncmy://root:***@127.0.0.1:1/nodb: OperationalError"), line
    assert "Can't connect" in line


def test_with_json_logs_the_start_failure_and_notices_are_json_lines(tmp_path: Path) -> None:
    """operations.md, logs: with ``log_format = "json"`` every line is JSON, for a
    collector to parse; the CLI's own start failure and its secrets notice were plain
    text."""
    import json

    url = "mysql+asyncmy://root:s3cret@127.0.0.1:1/nodb"
    cmd = [pushgate_bin(), "serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
           "--store-url", url, "--log-format", "json"]
    env = {k: v for k, v in server_env().items()  # (secrets generated: the notice)
           if k not in ("PUSHGATE_JWT_SECRET", "PUSHGATE_API_KEYS")} | {
               "PUSHGATE_LOG_LEVEL": "info"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [json.loads(x) for x in proc.stderr.strip().splitlines()]  # (each one JSON)
    assert lines[-1]["level"] == "error" and lines[-1]["logger"] == "pushgate.cli"
    assert lines[-1]["event"].startswith("store_url mysql+asyncmy://root:***@127.0.0.1:1/nodb")
    assert any("generated a JWT secret and an API key in" in x["event"] for x in lines)
    assert "s3cret" not in proc.stderr
    # with API keys set and logs at warning: the notice still shows, naming only the secret
    env |= {"PUSHGATE_API_KEYS": "k" * 32, "PUSHGATE_LOG_LEVEL": "warning"}
    cmd[cmd.index("--data-dir") + 1] = str(tmp_path / "data2")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    notices = [x["event"] for x in map(json.loads, proc.stderr.strip().splitlines())
               if x["event"].startswith("generated")]
    assert notices == [f"generated a JWT secret in {tmp_path / 'data2' / 'secrets.json'}"], \
        proc.stderr


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
    line = _one_line_exit_2(["serve", "--port", "0", "--data-dir", str(data)], tmp_path)
    assert line.startswith("pushgate: store_url sqlite+aiosqlite:///") and \
        "Can't locate revision identified by '0099'" in line, line
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0099",)]


def test_a_malformed_sentinel_or_cluster_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """docs/cluster.md, Directory (Redis): such a URL is refused at start with a message
    naming directory_url and what is wrong (it was a traceback and exit code 1)."""
    for url, what in (("redis+sentinel://127.0.0.1:26379", "service name is missing"),
                      ("redis+cluster://127.0.0.1:7000/0", "no database or service path"),
                      ("redis+cluster://", "no host:port")):
        line = _one_line_exit_2(
            ["router", "--router-listen", "127.0.0.1:0", "--store-url",
             "mysql+asyncmy://root@127.0.0.1:1/nodb", "--directory-url", url], tmp_path)
        assert line.startswith(f"pushgate: directory_url {url!r}: ") and what in line, line


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
        # ...and the gateway's own port in use (it was uvicorn's log line and exit code 3)
        line = _one_line_exit_2(["serve", "--data-dir", data, "--host", "127.0.0.1",
                                 "--port", str(port)], tmp_path)
        assert line == (f"pushgate: host 127.0.0.1, port {port}: cannot listen there (the "
                        "port is in use or the address is not this machine's)"), line
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


def test_serve_on_a_database_file_it_cannot_write_is_one_line_and_exit_2(
        tmp_path: Path) -> None:
    """A database SQLite can open only read-only (created by root, the service another
    user; here: immutable) passes every read and the no-op migration: the write probe at
    start refuses it, instead of a gateway that says it is ready and answers every send
    503."""
    data = tmp_path / "data"
    db = data / "pushgate.db"
    env = server_env()
    subprocess.run([pushgate_bin(), "migrate", "--url", f"sqlite+aiosqlite:///{db}"],
                   env=env, check=True, capture_output=True, timeout=60)
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here (needs root and ext4/xfs/btrfs)")
    try:
        line = _one_line_exit_2(["serve", "--port", "0", "--data-dir", str(data)], tmp_path)
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    assert line.startswith("pushgate: store_url sqlite+aiosqlite:///") and \
        "attempt to write a readonly database" in line, line


def test_a_full_disk_at_the_first_start_leaves_no_secrets_file_behind(tmp_path: Path) -> None:
    """The generated ``secrets.json`` is written whole or not at all: a disk that is full
    at the first start is one line and exit 2, and once space is freed the next start
    works (a 0-byte file was left behind, which every later start refused)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        filler = disk / "filler"
        with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:  # fill it up
                f.write(b"\0" * 4096)
        data = disk / "data"
        data.mkdir()
        env = {k: v for k, v in server_env().items()  # no secrets: generated into data
               if k not in ("PUSHGATE_API_KEYS", "PUSHGATE_JWT_SECRET")}
        proc = subprocess.run([pushgate_bin(), "api-key", "--data-dir", str(data)], env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith(
            f"pushgate: data_dir: cannot write {data / 'secrets.json'}: No space left"), \
            proc.stderr
        assert sorted(p.name for p in data.iterdir()) == []
        filler.unlink()
        proc = subprocess.run([pushgate_bin(), "api-key", "--data-dir", str(data)], env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert len(proc.stdout.strip()) >= 32
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_router_on_a_memory_directory_warns(tmp_path: Path) -> None:
    """memory:// is the embedded gateway's directory: a router started on it (the
    default) keeps its sessions to itself, which two routers would split; with no
    store_url its inboxes are a SQLite file of its own. It starts, and says both."""
    from tests.support.waiting import wait_for_sync

    out = tmp_path / "router.log"
    with out.open("w") as log:
        proc = subprocess.Popen(
            [pushgate_bin(), "router", "--data-dir", str(tmp_path / "data"),
             "--router-listen", "127.0.0.1:0", "--router-link-listen", "off"],
            env=server_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_sync(lambda: "PUSHGATE_ROUTER_LISTENING" in out.read_text(), 30,
                      "the router listening")
        wait_for_sync(lambda: "keeps the sessions in this router's memory" in out.read_text(),
                      10, "the warning")
        line = next(x for x in out.read_text().splitlines() if "router's memory" in x)
        assert "warning" in line.lower() and "directory_url memory://" in line, line
        # and the inboxes, with no store_url, in a SQLite file no other router sees
        wait_for_sync(lambda: "no store_url" in out.read_text(), 10, "the store warning")
    finally:
        proc.kill()
        proc.wait(30)
