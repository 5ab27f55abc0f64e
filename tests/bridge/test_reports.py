"""Delivery reports of sends with a push block: pushed / failed by reason through the
real bridge and the APNs/FCM fakes (a dead token of each, a user without devices), and
a 100,000-user campaign whose counts are exact."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.support.server import ServerProcess
from tests.support.waiting import wait_for
from tests.support.ws import ws_client

from .conftest import TOPIC, Fakes, serving

COUNTERS = ("addressed", "stored", "duplicates", "delivered", "acked", "pushed", "push_failed",
            "read")


async def wait_report(srv: ServerProcess, rid: str, timeout: float = 30,
                      **expected: int) -> dict[str, Any]:
    want = {**dict.fromkeys(COUNTERS, 0), **expected}
    last: list[Any] = []

    async def check() -> dict[str, Any] | None:
        async with srv.http() as http:
            r = await http.get(f"/v1/notifications/{rid}")
        last[:] = [r.json()]
        got = r.json()
        return got if r.status_code == 200 and {k: got[k] for k in COUNTERS} == want else None

    try:
        return await wait_for(check, timeout=timeout, what=f"report {rid} == {want}")
    except AssertionError as e:
        raise AssertionError(f"{e}; last: {last}") from None


async def test_pushed_and_failed_by_reason(fakes: Fakes, tmp_path: Path) -> None:
    ok_ios, ok_android, dead_ios, dead_android = "a1" * 32, "ok-android", "de" * 32, "gone-android"
    fakes.apns.state.gone.add(dead_ios)
    fakes.fcm.state.gone.add(dead_android)
    async with serving(tmp_path, **fakes.settings_env()) as srv:
        async with srv.http() as http:
            for user, platform, token in (("p1", "apns", ok_ios), ("p2", "fcm", ok_android),
                                          ("p3", "apns", dead_ios), ("p4", "fcm", dead_android),
                                          ("p6", "apns", "b2" * 32)):
                r = await http.put(f"/v1/users/{user}/devices",
                                   json={"platform": platform, "token": token, "app": TOPIC})
                assert r.status_code == 200, r.text
        # p5 has no device; p6 is online (the policy pushes only users without a session)
        async with ws_client(srv, "p6") as p6:
            async with srv.http() as http:
                r = await http.post("/v1/notifications", json={
                    "users": ["p1", "p2", "p3", "p4", "p5", "p6"], "body": {"n": 1},
                    "id": "push-1", "push": {"title": "Hi", "body": "there"}})
                assert r.status_code == 200, r.text
            await p6.recv_type("event")
            rep = await wait_report(srv, "push-1", addressed=6, stored=6, delivered=1, pushed=2,
                                    push_failed=3)
        assert rep["failed_by_reason"] == {"Unregistered": 1, "UNREGISTERED": 1, "no_device": 1}
        # what the fakes accepted is what the report counts as pushed
        assert set(fakes.apns.state.counts) == {ok_ios}
        assert set(fakes.fcm.state.counts) == {ok_android}


CAMPAIGN = 100_000
PER_SEND = 10_000
DEVICES = 1_000  # users c0..c999 have one device each (half APNs, half FCM)
ONLINE = ("c5", "c50000")


async def test_a_100000_user_campaign_counts_exactly(fakes: Fakes, tmp_path: Path) -> None:
    for state in (fakes.apns.state, fakes.fcm.state):
        state.record = False  # counts only
    async with serving(tmp_path, **fakes.settings_env(),
                       PUSHGATE_MAX_USERS_PER_SEND=str(PER_SEND)) as srv:
        now = time.time()
        with contextlib.closing(sqlite3.connect(srv.data_dir / "pushgate.db")) as db, db:
            db.executemany(
                "INSERT INTO devices (platform, token, user_id, app, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [("apns", f"{i + 1:064x}", f"c{i}", TOPIC, now) if i % 2 == 0 else
                 ("fcm", f"fcm-{i}", f"c{i}", TOPIC, now) for i in range(DEVICES)])
        async with contextlib.AsyncExitStack() as stack:
            online = [await stack.enter_async_context(ws_client(srv, u)) for u in ONLINE]
            async with srv.http() as http:
                for start in range(0, CAMPAIGN, PER_SEND):
                    r = await http.post("/v1/notifications", timeout=120, json={
                        "users": [f"c{i}" for i in range(start, start + PER_SEND)],
                        "body": {"campaign": "spring"}, "id": "spring",
                        "push": {"title": "Spring sale"}})
                    assert r.status_code == 200, r.text
                    assert r.json()["report"] == "spring"
            for client in online:
                await client.recv_type("event")
            # c5 acks; c50000 reads
            await online[0].send({"type": "ack", "seq": 1})
            await online[1].request({"type": "read", "seqs": [1]})
            rep = await wait_report(srv, "spring", timeout=120, addressed=CAMPAIGN,
                                    stored=CAMPAIGN, delivered=2, acked=1, read=1,
                                    pushed=DEVICES - 1,  # c5 (online) is not pushed
                                    push_failed=CAMPAIGN - DEVICES - 1)
        assert rep["failed_by_reason"] == {"no_device": CAMPAIGN - DEVICES - 1}
        assert fakes.apns.state.total + fakes.fcm.state.total == DEVICES - 1
