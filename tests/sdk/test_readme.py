"""The README's "Try it", run as written: its shell blocks in order (terminal 1: the
gateway, terminal 2: ``pushgate listen`` in the foreground, terminal 3: the curl send),
each in bash from the repository's directory; what the README shows each terminal
printing is what they print (session ids, report ids and times aside).

Only two things differ from a person at a terminal: the data directory is the test's
own (``PUSHGATE_DATA_DIR``) and the port is any free one (``PUSHGATE_PORT=0``; the
README's ``127.0.0.1:8080`` becomes the announced address, for ``listen`` through
``PUSHGATE_URL``), so that the test runs next to other servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from deploy.local.cluster import base_env

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
DEFAULT = "127.0.0.1:8080"


def try_it_blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Try it", 1)[1].split("\n## ", 1)[0]
    return BLOCK.findall(section)


@contextlib.asynccontextmanager
async def terminal(script: str, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """``script`` in bash, in the foreground of its own "terminal" (process group);
    Ctrl-C (SIGINT to the group) at the end, SIGKILL if that is not enough."""
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


async def line_starting(stream: asyncio.StreamReader | None, prefix: str,
                        timeout: float) -> str:
    assert stream is not None
    seen: list[str] = []

    async def scan() -> str:
        while raw := await stream.readline():
            line = raw.decode().rstrip("\n")
            seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"ended without a line starting {prefix!r}: {seen[-20:]}")

    try:
        return await asyncio.wait_for(scan(), timeout)
    except TimeoutError:
        raise AssertionError(f"no line starting {prefix!r} in {timeout} s: {seen[-20:]}") from None


def _same_shape(got: str, shown: str, ignore: set[str]) -> None:
    a, b = json.loads(got), json.loads(shown)
    for d in (a, b):
        for k in ignore:
            d.pop(k, None)
    assert a == b, (got, shown)


async def test_readme_try_it_as_typed(tmp_path: Path) -> None:
    blocks = try_it_blocks()
    assert [lang for lang, _ in blocks] == ["sh", "sh", "text", "sh", "text", "text"]
    (_, serve), (_, listen), (_, listen_shows), (_, send), (_, reply_shown), (_, event_shown) = blocks
    env = {**base_env(), "PUSHGATE_DATA_DIR": str(tmp_path / "data"), "PUSHGATE_PORT": "0",
           "PUSHGATE_LOG_LEVEL": "warning"}

    async with terminal(serve, env) as t1:  # installs into .venv, then serves
        announced = await line_starting(t1.stdout, "PUSHGATE_LISTENING ", 300)
        address = announced.split("http://", 1)[1]
        env["PUSHGATE_URL"] = f"http://{address}"
        async with terminal(listen, env) as t2:
            for shown in listen_shows.strip().splitlines():  # connecting, connected (session …)
                got = await line_starting(t2.stderr, shown.split("(")[0], 30)
                assert re.fullmatch(re.escape(shown.split("(")[0]) + r"(\(session [0-9a-f]{32}\))?",
                                    got), got
            async with terminal(send.replace(DEFAULT, address), env) as t3:
                out, err = await asyncio.wait_for(t3.communicate(), 30)
                assert t3.returncode == 0, err.decode()
            _same_shape(out.decode().strip(), reply_shown.strip(), {"report"})
            assert json.loads(out)["report"].startswith("r-")
            event = await line_starting(t2.stdout, "{", 30)
            _same_shape(event, event_shown.strip(), {"created_at"})
        assert t2.returncode in (0, -signal.SIGINT), t2.returncode  # Ctrl-C: a clean exit
