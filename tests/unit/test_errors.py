"""The error table: HTTP status, websocket close code, retry hint, wire shape."""

from __future__ import annotations

import pytest

from pushgate import errors
from pushgate.errors import (
    KINDS,
    AckTimeout,
    CloseCode,
    Conflict,
    Forbidden,
    Internal,
    InvalidRequest,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PushgateError,
    ShuttingDown,
    TokenExpired,
    Unauthorized,
)


@pytest.mark.parametrize(
    ("cls", "status", "close", "retryable"),
    [
        (InvalidRequest, 400, CloseCode.BAD_FRAME, False),
        (PayloadTooLarge, 413, CloseCode.MESSAGE_TOO_BIG, False),
        (Unauthorized, 401, CloseCode.UNAUTHORIZED, False),
        (TokenExpired, 401, CloseCode.TOKEN_EXPIRED, False),
        (Forbidden, 403, CloseCode.FORBIDDEN_ORIGIN, False),
        (NotFound, 404, CloseCode.BAD_FRAME, False),
        (AckTimeout, 408, CloseCode.NORMAL, True),
        (Conflict, 409, CloseCode.BAD_FRAME, False),
        (Overloaded, 503, CloseCode.UNAVAILABLE, True),
        (ShuttingDown, 503, CloseCode.SHUTDOWN, True),
        (Internal, 500, CloseCode.UNAVAILABLE, True),
    ],
)
def test_each_error_maps_to_its_status_close_code_and_retry_hint(
    cls: type[PushgateError], status: int, close: CloseCode, retryable: bool
) -> None:
    err = cls("boom")
    assert err.http_status == status
    assert err.close_code == close
    assert err.retryable is retryable


def test_every_error_class_has_a_table_entry() -> None:
    classes = [
        c for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, PushgateError)
    ]
    assert len(classes) >= 11
    for c in classes:
        assert c.kind in KINDS, c


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_retryable_errors_are_exactly_those_whose_close_code_says_reconnect(kind: str) -> None:
    k = KINDS[kind]
    assert k.retryable is k.close_code.reconnect


@pytest.mark.parametrize(
    "code", [CloseCode.SHUTDOWN, CloseCode.SLOW, CloseCode.IDLE, CloseCode.UNAVAILABLE]
)
def test_4000_range_close_codes_tell_the_client_to_reconnect(code: CloseCode) -> None:
    assert 4000 <= code < 4100
    assert code.reconnect is True


@pytest.mark.parametrize(
    "code",
    [
        CloseCode.UNAUTHORIZED,
        CloseCode.TOKEN_EXPIRED,
        CloseCode.KICKED,
        CloseCode.FORBIDDEN_ORIGIN,
        CloseCode.BAD_FRAME,
        CloseCode.MESSAGE_TOO_BIG,
    ],
)
def test_do_not_reconnect_close_codes(code: CloseCode) -> None:
    assert code.reconnect is False


def test_close_code_values_are_the_documented_wire_numbers() -> None:
    assert {c.name: int(c) for c in CloseCode} == {
        "NORMAL": 1000, "GOING_AWAY": 1001, "MESSAGE_TOO_BIG": 1009,
        "SHUTDOWN": 4000, "SLOW": 4001, "IDLE": 4002, "UNAVAILABLE": 4003,
        "UNAUTHORIZED": 4100, "TOKEN_EXPIRED": 4101, "KICKED": 4102,
        "FORBIDDEN_ORIGIN": 4103, "BAD_FRAME": 4104,
    }


def test_to_dict_carries_code_message_retryable_and_field() -> None:
    err = InvalidRequest("'limit' must be >= 1", field="limit")
    assert err.to_dict() == {
        "code": "invalid_request",
        "message": "'limit' must be >= 1",
        "retryable": False,
        "field": "limit",
    }


def test_to_dict_omits_field_when_there_is_none() -> None:
    assert Overloaded("queue full").to_dict() == {
        "code": "overloaded", "message": "queue full", "retryable": True,
    }


def test_specific_code_is_reported_but_status_follows_the_kind() -> None:
    err = InvalidRequest("not json", code="bad_json")
    assert err.to_dict()["code"] == "bad_json"
    assert err.http_status == 400
    assert err.close_code == CloseCode.BAD_FRAME


def test_subclass_errors_are_caught_as_their_parent() -> None:
    with pytest.raises(Unauthorized):
        raise TokenExpired("expired")
    with pytest.raises(InvalidRequest):
        raise PayloadTooLarge("too big")
    with pytest.raises(Overloaded):
        raise ShuttingDown("bye")


def test_error_str_is_its_message() -> None:
    assert str(NotFound("no such user")) == "no such user"


def test_the_docstring_tree_lists_every_error_with_its_status() -> None:
    """The tree drawn in ``pushgate/errors.py``'s docstring is the error reference:
    every class (and no other) with its HTTP status, parent above child."""
    import re

    from pushgate import errors

    def classes(cls: type[errors.PushgateError]) -> list[type[errors.PushgateError]]:
        return [cls, *(c for sub in cls.__subclasses__() for c in classes(sub))]

    drawn = {m[0]: int(m[1]) for m in re.findall(r"── (\w+)\s+(\d{3}) ", errors.__doc__ or "")}
    real = {c.__name__: c("x").http_status for c in classes(errors.PushgateError)
            if c.__module__ == "pushgate.errors" and c is not errors.PushgateError}
    assert drawn == real
