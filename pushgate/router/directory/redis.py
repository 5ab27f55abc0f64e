"""Session directory in Redis (cluster mode): shared by every router.

Every multi-key change is one Lua script (``lua/*.lua``), so quota check + insert,
compare-and-delete and hub removal are atomic. Calls retry connection errors with
exponential backoff and jitter; when Redis stays down, or does not answer within
:data:`DEADLINE_S` (a stopped process), they raise :class:`DirectoryUnavailable`
(retryable, 503 / close 4003 at the edge).

Needs a single Redis (or a Sentinel-managed primary): the scripts touch a user's hash
and hub sets together, which Redis Cluster would put in different slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pushgate.router.directory.base import DirectoryUnavailable
from pushgate.router.directory.keys import SEP, Keys, member, pack, unpack
from pushgate.router.directory.quota import SessionInfo, age_key

# every call (its retries included) ends within this: a Redis that stops answering gives
# a retryable error (503 / close 4003), never a hang (docs/cluster.md, failures)
DEADLINE_S = 3.0
CHUNK = 500  # sessions per restore / prune script call (keeps each script short)


def _script(name: str) -> str:
    return (resources.files("pushgate.router.directory") / "lua" / f"{name}.lua").read_text()


class RedisDirectory:
    def __init__(self, url: str, prefix: str = "pushgate:", *, timeout_s: float = 2.0,
                 retries: int = 3, deadline_s: float = DEADLINE_S) -> None:
        self.deadline_s = deadline_s
        self.keys = Keys(prefix)
        self.prefix = prefix
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s, health_check_interval=10,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries),
            retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError])
        self._add = self.redis.register_script(_script("add"))
        self._remove = self.redis.register_script(_script("remove"))
        self._restore = self.redis.register_script(_script("restore"))
        self._prune = self.redis.register_script(_script("prune"))
        self._remove_hub = self.redis.register_script(_script("remove_hub"))
        self._lookups: list[tuple[list[str], asyncio.Future[list[dict[str, str]]]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def _call(self, coro: Any) -> Any:
        """``coro`` (one Redis call, retries included) within :data:`DEADLINE_S`."""
        try:
            async with asyncio.timeout(self.deadline_s):
                return await coro
        except TimeoutError:
            raise DirectoryUnavailable(
                f"redis: no answer within {self.deadline_s:g} s") from None
        except RedisError as e:
            raise DirectoryUnavailable(f"redis: {e}") from e
        except OSError as e:
            raise DirectoryUnavailable(f"redis: {e}") from e

    # -- Directory ---------------------------------------------------------------------

    async def add(self, info: SessionInfo, limit: int) -> list[SessionInfo]:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        raw = await self._call(self._add(
            keys=[self.keys.user(info.user)],
            args=[self.prefix, info.user, info.session_id, pack(info), info.hub,
                  repr(info.connected_at), limit]))
        return [unpack(info.user, raw[i], raw[i + 1]) for i in range(0, len(raw), 2)]

    async def remove(self, user: str, session_id: str, hub: str) -> bool:
        return bool(await self._call(self._remove(
            keys=[self.keys.user(user)], args=[self.prefix, user, session_id, hub])))

    async def sessions(self, users: Iterable[str]) -> dict[str, list[SessionInfo]]:
        """Lookups made in the same event-loop turn share one pipelined round trip (a
        burst of sends costs one Redis call, not one each)."""
        users = list(dict.fromkeys(users))
        if not users:
            return {}
        fut: asyncio.Future[list[dict[str, str]]] = asyncio.get_running_loop().create_future()
        if not self._lookups:
            asyncio.get_running_loop().call_soon(self._start_lookups)
        self._lookups.append((users, fut))
        found = await fut
        out: dict[str, list[SessionInfo]] = {}
        for u, h in zip(users, found, strict=True):
            if h:
                out[u] = sorted((unpack(u, sid, v) for sid, v in h.items()), key=age_key)
        return out

    def _start_lookups(self) -> None:
        batch, self._lookups = self._lookups, []
        t = asyncio.get_running_loop().create_task(self._lookup(batch))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _lookup(self, batch: list[tuple[list[str], asyncio.Future[list[dict[str, str]]]]]) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            for users, _ in batch:
                for u in users:
                    pipe.hgetall(self.keys.user(u))
            found = await self._call(pipe.execute())
        except BaseException as e:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e if isinstance(e, DirectoryUnavailable)
                                      else DirectoryUnavailable(f"redis: {e!r}"))
            if not isinstance(e, Exception):
                raise
            return
        i = 0
        for users, fut in batch:
            if not fut.done():
                fut.set_result(found[i:i + len(users)])
            i += len(users)

    async def remove_hub(self, hub: str) -> int:
        return int(await self._call(self._remove_hub(args=[self.prefix, hub])))

    async def sync_hub(self, hub: str, sessions: Sequence[SessionInfo], before: float) -> tuple[int, int]:
        """Make the directory hold exactly ``sessions`` for ``hub``: re-record them, and
        drop the hub's other sessions connected before ``before`` (the hub's snapshot
        time; later ones were announced after the snapshot). Returns (added, removed)."""
        added = 0
        for i in range(0, len(sessions), CHUNK):
            args: list[Any] = [self.prefix, hub]
            for s in sessions[i:i + CHUNK]:
                args += [s.user, s.session_id, pack(s)]
            added += int(await self._call(self._restore(args=args)))
        held = {member(s.user, s.session_id) for s in sessions}
        recorded = await self._call(self.redis.smembers(self.keys.hub(hub)))
        stale = [m.split(SEP, 1) for m in recorded if m not in held]
        removed = 0
        for i in range(0, len(stale), CHUNK):
            args = [self.prefix, hub, repr(before)]
            for user, sid in stale[i:i + CHUNK]:
                args += [user, sid]
            removed += int(await self._call(self._prune(args=args)))
        return added, removed

    async def count(self) -> int:
        hubs = await self._call(self.redis.smembers(self.keys.hubs))
        if not hubs:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for h in hubs:
            pipe.scard(self.keys.hub(h))
        return sum(await self._call(pipe.execute()))

    # -- hub liveness (routers) -----------------------------------------------------------

    async def heartbeat(self, hubs: Iterable[str], ttl_s: float) -> None:
        """Keep the heartbeat keys of ``hubs`` (the hubs linked to this router) alive."""
        hubs = list(hubs)
        if not hubs:
            return
        pipe = self.redis.pipeline(transaction=False)
        for h in hubs:
            pipe.set(self.keys.heartbeat(h), "1", px=int(ttl_s * 1000))
            pipe.sadd(self.keys.hubs, h)
        await self._call(pipe.execute())

    async def dead_hubs(self) -> list[str]:
        """Hubs that have sessions recorded but no live heartbeat."""
        hubs = sorted(await self._call(self.redis.smembers(self.keys.hubs)))
        if not hubs:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for h in hubs:
            pipe.exists(self.keys.heartbeat(h))
        alive = await self._call(pipe.execute())
        return [h for h, a in zip(hubs, alive, strict=True) if not a]

    async def claim_epoch(self, value: str) -> bool:
        """Set the epoch marker if it is missing. True = Redis was empty (new, flushed or
        restarted without data): every hub must re-sync its sessions."""
        return bool(await self._call(self.redis.set(self.keys.epoch, value, nx=True)))

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self.deadline_s):
                return bool(await self.redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        await self.redis.aclose()
