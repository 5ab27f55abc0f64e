"""Pure parts of the bridge: push-block validation and mapping, policy, backoff, buckets."""

from __future__ import annotations

import pytest

from pushgate import protocol as p
from pushgate.errors import InvalidRequest
from pushgate.ratelimit import Buckets, TokenBucket
from pushgate.router.bridge import payload, policy
from pushgate.router.bridge.base import parse_retry_after


@pytest.mark.parametrize(("push", "field"), [
    ("hi", "push"),
    ({"title": ""}, "push.title"),
    ({"title": 5}, "push.title"),
    ({"body": "x", "badge": -1}, "push.badge"),
    ({"body": "x", "badge": True}, "push.badge"),
    ({"body": "x", "priority": "urgent"}, "push.priority"),
    ({"body": "x", "ttl": 29 * 86400}, "push.ttl"),
    ({"body": "x", "collapse_id": "c" * 65}, "push.collapse_id"),
    ({"body": "x", "data": [1]}, "push.data"),
    ({"body": "x", "data": {"aps": 1}}, "push.data"),
    ({"body": "x", "apns": {"aps": {}}}, "push.apns.aps"),
    ({"body": "x", "content_available": 1}, "push.content_available"),
    ({"body": "x", "colour": "red"}, "push.colour"),
    ({"sound": "default"}, "push.title"),  # nothing to show or deliver
])
def test_bad_push_blocks_name_the_field(push: object, field: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        payload.parse_push(push)
    assert e.value.field == field


def test_apns_mapping_background_push_and_overrides() -> None:
    push = payload.parse_push({"data": {"k": 1}, "content_available": True, "ttl": 0,
                               "apns": {"headers": {"apns-priority": "5"},
                                        "payload": {"aps": {"category": "C"}}}})
    headers, body = payload.apns_request(push, 42, "com.x", now=1000.0)
    assert headers == {"apns-topic": "com.x", "apns-push-type": "background",
                       "apns-priority": "5", "apns-collapse-id": "pushgate-42",
                       "apns-expiration": "0"}
    assert body == {"aps": {"content-available": 1, "category": "C"}, "k": 1,
                    "pushgate": {"seq": 42}}


@pytest.mark.parametrize(("push", "kind", "aps"), [
    ({"badge": 3, "data": {"k": 1}}, "alert", {"badge": 3}),
    ({"sound": "default", "data": {"k": 1}}, "alert", {"sound": "default"}),
    ({"subtitle": "s", "data": {"k": 1}}, "alert", {"alert": {"subtitle": "s"}}),
    ({"data": {"k": 1}}, "background", {"content-available": 1}),
])
def test_apns_a_badge_or_sound_is_an_alert_push_and_data_alone_a_background_one(
        push: dict, kind: str, aps: dict) -> None:
    """Apple: the alert type is for what the user notices (alert, badge, sound) and a
    background push carries content-available. A badge or sound alone went out as a
    background push (priority 5), data alone as one without content-available."""
    headers, body = payload.apns_request(payload.parse_push(push), 7, "com.x", now=1000.0)
    assert (headers["apns-push-type"], headers["apns-priority"], body["aps"]) == (
        kind, "10" if kind == "alert" else "5", aps)


def test_apns_header_overrides_go_out_as_lowercase_http2_fields() -> None:
    """``push.apns.headers`` names are case-insensitive (HTTP/2 sends them lowercase:
    an uppercase one would have the stream reset) and an integer value is its digits."""
    push = payload.parse_push({"body": "b", "apns": {"headers": {"Apns-Priority": 5,
                                                                 "APNS-EXPIRATION": "0"}}})
    headers, _ = payload.apns_request(push, 7, "com.x", now=1000.0)
    assert (headers["apns-priority"], headers["apns-expiration"]) == ("5", "0")
    assert all(name == name.lower() for name in headers)


def test_fcm_mapping_normal_priority_webpush_and_string_data() -> None:
    push = payload.parse_push({"body": "b", "priority": "normal", "collapse_id": "c1",
                               "data": {"n": [1, 2], "s": "x"}, "webpush": {"fcm_options":
                                                                           {"link": "/x"}}})
    msg = payload.fcm_message(push, 3, "tok")["message"]
    assert msg["token"] == "tok" and msg["notification"] == {"body": "b"}
    assert msg["data"] == {"n": "[1,2]", "s": "x", "pushgate_seq": "3"}
    assert msg["android"] == {"priority": "NORMAL", "collapse_key": "c1"}
    assert msg["webpush"] == {"fcm_options": {"link": "/x"}}


def test_policy_due_times() -> None:
    assert policy.due_at(100.0, online=False, ack_window_ms=0) == 100.0
    assert policy.due_at(100.0, online=True, ack_window_ms=0) is None
    assert policy.due_at(100.0, online=True, ack_window_ms=2500) == 102.5
    assert policy.still_wanted(5, None) and policy.still_wanted(5, 4)
    assert not policy.still_wanted(5, 5) and not policy.still_wanted(5, 9)


def test_retry_delay_doubles_with_jitter_caps_and_honours_retry_after() -> None:
    assert policy.retry_delay(1, 1.0, 60, None, jitter=0.0) == 0.5
    assert policy.retry_delay(1, 1.0, 60, None, jitter=0.999) == pytest.approx(1.0, abs=1e-3)
    assert policy.retry_delay(3, 1.0, 60, None, jitter=0.999) == pytest.approx(4.0, abs=1e-2)
    assert policy.retry_delay(20, 1.0, 60, None, jitter=0.999) == pytest.approx(60, abs=0.1)
    assert policy.retry_delay(2, 1.0, 60, 7.0, jitter=0.3) == 7.0
    assert parse_retry_after("12", 0) == 12.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 90.0) == 10.0
    assert parse_retry_after("soon", 0) is None and parse_retry_after(None, 0) is None


def test_token_bucket_rate_and_burst() -> None:
    b = TokenBucket(rate=10, burst=2, now=0.0)
    assert [b.take(0.0) for _ in range(2)] == [0.0, 0.0]
    assert b.take(0.0) == pytest.approx(0.1)
    assert b.take(0.1) == 0.0
    buckets = Buckets(rate=1, burst=1)
    assert buckets.take("a", 0.0) == 0.0 and buckets.take("b", 0.0) == 0.0  # per app
    assert buckets.take("a", 0.0) == pytest.approx(1.0)
    assert Buckets(rate=0, burst=1).take("a", 0.0) == 0.0  # unlimited


def test_register_device_frame() -> None:
    frame = p.parse_client_frame('{"type":"register_device","platform":"fcm","token":"t",'
                                 '"rid":1}', fetch_max_limit=10)
    assert frame == p.RegisterDevice("fcm", "t", None, False, 1)
    frame = p.parse_client_frame('{"type":"unregister_device","platform":"apns","token":"t",'
                                 '"app":"a"}', fetch_max_limit=10)
    assert frame == p.RegisterDevice("apns", "t", "a", True, None)
    with pytest.raises(InvalidRequest) as e:
        p.parse_client_frame('{"type":"register_device","platform":"gcm","token":"t"}',
                             fetch_max_limit=10)
    assert e.value.field == "platform"
