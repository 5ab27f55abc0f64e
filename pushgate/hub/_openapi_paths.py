"""The ``paths`` of /openapi.json: operations, parameters, responses, examples and prose
(the request body schemas they reference come from :mod:`pushgate.models`)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from pushgate import models


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any], example: Any = None, **extra: Any) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"content": {"application/json": media}, **extra}


def _op(tag: str, operation_id: str, summary: str, responses: dict[str, Any], *,
        description: str | None = None, body: str | None = None, example: Any = None,
        examples: dict[str, Any] | None = None, user: bool = False,
        **extra: Any) -> dict[str, Any]:
    """One operation. ``responses`` values: a ``components.responses`` name, or a
    response object; ``body``: the request body's schema (a model's name)."""
    out: dict[str, Any] = {"tags": [tag], "operationId": operation_id, "summary": summary}
    if description:
        out["description"] = description
    if user:
        out["parameters"] = [USER_PARAM]
    if body:
        content = json_content(ref(body), example)
        if examples:
            content["content"]["application/json"]["examples"] = examples
        out["requestBody"] = {"required": True, **content}
    out.update(extra)
    out["responses"] = {status: {"$ref": f"#/components/responses/{r}"} if isinstance(r, str)
                        else r for status, r in responses.items()}
    return out


USER_PARAM = {"name": "user", "in": "path", "required": True,
              "description": "User id (the token's `sub`).",
              "schema": TypeAdapter(models.Id).json_schema()}
REPORT_PARAM = {"name": "report", "in": "path", "required": True,
                "description": "A send's report id (its `id`, or the reply's `report`).",
                "schema": TypeAdapter(models.Id).json_schema()}
REPORT_EXAMPLE = {"report": "msg-8f3a", "created_at": 1767225600.123,
                  "updated_at": 1767225601.2, "expires_at": 1769817600.123, "addressed": 2,
                  "stored": 2, "duplicates": 0, "delivered": 1, "acked": 1, "pushed": 1,
                  "push_failed": 0, "failed_by_reason": {}, "read": 0}
DEVICE_EXAMPLE = {"user": "alice", "app": "com.example.chat", "platform": "apns",
                  "token": "a1b2c3d4e5f6", "updated_at": 1767225600.5}
_REMOVED = {"description": "Whether a token was removed.", **json_content(
    {"type": "object", "properties": {"removed": {"type": "boolean"}}}, {"removed": True})}
_AUTH = {"400": "BadRequest", "401": "Unauthorized"}
#: what every route served by the router or the store can answer too
_API = {**_AUTH, "503": "Unavailable"}
_SEND_ERRORS = {**_API, "413": "PayloadTooLarge"}
_TOKEN_EXAMPLE = {"url": "ws://127.0.0.1:8080/v1/ws?token=eyJhbGciOiJIUzI1NiIs...",
                  "token": "eyJhbGciOiJIUzI1NiIs...", "expires_at": 1767225600.0}

_SEND_EXAMPLES = {
    "users": {"summary": "Stored, to two users, idempotent",
              "value": {"users": ["alice", "bob"], "body": {"title": "New message", "chat": 42},
                        "id": "msg-8f3a", "ttl": 86400}},
    "ack": {"summary": "Send with acknowledge to one device",
            "value": {"users": ["carol"], "device": "phone-1", "body": {"call": "incoming"},
                      "ack": True, "ack_timeout_ms": 3000}},
    "transient": {"summary": "Transient (ttl 0): live sessions only",
                  "value": {"users": ["alice"], "body": {"typing": True}, "ttl": 0}},
    "filter": {"summary": "Filter: all 'chat' clients of workspace w1 except erin's",
               "value": {"filter": {"workspace": "w1", "application": "chat",
                                    "exclude": [{"account": "erin"}]},
                         "body": "maintenance at 22:00"}},
    "find_any": {"summary": "Filter with find_any: one matching session, round-robin",
                 "value": {"filter": {"workspace": "w1", "application": "worker",
                                      "find_any": True},
                           "body": {"job": 7}}},
}

PATHS: dict[str, Any] = {
    "/v1/open-connection": {"post": _op(
        "sessions", "openConnection", "Mint a client token and the websocket URL to connect with",
        {"200": {"description": "Token minted.",
                 **json_content(ref("OpenConnectionResponse"), _TOKEN_EXAMPLE)},
         **_AUTH, "501": "NotConfigured", "413": "PayloadTooLarge", "429": "RateLimited"},
        description=(
            "Signs a token (lifetime `token_ttl_s`, default 1800 s) for the given identity "
            "with the first algorithm of `jwt_algorithms`. The URL's base is `public_url` when "
            "set, else derived from this request (scheme from a trusted `X-Forwarded-Proto`, "
            "host from `Host`). 501 when the gateway holds no signing key (asymmetric "
            "algorithm without `jwt_private_key`)."),
        body="OpenConnectionRequest",
        example={"user": "alice", "workspace": "default", "device": "phone-1",
                 "application": "chat"})},
    "/v1/notifications": {"post": _op(
        "send", "sendNotification",
        "Send a notification to users (stored) or to a filter (transient)",
        {"200": {"description": "Accepted (and, for `ack`, acknowledged).", **json_content(
            ref("SendResult"), {"results": [{"user": "alice", "seq": 17, "sessions": 2},
                                            {"user": "bob", "seq": 4, "sessions": 0}],
                                "sessions": 2, "report": "msg-8f3a"})},
         **_SEND_ERRORS, "408": "AckTimeout"},
        description=(
            "Exactly one of `users` / `filter`.\n\n"
            "* `users` with `ttl` > 0 (default `event_ttl_s`, 30 days): one event is stored "
            "per user (durable before delivery, new `seq`), then pushed to the user's live "
            "sessions (to those of `device` only, when given). A repeated `id` stores nothing "
            "and returns the first seq with `duplicate: true`; it is not pushed again (except "
            "an `ack` send, which is re-pushed to be acked).\n"
            "* `users` with `ttl: 0`, and every `filter` send: transient — pushed to live "
            "sessions only, never stored, `seq` is null.\n"
            "* `ack: true` (one user, stored): the reply waits until a session of the user (of "
            "`device`, when given) acks the seq: 200 with `acked_by`, or 408 after "
            "`ack_timeout_ms`; the event stays stored either way."),
        body="SendRequest", examples=_SEND_EXAMPLES),
        "get": _op(
            "reports", "listReports", "The latest sends' delivery reports, newest first",
            {"200": {"description": "Reports.", **json_content(
                ref("ReportList"), {"reports": [REPORT_EXAMPLE]})},
             **_API},
            parameters=[{"name": "limit", "in": "query", "required": False,
                         "description": "At most this many reports (1..1000).",
                         "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                    "default": 20}}])},
    "/v1/notifications/{report}": {"get": _op(
        "reports", "getReport", "A send's delivery report",
        {"200": {"description": "The report.", **json_content(ref("Report"), REPORT_EXAMPLE)},
         **_API, "404": "UnknownReport"},
        description=(
            "What happened to the send whose reply carried `report`, summed over every hub, "
            "router and bridge: users addressed, events stored, duplicates, delivered live, "
            "acked, pushed / failed by reason, read. Counts are written every "
            "`report_flush_interval_s` (0.5 s): a report lags by about that much. Kept as "
            "long as its events (TTL)."),
        parameters=[REPORT_PARAM])},
    "/v1/notifications/{report}/users/{user}": {"get": _op(
        "reports", "getReportUser", "One user's status in a delivery report",
        {"200": {"description": "The user's status.", **json_content(ref("ReportUser"), {
            "report": "msg-8f3a", "user": "alice", "seq": 17, "stored": True,
            "delivered": True, "acked": True, "read": False, "created_at": 1767225600.123,
            "expires_at": 1769817600.123})},
         **_API, "404": "UnknownReport"},
        description=("From the user's stored event of the send: delivered live, acked, and "
                     "its read mark. 404 `unknown_report_user` when the user has no stored "
                     "event of it (not addressed, transient, or expired)."),
        parameters=[REPORT_PARAM, USER_PARAM])},
    "/v1/users/{user}/events": {"get": _op(
        "inbox", "userEvents", "Fetch a user's stored events after a seq (the diff)",
        {"200": {"description": "Events.", **json_content(ref("EventList"), {
            "events": [{"seq": 17, "id": "msg-8f3a", "body": {"title": "New message", "chat": 42},
                        "created_at": 1767225600.123}],
            "head": 17, "more": False})},
         **_API, "404": "UnknownUser"},
        description=(
            "Live (stored, unexpired) events with `seq > after`, ascending. `more` is true when "
            "`limit` events were returned (there may be more: fetch again with `after` = the "
            "last seq). Large bodies are returned in full here."),
        parameters=[
            USER_PARAM,
            {"name": "after", "in": "query", "required": False,
             "description": "Return events with a seq above this one.",
             "schema": {"type": "integer", "minimum": 0, "maximum": models.MAX_SEQ,
                        "default": 0}},
            {"name": "limit", "in": "query", "required": False,
             "description": "At most this many events; 1..`fetch_max_limit` (default setting "
                            "1000). Default min(100, fetch_max_limit).",
             "schema": {"type": "integer", "minimum": 1, "default": 100}},
        ])},
    "/v1/users/{user}/read": {"post": _op(
        "inbox", "userMarkRead", "Mark seqs (and inclusive ranges) as read",
        {"200": {"description": "Read state after the update.", **json_content(
            ref("ReadResult"), {"head": 17, "unread": 4, "live": 17})},
         **_API, "404": "UnknownUser", "413": "PayloadTooLarge"},
        description=("Only live seqs are recorded: unknown, expired and future seqs are "
                     "ignored, so `unread` = `live` - read stays exact. Idempotent."),
        user=True, body="ReadRequest", example={"seqs": [17], "ranges": [[1, 12]]})},
    "/v1/users/{user}/read-state": {"get": _op(
        "inbox", "userReadState", "Head seq, unread count and the read seqs as ranges",
        {"200": {"description": "Read state.", **json_content(
            ref("ReadState"), {"head": 17, "unread": 4, "live": 17,
                               "read": [[1, 12], [17, 17]]})},
         **_API, "404": "UnknownUser"},
        user=True)},
    "/v1/users/{user}/sessions": {"get": _op(
        "sessions", "userSessions", "Live websocket sessions of a user (oldest first)",
        {"200": {"description": "Sessions.", **json_content(ref("SessionList"), {
            "sessions": [{"session": "1313b35605c14b758b13b60dfad92721",
                          "hub": "hub-7fb82f563454", "connected_at": 1767225600.5,
                          "workspace": "default", "device": "phone-1",
                          "application": "chat"}]})},
         **_API},
        description="An unknown user or a user without sessions gets an empty list.",
        user=True)},
    "/v1/devices": {
        "post": _op(
            "devices", "registerOwnDevice", "A client registers the push token of its app install",
            {"200": {"description": "Stored.", **json_content(ref("Device"), DEVICE_EXAMPLE)},
             **_API, "403": "Forbidden"},
            description=("Authenticated with the client's own JWT (not an API key); the token "
                         "is stored for the JWT's user. A token already known moves to this "
                         "user and app. 403 for a token of the keyless `/open-connection`."),
            body="DeviceBody", example={"platform": "fcm", "token": "dGhpcyBpcyBhbiBGQ00gdG9rZW4"},
            security=[{"clientToken": []}]),
        "delete": _op(
            "devices", "removeOwnDevice", "A client removes its push token (logout)",
            {"200": _REMOVED, **_API, "403": "Forbidden"}, body="DeviceBody",
            security=[{"clientToken": []}]),
    },
    "/v1/users/{user}/devices": {
        "get": _op(
            "devices", "userDevices", "Push tokens of a user",
            {"200": {"description": "Devices.", **json_content(
                {"type": "object", "properties": {
                    "devices": {"type": "array", "items": ref("Device")}}},
                {"devices": [DEVICE_EXAMPLE]})},
             **_API},
            user=True),
        "put": _op(
            "devices", "registerUserDevice", "Register a push token for a user (server side)",
            {"200": {"description": "Stored.", **json_content(ref("Device"), DEVICE_EXAMPLE)},
             **_API},
            user=True, body="DeviceBody",
            example={"platform": "apns", "token": "a1b2c3d4e5f6", "app": "com.example.chat"}),
        "delete": _op(
            "devices", "removeUserDevice", "Remove a user's push token",
            {"200": _REMOVED, **_API}, user=True, body="DeviceBody"),
    },
    "/v1/ws": {"get": _op(
        "sessions", "websocket", "Websocket upgrade for clients (see docs/protocol.md)",
        {"101": {"description": "Switching protocols; the first frame is `hello`."},
         "426": {"description": "Not a websocket upgrade (no `Upgrade: websocket` and "
                                "`Connection: Upgrade`, e.g. a proxy dropped them); "
                                "`invalid_request`, `field` `Upgrade`.",
                 **json_content(ref("Error"))}},
        description=(
            "Client connection (JSON text frames). Authenticated with a client token (query "
            "`token` or `Authorization: Bearer <token>`), not an API key. Authentication, "
            "origin and parameter failures are reported after the upgrade, as a close code "
            "(4100 bad token, 4101 expired token, 4103 origin, 4104 bad `after`)."),
        security=[{}, {"clientToken": []}],
        parameters=[
            {"name": "token", "in": "query", "required": False,
             "description": "Client JWT (else the Authorization header is used).",
             "schema": {"type": "string"}},
            {"name": "after", "in": "query", "required": False,
             "description": "Resume: the server first pushes stored events with a seq above "
                            "this one (at most `fetch_max_limit`).",
             "schema": {"type": "integer", "minimum": 0, "maximum": models.MAX_SEQ}},
        ])},
    "/open-connection": {"post": _op(
        "pushca", "pushcaOpenConnection", "Pushca alias of /v1/open-connection",
        {"200": {"description": "Token minted.",
                 **json_content(ref("PushcaOpenConnectionResponse"))},
         **_AUTH, "403": "Forbidden", "501": "NotConfigured", "413": "PayloadTooLarge",
         "429": "RateLimited"},
        description=(
            "`client.accountId` → `user` (required), `workSpaceId` → `workspace` (default "
            "`default`), `deviceId` → `device`, `applicationId` → `application`. Other "
            "top-level fields are ignored. The reply is the native one plus Pushca's "
            "connection string `ws(s)://host[:port]/{jwt}` as `externalAdvertisedUrl`, "
            "`internalAdvertisedUrl` and `browserAdvertisedUrl`, and `pusherInstanceId` "
            "(the hub's id). With `pushca_public_open_connection` on, a request without "
            "`Authorization` is taken for the configured workspaces and applications "
            "(403 otherwise) at `pushca_public_rate_per_ip` (429 over it)."),
        body="PushcaOpenConnectionRequest",
        example={"client": {"workSpaceId": "w1", "accountId": "alice", "deviceId": "phone-1",
                            "applicationId": "chat"}})},
    "/send-notification": {"post": _op(
        "pushca", "pushcaSendNotification", "Pushca alias: transient filter send",
        {"200": {"description": "Delivered to `sessions` live sessions.",
                 **json_content(ref("SendResult"), {"results": [], "sessions": 3})},
         **_SEND_ERRORS},
        description=(
            "Translated to a native filter send: `message` → `body`, `id` → `id`, "
            "`filter.{workSpaceId,accountId,deviceId,applicationId}` → "
            "`filter.{workspace,account,device,application}`, `findAny` → `find_any`, "
            "`exclude[]` likewise. Transient: never stored. Other top-level fields are "
            "ignored. Reply: the native send result."),
        body="PushcaSendRequest",
        example={"id": "m-1", "message": "hello",
                 "filter": {"workSpaceId": "w1", "applicationId": "chat", "findAny": False,
                            "exclude": [{"accountId": "erin"}]}})},
    "/send-notification-with-acknowledge": {"post": _op(
        "pushca", "pushcaSendNotificationWithAcknowledge",
        "Pushca alias: stored send to one user, wait for the ack",
        {"200": {"description": "Acknowledged.", **json_content(ref("SendResult"), {
            "results": [{"user": "carol", "seq": 9, "sessions": 1,
                         "acked_by": "1313b35605c14b758b13b60dfad92721"}],
            "sessions": 1})},
         **_SEND_ERRORS, "408": "AckTimeout"},
        description=(
            "Translated to `{\"users\": [client.accountId], \"device\": client.deviceId, "
            "\"body\": message, \"id\": id, \"ack\": true}` with the default TTL and "
            "`ack_timeout_ms`. `client.workSpaceId` and `client.applicationId` are accepted "
            "but not used. 200 = acked (`acked_by`), 408 = nobody acked in time (the event "
            "stays stored)."),
        body="PushcaSendAckRequest",
        example={"id": "m-2", "message": {"call": "incoming"},
                 "client": {"workSpaceId": "default", "accountId": "carol",
                            "deviceId": "phone-1", "applicationId": None}})},
    "/healthz": {"get": _op(
        "operations", "healthz", "Liveness: the process answers",
        {"200": {"description": "Alive.", **json_content(ref("Status"), {"status": "ok"})}},
        security=[])},
    "/readyz": {"get": _op(
        "operations", "readyz", "Readiness: started and not shutting down",
        {"200": {"description": "Ready.", **json_content(
            ref("Status"), {"status": "ready", "sessions": 12})},
         "503": {"description": "`starting`, `stopping`, or `no_router` (a cluster hub "
                                "linked to no router).", **json_content(
             ref("Status"), {"status": "stopping"})}},
        security=[])},
    "/metrics": {"get": _op(
        "operations", "metrics", "Prometheus metrics (text exposition format 0.0.4)",
        {"200": {"description": "Metrics.", "content": {
            "text/plain; version=0.0.4; charset=utf-8": {"schema": {"type": "string"}}}}},
        security=[])},
    "/openapi.json": {"get": _op(
        "operations", "openapi", "This OpenAPI document",
        {"200": {"description": "OpenAPI 3.1 document.", **json_content({"type": "object"})}},
        security=[])},
}
