"""Which Redis the directory talks to, chosen by ``directory_url``, and how to connect.

=======================================================  ===============================
URL                                                      engine
=======================================================  ===============================
``redis://[:pw@]host:port/db``, ``rediss://``, ``unix://``  one Redis (redis-py ``Redis``)
``redis+cluster://[:pw@]host:port[,host:port...]``        Redis Cluster (``RedisCluster``;
                                                          the nodes are only where it starts
                                                          discovering the others)
``redis+sentinel://[:pw@]host:port[,host:port...]/name``  the primary Sentinel names
                                                          ``name`` (``Sentinel.master_for``)
=======================================================  ===============================

A password in the URL is for the data nodes (the Sentinels are asked without one).
Every client gets the same timeouts and the same retry policy (exponential backoff with
jitter on connection errors); Redis Cluster and Sentinel clients find a new primary
after a failover by themselves. :func:`topology` names the primaries currently serving
(their ``run_id``): a change means a failover or a restart, after which writes the old
primary had not replicated may be missing and the hubs must re-sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

SINGLE_SCHEMES = ("redis://", "rediss://", "unix://")
CLUSTER_SCHEME = "redis+cluster://"
SENTINEL_SCHEME = "redis+sentinel://"
SCHEMES = (*SINGLE_SCHEMES, CLUSTER_SCHEME, SENTINEL_SCHEME)


@dataclass(frozen=True)
class Engine:
    """A parsed ``directory_url``."""

    mode: str  # "single" | "cluster" | "sentinel"
    url: str
    nodes: list[tuple[str, int]] = field(default_factory=list)
    service: str = ""
    password: str | None = None
    username: str | None = None


def _nodes(url: str, netloc: str) -> list[tuple[str, int]]:
    nodes = []
    for part in netloc.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"directory_url {url!r}: {part!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    return nodes


def parse(url: str) -> Engine:
    """The engine of ``url``; ``ValueError`` naming ``directory_url`` when it is not one."""
    if url.startswith(SINGLE_SCHEMES):
        return Engine("single", url)
    for scheme, mode in ((CLUSTER_SCHEME, "cluster"), (SENTINEL_SCHEME, "sentinel")):
        if not url.startswith(scheme):
            continue
        rest = url[len(scheme):].split("?", 1)[0]
        netloc, _, path = rest.partition("/")
        username = password = None
        if "@" in netloc:
            userinfo, netloc = netloc.rsplit("@", 1)
            user, has_pw, pw = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(pw) if has_pw else None
        if not netloc:
            raise ValueError(f"directory_url {url!r}: no host:port")
        nodes = _nodes(url, netloc)
        service = path.strip("/")
        if mode == "sentinel" and not service:
            raise ValueError(f"directory_url {url!r}: the Sentinel service name is missing "
                             "(redis+sentinel://host:port[,host:port]/<service name>)")
        if mode == "cluster" and service:
            raise ValueError(f"directory_url {url!r}: Redis Cluster has no database or "
                             "service path (redis+cluster://host:port[,host:port])")
        return Engine(mode, url, nodes, service, password, username)
    raise ValueError(f"directory_url {url!r}: unsupported scheme (use memory://, redis://, "
                     "redis+cluster:// or redis+sentinel://)")


#: connections a router's directory client opens to one Redis node at most
MAX_CONNECTIONS = 1024


def connect(engine: Engine, *, timeout_s: float, retries: int) -> tuple[Any, list[Any]]:
    """A redis-py asyncio client for ``engine`` (``decode_responses``), and the other
    clients it made (the Sentinels') that :func:`close` must close with it.

    Connections: at most :data:`MAX_CONNECTIONS` (per node of a cluster). redis-py 8's
    pools default to 100 and *fail* a call beyond it ("Too many connections"): a router
    runs up to 64 session announcements per linked hub at once, so a reconnect storm
    over two hubs refused sessions with 4003. One Redis waits for a free connection
    instead (a blocking pool, within the call's deadline); Sentinel's and the cluster's
    pools cannot wait, so their bound is the same, far above what a router uses."""
    common: dict[str, Any] = dict(
        decode_responses=True, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError])
    if engine.mode == "single":
        pool = aioredis.BlockingConnectionPool.from_url(
            engine.url, max_connections=MAX_CONNECTIONS, timeout=timeout_s,
            health_check_interval=10, **common)
        return aioredis.Redis.from_pool(pool), []  # closed with the client
    auth: dict[str, Any] = {"username": engine.username, "password": engine.password}
    if engine.mode == "cluster":
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in engine.nodes],
                            max_connections=MAX_CONNECTIONS, **auth, **common), []
    sentinel = Sentinel(engine.nodes, sentinel_kwargs={
        "socket_timeout": timeout_s, "socket_connect_timeout": timeout_s,
        "decode_responses": True})
    master = sentinel.master_for(engine.service, health_check_interval=10,
                                 max_connections=MAX_CONNECTIONS, **auth, **common)
    return master, list(sentinel.sentinels)


async def close(client: Any, others: list[Any]) -> None:
    await client.aclose()
    for other in others:
        await other.aclose()


async def topology(client: Any, engine: Engine) -> str:
    """The ``run_id`` of each primary serving now, sorted and joined: it changes when a
    primary is replaced (failover) or restarted."""
    if engine.mode == "cluster":
        infos = await client.info("server", target_nodes=RedisCluster.PRIMARIES)
        ids = sorted(i["run_id"] for i in infos.values()) if _per_node(infos) \
            else [infos["run_id"]]
        return ",".join(ids)
    return str((await client.info("server"))["run_id"])


def _per_node(infos: dict[str, Any]) -> bool:
    return bool(infos) and all(isinstance(v, dict) for v in infos.values())
