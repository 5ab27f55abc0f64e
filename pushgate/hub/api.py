"""The HTTP API (server-to-server, API key) and the Pushca-compatible aliases.

Every error is a :class:`~pushgate.errors.PushgateError` mapped in one place
(:func:`pushgate.hub.responses.error_response`) to
``{"error": {"code", "message", "field", "retryable"}}`` and the status of
:data:`pushgate.errors.KINDS`. See docs/http-api.md.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pushgate import models
from pushgate.auth import PUSHCA_SCOPE, Identity, bearer
from pushgate.errors import InvalidRequest, PushgateError, Unauthorized
from pushgate.hub import bodies
from pushgate.hub.limits import rate_limited_response
from pushgate.hub.node import HubNode
from pushgate.hub.pathids import path_id, raw_segments
from pushgate.hub.responses import (
    device_payload,
    error_response,
    events_payload,
    json_response,
    read_state_payload,
    report_payload,
    report_user_payload,
)
from pushgate.router.base import MAX_REPORTS_LIMIT
from pushgate.router.requests import from_pushca, parse_send


def _node(request: Request) -> HubNode:
    return request.app.state.node  # type: ignore[no-any-return]


async def read_json(request: Request, limit: int) -> Any:
    """Read and decode a JSON body of at most ``limit`` bytes (413 beyond)."""
    bodies.check_length(request.headers.get("content-length"), limit)
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise bodies.too_large(limit)
    return bodies.decode(chunks)


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _query_int(request: Request, name: str, default: int, minimum: int, maximum: int) -> int:
    return query_int(request.query_params.get(name), name, default, minimum, maximum)


def query_int(raw: str | None, name: str, default: int, minimum: int, maximum: int) -> int:
    """The integer query parameter ``name`` (``raw``; absent or empty: ``default``) in
    ``minimum..maximum``: ASCII digits with an optional sign (not ``1.0``, ``1e3``,
    ``1_000``, spaces or other scripts' digits). :class:`InvalidRequest` naming it."""
    if raw is None or raw == "":
        return default
    if not _INTEGER.fullmatch(raw):
        raise InvalidRequest(f"'{name}' must be an integer", field=name)
    digits = raw.lstrip("+-").lstrip("0") or "0"
    value = int(digits) if len(digits) <= 40 else None  # (int() refuses 4300+ digits)
    if value is not None and raw.startswith("-"):
        value = -value
    if value is None or not minimum <= value <= maximum:
        raise InvalidRequest(f"'{name}' must be between {minimum} and {maximum}", field=name)
    return value


def _user(request: Request) -> str:
    """``/v1/users/{user}/…`` (and ``/v1/notifications/{report}/users/{user}``)"""
    if "report" in request.path_params:
        return path_id(request, "user", 5, 6)
    return path_id(request, "user", 3, 5)


async def _server(request: Request) -> HubNode:
    node = _node(request)
    node.api_keys.check(request.headers.get("authorization"))
    return node


# -- endpoints ----------------------------------------------------------------------------


async def open_connection(request: Request) -> Response:
    refused = _node(request).conn_limits.limit_open_connection(request)
    if refused is not None:  # 429 rate_limited: open_connection_rate_per_ip
        _node(request).metrics.error("rate_limited")
        return refused
    node = await _server(request)
    body = await read_json(request, node.settings.max_request_bytes)
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", field="body")
    return json_response(node.open_connection(request, _identity(body)))


def _identity(body: Any) -> Identity:
    req = models.parse(models.OpenConnectionRequest, body)
    return Identity(req.user, req.workspace or "default", req.device or "",
                    req.application or "")


def _pushca_identity(body: Any) -> Identity:
    client = models.parse(models.PushcaOpenConnectionRequest, body).client
    return Identity(client.accountId, client.workSpaceId or "default", client.deviceId or "",
                    client.applicationId or "")


async def notifications(request: Request) -> Response:
    """``/v1/notifications``: ``POST`` a send (when the guard did not serve it itself),
    ``GET`` the latest reports."""
    if request.method == "POST":
        return await send_notification(request)
    return await list_reports(request)


async def send_notification(request: Request) -> Response:
    node = await _server(request)
    body = await read_json(request, node.settings.max_request_bytes)
    return await _send(node, body)


async def _send(node: HubNode, body: Any) -> Response:
    result = await node.router.send(parse_send(body, node.send_limits))
    return json_response(result.to_dict())


# -- delivery reports -----------------------------------------------------------------------

MAX_REPORTS = MAX_REPORTS_LIMIT  # GET /v1/notifications?limit=


async def list_reports(request: Request) -> Response:
    """``GET /v1/notifications?limit=``: the latest sends' reports, newest first."""
    node = await _server(request)
    limit = _query_int(request, "limit", 20, 1, MAX_REPORTS)
    return json_response({"reports": [report_payload(r) for r in
                                      await node.router.latest_reports(limit)]})


async def get_report(request: Request) -> Response:
    """``GET /v1/notifications/{report}``: one send's delivery report."""
    node = await _server(request)
    report = path_id(request, "report", 3, 4)
    return json_response(report_payload(await node.router.report(report)))


async def get_report_user(request: Request) -> Response:
    """``GET /v1/notifications/{report}/users/{user}``: one user's status in a report."""
    segments = raw_segments(request)
    if segments is not None and len(segments) == 4:  # a report id holding "/users/"
        return await get_report(request)
    node = await _server(request)
    report = path_id(request, "report", 3, 6)
    return json_response(report_user_payload(
        await node.router.report_user(report, _user(request))))


async def user_events(request: Request) -> Response:
    node = await _server(request)
    user = _user(request)
    after = _query_int(request, "after", 0, 0, models.MAX_SEQ)
    limit = _query_int(request, "limit", min(100, node.settings.fetch_max_limit), 1,
                       node.settings.fetch_max_limit)
    events, head, more = await node.router.fetch(user, after, limit)
    return json_response(events_payload(events, head, more))


async def user_read(request: Request) -> Response:
    node = await _server(request)
    user = _user(request)
    body = models.parse(models.ReadRequest,
                        await read_json(request, node.settings.max_request_bytes))
    ranges = tuple((first, last) for first, last in body.ranges)
    rs = await node.router.mark_read(user, tuple(body.seqs), ranges)
    return json_response({"head": rs.head, "unread": rs.unread, "live": rs.live})


async def user_read_state(request: Request) -> Response:
    node = await _server(request)
    rs = await node.router.read_state(_user(request))
    return json_response(read_state_payload(rs))


async def user_sessions(request: Request) -> Response:
    node = await _server(request)
    sessions = await node.router.sessions(_user(request))
    return json_response({"sessions": [
        {"session": s.session_id, "hub": s.hub, "connected_at": s.connected_at,
         "workspace": s.workspace, "device": s.device, "application": s.application}
        for s in sessions]})


# -- devices (offline push) -----------------------------------------------------------------


async def _device_body(request: Request, node: HubNode) -> tuple[str, str, str | None]:
    body = models.parse(models.DeviceBody,
                        await read_json(request, node.settings.max_request_bytes))
    return body.platform, body.token, body.app


async def client_devices(request: Request) -> Response:
    """``POST`` / ``DELETE /v1/devices``: a client (its own JWT) registers or removes the
    push token of its app install; ``app`` defaults to the token's ``app`` claim."""
    node = _node(request)
    raw = bearer(request.headers.get("authorization"))
    if raw is None:
        raise Unauthorized("send the client token as 'Authorization: Bearer <JWT>'",
                           field="Authorization")
    client_token = node.tokens.verify(raw)
    client_token.require_native()
    identity = client_token.identity
    platform, token, app = await _device_body(request, node)
    app = app or identity.application or "default"
    if request.method == "DELETE":
        return json_response({"removed": await node.router.remove_device(
            identity.user, app, platform, token)})
    return json_response(device_payload(
        await node.router.register_device(identity.user, app, platform, token)))


async def user_devices(request: Request) -> Response:
    """``GET`` / ``PUT`` / ``DELETE /v1/users/{user}/devices`` (API key)."""
    node = await _server(request)
    user = _user(request)
    if request.method in ("GET", "HEAD"):  # (Starlette serves HEAD where GET is)
        return json_response({"devices": [device_payload(d) for d in
                                          await node.router.devices(user)]})
    platform, token, app = await _device_body(request, node)
    app = app or "default"
    if request.method == "DELETE":
        return json_response({"removed": await node.router.remove_device(user, app, platform,
                                                                       token)})
    return json_response(device_payload(await node.router.register_device(user, app, platform,
                                                                        token)))


# -- Pushca-compatible aliases -------------------------------------------------------------


async def pushca_open_connection(request: Request) -> Response:
    """Pushca's ``/open-connection``: the native reply plus Pushca's three advertised
    URLs (``ws(s)://host/{jwt}``, Pushca's connection string) and ``pusherInstanceId``
    (this hub's id). Keyless when ``pushca_public_open_connection`` is on
    (:mod:`pushgate.hub.public_open`). Errors are answered here, not by the app's
    handler, so that the CORS wrapper of the keyless mode adds its headers to them."""
    node = _node(request)
    if request.method == "OPTIONS":  # no Origin: not a CORS preflight, nothing to count
        return Response(status_code=204, headers={"Allow": "POST, OPTIONS"})
    try:
        return await _pushca_open_connection(request, node)
    except PushgateError as e:
        node.metrics.error(e.code)
        return error_response(e)


async def _pushca_open_connection(request: Request, node: HubNode) -> Response:
    refused = node.conn_limits.limit_open_connection(request)
    if refused is not None:  # 429 rate_limited: open_connection_rate_per_ip
        node.metrics.error("rate_limited")
        return refused
    public = node.public_open
    keyless = public.keyless(request.headers.get("authorization"))
    if keyless:
        wait = public.admit(request.client.host if request.client is not None else None)
        if wait > 0:  # 429 rate_limited: pushca_public_rate_per_ip
            node.metrics.error("rate_limited")
            return rate_limited_response(wait, "keyless open-connection requests")
    else:
        node.api_keys.check(request.headers.get("authorization"))
    body = await read_json(request, node.settings.max_request_bytes)
    identity = _pushca_identity(body)
    if keyless:
        public.check(identity)
    native = node.open_connection(request, identity, PUSHCA_SCOPE if keyless else None)
    pushca_url = f"{node.ws_base(request)}/{native['token']}"
    return json_response({**native, "externalAdvertisedUrl": pushca_url,
                          "internalAdvertisedUrl": pushca_url,
                          "browserAdvertisedUrl": pushca_url, "pusherInstanceId": node.hub_id})


async def pushca_send(request: Request) -> Response:
    node = await _server(request)
    body = await read_json(request, node.settings.max_request_bytes)
    return await _send(node, from_pushca(body, acknowledge=False))


async def pushca_send_ack(request: Request) -> Response:
    node = await _server(request)
    body = await read_json(request, node.settings.max_request_bytes)
    return await _send(node, from_pushca(body, acknowledge=True))


# -- operations -----------------------------------------------------------------------------


async def websocket_over_http(request: Request) -> Response:
    """``GET /v1/ws`` without a websocket upgrade (opened in a browser tab, or through a
    proxy that drops ``Upgrade`` / ``Connection``): ``426`` naming what is missing."""
    _node(request).metrics.error("invalid_request")
    # (a Pushca connection string is named, never echoed: it is a token)
    where = "/v1/ws" if request.url.path == "/v1/ws" else "a connection string (/{jwt})"
    resp = json_response({"error": {
        "code": "invalid_request", "retryable": False, "field": "Upgrade",
        "message": f"not a websocket upgrade: {where} needs 'Upgrade: websocket' and "
                   "'Connection: Upgrade' (a proxy in front must pass both: see "
                   "docs/deploy.md)"}}, 426)
    resp.headers["Upgrade"] = "websocket"
    return resp


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    node = _node(request)
    if not node.ready:
        status = ("stopping" if node.shutting_down else "starting" if not node.started
                  else "no_router")  # (a cluster hub that lost every router link)
        return json_response({"status": status}, 503)
    return json_response({"status": "ready", "sessions": len(node.registry)})


async def metrics(request: Request) -> Response:
    return Response(_node(request).metrics.render(),
                    media_type="text/plain; version=0.0.4; charset=utf-8")
