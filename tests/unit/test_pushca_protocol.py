"""Pushca's websocket messages (pushgate.pushca_protocol) and the keyless open-connection's
decisions (pushgate.hub.public_open), without servers."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pushgate import protocol as p
from pushgate import pushca_protocol as pp
from pushgate.auth import PUSHCA_SCOPE, Identity, TokenCodec
from pushgate.errors import CloseCode, Forbidden, InvalidRequest
from pushgate.hub.public_open import PublicOpen
from pushgate.hub.pushca import PushcaSession
from pushgate.logs import RedactTokens
from tests.unit.test_session import Outlet


def test_browser_form_commands() -> None:
    cmd = pp.parse_command('u-1@@ACKNOWLEDGE@@{"messageId":"m-1"}')
    assert cmd == pp.Command("ACKNOWLEDGE", {"messageId": "m-1"}, "u-1")
    assert cmd.message_id == "m-1" and cmd.ack_id == "u-1"
    assert pp.parse_command("u-2@@PING") == pp.Command("PING", {}, "u-2")
    # a send with acknowledge is answered under its message id when it has one
    cmd = pp.parse_command('u-3@@SEND_MESSAGE_WITH_ACKNOWLEDGE@@{"id":"m-9","client":{},'
                           '"message":"x"}')
    assert cmd.ack_id == "m-9"
    cmd = pp.parse_command('u-4@@SEND_MESSAGE_WITH_ACKNOWLEDGE@@{"id":null,"message":"x"}')
    assert cmd.ack_id == "u-4"
    # a message body holding '@@' stays in the metaData JSON
    cmd = pp.parse_command('u-5@@SEND_MESSAGE@@{"message":"a@@b","filter":{}}')
    assert cmd.meta["message"] == "a@@b"


def test_json_form_commands() -> None:
    cmd = pp.parse_command('{"command":"ACKNOWLEDGE","metaData":{"messageId":"018a-0"}}')
    assert cmd == pp.Command("ACKNOWLEDGE", {"messageId": "018a-0"}, None)
    assert cmd.ack_id is None
    assert pp.parse_command('{"command":"PING"}') == pp.Command("PING")


@pytest.mark.parametrize(("text", "field", "code"), [
    ("hello", "command", "invalid_request"),
    ("u@@NOPE@@{}", "command", "unknown_command"),
    ("u@@ping", "command", "invalid_request"),
    ("u@@ADD_MEMBERS_TO_CHANNEL@@{}", "command", "not_supported"),
    ("u@@SEND_MESSAGE_TO_CHANNEL@@{}", "command", "not_supported"),
    ("u@@SEND_MESSAGE@@{bad", "metaData", "invalid_request"),
    ("u@@SEND_MESSAGE@@[1]", "metaData", "invalid_request"),
    ('{"command": 1}', "command", "invalid_request"),
    ('{"metaData": {}}', "command", "invalid_request"),
    ('{"command": "PING", "metaData": "x"}', "metaData", "invalid_request"),
    ("{not json", "command", "invalid_request"),
])
def test_bad_commands_name_the_field(text: str, field: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        pp.parse_command(text)
    assert (info.value.field, info.value.code) == (field, code)


def test_acknowledge_needs_a_message_id() -> None:
    for meta in ('{}', '{"messageId": ""}', '{"messageId": 3}'):
        with pytest.raises(InvalidRequest) as info:
            _ = pp.parse_command(f"u@@ACKNOWLEDGE@@{meta}").message_id
        assert info.value.field == "metaData.messageId"


def test_command_uuid_of_unparsable_messages() -> None:
    assert pp.command_uuid("u-1@@NOPE") == "u-1"
    assert pp.command_uuid('{"command": "x"}') is None
    assert pp.command_uuid("no delimiter") is None
    assert pp.command_uuid("x" * 65 + "@@PING") is None


def test_connection_token() -> None:
    assert pp.connection_token("/aaa.bbb.ccc") == "aaa.bbb.ccc"
    assert pp.connection_token("/eyJ0-_.eyJ1.sig_-") == "eyJ0-_.eyJ1.sig_-"
    for path in ("/v1/ws", "/", "/a.b", "/x/aaa.bbb.ccc", "/aaa.bbb.ccc/", "/a.b.c.d",
                 "/aaa.bbb.c c"):
        assert pp.connection_token(path) is None, path


def test_native_frames_as_pushca_messages() -> None:
    string = p.encode_event(7, "m-1", b'"Hello dear users!"', 1.0)
    assert pp.message_of(string) == pp.Message("Hello dear users!", "m-1", 7)
    obj = p.encode_event(None, None, b'{"a": [1, 2]}', 1.0)
    assert pp.message_of(obj) == pp.Message('{"a":[1,2]}', None, None)
    assert pp.message_of(p.encode_event(None, None, b"3", 1.0)) == pp.Message("3", None, None)
    for frame in (p.encode_hello("s", "u", 0, 0, {}), p.encode_head(3), p.encode_pong(None),
                  p.encode_reply(1, {"x": 1}), p.encode_kicked("quota", None)):
        assert pp.message_of(frame) is None, frame
    # the message id: the event's id, or the seq when it has none or holds '@@'
    assert pp.Message("b", "m-1", 7).message_id(7) == "m-1"
    assert pp.Message("b", None, 7).message_id(7) == "7"
    assert pp.Message("b", "odd@@id", 7).message_id(7) == "7"


def test_answers() -> None:
    assert pp.with_id("m-1", "body") == "m-1@@body"
    assert pp.acknowledge("u-1") == "u-1@@ACKNOWLEDGE"
    assert pp.response("u-1", '{"x":1}') == 'u-1@@RESPONSE@@{"x":1}'
    err = InvalidRequest("'message' is required", field="message")
    assert pp.error_body(err) == ('{"error":{"code":"invalid_request","message":"\'message\' '
                                  'is required","retryable":false,"field":"message"}}')


def test_public_open_decisions() -> None:
    now = [0.0]
    public = PublicOpen(True, ["w1"], ["app"], rate=0.5, burst=2, clock=lambda: now[0])
    assert public.keyless(None) and not public.keyless("Bearer k")
    assert not PublicOpen(False, ["w1"], ["app"], 1, 1).keyless(None)
    public.check(Identity("u", "w1", "", "app"))
    with pytest.raises(Forbidden) as info:
        public.check(Identity("u", "w2", "", "app"))
    assert info.value.field == "client.workSpaceId"
    with pytest.raises(Forbidden) as info:
        public.check(Identity("u", "w1", "", ""))
    assert info.value.field == "client.applicationId"
    # burst 2, then one every 2 s, per IP
    assert public.admit("10.0.0.1") == 0.0 and public.admit("10.0.0.1") == 0.0
    assert public.admit("10.0.0.1") == pytest.approx(2.0)
    assert public.admit("10.0.0.2") == 0.0
    now[0] = 2.0
    assert public.admit("10.0.0.1") == 0.0
    assert public.admit(None) == 0.0


def test_pushca_scoped_tokens() -> None:
    codec = TokenCodec(algorithms=["HS256"], secret="s" * 32)
    raw, token = codec.mint(Identity("u"), 60, PUSHCA_SCOPE)
    assert codec.verify(raw).scope == PUSHCA_SCOPE == token.scope
    with pytest.raises(Forbidden) as info:
        codec.verify(raw).require_native()
    assert info.value.field == "token"
    raw, _ = codec.mint(Identity("u"), 60)
    codec.verify(raw).require_native()


def test_log_redaction_of_connection_strings() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, '%s - "WebSocket %s" [accepted]',
                               ("1.2.3.4:5", "/eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl"), None)
    RedactTokens().filter(record)
    assert record.getMessage() == '1.2.3.4:5 - "WebSocket /***" [accepted]'


# -- PushcaSession (pushgate.hub.pushca): what reaches the wire ---------------------------------


async def test_pushca_session_writes_pushca_messages_in_order() -> None:
    fetches: dict[int, asyncio.Future[str | None]] = {}

    async def fetch(user: str, seq: int) -> str | None:
        fetches[seq] = asyncio.get_running_loop().create_future()
        return await fetches[seq]

    out = Outlet()
    s = PushcaSession(Identity("u"), "hub", 8, out, fetch=fetch)
    assert s.state.value == "open"  # no catch-up
    assert not s.push(p.encode_hello("s", "u", 0, 0, {}))
    assert s.push(p.encode_event(None, None, b'"plain"', 1.0))
    assert s.push(p.encode_event(1, "m-1", b'{"k":1}', 1.0), 1, again=True)
    # a large stored event (head) is fetched; what comes meanwhile waits behind it
    assert s.push(p.encode_head(2), 2)
    assert s.push(p.encode_event(3, None, b'"after"', 1.0), 3)
    assert s.push(p.encode_head(4), 4, again=True)
    assert s.push(p.encode_event(None, None, b'"last"', 1.0))
    await asyncio.sleep(0)
    assert list(fetches) == [2]
    assert out.wire == ["plain", 'm-1@@{"k":1}']
    fetches[2].set_result(p.encode_event(2, None, b'"big two"', 1.0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert list(fetches) == [2, 4]  # the next large one, in its turn
    assert out.wire == ["plain", 'm-1@@{"k":1}', "big two", "after"]
    fetches[4].set_result(p.encode_event(4, "big-4", b'"big four"', 1.0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert out.wire == ["plain", 'm-1@@{"k":1}', "big two", "after", "big-4@@big four", "last"]
    # ACKNOWLEDGE ids map back to seqs, once
    assert s.acknowledged("big-4") == 4 and s.acknowledged("big-4") == 0
    assert s.acknowledged("m-1") == 1
    # kicked: the close code only, no 'kicked' frame
    s.kick(p.encode_kicked("quota", None), "kicked")
    assert out.close is not None and out.close[0] == CloseCode.KICKED
    assert not any("kicked" in w for w in out.wire)


async def test_pushca_session_puts_crossed_deliveries_in_order_and_fills_gaps() -> None:
    """protocol.md, Pushca: Pushca sessions receive the same sends as native ones. In a
    cluster two routers' deliveries of one user's events can cross: a seq that comes
    before the one below it is held (not dropped, as it was), and what does not come is
    filled from the store as whole Pushca messages — from the head the session started
    at (no history)."""
    from tests.unit.test_gaps import Gaps

    out, gaps = Outlet(), Gaps(hold_s=30)
    s = PushcaSession(Identity("u"), "hub", 8, out)
    s.order_from(5, gaps)  # the user's head when the session was announced
    assert s.push(p.encode_event(7, None, b'"seven"', 1.0), 7)  # 6 is still in flight
    assert out.wire == []
    assert s.push(p.encode_event(6, None, b'"six"', 1.0), 6)
    assert out.wire == ["six", "seven"]
    assert not s.push(p.encode_event(6, None, b'"six"', 1.0), 6)  # once
    # 8 never comes live: the gap is filled from the store, bodies inline
    assert s.push(p.encode_event(9, None, b'"nine"', 1.0), 9)
    assert s.gap() == (7, 9)
    s.fill([(8, p.encode_event(8, "m-8", b'{"big":"' + b"x" * 10 + b'"}', 1.0))])
    assert out.wire == ["six", "seven", '{"big":"xxxxxxxxxx"}', "nine"]
