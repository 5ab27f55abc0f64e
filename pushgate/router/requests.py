"""Send requests: validation of the HTTP / websocket / gRPC send body (pure).

Native shape (``POST /v1/notifications``)::

    {"users": ["alice"], "body": {...}, "ttl": 3600, "id": "k1", "push": {...},
     "device": "phone-1", "ack": true, "ack_timeout_ms": 3000}
    {"filter": {"workspace": "w", "account": "alice", "device": null,
                "application": "app", "find_any": false, "exclude": [{...}]},
     "body": {...}}

Pushca-compatible shapes are translated by :func:`from_pushca`.

Hand-written, not ``pushgate.models.SendRequest.model_validate``: this is the hot path
of every send (HTTP, websocket ``send`` frame, gRPC ``Send``) and plain checks cost
half as much for a typical send (docs/design-notes.md §11). The models describe the
same bodies for ``/openapi.json``; tests/unit/test_requests.py holds both to the same
answers (accepted, or rejected naming the same field). Fixed bounds come from the
models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from pushgate.auth import check_id
from pushgate.errors import InvalidRequest, PayloadTooLarge
from pushgate.models import MAX_ACK_TIMEOUT_MS
from pushgate.router.bridge.payload import parse_push
from pushgate.router.routing import ClientRef, Filter

if TYPE_CHECKING:
    from pushgate.settings import Settings


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int
    max_users: int
    default_ttl_s: int
    max_ttl_s: int
    ack_timeout_ms: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_body_bytes, settings.max_users_per_send, settings.event_ttl_s,
                   settings.max_event_ttl_s, settings.ack_timeout_ms)


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A validated send. Exactly one of ``users`` / ``filter`` is set."""

    body: bytes  # encoded JSON
    users: tuple[str, ...] = ()
    filter: Filter | None = None
    ttl_s: int = 0
    id: str | None = None
    device: str | None = None
    push: dict[str, Any] | None = None
    ack: bool = False
    ack_timeout_ms: int = 0

    @property
    def stored(self) -> bool:
        return bool(self.users) and self.ttl_s > 0


def _opt_str(obj: dict[str, Any], key: str, field: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    return check_id(value, field)


def _client_ref(obj: Any, field: str) -> ClientRef:
    if not isinstance(obj, dict):
        raise InvalidRequest(f"'{field}' must be an object", field=field)
    unknown = set(obj) - {"workspace", "account", "device", "application"}
    if unknown:
        raise InvalidRequest(f"'{field}' has unknown field(s) {sorted(unknown)}", field=field)
    return ClientRef(
        workspace=_opt_str(obj, "workspace", f"{field}.workspace"),
        account=_opt_str(obj, "account", f"{field}.account"),
        device=_opt_str(obj, "device", f"{field}.device"),
        application=_opt_str(obj, "application", f"{field}.application"),
    )


def _filter(obj: Any) -> Filter:
    if not isinstance(obj, dict):
        raise InvalidRequest("'filter' must be an object", field="filter")
    rest = {k: v for k, v in obj.items() if k not in ("find_any", "exclude")}
    target = _client_ref(rest, "filter")
    find_any = obj.get("find_any", False)
    if not isinstance(find_any, bool):
        raise InvalidRequest("'filter.find_any' must be a boolean", field="filter.find_any")
    exclude_raw = obj.get("exclude")
    exclude_raw = [] if exclude_raw is None else exclude_raw
    if not isinstance(exclude_raw, list):
        raise InvalidRequest("'filter.exclude' must be a list", field="filter.exclude")
    exclude = tuple(_client_ref(x, "filter.exclude") for x in exclude_raw)
    return Filter(target, find_any, exclude)


#: how deeply a send's ``body`` may nest arrays and objects (orjson encodes no deeper)
MAX_BODY_DEPTH = 254


def encode_body(body: Any, max_bytes: int) -> bytes:
    try:
        raw = orjson.dumps(body)
    except TypeError as e:  # the input came from JSON: only its depth can fail here
        if "ecursion" in str(e):
            raise InvalidRequest(f"'body' is nested deeper than {MAX_BODY_DEPTH} levels",
                                 field="body") from None
        raise InvalidRequest(f"'body' is not JSON: {e}", field="body") from None  # pragma: no cover
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"'body' is {len(raw)} bytes; the limit is {max_bytes}", field="body")
    return raw


def _bad_user_entry(raw: list[Any]) -> InvalidRequest:
    """The error naming the first entry of ``users`` that is not a user id, by its index
    (``field`` stays ``users``): "users is required" did not say which of 10,000."""
    for i, u in enumerate(raw):
        if u is None or u == "":
            return InvalidRequest(f"'users[{i}]' is empty: every entry is a user id",
                                  field="users")
        entry = f"users[{i}]"
        try:
            check_id(u, entry)
        except InvalidRequest as e:  # "users[3] must be a string" -> "'users[3]' must ..."
            return InvalidRequest(f"'{entry}'{e.message.removeprefix(entry)}", field="users")
    return InvalidRequest("'users' must be a list of user ids", field="users")


ALLOWED = {"users", "filter", "body", "ttl", "id", "push", "device", "ack", "ack_timeout_ms"}


def parse_send(obj: Any, limits: Limits) -> SendRequest:
    """Validate a native send body. Raises :class:`InvalidRequest` naming the field."""
    if not isinstance(obj, dict):
        raise InvalidRequest("request body must be a JSON object", field="body")
    unknown = set(obj) - ALLOWED
    if unknown:
        raise InvalidRequest(f"unknown field(s) {sorted(unknown)}", field=sorted(unknown)[0])
    if "body" not in obj:
        raise InvalidRequest("'body' is required", field="body")
    body = encode_body(obj["body"], limits.max_body_bytes)
    has_users, has_filter = obj.get("users") is not None, obj.get("filter") is not None
    if has_users == has_filter:
        raise InvalidRequest("give exactly one of 'users' or 'filter'", field="users")
    users: tuple[str, ...] = ()
    flt = None
    if has_users:
        raw = obj["users"]
        if not isinstance(raw, list) or not raw:
            raise InvalidRequest("'users' must be a non-empty list of user ids", field="users")
        if len(raw) > limits.max_users:
            raise InvalidRequest(f"'users' has {len(raw)} entries; the limit is {limits.max_users}",
                                 field="users")
        try:
            users = tuple(dict.fromkeys(check_id(u, "users") for u in raw))
        except InvalidRequest:
            raise _bad_user_entry(raw) from None
    else:
        flt = _filter(obj["filter"])
    ttl = obj.get("ttl", limits.default_ttl_s if has_users else 0)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0:
        raise InvalidRequest("'ttl' must be an integer >= 0 (seconds)", field="ttl")
    if ttl > limits.max_ttl_s:
        raise InvalidRequest(f"'ttl' must be <= {limits.max_ttl_s}", field="ttl")
    if flt is not None:
        ttl = 0  # filter sends are transient
    event_id = obj.get("id")
    if event_id is not None:
        event_id = check_id(event_id, "id")
    push = obj.get("push")
    if push is not None:
        push = parse_push(push)
    device = _opt_str(obj, "device", "device")
    ack = obj.get("ack", False)
    if not isinstance(ack, bool):
        raise InvalidRequest("'ack' must be a boolean", field="ack")
    ack_timeout = obj.get("ack_timeout_ms")
    if ack_timeout is None:
        ack_timeout = limits.ack_timeout_ms
    elif isinstance(ack_timeout, bool) or not isinstance(ack_timeout, int) \
            or not 0 < ack_timeout <= MAX_ACK_TIMEOUT_MS:
        raise InvalidRequest(f"'ack_timeout_ms' must be an integer in 1..{MAX_ACK_TIMEOUT_MS}",
                             field="ack_timeout_ms")
    if ack and flt is not None:
        raise InvalidRequest("'ack' goes with a send to one of 'users', not a filter send",
                             field="ack")
    if ack and len(users) != 1:
        raise InvalidRequest("a send with 'ack' addresses exactly one user (and optionally "
                             "one 'device')", field="users")
    if push is not None and (flt is not None or ttl == 0):
        raise InvalidRequest("'push' goes with a stored send ('users' and ttl > 0)",
                             field="push")
    if device is not None and not users:
        raise InvalidRequest("'device' goes with 'users'; use filter.device in a filter send",
                             field="device")
    return SendRequest(body=body, users=users, filter=flt, ttl_s=ttl, id=event_id, device=device,
                       push=push, ack=ack, ack_timeout_ms=ack_timeout)


_PUSHCA_KEYS = {"workSpaceId": "workspace", "accountId": "account", "deviceId": "device",
                "applicationId": "application"}


def _pushca_client(obj: Any, field: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidRequest(f"'{field}' must be an object", field=field)
    unknown = set(obj) - set(_PUSHCA_KEYS) - {"findAny", "exclude"}
    if unknown:
        raise InvalidRequest(f"'{field}' has unknown field(s) {sorted(unknown)}", field=field)
    return {new: obj.get(old) for old, new in _PUSHCA_KEYS.items()}


def pushca_identity(obj: Any) -> dict[str, Any]:
    """``{"client": {workSpaceId, accountId, deviceId, applicationId}}`` → native fields."""
    if not isinstance(obj, dict) or "client" not in obj:
        raise InvalidRequest("'client' is required", field="client")
    return _pushca_client(obj["client"], "client")


def from_pushca(obj: Any, *, acknowledge: bool) -> dict[str, Any]:
    """Translate a Pushca ``send-notification[-with-acknowledge]`` body to the native shape.

    ``message`` becomes the body (a JSON string); ``filter`` keeps its dimensions,
    ``findAny`` and ``exclude``; ``client`` (acknowledge) addresses one user's device.
    """
    if not isinstance(obj, dict):
        raise InvalidRequest("request body must be a JSON object", field="body")
    if "message" not in obj:
        raise InvalidRequest("'message' is required", field="message")
    out: dict[str, Any] = {"body": obj["message"]}
    if obj.get("id") is not None:
        out["id"] = obj["id"]
    if acknowledge:
        client = pushca_identity(obj)
        if not client.get("account"):
            raise InvalidRequest("'client.accountId' is required", field="client.accountId")
        out["users"] = [client["account"]]
        if client.get("device"):
            out["device"] = client["device"]
        out["ack"] = True
        return out
    if "filter" not in obj:
        raise InvalidRequest("'filter' is required", field="filter")
    raw = obj["filter"]
    flt: dict[str, Any] = {k: v for k, v in _pushca_client(raw, "filter").items() if v is not None}
    find_any = raw.get("findAny")
    if find_any is not None and not isinstance(find_any, bool):
        raise InvalidRequest("'filter.findAny' must be a boolean", field="filter.findAny")
    flt["find_any"] = bool(find_any)
    excl = raw.get("exclude")
    excl = [] if excl is None else excl
    if not isinstance(excl, list):
        raise InvalidRequest("'filter.exclude' must be a list", field="filter.exclude")
    flt["exclude"] = [{k: v for k, v in _pushca_client(x, "filter.exclude").items() if v is not None}
                      for x in excl]
    out["filter"] = flt
    return out
