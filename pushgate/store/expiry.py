"""``expiries`` rows: the TTL cleanup's index of stored events (migration 0005).

An append writes, next to its events, one row per group of up to :data:`EXPIRY_GROUP`
events with the same ``expires_at``: its primary key is ``(expires_at, user_id, seq)``
of the group's first event and ``members`` lists the group as runs of consecutive seqs
per user, ``[[user, first_seq, last_seq], ...]`` (orjson). A campaign batch of 1,000
events (one per user) is 4 rows of ~25 bytes per event, instead of one secondary-index
entry per event that every writer inserts at the same end of the index.

The cleanup reads the expired rows in primary-key (= expiry) order, deletes their
events by primary key and the rows (or shortens the last one it took part of).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

EXPIRY_GROUP = 250
"""Most events one ``expiries`` row lists."""

Run = list[Any]  # [user, first_seq, last_seq]


def expiry_rows(events: Iterable[tuple[Any, ...]]) -> list[tuple[float, str, int, int, bytes]]:
    """The ``expiries`` rows ``(expires_at, user_id, seq, n, members)`` of ``events``
    rows ``(user, seq, id, body, created_at, expires_at)`` (in primary-key order, as
    appends write them, consecutive seqs of a user become one run)."""
    groups: dict[float, list[Run]] = {}
    counts: dict[float, int] = {}
    out: list[tuple[float, str, int, int, bytes]] = []
    for row in events:
        user, seq, expires_at = row[0], row[1], row[5]
        runs = groups.get(expires_at)
        if runs is None:
            runs = groups[expires_at] = []
            counts[expires_at] = 0
        last = runs[-1] if runs else None
        if last is not None and last[0] == user and last[2] + 1 == seq:
            last[2] = seq
        else:
            runs.append([user, seq, seq])
        counts[expires_at] += 1
        if counts[expires_at] >= EXPIRY_GROUP:  # full: a row of its own
            out.append((expires_at, runs[0][0], runs[0][1], EXPIRY_GROUP, orjson.dumps(runs)))
            del groups[expires_at], counts[expires_at]
    for expires_at, runs in groups.items():
        out.append((expires_at, runs[0][0], runs[0][1], counts[expires_at], orjson.dumps(runs)))
    return out


def members(blob: bytes) -> list[Run]:
    return [list(r) for r in orjson.loads(blob)]


def keys(runs: Sequence[Run]) -> list[tuple[str, int]]:
    """The ``(user, seq)`` events of ``runs``."""
    return [(user, seq) for user, first, last in runs for seq in range(first, last + 1)]


def take(runs: Sequence[Run], k: int) -> tuple[list[Run], list[Run]]:
    """The runs of the first ``k`` events and the runs of the rest."""
    taken: list[Run] = []
    rest: list[Run] = []
    for user, first, last in runs:
        size = last - first + 1
        if k >= size:
            taken.append([user, first, last])
            k -= size
        elif k > 0:
            taken.append([user, first, first + k - 1])
            rest.append([user, first + k, last])
            k = 0
        else:
            rest.append([user, first, last])
    return taken, rest


def encode(runs: Sequence[Run]) -> bytes:
    return orjson.dumps(list(runs))
