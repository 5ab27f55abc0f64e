"""`pushgate listen` and `pushgate send` (built on the Python SDK) against a gateway
started the laptop way: secrets generated into the data dir."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

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
        assert bad.returncode != 0 and "invalid_request" in bad.stderr
        down = await cli(env, "send", "--user", "a", "{}", "--url", "http://127.0.0.1:9",
                         "--data-dir", str(srv.data_dir))
        assert down.returncode != 0 and "cannot reach" in down.stderr
    finally:
        srv.stop()
