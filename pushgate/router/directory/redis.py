"""Session directory in Redis (cluster mode): shared by every router.

One Redis, a Sentinel-managed primary or Redis Cluster (:mod:`.engines`, chosen by the
URL), with one key layout (:mod:`.keys`): every multi-key change is one Lua script whose
keys share one bucket's hash tag, so quota check + insert, compare-and-delete, hub
removal and hub re-sync are atomic per user and never cross a cluster slot. Calls retry
connection errors with exponential backoff and jitter; when Redis stays down, or does
not answer within :data:`DEADLINE_S` (a stopped process), they raise
:class:`DirectoryUnavailable` (retryable, 503 / close 4003 at the edge).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Coroutine, Iterable, Sequence
from importlib import resources
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from pushgate.logs import get_logger
from pushgate.router.directory import engines
from pushgate.router.directory.base import DirectoryUnavailable
from pushgate.router.directory.keys import BUCKETS, SEP, Keys, bucket, member, pack, unpack
from pushgate.router.directory.quota import SessionInfo, age_key

log = get_logger(__name__)

# what a Redis call raises when Redis (or the whole cluster) cannot be reached: redis-py's
# cluster client raises RedisClusterUnreachableError, which is not a RedisError
REDIS_ERRORS = (RedisError, RedisClusterException, OSError)


#: a user's sessions hash as looked up, or why it could not be
Found = dict[str, str] | DirectoryUnavailable


def _retrieved(task: asyncio.Future[Any]) -> None:
    """The outcome of a call left behind at its deadline: nobody waits for it."""
    if not task.cancelled():
        task.exception()

# every call (its retries included) ends within this: a Redis that stops answering gives
# a retryable error (503 / close 4003), never a hang (docs/cluster.md, failures)
DEADLINE_S = 3.0
CHUNK = 500  # sessions per restore / prune script call (keeps each script short)
PARALLEL = 32  # script calls in flight at once during a hub's cleanup or re-sync
LISTED_S = 1.0  # add() re-asserts its hub in the hub list at most this often


def _script(name: str) -> str:
    return (resources.files("pushgate.router.directory") / "lua" / f"{name}.lua").read_text()


class RedisDirectory:
    def __init__(self, url: str, prefix: str = "pushgate:", *, timeout_s: float = 2.0,
                 retries: int = 3, deadline_s: float = DEADLINE_S) -> None:
        self.deadline_s = deadline_s
        self.keys = Keys(prefix)
        self.prefix = prefix
        self.engine = engines.parse(url)
        self.redis: Any
        self.redis, self._others = engines.connect(self.engine, timeout_s=timeout_s,
                                                   retries=retries)
        self._add = self.redis.register_script(_script("add"))
        self._remove = self.redis.register_script(_script("remove"))
        self._restore = self.redis.register_script(_script("restore"))
        self._prune = self.redis.register_script(_script("prune"))
        self._remove_hub = self.redis.register_script(_script("remove_hub"))
        self._quota = self.redis.register_script(_script("quota"))
        self._lookups: list[tuple[list[str], asyncio.Future[list[Found]]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._listed: dict[str, float] = {}  # hub -> when add() last put it in the hub list

    async def _call(self, coro: Awaitable[Any], *, leave_at_deadline: bool = True) -> Any:
        """``coro`` (one Redis call, retries included) within :data:`DEADLINE_S`.

        By default the call runs in a task of its own, left behind (cancelled, not waited
        for) at the deadline, or when the caller is cancelled first (a shorter deadline of
        its own): a timeout that only cancels the call is not enough, as redis-py can
        swallow that cancellation while it reconnects, and the call then ran on to its
        socket timeouts and retries (a connect answered at the hub's 5 s instead of the
        directory's 3 s). What such a call still writes when Redis comes back is what a
        re-sync repairs (the router asks the hub for one after a failure).
        ``leave_at_deadline=False`` (a re-sync's own restores, which must not land behind
        the caller's back): the call is cancelled and waited for."""
        if not leave_at_deadline:
            try:
                async with asyncio.timeout(self.deadline_s):
                    return await coro
            except TimeoutError:
                raise DirectoryUnavailable(
                    f"redis: no answer within {self.deadline_s:g} s") from None
            except REDIS_ERRORS as e:
                raise DirectoryUnavailable(f"redis: {e}") from e
        task = asyncio.ensure_future(coro)
        try:
            done, _ = await asyncio.wait((task,), timeout=self.deadline_s)
        except BaseException:  # the caller is cancelled: the call is left behind too
            task.cancel()
            task.add_done_callback(_retrieved)
            raise
        if not done:
            task.cancel()
            task.add_done_callback(_retrieved)
            raise DirectoryUnavailable(f"redis: no answer within {self.deadline_s:g} s")
        try:
            return task.result()
        except REDIS_ERRORS as e:
            raise DirectoryUnavailable(f"redis: {e}") from e

    async def _each(self, calls: list[Coroutine[Any, Any, Any]]) -> list[Any]:
        """Run script calls of different buckets, at most PARALLEL at once. When one
        fails, the others are cancelled and waited for before the error is raised: a
        re-sync that failed half way must not go on restoring sessions behind the
        caller's back, after the hub's sessions were already announced gone."""
        gate = asyncio.Semaphore(PARALLEL)

        async def one(c: Coroutine[Any, Any, Any]) -> Any:
            async with gate:
                return await self._call(c, leave_at_deadline=False)

        tasks = [asyncio.ensure_future(one(c)) for c in calls]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            for c in calls:  # the ones cancelled before they started
                c.close()

    async def _pipelined(self, commands: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Single-key commands in one non-transactional pipeline (split per node by the
        cluster client)."""
        if not commands:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for name, args in commands:
            getattr(pipe, name)(*args)
        return list(await self._call(pipe.execute()))

    async def _hub_members(self, hub: str) -> dict[int, list[str]]:
        """The hub's recorded members, by bucket (non-empty buckets only)."""
        found = await self._pipelined([("smembers", (self.keys.hub(hub, b),))
                                       for b in range(BUCKETS)])
        return {b: list(m) for b, m in enumerate(found) if m}

    # -- Directory ---------------------------------------------------------------------

    async def add(self, info: SessionInfo, limit: int) -> list[SessionInfo]:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        b = bucket(info.user)
        raw = await self._call(self._add(
            keys=[self.keys.user(info.user), self.keys.hub(info.hub, b)],
            args=[self.keys.base(b), info.user, info.session_id, pack(info), info.hub,
                  repr(info.connected_at), limit]))
        # after the script, never before it: a dead-hub cleanup that ran in between
        # finds the hub listed again and sweeps this session on its next round
        now = time.monotonic()
        if now - self._listed.get(info.hub, -LISTED_S) >= LISTED_S:
            await self._call(self.redis.sadd(self.keys.hubs, info.hub))
            self._listed[info.hub] = now
        return [unpack(info.user, raw[i], raw[i + 1]) for i in range(0, len(raw), 2)]

    async def remove(self, user: str, session_id: str, hub: str) -> bool:
        return bool(await self._call(self._remove(
            keys=[self.keys.user(user), self.keys.hub(hub, bucket(user))],
            args=[user, session_id, hub])))

    async def sessions(self, users: Iterable[str], *,
                       partial: bool = False) -> dict[str, list[SessionInfo]]:
        """Lookups made in the same event-loop turn share one pipelined round trip (a
        burst of sends costs one Redis call per node, not one each). On a cluster, a
        node that does not answer fails the lookups of its users only; ``partial``: they
        are left out (as without sessions) instead of failing the call."""
        users = list(dict.fromkeys(users))
        if not users:
            return {}
        fut: asyncio.Future[list[Found]] = asyncio.get_running_loop().create_future()
        if not self._lookups:
            asyncio.get_running_loop().call_soon(self._start_lookups)
        self._lookups.append((users, fut))
        found = await fut
        out: dict[str, list[SessionInfo]] = {}
        unknown = 0
        for u, h in zip(users, found, strict=True):
            if isinstance(h, DirectoryUnavailable):
                if not partial:
                    raise h
                unknown += 1
            elif h:
                out[u] = sorted((unpack(u, sid, v) for sid, v in h.items()), key=age_key)
        if unknown:
            log.warning("directory unavailable for some users; their stored events wait for "
                        "a fetch", users=unknown, of=len(users))
        return out

    def _start_lookups(self) -> None:
        batch, self._lookups = self._lookups, []
        t = asyncio.get_running_loop().create_task(self._lookup(batch))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _lookup(self, batch: list[tuple[list[str], asyncio.Future[list[Found]]]]) -> None:
        """The batch's users, one pipeline per node side by side (one in all but a
        cluster); each request is answered as soon as its users are known: a node that
        does not answer (a master down until its replica takes over) holds up and fails
        the requests with users on it only."""
        keys = [self.keys.user(u) for users, _ in batch for u in users]
        found: list[Found | None] = [None] * len(keys)
        ends = list(itertools.accumulate(len(users) for users, _ in batch))

        groups: list[list[int]] = []

        def answer() -> None:
            start = 0
            for (_, fut), end in zip(batch, ends, strict=True):
                if not fut.done():
                    part = found[start:end]
                    if len(groups) == 1 or all(f is not None for f in part):
                        fut.set_result(part)  # type: ignore[arg-type]  # (no None left)
                start = end

        async def look(at: list[int]) -> None:
            try:
                got: list[Found] = await self._pipelined([("hgetall", (keys[i],)) for i in at])
            except DirectoryUnavailable as e:
                got = [e] * len(at)
            for i, f in zip(at, got, strict=True):
                found[i] = f
            answer()

        try:
            groups = self._by_node(keys)
            await asyncio.gather(*(look(at) for at in groups))
        except BaseException as e:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(DirectoryUnavailable(f"redis: {e!r}"))
            if not isinstance(e, Exception):
                raise

    def _by_node(self, keys: list[str]) -> list[list[int]]:
        """The positions of ``keys`` grouped by the cluster node that serves them (one
        group when not a cluster)."""
        if self.engine.mode != "cluster":
            return [list(range(len(keys)))]
        by_node: dict[str, list[int]] = defaultdict(list)
        for i, k in enumerate(keys):
            try:
                node = self.redis.get_node_from_key(k)
            except REDIS_ERRORS:  # a slot not covered now: the pipeline refreshes
                node = None
            by_node[node.name if node is not None else ""].append(i)
        return list(by_node.values())

    async def remove_hub(self, hub: str) -> int:
        """Sweep the hub's sessions bucket by bucket, take it off the hub list, then look
        again: sessions that a re-sync of that hub still running elsewhere restored
        meanwhile put it back on the list (``sync_hub`` lists the hub after its last
        restore too), so the next dead-hub sweep removes them. A sweep that fails half
        way leaves the hub listed, to be swept again."""
        self._listed.pop(hub, None)
        buckets = await self._hub_members(hub)
        removed = await self._each([
            self._remove_hub(keys=[self.keys.hub(hub, b)], args=[self.keys.base(b), hub])
            for b in buckets])
        await self._call(self.redis.srem(self.keys.hubs, hub))
        if await self._hub_members(hub):
            await self._call(self.redis.sadd(self.keys.hubs, hub))
        await self._call(self.redis.delete(self.keys.heartbeat(hub)))
        return sum(int(n) for n in removed)

    async def sync_hub(self, hub: str, sessions: Sequence[SessionInfo], before: float) -> tuple[int, int]:
        """Make the directory hold exactly ``sessions`` for ``hub``: re-record them, and
        drop the hub's other sessions connected before ``before`` (the hub's snapshot
        time; later ones were announced after the snapshot). Returns (added, removed)."""
        by_bucket: dict[int, list[SessionInfo]] = defaultdict(list)
        for s in sessions:
            by_bucket[bucket(s.user)].append(s)
        calls = []
        for b, group in by_bucket.items():
            for i in range(0, len(group), CHUNK):
                args: list[Any] = [self.keys.base(b)]
                for s in group[i:i + CHUNK]:
                    args += [s.user, s.session_id, pack(s)]
                calls.append(self._restore(keys=[self.keys.hub(hub, b)], args=args))
        added = sum(int(n) for n in await self._each(calls))
        held = {member(s.user, s.session_id) for s in sessions}
        calls = []
        for b, recorded in (await self._hub_members(hub)).items():
            stale = [m.split(SEP, 1) for m in recorded if m not in held]
            for i in range(0, len(stale), CHUNK):
                args = [self.keys.base(b), hub, repr(before)]
                for user, sid in stale[i:i + CHUNK]:
                    args += [user, sid]
                calls.append(self._prune(keys=[self.keys.hub(hub, b)], args=args))
        removed = sum(int(n) for n in await self._each(calls))
        await self._call(self.redis.sadd(self.keys.hubs, hub))
        return added, removed

    async def enforce_quota(self, users: Iterable[str], limit: int) -> list[tuple[SessionInfo, str]]:
        """Remove and return (with the newest session's id, the kick's ``by``) the oldest
        sessions of ``users`` over ``limit``: after a re-sync, whose restores have no
        quota check, a session admitted while the directory had lost the others (a
        failover's lost writes, a restart without data) must not leave the user over
        the quota until their next connect."""
        by_bucket: dict[int, list[str]] = defaultdict(list)
        for u in dict.fromkeys(users):
            by_bucket[bucket(u)].append(u)
        calls = [self._quota(keys=[self.keys.user(group[0])],
                             args=[self.keys.base(b), limit, *group[i:i + CHUNK]])
                 for b, group in by_bucket.items() for i in range(0, len(group), CHUNK)]
        out = []
        for raw in await self._each(calls):
            for i in range(0, len(raw), 4):
                out.append((unpack(raw[i], raw[i + 1], raw[i + 2]), raw[i + 3]))
        return out

    async def count(self) -> int:
        hubs = sorted(await self._call(self.redis.smembers(self.keys.hubs)))
        counts = await self._pipelined([("scard", (self.keys.hub(h, b),))
                                        for h in hubs for b in range(BUCKETS)])
        return sum(counts)

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
        alive = await self._pipelined([("exists", (self.keys.heartbeat(h),)) for h in hubs])
        return [h for h, a in zip(hubs, alive, strict=True) if not a]

    async def claim_epoch(self, value: str) -> bool:
        """Set the epoch marker if it is missing. True = Redis was empty (new, flushed or
        restarted without data): every hub must re-sync its sessions."""
        return bool(await self._call(self.redis.set(self.keys.epoch, value, nx=True)))

    async def topology(self) -> str:
        """The primaries serving now (:func:`engines.topology`); another value than last
        time = a failover or a restart: every hub must re-sync its sessions."""
        return str(await self._call(engines.topology(self.redis, self.engine)))

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self.deadline_s):
                return bool(await self.redis.ping())
        except (*REDIS_ERRORS, TimeoutError):
            return False

    async def close(self) -> None:
        await engines.close(self.redis, self._others)
