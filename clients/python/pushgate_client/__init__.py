"""pushgate client SDK (asyncio): a websocket connection that never loses an event.

::

    from pushgate_client import Client

    async with Client("http://127.0.0.1:8080", token_provider=get_token, after=0) as client:
        async for event in client:          # every stored event once, in seq order
            print(event.seq, event.body)

See docs/clients.md.
"""

from pushgate_client.backoff import Backoff
from pushgate_client.client import Client, TokenProvider, should_reconnect, ws_url
from pushgate_client.errors import (
    BadFrame,
    ClientClosed,
    ConnectionLost,
    ForbiddenOrigin,
    Kicked,
    MessageTooBig,
    PushgateClientError,
    RequestError,
    RequestTimeout,
    StoppedError,
    TokenExpired,
    Unauthorized,
)
from pushgate_client.inbox import Inbox
from pushgate_client.server import ServerApi
from pushgate_client.token import token_expiry
from pushgate_client.types import (
    CloseInfo,
    Event,
    FetchResult,
    Hello,
    Limits,
    ReadResult,
    ReadState,
    SendResult,
    State,
)

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "BadFrame",
    "Client",
    "ClientClosed",
    "CloseInfo",
    "ConnectionLost",
    "Event",
    "FetchResult",
    "ForbiddenOrigin",
    "Hello",
    "Inbox",
    "Kicked",
    "Limits",
    "MessageTooBig",
    "PushgateClientError",
    "ReadResult",
    "ReadState",
    "RequestError",
    "RequestTimeout",
    "SendResult",
    "ServerApi",
    "State",
    "StoppedError",
    "TokenExpired",
    "TokenProvider",
    "Unauthorized",
    "should_reconnect",
    "token_expiry",
    "ws_url",
]
