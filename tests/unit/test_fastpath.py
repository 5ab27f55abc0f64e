"""The lean ASGI path of POST /v1/notifications answers exactly like the Starlette
endpoint: same status, headers and body for good and bad requests."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import orjson

from pushgate.hub.app import create_app
from pushgate.hub.fastpath import FastSend
from pushgate.settings import Settings

KEY = "k" * 24

CASES: list[tuple[dict[str, str], bytes]] = [
    ({"authorization": f"Bearer {KEY}"}, b'{"users":["USER"],"body":{"a":1}}'),
    ({"authorization": f"Bearer {KEY}"}, b'{"users":["USER"],"body":1,"id":"m1"}'),
    ({"authorization": f"Bearer {KEY}"}, b'{"users":["USER"],"body":1,"id":"m1"}'),  # dup
    ({"authorization": f"Bearer {KEY}"}, b'{"filter":{"workspace":"w"},"body":"x"}'),
    ({}, b'{"users":["USER"],"body":1}'),
    ({"authorization": "Bearer wrong"}, b'{"users":["USER"],"body":1}'),
    ({"authorization": "Basic xyz"}, b'{"users":["USER"],"body":1}'),
    ({"authorization": f"Bearer {KEY}"}, b""),
    ({"authorization": f"Bearer {KEY}"}, b"{not json"),
    ({"authorization": f"Bearer {KEY}"}, b"[1,2]"),
    ({"authorization": f"Bearer {KEY}"}, b'{"users":"USER","body":1}'),
    ({"authorization": f"Bearer {KEY}"}, b'{"users":["USER"]}'),
    ({"authorization": f"Bearer {KEY}"}, b'{"users":["USER"],"body":1,"bogus":2}'),
    ({"authorization": f"Bearer {KEY}"}, b'{"users":["USER"],"body":"' + b"x" * 5000 + b'"}'),
]


GENERATED_REPORT = re.compile(rb'"report":"r-[0-9a-f-]+"')


def _normalize(resp: httpx.Response, user: str) -> tuple[int, str | None, bytes]:
    """Without the user and the generated report ids (each send gets a new one)."""
    content = GENERATED_REPORT.sub(b'"report":"GENERATED"', resp.content)
    return (resp.status_code, resp.headers.get("content-type"),
            content.replace(user.encode(), b"USER"))


async def test_fast_path_replies_like_the_starlette_endpoint(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, jwt_secret="s" * 32, api_keys=[KEY],
                        max_request_bytes=4096)
    app = create_app(settings)
    gw = app.state.node
    await gw.start()
    try:
        slow = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t")
        fast = httpx.AsyncClient(transport=httpx.ASGITransport(app=FastSend(app, gw)),
                                 base_url="http://t")
        for headers, body in CASES:
            a = await slow.post("/v1/notifications", headers=headers,
                                content=body.replace(b"USER", b"alice"))
            b = await fast.post("/v1/notifications", headers=headers,
                                content=body.replace(b"USER", b"bobby"))
            assert _normalize(a, "alice") == _normalize(b, "bobby"), body[:60]
            assert a.headers.get("retry-after") == b.headers.get("retry-after")
        # the stored results are the same too
        assert [e.seq for e in (await gw.backend.store.fetch("alice", 0, 10))] == \
            [e.seq for e in (await gw.backend.store.fetch("bobby", 0, 10))] == [1, 2]
        # other routes and methods still go to Starlette
        r = await fast.put("/v1/notifications")
        assert r.status_code == 405 and orjson.loads(r.content)["error"]["code"] == \
            "method_not_allowed"
        assert (await fast.get("/healthz")).status_code == 200
        await slow.aclose()
        await fast.aclose()
    finally:
        await gw.stop()
