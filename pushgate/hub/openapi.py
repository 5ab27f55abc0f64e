"""OpenAPI 3.1 document of the HTTP API, served at /openapi.json (see docs/http-api.md).

A plain dict literal: no schema generator, no extra dependency. Limits that come from
settings (``max_users_per_send``, ``max_body_bytes``, ``max_event_ttl_s``,
``fetch_max_limit``, ``max_request_bytes``...) are given with their defaults in the
descriptions; fixed limits of the code (id lengths, ``ack_timeout_ms`` range, read
items) are schema keywords.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

_ID = {"type": "string", "minLength": 1, "maxLength": 255,
       "description": "1..255 characters, no control characters."}
_OPT_ID = {"type": ["string", "null"], "maxLength": 255,
           "description": "Up to 255 characters, no control characters; null or omitted = any."}
_SEQ = {"type": "integer", "minimum": 1}
_JSON_BODY = {"description": "Any JSON value (object, array, string, number, boolean or null)."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _resp(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _json(schema: dict[str, Any], example: Any = None, **extra: Any) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"content": {"application/json": media}, **extra}


DEVICE_EXAMPLE = {"user": "alice", "app": "com.example.chat", "platform": "apns", "token": "a1b2c3d4e5f6", "updated_at": 1767225600.5}
_USER_PARAM = {
    "name": "user", "in": "path", "required": True,
    "description": "User id (the token's `sub`).", "schema": _ID,
}

_SEND_EXAMPLE = {"users": ["alice", "bob"], "body": {"title": "New message", "chat": 42},
                 "id": "msg-8f3a", "ttl": 86400}
_SEND_RESULT_EXAMPLE = {"results": [{"user": "alice", "seq": 17, "sessions": 2},
                                    {"user": "bob", "seq": 4, "sessions": 0}],
                        "sessions": 2}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "pushgate HTTP API",
        "version": "1",
        "summary": "Websocket push gateway: send notifications, read inboxes, mint client tokens.",
        "description": (
            "Server-to-server API of pushgate. Every `/v1/*` route and the Pushca-compatible "
            "aliases need an API key: `Authorization: Bearer <key>`. Errors always have the body "
            "`{\"error\": {\"code\", \"message\", \"field\", \"retryable\"}}` (`field` only when "
            "one input is to blame). The websocket client protocol (`GET /v1/ws`) is described "
            "in docs/protocol.md; the HTTP API in docs/http-api.md."
        ),
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    },
    "tags": [
        {"name": "send", "description": "Send notifications to users or to filtered clients."},
        {"name": "inbox", "description": "A user's stored events and read state."},
        {"name": "sessions", "description": "Client tokens and live websocket sessions."},
        {"name": "devices", "description": "Push tokens for the offline bridge (APNs/FCM)."},
        {"name": "pushca", "description": "Pushca-compatible aliases (camelCase bodies)."},
        {"name": "operations", "description": "Health, readiness, metrics, this document."},
    ],
    "security": [{"apiKey": []}],
    "paths": {
        "/v1/open-connection": {
            "post": {
                "tags": ["sessions"],
                "operationId": "openConnection",
                "summary": "Mint a client token and the websocket URL to connect with",
                "description": (
                    "Signs a token (lifetime `token_ttl_s`, default 1800 s) for the given "
                    "identity with the first algorithm of `jwt_algorithms`. The URL's base is "
                    "`public_url` when set, else derived from this request (scheme from a "
                    "trusted `X-Forwarded-Proto`, host from `Host`). 501 when the gateway "
                    "holds no signing key (asymmetric algorithm without `jwt_private_key`)."
                ),
                "requestBody": {"required": True, **_json(
                    _ref("OpenConnectionRequest"),
                    {"user": "alice", "workspace": "default", "device": "phone-1",
                     "application": "chat"})},
                "responses": {
                    "200": {"description": "Token minted.", **_json(
                        _ref("OpenConnectionResponse"),
                        {"url": "ws://127.0.0.1:8080/v1/ws?token=eyJhbGciOiJIUzI1NiIs...",
                         "token": "eyJhbGciOiJIUzI1NiIs...", "expires_at": 1767225600.0})},
                    "400": _resp("BadRequest"),
                    "401": _resp("Unauthorized"),
                    "501": _resp("NotConfigured"),
                    "413": _resp("PayloadTooLarge"),
                },
            },
        },
        "/v1/notifications": {
            "post": {
                "tags": ["send"],
                "operationId": "sendNotification",
                "summary": "Send a notification to users (stored) or to a filter (transient)",
                "description": (
                    "Exactly one of `users` / `filter`.\n\n"
                    "* `users` with `ttl` > 0 (default `event_ttl_s`, 30 days): one event is "
                    "stored per user (durable before delivery, new `seq`), then pushed to the "
                    "user's live sessions (to those of `device` only, when given). A repeated "
                    "`id` stores nothing and returns the first seq with `duplicate: true`; it is "
                    "not pushed again (except an `ack` send, which is re-pushed to be acked).\n"
                    "* `users` with `ttl: 0`, and every `filter` send: transient — pushed to live "
                    "sessions only, never stored, `seq` is null.\n"
                    "* `ack: true` (one user, stored): the reply waits until a session of the "
                    "user (of `device`, when given) acks the seq: 200 with `acked_by`, or 408 "
                    "after `ack_timeout_ms`; the event stays stored either way."
                ),
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("SendRequest"),
                    "examples": {
                        "users": {"summary": "Stored, to two users, idempotent",
                                  "value": _SEND_EXAMPLE},
                        "ack": {"summary": "Send with acknowledge to one device",
                                "value": {"users": ["carol"], "device": "phone-1",
                                          "body": {"call": "incoming"}, "ack": True,
                                          "ack_timeout_ms": 3000}},
                        "transient": {"summary": "Transient (ttl 0): live sessions only",
                                      "value": {"users": ["alice"], "body": {"typing": True},
                                                "ttl": 0}},
                        "filter": {"summary": "Filter: all 'chat' clients of workspace w1 "
                                              "except erin's",
                                   "value": {"filter": {"workspace": "w1",
                                                        "application": "chat",
                                                        "exclude": [{"account": "erin"}]},
                                             "body": "maintenance at 22:00"}},
                        "find_any": {"summary": "Filter with find_any: one matching session, "
                                                "round-robin",
                                     "value": {"filter": {"workspace": "w1",
                                                          "application": "worker",
                                                          "find_any": True},
                                               "body": {"job": 7}}},
                    },
                }}},
                "responses": {
                    "200": {"description": "Accepted (and, for `ack`, acknowledged).",
                            **_json(_ref("SendResult"), _SEND_RESULT_EXAMPLE)},
                    "400": _resp("BadRequest"),
                    "401": _resp("Unauthorized"),
                    "408": _resp("AckTimeout"),
                    "413": _resp("PayloadTooLarge"),
                    "503": _resp("Unavailable"),
                },
            },
        },
        "/v1/users/{user}/events": {
            "get": {
                "tags": ["inbox"],
                "operationId": "userEvents",
                "summary": "Fetch a user's stored events after a seq (the diff)",
                "description": (
                    "Live (stored, unexpired) events with `seq > after`, ascending. `more` is "
                    "true when `limit` events were returned (there may be more: fetch again "
                    "with `after` = the last seq). Large bodies are returned in full here."
                ),
                "parameters": [
                    _USER_PARAM,
                    {"name": "after", "in": "query", "required": False,
                     "description": "Return events with a seq above this one.",
                     "schema": {"type": "integer", "minimum": 0,
                                "maximum": 9223372036854775807, "default": 0}},
                    {"name": "limit", "in": "query", "required": False,
                     "description": "At most this many events; 1..`fetch_max_limit` "
                                    "(default setting 1000). Default min(100, fetch_max_limit).",
                     "schema": {"type": "integer", "minimum": 1, "default": 100}},
                ],
                "responses": {
                    "200": {"description": "Events.", **_json(
                        _ref("EventList"),
                        {"events": [{"seq": 17, "id": "msg-8f3a",
                                     "body": {"title": "New message", "chat": 42},
                                     "created_at": 1767225600.123}],
                         "head": 17, "more": False})},
                    "400": _resp("BadRequest"),
                    "401": _resp("Unauthorized"),
                    "404": _resp("UnknownUser"),
                },
            },
        },
        "/v1/users/{user}/read": {
            "post": {
                "tags": ["inbox"],
                "operationId": "userMarkRead",
                "summary": "Mark seqs (and inclusive ranges) as read",
                "description": (
                    "Only live seqs are recorded: unknown, expired and future seqs are "
                    "ignored, so `unread` = `live` - read stays exact. Idempotent."
                ),
                "parameters": [_USER_PARAM],
                "requestBody": {"required": True, **_json(
                    _ref("ReadRequest"), {"seqs": [17], "ranges": [[1, 12]]})},
                "responses": {
                    "200": {"description": "Read state after the update.", **_json(
                        _ref("ReadResult"), {"head": 17, "unread": 4, "live": 17})},
                    "400": _resp("BadRequest"),
                    "401": _resp("Unauthorized"),
                    "404": _resp("UnknownUser"),
                    "413": _resp("PayloadTooLarge"),
                },
            },
        },
        "/v1/users/{user}/read-state": {
            "get": {
                "tags": ["inbox"],
                "operationId": "userReadState",
                "summary": "Head seq, unread count and the read seqs as ranges",
                "parameters": [_USER_PARAM],
                "responses": {
                    "200": {"description": "Read state.", **_json(
                        _ref("ReadState"),
                        {"head": 17, "unread": 4, "live": 17, "read": [[1, 12], [17, 17]]})},
                    "400": _resp("BadRequest"),
                    "401": _resp("Unauthorized"),
                    "404": _resp("UnknownUser"),
                },
            },
        },
        "/v1/users/{user}/sessions": {
            "get": {
                "tags": ["sessions"],
                "operationId": "userSessions",
                "summary": "Live websocket sessions of a user (oldest first)",
                "description": "An unknown user or a user without sessions gets an empty list.",
                "parameters": [_USER_PARAM],
                "responses": {
                    "200": {"description": "Sessions.", **_json(
                        _ref("SessionList"),
                        {"sessions": [{"session": "1313b35605c14b758b13b60dfad92721",
                                       "hub": "hub-7fb82f563454",
                                       "connected_at": 1767225600.5, "workspace": "default",
                                       "device": "phone-1", "application": "chat"}]})},
                    "400": _resp("BadRequest"),
                    "401": _resp("Unauthorized"),
                },
            },
        },
        "/v1/devices": {
            "post": {
                "tags": ["devices"],
                "operationId": "registerOwnDevice",
                "summary": "A client registers the push token of its app install",
                "description": "Authenticated with the client's own JWT (not an API key); the "
                               "token is stored for the JWT's user. A token already known "
                               "moves to this user and app.",
                "security": [{"clientToken": []}],
                "requestBody": {"required": True, **_json(_ref("DeviceBody"), {
                    "platform": "fcm", "token": "dGhpcyBpcyBhbiBGQ00gdG9rZW4"})},
                "responses": {
                    "200": {"description": "Stored.", **_json(_ref("Device"), DEVICE_EXAMPLE)},
                    "400": _resp("BadRequest"),
                    "401": _resp("Unauthorized"),
                },
            },
            "delete": {
                "tags": ["devices"],
                "operationId": "removeOwnDevice",
                "summary": "A client removes its push token (logout)",
                "security": [{"clientToken": []}],
                "requestBody": {"required": True, **_json(_ref("DeviceBody"))},
                "responses": {
                    "200": {"description": "Whether a token was removed.",
                            **_json({"type": "object", "properties": {
                                "removed": {"type": "boolean"}}}, {"removed": True})},
                    "400": _resp("BadRequest"),
                    "401": _resp("Unauthorized"),
                },
            },
        },
        "/v1/users/{user}/devices": {
            "get": {
                "tags": ["devices"],
                "operationId": "userDevices",
                "summary": "Push tokens of a user",
                "parameters": [_USER_PARAM],
                "responses": {
                    "200": {"description": "Devices.", **_json(
                        {"type": "object", "properties": {
                            "devices": {"type": "array", "items": _ref("Device")}}},
                        {"devices": [DEVICE_EXAMPLE]})},
                    "400": _resp("BadRequest"),
                    "401": _resp("Unauthorized"),
                },
            },
            "put": {
                "tags": ["devices"],
                "operationId": "registerUserDevice",
                "summary": "Register a push token for a user (server side)",
                "parameters": [_USER_PARAM],
                "requestBody": {"required": True, **_json(_ref("DeviceBody"), {
                    "platform": "apns", "token": "a1b2c3d4e5f6", "app": "com.example.chat"})},
                "responses": {
                    "200": {"description": "Stored.", **_json(_ref("Device"), DEVICE_EXAMPLE)},
                    "400": _resp("BadRequest"),
                    "401": _resp("Unauthorized"),
                },
            },
            "delete": {
                "tags": ["devices"],
                "operationId": "removeUserDevice",
                "summary": "Remove a user's push token",
                "parameters": [_USER_PARAM],
                "requestBody": {"required": True, **_json(_ref("DeviceBody"))},
                "responses": {
                    "200": {"description": "Whether a token was removed.",
                            **_json({"type": "object", "properties": {
                                "removed": {"type": "boolean"}}}, {"removed": True})},
                    "400": _resp("BadRequest"),
                    "401": _resp("Unauthorized"),
                },
            },
        },
        "/v1/ws": {
            "get": {
                "tags": ["sessions"],
                "operationId": "websocket",
                "summary": "Websocket upgrade for clients (see docs/protocol.md)",
                "description": (
                    "Client connection (JSON text frames). Authenticated with a client token "
                    "(query `token` or `Authorization: Bearer <token>`), not an API key. "
                    "Authentication, origin and parameter failures are reported after the "
                    "upgrade, as a close code (4100 bad token, 4101 expired token, 4103 origin, "
                    "4104 bad `after`)."
                ),
                "security": [{}, {"clientToken": []}],
                "parameters": [
                    {"name": "token", "in": "query", "required": False,
                     "description": "Client JWT (else the Authorization header is used).",
                     "schema": {"type": "string"}},
                    {"name": "after", "in": "query", "required": False,
                     "description": "Resume: the server first pushes stored events with a "
                                    "seq above this one (at most `fetch_max_limit`).",
                     "schema": {"type": "integer", "minimum": 0}},
                ],
                "responses": {
                    "101": {"description": "Switching protocols; the first frame is `hello`."},
                },
            },
        },
        "/open-connection": {
            "post": {
                "tags": ["pushca"],
                "operationId": "pushcaOpenConnection",
                "summary": "Pushca alias of /v1/open-connection",
                "description": (
                    "`client.accountId` → `user` (required), `workSpaceId` → `workspace` "
                    "(default `default`), `deviceId` → `device`, `applicationId` → "
                    "`application`. Other top-level fields are ignored. The reply is the native "
                    "one plus `externalAdvertisedUrl` and `internalAdvertisedUrl` (both = `url`)."
                ),
                "requestBody": {"required": True, **_json(
                    _ref("PushcaOpenConnectionRequest"),
                    {"client": {"workSpaceId": "w1", "accountId": "alice",
                                "deviceId": "phone-1", "applicationId": "chat"}})},
                "responses": {
                    "200": {"description": "Token minted.",
                            **_json(_ref("PushcaOpenConnectionResponse"))},
                    "400": _resp("BadRequest"),
                    "401": _resp("Unauthorized"),
                    "501": _resp("NotConfigured"),
                    "413": _resp("PayloadTooLarge"),
                },
            },
        },
        "/send-notification": {
            "post": {
                "tags": ["pushca"],
                "operationId": "pushcaSendNotification",
                "summary": "Pushca alias: transient filter send",
                "description": (
                    "Translated to a native filter send: `message` → `body`, `id` → `id`, "
                    "`filter.{workSpaceId,accountId,deviceId,applicationId}` → "
                    "`filter.{workspace,account,device,application}`, `findAny` → `find_any`, "
                    "`exclude[]` likewise. Transient: never stored. Other top-level fields are "
                    "ignored. Reply: the native send result."
                ),
                "requestBody": {"required": True, **_json(
                    _ref("PushcaSendRequest"),
                    {"id": "m-1", "message": "hello",
                     "filter": {"workSpaceId": "w1", "applicationId": "chat", "findAny": False,
                                "exclude": [{"accountId": "erin"}]}})},
                "responses": {
                    "200": {"description": "Delivered to `sessions` live sessions.",
                            **_json(_ref("SendResult"), {"results": [], "sessions": 3})},
                    "400": _resp("BadRequest"),
                    "401": _resp("Unauthorized"),
                    "413": _resp("PayloadTooLarge"),
                    "503": _resp("Unavailable"),
                },
            },
        },
        "/send-notification-with-acknowledge": {
            "post": {
                "tags": ["pushca"],
                "operationId": "pushcaSendNotificationWithAcknowledge",
                "summary": "Pushca alias: stored send to one user, wait for the ack",
                "description": (
                    "Translated to `{\"users\": [client.accountId], \"device\": client.deviceId, "
                    "\"body\": message, \"id\": id, \"ack\": true}` with the default TTL and "
                    "`ack_timeout_ms`. `client.workSpaceId` and `client.applicationId` are "
                    "accepted but not used. 200 = acked (`acked_by`), 408 = nobody acked in "
                    "time (the event stays stored)."
                ),
                "requestBody": {"required": True, **_json(
                    _ref("PushcaSendAckRequest"),
                    {"id": "m-2", "message": {"call": "incoming"},
                     "client": {"workSpaceId": "default", "accountId": "carol",
                                "deviceId": "phone-1", "applicationId": None}})},
                "responses": {
                    "200": {"description": "Acknowledged.", **_json(
                        _ref("SendResult"),
                        {"results": [{"user": "carol", "seq": 9, "sessions": 1,
                                      "acked_by": "1313b35605c14b758b13b60dfad92721"}],
                         "sessions": 1})},
                    "400": _resp("BadRequest"),
                    "401": _resp("Unauthorized"),
                    "408": _resp("AckTimeout"),
                    "413": _resp("PayloadTooLarge"),
                    "503": _resp("Unavailable"),
                },
            },
        },
        "/healthz": {
            "get": {
                "tags": ["operations"],
                "operationId": "healthz",
                "summary": "Liveness: the process answers",
                "security": [],
                "responses": {"200": {"description": "Alive.", **_json(
                    _ref("Status"), {"status": "ok"})}},
            },
        },
        "/readyz": {
            "get": {
                "tags": ["operations"],
                "operationId": "readyz",
                "summary": "Readiness: started and not shutting down",
                "security": [],
                "responses": {
                    "200": {"description": "Ready.", **_json(
                        _ref("Status"), {"status": "ready", "sessions": 12})},
                    "503": {"description": "`starting` or `stopping`.", **_json(
                        _ref("Status"), {"status": "stopping"})},
                },
            },
        },
        "/metrics": {
            "get": {
                "tags": ["operations"],
                "operationId": "metrics",
                "summary": "Prometheus metrics (text exposition format 0.0.4)",
                "security": [],
                "responses": {"200": {"description": "Metrics.", "content": {
                    "text/plain; version=0.0.4; charset=utf-8": {"schema": {"type": "string"}}}}},
            },
        },
        "/openapi.json": {
            "get": {
                "tags": ["operations"],
                "operationId": "openapi",
                "summary": "This OpenAPI document",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1 document.",
                                      **_json({"type": "object"})}},
            },
        },
    },
    "components": {
        "securitySchemes": {
            "apiKey": {
                "type": "http", "scheme": "bearer",
                "description": "Server API key (`api_keys` setting; `pushgate api-key` prints "
                               "the generated one): `Authorization: Bearer <key>`.",
            },
            "clientToken": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "Client JWT (claims `sub`, `exp` required; `ws`, `dev`, `app` "
                               "optional), for the websocket only.",
            },
        },
        "responses": {
            "BadRequest": {"description": "Invalid request: bad field or malformed JSON "
                                          "(`invalid_request`; `field` names the input).",
                           **_json(_ref("Error"), {"error": {
                               "code": "invalid_request", "message": "'body' is required",
                               "field": "body", "retryable": False}})},
            "Unauthorized": {"description": "API key missing or not valid (`unauthorized`).",
                             **_json(_ref("Error"), {"error": {
                                 "code": "unauthorized", "message": "API key is not valid",
                                 "field": "Authorization", "retryable": False}})},
            "NotConfigured": {"description": "`not_configured`: no signing key to mint tokens with.",
                         **_json(_ref("Error"))},
            "UnknownUser": {"description": "`unknown_user`: the user never received a stored "
                                           "event (has no inbox).",
                            **_json(_ref("Error"), {"error": {
                                "code": "unknown_user", "message": "user 'nobody' has no inbox",
                                "field": "user", "retryable": False}})},
            "AckTimeout": {"description": "`ack_timeout`: no session acked within "
                                          "`ack_timeout_ms`. The event stays stored; the body "
                                          "also carries the send result.",
                           **_json(_ref("AckTimeoutError"), {
                               "error": {"code": "ack_timeout",
                                         "message": "no client acked seq 3 of user 'carol' "
                                                    "within 3000 ms; the event stays stored",
                                         "field": "ack", "retryable": True},
                               "results": [{"user": "carol", "seq": 3, "sessions": 1}],
                               "sessions": 1})},
            "PayloadTooLarge": {"description": "`payload_too_large`: request over "
                                               "`max_request_bytes` (1 MiB) or `body` over "
                                               "`max_body_bytes` (64 KiB).",
                                **_json(_ref("Error"), {"error": {
                                    "code": "payload_too_large",
                                    "message": "'body' is 70012 bytes; the limit is 65536",
                                    "field": "body", "retryable": False}})},
            "Unavailable": {"description": "`overloaded` (store unavailable or too many writes "
                                           "queued; nothing stored) — retry with backoff.",
                            "headers": {"Retry-After": {"description": "Seconds (always 1).",
                                                        "schema": {"type": "integer"}}},
                            **_json(_ref("Error"), {"error": {
                                "code": "overloaded",
                                "message": "event store unavailable: ...",
                                "retryable": True}})},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {
                    "type": "object",
                    "required": ["code", "message", "retryable"],
                    "properties": {
                        "code": {"type": "string", "description": (
                            "Stable machine-readable code: invalid_request, payload_too_large, "
                            "unauthorized, not_found, unknown_user, method_not_allowed, "
                            "ack_timeout, overloaded, shutting_down, internal.")},
                        "message": {"type": "string", "description": "For humans."},
                        "field": {"type": "string",
                                  "description": "The offending input, when there is one "
                                                 "(dotted for nested fields)."},
                        "retryable": {"type": "boolean",
                                      "description": "Whether the same request may succeed "
                                                     "later."},
                    },
                }},
            },
            "AckTimeoutError": {
                "allOf": [_ref("Error"), _ref("SendResult")],
            },
            "OpenConnectionRequest": {
                "type": "object",
                "additionalProperties": False,
                "required": ["user"],
                "properties": {
                    "user": {**_ID, "description": "User / account id (`sub`)."},
                    "workspace": {**_OPT_ID, "description": "Workspace (`ws`); default "
                                                            "`default`."},
                    "device": {**_OPT_ID, "description": "Device id (`dev`)."},
                    "application": {**_OPT_ID, "description": "Application id (`app`)."},
                },
            },
            "OpenConnectionResponse": {
                "type": "object",
                "required": ["url", "token", "expires_at"],
                "properties": {
                    "url": {"type": "string", "description": "`<base>/v1/ws?token=<token>`."},
                    "token": {"type": "string", "description": "The client JWT."},
                    "expires_at": {"type": "number", "description": "Unix seconds."},
                },
            },
            "ClientRef": {
                "type": "object",
                "additionalProperties": False,
                "description": "A (partial) client address; omitted or null = any.",
                "properties": {
                    "workspace": _OPT_ID, "account": _OPT_ID,
                    "device": _OPT_ID, "application": _OPT_ID,
                },
            },
            "Filter": {
                "type": "object",
                "additionalProperties": False,
                "description": (
                    "Matches live sessions on the four dimensions (omitted = any). A filter "
                    "with `account` looks up that user's sessions; one without is matched "
                    "against every session."
                ),
                "properties": {
                    "workspace": _OPT_ID, "account": _OPT_ID,
                    "device": _OPT_ID, "application": _OPT_ID,
                    "find_any": {"type": "boolean", "default": False,
                                 "description": "Deliver to exactly one matching session, "
                                                "round-robin across calls."},
                    "exclude": {"type": ["array", "null"], "items": _ref("ClientRef"),
                                "description": "Sessions matching any entry (that names at "
                                               "least one dimension) are skipped."},
                },
            },
            "SendRequest": {
                "type": "object",
                "additionalProperties": False,
                "required": ["body"],
                "oneOf": [{"required": ["users"]}, {"required": ["filter"]}],
                "properties": {
                    "users": {"type": "array", "minItems": 1, "items": _ID,
                              "description": "Recipients (duplicates are merged); at most "
                                             "`max_users_per_send` (default 10000)."},
                    "filter": _ref("Filter"),
                    "body": {**_JSON_BODY, "description": "The payload, any JSON; at most "
                                                          "`max_body_bytes` (default 65536) "
                                                          "encoded."},
                    "ttl": {"type": "integer", "minimum": 0,
                            "description": "Seconds to keep the event; 0 = transient (never "
                                           "stored). Default `event_ttl_s` (2592000) for "
                                           "`users`; at most `max_event_ttl_s` (31536000). "
                                           "Forced to 0 for `filter`."},
                    "id": {**_ID, "description": "Idempotency key: the same id sent again to a "
                                                 "user stores nothing and returns the first "
                                                 "seq with `duplicate: true`."},
                    "device": {**_ID, "description": "With `users`: deliver only to sessions of "
                                                     "this device (the event is stored for the "
                                                     "user anyway)."},
                    "push": _ref("Push"),
                    "ack": {"type": "boolean", "default": False,
                            "description": "Wait for a client ack: needs exactly one user and "
                                           "ttl > 0."},
                    "ack_timeout_ms": {"type": "integer", "minimum": 1, "maximum": 60000,
                                       "description": "Ack wait; default `ack_timeout_ms` "
                                                      "setting (5000)."},
                },
            },
            "UserResult": {
                "type": "object",
                "required": ["user", "seq", "sessions"],
                "properties": {
                    "user": {"type": "string"},
                    "seq": {"type": ["integer", "null"],
                            "description": "The stored event's seq; null when transient."},
                    "sessions": {"type": "integer", "minimum": 0,
                                 "description": "Live sessions the frame was queued to."},
                    "duplicate": {"type": "boolean", "const": True,
                                  "description": "Present when `id` was already stored."},
                    "acked_by": {"type": "string",
                                 "description": "Session id that acked (ack sends)."},
                    "push": {"type": "string", "enum": ["queued", "not_queued"],
                             "description": "With a `push` block: whether an offline push was "
                                            "queued for the user (absent: the policy pushes "
                                            "no one who was online, or the bridge is off)."},
                },
            },
            "Push": {
                "type": "object",
                "description": "Offline push through APNs/FCM for users no live session "
                               "reached (docs/offline-push.md). Needs a stored send (`users`, "
                               "ttl > 0) and at least one of title, body, data, "
                               "content_available.",
                "additionalProperties": False,
                "properties": {
                    "title": {"type": "string", "minLength": 1, "maxLength": 2048},
                    "subtitle": {"type": "string", "minLength": 1, "maxLength": 2048,
                                 "description": "APNs only."},
                    "body": {"type": "string", "minLength": 1, "maxLength": 2048},
                    "data": {"type": "object", "description": "Custom keys: top level of the "
                             "APNs payload (not `aps`); FCM `data` (non-strings JSON-encoded)."},
                    "sound": {"type": "string"},
                    "badge": {"type": "integer", "minimum": 0},
                    "collapse_id": {"type": "string", "description": "At most 64 bytes; "
                                    "default `pushgate-<seq>`. APNs `apns-collapse-id`, FCM "
                                    "`android.collapse_key`."},
                    "priority": {"type": "string", "enum": ["high", "normal"],
                                 "default": "high"},
                    "ttl": {"type": "integer", "minimum": 0, "maximum": 2419200,
                            "description": "Seconds the provider keeps it for an offline "
                                           "device (APNs `apns-expiration`, FCM "
                                           "`android.ttl`); 0 = now or never."},
                    "app": {"type": "string", "description": "Only devices of this app."},
                    "category": {"type": "string"},
                    "thread_id": {"type": "string"},
                    "content_available": {"type": "boolean",
                                          "description": "Background (silent) push."},
                    "mutable_content": {"type": "boolean"},
                    "apns": {"type": "object", "description": "`headers` and `payload` "
                             "merged over the APNs request."},
                    "android": {"type": "object", "description": "Merged over FCM "
                                "`message.android`."},
                    "webpush": {"type": "object", "description": "FCM `message.webpush`."},
                },
            },
            "DeviceBody": {
                "type": "object",
                "required": ["platform", "token"],
                "additionalProperties": False,
                "properties": {
                    "platform": {"type": "string", "enum": ["apns", "fcm"]},
                    "token": {"type": "string", "minLength": 1, "maxLength": 512,
                              "description": "The provider's device token (printable ASCII)."},
                    "app": {**_ID, "description": "Application id; default: the client "
                                                  "token's `app` claim, else `default`."},
                },
            },
            "Device": {
                "type": "object",
                "required": ["user", "app", "platform", "token", "updated_at"],
                "properties": {
                    "user": {"type": "string"}, "app": {"type": "string"},
                    "platform": {"type": "string", "enum": ["apns", "fcm"]},
                    "token": {"type": "string"},
                    "updated_at": {"type": "number", "description": "Unix seconds."},
                },
            },
            "SendResult": {
                "type": "object",
                "required": ["results", "sessions"],
                "properties": {
                    "results": {"type": "array", "items": _ref("UserResult"),
                                "description": "One per user; for a filter send one entry "
                                               "when `filter.account` is set, else empty."},
                    "sessions": {"type": "integer", "minimum": 0,
                                 "description": "Total live sessions reached."},
                },
            },
            "Event": {
                "type": "object",
                "required": ["seq", "id", "body", "created_at"],
                "properties": {
                    "seq": _SEQ,
                    "id": {"type": ["string", "null"], "description": "Idempotency key."},
                    "body": _JSON_BODY,
                    "created_at": {"type": "number", "description": "Unix seconds."},
                },
            },
            "EventList": {
                "type": "object",
                "required": ["events", "head", "more"],
                "properties": {
                    "events": {"type": "array", "items": _ref("Event")},
                    "head": {"type": "integer", "minimum": 0,
                             "description": "The user's highest seq."},
                    "more": {"type": "boolean",
                             "description": "`limit` events were returned; fetch again after "
                                            "the last seq."},
                },
            },
            "SeqRange": {
                "type": "array",
                "description": "[first, last], inclusive, first <= last.",
                "prefixItems": [_SEQ, _SEQ],
                "minItems": 2, "maxItems": 2, "items": False,
            },
            "ReadRequest": {
                "type": "object",
                "description": "At least one of `seqs` / `ranges` non-empty; at most 10000 "
                               "items together. Other fields are ignored.",
                "anyOf": [
                    {"required": ["seqs"], "properties": {"seqs": {"minItems": 1}}},
                    {"required": ["ranges"], "properties": {"ranges": {"minItems": 1}}},
                ],
                "properties": {
                    "seqs": {"type": "array", "items": _SEQ, "maxItems": 10000},
                    "ranges": {"type": "array", "items": _ref("SeqRange"), "maxItems": 10000},
                },
            },
            "ReadResult": {
                "type": "object",
                "required": ["head", "unread", "live"],
                "properties": {
                    "head": {"type": "integer", "minimum": 0},
                    "unread": {"type": "integer", "minimum": 0,
                               "description": "`live` minus read seqs."},
                    "live": {"type": "integer", "minimum": 0,
                             "description": "Events currently stored (unexpired)."},
                },
            },
            "ReadState": {
                "allOf": [_ref("ReadResult"), {
                    "type": "object",
                    "required": ["read"],
                    "properties": {"read": {"type": "array", "items": _ref("SeqRange"),
                                            "description": "Read seqs as sorted ranges."}},
                }],
            },
            "Session": {
                "type": "object",
                "required": ["session", "hub", "connected_at", "workspace", "device",
                             "application"],
                "properties": {
                    "session": {"type": "string"},
                    "hub": {"type": "string"},
                    "connected_at": {"type": "number", "description": "Unix seconds."},
                    "workspace": {"type": "string"},
                    "device": {"type": "string", "description": "Empty when the token has none."},
                    "application": {"type": "string"},
                },
            },
            "SessionList": {
                "type": "object",
                "required": ["sessions"],
                "properties": {"sessions": {"type": "array", "items": _ref("Session")}},
            },
            "PushcaClient": {
                "type": "object",
                "additionalProperties": False,
                "description": "Pushca client address (`findAny` / `exclude` are tolerated "
                               "and ignored here).",
                "properties": {
                    "workSpaceId": _OPT_ID, "accountId": _OPT_ID,
                    "deviceId": _OPT_ID, "applicationId": _OPT_ID,
                    "findAny": {}, "exclude": {},
                },
            },
            "PushcaFilter": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "workSpaceId": _OPT_ID, "accountId": _OPT_ID,
                    "deviceId": _OPT_ID, "applicationId": _OPT_ID,
                    "findAny": {"type": ["boolean", "null"], "default": False},
                    "exclude": {"type": ["array", "null"], "items": _ref("PushcaClient")},
                },
            },
            "PushcaOpenConnectionRequest": {
                "type": "object",
                "required": ["client"],
                "properties": {"client": {"allOf": [_ref("PushcaClient"),
                                                    {"required": ["accountId"]}]}},
            },
            "PushcaOpenConnectionResponse": {
                "allOf": [_ref("OpenConnectionResponse"), {
                    "type": "object",
                    "required": ["externalAdvertisedUrl", "internalAdvertisedUrl"],
                    "properties": {"externalAdvertisedUrl": {"type": "string"},
                                   "internalAdvertisedUrl": {"type": "string"}},
                }],
            },
            "PushcaSendRequest": {
                "type": "object",
                "required": ["message", "filter"],
                "properties": {
                    "id": {**_ID, "description": "Copied to the event's `id`."},
                    "message": {**_JSON_BODY, "description": "The body (usually a string)."},
                    "filter": _ref("PushcaFilter"),
                },
            },
            "PushcaSendAckRequest": {
                "type": "object",
                "required": ["message", "client"],
                "properties": {
                    "id": {**_ID, "description": "Idempotency key of the stored event."},
                    "message": {**_JSON_BODY, "description": "The body."},
                    "client": {"allOf": [_ref("PushcaClient"), {"required": ["accountId"]}]},
                },
            },
            "Status": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"type": "string",
                               "enum": ["ok", "ready", "starting", "stopping"]},
                    "sessions": {"type": "integer", "minimum": 0,
                                 "description": "Live sessions on this hub (readyz)."},
                },
            },
        },
    },
}


async def openapi_endpoint(request: Request) -> Response:
    from pushgate.hub.responses import json_response

    return json_response(SPEC)
