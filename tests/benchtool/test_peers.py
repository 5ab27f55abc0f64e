"""The benchmark's peers (bench/peers): nchan's config, the adapters the load processes
use for nchan and Socket.IO, and each real peer answering a publish with exactly one
delivery to the benchmark's own load client (nginx + nchan and node are installed by
the peers' setup when missing: apt-get as root, npm ci)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.httpload import HttpPool, encode
from bench.peers import (
    BROADCAST_CHANNEL,
    Nchan,
    NchanClient,
    PeerUnavailable,
    SocketIO,
    SocketIOClient,
    nchan_conf,
)
from bench.scenarios import body
from bench.targets import TARGETS, BadReply, RunningTarget
from bench.wsload import Stats, _open, on_sio_text

# -- pure: config and adapters ----------------------------------------------------------


def test_nchan_conf_is_a_private_single_worker_server_with_pub_and_sub_locations() -> None:
    conf = nchan_conf(Path("/tmp/x"), 4321, Path("/m/ngx_nchan_module.so"), nofile=20000,
                      user="bench bench")
    lines = [ln.strip() for ln in conf.splitlines()]
    assert lines[0] == "load_module /m/ngx_nchan_module.so;"
    for want in ("daemon off;", "master_process on;", "worker_processes 1;",
                 "worker_rlimit_nofile 20000;", "pid /tmp/x/nginx.pid;", "user bench bench;",
                 "listen 127.0.0.1:4321 backlog=4096;", "access_log off;",
                 "nchan_subscriber websocket;", "nchan_websocket_ping_interval 20;",
                 f"nchan_channel_id $1 {BROADCAST_CHANNEL};"):
        assert want in lines, want
    assert "events { worker_connections 19936; multi_accept on; }" in lines
    assert re.search(r"location ~ \^/pub/\(\[\^/\]\+\)\$ \{ nchan_publisher http; "
                     r"nchan_channel_id \$1; \}", conf)
    assert conf.count("{") == conf.count("}")
    # nothing outside its own directory: temp paths and pid under base
    assert all("/tmp/x/" in ln for ln in lines if "_temp_path" in ln)


def test_nchan_adapter() -> None:
    c = NchanClient("nchan", "127.0.0.1", 1)
    assert c.wire == "raw"
    assert c.ws_path("u7") == "/sub/u7"
    assert c.for_fanout().ws_path("u7") == f"/sub/{BROADCAST_CHANNEL}"
    assert c.ws_path("u7") == "/sub/u7"  # for_fanout made a copy
    multi = NchanClient("nchan", "127.0.0.1", 1, mode="multi")
    assert multi.ws_path("u7") == "/multi/u7" and multi.for_fanout() is multi
    b = body("m1", 1.5)
    req = c.unicast("u7", b)
    assert req.path == "/pub/u7" and orjson.loads(req.body) == b
    assert c.broadcast(b).path == f"/pub/{BROADCAST_CHANNEL}"
    with pytest.raises(NotImplementedError):
        c.multicast(["u1", "u2"], b)
    reply = (b"queued messages: 1\r\nlast requested: 0 sec. ago\r\nactive subscribers: 3\r\n"
             b"last message id: 1796402668:0")
    assert c.reply_sessions(201, reply) == 3
    assert c.reply_sessions(202, reply.replace(b": 3", b": 0")) == 0
    with pytest.raises(BadReply, match="HTTP 403"):
        c.reply_sessions(403, b"")
    with pytest.raises(BadReply, match="bad reply"):
        c.reply_sessions(201, b"{}")
    assert Nchan().skip_reason("S3") and Nchan().skip_reason("S1") is None


def test_socketio_adapter() -> None:
    c = SocketIOClient("socketio", "127.0.0.1", 1)
    assert c.wire == "socketio" and c.for_fanout() is c
    assert c.ws_path("u3") == "/socket.io/?EIO=4&transport=websocket&user=u3"
    b = body("m1", 1.5)
    assert c.unicast("u3", b).path == "/pub/u3"
    assert orjson.loads(c.multicast(["u1", "u2"], b).body) == {"users": ["u1", "u2"], "body": b}
    assert c.broadcast(b).path == "/broadcast"
    assert c.reply_sessions(200, b'{"sessions":2}') == 2
    with pytest.raises(BadReply):
        c.reply_sessions(404, b"")
    assert SocketIO().skip_reason("S3") is None
    assert {"nchan", "nchan-multi", "socketio"} <= set(TARGETS)


class _FakeConn:
    def __init__(self) -> None:
        self.stats = Stats()
        self.stats.reset("m")
        self.seen: set[str] = set()
        self.sent: list[str] = []
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def send_text(self, text: str) -> None:
        self.sent.append(text)


async def test_socketio_framing_on_the_load_side() -> None:
    conn = _FakeConn()
    on_sio_text(conn, b'0{"sid":"x","upgrades":[],"pingInterval":20000,"pingTimeout":20000}')
    assert conn.sent == ["40"] and not conn.ready.done()
    on_sio_text(conn, b'40{"sid":"y"}')
    assert conn.ready.done()
    on_sio_text(conn, b"2")
    assert conn.sent == ["40", "3"]
    frame = b'42["m",' + orjson.dumps(body("m1", time.time())) + b"]"
    on_sio_text(conn, frame)
    on_sio_text(conn, frame.decode())  # the websockets library client gives str
    on_sio_text(conn, b'42["m",' + orjson.dumps(body("w1", time.time())) + b"]")
    on_sio_text(conn, b"6")
    st = conn.stats
    assert (st.received, st.dups, st.stray, st.other) == (1, 1, 1, 1)


# -- live: one publish -> one delivery, through the benchmark's own clients ---------------


def _require(prepare: Any) -> None:
    why = prepare(lambda msg: print(f"[peers] {msg}"))
    if why is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"peer cannot run in CI: {why}")
    pytest.skip(f"peer cannot run here: {why}")


async def _one_delivery_each(target: RunningTarget, reaches_all: bool, multicast: bool) -> None:
    c = target.client
    stats = Stats()
    sessions = [await _open(stats, c, "u1", "127.0.0.1", 10.0),
                await _open(stats, c, "u2", "127.0.0.1", 10.0)]
    fan = c.for_fanout()
    sessions.append(await _open(stats, fan, "u3", "127.0.0.1", 10.0))
    pool = HttpPool(c.host, c.port, 2)
    try:
        async def send(req: Any, want: int, sessions_reached: int) -> None:
            status, resp = await pool.send(encode(c.host, c.port, req), 10.0)
            assert c.reply_sessions(status, resp) == sessions_reached, (status, resp)
            for _ in range(500):  # up to 5 s
                if stats.received >= want:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # a duplicate would arrive meanwhile
            assert (stats.received, stats.dups, stats.other) == (want, 0, 0), vars(stats)

        stats.reset("m")
        await send(c.unicast("u1", body("m1", time.time())), 1, 1)
        assert "m1" in sessions[0].seen and "m1" not in sessions[1].seen
        # a broadcast reaches the broadcast scenario's sessions (nchan: its channel)
        n_fan = 3 if reaches_all else 1
        await send(c.broadcast(body("m2", time.time())), 1 + n_fan, n_fan)
        if multicast:
            await send(c.multicast(["u1", "u2"], body("m3", time.time())), 3 + n_fan, 2)
        assert stats.closed == 0 and stats.lat and all(0 <= x < 5 for x in stats.lat)
    finally:
        pool.close()
        for s in sessions:
            s.close()


@pytest.mark.timeout(900)  # a first use may install packages (apt-get, npm ci)
@pytest.mark.skipif(shutil.which("taskset") is None, reason="servers are pinned with taskset")
@pytest.mark.parametrize("name", ["nchan", "socketio"])
def test_peer_answers_one_publish_with_one_delivery(name: str, tmp_path: Path) -> None:
    target = TARGETS[name]
    _require(target.prepare)
    running = target.start(tmp_path, 0)
    try:
        asyncio.run(_one_delivery_each(running, reaches_all=name == "socketio",
                                       multicast=name == "socketio"))
        assert running.server.alive() and running.server.cpu() >= 0
        assert running.server.rss_kb() > 0 and running.server.pids()
        if name == "nchan":  # master and its worker are measured together
            assert len(running.server.pids()) == 2
        assert not running.server.stderr_problems()
    finally:
        running.server.stop()
    assert not running.server.alive()


def test_unavailable_peer_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.peers as peers

    monkeypatch.setattr(peers.shutil, "which", lambda name: None)
    with pytest.raises(PeerUnavailable, match="Node 20"):
        peers.node_binary()


def test_report_merges_runs_of_several_files_and_drops_disturbed_ones() -> None:
    from bench.report import merge

    def doc(*cpus: tuple[float, float]) -> dict[str, Any]:
        runs = [{"cpu_us_per_delivery": c, "other_cpu_pct_load_core": f} for c, f in cpus]
        return {"scenarios": {"S1": {"title": "t", "runs": {"nchan": runs},
                                     "skipped": {"x": "why"}}}}

    m = merge([doc((10, 0), (50, 30)), doc((12, 5), (14, 0))], max_foreign=10)
    s1 = m["S1"]
    assert s1["kept"] == {"nchan": [3, 4]} and s1["skipped"] == {"x": "why"}
    assert s1["median"]["nchan"]["cpu_us_per_delivery"] == 12
    assert merge([doc((10, 0), (50, 30))], None)["S1"]["median"]["nchan"][
        "cpu_us_per_delivery"] == 30
