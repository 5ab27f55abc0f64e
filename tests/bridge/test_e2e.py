"""The bridge end to end: the real ``pushgate serve`` process, fake APNs/FCM servers
(real HTTP/2 + TLS), real websocket and HTTP clients."""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import subprocess
import time
from pathlib import Path

import httpx

from deploy.local.cluster import pushgate_bin
from tests.support.server import ServerProcess, server_env
from tests.support.waiting import wait_for
from tests.support.ws import ws_client as connect

from .conftest import TOPIC, Fakes, serving

IOS, ANDROID, BOB_IOS = "a1" * 32, "alice-android-1", "b0" * 32
PUSH = {"title": "New message", "body": "Hi Alice", "data": {"thread": "t1"}, "badge": 1}
TIMEOUT = 15.0


async def metric(srv: ServerProcess, name: str, labels: str = "") -> float:
    async with httpx.AsyncClient(base_url=srv.base_url) as http:
        text = (await http.get("/metrics")).text
    m = re.search(rf"^{re.escape(name)}{{?{re.escape(labels)}}}? ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def until_metric(srv: ServerProcess, name: str, labels: str, value: float) -> None:
    await wait_for(lambda: metric(srv, name, labels), TIMEOUT, f"{name}{{{labels}}} >= {value}",
                   until=lambda v: v >= value)


async def send(srv: ServerProcess, users: list[str], **extra: object) -> dict:
    async with srv.http() as http:
        r = await http.post("/v1/notifications", json={"users": users, "body": {"n": 1}, **extra})
        assert r.status_code == 200, r.text
        return r.json()


async def test_offline_user_gets_both_pushes_online_user_who_acks_gets_none(
    fakes: Fakes, tmp_path: Path
) -> None:
    env = {**fakes.settings_env(), "PUSHGATE_PUSH_ACK_WINDOW_MS": "1000"}
    async with serving(tmp_path, **env) as srv:
        # alice registers her iPhone with her own token (HTTP), the server adds her Android
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            r = await http.post("/v1/devices", json={"platform": "apns", "token": IOS},
                                headers={"Authorization": f"Bearer {srv.token('alice', app=TOPIC)}"})
            assert r.status_code == 200, r.text
            assert (r.json()["user"], r.json()["app"]) == ("alice", TOPIC)
        async with srv.http() as http:
            r = await http.put("/v1/users/alice/devices",
                               json={"platform": "fcm", "token": ANDROID, "app": TOPIC})
            assert r.status_code == 200, r.text
            r = await http.put("/v1/users/alice/devices", json={"platform": "mpns", "token": "x"})
            assert r.status_code == 400 and r.json()["error"]["field"] == "platform"
        async with connect(srv, "bob", app=TOPIC) as bob:
            reply = await bob.request({"type": "register_device", "platform": "apns",
                                       "token": BOB_IOS})
            assert reply["type"] == "reply" and reply["app"] == TOPIC
            out = await send(srv, ["alice", "bob"], push=PUSH)
            assert [(r["user"], r["sessions"], r["push"]) for r in out["results"]] == [
                ("alice", 0, "queued"), ("bob", 1, "queued")]
            event = await bob.recv_type("event")
            await bob.send({"type": "ack", "seq": event["seq"]})
            await fakes.apns.state.wait(lambda: IOS in fakes.apns.state.counts, TIMEOUT)
            await fakes.fcm.state.wait(lambda: ANDROID in fakes.fcm.state.counts, TIMEOUT)
            # bob's push was due after the ack window; the worker found his ack and skipped it
            await until_metric(srv, "pushgate_push_skipped_total", 'reason="acked"', 1)
        assert BOB_IOS not in fakes.apns.state.counts
        ios = fakes.apns.state.last[IOS]
        assert ios["payload"]["aps"] == {"alert": {"title": "New message", "body": "Hi Alice"},
                                         "badge": 1}
        assert ios["payload"]["thread"] == "t1" and ios["payload"]["pushgate"] == {"seq": 1}
        assert ios["headers"]["apns-topic"] == TOPIC
        android = fakes.fcm.state.last[ANDROID]
        assert android["notification"] == {"title": "New message", "body": "Hi Alice"}
        assert android["data"] == {"thread": "t1", "pushgate_seq": "1"}
        assert await metric(srv, "pushgate_push_sent_total", 'provider="apns"') == 1
        assert await metric(srv, "pushgate_push_sent_total", 'provider="fcm"') == 1
        # bad push blocks name the field
        async with srv.http() as http:
            r = await http.post("/v1/notifications", json={"users": ["a"], "body": 1,
                                                           "push": {"title": "x", "badge": -1}})
            assert r.status_code == 400 and r.json()["error"]["field"] == "push.badge"


async def test_dead_tokens_are_removed_and_failures_retried(fakes: Fakes, tmp_path: Path) -> None:
    env = {**fakes.settings_env(), "PUSHGATE_PUSH_RETRY_BASE_S": "0.2"}
    gone_ios, gone_android, busy, flaky = "de" * 32, "gone-android", "ee" * 32, "flaky-android"
    fakes.apns.state.gone.add(gone_ios)
    fakes.fcm.state.gone.add(gone_android)
    fakes.apns.state.fail(busy, 429, "TooManyRequests", retry_after="1")
    fakes.fcm.state.fail(flaky, 500, "INTERNAL", times=2)
    async with serving(tmp_path, **env) as srv:
        async with srv.http() as http:
            for user, platform, token in (("u1", "apns", gone_ios), ("u2", "fcm", gone_android),
                                          ("u3", "apns", busy), ("u4", "fcm", flaky)):
                r = await http.put(f"/v1/users/{user}/devices",
                                   json={"platform": platform, "token": token, "app": TOPIC})
                assert r.status_code == 200, r.text
        await send(srv, ["u1", "u2", "u3", "u4"], push={"body": "hello"})
        await fakes.apns.state.wait(lambda: busy in fakes.apns.state.counts, TIMEOUT)
        await fakes.fcm.state.wait(lambda: flaky in fakes.fcm.state.counts, TIMEOUT)
        await until_metric(srv, "pushgate_push_tokens_removed_total", 'provider="fcm"', 1)
        await until_metric(srv, "pushgate_push_tokens_removed_total", 'provider="apns"', 1)
        async with srv.http() as http:
            for user in ("u1", "u2"):
                assert (await http.get(f"/v1/users/{user}/devices")).json() == {"devices": []}
            assert len((await http.get("/v1/users/u3/devices")).json()["devices"]) == 1
    busy_times = [t for t, tok, _ in fakes.apns.state.history if tok == busy]
    assert len(busy_times) == 2 and busy_times[1] - busy_times[0] >= 0.95  # Retry-After: 1
    flaky_log = [(t, s) for t, tok, s in fakes.fcm.state.history if tok == flaky]
    assert [s for _, s in flaky_log] == [500, 500, 200]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(flaky_log)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19  # 0.2 s then 0.4 s, with 50..100 % jitter


def start_fails(tmp_path: Path, **env: str) -> str:
    """Run ``pushgate serve`` expecting it to refuse to start as documented (exit code 2,
    no traceback); return its ``pushgate: …`` line."""
    cmd = [pushgate_bin(), "serve", "--port", "0", "--data-dir", str(tmp_path / "data")]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=server_env(**env), capture_output=True, text=True, timeout=30)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and time.monotonic() - t0 < 30, out
    assert "Traceback" not in out, out
    return proc.stderr.strip().splitlines()[-1]


async def test_bad_credentials_fail_at_start_naming_the_problem(
    fakes: Fakes, tmp_path: Path
) -> None:
    env = fakes.settings_env()
    out = await asyncio.to_thread(start_fails, tmp_path,
                                  **{**env, "PUSHGATE_APNS_KEY_FILE": str(tmp_path / "no.p8")})
    assert out.startswith("pushgate: apns_key_file: cannot read"), out
    out = await asyncio.to_thread(start_fails, tmp_path,
                                  **{**env, "PUSHGATE_APNS_TEAM_ID": "OTHERTEAM1"})
    assert out.startswith("pushgate: APNs refused the provider token (InvalidProviderToken)")
    assert "apns_team_id" in out, out
    bad = tmp_path / "sa.json"
    bad.write_text('{"type": "service_account"')
    out = await asyncio.to_thread(start_fails, tmp_path,
                                  **{**env, "PUSHGATE_FCM_SERVICE_ACCOUNT_FILE": str(bad)})
    assert out.startswith("pushgate: fcm_service_account_file") and "not JSON" in out, out


async def test_a_bad_store_or_metrics_place_fails_at_start_naming_it(
    fakes: Fakes, tmp_path: Path
) -> None:
    """offline-push.md: exit code 2 and one line for bad start-up settings (these were
    tracebacks with exit code 1)."""
    env = {**fakes.settings_env(), "PUSHGATE_DATA_DIR": str(tmp_path / "data")}

    def bridge_fails(*args: str, **more: str) -> str:
        proc = subprocess.run([pushgate_bin(), "bridge", *args],
                              env=server_env(**{**env, **more}), capture_output=True,
                              text=True, timeout=30)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2 and "Traceback" not in out, out
        return proc.stderr.strip().splitlines()[-1]

    out = await asyncio.to_thread(bridge_fails,
                                  PUSHGATE_STORE_URL="mysql://u:pw@127.0.0.1:1/db")
    assert out.startswith("pushgate: store_url mysql://u:***@127.0.0.1:1/db"), out
    out = await asyncio.to_thread(bridge_fails, PUSHGATE_FCM_URL="nope")
    assert "PUSHGATE_FCM_URL" in out and "https:// URL is required" in out, out
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = await asyncio.to_thread(bridge_fails, "--metrics-port", str(port))
        assert out.startswith(f"pushgate: --metrics-host 127.0.0.1 --metrics-port {port}"), out
