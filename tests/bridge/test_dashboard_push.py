"""The admin dashboard's offline-push panel with the real bridge and the APNs/FCM
fakes: the in-process bridge is listed with its providers, accepted pushes show as
pushes/s, and a dead token of each provider shows under failures by reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.support.admin import admin_login, wait_sample

from .conftest import TOPIC, Fakes, serving

ADMIN_KEY = "bridge-admin-key-0123456789"


async def test_push_panel_counts_pushes_and_failures_by_reason(fakes: Fakes,
                                                               tmp_path: Path) -> None:
    dead_ios, dead_android = "de" * 32, "gone-android"
    fakes.apns.state.gone.add(dead_ios)
    fakes.fcm.state.gone.add(dead_android)
    async with serving(tmp_path, **fakes.settings_env(), PUSHGATE_ADMIN_KEY=ADMIN_KEY) as srv:
        async with srv.http() as api, httpx.AsyncClient(base_url=srv.base_url,
                                                        timeout=10) as http:
            for user, platform, token in (("q1", "apns", "a1" * 32), ("q2", "fcm", "ok-android"),
                                          ("q3", "apns", dead_ios), ("q4", "fcm", dead_android)):
                r = await api.put(f"/v1/users/{user}/devices",
                                  json={"platform": platform, "token": token, "app": TOPIC})
                assert r.status_code == 200, r.text
            assert (await admin_login(http, ADMIN_KEY)).status_code == 303
            async with http.stream("GET", "/admin/api/stream") as stream:
                lines = stream.aiter_lines()
                first = await wait_sample(lines, lambda s: True)
                [bridge] = [n for n in first["nodes"] if n["kind"] == "bridge"]
                assert bridge["detail"] == "apns, fcm" and bridge["health"] == "ok"
                assert first["failures"] == {}
                r = await api.post("/v1/notifications", json={
                    "users": ["q1", "q2", "q3", "q4"], "body": {"n": 1},
                    "push": {"title": "Hi"}})
                assert r.status_code == 200, r.text

                def pushed(s: dict[str, Any]) -> bool:
                    return s["point"]["pushes"] > 0
                await wait_sample(lines, pushed)
                sample = await wait_sample(lines, lambda s: len(s["failures"]) == 4)
                assert sample["failures"] == {
                    "failed: Unregistered": 1, "dropped: Unregistered": 1,
                    "failed: UNREGISTERED": 1, "dropped: UNREGISTERED": 1}
