"""Several OS processes append to the same users at once (MySQL/MariaDB): seqs stay
strictly increasing, unique and gap-free per user, and every accepted event is stored
exactly once."""

from __future__ import annotations

import multiprocessing
from collections import defaultdict

import pytest

from tests import services
from tests.store._writers import append_batches

WORKERS, BATCHES, SIZE = 4, 25, 60
USERS = [f"user-{i}" for i in range(30)]  # few users: every batch overlaps every other


@pytest.mark.timeout(180)
def test_many_writer_processes_keep_seqs_dense_and_events_exactly_once(mysql_db: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WORKERS) as pool:
        outputs = pool.starmap(
            append_batches,
            [(mysql_db, w, USERS, BATCHES, SIZE, 1000 + w) for w in range(WORKERS)],
        )

    accepted: dict[tuple[str, str], int] = {}  # (user, id) -> seq, from the callers' view
    for output in outputs:
        for user, seq, id_, duplicate in output:
            if not duplicate:
                assert (user, id_) not in accepted, f"{user}/{id_} accepted twice"
                accepted[(user, id_)] = seq
    for output in outputs:
        for user, seq, id_, duplicate in output:
            if duplicate:  # a batch sent again gets the stored seqs back
                assert accepted[(user, id_)] == seq
    assert any(d for output in outputs for *_, d in output), "no batch was sent twice"

    rows = services.execute(mysql_db, "SELECT user_id, seq, msg_id FROM events")
    stored = {(user, id_): seq for user, seq, id_ in rows}
    assert len(stored) == len(rows) == len(accepted)
    assert stored == accepted
    seqs: dict[str, list[int]] = defaultdict(list)
    for user, seq, _ in rows:
        seqs[user].append(seq)
    inboxes = services.execute(mysql_db, "SELECT user_id, head_seq, live FROM inboxes")
    assert {user for user, *_ in inboxes} == set(seqs)
    for user, head, live in inboxes:
        assert sorted(seqs[user]) == list(range(1, head + 1)), user
        assert live == head
