"""Client JWTs and server API keys.

Client tokens carry ``sub`` (user), ``ws`` (workspace, default ``default``), ``dev``
(device), ``app`` (application), a required ``exp`` and an optional ``scope``: the
keyless Pushca ``/open-connection`` mints tokens with ``scope: "pushca"``
(:data:`PUSHCA_SCOPE`), which open Pushca connections (``/{jwt}``) only. Only the algorithms in the
settings allow-list are accepted; ``none`` never is. Server-to-server calls carry an
API key as ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

from pushgate.errors import Forbidden, InvalidRequest, TokenExpired, Unauthorized
from pushgate.models import MAX_ID_LEN

PUSHCA_SCOPE = "pushca"


class _KeptHMAC(HMACAlgorithm):
    """PyJWT's HMAC algorithm, keeping what ``prepare_key`` made of a secret: PyJWT
    prepares the key on every decode (a PEM, SSH, DER and JSON probe of the secret,
    ~26 of a token's ~66 µs here), the same work for the same one or two secrets on
    every connect. A key PyJWT refuses raises as before and is not kept."""

    def __init__(self, hash_alg: Any) -> None:
        super().__init__(hash_alg)
        self._kept: dict[str | bytes, bytes] = {}

    def prepare_key(self, key: str | bytes) -> bytes:
        prepared = self._kept.get(key)
        if prepared is None:
            prepared = super().prepare_key(key)
            if len(self._kept) >= 16:  # secrets rotate rarely; never grows unbounded
                self._kept.clear()
            self._kept[key] = prepared
        return prepared


# PyJWT's public registry of the module-level jwt.encode / jwt.decode (which pushgate
# uses); the algorithms verify exactly as PyJWT's own (tests/unit/test_auth.py)
for _alg, _hash in (("HS256", HMACAlgorithm.SHA256), ("HS384", HMACAlgorithm.SHA384),
                    ("HS512", HMACAlgorithm.SHA512)):
    if not isinstance(jwt.get_algorithm_by_name(_alg), _KeptHMAC):
        jwt.unregister_algorithm(_alg)
        jwt.register_algorithm(_alg, _KeptHMAC(_hash))

_CONTROL_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f]").search  # C0, DEL, C1 (~4x a per-character scan)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a client is: the four filter dimensions."""

    user: str
    workspace: str = "default"
    device: str = ""
    application: str = ""


@dataclass(frozen=True, slots=True)
class ClientToken:
    identity: Identity
    expires_at: float
    scope: str | None = None

    def require_native(self) -> None:
        """Raise :class:`Forbidden` for a token limited to Pushca connections."""
        if self.scope == PUSHCA_SCOPE:
            raise Forbidden("this token comes from the keyless /open-connection: it opens "
                            "Pushca connections (ws://host/{jwt}) only", field="token")


def check_id(value: object, field: str, *, required: bool = True) -> str:
    """Validate a user / workspace / device / application id; raise naming ``field``."""
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{field} is required", field=field)
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string", field=field)
    if len(value) > MAX_ID_LEN:
        raise InvalidRequest(f"{field} is longer than {MAX_ID_LEN} characters", field=field)
    if _CONTROL_CHAR(value):
        raise InvalidRequest(f"{field} contains control characters", field=field)
    if value.isspace():  # "  " is a typo, never an id (`listen --user "  "` connected)
        raise InvalidRequest(f"{field} is blank: an id needs a character other than spaces",
                             field=field)
    return value


def _claim_id(claims: dict[str, Any], name: str, required: bool) -> str:
    """A token's id claim, checked as every id is, and as Unicode text: the JSON of a
    token may hold a lone surrogate ("\\ud800", which orjson refuses in request bodies);
    such a session failed later, at every frame it sent, its user's session list (500)
    or, in a cluster, its registration (no hello, no close code)."""
    value = check_id(claims.get(name), name, required=required)
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidRequest(f"{name} is not valid Unicode (it holds a lone surrogate)",
                             field=name) from None
    return value


def bearer(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer <credential>`` header value (stripped;
    may be empty); None when the header is absent or of another scheme."""
    scheme, _, credential = (authorization or "").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else None


def _pem(value: str) -> str:
    if "-----BEGIN" in value:
        return value
    return Path(value).read_text()


def check_keys(algorithms: list[str], public_key: str | None,
               private_key: str | None) -> None:
    """Raise ``ValueError`` naming the setting when a configured key cannot serve an
    accepted algorithm (an EC key for RS256, a P-256 key for ES384, a PEM that does not
    parse) or the private key does not sign what the public key verifies: found at start
    instead of refusing every client's token with "token is invalid"."""
    asym = [a for a in algorithms if not a.startswith("HS")]
    if not asym:
        return
    keys = {"jwt_public_key": _pem(public_key) if public_key else None,
            "jwt_private_key": _pem(private_key) if private_key else None}
    for alg in asym:
        for name, key in keys.items():
            if key is None:
                continue
            try:
                jwt.get_algorithm_by_name(alg).prepare_key(key)
            except (jwt.PyJWTError, ValueError, TypeError) as e:
                got = re.search(r"got: (\w+)", str(e))
                why = f"it is an {got.group(1)}" if got else str(e).rstrip(".")
                raise ValueError(f"{name} cannot be used with {alg}: {why}") from None
    if keys["jwt_private_key"] and keys["jwt_public_key"]:
        alg = asym[0]
        probe = jwt.encode({"sub": "key-check"}, keys["jwt_private_key"], algorithm=alg)
        try:
            jwt.decode(probe, keys["jwt_public_key"], algorithms=[alg])
        except jwt.PyJWTError:
            raise ValueError("jwt_private_key does not match jwt_public_key: tokens it "
                             f"signs ({alg}) would not verify") from None


# Raised by PyJWT only once the header parsed and its alg was accepted: with one accepted
# algorithm the fast path words them itself (no second decode for a bad signature).
_CHECKED_AFTER_ALG = (
    jwt.ExpiredSignatureError,
    jwt.InvalidSignatureError,
    jwt.MissingRequiredClaimError,
    jwt.InvalidAudienceError,
    jwt.InvalidIssuerError,
)


def _refusal(e: jwt.PyJWTError, token: str) -> Unauthorized:
    """The error a client sees for a token PyJWT refused."""
    if isinstance(e, jwt.ExpiredSignatureError):
        # PyJWT reads a boolean ``exp`` as 0 or 1 (1970): not an expiry but a bad claim,
        # which a fresh token of the same kind would repeat (verified: PyJWT checks the
        # signature before the claims)
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
        if isinstance(exp, bool):
            return Unauthorized("token claim 'exp' must be a number (NumericDate)",
                                field="token")
        return TokenExpired("token has expired", field="token")
    if isinstance(e, jwt.InvalidSignatureError):
        return Unauthorized("token signature is invalid", field="token")
    if isinstance(e, jwt.MissingRequiredClaimError):
        return Unauthorized(f"token lacks the {e.claim!r} claim", field="token")
    if isinstance(e, jwt.InvalidAudienceError):
        return Unauthorized("token audience ('aud') is not accepted", field="token")
    if isinstance(e, jwt.InvalidIssuerError):
        return Unauthorized("token issuer ('iss') is not accepted", field="token")
    return Unauthorized(f"token is invalid: {e}", field="token")


class TokenCodec:
    """Verifies (and, when it holds a signing key, mints) client tokens."""

    def __init__(
        self,
        *,
        algorithms: list[str],
        secret: str | None = None,
        public_key: str | None = None,
        private_key: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway_s: float = 5.0,
    ) -> None:
        if "none" in (a.lower() for a in algorithms):
            raise ValueError("the 'none' algorithm is never allowed")
        self.algorithms = list(algorithms)
        self._secret = secret
        self._public = _pem(public_key) if public_key else None
        self._private = _pem(private_key) if private_key else None
        self.audience = audience
        self.issuer = issuer
        self.leeway_s = leeway_s
        self._decode_args: dict[str, Any] = {
            "audience": audience,
            "issuer": issuer,
            "leeway": leeway_s,
            # iat is informational (RFC 7519): a token minted by a host whose clock runs
            # ahead is not refused for it; nbf is checked (with the leeway)
            "options": {"require": ["exp", "sub"], "verify_aud": audience is not None,
                        "verify_iat": False},
        }
        self._single_key: Any = None
        if len(self.algorithms) == 1:
            try:
                self._single_key = self._verify_key(self.algorithms[0])
            except Unauthorized:
                pass  # no key for it: every token is refused by the full path

    def _verify_key(self, alg: str) -> Any:
        if alg.startswith("HS"):
            if not self._secret:
                raise Unauthorized(f"token algorithm {alg} is not accepted", field="token")
            return self._secret
        if not self._public:
            raise Unauthorized(f"token algorithm {alg} is not accepted", field="token")
        return self._public

    def verify(self, token: str) -> ClientToken:
        """Return the token's identity or raise :class:`Unauthorized` / :class:`TokenExpired`."""
        if not token:
            raise Unauthorized("token is missing", field="token")
        if self._single_key is not None:
            # One accepted algorithm: one decode, no separate header parse (PyJWT decodes
            # every segment twice otherwise: a third of a connect's token cost). Any failure
            # takes the full path below, which words the error.
            try:
                claims = jwt.decode(
                    token, self._single_key, algorithms=self.algorithms, **self._decode_args
                )
            except _CHECKED_AFTER_ALG as e:  # the header and its alg were fine
                raise _refusal(e, token) from None
            except jwt.PyJWTError:
                pass
            else:
                return self._token(claims)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise Unauthorized(f"token is malformed: {e}", field="token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise Unauthorized(f"token algorithm {alg!r} is not accepted", field="token")
        try:
            claims = jwt.decode(token, self._verify_key(alg), algorithms=[alg], **self._decode_args)
        except jwt.PyJWTError as e:
            raise _refusal(e, token) from None
        return self._token(claims)

    def _token(self, claims: dict[str, Any]) -> ClientToken:
        try:
            identity = Identity(
                user=_claim_id(claims, "sub", True),
                workspace=_claim_id(claims, "ws", False) or "default",
                device=_claim_id(claims, "dev", False),
                application=_claim_id(claims, "app", False),
            )
        except InvalidRequest as e:
            raise Unauthorized(f"token claim {e.message}", field="token") from None
        scope = claims.get("scope")
        exp = claims["exp"]
        if isinstance(exp, str):  # PyJWT takes "1700000000" (int() of it); RFC 7519 does not
            raise Unauthorized("token claim 'exp' must be a number (NumericDate)",
                               field="token")
        try:  # (PyJWT took it as an int; a float cannot hold every int)
            exp = float(exp)
        except (OverflowError, TypeError, ValueError):
            raise Unauthorized("token is invalid: 'exp' is not a usable NumericDate",
                               field="token") from None
        return ClientToken(identity, exp, scope if isinstance(scope, str) else None)

    @property
    def can_mint(self) -> bool:
        alg = self.algorithms[0]
        return bool(self._secret if alg.startswith("HS") else self._private)

    def mint(self, identity: Identity, ttl_s: float,
             scope: str | None = None) -> tuple[str, ClientToken]:
        """Sign a token with the first allowed algorithm; return it with its parsed form.
        Raises RuntimeError without a signing key."""
        alg = self.algorithms[0]
        key = self._secret if alg.startswith("HS") else self._private
        if not key:
            raise RuntimeError(f"no signing key configured for {alg}")
        exp = int(time.time() + ttl_s)
        claims: dict[str, Any] = {"sub": identity.user, "ws": identity.workspace, "exp": exp,
                                  "iat": int(time.time())}
        if identity.device:
            claims["dev"] = identity.device
        if identity.application:
            claims["app"] = identity.application
        if self.audience:
            claims["aud"] = self.audience
        if self.issuer:
            claims["iss"] = self.issuer
        if scope:
            claims["scope"] = scope
        return jwt.encode(claims, key, algorithm=alg), ClientToken(identity, float(exp), scope)


class ApiKeys:
    """Constant-time check of ``Authorization: Bearer <key>`` against the configured keys."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys if k]

    def check(self, authorization: str | None) -> None:
        if not authorization:
            raise Unauthorized("API key missing: send 'Authorization: Bearer <key>'",
                               field="Authorization")
        key = bearer(authorization)
        if not key:
            raise Unauthorized("Authorization must be 'Bearer <key>'", field="Authorization")
        given = key.encode()
        if not any(hmac.compare_digest(given, k) for k in self._keys):
            raise Unauthorized("API key is not valid", field="Authorization")


def new_secret() -> str:
    return secrets.token_urlsafe(32)
