"""FCM HTTP v1 provider: OAuth2 access token from a service-account key (google-auth),
HTTP/2 client (:mod:`pushgate._h2.client`).

google-auth signs the JWT-bearer assertion and parses the token reply; this module
only carries its HTTP request over httpx (``token_uri`` comes from the key file, so
the local fake's token endpoint works with a key it issued). The token is refreshed
when it is about to expire, and once more after a 401.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from google.auth import exceptions as gexc
from google.auth.transport import Request as _GoogleRequest
from google.auth.transport import Response as _GoogleResponse
from google.oauth2 import service_account

from pushgate._h2.client import H2Client, H2Error
from pushgate.logs import get_logger
from pushgate.router.bridge import payload
from pushgate.router.bridge.base import (
    OK,
    BridgeConfigError,
    Outcome,
    Result,
    TransportLog,
    parse_retry_after,
    tls_context,
)

log = get_logger("pushgate.bridge.fcm")

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
DEFAULT_URL = "https://fcm.googleapis.com"
DEAD_CODES = {"UNREGISTERED"}
RETRY_CODES = {"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"}
TOKEN_RETRY_S = 5.0  # after a failed token refresh, pushes fail (and retry) without one


@dataclass(frozen=True, slots=True)
class FcmConfig:
    service_account_file: str
    project_id: str | None = None
    url: str = DEFAULT_URL
    ca_file: str | None = None
    timeout_s: float = 10.0
    connections: int = 1


class _Response(_GoogleResponse):
    def __init__(self, resp: httpx.Response) -> None:
        self._resp = resp

    @property
    def status(self) -> int:
        return self._resp.status_code

    @property
    def headers(self) -> Any:
        return dict(self._resp.headers)

    @property
    def data(self) -> bytes:
        return self._resp.content


class HttpxRequest(_GoogleRequest):
    """google-auth's transport interface over a synchronous httpx client (run in a
    thread: a refresh happens about once an hour)."""

    def __init__(self, verify: ssl.SSLContext | bool, timeout_s: float) -> None:
        self._client = httpx.Client(http2=True, verify=verify, timeout=timeout_s)

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: Any = None, **kwargs: Any) -> _GoogleResponse:
        try:
            resp = self._client.request(method, url, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise gexc.TransportError(f"{type(e).__name__}: {e}") from e  # type: ignore[no-untyped-call]
        return _Response(resp)

    def close(self) -> None:
        self._client.close()


def load_credentials(path: str) -> tuple[service_account.Credentials, dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise BridgeConfigError(f"fcm_service_account_file: cannot read {path}: {e.strerror}") from None
    try:
        info = json.loads(raw)
    except ValueError as e:
        raise BridgeConfigError(f"fcm_service_account_file: {path} is not JSON: {e}") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise BridgeConfigError(f"fcm_service_account_file: {path} is not a service-account "
                                "key (\"type\": \"service_account\")")
    try:
        creds = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[SCOPE])
    except (ValueError, KeyError) as e:
        raise BridgeConfigError(f"fcm_service_account_file: {path}: bad service-account key: "
                                f"{e}") from None
    return creds, info


class FcmProvider:
    platform = "fcm"

    def __init__(self, config: FcmConfig, clock: Any = time.time) -> None:
        self.config = config
        self._creds, info = load_credentials(config.service_account_file)
        self.project_id = config.project_id or info.get("project_id")
        if not self.project_id:
            raise BridgeConfigError("fcm_project_id: not set and not in the service-account key")
        self._clock = clock
        self._verify = tls_context(config.ca_file, "push_ca_file")
        self._request = HttpxRequest(self._verify, config.timeout_s)
        self._lock = asyncio.Lock()
        self._refreshed_at = float("-inf")  # monotonic time the last refresh ended
        self._refresh_error = ""  # and why it failed ("": it did not)
        self._client: H2Client | None = None
        self._transport_log = TransportLog(log, "FCM")
        self._path = f"/v1/projects/{self.project_id}/messages:send"

    async def _token(self, force: bool = False) -> str:
        """The OAuth2 access token, refreshed when expired (or ``force``: after a 401).
        One refresh at a time, and its outcome is shared: the pushes that waited for it
        use its token, or fail with its error, without a refresh each; after a failure
        the token endpoint is asked again only ``TOKEN_RETRY_S`` later (an endpoint that
        stalls cost one ``timeout_s`` per push, one after another, each holding a
        concurrency slot the other provider's pushes waited for)."""
        if force or not self._creds.valid:
            asked = time.monotonic()
            async with self._lock:
                now = time.monotonic()
                if self._refreshed_at >= asked or (
                        self._refresh_error and now - self._refreshed_at < TOKEN_RETRY_S):
                    if self._refresh_error:  # its error, as a new exception each time
                        raise gexc.RefreshError(self._refresh_error)  # type: ignore[no-untyped-call]
                elif force or not self._creds.valid:
                    try:
                        await asyncio.to_thread(self._creds.refresh, self._request)
                        self._refresh_error = ""
                    except (gexc.RefreshError, gexc.TransportError) as e:
                        self._refresh_error = f"{type(e).__name__}: {e}"
                        log.warning("FCM access token refresh failed; pushes are retried, "
                                    "the token endpoint is asked again in "
                                    f"{TOKEN_RETRY_S:.0f} s at the earliest",
                                    reason=self._refresh_error)
                        raise
                    finally:
                        self._refreshed_at = time.monotonic()
        return str(self._creds.token)

    async def start(self) -> None:
        self._client = H2Client(self.config.url, self._verify,
                                connections=self.config.connections,
                                timeout_s=self.config.timeout_s)
        try:
            await self._token()
        except gexc.RefreshError as e:
            raise BridgeConfigError(f"fcm_service_account_file: the token endpoint refused the "
                                    f"key: {e}") from None
        except gexc.TransportError as e:
            log.warning("FCM token endpoint not reachable at start; pushes will be retried",
                        reason=str(e))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._request.close()

    async def send(self, token: str, push: dict[str, Any], seq: int) -> Result:
        assert self._client is not None, "start() first"
        body = orjson.dumps(payload.fcm_message(push, seq, token))
        result = await self._post(body, False)
        if result.status == 401:
            result = await self._post(body, True)
        return result

    async def _post(self, body: bytes, fresh: bool) -> Result:
        assert self._client is not None
        try:
            bearer = await self._token(fresh)
        except (gexc.RefreshError, gexc.TransportError):
            return Result(Outcome.RETRY, "token_refresh")  # (a fixed word: metrics label)
        try:
            resp = await self._client.request(
                "POST", self._path, {"authorization": f"Bearer {bearer}",
                                     "content-type": "application/json"}, body)
        except H2Error as e:
            self._transport_log(e)
            return Result(Outcome.RETRY, e.kind)  # (a fixed word: metrics label)
        status = resp.status
        if status == 200:
            return OK
        code = _error_code(resp.body) or f"http_{status}"
        if code in DEAD_CODES:
            return Result(Outcome.DEAD, code, status)
        if status in (401, 429) or status >= 500 or code in RETRY_CODES:
            after = parse_retry_after(resp.headers.get("retry-after"), self._clock())
            return Result(Outcome.RETRY, code, status, after)
        return Result(Outcome.FAILED, code, status)


def _error_code(content: bytes) -> str:
    """The FCM ``errorCode`` of an error reply, else its ``status``."""
    try:
        err = orjson.loads(content)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ""
    for detail in err.get("details") or ():
        if isinstance(detail, dict) and detail.get("errorCode"):
            return str(detail["errorCode"])
    return str(err.get("status") or "")
