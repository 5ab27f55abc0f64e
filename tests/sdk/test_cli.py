"""`pushgate listen` and `pushgate send` (built on the Python SDK) against a gateway
started the laptop way: secrets generated into the data dir."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path

from pushgate_client import Client

from deploy.local.cluster import pushgate_bin
from tests.support.server import ServerProcess, server_env


async def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        pushgate_bin(), *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return subprocess.CompletedProcess(args, proc.returncode or 0, out.decode(), err.decode())


async def test_listen_prints_what_send_sends(tmp_path: Path) -> None:
    env = server_env()
    del env["PUSHGATE_JWT_SECRET"], env["PUSHGATE_API_KEYS"]  # generated into data_dir
    srv = ServerProcess(tmp_path / "data", env)
    srv.start()
    try:
        common = ["--url", srv.base_url, "--data-dir", str(srv.data_dir)]
        sent = await cli(env, "send", "--user", "alice", "--id", "m1", '{"text":"hi"}', *common)
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["results"][0]["seq"] == 1

        listener = await asyncio.create_subprocess_exec(
            pushgate_bin(), "listen", "--user", "alice", "--after", "0", "--count", "3", *common,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert listener.stdout is not None and listener.stderr is not None
        first = json.loads(await asyncio.wait_for(listener.stdout.readline(), 20))
        assert (first["seq"], first["id"], first["body"]) == (1, "m1", {"text": "hi"})
        # a send with ack: completes only because `listen` acks
        acked = await cli(env, "send", "--user", "alice", "--ack", "plain words", *common)
        assert acked.returncode == 0, acked.stderr
        assert json.loads(acked.stdout)["results"][0]["acked_by"]
        await cli(env, "send", "--user", "alice", "--ttl", "0", '{"typing":true}', *common)
        out, err = await asyncio.wait_for(listener.communicate(), 20)
        lines = [json.loads(line) for line in out.decode().splitlines()]
        assert [(e["seq"], e["body"]) for e in lines] == [(2, "plain words"),
                                                          (None, {"typing": True})]
        assert listener.returncode == 0
        assert "pushgate: connected (session " in err.decode()

        bad = await cli(env, "send", "--user", "alice", "--ttl", "-1", "{}", *common)
        assert bad.returncode == 1 and "invalid_request" in bad.stderr
        down = await cli(env, "send", "--user", "a", "{}", "--url", "http://127.0.0.1:9",
                         "--data-dir", str(srv.data_dir))
        assert down.returncode == 1 and "cannot reach" in down.stderr
    finally:
        srv.stop()


async def test_listen_bad_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = server_env()
    bad = await cli(env, "listen", "--user", "a", "--url", "foo://x",
                    "--data-dir", str(tmp_path / "data"))
    assert bad.returncode == 2, bad
    assert bad.stderr.startswith("pushgate: url must start with"), bad.stderr
    assert len(bad.stderr.splitlines()) == 1, bad.stderr
    negative = await cli(env, "listen", "--user", "a", "--after", "-1",
                         "--data-dir", str(tmp_path / "data"))
    assert negative.returncode == 2 and "Traceback" not in negative.stderr, negative


async def test_send_from_a_data_dir_without_secrets_says_it_made_new_ones(tmp_path: Path) -> None:
    """A mistyped --data-dir: the command's generated key is not the gateway's. The 401
    comes with the reason, not alone."""
    env = server_env()
    srv = ServerProcess(tmp_path / "data", env)
    srv.start()
    try:
        bare = {k: v for k, v in env.items() if k not in ("PUSHGATE_JWT_SECRET",
                                                          "PUSHGATE_API_KEYS")}
        wrong = tmp_path / "typo"
        sent = await cli(bare, "send", "--user", "a", "1", "--url", srv.base_url,
                         "--data-dir", str(wrong))
        assert sent.returncode == 1, sent  # the gateway refused it (2: bad arguments)
        assert f"pushgate: no secrets in {wrong}: generated new ones" in sent.stderr, sent.stderr
        assert "unauthorized" in sent.stderr, sent.stderr
        again = await cli(bare, "send", "--user", "a", "1", "--url", srv.base_url,
                          "--data-dir", str(wrong))
        assert "generated new ones" not in again.stderr, again.stderr  # only when made
    finally:
        srv.stop()


async def test_listen_exits_1_when_its_token_is_refused(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data", server_env())
    srv.start()
    try:
        other = server_env()  # another JWT secret: the server refuses the tokens (4100)
        refused = await cli(other, "listen", "--user", "a", "--url", srv.base_url,
                            "--data-dir", str(tmp_path / "other"))
        assert refused.returncode == 1, refused
        assert "pushgate: disconnected (4100 " in refused.stderr, refused.stderr
        assert refused.stderr.rstrip().endswith("(not reconnecting)"), refused.stderr
    finally:
        srv.stop()


async def test_listen_reports_each_disconnect_and_exits_1_when_kicked(tmp_path: Path) -> None:
    env = server_env()  # the CLI mints its tokens with the server's secret
    srv = ServerProcess(tmp_path / "data", env)
    srv.start()
    listener = await asyncio.create_subprocess_exec(
        pushgate_bin(), "listen", "--user", "kim", "--url", srv.base_url,
        "--data-dir", str(srv.data_dir), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    assert listener.stderr is not None
    lines: list[str] = []

    async def line_with(text: str, timeout: float = 20) -> str:
        assert listener.stderr is not None
        while True:
            raw = await asyncio.wait_for(listener.stderr.readline(), timeout)
            assert raw, f"stderr ended before a {text!r} line: {lines}"
            lines.append(raw.decode().rstrip("\n"))
            if text in lines[-1]:
                return lines[-1]

    others: list[Client] = []
    try:
        await line_with("pushgate: connected (session ")
        await asyncio.to_thread(srv.stop, signal.SIGTERM)
        # the close that happened, not a bare "disconnected"
        assert await line_with("pushgate: disconnected") == \
            "pushgate: disconnected (4000 server shutting down; reconnect)"
        # the server is gone: no close frame, the connect error (not the old 4000 again)
        refused = await line_with("pushgate: disconnected")
        assert refused.startswith("pushgate: disconnected (connect failed: "), lines
        await asyncio.to_thread(srv.start)
        await line_with("pushgate: connected (session ")
        others = [Client(srv.base_url, token=srv.token("kim")) for _ in range(5)]
        for c in others:  # the 6th session of kim kicks the listener
            await c.wait_connected(10)
        assert (await line_with("pushgate: disconnected")).startswith(
            "pushgate: disconnected (4102 "), lines
        assert await asyncio.wait_for(listener.wait(), 20) == 1  # kicked: must not reconnect
        assert listener.stderr is not None
        rest = (await listener.stderr.read()).decode()
        assert "connection closed with 4102" in rest and "(not reconnecting)" in rest, rest
    finally:
        if listener.returncode is None:
            listener.kill()
            await listener.wait()
        for c in others:
            await c.close()
        srv.stop()
