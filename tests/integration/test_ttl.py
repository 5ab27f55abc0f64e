"""Read state and unread counts stay exact across TTL cleanup (real server, short TTLs)."""

from __future__ import annotations

from pathlib import Path

from tests.support.server import running_server
from tests.support.waiting import wait_for
from tests.support.ws import ws_client


async def test_read_state_and_unread_across_cleanup(tmp_path: Path) -> None:
    with running_server(tmp_path, "--cleanup-interval-s", "0.2", "--cleanup-batch", "2") as srv:
        async with srv.http() as http:
            # seqs 1..4 expire after 1 s, 5..8 live for an hour
            for i in range(8):
                r = await http.post("/v1/notifications", json={
                    "users": ["ivy"], "body": {"i": i}, "ttl": 1 if i < 4 else 3600})
                assert r.status_code == 200
            # read two that will expire (1, 2) and two that stay (5, 6)
            r = await http.post("/v1/users/ivy/read", json={"seqs": [1, 2, 5, 6]})
            assert r.json() == {"head": 8, "unread": 4, "live": 8}

            async def read_state() -> dict:
                return (await http.get("/v1/users/ivy/read-state")).json()

            st = await wait_for(read_state, 20, "the 4 expired events cleaned",
                                until=lambda st: st["live"] == 4)
            assert st == {"head": 8, "unread": 2, "live": 4, "read": [[5, 6]]}
            events = (await http.get("/v1/users/ivy/events")).json()["events"]
            assert [e["seq"] for e in events] == [5, 6, 7, 8]
            # marking expired seqs read changes nothing; new events continue the seq
            r = await http.post("/v1/users/ivy/read", json={"ranges": [[1, 4]]})
            assert r.json() == {"head": 8, "unread": 2, "live": 4}
            r = await http.post("/v1/notifications", json={"users": ["ivy"], "body": "new"})
            assert r.json()["results"][0]["seq"] == 9
        async with ws_client(srv, "ivy") as ivy:
            assert (ivy.hello["head"], ivy.hello["unread"]) == (9, 3)


async def test_expired_events_are_cleaned_at_once_after_a_kill_9(tmp_path: Path) -> None:
    """A gateway on SQLite cleans without a lease: restarted after a ``kill -9`` it cleans at
    its first round, not once the dead process's cleanup lease ran out (3 x
    cleanup_interval_s, 180 s by default): meanwhile expired events still counted as
    unread and their ids as duplicates (a new send with one was not stored)."""
    import signal

    args = ("--cleanup-interval-s", "60", "--cleanup-lease-ttl-s", "600")
    with running_server(tmp_path, *args) as srv:
        async with srv.http() as http:
            r = await http.post("/v1/notifications",
                                json={"users": ["kit"], "body": 1, "ttl": 1, "id": "once"})
            assert r.status_code == 200
            await wait_for(lambda: _events(http, "kit"), 10, "the event expired",
                           until=lambda events: events == [])  # (fetch skips it at once)
        srv.stop(signal.SIGKILL)
        srv.start()  # its first round runs at start
        async with srv.http() as http:
            st = await wait_for(lambda: _read_state(http, "kit"), 20, "the expired event cleaned",
                                until=lambda st: st["live"] == 0)
            assert (st["head"], st["unread"]) == (1, 0)
            r = await http.post("/v1/notifications",
                                json={"users": ["kit"], "body": 2, "id": "once"})
            assert r.json()["results"][0] == {"user": "kit", "seq": 2, "sessions": 0}, r.text


async def _events(http: object, user: str) -> list:
    return (await http.get(f"/v1/users/{user}/events")).json()["events"]  # type: ignore[attr-defined]


async def _read_state(http: object, user: str) -> dict:
    return (await http.get(f"/v1/users/{user}/read-state")).json()  # type: ignore[attr-defined]
