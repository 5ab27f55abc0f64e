"""The routing core's contract (:class:`pushgate.router.base.RoutingCore`), on both sides
of the embedded/cluster seam, with the same cases:

* ``embedded`` — a :class:`~pushgate.hub.node.HubNode` with the in-process
  :class:`~pushgate.router.core.Router` (memory directory, SQLite);
* ``cluster`` — a :class:`~pushgate.hub.node.HubNode` with
  :class:`~pushgate.hub.remote.RemoteRouter`, linked to a
  :class:`~pushgate.router.node.RouterNode` (Redis directory, SQLite) over the framed
  HubLink (the default; the rest of the API over real gRPC), both in this test's event
  loop;
* ``cluster-grpc`` — the same with a router that offers no framed transport: the
  HubLink runs as gRPC's stream.

Sessions are real :class:`~pushgate.hub.session.Session` objects registered in the
hub's registry; what their writer would put on the socket is collected, so the cases
check the frames a client would get.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.client import ClientProtocol
from websockets.protocol import State as WsState
from websockets.uri import parse_uri

from pushgate.auth import Identity
from pushgate.errors import AckTimeout, InvalidRequest, NotFound, PushgateError
from pushgate.hub.node import HubNode
from pushgate.hub.session import Session
from pushgate.router.base import RoutingCore
from pushgate.router.core import Router
from pushgate.router.node import RouterNode
from pushgate.router.requests import Limits, parse_send
from pushgate.settings import Settings
from pushgate.store.base import NewEvent, Report, StoreOverloaded
from tests.support.waiting import wait_for

TIMEOUT = 10.0


@dataclass
class Client:
    """A session as the hub holds it, and the frames its socket would carry."""

    session: Session
    frames: asyncio.Queue[dict[str, object]] = field(default_factory=asyncio.Queue)
    closed: asyncio.Future[int] | None = None

    async def next(self) -> dict[str, object]:
        return await asyncio.wait_for(self.frames.get(), TIMEOUT)


@dataclass
class Core:
    node: HubNode
    router: RoutingCore
    limits: Limits
    storing: Router  # the routing core that stores: the hub's own, or the router process's

    async def send(self, **body: object) -> dict[str, Any]:
        """A send with the HTTP body's shape; its reply as the HTTP API answers it."""
        return (await self.router.send(parse_send(body, self.limits))).to_dict()

    async def connect(self, user: str, device: str = "") -> Client:
        client = Client(None, closed=asyncio.get_running_loop().create_future())  # type: ignore[arg-type]
        out = _Outlet(client, self.node)
        s = client.session = Session(Identity(user, device=device), self.node.hub_id, 64, out,
                                     gaps=self.node.gaps)
        self.node.registry.add(s)
        await self.router.connect(s.info)
        try:
            head = (await self.router.read_state(user)).head
        except NotFound:
            head = 0
        s.open(0, head)
        return client

    async def disconnect(self, client: Client) -> None:
        self.node.registry.discard(client.session)
        client.session.close(1000, "")
        await self.router.disconnect(client.session.info)


class _Outlet:
    """What the hub's connection does with a session's frames, minus the socket."""

    paused = False

    def __init__(self, client: Client, node: HubNode) -> None:
        self.client, self.node = client, node

    def write(self, data: bytes) -> None:
        for frame in _decode(data):
            self.client.frames.put_nowait(orjson.loads(frame))

    def send_close(self, code: int, reason: str) -> None:
        assert self.client.closed is not None
        if not self.client.closed.done():
            self.client.closed.set_result(code)

    def closing(self, session: Session) -> None:
        self.node.registry.discard(session)


def _decode(data: bytes) -> list[str]:
    proto = ClientProtocol(parse_uri("ws://test/"), state=WsState.OPEN)
    proto.receive_data(data)
    return [bytes(f.data).decode() for f in proto.events_received()]


def _settings(tmp_path: Path, name: str, **kw: object) -> Settings:
    return Settings(jwt_secret="s" * 32, api_keys=["contract-key"], data_dir=tmp_path / name,
                    max_sessions_per_user=2, ack_timeout_ms=300, idle_timeout_s=3600,
                    gc_freeze_interval_s=0, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["embedded", "cluster", "cluster-grpc"])
async def core(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Core]:
    router_node: RouterNode | None = None
    if request.param == "embedded":
        settings = _settings(tmp_path, "hub")
    else:
        # cluster: the HubLink on the router's framed transport (the default);
        # cluster-grpc: a router without it, so the hub links over gRPC's stream
        link = "off" if request.param == "cluster-grpc" else None
        router_node = RouterNode(_settings(
            tmp_path, "router", router_listen="127.0.0.1:0", router_link_listen=link,
            store_url=f"sqlite+aiosqlite:///{tmp_path}/router/events.db",
            directory_url=request.getfixturevalue("redis_server"),
            directory_prefix=request.getfixturevalue("redis_prefix")))
        await router_node.start()
        settings = _settings(tmp_path, "hub", routers=[f"127.0.0.1:{router_node.port}"])
    node = HubNode(settings)
    await node.start()
    storing = node.router if router_node is None else router_node.router
    assert isinstance(storing, Router)
    c = Core(node, node.router, Limits.of(settings), storing)
    try:
        if node.routers is not None:
            await asyncio.wait_for(node.routers.any_up.wait(), TIMEOUT)
            assert node.routers.conns[0].transport == (request.param.partition("-")[2] or "framed")
        yield c
    finally:
        await node.stop()
        if router_node is not None:
            await router_node.stop(0)


async def test_a_stored_send_is_fetched_with_its_seq_head_and_read_state(core: Core) -> None:
    first = await core.send(users=["alice", "bob"], body={"n": 1}, id="m1")
    second = await core.send(users=["alice"], body={"n": 2})
    assert first == {"results": [{"user": "alice", "seq": 1, "sessions": 0},
                                           {"user": "bob", "seq": 1, "sessions": 0}],
                               "sessions": 0, "report": "m1"}
    assert second["results"][0]["seq"] == 2
    assert str(second["report"]).startswith("r-")  # generated: the send had no id

    events, head, more = await core.router.fetch("alice", 0, 10)
    assert [(e.seq, e.id, orjson.loads(e.body)) for e in events] == [(1, "m1", {"n": 1}),
                                                                      (2, None, {"n": 2})]
    assert (head, more) == (2, False)
    events, head, more = await core.router.fetch("alice", 0, 1)
    assert ([e.seq for e in events], head, more) == ([1], 2, True)

    rs = await core.router.mark_read("alice", [2, 99], [])
    assert (rs.head, rs.live, rs.unread) == (2, 2, 1)
    rs = await core.router.read_state("alice")
    assert (rs.head, rs.live, rs.unread) == (2, 2, 1)
    assert rs.read  # the bitmap of read seqs


async def test_a_fetch_cut_short_says_more_when_a_send_commits_during_it(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fetch's head is at least its last event's seq, and ``more: false`` means nothing
    lies past it, even when sends commit between the fetch's two reads. Reading the head
    first gave a head below the events returned and ``more: false`` on a reply that
    ``limit`` had cut short (about one fetch in five at the tip of a busy inbox)."""
    for n in range(3):
        await core.send(users=["alice"], body={"n": n})
    store = core.storing.store
    sent: list[bool] = []

    def committing_after(read: Any) -> Any:
        async def wrapped(*args: Any) -> Any:
            result = await read(*args)
            if not sent:  # a send commits right after the fetch's first read
                sent.append(True)
                for n in (3, 4):
                    await core.send(users=["alice"], body={"n": n})
            return result
        return wrapped

    monkeypatch.setattr(store, "head", committing_after(store.head))
    monkeypatch.setattr(store, "fetch", committing_after(store.fetch))
    events, head, more = await core.router.fetch("alice", 2, 2)
    assert events[-1].seq <= head
    assert more == (events[-1].seq < head)
    if not more:  # nothing past it
        assert (await core.router.fetch("alice", events[-1].seq, 10))[0] == []
    assert [e.seq for e in (await core.router.fetch("alice", 0, 10))[0]] == [1, 2, 3, 4, 5]


async def test_the_same_id_is_stored_once(core: Core) -> None:
    await core.send(users=["alice"], body={"n": 1}, id="k")
    again = await core.send(users=["alice"], body={"n": 1}, id="k")
    assert again["results"] == [
        {"user": "alice", "seq": 1, "sessions": 0, "duplicate": True}]
    events, head, _ = await core.router.fetch("alice", 0, 10)
    assert ([e.seq for e in events], head) == ([1], 1)


async def test_a_user_without_inbox_is_not_found(core: Core) -> None:
    for call in (core.router.fetch("nobody", 0, 10), core.router.read_state("nobody"),
                 core.router.mark_read("nobody", [1], [])):
        with pytest.raises(NotFound) as err:
            await call
        assert (err.value.code, err.value.field) == ("unknown_user", "user")


async def test_live_sessions_get_the_event_frame_and_are_listed(core: Core) -> None:
    phone = await core.connect("alice", device="phone")
    laptop = await core.connect("alice", device="laptop")
    listed = await core.router.sessions("alice")
    assert sorted(s.device for s in listed) == ["laptop", "phone"]
    assert {s.hub for s in listed} == {core.node.hub_id}

    result = await core.send(users=["alice"], body={"hi": 1}, id="x")
    assert result["sessions"] == 2
    for client in (phone, laptop):
        frame = await client.next()
        assert {k: frame[k] for k in ("type", "seq", "id", "body")} == {
            "type": "event", "seq": 1, "id": "x", "body": {"hi": 1}}

    only_phone = await core.send(users=["alice"], body={"n": 2}, device="phone")
    assert only_phone["sessions"] == 1
    assert (await phone.next())["seq"] == 2

    await core.disconnect(laptop)  # the cluster forgets it asynchronously
    await wait_for(lambda: _devices(core, "alice"), TIMEOUT, "the closed session unlisted",
                   until=lambda devices: devices == ["phone"])


async def test_a_lookup_held_up_for_one_user_holds_up_no_other_users_send(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stored send waits for the delivery of the previous send to the same user only.
    One chain for all sends made a directory lookup held up by a stalled Redis Cluster
    master delay every later send on the router, to anyone, by the lookup's deadline."""
    stuck, free = await core.connect("stuck"), await core.connect("free")
    directory = core.storing.directory
    lookup = directory.sessions
    held, release = asyncio.Event(), asyncio.Event()

    async def sessions(users: Any, **kw: Any) -> Any:
        if "stuck" in users:
            held.set()
            await release.wait()
        return await lookup(users, **kw)

    monkeypatch.setattr(directory, "sessions", sessions)
    first = asyncio.create_task(core.send(users=["stuck"], body={"n": 1}))
    second = asyncio.create_task(core.send(users=["stuck"], body={"n": 2}))
    await asyncio.wait_for(held.wait(), TIMEOUT)
    # (without the fix: waits for the stuck send's delivery, which waits for release)
    reply = await asyncio.wait_for(core.send(users=["free"], body={"n": 3}), TIMEOUT)
    assert reply["sessions"] == 1
    assert (await free.next())["body"] == {"n": 3}
    assert not first.done() and not second.done()
    release.set()
    assert [(await t)["sessions"] for t in (first, second)] == [1, 1]
    assert [(await stuck.next())["seq"] for _ in range(2)] == [1, 2]


async def test_an_event_for_one_device_is_no_gap_for_the_others(core: Core) -> None:
    phone = await core.connect("alice", device="phone")
    laptop = await core.connect("alice", device="laptop")
    await core.send(users=["alice"], body={"n": 1}, device="phone")
    await core.send(users=["alice"], body={"n": 2})
    assert [(await phone.next())["seq"] for _ in range(2)] == [1, 2]
    assert (await laptop.next())["seq"] == 2
    assert _counter(core, "pushgate_gaps_held_total") == 0  # seq 2 was not held


async def test_a_seq_that_never_arrives_is_fetched_and_sent_in_order(core: Core) -> None:
    alice = await core.connect("alice")
    await core.send(users=["alice"], body={"n": 1})
    assert (await alice.next())["seq"] == 1
    # the directory forgets the session (as when a router's delivery is lost): seqs 2
    # and 3 are stored but not delivered; then 3 arrives late, as from another router
    await core.router.disconnect(alice.session.info)
    await wait_for(lambda: core.router.sessions("alice"), TIMEOUT, "the session unlisted",
                   until=lambda found: not found)
    await core.send(users=["alice"], body={"n": 2})
    await core.send(users=["alice"], body={"n": 3})
    events, _, _ = await core.router.fetch("alice", 2, 1)
    frame3 = orjson.dumps({"type": "event", "seq": 3, "late": True}).decode()
    assert core.node.registry.deliver([alice.session.id], frame3, 3, 0.0) == 1
    assert alice.frames.empty()  # held: seq 2 is missing
    two, three = await alice.next(), await alice.next()
    assert (two["seq"], two["body"], three) == (2, {"n": 2}, {"type": "event", "seq": 3,
                                                               "late": True})
    assert [e.seq for e in events] == [3]
    assert core.node.registry.deliver([alice.session.id], frame3, 3, 0.0) == 0  # a 2nd copy
    assert _counter(core, "pushgate_gap_fetches_total") == 1
    assert _counter(core, "pushgate_gap_seqs_fetched_total") == 1


def _counter(core: Core, name: str) -> float:
    return core.node.metrics.registry.get_sample_value(name) or 0.0


async def _devices(core: Core, user: str) -> list[str]:
    return sorted(s.device for s in await core.router.sessions(user))


async def test_a_transient_send_reaches_live_sessions_without_a_seq(core: Core) -> None:
    client = await core.connect("carol")
    result = await core.send(users=["carol", "dave"], body={"typing": True}, ttl=0)
    assert result["results"] == [
        {"user": "carol", "seq": None, "sessions": 1}, {"user": "dave", "seq": None, "sessions": 0}]
    frame = await client.next()
    assert (frame["type"], frame["seq"], frame["body"]) == ("event", None, {"typing": True})
    with pytest.raises(NotFound):
        await core.router.fetch("carol", 0, 10)


async def test_a_filter_send_reaches_the_matching_sessions(core: Core) -> None:
    phone = await core.connect("erin", device="phone")
    tablet = await core.connect("erin", device="tablet")
    result = await core.send(filter={"account": "erin", "device": "tablet"}, body={"f": 1})
    assert result["sessions"] == 1
    assert (await tablet.next())["body"] == {"f": 1}
    broadcast = await core.send(filter={"workspace": "default"}, body={"all": 1})
    assert broadcast["sessions"] == 2
    assert (await phone.next())["body"] == {"all": 1}
    assert (await tablet.next())["body"] == {"all": 1}


async def test_the_oldest_session_over_quota_is_kicked(core: Core) -> None:
    oldest = await core.connect("frank", device="a")
    await core.connect("frank", device="b")
    await core.connect("frank", device="c")  # max_sessions_per_user = 2
    frame = await oldest.next()
    assert (frame["type"], frame["reason"]) == ("kicked", "quota")
    assert oldest.closed is not None
    assert await asyncio.wait_for(oldest.closed, TIMEOUT) == 4102
    assert await _devices(core, "frank") == ["b", "c"]


async def test_send_with_ack_waits_for_that_seq(core: Core) -> None:
    client = await core.connect("gina", device="watch")
    pending = asyncio.ensure_future(core.send(users=["gina"], body={"call": 1}, ack=True,
                                              ack_timeout_ms=5000))
    frame = await client.next()
    seq = frame["seq"]
    assert isinstance(seq, int)
    core.router.on_ack(client.session.identity, client.session.id, seq)
    result = await asyncio.wait_for(pending, TIMEOUT)
    assert result["results"][0]["acked_by"] == client.session.id

    with pytest.raises(AckTimeout) as err:  # ack_timeout_ms 300 by default here
        await core.send(users=["gina"], body={"call": 2}, ack=True)
    assert (err.value.code, err.value.field, err.value.retryable) == ("ack_timeout", "ack", True)
    events, head, _ = await core.router.fetch("gina", 0, 10)
    assert ([e.seq for e in events], head) == ([1, 2], 2)  # the unacked event stays stored


async def test_a_retried_ack_send_handed_to_a_live_session_counts_as_delivered(
        core: Core) -> None:
    """http-api.md, reports: ``delivered`` counts the users whose event a send handed to a
    live session. A retried ack send re-delivers the stored event (same seq): that is a
    delivery of this send, also when the first attempt found the user offline."""
    with pytest.raises(AckTimeout):  # nobody online: stored, not delivered
        await core.send(users=["hugo"], body={"call": 1}, id="call-1", ack=True)
    client = await core.connect("hugo")
    retry = asyncio.ensure_future(core.send(users=["hugo"], body={"call": 1}, id="call-1",
                                            ack=True, ack_timeout_ms=5000))
    frame = await client.next()
    core.router.on_ack(client.session.identity, client.session.id, frame["seq"])
    result = await asyncio.wait_for(retry, TIMEOUT)
    assert result["results"][0]["duplicate"] and result["sessions"] == 1

    async def flushed() -> Report | None:
        r = await core.router.report("call-1")
        return r if r.acked == 1 and r.duplicates == 1 else None

    r = await wait_for(flushed, 15, "the report of call-1")
    assert (r.addressed, r.stored, r.delivered, r.acked) == (2, 1, 1, 1)
    user = await core.router.report_user("call-1", "hugo")
    assert (user.delivered, user.acked) == (True, True)


async def test_a_retried_ack_send_whose_event_expired_is_answered_at_once(
        core: Core) -> None:
    """A retry (same id) after the event's ttl passed, before the cleanup: it pushed
    nothing, waited out its whole ack timeout, then said the event "stays stored"."""
    with pytest.raises(AckTimeout):
        await core.send(users=["ilse"], body={"call": 1}, id="call-x", ack=True, ttl=1)
    await wait_for(lambda: core.router.fetch("ilse", 0, 10), 10, "the event expired",
                   until=lambda got: got[0] == [])
    client = await core.connect("ilse")
    with pytest.raises(AckTimeout) as gone:  # at once, not after 5 s
        await asyncio.wait_for(core.send(users=["ilse"], body={"call": 1}, id="call-x",
                                         ack=True, ttl=1, ack_timeout_ms=5000), 3)
    assert gone.value.message == ("seq 1 of user 'ilse' expired before a client acked it "
                                  "and is stored no more (a send with a new 'id' stores it "
                                  "again)")
    assert gone.value.extra["results"] == [
        {"user": "ilse", "seq": 1, "sessions": 0, "duplicate": True}]
    assert client.frames.empty()  # nothing pushed


async def test_devices_register_list_and_remove(core: Core) -> None:
    d = await core.router.register_device("hank", "chat", "apns", "tok-1")
    assert (d.user, d.app, d.platform, d.token) == ("hank", "chat", "apns", "tok-1")
    assert [x.token for x in await core.router.devices("hank")] == ["tok-1"]
    assert await core.router.remove_device("hank", "chat", "apns", "tok-1") is True
    assert await core.router.remove_device("hank", "chat", "apns", "tok-1") is False
    assert await core.router.devices("hank") == []


async def test_delivery_reports_through_the_core(core: Core) -> None:
    """Both sides of the seam answer the report calls the same way: the counts once
    flushed, one user's status, the latest reports, and the errors naming the field."""
    sent = await core.send(users=["rita", "sam"], body={"n": 1}, id="rep-1")
    assert sent["report"] == "rep-1"
    await core.router.mark_read("rita", [1], [])

    async def flushed() -> Report | None:
        try:
            r = await core.router.report("rep-1")
        except NotFound:
            return None
        return r if (r.addressed, r.stored, r.read) == (2, 2, 1) else None

    r = await wait_for(flushed, 15, "the report of rep-1")
    assert (r.duplicates, r.delivered, r.acked, r.pushed, r.push_failed) == (0, 0, 0, 0, 0)
    user = await core.router.report_user("rep-1", "rita")
    assert (user.user, user.seq, user.delivered, user.acked, user.read) == \
        ("rita", 1, False, False, True)
    assert "rep-1" in [x.report for x in await core.router.latest_reports(10)]
    with pytest.raises(NotFound) as missing:
        await core.router.report("never")
    assert (missing.value.code, missing.value.field) == ("unknown_report", "report")
    with pytest.raises(NotFound) as no_user:
        await core.router.report_user("rep-1", "zed")
    assert (no_user.value.code, no_user.value.field) == ("unknown_report_user", "user")
    with pytest.raises(NotFound) as no_report:  # (was unknown_report_user, field user)
        await core.router.report_user("never", "rita")
    assert (no_report.value.code, no_report.value.field) == ("unknown_report", "report")
    with pytest.raises(InvalidRequest) as bad:
        await core.router.latest_reports(0)
    assert bad.value.field == "limit"


async def test_a_full_write_queue_is_overloaded_not_a_store_failure(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    # http-api.md: 503 `overloaded` when too many writes are queued (commit_max_pending),
    # told apart from `store_unavailable` (the database does not answer)
    async def full(events: object, late: object = None) -> object:
        raise StoreOverloaded("100000 events already waiting to be stored (max 100000)")

    monkeypatch.setattr(core.storing.committer, "append", full)
    with pytest.raises(PushgateError) as refused:
        await core.send(users=["alice"], body=1)
    assert (refused.value.code, refused.value.retryable) == ("overloaded", True)
    assert "already waiting to be stored" in refused.value.message


async def test_a_late_commit_that_found_its_events_stored_is_not_logged_as_delivered(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send answered ``store_unavailable`` at the store deadline whose batch then found
    its events stored already (the client's retry went to another router, which stored
    them): nothing new was committed, and the router said "committed … delivered and
    counted" (events=3) in its log all the same."""
    import dataclasses

    from structlog.testing import capture_logs

    router = core.storing
    store = router.committer.store  # type: ignore[attr-defined]
    real_append, gate = store.append, asyncio.Event()

    async def slow_append(events: Any) -> Any:
        await gate.wait()  # the commit that outlives its caller's deadline
        return await real_append(events)

    monkeypatch.setattr(store, "append", slow_append)
    monkeypatch.setattr(router, "config", dataclasses.replace(router.config,
                                                              store_deadline_s=0.2))
    with capture_logs() as logs:
        with pytest.raises(PushgateError) as late:
            await core.send(users=["lena"], body=1, id="retry-me")
        assert late.value.code == "store_unavailable"
        # meanwhile the retry stored it elsewhere (another router: the store itself)
        [stored] = await real_append([NewEvent("lena", b"1", 3600, "retry-me")])
        assert not stored.duplicate
        gate.set()
        await wait_for(lambda: any("stopped waiting" in x["event"] for x in logs), 5,
                       "the late commit's log line")
    [line] = [x for x in logs if "stopped waiting" in x["event"]]
    assert (line["log_level"], line["duplicates"]) == ("info", 1), line
    assert line["event"] == "a send whose caller stopped waiting found its events stored " \
                            "already"
