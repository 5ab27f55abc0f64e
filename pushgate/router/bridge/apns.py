"""APNs provider: HTTP/2 + TLS (:mod:`pushgate._h2.client`), token-based auth (ES256 JWT from a
.p8 key).

The JWT is reused for 50 minutes: Apple refuses a token older than one hour and
answers ``TooManyProviderTokenUpdates`` to tokens renewed more often than every 20
minutes; after ``ExpiredProviderToken`` a new one is made at once. One HTTP/2
connection multiplexes up to the server's ``MAX_CONCURRENT_STREAMS`` requests.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from pushgate._h2 import hpack
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

log = get_logger("pushgate.bridge.apns")

PRODUCTION_URL = "https://api.push.apple.com"
SANDBOX_URL = "https://api.sandbox.push.apple.com"
TOKEN_REUSE_S = 50 * 60
_TEN = re.compile(r"^[A-Z0-9]{10}$")
PROBE_TOKEN = "0" * 64
# APNs headers whose values are unique to one notification (a sender may set any
# apns-* header): HPACK literals, never in the connection's table
NOT_INDEXED = hpack.NOT_INDEXED | {"apns-id", "apns-expiration", "apns-unique-id"}

# (not DeviceTokenNotForTopic: a wrong apns_topic, or an apns-topic override of one send,
# made APNs answer it for every token, and every iOS device of the recipients was deleted)
DEAD_REASONS = {"BadDeviceToken", "Unregistered", "ExpiredToken"}
RETRY_REASONS = {"TooManyRequests", "InternalServerError", "ServiceUnavailable", "Shutdown",
                 "ExpiredProviderToken", "TooManyProviderTokenUpdates", "IdleTimeout"}


@dataclass(frozen=True, slots=True)
class ApnsConfig:
    key_file: str
    key_id: str
    team_id: str
    topic: str
    url: str = PRODUCTION_URL
    ca_file: str | None = None
    timeout_s: float = 10.0
    connections: int = 1


def load_key(path: str) -> ec.EllipticCurvePrivateKey:
    """The .p8 key; :class:`BridgeConfigError` naming ``apns_key_file`` otherwise."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise BridgeConfigError(f"apns_key_file: cannot read {path}: {e.strerror}") from None
    try:
        key = load_pem_private_key(raw, password=None)
    except (ValueError, TypeError) as e:
        raise BridgeConfigError(f"apns_key_file: {path} is not a PEM private key (.p8): {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise BridgeConfigError(f"apns_key_file: {path} is not an ES256 (P-256) key")
    return key


class ApnsProvider:
    platform = "apns"

    def __init__(self, config: ApnsConfig, clock: Any = time.time) -> None:
        for name, value in (("apns_key_id", config.key_id), ("apns_team_id", config.team_id)):
            if not _TEN.match(value or ""):
                raise BridgeConfigError(f"{name}: must be the 10-character identifier from "
                                        f"the Apple developer account, got {value!r}")
        if not config.topic:
            raise BridgeConfigError("apns_topic: required (the app's bundle id)")
        self.config = config
        self._key = load_key(config.key_file)
        self._clock = clock
        self._token: tuple[str, float] | None = None
        self._verify = tls_context(config.ca_file, "push_ca_file")
        self._client: H2Client | None = None
        self._transport_log = TransportLog(log, "APNs")

    def provider_token(self, force: bool = False) -> str:
        now = self._clock()
        if force or self._token is None or now - self._token[1] >= TOKEN_REUSE_S:
            token = jwt.encode({"iss": self.config.team_id, "iat": int(now)}, self._key,
                               algorithm="ES256", headers={"kid": self.config.key_id})
            self._token = (token, now)
        return self._token[0]

    async def start(self) -> None:
        self._client = H2Client(self.config.url, self._verify,
                                connections=self.config.connections,
                                timeout_s=self.config.timeout_s, not_indexed=NOT_INDEXED)
        # Credentials check: Apple checks the provider token before the device token.
        result = await self.send(PROBE_TOKEN, {"body": "probe"}, 0)
        if result.reason in ("InvalidProviderToken", "MissingProviderToken"):
            raise BridgeConfigError(
                f"APNs refused the provider token ({result.reason}): check apns_team_id, "
                "apns_key_id and apns_key_file")
        if result.reason in ("TopicDisallowed", "BadTopic"):
            raise BridgeConfigError(f"apns_topic: APNs refused topic {self.config.topic!r} "
                                    f"({result.reason})")
        if result.status == 0:
            log.warning("APNs not reachable at start; pushes will be retried",
                        url=self.config.url, reason=result.reason)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def send(self, token: str, push: dict[str, Any], seq: int) -> Result:
        assert self._client is not None, "start() first"
        headers, body = payload.apns_request(push, seq, self.config.topic, self._clock())
        result = await self._post(token, headers, orjson.dumps(body), False)
        if result.reason == "ExpiredProviderToken":
            result = await self._post(token, headers, orjson.dumps(body), True)
        return result

    async def _post(self, token: str, headers: dict[str, str], body: bytes, fresh: bool) -> Result:
        assert self._client is not None
        headers = {**headers, "authorization": f"bearer {self.provider_token(fresh)}"}
        try:
            # (percent-encoded: a registered token is any printable ASCII; "a b" or
            # "../x" in the path was a request to another path, or no request at all)
            resp = await self._client.request("POST", f"/3/device/{quote(token, safe='')}",
                                              headers, body)
        except H2Error as e:
            self._transport_log(e)
            return Result(Outcome.RETRY, e.kind)  # (a fixed word: metrics label)
        if resp.status == 200:
            return OK
        try:
            reason = str(orjson.loads(resp.body).get("reason", ""))
        except (orjson.JSONDecodeError, AttributeError):
            reason = ""
        status = resp.status
        reason = reason or f"http_{status}"
        if status == 410 or reason in DEAD_REASONS:
            return Result(Outcome.DEAD, reason, status)
        if status == 429 or status >= 500 or reason in RETRY_REASONS:
            after = parse_retry_after(resp.headers.get("retry-after"), self._clock())
            return Result(Outcome.RETRY, reason, status, after)
        return Result(Outcome.FAILED, reason, status)
