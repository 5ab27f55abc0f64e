"""The send's ``push`` block: validation and mapping to APNs / FCM requests (pure).

``push`` fields (all optional, at least one of title, body, data, content_available)::

    {"title": "Hi", "subtitle": "...", "body": "You have mail", "data": {"k": "v"},
     "sound": "default", "badge": 3, "collapse_id": "inbox", "priority": "high",
     "ttl": 3600, "app": "com.example", "category": "MSG", "thread_id": "t1",
     "content_available": false, "mutable_content": false,
     "apns": {"headers": {...}, "payload": {...}},    # merged over the APNs request
     "android": {...}, "webpush": {...}}             # FCM message blocks, merged

Every push also carries ``pushgate: {"seq": n}`` (APNs payload) / ``pushgate_seq``
(FCM data) so the app can fetch the event from its inbox.
"""

from __future__ import annotations

from typing import Any

import orjson

from pushgate.errors import InvalidRequest
from pushgate.models import (
    MAX_BADGE,
    MAX_COLLAPSE_ID_BYTES,
    MAX_ID_LEN,
    MAX_PUSH_STR,
    MAX_PUSH_TTL_S,
    apns_header_error,
)
from pushgate.store.base import CONTROL_CHARS  # as in every id

STR_FIELDS = ("title", "subtitle", "body", "sound", "collapse_id", "app", "category", "thread_id")
BOOL_FIELDS = ("content_available", "mutable_content")
OBJ_FIELDS = ("data", "apns", "android", "webpush")
ALLOWED = {*STR_FIELDS, *BOOL_FIELDS, *OBJ_FIELDS, "badge", "priority", "ttl"}
_APP_RULE = (f"'push.app' must be an id: 1..{MAX_ID_LEN} characters, no control characters, "
             "not all spaces")


def _apns_headers(headers: dict[str, Any]) -> dict[str, str]:
    """``push.apns.headers`` as sent: lowercase names, string values
    (:func:`pushgate.models.apns_header_error` says what is refused)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        problem = apns_header_error(name, value, out)
        if problem:
            raise InvalidRequest(problem, field=f"push.apns.headers.{name}" if name
                                 else "push.apns.headers")
        out[name.lower()] = str(value)
    return out


def parse_push(obj: Any) -> dict[str, Any]:
    """Validate a ``push`` block; returns it (normalized). :class:`InvalidRequest` names
    the field as ``push.<name>``. Hand-written like ``parse_send`` (it runs inside it);
    ``pushgate.models.Push`` describes the same block and tests hold both to the same
    answers."""
    if not isinstance(obj, dict):
        raise InvalidRequest("'push' must be an object", field="push")
    unknown = set(obj) - ALLOWED
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidRequest(f"'push' has unknown field(s) {sorted(unknown)}", field=f"push.{name}")
    out: dict[str, Any] = {}
    for name in STR_FIELDS:
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value or len(value) > MAX_PUSH_STR:
            raise InvalidRequest(_APP_RULE if name == "app" else f"'push.{name}' must be a "
                                 f"string of 1..{MAX_PUSH_STR} characters", field=f"push.{name}")
        out[name] = value
    app = out.get("app")
    if app is not None and (len(app) > MAX_ID_LEN or CONTROL_CHARS.search(app)
                            or app.isspace()):
        # an application id, matched against the devices' (which are ids)
        raise InvalidRequest(_APP_RULE, field="push.app")
    if "collapse_id" in out and len(out["collapse_id"].encode()) > MAX_COLLAPSE_ID_BYTES:
        raise InvalidRequest(f"'push.collapse_id' must be at most {MAX_COLLAPSE_ID_BYTES} bytes",
                             field="push.collapse_id")
    for name in BOOL_FIELDS:
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise InvalidRequest(f"'push.{name}' must be a boolean", field=f"push.{name}")
        out[name] = value
    for name in OBJ_FIELDS:
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise InvalidRequest(f"'push.{name}' must be an object", field=f"push.{name}")
        out[name] = value
    if "aps" in out.get("data", {}):
        raise InvalidRequest("'push.data' may not use the key 'aps' (reserved by APNs)",
                             field="push.data")
    apns = out.get("apns", {})
    for key in apns:
        if key not in ("headers", "payload") or not isinstance(apns[key], dict):
            raise InvalidRequest("'push.apns' takes the objects 'headers' and 'payload'",
                                 field=f"push.apns.{key}")
    if "headers" in apns:
        apns["headers"] = _apns_headers(apns["headers"])
    badge = obj.get("badge")
    if badge is not None:
        if isinstance(badge, bool) or not isinstance(badge, int) or not 0 <= badge <= MAX_BADGE:
            raise InvalidRequest(f"'push.badge' must be an integer in 0..{MAX_BADGE}",
                                 field="push.badge")
        out["badge"] = badge
    priority = obj.get("priority")
    if priority is not None:
        if priority not in ("high", "normal"):
            raise InvalidRequest("'push.priority' must be 'high' or 'normal'",
                                 field="push.priority")
        out["priority"] = priority
    ttl = obj.get("ttl")
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_PUSH_TTL_S:
            raise InvalidRequest(f"'push.ttl' must be an integer in 0..{MAX_PUSH_TTL_S} (seconds)",
                                 field="push.ttl")
        out["ttl"] = ttl
    if not (out.get("title") or out.get("body") or out.get("data")
            or out.get("content_available")):
        raise InvalidRequest("'push' needs a title, a body, data or content_available",
                             field="push.title")
    if any(name in out for name in OBJ_FIELDS):  # (only they nest)
        _check_depth(out)
    return out


#: how deeply ``push.data``, ``push.apns``, … may nest arrays and objects: the block is
#: encoded as one JSON value (the outbox, the HubLink) and orjson encodes 254 levels
MAX_PUSH_FIELD_DEPTH = 253


def _check_depth(push: dict[str, Any]) -> None:
    """A push nested deeper than orjson encodes failed where it was encoded: a 500 in a
    cluster's hub, a push lost in the embedded outbox."""
    try:
        orjson.dumps(push)
    except TypeError:  # (the input came from JSON: only its depth can fail here)
        for name in OBJ_FIELDS:
            try:
                orjson.dumps({name: push.get(name)})
            except TypeError:
                raise InvalidRequest(f"'push.{name}' is nested deeper than "
                                     f"{MAX_PUSH_FIELD_DEPTH} levels",
                                     field=f"push.{name}") from None
        raise  # pragma: no cover (only the objects nest)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def is_alert(push: dict[str, Any]) -> bool:
    """An APNs ``alert`` push: it shows something to the user (an alert, a badge or a
    sound, as Apple defines the type); otherwise a ``background`` one."""
    return bool(push.get("title") or push.get("body") or push.get("subtitle")
                or "badge" in push or push.get("sound"))


def collapse_id(push: dict[str, Any], seq: int) -> str:
    """The collapse id: the sender's, else one per event (a push sent twice after a
    crash then replaces itself on the device)."""
    return str(push.get("collapse_id") or f"pushgate-{seq}")


def apns_request(push: dict[str, Any], seq: int, topic: str, now: float) -> tuple[dict[str, str], dict[str, Any]]:
    """Headers and JSON payload of ``POST /3/device/<token>``."""
    aps: dict[str, Any] = {}
    alert = {k: push[k] for k in ("title", "subtitle", "body") if k in push}
    if alert:
        aps["alert"] = alert
    for src, dst in (("sound", "sound"), ("badge", "badge"), ("category", "category"),
                     ("thread_id", "thread-id")):
        if src in push:
            aps[dst] = push[src]
    alert_type = is_alert(push)
    # a background push is one with content-available (Apple's rule): a data-only push
    # went out without it, which the device does not hand to the app
    if push.get("content_available") or not alert_type:
        aps["content-available"] = 1
    if push.get("mutable_content"):
        aps["mutable-content"] = 1
    payload: dict[str, Any] = {"aps": aps, **push.get("data", {}), "pushgate": {"seq": seq}}
    high = push.get("priority", "high") == "high" and alert_type
    headers = {
        "apns-topic": topic,
        "apns-push-type": "alert" if alert_type else "background",
        "apns-priority": "10" if high else "5",
        "apns-collapse-id": collapse_id(push, seq),
    }
    if "ttl" in push:
        headers["apns-expiration"] = "0" if push["ttl"] == 0 else str(int(now + push["ttl"]))
    over = push.get("apns", {})
    headers.update({str(k).lower(): str(v) for k, v in over.get("headers", {}).items()})
    return headers, _merge(payload, over.get("payload", {}))


def fcm_message(push: dict[str, Any], seq: int, token: str) -> dict[str, Any]:
    """The ``{"message": ...}`` body of FCM HTTP v1 ``messages:send``."""
    data = {str(k): v if isinstance(v, str) else _json(v) for k, v in push.get("data", {}).items()}
    data["pushgate_seq"] = str(seq)
    message: dict[str, Any] = {"token": token, "data": data}
    notification = {k: push[k] for k in ("title", "body") if k in push}
    if notification:
        message["notification"] = notification
    android: dict[str, Any] = {
        "priority": "HIGH" if push.get("priority", "high") == "high" else "NORMAL",
        "collapse_key": collapse_id(push, seq),
    }
    if "ttl" in push:
        android["ttl"] = f"{push['ttl']}s"
    android_notification = {k: push[k] for k in ("sound",) if k in push}
    if "badge" in push:
        android_notification["notification_count"] = push["badge"]
    if android_notification and notification:
        android["notification"] = android_notification
    message["android"] = _merge(android, push.get("android", {}))
    if "webpush" in push:
        message["webpush"] = push["webpush"]
    return {"message": message}


def _json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
