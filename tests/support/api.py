"""The HTTP API as a business server uses it: an httpx client with the API key."""

from __future__ import annotations

from typing import Protocol

import httpx

TIMEOUT = 15.0


class ApiTarget(Protocol):
    @property
    def base_url(self) -> str: ...

    @property
    def api_key(self) -> str: ...


def api(target: ApiTarget, timeout: float = TIMEOUT) -> httpx.AsyncClient:
    """``async with api(srv) as http: await http.post("/v1/notifications", json=...)``"""
    return httpx.AsyncClient(base_url=target.base_url, timeout=timeout,
                             headers={"Authorization": f"Bearer {target.api_key}"})
