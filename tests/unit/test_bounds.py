"""Every integer a client or a business server sends has a bound and a documented error
(issue #15): huge (2**63 .. 2**64-1, 10**30), negative, float and boolean values in the
websocket frames, the connect and fetch query strings and the request bodies are refused
naming the field — they never reach the store. The bounds: docs/protocol.md (client
frames) and docs/http-api.md (Errors, limits)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pushgate import models
from pushgate.errors import InvalidRequest
from pushgate.hub.api import query_int
from pushgate.models import MAX_SEQ
from pushgate.protocol import (
    MAX_RID_INT,
    Ack,
    Fetch,
    Ping,
    Read,
    parse_after,
    parse_client_frame,
    parse_read,
)
from pushgate.router.requests import Limits, parse_send

LIMITS = Limits(max_body_bytes=1000, max_users=3, default_ttl_s=3600, max_ttl_s=86400,
                ack_timeout_ms=5000)

# JSON number literals, as a client writes them; the last three decode to floats
# (orjson's integers end at 2**64-1 and -2**63)
HUGE = [str(2**63), str(2**64 - 1), str(-(2**63)), str(2**64), "1" + "0" * 30,
        "-" + "1" + "0" * 30]
NOT_INT = ["1.0", "1e3", "true", "false", '"1"', "[1]", "{}"]


def frame(text: str | bytes) -> Any:
    return parse_client_frame(text, fetch_max_limit=1000)


def refused(text: str) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        frame(text)
    return info.value


# --- websocket frames -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [*HUGE, "0", "-1", *NOT_INT])
def test_ack_seq_out_of_range_or_not_an_integer(value: str) -> None:
    assert refused(f'{{"type":"ack","seq":{value}}}').field == "seq"


@pytest.mark.parametrize("value", [*HUGE, "-1", *NOT_INT])
def test_fetch_after_out_of_range_or_not_an_integer(value: str) -> None:
    err = refused(f'{{"type":"fetch","after":{value},"rid":"f"}}')
    assert err.field == "after" and "'after'" in err.message


@pytest.mark.parametrize("value", [*HUGE, "0", "-1", "1001", *NOT_INT])
def test_fetch_limit_out_of_range_or_not_an_integer(value: str) -> None:
    assert refused(f'{{"type":"fetch","limit":{value}}}').field == "limit"


@pytest.mark.parametrize("value", [*HUGE, "0", "-1", *NOT_INT])
def test_read_seqs_and_ranges_out_of_range(value: str) -> None:
    assert refused(f'{{"type":"read","seqs":[1,{value}]}}').field == "seqs"
    assert refused(f'{{"type":"read","ranges":[[1,{value}]]}}').field == "ranges"
    assert refused(f'{{"type":"read","ranges":[[{value},1]]}}').field == "ranges"


def test_the_largest_seq_is_accepted_everywhere() -> None:
    assert frame(f'{{"type":"ack","seq":{MAX_SEQ}}}') == Ack(MAX_SEQ)
    assert frame(f'{{"type":"fetch","after":{MAX_SEQ}}}') == Fetch(MAX_SEQ, 100, None)
    assert frame(f'{{"type":"read","seqs":[{MAX_SEQ}],"ranges":[[1,{MAX_SEQ}]]}}') == \
        Read((MAX_SEQ,), ((1, MAX_SEQ),), None)
    assert MAX_SEQ == 2**63 - 1  # seqs are signed 64-bit in the store


def test_seq_above_the_bound_names_the_bound() -> None:
    assert refused(f'{{"type":"ack","seq":{2**63}}}').message == f"'seq' must be <= {MAX_SEQ}"
    assert refused(f'{{"type":"fetch","after":{2**64 - 1}}}').message == \
        f"'after' must be <= {MAX_SEQ}"
    assert refused(f'{{"type":"read","seqs":[{2**63}]}}').message == \
        f"'seqs' must hold integers <= {MAX_SEQ}"
    assert refused(f'{{"type":"read","ranges":[[1,{2**63}]]}}').message == \
        f"each of 'ranges' must be [first, last] with integers <= {MAX_SEQ}"


def test_existing_messages_are_unchanged() -> None:
    assert refused('{"type":"ack","seq":0}').message == "'seq' must be >= 1"
    assert refused('{"type":"ack","seq":1.5}').message == "'seq' must be an integer"
    assert refused('{"type":"ack"}').message == "'seq' is required"
    assert refused('{"type":"fetch","limit":1001}').message == "'limit' must be <= 1000"
    assert refused('{"type":"fetch","after":-1}').message == "'after' must be >= 0"
    assert refused('{"type":"read","seqs":[0]}').message == "'seqs' must hold integers >= 1"
    for not_an_integer in ("1.0", "true", '"3"'):  # (protocol.md: not integers, said so)
        assert refused('{"type":"read","seqs":[' + not_an_integer + ']}').message == \
            "'seqs' must hold integers"
    assert refused('{"type":"read","ranges":[[0,1]]}').message == \
        "each of 'ranges' must be [first, last] with integers >= 1"
    assert refused('{"type":"ping","rid":1.5}').message == "'rid' must be a string or an integer"
    assert refused('{"type":"ping","rid":"' + "r" * 65 + '"}').message == \
        "'rid' is longer than 64 characters"


@pytest.mark.parametrize("rid", [MAX_RID_INT, -MAX_RID_INT, 0, "r" * 64])
def test_rid_within_bounds_is_kept(rid: Any) -> None:
    assert frame(orjson.dumps({"type": "ping", "rid": rid})) == Ping(rid)


@pytest.mark.parametrize("value", [str(MAX_RID_INT + 1), str(-MAX_RID_INT - 1), *HUGE,
                                   "1.0", "true", '"' + "x" * 65 + '"'])
def test_rid_out_of_range_is_refused_naming_rid(value: str) -> None:
    err = refused(f'{{"type":"fetch","rid":{value}}}')
    assert err.field == "rid" and "'rid'" in err.message
    assert MAX_RID_INT == 2**53 - 1


# --- the connect query's after (GET /v1/ws?after=) --------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [(None, None), ("", None), ("0", 0), ("17", 17),
                                            (str(MAX_SEQ), MAX_SEQ), ("0" * 40 + "5", 5)])
def test_connect_after_accepted(raw: str | None, value: int | None) -> None:
    assert parse_after(raw) == value


@pytest.mark.parametrize("raw", [str(2**63), str(2**64 - 1), "9" * 5000, "-1", "1.0", "1e3",
                                 "x", " 1", "1_0", "\u00b2", "\u0663", "+1"])
def test_connect_after_refused_naming_after(raw: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_after(raw)
    assert info.value.field == "after"


# --- HTTP query strings ------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [(None, 7), ("", 7), ("0", 0), ("+5", 5),
                                            (str(MAX_SEQ), MAX_SEQ), ("0" * 60 + "3", 3)])
def test_query_int_accepted(raw: str | None, value: int) -> None:
    assert query_int(raw, "after", 7, 0, MAX_SEQ) == value


@pytest.mark.parametrize(("raw", "words"), [
    (str(2**63), "between"), (str(2**64 - 1), "between"), ("9" * 5000, "between"),
    ("-1", "between"), ("-" + "9" * 50, "between"), ("1.0", "an integer"),
    ("1e3", "an integer"), ("1_000", "an integer"), (" 1", "an integer"),
    ("\u00b2", "an integer"), ("\u0663", "an integer"), ("0x10", "an integer"),
    ("abc", "an integer"), ("1\n", "an integer")])
def test_query_int_refused_naming_the_parameter(raw: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        query_int(raw, "after", 0, 0, MAX_SEQ)
    assert info.value.field == "after" and words in info.value.message
    assert info.value.message in ("'after' must be an integer",
                                  f"'after' must be between 0 and {MAX_SEQ}")


# --- request bodies: the send (parse_send and its model) and read marks ---------------------------

BIG_INTS = [2**63, 2**64 - 1, 10**30, -1, -(2**63), 1.0, 1e30, True]


def send_refused(body: dict[str, Any]) -> tuple[str | None, str | None]:
    with pytest.raises(InvalidRequest) as by_hand:
        parse_send(body, LIMITS)
    with pytest.raises(InvalidRequest) as by_model:
        models.parse(models.SendRequest, body, LIMITS)
    return by_hand.value.field, by_model.value.field


@pytest.mark.parametrize("value", BIG_INTS)
@pytest.mark.parametrize(("where", "field"), [
    ("ttl", "ttl"), ("ack_timeout_ms", "ack_timeout_ms"), ("push.badge", "push.badge"),
    ("push.ttl", "push.ttl")])
def test_send_integers_out_of_range(value: Any, where: str, field: str) -> None:
    body: dict[str, Any] = {"users": ["a"], "body": 1, "push": {"title": "t"}}
    if where.startswith("push."):
        body["push"][where[5:]] = value
    else:
        body[where] = value
    assert send_refused(body) == (field, field)


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, -1, 0, 1.0, True])
def test_read_marks_out_of_range(value: Any) -> None:
    for obj, field in (({"seqs": [value]}, "seqs"), ({"ranges": [[1, value]]}, "ranges")):
        with pytest.raises(InvalidRequest) as by_hand:
            parse_read(obj)
        with pytest.raises(InvalidRequest) as by_model:
            models.parse(models.ReadRequest, obj)
        assert by_hand.value.field == by_model.value.field == field


def test_read_marks_accept_the_largest_seq() -> None:
    obj = {"seqs": [MAX_SEQ], "ranges": [[1, MAX_SEQ]]}
    assert parse_read(obj) == ((MAX_SEQ,), ((1, MAX_SEQ),))
    req = models.parse(models.ReadRequest, obj)
    assert req.seqs == [MAX_SEQ] and req.ranges == [[1, MAX_SEQ]]


def test_users_count_is_bounded() -> None:
    assert send_refused({"users": ["a", "b", "c", "d"], "body": 1}) == ("users", "users")


def test_the_docs_state_the_bounds() -> None:
    from pathlib import Path

    M = "\u2212"  # the docs' minus sign
    docs = Path(__file__).resolve().parents[2] / "docs"
    protocol, http = (docs / "protocol.md").read_text(), (docs / "http-api.md").read_text()
    spaced = f"{MAX_SEQ:,}".replace(",", " ")
    for doc in (protocol, http):
        assert f"`MAX_SEQ` is 2^63{M}1 = {spaced}" in doc
    assert f"{M}(2^53{M}1)..2^53{M}1" in protocol and MAX_RID_INT == 2**53 - 1
    assert f"| send | `push.badge` | 0..{models.MAX_BADGE:,} (2^31{M}1) |".replace(",", " ") in http


def test_the_schema_states_the_stores_device_checks() -> None:
    from pushgate.store.base import MAX_KEY_LEN, MAX_TOKEN_LEN

    assert models.MAX_DEVICE_TOKEN_LEN == MAX_TOKEN_LEN and models.MAX_ID_LEN == MAX_KEY_LEN
    props = models.DeviceBody.model_json_schema()["properties"]
    assert props["token"]["maxLength"] == MAX_TOKEN_LEN
    app = props["app"]["anyOf"][0]
    assert (app["type"], app["minLength"], app["maxLength"], app["pattern"]) == \
        ("string", 1, MAX_KEY_LEN, r"^[^\x00-\x1f\x7f-\x9f]*$")


async def test_the_served_document_bounds_limit_by_the_setting() -> None:
    import httpx

    from pushgate.hub.app import create_app
    from pushgate.settings import Settings

    for fetch_max in (1000, 50):
        app = create_app(Settings(jwt_secret="s" * 32, api_keys=["k"],
                                  fetch_max_limit=fetch_max))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://gw") as client:
            doc = (await client.get("/openapi.json")).json()
        params = {p["name"]: p["schema"] for p in
                  doc["paths"]["/v1/users/{user}/events"]["get"]["parameters"]}
        assert params["limit"] == {"type": "integer", "minimum": 1, "maximum": fetch_max,
                                   "default": min(100, fetch_max)}
        assert params["after"]["maximum"] == MAX_SEQ
