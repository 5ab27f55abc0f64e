"""A server raises its soft open-file limit to the hard one at start (pushgate/rlimits.py):
started with a soft limit of 256 (what ``prlimit --nofile=256:<hard>`` gives it), a hub
still holds 400 websocket sessions, and /proc shows the raised limit."""

from __future__ import annotations

import contextlib
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.local.cluster import LISTENING, pushgate_bin
from deploy.local.processes import Child
from pushgate import rlimits
from tests.support.server import ServerProcess, server_env
from tests.support.ws import ws_client

SESSIONS = 400


def soft_nofile(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no 'Max open files' in /proc/<pid>/limits")


def test_raise_nofile_sets_the_soft_limit_to_the_hard_one() -> None:
    code = ("import resource; from pushgate import rlimits; "
            "print(*rlimits.raise_nofile(), *resource.getrlimit(resource.RLIMIT_NOFILE))")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)))
    before, after, soft, hard_after = map(int, out.stdout.split())
    assert (before, after, soft, hard_after) == (256, hard, hard, hard)
    assert rlimits.raise_nofile()[1] == hard  # already there: unchanged


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) missing")
async def test_hub_started_with_a_low_soft_limit_holds_more_sessions(tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard < SESSIONS + 200:
        pytest.skip(f"hard open-file limit {hard} too low for this test")
    # no per-IP connect rate: the 400 sessions come from one address as fast as they can
    srv = ServerProcess(tmp_path / "data", server_env(PUSHGATE_CONNECT_RATE_PER_IP="0"))
    cmd = ["prlimit", f"--nofile=256:{hard}", pushgate_bin(), "serve", "--port", "0",
           "--data-dir", str(srv.data_dir)]
    srv.child = Child("pushgate", cmd, srv.log_path, env=srv.env)
    srv.child.start()
    try:
        srv.port = int(srv.child.wait_line(LISTENING, 30).rsplit(":", 1)[1])
        assert srv.pid is not None
        assert soft_nofile(srv.pid) == hard
        async with contextlib.AsyncExitStack() as stack:
            for i in range(SESSIONS):
                await stack.enter_async_context(ws_client(srv, f"u{i}"))
            async with srv.http() as http:
                r = await http.get(f"/v1/users/u{SESSIONS - 1}/sessions")
                assert len(r.json()["sessions"]) == 1
    finally:
        srv.stop()
