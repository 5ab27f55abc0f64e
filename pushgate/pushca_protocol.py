"""Pushca's websocket messages (pure: no I/O). See docs/protocol.md, "Migrating from Pushca".

A connection opened through Pushca's connection string (``ws://host:port/{jwt}``) speaks
Pushca's text messages instead of pushgate's JSON frames:

server → client
    ``<body>``                 an ordinary message (a JSON string body is sent as the
                               string itself, any other body as its JSON text)
    ``<messageId>@@<body>``    a message that needs an ACKNOWLEDGE (a send with ``ack``)
    ``<uuid>@@ACKNOWLEDGE``    the command ``uuid`` was carried out
    ``<uuid>@@RESPONSE@@<b>``  the command's answer; pushgate answers errors this way,
                               ``b`` being the error body of the HTTP API
client → server, as the published browser client writes them or as the document's JSON
    ``<uuid>@@<COMMAND>@@<json metaData>`` (``@@<json>`` may be omitted)
    ``{"command": "<COMMAND>", "metaData": {...}}``

:func:`parse_command` turns a client message into a :class:`Command` (or raises
:class:`~pushgate.errors.InvalidRequest` naming the field); :func:`message_of` reads a
native server frame (:mod:`pushgate.protocol`) as the message a Pushca client gets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from pushgate.errors import InvalidRequest, PushgateError

DELIMITER = "@@"
PING = "PING"
ACKNOWLEDGE = "ACKNOWLEDGE"
SEND_MESSAGE = "SEND_MESSAGE"
SEND_MESSAGE_WITH_ACKNOWLEDGE = "SEND_MESSAGE_WITH_ACKNOWLEDGE"
#: Commands of Pushca's client that pushgate answers with a ``not_supported`` error.
CHANNEL_COMMANDS = frozenset({"ADD_MEMBERS_TO_CHANNEL", "SEND_MESSAGE_TO_CHANNEL",
                              "REMOVE_ME_FROM_CHANNEL", "MARK_CHANNEL_AS_READ",
                              "GET_CHANNELS", "GET_CHANNEL_HISTORY"})
COMMANDS = frozenset({PING, ACKNOWLEDGE, SEND_MESSAGE, SEND_MESSAGE_WITH_ACKNOWLEDGE})
MAX_UUID_LEN = 64

#: A connection string's last path segment: a JWT (three base64url parts).
_JWT_SEGMENT = re.compile(r"/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")
_COMMAND_NAME = re.compile(r"[A-Z][A-Z_]{0,63}")


@dataclass(frozen=True, slots=True)
class Command:
    """A client command: ``uuid`` is None in the JSON form (nothing to answer to)."""

    name: str
    meta: dict[str, Any] = field(default_factory=dict)
    uuid: str | None = None

    @property
    def message_id(self) -> str:
        """``metaData.messageId`` of ACKNOWLEDGE."""
        mid = self.meta.get("messageId")
        if not isinstance(mid, str) or not mid:
            raise InvalidRequest("'metaData.messageId' must be a non-empty string",
                                 field="metaData.messageId")
        return mid

    @property
    def ack_id(self) -> str | None:
        """Where the answer goes: Pushca's client waits for a send-with-acknowledge under
        the message's ``id`` when it gave one, else under the command's uuid."""
        mid = self.meta.get("id")
        if self.name == SEND_MESSAGE_WITH_ACKNOWLEDGE and isinstance(mid, str) and mid:
            return mid
        return self.uuid


def connection_token(path: str) -> str | None:
    """The JWT of a Pushca connection string's path (``/{jwt}``), else None."""
    m = _JWT_SEGMENT.fullmatch(path)
    return m.group(1) if m else None


def _meta(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidRequest("'metaData' must be a JSON object", field="metaData")
    return raw


def _name(raw: Any) -> str:
    if not isinstance(raw, str) or not _COMMAND_NAME.fullmatch(raw):
        raise InvalidRequest("'command' must be a command name such as ACKNOWLEDGE",
                             field="command")
    if raw in CHANNEL_COMMANDS:
        raise InvalidRequest(f"{raw}: channels are not supported by pushgate; send to a "
                             "filter (SEND_MESSAGE) instead", field="command",
                             code="not_supported")
    if raw not in COMMANDS:
        raise InvalidRequest(f"unknown command {raw!r}; pushgate takes "
                             f"{', '.join(sorted(COMMANDS))}", field="command",
                             code="unknown_command")
    return raw


def command_uuid(text: str) -> str | None:
    """The uuid of a ``<uuid>@@...`` message, even one that fails to parse (so that the
    error can be answered to it); None for the JSON form."""
    if text.startswith("{"):
        return None
    head, sep, _ = text.partition(DELIMITER)
    return head if sep and 0 < len(head) <= MAX_UUID_LEN else None


def parse_command(text: str) -> Command:
    """One client message. Raises :class:`InvalidRequest` naming the field (``command``,
    ``metaData``); channel commands raise it with code ``not_supported``."""
    if text.startswith("{"):
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise InvalidRequest(f"command is not valid JSON: {e}", field="command") from None
        if not isinstance(obj, dict) or "command" not in obj:
            raise InvalidRequest("a JSON command needs 'command' (and 'metaData')",
                                 field="command")
        return Command(_name(obj["command"]), _meta(obj.get("metaData")))
    uuid = command_uuid(text)
    if uuid is None:
        raise InvalidRequest("a command is '<uuid>@@<COMMAND>@@<json metaData>' or "
                             '{"command": ..., "metaData": {...}}', field="command")
    rest = text[len(uuid) + len(DELIMITER):]
    name, sep, raw_meta = rest.partition(DELIMITER)
    name = _name(name)
    meta: dict[str, Any] = {}
    if sep:
        try:
            meta = _meta(orjson.loads(raw_meta))
        except orjson.JSONDecodeError as e:
            raise InvalidRequest(f"metaData is not valid JSON: {e}", field="metaData") from None
    return Command(name, meta, uuid)


@dataclass(frozen=True, slots=True)
class Message:
    """A native event frame as a Pushca client gets it."""

    body: str
    event_id: str | None
    seq: int | None

    def message_id(self, seq: int) -> str:
        """The id in ``<messageId>@@<body>``: the event's ``id`` (the sender's, as Pushca
        does), or the seq when there is none or it holds ``@@`` (it could not be split off)."""
        eid = self.event_id
        if eid and DELIMITER not in eid:
            return eid
        return str(seq)


def message_of(frame: str) -> Message | None:
    """The message a Pushca client gets for a native server frame: ``event`` frames
    only (``hello``, ``head``, replies and ``kicked`` are native-protocol features a
    Pushca connection does not see)."""
    if not frame.startswith('{"type":"event"'):
        return None
    obj = orjson.loads(frame)
    body = obj.get("body")
    text = body if isinstance(body, str) else orjson.dumps(body).decode()
    return Message(text, obj.get("id"), obj.get("seq"))


def with_id(message_id: str, body: str) -> str:
    return f"{message_id}{DELIMITER}{body}"


def acknowledge(uuid: str) -> str:
    return f"{uuid}{DELIMITER}{ACKNOWLEDGE}"


def response(uuid: str, body: str) -> str:
    return f"{uuid}{DELIMITER}RESPONSE{DELIMITER}{body}"


def error_body(err: PushgateError) -> str:
    """The HTTP API's error body: ``{"error": {"code", "message", "field", "retryable"}}``
    (an outage told as to every websocket client: ``PushgateError.client_message``)."""
    return orjson.dumps({"error": {**err.to_dict(), "message": err.client_message}}).decode()
