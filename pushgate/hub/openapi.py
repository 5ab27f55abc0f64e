"""OpenAPI 3.1 document of the HTTP API, served at /openapi.json (see docs/http-api.md).

Request body schemas are generated from the pydantic models of :mod:`pushgate.models`
(the same models that validate open-connection, devices and read marks, and that the
hand-written send validators are tested against), so the document cannot drift from
the code: tests/unit/test_openapi.py compares the served document with the models.
The paths, parameters, examples and prose are in :mod:`pushgate.hub._openapi_paths`;
response schemas are written out here. Limits that come from settings are given with
their defaults in the descriptions; fixed limits of the code are schema keywords.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pushgate import models
from pushgate.hub._openapi_paths import PATHS, json_content, ref

REF_TEMPLATE = "#/components/schemas/{model}"


def request_schemas() -> dict[str, Any]:
    """``components.schemas`` of every request model and the models they use."""
    out: dict[str, Any] = {}
    for model in models.REQUEST_MODELS:
        schema = model.model_json_schema(ref_template=REF_TEMPLATE,
                                         schema_generator=models.SchemaGenerator)
        for name, sub in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            if out.setdefault(name, sub) != sub:
                raise RuntimeError(f"two request schemas are named {name}")
    return out


def _error(code: str, message: str, field: str | None = None,
           retryable: bool = False) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "retryable": retryable}
    if field is not None:
        error["field"] = field
    return {"error": error}


_SEQ = {"type": "integer", "minimum": 1, "maximum": models.MAX_SEQ}
_COUNT = {"type": "integer", "minimum": 0}
_UNIX = {"type": "number", "description": "Unix seconds."}
_STR = {"type": "string"}


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


RESPONSE_SCHEMAS: dict[str, Any] = {
    "Error": _object(["error"], error=_object(
        ["code", "message", "retryable"],
        code={"type": "string", "description": (
            "Stable machine-readable code: invalid_request, payload_too_large, unauthorized, "
            "not_found, unknown_user, unknown_report, unknown_report_user, method_not_allowed, ack_timeout, overloaded, "
            "shutting_down, internal.")},
        message={"type": "string", "description": "For humans."},
        field={"type": "string", "description": "The offending input, when there is one "
                                                "(dotted for nested fields)."},
        retryable={"type": "boolean", "description": "Whether the same request may succeed "
                                                     "later."})),
    "AckTimeoutError": {"allOf": [ref("Error"), ref("SendResult")]},
    "OpenConnectionResponse": _object(
        ["url", "token", "expires_at"],
        url={"type": "string", "description": "`<base>/v1/ws?token=<token>`."},
        token={"type": "string", "description": "The client JWT."},
        expires_at=_UNIX),
    "UserResult": _object(
        ["user", "seq", "sessions"],
        user=_STR,
        seq={"type": ["integer", "null"], "description": "The stored event's seq; null when "
                                                         "transient."},
        sessions={**_COUNT, "description": "Live sessions the frame was queued to."},
        duplicate={"type": "boolean", "const": True,
                   "description": "Present when `id` was already stored."},
        acked_by={"type": "string", "description": "Session id that acked (ack sends)."},
        push={"type": "string", "enum": ["queued", "not_queued"], "description": (
            "With a `push` block: whether an offline push was queued for the user (absent: "
            "the policy pushes no one who was online, or the bridge is off).")}),
    "SendResult": _object(
        ["results", "sessions"],
        results={"type": "array", "items": ref("UserResult"), "description": (
            "One per user; for a filter send one entry when `filter.account` is set, else "
            "empty.")},
        sessions={**_COUNT, "description": "Total live sessions reached."},
        report={"type": "string", "description": (
            "The send's delivery report id (the send's `id` when given, else a generated "
            "one): `GET /v1/notifications/{report}`.")}),
    "Report": _object(
        ["report", "created_at", "updated_at", "expires_at", "addressed", "stored",
         "duplicates", "delivered", "acked", "pushed", "push_failed", "failed_by_reason",
         "read"],
        report=_STR, created_at=_UNIX, updated_at=_UNIX,
        expires_at={**_UNIX, "description": "Deleted with its events after this."},
        addressed={**_COUNT, "description": "Users addressed, over every send with this id "
                                            "(a filter send: sessions reached)."},
        stored={**_COUNT, "description": "Events stored."},
        duplicates={**_COUNT, "description": "Idempotent repeats (stored nothing)."},
        delivered={**_COUNT, "description": "Users whose event was handed to at least one "
                                            "live session (transient sends: users or "
                                            "sessions reached)."},
        acked={**_COUNT, "description": "Users with a session that acked the event."},
        pushed={**_COUNT, "description": "Offline pushes the provider accepted (per device)."},
        push_failed={**_COUNT, "description": "Offline pushes failed or dropped, per device "
                                              "(`failed_by_reason`)."},
        failed_by_reason={"type": "object", "additionalProperties": _COUNT,
                          "description": "Reason (provider's, or `no_device`, "
                                         "`max_attempts`) → count."},
        read={**_COUNT, "description": "Users who marked the event read."}),
    "ReportList": _object(["reports"], reports={"type": "array", "items": ref("Report")}),
    "ReportUser": _object(
        ["report", "user", "seq", "stored", "delivered", "acked", "read", "created_at",
         "expires_at"],
        report=_STR, user=_STR, seq=_SEQ, stored={"type": "boolean", "const": True},
        delivered={"type": "boolean"}, acked={"type": "boolean"}, read={"type": "boolean"},
        created_at=_UNIX, expires_at=_UNIX),
    "Device": _object(
        ["user", "app", "platform", "token", "updated_at"],
        user=_STR, app=_STR, platform={"type": "string", "enum": ["apns", "fcm"]},
        token=_STR, updated_at=_UNIX),
    "Event": _object(
        ["seq", "id", "body", "created_at"],
        seq=_SEQ,
        id={"type": ["string", "null"], "description": "Idempotency key."},
        body={"description": "Any JSON value (object, array, string, number, boolean or "
                             "null)."},
        created_at=_UNIX),
    "EventList": _object(
        ["events", "head", "more"],
        events={"type": "array", "items": ref("Event")},
        head={**_COUNT, "description": "The user's highest seq."},
        more={"type": "boolean", "description": "`limit` events were returned; fetch again "
                                                "after the last seq."}),
    "SeqRange": {"type": "array", "description": "[first, last], inclusive, first <= last.",
                 "prefixItems": [_SEQ, _SEQ], "minItems": 2, "maxItems": 2, "items": False},
    "ReadResult": _object(
        ["head", "unread", "live"],
        head=_COUNT,
        unread={**_COUNT, "description": "`live` minus read seqs."},
        live={**_COUNT, "description": "Events currently stored (unexpired)."}),
    "ReadState": {"allOf": [ref("ReadResult"), _object(
        ["read"], read={"type": "array", "items": ref("SeqRange"),
                        "description": "Read seqs as sorted ranges."})]},
    "Session": _object(
        ["session", "hub", "connected_at", "workspace", "device", "application"],
        session=_STR, hub=_STR, connected_at=_UNIX, workspace=_STR,
        device={"type": "string", "description": "Empty when the token has none."},
        application=_STR),
    "SessionList": _object(["sessions"], sessions={"type": "array", "items": ref("Session")}),
    "PushcaOpenConnectionResponse": {"allOf": [ref("OpenConnectionResponse"), _object(
        ["externalAdvertisedUrl", "internalAdvertisedUrl", "browserAdvertisedUrl",
         "pusherInstanceId"],
        externalAdvertisedUrl={"type": "string", "description": "Pushca's connection "
                               "string `ws(s)://host[:port]/{jwt}` (the JWT is `token`)."},
        internalAdvertisedUrl={"type": "string", "description": "The same URL."},
        browserAdvertisedUrl={"type": "string", "description": "The same URL."},
        pusherInstanceId={"type": "string", "description": "Id of the hub that answered."})]},
    "Status": _object(
        ["status"],
        status={"type": "string", "enum": ["ok", "ready", "starting", "stopping"]},
        sessions={**_COUNT, "description": "Live sessions on this hub (readyz)."}),
}

RESPONSES: dict[str, Any] = {
    "BadRequest": {
        "description": "Invalid request: bad field or malformed JSON (`invalid_request`; "
                       "`field` names the input).",
        **json_content(ref("Error"), _error("invalid_request", "'body' is required", "body"))},
    "Unauthorized": {
        "description": "API key missing or not valid (`unauthorized`).",
        **json_content(ref("Error"), _error("unauthorized", "API key is not valid",
                                            "Authorization"))},
    "Forbidden": {
        "description": "`forbidden`: the keyless `/open-connection` does not take this "
                       "workspace or application (`field` names it).",
        **json_content(ref("Error"), _error(
            "forbidden", "workSpaceId 'admins' is not open to keyless /open-connection; call "
            "it with an API key", "client.workSpaceId"))},
    "NotConfigured": {"description": "`not_configured`: no signing key to mint tokens with.",
                      **json_content(ref("Error"))},
    "UnknownUser": {
        "description": "`unknown_user`: the user never received a stored event (has no "
                       "inbox).",
        **json_content(ref("Error"), _error("unknown_user", "user 'nobody' has no inbox",
                                            "user"))},
    "UnknownReport": {
        "description": "`unknown_report` (no such report: never sent, or expired with its "
                       "events) or `unknown_report_user` (the user has no stored event of it).",
        **json_content(ref("Error"), _error("unknown_report", "no delivery report 'msg-8f3a' "
                                            "(unknown, or expired with its events)", "report"))},
    "AckTimeout": {
        "description": "`ack_timeout`: no session acked within `ack_timeout_ms`. The event "
                       "stays stored; the body also carries the send result.",
        **json_content(ref("AckTimeoutError"), {
            **_error("ack_timeout", "no client acked seq 3 of user 'carol' within 3000 ms; "
                                    "the event stays stored", "ack", retryable=True),
            "results": [{"user": "carol", "seq": 3, "sessions": 1}], "sessions": 1})},
    "PayloadTooLarge": {
        "description": "`payload_too_large`: request over `max_request_bytes` (1 MiB) or "
                       "`body` over `max_body_bytes` (64 KiB).",
        **json_content(ref("Error"), _error("payload_too_large",
                                            "'body' is 70012 bytes; the limit is 65536",
                                            "body"))},
    "RateLimited": {
        "description": "`rate_limited`: more than `open_connection_rate_per_ip` calls per "
                       "second from this client address — retry after `Retry-After`.",
        "headers": {"Retry-After": {"description": "Seconds until a call is allowed.",
                                    "schema": {"type": "integer"}}},
        **json_content(ref("Error"), _error(
            "rate_limited", "too many open-connection requests from this address; retry "
            "later", retryable=True))},
    "Unavailable": {
        "description": "A backend does not answer — retry with backoff: `overloaded` "
                       "(too many writes queued; nothing stored), `store_unavailable`, "
                       "and in the cluster `router_unavailable`, `directory_unavailable`.",
        "headers": {"Retry-After": {"description": "Seconds (always 1).",
                                    "schema": {"type": "integer"}}},
        **json_content(ref("Error"), _error("overloaded", "event store unavailable: ...",
                                            retryable=True))},
}


def build_spec() -> dict[str, Any]:
    """The whole document (built once, at import: :data:`SPEC`)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pushgate HTTP API",
            "version": "1",
            "summary": "Websocket push gateway: send notifications, read inboxes, mint client "
                       "tokens.",
            "description": (
                "Server-to-server API of pushgate. Every `/v1/*` route and the "
                "Pushca-compatible aliases need an API key: `Authorization: Bearer <key>` "
                "(Pushca's `/open-connection` may be opened to keyless calls: "
                "`pushca_public_open_connection`). "
                "Errors always have the body `{\"error\": {\"code\", \"message\", \"field\", "
                "\"retryable\"}}` (`field` only when one input is to blame). The websocket "
                "client protocol (`GET /v1/ws`) is described in docs/protocol.md; the HTTP "
                "API in docs/http-api.md."),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": "send", "description": "Send notifications to users or to filtered "
                                            "clients."},
            {"name": "reports", "description": "Delivery reports: what happened to a send "
                                               "(stored, delivered, acked, pushed, read)."},
            {"name": "inbox", "description": "A user's stored events and read state."},
            {"name": "sessions", "description": "Client tokens and live websocket sessions."},
            {"name": "devices", "description": "Push tokens for the offline bridge "
                                               "(APNs/FCM)."},
            {"name": "pushca", "description": "Pushca-compatible aliases (camelCase bodies)."},
            {"name": "operations", "description": "Health, readiness, metrics, this "
                                                  "document."},
        ],
        "security": [{"apiKey": []}],
        "paths": PATHS,
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http", "scheme": "bearer",
                    "description": "Server API key (`api_keys` setting; `pushgate api-key` "
                                   "prints the generated one): `Authorization: Bearer <key>`.",
                },
                "clientToken": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "Client JWT (claims `sub`, `exp` required; `ws`, `dev`, "
                                   "`app` optional): the websocket and `/v1/devices`.",
                },
            },
            "responses": RESPONSES,
            "schemas": {**RESPONSE_SCHEMAS, **request_schemas()},
        },
    }


SPEC: dict[str, Any] = build_spec()
_SERVED: dict[int, dict[str, Any]] = {}


def served_spec(fetch_max_limit: int) -> dict[str, Any]:
    """:data:`SPEC` with this server's ``fetch_max_limit`` as the bound (and default) of the
    events' ``limit`` (a setting, so not a constant of the document)."""
    if fetch_max_limit not in _SERVED:
        events = SPEC["paths"]["/v1/users/{user}/events"]["get"]
        params = [{**p, "schema": {**p["schema"], "maximum": fetch_max_limit,
                                   "default": min(100, fetch_max_limit)}}
                  if p["name"] == "limit" else p for p in events["parameters"]]
        paths = {**SPEC["paths"], "/v1/users/{user}/events": {
            "get": {**events, "parameters": params}}}
        _SERVED[fetch_max_limit] = {**SPEC, "paths": paths}
    return _SERVED[fetch_max_limit]


async def openapi_endpoint(request: Request) -> Response:
    from pushgate.hub.responses import json_response

    return json_response(served_spec(request.app.state.node.settings.fetch_max_limit))
