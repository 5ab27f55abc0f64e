"""The gateway's HTTP API for business servers (needs ``pushgate-client[server]``: httpx).

::

    async with ServerApi("http://127.0.0.1:8080", api_key) as api:
        await api.send({"text": "hi"}, users=["alice"])
        token = (await api.open_connection("alice"))["token"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pushgate_client.errors import ConnectionLost, RequestError


class ServerApi:
    def __init__(self, url: str, api_key: str, *, timeout: float = 15.0) -> None:
        import httpx  # optional dependency: only business servers need it

        self._http = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout,
                                       headers={"Authorization": f"Bearer {api_key}"})

    async def __aenter__(self) -> ServerApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        import httpx

        try:
            r = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise ConnectionLost(f"cannot reach {self._http.base_url}: {e!r}") from e
        try:
            data = r.json()
        except ValueError:
            data = {}
        if r.status_code >= 400:
            err = data.get("error", {}) if isinstance(data, dict) else {}
            raise RequestError(str(err.get("code", f"http_{r.status_code}")),
                               str(err.get("message", r.text[:200])), field=err.get("field"),
                               retryable=bool(err.get("retryable", r.status_code >= 500)))
        return data if isinstance(data, dict) else {}

    async def send(self, body: Any, *, users: Sequence[str] | None = None,
                   filter: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """``POST /v1/notifications``; fields: ``ttl``, ``id``, ``ack``, ``device``, ..."""
        payload: dict[str, Any] = {"body": body, **fields}
        if users is not None:
            payload["users"] = list(users)
        if filter is not None:
            payload["filter"] = filter
        return await self._call("POST", "/v1/notifications", json=payload)

    async def open_connection(self, user: str, **identity: str) -> dict[str, Any]:
        """``POST /v1/open-connection``: ``{"url", "token", "expires_at"}``."""
        return await self._call("POST", "/v1/open-connection", json={"user": user, **identity})

    async def events(self, user: str, after: int = 0, limit: int = 100) -> dict[str, Any]:
        return await self._call("GET", f"/v1/users/{user}/events",
                                params={"after": after, "limit": limit})

    async def read_state(self, user: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/users/{user}/read-state")
