"""Send-body validation (native shape, its ``push`` block) and the Pushca translation.

The accepted and rejected bodies are tables. Each case is checked twice: against the
hand-written validators that serve traffic (``parse_send`` with ``parse_push`` inside,
``from_pushca``), and against the models that describe the same bodies in
/openapi.json (:mod:`pushgate.models`): both accept, or both reject naming the same
field with the same error class. A bound changed on one side only fails here.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pushgate import models
from pushgate.errors import InvalidRequest, PayloadTooLarge
from pushgate.router.requests import Limits, SendRequest, from_pushca, parse_send, pushca_identity
from pushgate.router.routing import ClientRef, Filter

LIMITS = Limits(max_body_bytes=100, max_users=3, default_ttl_s=3600, max_ttl_s=86400,
                ack_timeout_ms=5000)


def ok(obj: Any, limits: Limits = LIMITS) -> SendRequest:
    return parse_send(obj, limits)


def with_push(push: Any, **more: Any) -> dict[str, Any]:
    return {"users": ["a"], "body": 1, "push": push, **more}


# --- tables ------------------------------------------------------------------------------

SEND_OK: dict[str, Any] = {
    "default_ttl": {"users": ["alice"], "body": {"k": [1, "x"]}},
    "ttl_0": {"users": ["alice"], "body": 1, "ttl": 0},
    "duplicate_users": {"users": ["b", "a", "b"], "body": 1},
    "all_optional": {"users": ["alice"], "body": "hi", "ttl": 86400, "id": "k1",
                     "push": {"title": "t"}, "device": "phone", "ack": True,
                     "ack_timeout_ms": 60000},
    "filter": {"filter": {"workspace": "w", "account": "alice", "device": None,
                          "application": "app", "find_any": True,
                          "exclude": [{"device": "phone"}, {}]},
               "body": {}, "ttl": 600},
    "null_body": {"users": ["a"], "body": None},
    "body_at_limit": {"users": ["a"], "body": "x" * 98},  # 100 bytes with its quotes
    "users_at_limit": {"users": ["a", "b", "c"], "body": 1},
    # boundaries and edge values
    "ttl_max": {"users": ["a"], "body": 1, "ttl": 86400},
    "ack_timeout_1": {"users": ["a"], "body": 1, "ack": True, "ack_timeout_ms": 1},
    "null_optionals": {"users": ["a"], "filter": None, "body": 1, "id": None, "push": None,
                       "device": None, "ack_timeout_ms": None},
    "ids_255": {"users": ["u" * 255], "body": 1, "id": "i" * 255, "device": "d" * 255},
    "ids_unicode_and_nbsp": {"users": ["élodie 😀", "a\xa0b"], "body": 1, "id": "ключ"},
    "ack_same_user_twice": {"users": ["a", "a"], "body": 1, "ack": True},
    "ack_false_to_many": {"users": ["a", "b"], "body": 1, "ack": False},
    "filter_empty": {"filter": {}, "body": [1, 2]},
    "filter_nulls": {"filter": {"workspace": None, "account": None, "exclude": None},
                     "body": 1},
    "filter_ttl_is_ignored": {"filter": {"account": "a"}, "body": 1, "ttl": 86400},
    "filter_ids_255": {"filter": {"application": "a" * 255,
                                  "exclude": [{"workspace": "w" * 255}]}, "body": 1},
    "push_every_field": with_push({
        "title": "T", "subtitle": "S", "body": "B", "sound": "default", "collapse_id": "c",
        "app": "com.example", "category": "MSG", "thread_id": "t1",
        "content_available": False, "mutable_content": True, "data": {"k": [1]},
        "apns": {"headers": {"apns-push-type": "alert"}, "payload": {"x": 1}},
        "android": {"priority": "NORMAL"}, "webpush": {"headers": {}}, "badge": 0,
        "priority": "normal", "ttl": 0}),
    "push_nulls": with_push({"title": "t", "subtitle": None, "sound": None, "badge": None,
                             "priority": None, "ttl": None, "data": None, "apns": None,
                             "content_available": None}),
    "push_only_content_available": with_push({"content_available": True}),
    "push_only_data": with_push({"data": {"k": "v"}}),
    "push_apns_empty": with_push({"body": "b", "apns": {}}),
    "push_apns_headers": with_push({"body": "b", "apns": {"headers": {
        "Apns-Priority": 5, "apns-expiration": "0", "x-custom_1.v~": "a b"}}}),
    "push_bounds": with_push({"title": "x" * 2048, "collapse_id": "é" * 32,
                              "badge": 2**31 - 1, "ttl": 28 * 86400}),
}

SEND_BAD: list[tuple[Any, str]] = [
    ([], "body"),
    ("send", "body"),
    (None, "body"),
    ({"users": ["a"]}, "body"),
    ({"users": ["a"], "body": 1, "zzz": 1, "extra": 2}, "extra"),
    ({"body": 1}, "users"),
    ({"users": None, "filter": None, "body": 1}, "users"),
    ({"users": ["a"], "filter": {}, "body": 1}, "users"),
    ({"users": [], "body": 1}, "users"),
    ({"users": "alice", "body": 1}, "users"),
    ({"users": ["a", "b", "c", "d"], "body": 1}, "users"),
    ({"users": ["a", 1], "body": 1}, "users"),
    ({"users": [""], "body": 1}, "users"),
    ({"users": ["x" * 256], "body": 1}, "users"),
    ({"users": ["a\nb"], "body": 1}, "users"),
    ({"users": ["a"], "body": 1, "ttl": -1}, "ttl"),
    ({"users": ["a"], "body": 1, "ttl": 86401}, "ttl"),
    ({"users": ["a"], "body": 1, "ttl": "60"}, "ttl"),
    ({"users": ["a"], "body": 1, "ttl": 1.5}, "ttl"),
    ({"users": ["a"], "body": 1, "ttl": True}, "ttl"),
    ({"filter": {"account": "a"}, "body": 1, "ttl": 86401}, "ttl"),
    ({"users": ["a"], "body": 1, "id": 5}, "id"),
    ({"users": ["a"], "body": 1, "id": ""}, "id"),
    ({"users": ["a"], "body": 1, "push": "title"}, "push"),
    ({"users": ["a"], "body": 1, "push": [1]}, "push"),
    ({"users": ["a"], "body": 1, "device": 3}, "device"),
    ({"users": ["a"], "body": 1, "device": ""}, "device"),
    ({"users": ["a"], "body": 1, "ack": "yes"}, "ack"),
    ({"users": ["a"], "body": 1, "ack": 1}, "ack"),
    ({"users": ["a"], "body": 1, "ack_timeout_ms": 0}, "ack_timeout_ms"),
    ({"users": ["a"], "body": 1, "ack_timeout_ms": 300001}, "ack_timeout_ms"),
    ({"users": ["a"], "body": 1, "ack_timeout_ms": 1.5}, "ack_timeout_ms"),
    ({"users": ["a"], "body": 1, "ack_timeout_ms": True}, "ack_timeout_ms"),
    ({"users": ["a", "b"], "body": 1, "ack": True}, "users"),
    ({"filter": {"account": "a"}, "body": 1, "ack": True}, "ack"),
    ({"filter": {"account": "a"}, "body": 1, "device": "phone"}, "device"),
    ({"filter": "alice", "body": 1}, "filter"),
    ({"filter": {"user": "a"}, "body": 1}, "filter"),
    ({"filter": {"workspace": 1}, "body": 1}, "filter.workspace"),
    ({"filter": {"account": ""}, "body": 1}, "filter.account"),
    ({"filter": {"device": "d\x00"}, "body": 1}, "filter.device"),
    ({"filter": {"application": "a" * 256}, "body": 1}, "filter.application"),
    ({"filter": {"find_any": "true"}, "body": 1}, "filter.find_any"),
    ({"filter": {"find_any": 1}, "body": 1}, "filter.find_any"),
    ({"filter": {"exclude": {"account": "a"}}, "body": 1}, "filter.exclude"),
    ({"filter": {"exclude": ["a"]}, "body": 1}, "filter.exclude"),
    ({"filter": {"exclude": [{"user": "a"}]}, "body": 1}, "filter.exclude"),
    ({"filter": {"exclude": [{"account": 5}]}, "body": 1}, "filter.exclude.account"),
    *[({"filter": {"account": "a", "exclude": x}, "body": 1}, "filter.exclude")
      for x in ({}, "", 0, False)],  # falsy, but not a list
    # boundaries and edge values
    ({"users": ["a"], "body": 1, "ack_timeout_ms": 60001}, "ack_timeout_ms"),
    ({"users": ["a"], "body": 1, "ack_timeout_ms": "100"}, "ack_timeout_ms"),
    ({"users": ["a"], "body": 1, "ttl": None}, "ttl"),
    ({"users": ["a"], "body": 1, "ack": None}, "ack"),
    ({"users": ["a"], "body": 1, "id": "i" * 256}, "id"),
    ({"users": ["a"], "body": 1, "id": "a\x1fb"}, "id"),
    ({"users": ["a\x7f"], "body": 1}, "users"),
    ({"users": ["a"], "body": 1, "id": "\x9f"}, "id"),
    ({"users": ["a"], "body": 1, "device": "d" * 256}, "device"),
    ({"users": ["a"], "body": 1, "device": "\t"}, "device"),
    ({"users": [["a"]], "body": 1}, "users"),
    ({"users": [None], "body": 1}, "users"),
    ({"users": ["a"], "filter": "alice", "body": 1}, "users"),
    ({"filter": {"find_any": None}, "body": 1}, "filter.find_any"),
    ({"filter": {"exclude": [None]}, "body": 1}, "filter.exclude"),
    ({"filter": {"exclude": [{"device": "x" * 256}]}, "body": 1}, "filter.exclude.device"),
    ({"filter": {"exclude": [{"find_any": True}]}, "body": 1}, "filter.exclude"),
    # several faults: the first in the hand-written order wins
    ({"users": 5, "zzz": 1, "body": 1}, "zzz"),
    ({"users": "x", "body": 1, "push": {"zzz": 1}}, "users"),
    ({"users": ["a"], "body": 1, "ttl": "x", "id": 5}, "ttl"),
    ({"users": ["a", "b"], "body": 1, "ack": True, "ack_timeout_ms": 0}, "ack_timeout_ms"),
    ({"filter": {"account": 5, "find_any": 1}, "body": 1, "ttl": -1}, "filter.account"),
    ({"filter": {"account": "a"}, "body": 1, "push": {"title": "t"}, "device": "d"}, "push"),
    # the push block
    (with_push({"zzz": 1, "aaa": 2, "title": 5}), "push.aaa"),
    (with_push({"title": ""}), "push.title"),
    (with_push({"title": "x" * 2049}), "push.title"),
    (with_push({"title": 5}), "push.title"),
    (with_push({"title": "t", "subtitle": 5}), "push.subtitle"),
    (with_push({"title": "t", "sound": ""}), "push.sound"),
    (with_push({"title": "t", "app": ["a"]}), "push.app"),
    (with_push({"title": "t", "app": "x" * 256}), "push.app"),  # an id: never a device's
    (with_push({"title": "t", "app": "com.\x01app"}), "push.app"),
    (with_push({"title": "t", "app": "com.\x85app"}), "push.app"),
    (with_push({"title": "t", "app": "   "}), "push.app"),  # blank: never an id
    ({"users": ["a", "  "], "body": 1}, "users"),
    ({"users": ["a"], "body": 1, "id": " "}, "id"),
    ({"users": ["a"], "body": 1, "device": "  "}, "device"),
    (with_push({"title": "t", "category": True}), "push.category"),
    (with_push({"title": "t", "thread_id": "x" * 2049}), "push.thread_id"),
    (with_push({"title": "t", "collapse_id": "é" * 33}), "push.collapse_id"),
    (with_push({"content_available": 1}), "push.content_available"),
    (with_push({"title": "t", "mutable_content": "yes"}), "push.mutable_content"),
    (with_push({"data": []}), "push.data"),
    (with_push({"data": {"aps": {}}}), "push.data"),
    (with_push({"title": "t", "apns": 5}), "push.apns"),
    (with_push({"title": "t", "apns": {"x": {}}}), "push.apns.x"),
    (with_push({"title": "t", "apns": {"headers": 5}}), "push.apns.headers"),
    (with_push({"title": "t", "apns": {"payload": None}}), "push.apns.payload"),
    # HTTP/2 fields only: ':path' would send the push to another device token
    (with_push({"title": "t", "apns": {"headers": {":path": "/3/device/other"}}}),
     "push.apns.headers.:path"),
    (with_push({"title": "t", "apns": {"headers": {"authorization": "bearer x"}}}),
     "push.apns.headers.authorization"),
    (with_push({"title": "t", "apns": {"headers": {"Connection": "close"}}}),
     "push.apns.headers.Connection"),
    (with_push({"title": "t", "apns": {"headers": {"apns id": "x"}}}), "push.apns.headers.apns id"),
    (with_push({"title": "t", "apns": {"headers": {"": "x"}}}), "push.apns.headers"),
    (with_push({"title": "t", "apns": {"headers": {"apns-id\n": "x"}}}),
     "push.apns.headers.apns-id\n"),
    (with_push({"title": "t", "apns": {"headers": {"x-a": "1\r\nx-b: 2"}}}),
     "push.apns.headers.x-a"),
    (with_push({"title": "t", "apns": {"headers": {"x-a": True}}}), "push.apns.headers.x-a"),
    (with_push({"title": "t", "apns": {"headers": {"x-a": {"v": 1}}}}), "push.apns.headers.x-a"),
    (with_push({"title": "t", "apns": {"headers": {"apns-priority": "5",
                                                   "APNS-Priority": "10"}}}),
     "push.apns.headers.APNS-Priority"),
    (with_push({"title": "t", "android": "x"}), "push.android"),
    (with_push({"title": "t", "webpush": [1]}), "push.webpush"),
    (with_push({"title": "t", "badge": -1}), "push.badge"),
    (with_push({"title": "t", "badge": 2**31}), "push.badge"),
    (with_push({"title": "t", "badge": True}), "push.badge"),
    (with_push({"title": "t", "badge": 1.0}), "push.badge"),
    (with_push({"title": "t", "priority": "low"}), "push.priority"),
    (with_push({"title": "t", "priority": 10}), "push.priority"),
    (with_push({"title": "t", "ttl": -1}), "push.ttl"),
    (with_push({"title": "t", "ttl": 28 * 86400 + 1}), "push.ttl"),
    (with_push({"title": "t", "ttl": False}), "push.ttl"),
    (with_push({}), "push.title"),
    (with_push({"data": {}}), "push.title"),
    (with_push({"content_available": False, "sound": "s"}), "push.title"),
    (with_push({"title": "t"}, ttl=0), "push"),
    ({"filter": {"account": "a"}, "body": 1, "push": {"title": "t"}}, "push"),
    (with_push({"title": 5}, ttl=0), "push.title"),
]

SEND_TOO_LARGE: list[Any] = [
    {"users": ["a"], "body": "x" * 99},
    {"filter": {}, "body": {"k": "x" * 93}},  # 101 bytes encoded
    {"users": "not a list", "body": "x" * 200},  # the body is checked first
]

PUSHCA_OK: list[tuple[Any, bool]] = [
    ({"id": "m1", "message": "hello",
      "filter": {"workSpaceId": "w", "accountId": "alice", "deviceId": None,
                 "applicationId": "app", "findAny": True,
                 "exclude": [{"deviceId": "phone", "accountId": None}]}}, False),
    ({"message": "m", "filter": {"accountId": "bob"}}, False),
    ({"message": "m", "filter": {"accountId": "bob", "exclude": [{}]}}, False),
    ({"id": "a1", "message": "m", "client": {"workSpaceId": "w", "accountId": "alice",
                                             "deviceId": "phone", "applicationId": "app"}},
     True),
    ({"message": "m", "client": {"accountId": "alice"}}, True),
    # edge values
    ({"message": None, "filter": {}, "other": 1}, False),
    ({"message": "m", "id": None, "filter": {"findAny": None, "exclude": None,
                                             "workSpaceId": None}}, False),
    ({"message": "m", "filter": {"exclude": [{"findAny": 1, "exclude": 2}]}}, False),
    ({"message": "m", "filter": {"accountId": "x" * 255}}, False),
    ({"message": "m", "client": {"accountId": "a", "deviceId": "", "workSpaceId": 5,
                                 "applicationId": {"x": 1}, "findAny": "x", "exclude": 3},
      "filter": "ignored"}, True),
    ({"message": "m", "client": {"accountId": "u" * 255, "deviceId": "d" * 255}}, True),
]

PUSHCA_BAD: list[tuple[Any, bool, str]] = [
    ([], False, "body"),
    ({"filter": {}}, False, "message"),
    ({"client": {"accountId": "a"}}, True, "message"),
    ({"message": "m"}, False, "filter"),
    ({"message": "m", "filter": "alice"}, False, "filter"),
    ({"message": "m", "filter": {"account": "a"}}, False, "filter"),
    ({"message": "m", "filter": {"exclude": {"accountId": "a"}}}, False, "filter.exclude"),
    ({"message": "m", "filter": {"exclude": ["a"]}}, False, "filter.exclude"),
    ({"message": "m", "filter": {"exclude": [{"user": "a"}]}}, False, "filter.exclude"),
    ({"message": "m"}, True, "client"),
    ({"message": "m", "client": "alice"}, True, "client"),
    ({"message": "m", "client": {"userId": "a"}}, True, "client"),
    ({"message": "m", "client": {"deviceId": "d"}}, True, "client.accountId"),
    ({"message": "m", "client": {"accountId": ""}}, True, "client.accountId"),
    ({"message": "m", "filter": {"accountId": "a", "findAny": "false"}}, False,
     "filter.findAny"),
    # edge values: ids are checked after the translation, under their native names
    ([], True, "body"),
    ({"message": "m", "filter": None}, False, "filter"),
    ({"message": "m", "client": None}, True, "client"),
    ({"message": "m", "client": {"accountId": None}}, True, "client.accountId"),
    ({"message": "m", "filter": {"findAny": 1}}, False, "filter.findAny"),
    ({"message": "m", "filter": {"findAny": 1, "workSpaceId": 5}}, False, "filter.findAny"),
    ({"message": "m", "filter": {"workSpaceId": 5}}, False, "filter.workspace"),
    ({"message": "m", "filter": {"accountId": "x" * 256}}, False, "filter.account"),
    ({"message": "m", "filter": {"deviceId": ""}}, False, "filter.device"),
    ({"message": "m", "filter": {"exclude": [{"accountId": ""}]}}, False,
     "filter.exclude.account"),
    ({"message": "m", "filter": {"exclude": None, "applicationId": "a\n"}}, False,
     "filter.application"),
    ({"message": "m", "filter": {}, "id": 5}, False, "id"),
    ({"message": "m", "client": {"accountId": "a"}, "id": ""}, True, "id"),
    ({"message": "m", "client": {"accountId": 5}}, True, "users"),
    ({"message": "m", "client": {"accountId": "x" * 256}}, True, "users"),
    ({"message": "m", "client": {"accountId": "a", "deviceId": 5}}, True, "device"),
    ({"message": "m", "client": {"accountId": "a", "deviceId": "d\x00"}}, True, "device"),
]

PUSHCA_TOO_LARGE: list[tuple[Any, bool]] = [
    ({"message": "x" * 99, "filter": {}}, False),
    ({"message": "x" * 99, "client": {"accountId": "a"}}, True),
]


# --- hand-written and model, side by side ------------------------------------------------


def hand(obj: Any) -> SendRequest:
    return parse_send(obj, LIMITS)


def model(obj: Any) -> models.SendRequest:
    return models.parse(models.SendRequest, obj, LIMITS)


def hand_pushca(obj: Any, acknowledge: bool) -> dict[str, Any]:
    native = from_pushca(obj, acknowledge=acknowledge)
    parse_send(native, LIMITS)
    return native


def model_pushca(obj: Any, acknowledge: bool) -> dict[str, Any]:
    cls = models.PushcaSendAckRequest if acknowledge else models.PushcaSendRequest
    native = models.parse(cls, obj).native()
    models.parse(models.SendRequest, native, LIMITS)
    return native


def rejection(call: Any, *args: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        call(*args)
    return info.value


def same_rejection(hand_call: Any, model_call: Any, *args: Any) -> tuple[Any, ...]:
    """What both validators said (class, field, HTTP status); they must agree, and the
    model's message names the field."""
    by_hand, by_model = rejection(hand_call, *args), rejection(model_call, *args)
    assert by_model.field is not None and by_model.field in by_model.message
    said = type(by_hand), by_hand.field, by_hand.http_status
    assert said == (type(by_model), by_model.field, by_model.http_status)
    return said


@pytest.mark.parametrize("obj", SEND_OK.values(), ids=SEND_OK.keys())
def test_hand_written_and_model_accept_the_send(obj: Any) -> None:
    hand(obj)
    model(obj)


@pytest.mark.parametrize(("obj", "field"), SEND_BAD)
def test_hand_written_and_model_reject_the_send_naming_the_field(obj: Any, field: str) -> None:
    assert same_rejection(hand, model, obj) == (InvalidRequest, field, 400)


@pytest.mark.parametrize("obj", SEND_TOO_LARGE)
def test_hand_written_and_model_refuse_an_oversized_body(obj: Any) -> None:
    assert same_rejection(hand, model, obj) == (PayloadTooLarge, "body", 413)


@pytest.mark.parametrize(("obj", "acknowledge"), PUSHCA_OK)
def test_hand_written_and_model_translate_pushca_alike(obj: Any, acknowledge: bool) -> None:
    assert hand_pushca(obj, acknowledge) == model_pushca(obj, acknowledge)


@pytest.mark.parametrize(("obj", "acknowledge", "field"), PUSHCA_BAD)
def test_hand_written_and_model_reject_pushca_naming_the_field(
    obj: Any, acknowledge: bool, field: str
) -> None:
    assert same_rejection(hand_pushca, model_pushca, obj, acknowledge) == (
        InvalidRequest, field, 400)


@pytest.mark.parametrize(("obj", "acknowledge"), PUSHCA_TOO_LARGE)
def test_hand_written_and_model_refuse_an_oversized_pushca_message(
    obj: Any, acknowledge: bool
) -> None:
    assert same_rejection(hand_pushca, model_pushca, obj, acknowledge) == (
        PayloadTooLarge, "body", 413)


# --- what parse_send returns ----------------------------------------------------------------


def test_user_send_gets_the_default_ttl_and_is_stored() -> None:
    req = ok(SEND_OK["default_ttl"])
    assert req.users == ("alice",)
    assert req.filter is None
    assert orjson.loads(req.body) == {"k": [1, "x"]}
    assert req.ttl_s == 3600
    assert req.stored is True
    assert req.ack is False
    assert req.ack_timeout_ms == 5000


def test_user_send_with_ttl_0_is_live_only() -> None:
    req = ok(SEND_OK["ttl_0"])
    assert req.ttl_s == 0
    assert req.stored is False


def test_duplicate_users_are_sent_once_in_first_seen_order() -> None:
    assert ok(SEND_OK["duplicate_users"]).users == ("b", "a")


def test_all_optional_fields_are_kept() -> None:
    req = ok(SEND_OK["all_optional"])
    assert (req.ttl_s, req.id, req.push, req.device, req.ack, req.ack_timeout_ms) == (
        86400, "k1", {"title": "t"}, "phone", True, 60000)
    assert req.body == b'"hi"'


def test_filter_send_is_transient_and_keeps_dimensions_find_any_and_excludes() -> None:
    req = ok(SEND_OK["filter"])
    assert req.users == ()
    assert req.filter == Filter(ClientRef("w", "alice", None, "app"), True,
                                (ClientRef(device="phone"), ClientRef()))
    assert req.ttl_s == 0
    assert req.stored is False


def test_null_body_is_a_valid_json_body() -> None:
    assert ok(SEND_OK["null_body"]).body == b"null"


def test_body_exactly_at_the_limit_is_accepted() -> None:
    assert len(ok(SEND_OK["body_at_limit"]).body) == 100


def test_users_at_the_limit_are_accepted() -> None:
    assert len(ok(SEND_OK["users_at_limit"]).users) == 3


def test_server_ack_timeout_is_the_default_of_sends_that_do_not_set_it() -> None:
    limits = Limits(max_body_bytes=100, max_users=3, default_ttl_s=3600, max_ttl_s=86400,
                    ack_timeout_ms=60_000)
    assert ok({"users": ["a"], "body": 1}, limits).ack_timeout_ms == 60_000


def test_ack_timeout_bound_is_the_models() -> None:
    from pushgate.router import requests

    assert requests.MAX_ACK_TIMEOUT_MS == models.MAX_ACK_TIMEOUT_MS == 60_000


# --- what from_pushca returns -------------------------------------------------------------


def test_pushca_filter_send_translates_dimensions_find_any_and_exclude() -> None:
    native = from_pushca(PUSHCA_OK[0][0], acknowledge=False)
    assert native == {
        "body": "hello", "id": "m1",
        "filter": {"workspace": "w", "account": "alice", "application": "app",
                   "find_any": True, "exclude": [{"device": "phone"}]},
    }
    req = parse_send(native, LIMITS)
    assert req.body == b'"hello"'
    assert req.filter == Filter(ClientRef("w", "alice", None, "app"), True,
                                (ClientRef(device="phone"),))


def test_pushca_filter_without_find_any_or_exclude_multicasts() -> None:
    native = from_pushca(PUSHCA_OK[1][0], acknowledge=False)
    req = parse_send(native, LIMITS)
    assert req.filter == Filter(ClientRef(account="bob"), False, ())
    assert "id" not in native


def test_pushca_exclude_entry_with_no_dimension_excludes_nobody() -> None:
    req = parse_send(from_pushca(PUSHCA_OK[2][0], acknowledge=False), LIMITS)
    assert req.filter is not None
    assert req.filter.exclude == (ClientRef(),)


def test_pushca_acknowledge_send_addresses_one_users_device_with_ack() -> None:
    native = from_pushca(PUSHCA_OK[3][0], acknowledge=True)
    assert native == {"body": "m", "id": "a1", "users": ["alice"], "device": "phone", "ack": True}
    req = parse_send(native, LIMITS)
    assert (req.users, req.device, req.ack) == (("alice",), "phone", True)


def test_pushca_acknowledge_without_device_targets_every_device() -> None:
    native = from_pushca(PUSHCA_OK[4][0], acknowledge=True)
    assert "device" not in native
    assert parse_send(native, LIMITS).users == ("alice",)


def test_pushca_identity_maps_client_fields() -> None:
    assert pushca_identity({"client": {"workSpaceId": "w", "accountId": "a"}}) == {
        "workspace": "w", "account": "a", "device": None, "application": None,
    }


@pytest.mark.parametrize("obj", [None, {}, {"client": 1}, {"client": {"bad": 1}}])
def test_pushca_identity_rejects_bad_client(obj: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        pushca_identity(obj)
    assert info.value.field == "client"


@pytest.mark.parametrize(("entry", "message"), [
    ("", "'users[2]' is empty: every entry is a user id"),
    (None, "'users[2]' is empty: every entry is a user id"),
    (7, "'users[2]' must be a string"),
    ("x" * 256, "'users[2]' is longer than 255 characters"),
    ("b\x00", "'users[2]' contains control characters"),
    ("  ", "'users[2]' is blank: an id needs a character other than spaces"),
])
def test_a_bad_entry_of_users_is_named_by_its_index(entry: Any, message: str) -> None:
    """Of a campaign part's 10,000 ids, the error says which one ("users is required"
    did not); the field stays ``users``."""
    error = rejection(hand, {"users": ["a", "b", entry], "body": 1})
    assert (error.field, error.message) == ("users", message)
