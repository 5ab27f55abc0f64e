"""Fake FCM (HTTP v1) with its own OAuth2 token endpoint, over HTTP/2 + TLS.

* ``POST /token``: the JWT-bearer grant google-auth's service-account flow uses; the
  assertion's RS256 signature, issuer, audience and scope are checked against the
  service-account key this fake issued (:func:`make_service_account`, whose
  ``token_uri`` points here). Answers ``{"access_token", "expires_in", "token_type"}``
  or Google's ``{"error": "invalid_grant", ...}``.
* ``POST /v1/projects/<project>/messages:send``: checks the bearer token and the
  message, answers ``{"name": ...}`` or Google's error body (``UNREGISTERED``,
  ``QUOTA_EXCEEDED``, ``INVALID_ARGUMENT``, ``UNAUTHENTICATED``, ...).
"""

from __future__ import annotations

import secrets
import time
import urllib.parse
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pushgate._h2.server import H2Server, Reply, Request, serve_h2
from pushgate.fakes.state import FakeState, Ids, json_reply

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# google-auth puts Google's token endpoint in "aud" whatever token_uri it posts to
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
          404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def _new_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


class FakeFcm:
    """``private_key``: PEM of the service account the fake accepts (a new one when
    omitted); :meth:`service_account` gives the key file a client needs."""

    def __init__(self, project_id: str = "pushgate-fake", private_key: str | None = None,
                 email: str = "pushgate-fake@pushgate-fake.iam.gserviceaccount.com",
                 clock: Any = time.time, token_ttl_s: int = 3600) -> None:
        self.private_key = private_key or _new_key_pem()
        key = serialization.load_pem_private_key(self.private_key.encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey), "the service-account key must be RSA"
        self.public_key = key.public_key()
        self.key_id = secrets.token_hex(20)
        self.email = email
        self.project_id = project_id
        self.token_uri: str | None = None
        self.clock = clock
        self.token_ttl_s = token_ttl_s
        self.state = FakeState()
        self.ids = Ids()
        self.access_tokens: dict[str, float] = {}  # token -> expires at
        self.tokens_issued = 0

    @classmethod
    def from_service_account(cls, info: dict[str, Any], **kw: Any) -> FakeFcm:
        fake = cls(info["project_id"], info["private_key"], info["client_email"], **kw)
        fake.token_uri = info.get("token_uri")
        return fake

    def service_account(self, token_uri: str) -> dict[str, Any]:
        """The service-account key JSON (as Google hands it out) pointing at this fake."""
        self.token_uri = token_uri
        return {"type": "service_account", "project_id": self.project_id,
                "private_key_id": self.key_id, "private_key": self.private_key,
                "client_email": self.email, "client_id": "100000000000000000000",
                "token_uri": token_uri}

    def handle(self, req: Request) -> Reply:
        control = self.state.control(req)
        if control is not None:
            return control
        if req.method == "POST" and req.path.split("?")[0] == "/token":
            return self._token(req)
        path = f"/v1/projects/{self.project_id}/messages:send"
        if req.method == "POST" and req.path.endswith("/messages:send"):
            if req.path != path:
                return self._error(404, "Requested entity was not found.", None)
            return self._send(req)
        return self._error(404, f"unknown path {req.path}", None)

    def _token(self, req: Request) -> Reply:
        form = urllib.parse.parse_qs(req.body.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return json_reply(400, {"error": "unsupported_grant_type",
                                    "error_description": "Invalid grant_type"})
        try:
            claims = jwt.decode(form.get("assertion", [""])[0], self.public_key,
                                algorithms=["RS256"],
                                audience=[GOOGLE_TOKEN_URI, *filter(None, [self.token_uri])],
                                options={"require": ["iss", "aud", "exp", "iat"]})
        except jwt.PyJWTError as e:
            return json_reply(400, {"error": "invalid_grant",
                                    "error_description": f"Invalid JWT: {e}"})
        if claims.get("iss") != self.email:
            return json_reply(400, {"error": "invalid_grant",
                                    "error_description": "Invalid issuer"})
        if SCOPE not in str(claims.get("scope", "")).split():
            return json_reply(400, {"error": "invalid_scope",
                                    "error_description": "Missing firebase.messaging scope"})
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        self.access_tokens[token] = self.clock() + self.token_ttl_s
        self.tokens_issued += 1
        return json_reply(200, {"access_token": token, "expires_in": self.token_ttl_s,
                                "token_type": "Bearer"})

    def _send(self, req: Request) -> Reply:
        self.state.requests += 1
        auth = req.headers.get("authorization", "")
        expires = self.access_tokens.get(auth[7:].strip()) if auth.startswith("Bearer ") else None
        if expires is None or expires <= self.clock():
            return self._error(401, "Request had invalid authentication credentials. Expected "
                               "OAuth 2 access token.", None)
        try:
            message = orjson.loads(req.body)["message"]
            token = message["token"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return self._error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        data = message.get("data", {})
        if not isinstance(token, str) or not token or not isinstance(data, dict) \
                or not all(isinstance(v, str) for v in data.values()):
            return self._error(400, "Invalid value at 'message.data' (type.googleapis.com/"
                               "google.protobuf.Struct): values must be strings",
                               "INVALID_ARGUMENT")
        rule = self.state.scripted(token)
        if rule is not None:
            return self._error(rule.status, rule.reason, rule.reason, rule.retry_after, token)
        if token in self.state.gone:
            return self._error(404, "Requested entity was not found.", "UNREGISTERED",
                               token=token)
        self.state.accepted(token, message)
        return json_reply(200, {"name": f"projects/{self.project_id}/messages/"
                                        f"{self.ids.hex()}"})

    def _error(self, status: int, message: str, code: str | None,
               retry_after: str | None = None, token: str = "") -> Reply:
        self.state.refused(code or STATUS.get(status, str(status)), token, status)
        error: dict[str, Any] = {"code": status, "message": message,
                                 "status": STATUS.get(status, "UNKNOWN")}
        if code is not None and code not in STATUS.values():
            error["details"] = [{"@type": FCM_ERROR, "errorCode": code}]
        headers = {"retry-after": retry_after} if retry_after else None
        return json_reply(status, {"error": error}, headers)

    async def serve(self, host: str, port: int, cert_dir: Path) -> tuple[H2Server, int, Path]:
        return await serve_h2(self.handle, host, port, cert_dir)
