"""Property-based tests (hypothesis) of everything that decodes client and business-server
input (issue #15): the websocket client-frame codec, the connect and fetch query
parameters, the send validator and the request models.

The property, for any input: either a value whose numbers are within the documented
bounds, or a :class:`~pushgate.errors.PushgateError` (``BadJson``, ``UnknownType``,
``InvalidRequest``, ``PayloadTooLarge``) naming the field — never another exception.
The inputs are any JSON value in any field (hypothesis' recursive JSON, integers of any
size written as JSON literals, so above 64 bits they decode to floats as on the wire),
targeted bounds (0, -1, 2**53, 2**63-1, 2**63, 2**64-1, 10**30, …) and random text and
bytes.

Reproducible: derandomized, no example database. ``PUSHGATE_FUZZ_EXAMPLES=5000`` runs more
examples with random seeds (a local bug hunt; CI keeps the fixed, fast default).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from pushgate import models
from pushgate.errors import InvalidRequest, PushgateError
from pushgate.hub.api import query_int
from pushgate.models import (
    MAX_ACK_TIMEOUT_MS,
    MAX_BADGE,
    MAX_ID_LEN,
    MAX_PUSH_TTL_S,
    MAX_READ_ITEMS,
    MAX_SEQ,
)
from pushgate.protocol import (
    MAX_RID_INT,
    MAX_RID_LEN,
    Ack,
    BadJson,
    ClientFrame,
    Fetch,
    Ping,
    Read,
    ReadStateRequest,
    RegisterDevice,
    Send,
    parse_after,
    parse_client_frame,
    parse_read,
)
from pushgate.router.requests import Limits, SendRequest, from_pushca, parse_send, pushca_identity

_MORE = int(os.environ.get("PUSHGATE_FUZZ_EXAMPLES", "0"))


def fuzz(examples: int) -> settings:
    """Settings of these tests: ``examples`` (fast, fixed examples) unless overridden."""
    return settings(max_examples=_MORE or examples, deadline=None, database=None,
                    derandomize=not _MORE, suppress_health_check=list(HealthCheck))


FETCH_MAX = 1000
LIMITS = Limits(max_body_bytes=2000, max_users=5, default_ttl_s=3600, max_ttl_s=86400,
                ack_timeout_ms=5000)

# --- strategies ---------------------------------------------------------------------------------

EDGE_INTS = [0, 1, -1, 2, 99, 100, 1000, 1001, 60_000, 60_001, MAX_BADGE, MAX_BADGE + 1,
             MAX_PUSH_TTL_S, MAX_PUSH_TTL_S + 1, 86400, 86401, MAX_RID_INT, MAX_RID_INT + 1,
             -MAX_RID_INT, -MAX_RID_INT - 1, MAX_SEQ, MAX_SEQ + 1, 2**64 - 1, 2**64, 10**30,
             -(2**63), -(2**63) - 1, -(10**30)]
ints = st.sampled_from(EDGE_INTS) | st.integers()
# text without lone surrogates (those make the whole frame invalid JSON; random_text has them)
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
scalars = (st.none() | st.booleans() | ints | st.floats(allow_nan=False, allow_infinity=False)
           | text | st.sampled_from(["", "apns", "fcm", "high", "normal", "a" * (MAX_ID_LEN + 1)]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(text, inner, max_size=4), max_leaves=12)
seq_lists = st.lists(ints | json_values, max_size=4)
range_lists = st.lists(st.lists(ints, min_size=0, max_size=3) | json_values, max_size=4)


def field(*specific: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's value: one of its plausible shapes, or any JSON value."""
    return st.one_of(*specific, json_values)


def ids() -> st.SearchStrategy[Any]:
    return field(st.sampled_from(["alice", "bob", "w1", "phone", "a\x01b", "é"]))


FRAME_TYPES = ["ack", "fetch", "read", "read_state", "send", "ping", "register_device",
               "unregister_device", "subscribe"]
frames = st.fixed_dictionaries(
    {"type": field(st.sampled_from(FRAME_TYPES))},
    optional={"rid": field(ints, st.text(max_size=70)), "seq": field(ints),
              "after": field(ints), "limit": field(ints), "seqs": field(seq_lists),
              "ranges": field(range_lists), "platform": field(st.sampled_from(["apns", "fcm"])),
              "token": field(text), "app": field(text), "users": field(st.lists(ids())),
              "body": json_values, "ttl": field(ints), "ack": field(st.booleans()),
              "ack_timeout_ms": field(ints), "filter": json_values})

pushes = st.fixed_dictionaries({}, optional={
    "title": field(text), "body": field(text), "badge": field(ints), "ttl": field(ints),
    "priority": field(st.sampled_from(["high", "normal"])), "data": json_values,
    "content_available": field(st.booleans()), "collapse_id": field(text),
    "apns": json_values})
client_refs = st.fixed_dictionaries({}, optional={
    "workspace": ids(), "account": ids(), "device": ids(), "application": ids()})
filters = st.fixed_dictionaries({}, optional={
    "workspace": ids(), "account": ids(), "device": ids(), "application": ids(),
    "find_any": field(st.booleans()), "exclude": field(st.lists(client_refs, max_size=3))})
sends = st.fixed_dictionaries({"body": json_values}, optional={
    "users": field(st.lists(ids(), max_size=7)), "filter": field(filters), "ttl": field(ints),
    "id": ids(), "push": field(pushes), "device": ids(), "ack": field(st.booleans()),
    "ack_timeout_ms": field(ints), "other": json_values})
sends_or_anything = sends | json_values
pushca_refs = st.fixed_dictionaries({}, optional={
    "workSpaceId": ids(), "accountId": ids(), "deviceId": ids(), "applicationId": ids(),
    "findAny": field(st.booleans()), "exclude": json_values})
pushca_sends = st.fixed_dictionaries({}, optional={
    "message": json_values, "id": ids(),
    "filter": field(st.builds(lambda f, x: {**f, "exclude": x}, pushca_refs,
                              st.lists(pushca_refs, max_size=2))),
    "client": field(pushca_refs), "other": json_values}) | json_values
read_marks = st.fixed_dictionaries({}, optional={
    "seqs": field(seq_lists), "ranges": field(range_lists), "other": json_values}) | json_values
open_connections = st.fixed_dictionaries({}, optional={
    "user": ids(), "workspace": ids(), "device": ids(), "application": ids(),
    "client": field(pushca_refs)}) | json_values
devices = st.fixed_dictionaries({}, optional={
    "platform": field(st.sampled_from(["apns", "fcm"])), "token": field(text),
    "app": field(text)}) | json_values


def dumps(value: Any) -> str:
    """JSON text as any client may write it: integers of any size as literals."""
    return json.dumps(value, ensure_ascii=False)


def random_text() -> st.SearchStrategy[str | bytes]:
    return st.text(max_size=200) | st.binary(max_size=200) | st.builds(
        lambda v, cut: dumps(v)[:cut], frames, st.integers(0, 200))


# --- checks -----------------------------------------------------------------------------------


def in_seq_range(x: int, low: int = 1) -> bool:
    return type(x) is int and low <= x <= MAX_SEQ


def check_rid(rid: Any) -> None:
    assert rid is None or (type(rid) is str and len(rid) <= MAX_RID_LEN) or (
        type(rid) is int and -MAX_RID_INT <= rid <= MAX_RID_INT), rid


def check_error(e: PushgateError) -> None:
    """A documented error: ``BadJson`` (not JSON / not an object: close 4104) may have no
    field; every other one names the field."""
    assert isinstance(e, InvalidRequest), e
    assert e.message and e.code
    if not isinstance(e, BadJson):
        assert e.field is not None, e  # (an unknown key may be named "")


def check_send(req: SendRequest, limits: Limits = LIMITS) -> None:
    assert 1 <= len(req.users) <= limits.max_users or (not req.users and req.filter)
    assert type(req.ttl_s) is int and 0 <= req.ttl_s <= limits.max_ttl_s
    assert type(req.ack_timeout_ms) is int and 1 <= req.ack_timeout_ms <= MAX_ACK_TIMEOUT_MS
    assert len(req.body) <= limits.max_body_bytes
    if req.push is not None:
        badge, ttl = req.push.get("badge"), req.push.get("ttl")
        assert badge is None or (type(badge) is int and 0 <= badge <= MAX_BADGE)
        assert ttl is None or (type(ttl) is int and 0 <= ttl <= MAX_PUSH_TTL_S)


def check_frame(f: ClientFrame) -> None:
    if isinstance(f, Ack):
        assert in_seq_range(f.seq)
        return
    check_rid(f.rid)
    if isinstance(f, Fetch):
        assert in_seq_range(f.after, 0)
        assert type(f.limit) is int and 1 <= f.limit <= FETCH_MAX
    elif isinstance(f, Read):
        assert 0 < len(f.seqs) + len(f.ranges) <= MAX_READ_ITEMS
        assert all(in_seq_range(s) for s in f.seqs)
        assert all(in_seq_range(a) and in_seq_range(b) and a <= b for a, b in f.ranges)
    elif isinstance(f, Send):
        # what the hub does with it: the HTTP send validation (docs/protocol.md#send)
        try:
            check_send(parse_send(f.request, LIMITS))
        except PushgateError as e:
            check_error(e)
    elif isinstance(f, RegisterDevice):
        assert f.platform in ("apns", "fcm") and f.token and (f.app is None or f.app)
    else:
        assert isinstance(f, Ping | ReadStateRequest)


def decode(text: str | bytes) -> None:
    try:
        f = parse_client_frame(text, fetch_max_limit=FETCH_MAX)
    except PushgateError as e:
        check_error(e)
    else:
        check_frame(f)


# --- the client-frame codec ---------------------------------------------------------------------


@fuzz(250)
@given(frames)
def test_any_json_in_any_field_of_a_frame(obj: dict[str, Any]) -> None:
    decode(dumps(obj))


@fuzz(150)
@given(random_text())
def test_random_text_and_bytes_as_a_frame(raw: str | bytes) -> None:
    decode(raw)


@fuzz(200)
@given(st.sampled_from(["ack", "fetch", "read"]),
       st.sampled_from(["seq", "after", "limit", "seqs", "ranges", "rid"]),
       st.sampled_from([str(i) for i in EDGE_INTS] + ["1e400", "-0", "1.0", "1e3", "0.5"]))
def test_number_literals_beyond_64_bits_in_numeric_fields(kind: str, name: str,
                                                          literal: str) -> None:
    value = {"seqs": f"[{literal}]", "ranges": f"[[1,{literal}]]"}.get(name, literal)
    decode(f'{{"type":"{kind}","{name}":{value},"seqs":[1]}}'.replace(
        '"seqs":[1],"seqs"', '"seqs"'))


@fuzz(150)
@given(read_marks)
def test_read_marks_of_the_websocket_and_the_model_agree(obj: Any) -> None:
    if not isinstance(obj, dict):
        return
    try:
        seqs, ranges = parse_read(obj)
    except InvalidRequest as e:
        check_error(e)
        with pytest.raises(InvalidRequest) as info:
            models.parse(models.ReadRequest, obj)
        assert info.value.field == e.field
        return
    assert all(in_seq_range(s) for s in seqs)
    req = models.parse(models.ReadRequest, obj)
    assert (tuple(req.seqs), tuple(map(tuple, req.ranges))) == (seqs, ranges)


# --- query parameters ---------------------------------------------------------------------------

query_values = (st.none() | st.text(max_size=30) | st.sampled_from([str(i) for i in EDGE_INTS])
                | st.from_regex(r"[+-]?0*[0-9]{1,30}", fullmatch=True) | st.just("9" * 5000))


@fuzz(150)
@given(query_values, st.sampled_from([(0, MAX_SEQ), (1, FETCH_MAX)]))
def test_http_query_integers(raw: str | None, bounds: tuple[int, int]) -> None:
    low, high = bounds
    try:
        value = query_int(raw, "after", low, low, high)
    except PushgateError as e:
        check_error(e)
        assert e.field == "after"
    else:
        assert type(value) is int and low <= value <= high


@fuzz(100)
@given(query_values)
def test_websocket_connect_after(raw: str | None) -> None:
    try:
        value = parse_after(raw)
    except PushgateError as e:
        check_error(e)
        assert e.field == "after"
    else:
        assert value is None or in_seq_range(value, 0)


# --- request bodies -----------------------------------------------------------------------------


@fuzz(250)
@given(sends_or_anything)
def test_send_bodies(obj: Any) -> None:
    try:
        req = parse_send(obj, LIMITS)
    except PushgateError as e:
        check_error(e)
        # the model that documents the body refuses it too (the same field: test_requests)
        with pytest.raises(InvalidRequest):
            models.parse(models.SendRequest, obj, LIMITS)
        return
    check_send(req)
    models.parse(models.SendRequest, obj, LIMITS)


@fuzz(150)
@given(pushca_sends, st.booleans())
def test_pushca_send_bodies(obj: Any, acknowledge: bool) -> None:
    try:
        check_send(parse_send(from_pushca(obj, acknowledge=acknowledge), LIMITS))
    except PushgateError as e:
        check_error(e)
    try:
        pushca_identity(obj)
    except PushgateError as e:
        check_error(e)


@fuzz(150)
@given(st.sampled_from(models.REQUEST_MODELS), open_connections | devices | read_marks | sends
       | pushca_sends)
def test_every_request_model(model: type[BaseModel], obj: Any) -> None:
    try:
        parsed = models.parse(model, obj, LIMITS)
    except PushgateError as e:
        check_error(e)
        return
    if isinstance(parsed, models.ReadRequest):
        assert all(in_seq_range(s) for s in parsed.seqs)
        assert all(in_seq_range(a) and in_seq_range(b) for a, b in parsed.ranges)
    if isinstance(parsed, models.SendRequest):
        assert parsed.ttl is None or 0 <= parsed.ttl <= LIMITS.max_ttl_s
        assert parsed.ack_timeout_ms is None or 1 <= parsed.ack_timeout_ms <= MAX_ACK_TIMEOUT_MS
        if parsed.push is not None:
            assert parsed.push.badge is None or 0 <= parsed.push.badge <= MAX_BADGE
            assert parsed.push.ttl is None or 0 <= parsed.push.ttl <= MAX_PUSH_TTL_S
