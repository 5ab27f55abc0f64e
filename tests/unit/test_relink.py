"""What a (re)started router and a hub do while the hubs link to it one after the
other (docs/cluster.md, "Failures"): another hub already routes sends through the
router, so a delivery or kick for a hub not linked yet waits for that hub's link
(pushgate.router.hubs.HOLD_S), and acks of seqs a session got from the store reach a
router that links later (pushgate.hub.routers.STORE_ACK_REPLAY_S).

Without the hold the delivery was dropped with ``sessions: 0`` (the client, connected
all along, got the event only when a later one made the gap visible) and the kick of
the sixth session was lost (the user kept six); without the replay a send with ack
that the late router held was 408 although the client acked at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from pushgate.auth import Identity
from pushgate.hub import routers as hub_routers
from pushgate.hub.registry import Registry
from pushgate.hub.remote import RemoteRouter
from pushgate.router import hubs as router_hubs
from pushgate.router.hubs import LinkedHubs
from pushgate.rpc import pushgate_pb2 as pb


def _sent(out: list[pb.RouterMessage]) -> list[tuple[str, object]]:
    got: list[tuple[str, object]] = []
    for m in out:
        kind = m.WhichOneof("kind")
        if kind == "deliveries":
            got += [("delivery", d.seq) for d in m.deliveries.items]
        elif kind == "kick":
            got.append(("kick", m.kick.session_id))
        else:
            got.append((kind or "", None))
    return got


async def test_deliveries_and_kicks_wait_for_the_hubs_link() -> None:
    hubs = LinkedHubs()
    # hub-b is in the directory but has not linked to this router yet
    assert hubs.deliver("hub-b", ["s1"], '{"seq":1}', 1, time.perf_counter()) == 1
    hubs.kick("hub-b", "s0", "s6")
    assert hubs.deliver("hub-b", ["s1", "s2"], '{"seq":2}', 2, time.perf_counter(),
                        want_ack=True) == 2
    out: list[pb.RouterMessage] = []
    stream = hubs.attach("hub-b", out.append)
    stream.send(pb.RouterMessage(heartbeat=pb.Heartbeat()))  # as run_link: up first
    assert hubs.release_held(stream) == 3
    await asyncio.sleep(0)  # the flush of this loop turn
    assert _sent(out) == [("heartbeat", None), ("delivery", 1), ("kick", "s0"),
                          ("delivery", 2)]
    assert [d.want_ack for m in out if m.WhichOneof("kind") == "deliveries"
            for d in m.deliveries.items] == [False, True]
    assert hubs.release_held(stream) == 0  # once


async def test_a_hub_that_does_not_link_within_the_hold_is_taken_for_gone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    hubs = LinkedHubs()
    now = [1000.0]
    monkeypatch.setattr(router_hubs.time, "monotonic", lambda: now[0])
    assert hubs.deliver("hub-gone", ["s1"], "f", 1, time.perf_counter()) == 1
    now[0] += router_hubs.HOLD_S + 0.1
    # past the hold: dropped (stored; gap fill or a fetch brings it), and no new window
    assert hubs.deliver("hub-gone", ["s1"], "f", 2, time.perf_counter()) == 0
    now[0] += 100
    assert hubs.deliver("hub-gone", ["s1"], "f", 3, time.perf_counter()) == 0
    out: list[pb.RouterMessage] = []
    assert hubs.release_held(hubs.attach("hub-gone", out.append)) == 0
    # linked hubs are not held for
    assert hubs.deliver("hub-gone", ["s1"], "f", 4, time.perf_counter()) == 1


async def test_the_hold_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router_hubs, "HOLD_MAX", 3)
    hubs = LinkedHubs()
    assert [hubs.deliver("hub-b", ["s"], "f", n, time.perf_counter())
            for n in range(1, 6)] == [1, 1, 1, 0, 0]
    assert hubs.release_held(hubs.attach("hub-b", lambda m: None)) == 0


async def test_acks_of_seqs_from_the_store_reach_a_router_that_links_later() -> None:
    routers = hub_routers.Routers(["127.0.0.1:1", "127.0.0.1:2"], Registry("hub-a"), None,
                                  10.0, framed=False)
    first, late = routers.conns
    sent: dict[str, list[pb.HubMessage]] = {"first": [], "late": []}
    first._sink = sent["first"].append  # the link's writer (no network)
    late._sink = sent["late"].append
    first._up("grpc")
    remote = RemoteRouter.__new__(RemoteRouter)
    remote.routers = routers
    remote.on_ack(Identity("ann"), "s1", 7, from_store=True)
    await asyncio.sleep(0)
    assert [a.seq for m in sent["first"] for a in m.acks.acks] == [7]
    late._up("grpc")  # links now: it may hold the send waiting for seq 7
    await asyncio.sleep(0)
    assert [(a.user, a.session_id, a.seq) for m in sent["late"] for a in m.acks.acks] == [
        ("ann", "s1", 7)]
