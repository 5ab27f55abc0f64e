"""The client protocol codec (pure: no I/O). See docs/protocol.md.

Client frames are JSON text objects with a ``type``. :func:`parse_client_frame`
turns raw text into a typed frame or raises :class:`~pushgate.errors.InvalidRequest`
naming the field; server frames are built by the ``encode_*`` functions, which
return ready-to-send ``str`` — an event frame is encoded once and the same string is
written to every session that receives it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from pushgate.errors import InvalidRequest, PushgateError
from pushgate.models import MAX_ID_LEN, MAX_READ_ITEMS, MAX_SEQ

PROTOCOL_VERSION = 1
MAX_RID_LEN = 64
#: An integer ``rid`` is at most this in absolute value: the largest integer a JSON
#: number holds exactly in JavaScript (``Number.MAX_SAFE_INTEGER``), so every client can
#: match the echoed rid.
MAX_RID_INT = 2**53 - 1

Rid = str | int | None


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int


@dataclass(frozen=True, slots=True)
class Fetch:
    after: int
    limit: int
    rid: Rid


@dataclass(frozen=True, slots=True)
class Read:
    seqs: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...]
    rid: Rid


@dataclass(frozen=True, slots=True)
class ReadStateRequest:
    rid: Rid


@dataclass(frozen=True, slots=True)
class Send:
    """A client-to-client send; ``request`` has the HTTP send body's shape."""

    request: dict[str, Any]
    rid: Rid


@dataclass(frozen=True, slots=True)
class Ping:
    rid: Rid


@dataclass(frozen=True, slots=True)
class RegisterDevice:
    """A push token of this client's app install (``remove``: unregister it)."""

    platform: str
    token: str
    app: str | None
    remove: bool
    rid: Rid


ClientFrame = Ack | Fetch | Read | ReadStateRequest | Send | Ping | RegisterDevice


class BadJson(InvalidRequest):
    """The frame is not a JSON object: the session is closed (4104)."""


class UnknownType(InvalidRequest):
    """A well-formed frame of a type this server does not know: answered with ``error``."""


def _int(obj: dict[str, Any], key: str, *, default: int | None = None, minimum: int = 0,
         maximum: int = MAX_SEQ) -> int:
    """An integer field in ``minimum..maximum`` (bools and floats such as ``1.0`` or the
    ``1e+30`` that a too large JSON integer decodes to are not integers); ``null`` or
    absent: ``default`` (required when there is none)."""
    value = obj.get(key)
    if value is None:
        value = default
    if value is None:
        raise InvalidRequest(f"'{key}' is required", field=key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{key}' must be an integer", field=key)
    if value < minimum:
        raise InvalidRequest(f"'{key}' must be >= {minimum}", field=key)
    if value > maximum:
        raise InvalidRequest(f"'{key}' must be <= {maximum}", field=key)
    return value


def _rid(obj: dict[str, Any]) -> Rid:
    return parse_rid(obj.get("rid"))


def parse_rid(rid: Any) -> Rid:
    """A frame's ``rid``: None, a string of at most MAX_RID_LEN characters or an integer
    within ±MAX_RID_INT; :class:`InvalidRequest` naming ``rid`` otherwise."""
    if rid is None:
        return None
    if isinstance(rid, bool) or not isinstance(rid, str | int):
        raise InvalidRequest("'rid' must be a string or an integer", field="rid")
    if isinstance(rid, str) and len(rid) > MAX_RID_LEN:
        raise InvalidRequest(f"'rid' is longer than {MAX_RID_LEN} characters", field="rid")
    if isinstance(rid, int) and not -MAX_RID_INT <= rid <= MAX_RID_INT:
        raise InvalidRequest(f"'rid' must be an integer between {-MAX_RID_INT} and "
                             f"{MAX_RID_INT}", field="rid")
    return rid


def _seq(x: object) -> bool:
    """Whether ``x`` is a seq a request may name: an integer in 1..MAX_SEQ."""
    return isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= MAX_SEQ


def parse_read(obj: dict[str, Any]) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """Validate ``seqs`` and ``ranges`` of a read request (websocket or HTTP)."""
    raw_seqs = obj.get("seqs", [])
    raw_ranges = obj.get("ranges", [])
    if not isinstance(raw_seqs, list):
        raise InvalidRequest("'seqs' must be a list of integers", field="seqs")
    if not isinstance(raw_ranges, list):
        raise InvalidRequest("'ranges' must be a list of [first, last] pairs", field="ranges")
    if not raw_seqs and not raw_ranges:
        raise InvalidRequest("give 'seqs' and/or 'ranges'", field="seqs")
    if len(raw_seqs) + len(raw_ranges) > MAX_READ_ITEMS:
        raise InvalidRequest(f"at most {MAX_READ_ITEMS} seqs and ranges per request", field="seqs")
    seqs: list[int] = []
    for s in raw_seqs:
        if not _seq(s):
            if not isinstance(s, int) or isinstance(s, bool):  # 1.0, true, "1": no integers
                raise InvalidRequest("'seqs' must hold integers", field="seqs")
            if s > MAX_SEQ:
                raise InvalidRequest(f"'seqs' must hold integers <= {MAX_SEQ}", field="seqs")
            raise InvalidRequest("'seqs' must hold integers >= 1", field="seqs")
        seqs.append(s)
    ranges: list[tuple[int, int]] = []
    for r in raw_ranges:
        if not isinstance(r, list) or len(r) != 2 or not all(_seq(x) for x in r):
            if isinstance(r, list) and len(r) == 2 and all(
                    isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in r):
                raise InvalidRequest(f"each of 'ranges' must be [first, last] with integers "
                                     f"<= {MAX_SEQ}", field="ranges")
            raise InvalidRequest("each of 'ranges' must be [first, last] with integers >= 1",
                                 field="ranges")
        if r[0] > r[1]:
            raise InvalidRequest(f"range [{r[0]}, {r[1]}] has first > last", field="ranges")
        ranges.append((r[0], r[1]))
    return tuple(seqs), tuple(ranges)


def parse_after(raw: str | None) -> int | None:
    """The connect query's ``after`` (``GET /v1/ws?after=``): ``None`` when absent or
    empty, else ASCII digits naming a seq in 0..MAX_SEQ. :class:`InvalidRequest` naming
    ``after`` (the hub closes the socket with 4104)."""
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidRequest("'after' must be an integer >= 0", field="after")
    digits = raw.lstrip("0") or "0"
    if len(digits) > len(str(MAX_SEQ)) or int(digits) > MAX_SEQ:  # (int() refuses 4300+ digits)
        raise InvalidRequest(f"'after' must be <= {MAX_SEQ}", field="after")
    return int(digits)


def parse_client_frame(text: str | bytes, *, fetch_max_limit: int) -> ClientFrame:
    """Decode one client frame. Raises :class:`BadJson`, :class:`UnknownType` or
    :class:`InvalidRequest` (bad field; the message names it)."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise BadJson(f"frame is not valid JSON: {e}", code="bad_json") from None
    if not isinstance(obj, dict):
        raise BadJson("frame must be a JSON object", code="bad_json")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise BadJson("frame has no string 'type' field", field="type", code="bad_json")
    rid = _rid(obj)
    if kind == "ack":
        return Ack(_int(obj, "seq", minimum=1))
    if kind == "fetch":
        limit = _int(obj, "limit", default=min(100, fetch_max_limit), minimum=1,
                     maximum=fetch_max_limit)
        return Fetch(_int(obj, "after", default=0), limit, rid)
    if kind == "read":  # (a null list is not given here; HTTP's body refuses it)
        seqs, ranges = parse_read({k: obj[k] for k in ("seqs", "ranges")
                                   if obj.get(k) is not None})
        return Read(seqs, ranges, rid)
    if kind == "read_state":
        return ReadStateRequest(rid)
    if kind == "send":
        return Send({k: v for k, v in obj.items() if k not in ("type", "rid")}, rid)
    if kind == "ping":
        return Ping(rid)
    if kind in ("register_device", "unregister_device"):
        platform, token, app = parse_device(obj)
        return RegisterDevice(platform, token, app, kind == "unregister_device", rid)
    raise UnknownType(f"unknown frame type {kind!r}", field="type", code="unknown_type")


def parse_device(obj: dict[str, Any]) -> tuple[str, str, str | None]:
    """``platform``, ``token`` and optional ``app`` of a device (websocket or HTTP)."""
    platform = obj.get("platform")
    if platform not in ("apns", "fcm"):
        raise InvalidRequest("'platform' must be 'apns' or 'fcm'", field="platform")
    token = obj.get("token")
    if not isinstance(token, str) or not token:
        raise InvalidRequest("'token' must be a non-empty string", field="token")
    app = obj.get("app")
    if app is not None and (not isinstance(app, str) or not app):
        raise InvalidRequest("'app' must be a non-empty string", field="app")
    return str(platform), token, app


def _dumps(obj: dict[str, Any]) -> str:
    return orjson.dumps(obj).decode()


#: A client's send ``id`` is stored under a key of its sender's (:func:`client_key`): it
#: starts with this control character, which no id a business server sends may contain,
#: and is shown without its first :data:`_CLIENT_KEY_LEN` characters.
CLIENT_KEY_MARK = "\x1f"
_CLIENT_KEY_LEN = 18  # the mark, 16 hex digits of the sender, the mark again
#: The longest ``id`` a client's send may carry (the key must fit the store's 255).
MAX_CLIENT_ID_LEN = MAX_ID_LEN - _CLIENT_KEY_LEN


def client_key(sender: str, event_id: str) -> str:
    """The idempotency key of a client's send ``id`` (docs/protocol.md, send): scoped to
    the sending user, so that no client can take an id the business server (or another
    client) uses for the same recipient; recipients see the id as the client gave it."""
    digest = hashlib.blake2b(sender.encode(), digest_size=8, person=b"pushgate-client").hexdigest()
    return f"{CLIENT_KEY_MARK}{digest}{CLIENT_KEY_MARK}{event_id}"


def is_client_key(key: str) -> bool:
    """Whether ``key`` is a client's send id as stored (:func:`client_key`)."""
    return key[:1] == CLIENT_KEY_MARK


def public_id(key: str | None) -> str | None:
    """The ``id`` an event shows: a client's send id without its sender scope."""
    if key is not None and is_client_key(key):
        return key[_CLIENT_KEY_LEN:]
    return key


def encode_event(seq: int | None, event_id: str | None, body: bytes, created_at: float) -> str:
    """An ``event`` frame; ``body`` is raw JSON embedded as is (not re-parsed)."""
    return _dumps({"type": "event", "seq": seq, "id": public_id(event_id),
                   "body": orjson.Fragment(body),
                   "created_at": created_at})


def event_frame(seq: int | None, event_id: str | None, body: bytes, created_at: float,
                inline_max: int) -> str:
    """The frame that announces a new event: the ``event`` itself, or only ``head``
    when a stored event's body is over ``inline_max`` bytes ("push less, fetch more";
    transient events, ``seq`` None, are always inline)."""
    if seq is not None and len(body) > inline_max:
        return encode_head(seq)
    return encode_event(seq, event_id, body, created_at)


def event_dict(seq: int, event_id: str | None, body: bytes, created_at: float) -> dict[str, Any]:
    """An event as it appears in fetch replies and the HTTP API."""
    return {"seq": seq, "id": public_id(event_id), "body": orjson.Fragment(body),
            "created_at": created_at}


def encode_head(head: int) -> str:
    return _dumps({"type": "head", "head": head})


def encode_hello(session: str, user: str, head: int, unread: int, limits: dict[str, Any]) -> str:
    return _dumps({"type": "hello", "v": PROTOCOL_VERSION, "session": session, "user": user,
                   "head": head, "unread": unread, "limits": limits})


def encode_reply(rid: Rid, payload: dict[str, Any]) -> str:
    return _dumps({"type": "reply", "rid": rid, **payload})


def encode_error(err: PushgateError, rid: Rid = None) -> str:
    """The ``error`` frame: the HTTP error body flattened, its top-level extras too (an
    ``ack_timeout`` carries the send's ``results``, ``sessions`` and ``report``: the
    sender learns the seq that stays stored)."""
    return _dumps({"type": "error", "rid": rid, **err.to_dict(),
                   "message": err.client_message, **err.extra})


def encode_pong(rid: Rid) -> str:
    return _dumps({"type": "pong", "rid": rid})


def encode_kicked(reason: str, by: str | None) -> str:
    return _dumps({"type": "kicked", "reason": reason, "by": by})


def ranges_payload(ranges: Sequence[tuple[int, int]]) -> list[list[int]]:
    return [[a, b] for a, b in ranges]
