"""Send-body validation (native shape) and the Pushca-compatible translation."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pushgate.errors import InvalidRequest, PayloadTooLarge
from pushgate.router.requests import Limits, SendRequest, from_pushca, parse_send, pushca_identity
from pushgate.router.routing import ClientRef, Filter

LIMITS = Limits(max_body_bytes=100, max_users=3, default_ttl_s=3600, max_ttl_s=86400,
                ack_timeout_ms=5000)


def ok(obj: Any, limits: Limits = LIMITS) -> SendRequest:
    return parse_send(obj, limits)


def rejected(obj: Any, limits: Limits = LIMITS) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_send(obj, limits)
    return info.value


# --- native shape: accepted ------------------------------------------------------------


def test_user_send_gets_the_default_ttl_and_is_stored() -> None:
    req = ok({"users": ["alice"], "body": {"k": [1, "x"]}})
    assert req.users == ("alice",)
    assert req.filter is None
    assert orjson.loads(req.body) == {"k": [1, "x"]}
    assert req.ttl_s == 3600
    assert req.stored is True
    assert req.ack is False
    assert req.ack_timeout_ms == 5000


def test_user_send_with_ttl_0_is_live_only() -> None:
    req = ok({"users": ["alice"], "body": 1, "ttl": 0})
    assert req.ttl_s == 0
    assert req.stored is False


def test_duplicate_users_are_sent_once_in_first_seen_order() -> None:
    assert ok({"users": ["b", "a", "b"], "body": 1}).users == ("b", "a")


def test_all_optional_fields_are_kept() -> None:
    req = ok({"users": ["alice"], "body": "hi", "ttl": 86400, "id": "k1", "push": {"title": "t"},
              "device": "phone", "ack": True, "ack_timeout_ms": 60000})
    assert (req.ttl_s, req.id, req.push, req.device, req.ack, req.ack_timeout_ms) == (
        86400, "k1", {"title": "t"}, "phone", True, 60000)
    assert req.body == b'"hi"'


def test_filter_send_is_transient_and_keeps_dimensions_find_any_and_excludes() -> None:
    req = ok({"filter": {"workspace": "w", "account": "alice", "device": None,
                         "application": "app", "find_any": True,
                         "exclude": [{"device": "phone"}, {}]},
              "body": {}, "ttl": 600})
    assert req.users == ()
    assert req.filter == Filter(ClientRef("w", "alice", None, "app"), True,
                                (ClientRef(device="phone"), ClientRef()))
    assert req.ttl_s == 0
    assert req.stored is False


def test_null_body_is_a_valid_json_body() -> None:
    assert ok({"users": ["a"], "body": None}).body == b"null"


def test_body_exactly_at_the_limit_is_accepted() -> None:
    body = "x" * 98  # 100 bytes once JSON-encoded with its quotes
    assert len(ok({"users": ["a"], "body": body}).body) == 100


def test_users_at_the_limit_are_accepted() -> None:
    assert len(ok({"users": ["a", "b", "c"], "body": 1}).users) == 3


# --- native shape: rejected ------------------------------------------------------------


def test_body_over_the_limit_is_payload_too_large() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        parse_send({"users": ["a"], "body": "x" * 99}, LIMITS)
    assert info.value.field == "body"
    assert info.value.http_status == 413


@pytest.mark.parametrize(
    ("obj", "field"),
    [
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
        ({"filter": {"account": "a"}, "body": 1, "ack": True}, "users"),
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
    ],
)
def test_bad_send_is_rejected_naming_the_field(obj: Any, field: str) -> None:
    err = rejected(obj)
    assert err.field == field
    assert err.http_status == 400


@pytest.mark.parametrize("exclude", [{}, "", 0, False])
def test_falsy_non_list_exclude_is_rejected(exclude: Any) -> None:
    err = rejected({"filter": {"account": "a", "exclude": exclude}, "body": 1})
    assert err.field == "filter.exclude"


def test_server_ack_timeout_above_60s_does_not_break_sends_that_do_not_set_it() -> None:
    limits = Limits(max_body_bytes=100, max_users=3, default_ttl_s=3600, max_ttl_s=86400,
                    ack_timeout_ms=90_000)
    assert ok({"users": ["a"], "body": 1}, limits).users == ("a",)


# --- Pushca translation ----------------------------------------------------------------


def test_pushca_filter_send_translates_dimensions_find_any_and_exclude() -> None:
    native = from_pushca({
        "id": "m1",
        "message": "hello",
        "filter": {"workSpaceId": "w", "accountId": "alice", "deviceId": None,
                   "applicationId": "app", "findAny": True,
                   "exclude": [{"deviceId": "phone", "accountId": None}]},
    }, acknowledge=False)
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
    native = from_pushca({"message": "m", "filter": {"accountId": "bob"}}, acknowledge=False)
    req = parse_send(native, LIMITS)
    assert req.filter == Filter(ClientRef(account="bob"), False, ())
    assert "id" not in native


def test_pushca_exclude_entry_with_no_dimension_excludes_nobody() -> None:
    native = from_pushca({"message": "m", "filter": {"accountId": "bob", "exclude": [{}]}},
                         acknowledge=False)
    req = parse_send(native, LIMITS)
    assert req.filter is not None
    assert req.filter.exclude == (ClientRef(),)


def test_pushca_acknowledge_send_addresses_one_users_device_with_ack() -> None:
    native = from_pushca({"id": "a1", "message": "m",
                          "client": {"workSpaceId": "w", "accountId": "alice",
                                     "deviceId": "phone", "applicationId": "app"}},
                         acknowledge=True)
    assert native == {"body": "m", "id": "a1", "users": ["alice"], "device": "phone", "ack": True}
    req = parse_send(native, LIMITS)
    assert (req.users, req.device, req.ack) == (("alice",), "phone", True)


def test_pushca_acknowledge_without_device_targets_every_device() -> None:
    native = from_pushca({"message": "m", "client": {"accountId": "alice"}}, acknowledge=True)
    assert "device" not in native
    assert parse_send(native, LIMITS).users == ("alice",)


@pytest.mark.parametrize(
    ("obj", "acknowledge", "field"),
    [
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
    ],
)
def test_bad_pushca_body_is_rejected_naming_the_field(
    obj: Any, acknowledge: bool, field: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        from_pushca(obj, acknowledge=acknowledge)
    assert info.value.field == field


def test_pushca_find_any_string_false_does_not_become_find_any() -> None:
    try:
        native = from_pushca({"message": "m", "filter": {"accountId": "a", "findAny": "false"}},
                             acknowledge=False)
    except InvalidRequest:
        return
    req = parse_send(native, LIMITS)
    assert req.filter is not None
    assert req.filter.find_any is False


def test_pushca_identity_maps_client_fields() -> None:
    assert pushca_identity({"client": {"workSpaceId": "w", "accountId": "a"}}) == {
        "workspace": "w", "account": "a", "device": None, "application": None,
    }


@pytest.mark.parametrize("obj", [None, {}, {"client": 1}, {"client": {"bad": 1}}])
def test_pushca_identity_rejects_bad_client(obj: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        pushca_identity(obj)
    assert info.value.field == "client"
