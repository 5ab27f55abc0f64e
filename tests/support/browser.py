"""Headless Chromium for the tests: Debian's chromium driven by playwright-core through
clients/js/test/browser-driver.mjs (one JSON command per line; see that file)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "clients" / "js"
CHROMIUM = "/usr/bin/chromium"


class Browser:
    """The Node driver process: ``await b.eval("expr")`` runs in the page."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.console: list[str] = []
        self._id = 0

    async def _line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            raise RuntimeError("browser driver exited:\n" + "\n".join(self.console[-30:]))
        msg: dict[str, Any] = json.loads(raw)
        if "console" in msg:
            self.console.append(msg["console"])
        return msg

    async def ready(self, timeout: float = 60) -> dict[str, Any]:
        while True:
            msg = await self._line(timeout)
            if msg.get("ready"):
                return msg

    async def call(self, op: str, timeout: float = 30, **kw: Any) -> Any:
        assert self.proc.stdin is not None
        self._id += 1
        self.proc.stdin.write((json.dumps({"id": self._id, "op": op, **kw}) + "\n").encode())
        await self.proc.stdin.drain()
        while True:
            msg = await self._line(timeout)
            if msg.get("id") == self._id:
                if not msg["ok"]:
                    raise AssertionError(f"{op} failed: {msg['error']}\nconsole:\n"
                                         + "\n".join(self.console[-30:]))
                return msg.get("value")

    async def eval(self, expr: str, timeout: float = 30) -> Any:
        return await self.call("eval", timeout, expr=expr)


def _check_setup() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (./scripts/test does)")
    if not (JS / "node_modules" / "playwright-core").is_dir():
        pytest.fail("clients/js/node_modules is missing: (cd clients/js && npm ci)")


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    _check_setup()
    proc = await asyncio.create_subprocess_exec(
        "node", str(JS / "test" / "browser-driver.mjs"), cwd=str(JS),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    b = Browser(proc)
    try:
        await b.ready()
        yield b
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()
