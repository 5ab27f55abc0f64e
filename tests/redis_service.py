"""Test service: Redis for the directory and cluster tests, provisioned on demand.

    python -m tests.redis_service     # make sure a Redis answers; prints its URL

Order: ``PUSHGATE_TEST_REDIS_URL`` if set; else Redis at 127.0.0.1:6379; else, as root
on Debian, install redis-server (``tests.services.provision_redis_server``) and start it
without persistence. Tests never share keys: each uses its own key prefix
(:func:`new_prefix`) and deletes it. Tests that restart Redis with its data gone use the
launcher's private server (:class:`deploy.local.redis.PrivateRedis`).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from deploy.local.redis import ping
from tests import services
from tests.support.waiting import wait_for_sync

REDIS_ENV = "PUSHGATE_TEST_REDIS_URL"
DEFAULT = "redis://127.0.0.1:6379/0"
ADDRESS = ("127.0.0.1", 6379)
ServiceUnavailable = services.ServiceUnavailable


def provision_redis() -> str:
    """URL of a Redis server that answers (installing and starting one if needed)."""
    url = os.environ.get(REDIS_ENV)
    if url:
        return url
    if ping(ADDRESS):
        return DEFAULT
    binary = services.provision_redis_server()
    subprocess.run([binary, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
                    "--save", "", "--appendonly", "no"], check=True, timeout=30,
                   stdout=subprocess.DEVNULL)
    try:
        wait_for_sync(lambda: ping(ADDRESS), 15, "redis-server on :6379 to answer PING")
    except AssertionError as exc:
        raise ServiceUnavailable(str(exc)) from None
    return DEFAULT


def new_prefix(tag: str = "t") -> str:
    return f"pgtest:{tag}:{os.getpid()}:{secrets.token_hex(4)}:"


def delete_prefix(url: str, prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(url)
    try:
        keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i:i + 500])
    finally:
        r.close()


def main() -> int:
    try:
        print(provision_redis())
    except (ServiceUnavailable, subprocess.SubprocessError) as e:
        print(f"no Redis: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
