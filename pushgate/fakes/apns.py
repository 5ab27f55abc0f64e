"""Fake APNs: ``POST /3/device/<token>`` over HTTP/2 + TLS, checking the ES256 provider
token (team id, key id, signature, age) like Apple does, answering with Apple's error
bodies (``{"reason": "BadDeviceToken"}``, 410 ``Unregistered`` with a timestamp, ...).

Failure injection: :meth:`FakeState.fail` (or ``POST /_fake/fail``) scripts the next
answers for a token; :meth:`FakeState.gone` tokens get 410.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pushgate._h2 import hpack
from pushgate._h2.server import H2Server, Reply, Request, serve_h2
from pushgate.fakes.state import FakeState, Ids, json_reply

_TOKEN = re.compile(r"^[0-9a-fA-F]{16,200}$")
MAX_PAYLOAD = 4096
PROVIDER_TOKEN_MAX_AGE_S = 3600
# APNs headers whose values are unique to one answer or notification: HPACK literals,
# never in the connection's table
NOT_INDEXED = hpack.NOT_INDEXED | {"apns-id", "apns-expiration", "apns-unique-id"}


def generate_key(path: Path) -> None:
    """Write a new APNs-style .p8 (PKCS#8 PEM, P-256) key."""
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


class FakeApns:
    def __init__(self, key_file: str | Path, key_id: str, team_id: str,
                 topic: str | None = None, clock: Any = time.time) -> None:
        key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self.public_key = key.public_key()
        self.key_id = key_id
        self.team_id = team_id
        self.topic = topic
        self.clock = clock
        self.state = FakeState()
        self.ids = Ids()
        self._verified: dict[str, float] = {}  # provider token -> iat
        self._current = ""  # device token of the request being answered

    def handle(self, req: Request) -> Reply:
        control = self.state.control(req)
        if control is not None:
            return control
        if req.method != "POST" or not req.path.startswith("/3/device/"):
            return self._error(405 if req.path.startswith("/3/device/") else 404,
                               "MethodNotAllowed" if req.path.startswith("/3/device/")
                               else "BadPath")
        self.state.requests += 1
        token = self._current = req.path[len("/3/device/"):]
        auth = self._check_auth(req.headers.get("authorization", ""))
        if auth is not None:
            return auth
        topic = req.headers.get("apns-topic")
        if not topic:
            return self._error(400, "MissingTopic")
        if self.topic is not None and topic != self.topic:
            return self._error(400, "DeviceTokenNotForTopic")
        push_type = req.headers.get("apns-push-type", "alert")
        if push_type not in ("alert", "background", "voip", "complication", "fileprovider",
                             "mdm", "liveactivity", "location", "pushtotalk"):
            return self._error(400, "InvalidPushType")
        if req.headers.get("apns-priority", "10") not in ("5", "10", "1"):
            return self._error(400, "BadPriority")
        if len(req.headers.get("apns-collapse-id", "").encode()) > 64:
            return self._error(400, "BadCollapseId")
        if len(req.body) > MAX_PAYLOAD:
            return self._error(413, "PayloadTooLarge")
        if not _TOKEN.match(token) or set(token) == {"0"}:
            return self._error(400, "BadDeviceToken")
        rule = self.state.scripted(token)
        if rule is not None:
            headers = {"retry-after": rule.retry_after} if rule.retry_after else {}
            return self._error(rule.status, rule.reason, headers)
        if token in self.state.gone:
            return self._error(410, "Unregistered", timestamp=int(self.clock() * 1000))
        try:
            body = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            return self._error(400, "BadPayload")
        if not isinstance(body, dict) or "aps" not in body:
            return self._error(400, "PayloadEmpty")
        headers = {k: v for k, v in req.headers.items() if k.startswith("apns-")}
        self.state.accepted(token, {"headers": headers, "payload": body})
        return 200, {"apns-id": self.ids.uuid()}, b""

    def _check_auth(self, value: str) -> Reply | None:
        if not value.lower().startswith("bearer "):
            return self._error(403, "MissingProviderToken")
        token = value[7:].strip()
        iat = self._verified.get(token)
        if iat is None:
            try:
                header = jwt.get_unverified_header(token)
                claims = jwt.decode(token, self.public_key, algorithms=["ES256"],
                                    options={"require": ["iss", "iat"], "verify_iat": False})
            except jwt.PyJWTError:
                return self._error(403, "InvalidProviderToken")
            if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
                return self._error(403, "InvalidProviderToken")
            iat = float(claims["iat"])
            self._verified[token] = iat
        if self.clock() - iat > PROVIDER_TOKEN_MAX_AGE_S:
            return self._error(403, "ExpiredProviderToken")
        return None

    def _error(self, status: int, reason: str, headers: dict[str, str] | None = None,
               timestamp: int | None = None) -> Reply:
        self.state.refused(reason, self._current, status)
        body: dict[str, Any] = {"reason": reason}
        if timestamp is not None:
            body["timestamp"] = timestamp
        return json_reply(status, body, {"apns-id": self.ids.uuid(), **(headers or {})})

    async def serve(self, host: str, port: int, cert_dir: Path) -> tuple[H2Server, int, Path]:
        return await serve_h2(self.handle, host, port, cert_dir, not_indexed=NOT_INDEXED)
