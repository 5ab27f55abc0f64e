"""Client frame codec: parsing of client frames and encoding of server frames."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pushgate.errors import CloseCode, InvalidRequest, NotFound
from pushgate.protocol import (
    MAX_READ_ITEMS,
    MAX_RID_LEN,
    PROTOCOL_VERSION,
    Ack,
    BadJson,
    Fetch,
    Ping,
    Read,
    ReadStateRequest,
    Send,
    UnknownType,
    encode_error,
    encode_event,
    encode_head,
    encode_hello,
    encode_kicked,
    encode_pong,
    encode_reply,
    event_dict,
    parse_client_frame,
    parse_read,
    ranges_payload,
)

MAX = 1000


def parse(frame: Any) -> Any:
    text = frame if isinstance(frame, str | bytes) else orjson.dumps(frame).decode()
    return parse_client_frame(text, fetch_max_limit=MAX)


def bad(frame: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse(frame)
    return info.value


# --- well-formed frames ---------------------------------------------------------------


def test_ack_frame() -> None:
    assert parse({"type": "ack", "seq": 7}) == Ack(7)


def test_fetch_frame_with_explicit_fields() -> None:
    assert parse({"type": "fetch", "after": 5, "limit": 10, "rid": "r1"}) == Fetch(5, 10, "r1")


def test_fetch_defaults_to_after_0_and_limit_100() -> None:
    assert parse({"type": "fetch"}) == Fetch(0, 100, None)
    # null is "not given" (serializers that write every optional field)
    assert parse({"type": "fetch", "after": None, "limit": None}) == Fetch(0, 100, None)


def test_a_required_integer_given_as_null_is_named_as_missing() -> None:
    with pytest.raises(InvalidRequest, match="'seq' is required") as info:
        parse({"type": "ack", "seq": None})
    assert info.value.field == "seq"


def test_fetch_default_limit_is_capped_by_the_server_maximum() -> None:
    frame = parse_client_frame('{"type":"fetch"}', fetch_max_limit=20)
    assert frame == Fetch(0, 20, None)


def test_fetch_limit_equal_to_the_maximum_is_accepted() -> None:
    assert parse({"type": "fetch", "limit": MAX}).limit == MAX


def test_read_frame_with_seqs_and_ranges() -> None:
    frame = parse({"type": "read", "seqs": [3, 1], "ranges": [[5, 9], [10, 10]], "rid": 4})
    assert frame == Read((3, 1), ((5, 9), (10, 10)), 4)


def test_read_frame_null_lists_are_not_given() -> None:
    """protocol.md, Client frames: a null field counts as not given."""
    assert parse({"type": "read", "seqs": None, "ranges": [[1, 1]]}) == \
        parse({"type": "read", "ranges": [[1, 1]]})
    assert parse({"type": "read", "seqs": [1], "ranges": None}) == \
        parse({"type": "read", "seqs": [1]})
    with pytest.raises(InvalidRequest, match="give 'seqs' and/or 'ranges'"):
        parse({"type": "read", "seqs": None, "ranges": None})


def test_read_state_and_ping_frames_keep_their_rid() -> None:
    assert parse({"type": "read_state", "rid": "x"}) == ReadStateRequest("x")
    assert parse({"type": "ping", "rid": 0}) == Ping(0)
    assert parse({"type": "ping"}) == Ping(None)


def test_send_frame_passes_the_request_without_type_and_rid() -> None:
    frame = parse({"type": "send", "rid": "s", "users": ["bob"], "body": {"a": [1, 2]}, "ttl": 0})
    assert frame == Send({"users": ["bob"], "body": {"a": [1, 2]}, "ttl": 0}, "s")


def test_frame_may_be_bytes() -> None:
    assert parse(b'{"type":"ack","seq":1}') == Ack(1)


def test_rid_of_max_length_is_accepted() -> None:
    rid = "r" * MAX_RID_LEN
    assert parse({"type": "ping", "rid": rid}) == Ping(rid)


# --- rejected frames --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "not json", "{", '{"type": "ack",}', "[1,2]", '"ack"', "42", "null", b"\xff\xfe"]
)
def test_non_object_or_malformed_json_is_bad_json_closing_the_session(text: str | bytes) -> None:
    with pytest.raises(BadJson) as info:
        parse(text)
    assert info.value.code == "bad_json"
    assert info.value.close_code == CloseCode.BAD_FRAME


@pytest.mark.parametrize("frame", [{}, {"type": 1}, {"type": None}, {"type": ["ack"]}])
def test_frame_without_string_type_is_bad_json_naming_type(frame: dict[str, Any]) -> None:
    with pytest.raises(BadJson) as info:
        parse(frame)
    assert info.value.field == "type"


def test_unknown_type_is_answered_not_fatal() -> None:
    with pytest.raises(UnknownType) as info:
        parse({"type": "subscribe", "rid": 1})
    assert info.value.field == "type"
    assert info.value.code == "unknown_type"
    assert not isinstance(info.value, BadJson)


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"type": "ack"}, "seq"),
        ({"type": "ack", "seq": 0}, "seq"),
        ({"type": "ack", "seq": -1}, "seq"),
        ({"type": "ack", "seq": "1"}, "seq"),
        ({"type": "ack", "seq": 1.0}, "seq"),
        ({"type": "ack", "seq": True}, "seq"),
        ({"type": "ack", "seq": None}, "seq"),
        ({"type": "fetch", "limit": 0}, "limit"),
        ({"type": "fetch", "limit": -5}, "limit"),
        ({"type": "fetch", "limit": MAX + 1}, "limit"),
        ({"type": "fetch", "limit": "10"}, "limit"),
        ({"type": "fetch", "limit": False}, "limit"),
        ({"type": "fetch", "after": -1}, "after"),
        ({"type": "fetch", "after": 1.5}, "after"),
        ({"type": "fetch", "after": True}, "after"),
        ({"type": "ping", "rid": True}, "rid"),
        ({"type": "ping", "rid": 1.5}, "rid"),
        ({"type": "ping", "rid": [1]}, "rid"),
        ({"type": "ping", "rid": {"a": 1}}, "rid"),
        ({"type": "ping", "rid": "r" * (MAX_RID_LEN + 1)}, "rid"),
        ({"type": "read"}, "seqs"),
        ({"type": "read", "seqs": [], "ranges": []}, "seqs"),
        ({"type": "read", "seqs": 5}, "seqs"),
        ({"type": "read", "seqs": [0]}, "seqs"),
        ({"type": "read", "seqs": [1, "2"]}, "seqs"),
        ({"type": "read", "seqs": [True]}, "seqs"),
        ({"type": "read", "seqs": [1.0]}, "seqs"),
        ({"type": "read", "ranges": {"1": 2}}, "ranges"),
        ({"type": "read", "ranges": [[3, 2]]}, "ranges"),
        ({"type": "read", "ranges": [[0, 2]]}, "ranges"),
        ({"type": "read", "ranges": [[1]]}, "ranges"),
        ({"type": "read", "ranges": [[1, 2, 3]]}, "ranges"),
        ({"type": "read", "ranges": [5]}, "ranges"),
        ({"type": "read", "ranges": [[1, True]]}, "ranges"),
        ({"type": "read", "ranges": [[1, "2"]]}, "ranges"),
    ],
)
def test_bad_field_is_rejected_naming_the_field(frame: dict[str, Any], field: str) -> None:
    err = bad(frame)
    assert err.field == field
    assert err.message
    assert not isinstance(err, BadJson | UnknownType)


def test_bad_rid_is_reported_even_on_an_otherwise_valid_frame() -> None:
    assert bad({"type": "fetch", "limit": 10, "rid": False}).field == "rid"


def test_read_item_cap_is_inclusive() -> None:
    seqs = list(range(1, MAX_READ_ITEMS))
    assert len(parse_read({"seqs": seqs, "ranges": [[1, 2]]})[0]) == MAX_READ_ITEMS - 1
    with pytest.raises(InvalidRequest) as info:
        parse_read({"seqs": [*seqs, 1], "ranges": [[1, 2]]})
    assert info.value.field == "seqs"


def test_read_with_only_ranges_is_accepted() -> None:
    assert parse_read({"ranges": [[2, 4]]}) == ((), ((2, 4),))


# --- server frames ----------------------------------------------------------------------


def test_event_frame_embeds_the_raw_json_body_unchanged() -> None:
    body = b'{"b": 2,  "a": [1, 2.50, "\\u00e9"]}'
    text = encode_event(12, "k1", body, 1700000000.5)
    assert body.decode() in text
    assert orjson.loads(text) == {
        "type": "event", "seq": 12, "id": "k1",
        "body": {"b": 2, "a": [1, 2.5, "é"]}, "created_at": 1700000000.5,
    }


def test_transient_event_frame_has_null_seq_and_id() -> None:
    frame = orjson.loads(encode_event(None, None, b"[]", 1.0))
    assert frame["seq"] is None
    assert frame["id"] is None
    assert frame["body"] == []


def test_event_dict_embeds_raw_body_when_serialised() -> None:
    body = b'{"x":  1}'
    out = orjson.dumps({"events": [event_dict(3, None, body, 2.0)]})
    assert body in out
    assert orjson.loads(out) == {"events": [{"seq": 3, "id": None, "body": {"x": 1}, "created_at": 2.0}]}


def test_hello_frame() -> None:
    frame = orjson.loads(encode_hello("s1", "alice", 9, 2, {"fetch_max_limit": 1000}))
    assert frame == {
        "type": "hello", "v": PROTOCOL_VERSION, "session": "s1", "user": "alice",
        "head": 9, "unread": 2, "limits": {"fetch_max_limit": 1000},
    }


def test_head_pong_kicked_frames() -> None:
    assert orjson.loads(encode_head(41)) == {"type": "head", "head": 41}
    assert orjson.loads(encode_pong("p")) == {"type": "pong", "rid": "p"}
    assert orjson.loads(encode_kicked("quota", "s2")) == {"type": "kicked", "reason": "quota", "by": "s2"}


def test_reply_frame_echoes_rid_and_payload() -> None:
    frame = orjson.loads(encode_reply(7, {"events": [], "head": 3}))
    assert frame == {"type": "reply", "rid": 7, "events": [], "head": 3}


def test_error_frame_carries_rid_code_message_and_field() -> None:
    frame = orjson.loads(encode_error(InvalidRequest("'limit' must be >= 1", field="limit"), rid="f1"))
    assert frame == {
        "type": "error", "rid": "f1", "code": "invalid_request",
        "message": "'limit' must be >= 1", "retryable": False, "field": "limit",
    }


def test_error_frame_without_rid_or_field() -> None:
    frame = orjson.loads(encode_error(NotFound("no such user")))
    assert frame == {"type": "error", "rid": None, "code": "not_found",
                     "message": "no such user", "retryable": False}


def test_parse_error_round_trips_into_an_error_frame() -> None:
    err = bad({"type": "fetch", "limit": 0, "rid": "q"})
    frame = orjson.loads(encode_error(err, "q"))
    assert frame["field"] == "limit"
    assert frame["rid"] == "q"


def test_ranges_payload_is_list_of_pairs() -> None:
    assert ranges_payload([(1, 3), (5, 5)]) == [[1, 3], [5, 5]]
    assert ranges_payload([]) == []


def test_a_client_send_key_is_shown_as_the_clients_id_everywhere() -> None:
    """A client's send id is stored under a key of its sender's (no business server id
    can be one: ids have no control characters) and every event encoding shows the id
    as the client gave it: the websocket frame, fetch/HTTP events, the gRPC event."""
    from pushgate.protocol import client_key, encode_event, event_dict, public_id
    from pushgate.router.wire import event_to_pb
    from pushgate.store.base import Event

    key = client_key("mal", "order-42")
    assert key != client_key("nia", "order-42") and key != "order-42"
    assert public_id(key) == "order-42" and public_id("order-42") == "order-42"
    assert public_id(None) is None
    assert orjson.loads(encode_event(1, key, b"1", 0.0))["id"] == "order-42"
    assert event_dict(1, key, b"1", 0.0)["id"] == "order-42"
    assert event_to_pb(Event("kim", 1, key, b"1", 0.0, 1.0)).id == "order-42"
    assert not event_to_pb(Event("kim", 1, None, b"1", 0.0, 1.0)).HasField("id")
