"""expiries rows (the TTL cleanup's index): grouping of an append's events and taking
part of a row."""

from __future__ import annotations

import random

import orjson

from pushgate.store import expiry


def rows(pairs: list[tuple[str, int, float]]) -> list[tuple[object, ...]]:
    return [(u, s, None, b"", 0.0, e) for u, s, e in pairs]


def test_runs_of_consecutive_seqs_per_user_and_expiry() -> None:
    out = expiry.expiry_rows(rows([("a", 1, 5.0), ("a", 2, 5.0), ("a", 3, 9.0), ("a", 4, 5.0),
                                   ("b", 7, 5.0), ("b", 8, 5.0)]))
    assert [(e, u, s, n, orjson.loads(m)) for e, u, s, n, m in out] == [
        (5.0, "a", 1, 5, [["a", 1, 2], ["a", 4, 4], ["b", 7, 8]]),
        (9.0, "a", 3, 1, [["a", 3, 3]]),
    ]


def test_every_event_in_exactly_one_row_of_at_most_the_group_size() -> None:
    rng = random.Random(7)
    expires = {(f"u{rng.randrange(50)}", rng.randrange(1, 2000)): float(rng.randrange(3))
               for _ in range(3000)}  # each event (user, seq) once, with its expiry
    pairs = [(u, s, e) for (u, s), e in sorted(expires.items())]
    out = expiry.expiry_rows(rows(pairs))
    listed = [(u, s) for e, _u, _s, n, m in out
              for u, s in expiry.keys(expiry.members(m))]
    assert sorted(listed) == sorted((u, s) for u, s, _ in pairs)
    for e, u, s, n, m in out:
        runs = expiry.members(m)
        assert 1 <= n <= expiry.EXPIRY_GROUP
        assert n == len(expiry.keys(runs))
        assert (u, s) == (runs[0][0], runs[0][1])  # the primary key is the first member
        assert {expires[k] for k in expiry.keys(runs)} == {e}


def test_take_splits_runs_at_k_events() -> None:
    runs = [["a", 1, 3], ["b", 5, 5], ["c", 2, 4]]
    assert expiry.take(runs, 0) == ([], runs)
    assert expiry.take(runs, 2) == ([["a", 1, 2]], [["a", 3, 3], ["b", 5, 5], ["c", 2, 4]])
    assert expiry.take(runs, 4) == ([["a", 1, 3], ["b", 5, 5]], [["c", 2, 4]])
    assert expiry.take(runs, 99) == (runs, [])
    taken, rest = expiry.take(runs, 5)
    assert expiry.keys(taken) + expiry.keys(rest) == expiry.keys(runs)
