"""Worker of the many-writers test, importable by ``multiprocessing`` (spawn)."""

from __future__ import annotations

import asyncio
import random

from pushgate.store import NewEvent, SqlEventStore


def append_batches(
    url: str, worker: int, users: list[str], batches: int, size: int, seed: int
) -> list[tuple[str, int, str, bool]]:
    """Append ``batches`` batches of ``size`` events (random users of ``users``, unique
    ids, now and then a batch sent again) and return every result as
    ``(user, seq, id, duplicate)``."""
    return asyncio.run(_run(url, worker, users, batches, size, random.Random(seed)))


async def _run(
    url: str, worker: int, users: list[str], batches: int, size: int, rng: random.Random
) -> list[tuple[str, int, str, bool]]:
    store = SqlEventStore(url, max_attempts=20)
    await store.start()
    results: list[tuple[str, int, str, bool]] = []
    sent: list[list[NewEvent]] = []
    try:
        for b in range(batches):
            if sent and rng.random() < 0.2:  # a retry: same ids, nothing new stored
                batch = rng.choice(sent)
            else:
                batch = [
                    NewEvent(rng.choice(users), b'{"w":%d}' % worker, 3600, f"w{worker}-{b}-{i}")
                    for i in range(size)
                ]
                sent.append(batch)
            for r in await store.append(batch):
                assert r.id is not None
                results.append((r.user, r.seq, r.id, r.duplicate))
    finally:
        await store.close()
    return results
