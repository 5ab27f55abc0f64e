"""What the fake providers share besides HTTP/2: :class:`FakeState` (what a fake
received, the failures it was told to script, the ``/_fake/...`` control API),
:class:`Ids` for answer ids and :func:`json_reply`."""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pushgate._h2.server import Reply, Request


@dataclass
class Rule:
    """A scripted failure: answer ``status`` with ``reason`` ``times`` times."""

    status: int
    reason: str
    retry_after: str | None = None
    times: int = 1


class Ids:
    """Unique ids for answers (``apns-id``, FCM message names) without a random draw
    per answer (``uuid4()`` was ~8 % of a fake's CPU): a random UUID whose last 48 bits
    count up."""

    def __init__(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]
        self._count = itertools.count(int(uuid.uuid4().hex[:6], 16) << 24)

    def uuid(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFFFFFF:012x}"

    def hex(self) -> str:
        return self.uuid().replace("-", "")[16:]


def json_reply(status: int, obj: Any, headers: dict[str, str] | None = None) -> Reply:
    return status, {"content-type": "application/json", **(headers or {})}, orjson.dumps(obj)


@dataclass
class FakeState:
    """What a fake received and what it was told to answer."""

    total: int = 0  # accepted pushes
    requests: int = 0  # every push request, accepted or not
    counts: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    last: dict[str, Any] = field(default_factory=dict)  # token -> last accepted request
    errors: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    rules: dict[str, collections.deque[Rule]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    record: bool = True  # keep the last request per token (off in big benchmarks)
    history: list[tuple[float, str, int]] = field(default_factory=list)  # (monotonic, token, status)
    changed: asyncio.Event | None = None

    def fail(self, token: str, status: int, reason: str, retry_after: str | None = None,
             times: int = 1) -> None:
        self.rules.setdefault(token, collections.deque()).append(
            Rule(status, reason, retry_after, times))

    def scripted(self, token: str) -> Rule | None:
        rules = self.rules.get(token)
        if not rules:
            return None
        rule = rules[0]
        rule.times -= 1
        if rule.times <= 0:
            rules.popleft()
        return rule

    def accepted(self, token: str, item: Any) -> None:
        self.total += 1
        self.counts[token] += 1
        if self.record:
            self.last[token] = item
            self.history.append((time.monotonic(), token, 200))
        self._notify()

    def refused(self, reason: str, token: str = "", status: int = 0) -> None:
        self.errors[reason] += 1
        if self.record:
            self.history.append((time.monotonic(), token, status))
        self._notify()

    def _notify(self) -> None:
        if self.changed is not None:
            self.changed.set()

    async def wait(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Wait until ``predicate()`` holds (checked whenever a request was answered)."""
        if self.changed is None:
            self.changed = asyncio.Event()
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def stats(self) -> dict[str, Any]:
        dup = sum(1 for n in self.counts.values() if n > 1)
        return {"total": self.total, "requests": self.requests, "tokens": len(self.counts),
                "duplicated_tokens": dup, "errors": dict(self.errors)}

    def control(self, req: Request) -> Reply | None:
        """``GET /_fake/stats``, ``POST /_fake/fail`` ({token, status, reason,
        retry_after, times}), ``POST /_fake/unregister`` ({token}), ``POST /_fake/reset``."""
        if not req.path.startswith("/_fake/"):
            return None
        if req.path == "/_fake/stats":
            return json_reply(200, self.stats())
        try:
            obj = orjson.loads(req.body or b"{}")
        except orjson.JSONDecodeError:
            return json_reply(400, {"error": "body must be JSON"})
        if req.path == "/_fake/fail":
            self.fail(str(obj["token"]), int(obj["status"]), str(obj["reason"]),
                      obj.get("retry_after"), int(obj.get("times", 1)))
        elif req.path == "/_fake/unregister":
            self.gone.add(str(obj["token"]))
        elif req.path == "/_fake/reset":
            self.total = self.requests = 0
            self.counts.clear()
            self.last.clear()
            self.history.clear()
            self.errors.clear()
            self.rules.clear()
            self.gone.clear()
        else:
            return json_reply(404, {"error": "unknown control path"})
        return json_reply(200, {"ok": True})
