"""The request models (pushgate.models): the HTTP bodies they validate keep their
statuses, codes and fields, and they agree with the hand-written validators of the
websocket frames (``parse_read``, ``parse_device``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pushgate import models
from pushgate.auth import Identity
from pushgate.errors import InvalidRequest
from pushgate.hub.app import create_app
from pushgate.protocol import MAX_READ_ITEMS, parse_device, parse_read
from pushgate.settings import Settings

# --- read marks: parse_read (websocket frame) and ReadRequest (HTTP) -------------------------

READ_OK: list[Any] = [
    {"seqs": [1]},
    {"ranges": [[1, 1]]},
    {"seqs": [17], "ranges": [[1, 12]], "type": "read", "rid": 3},  # other fields ignored
    {"seqs": [], "ranges": [[2, 4]]},
    {"seqs": [1] * (MAX_READ_ITEMS - 1), "ranges": [[1, 2]]},
    {"seqs": [2**63 - 1]},
]
READ_BAD: list[tuple[Any, str]] = [
    ({}, "seqs"),
    ({"seqs": []}, "seqs"),
    ({"seqs": [], "ranges": []}, "seqs"),
    ({"seqs": None}, "seqs"),
    ({"seqs": 5}, "seqs"),
    ({"ranges": "x"}, "ranges"),
    ({"ranges": None, "seqs": [1]}, "ranges"),
    ({"seqs": [0]}, "seqs"),
    ({"seqs": [True]}, "seqs"),
    ({"seqs": [1.0]}, "seqs"),
    ({"seqs": ["1"]}, "seqs"),
    ({"ranges": [[1]]}, "ranges"),
    ({"ranges": [[2, 1]]}, "ranges"),
    ({"ranges": [[1, 2, 3]]}, "ranges"),
    ({"ranges": [[1, "2"]]}, "ranges"),
    ({"ranges": [[0, 1]]}, "ranges"),
    ({"ranges": [[1, True]]}, "ranges"),
    ({"ranges": [{"first": 1, "last": 2}]}, "ranges"),
    ({"seqs": [1] * (MAX_READ_ITEMS + 1)}, "seqs"),
    ({"seqs": [1] * MAX_READ_ITEMS, "ranges": [[1, 2]]}, "seqs"),
    ({"seqs": [0], "ranges": 5}, "ranges"),  # several faults: the containers first
    ({"seqs": [0], "ranges": [[2, 1]]}, "seqs"),
]


@pytest.mark.parametrize("obj", READ_OK, ids=range(len(READ_OK)))
def test_parse_read_and_model_accept(obj: Any) -> None:
    seqs, ranges = parse_read(obj)
    req = models.parse(models.ReadRequest, obj)
    assert (tuple(req.seqs), tuple(map(tuple, req.ranges))) == (seqs, ranges)


@pytest.mark.parametrize(("obj", "field"), READ_BAD, ids=range(len(READ_BAD)))
def test_parse_read_and_model_reject_naming_the_field(obj: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as by_hand:
        parse_read(obj)
    with pytest.raises(InvalidRequest) as by_model:
        models.parse(models.ReadRequest, obj)
    assert by_hand.value.field == by_model.value.field == field
    assert field in by_model.value.message


# --- devices: parse_device (websocket frame) and DeviceBody (HTTP) ---------------------------

DEVICE_OK: list[Any] = [
    {"platform": "apns", "token": "t"},
    {"platform": "fcm", "token": "x" * 4096, "app": "com.example"},
    {"platform": "fcm", "token": "t", "app": None},
]
DEVICE_BAD: list[tuple[Any, str]] = [
    ({}, "platform"),
    ({"platform": None, "token": "t"}, "platform"),
    ({"platform": "mpns", "token": "t"}, "platform"),
    ({"platform": "APNS", "token": "t"}, "platform"),
    ({"platform": ["apns"], "token": "t"}, "platform"),
    ({"platform": "apns"}, "token"),
    ({"platform": "apns", "token": ""}, "token"),
    ({"platform": "apns", "token": 5}, "token"),
    ({"platform": "apns", "token": None}, "token"),
    ({"platform": "apns", "token": "t", "app": ""}, "app"),
    ({"platform": "apns", "token": "t", "app": 5}, "app"),
    ({"token": 5, "platform": "x"}, "platform"),
]


@pytest.mark.parametrize("obj", DEVICE_OK, ids=range(len(DEVICE_OK)))
def test_parse_device_and_model_accept(obj: Any) -> None:
    body = models.parse(models.DeviceBody, obj)
    assert parse_device(obj) == (body.platform, body.token, body.app)


@pytest.mark.parametrize(("obj", "field"), DEVICE_BAD, ids=range(len(DEVICE_BAD)))
def test_parse_device_and_model_reject_naming_the_field(obj: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as by_hand:
        parse_device(obj)
    with pytest.raises(InvalidRequest) as by_model:
        models.parse(models.DeviceBody, obj)
    assert by_hand.value.field == by_model.value.field == field
    assert field in by_model.value.message


def test_the_ack_timeout_setting_has_the_models_bound() -> None:
    bounds = {type(m).__name__: m for m in Settings.model_fields["ack_timeout_ms"].metadata}
    assert bounds["Le"].le == models.MAX_ACK_TIMEOUT_MS


# --- the HTTP bodies validated by the models: status, code and field on the wire -------------

L256, L255 = "x" * 256, "x" * 255
# (method, path, body, status, field); a bytes body is sent as is
HTTP: list[tuple[str, str, Any, int, str | None]] = [
    ("POST", "/v1/open-connection", b"[]", 400, "body"),
    ("POST", "/v1/open-connection", {}, 400, "user"),
    ("POST", "/v1/open-connection", {"user": None}, 400, "user"),
    ("POST", "/v1/open-connection", {"user": ""}, 400, "user"),
    ("POST", "/v1/open-connection", {"user": 5}, 400, "user"),
    ("POST", "/v1/open-connection", {"user": L256}, 400, "user"),
    ("POST", "/v1/open-connection", {"user": L255}, 200, None),
    ("POST", "/v1/open-connection", {"user": "a\x1fb"}, 400, "user"),
    ("POST", "/v1/open-connection", {"user": "a\x7fb"}, 400, "user"),
    ("POST", "/v1/open-connection", {"user": "a\x85b"}, 400, "user"),
    ("POST", "/v1/open-connection", {"user": "a\xa0b"}, 200, None),
    ("POST", "/v1/open-connection", {"user": "a", "workspace": ""}, 200, None),
    ("POST", "/v1/open-connection", {"user": "a", "workspace": 5}, 400, "workspace"),
    ("POST", "/v1/open-connection", {"user": "a", "device": "d\n"}, 400, "device"),
    ("POST", "/v1/open-connection", {"user": "a", "application": L256}, 400, "application"),
    ("POST", "/v1/open-connection", {"user": "a", "zzz": 1, "extra": 1}, 400, "extra"),
    ("POST", "/v1/open-connection", {"user": 5, "extra": 1}, 400, "extra"),
    ("POST", "/v1/open-connection", {"workspace": 5, "user": 5}, 400, "user"),
    ("POST", "/v1/open-connection", {"user": "a", "workspace": None, "device": None,
                                     "application": None}, 200, None),
    ("POST", "/open-connection", b"[]", 400, "client"),
    ("POST", "/open-connection", {}, 400, "client"),
    ("POST", "/open-connection", {"client": None}, 400, "client"),
    ("POST", "/open-connection", {"client": 5}, 400, "client"),
    ("POST", "/open-connection", {"client": {}}, 400, "client.accountId"),
    ("POST", "/open-connection", {"client": {"accountId": ""}}, 400, "client.accountId"),
    ("POST", "/open-connection", {"client": {"accountId": 5}}, 400, "client.accountId"),
    ("POST", "/open-connection", {"client": {"accountId": "a", "userId": 1}}, 400, "client"),
    ("POST", "/open-connection", {"client": {"accountId": "a", "workSpaceId": 5}}, 400,
     "client.workSpaceId"),
    ("POST", "/open-connection", {"client": {"accountId": "a", "deviceId": L256}}, 400,
     "client.deviceId"),
    ("POST", "/open-connection", {"client": {"accountId": "a", "applicationId": "a\n"}}, 400,
     "client.applicationId"),
    ("POST", "/open-connection", {"client": {"accountId": "a", "workSpaceId": "",
                                             "findAny": True, "exclude": [1]}, "other": 1},
     200, None),
    ("POST", "/open-connection", {"client": {"workSpaceId": 5, "accountId": 5}}, 400,
     "client.accountId"),
    ("POST", "/open-connection", {"client": {"accountId": L255}}, 200, None),
    ("PUT", "/v1/users/a/devices", b"[]", 400, "body"),
    ("PUT", "/v1/users/a/devices", {}, 400, "platform"),
    ("PUT", "/v1/users/a/devices", {"platform": "x", "token": "t"}, 400, "platform"),
    ("PUT", "/v1/users/a/devices", {"platform": None}, 400, "platform"),
    ("PUT", "/v1/users/a/devices", {"platform": "apns"}, 400, "token"),
    ("PUT", "/v1/users/a/devices", {"platform": "apns", "token": ""}, 400, "token"),
    ("DELETE", "/v1/users/a/devices", {"platform": "apns", "token": 5}, 400, "token"),
    ("DELETE", "/v1/users/a/devices", {"platform": "apns", "token": "t", "app": ""}, 400,
     "app"),
    ("PUT", "/v1/users/a/devices", {"platform": "apns", "token": "t", "app": 5}, 400, "app"),
    ("PUT", "/v1/users/a/devices", {"platform": "apns", "token": "t", "zz": 1}, 400, "zz"),
    ("PUT", "/v1/users/a/devices", {"token": 5, "platform": "x"}, 400, "platform"),
    ("PUT", "/v1/users/a/devices", {"platform": "fcm", "token": "t", "user": "b"}, 400,
     "user"),
    ("POST", "/v1/devices", {"platform": "fcm"}, 400, "token"),
    ("DELETE", "/v1/devices", {"platform": "fcm", "token": "t", "user": "b"}, 400, "user"),
    ("POST", "/v1/users/a/read", b"[]", 400, "body"),
    ("POST", "/v1/users/a/read", {}, 400, "seqs"),
    ("POST", "/v1/users/a/read", {"seqs": None}, 400, "seqs"),
    ("POST", "/v1/users/a/read", {"ranges": "x"}, 400, "ranges"),
    ("POST", "/v1/users/a/read", {"seqs": [True]}, 400, "seqs"),
    ("POST", "/v1/users/a/read", {"ranges": [[2, 1]]}, 400, "ranges"),
    ("POST", "/v1/users/a/read", {"seqs": [1] * 10001}, 400, "seqs"),
    ("POST", "/v1/users/a/read", {"seqs": [0], "ranges": 5}, 400, "ranges"),
    ("POST", "/send-notification", {"message": "m", "filter": {"workSpaceId": 5}}, 400,
     "filter.workspace"),
    ("POST", "/send-notification-with-acknowledge",
     {"message": "m", "client": {"accountId": 5}}, 400, "users"),
    ("POST", "/send-notification-with-acknowledge",
     {"message": "m", "client": {"accountId": ""}}, 400, "client.accountId"),
]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(jwt_secret="s" * 32, api_keys=["k"]))
    token, _ = app.state.node.tokens.mint(Identity("alice"), 60)
    keys = {"/v1/devices": f"Bearer {token}"}

    async def auth(request: httpx.Request) -> None:
        request.headers["authorization"] = keys.get(request.url.path, "Bearer k")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw",
                                 event_hooks={"request": [auth]}) as client:
        yield client


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), HTTP,
                         ids=[f"{m} {p} {i}" for i, (m, p, *_) in enumerate(HTTP)])
async def test_http_body_errors_keep_status_code_and_field(
    http: httpx.AsyncClient, method: str, path: str, body: Any, status: int, field: str | None
) -> None:
    if isinstance(body, bytes):
        r = await http.request(method, path, content=body)
    else:
        r = await http.request(method, path, json=body)
    assert r.status_code == status, r.text
    if status == 400:
        error = r.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_request", field)
        assert field in error["message"]
