"""The states of a connection of the HTTP guard (:class:`pushgate.hub.guard.GuardedHttp`),
shared with its send connections (:mod:`pushgate.hub.sendconn`). Plain ints: they are
compared on every received chunk.
"""

# parse states (GuardedHttp.state)
CONNECTED = 0  # nothing of a request yet (header timer from the connect)
HEAD = 1  # a request head under way (header timer)
BODY = 2  # head complete, body under way (body timer)
IDLE = 3  # between requests (keep-alive: uvicorn's timer, or the guard's on a send connection)
PASSTHROUGH = 4  # an upgrade uvicorn did not take: no more parsing, closed at the deadline
LINGER = 5  # error reply written and half-closed: waiting for the client's close
DONE = 6  # refused at connect, handed over to a websocket protocol, closed, or lost

# who answers the connection's requests (GuardedHttp.mode)
FIRST = 0  # nothing routed yet: the raw bytes of the first request's head are held
SEND = 1  # a send connection: the guard answers POST /v1/notifications itself
HANDING = 2  # to uvicorn once the sends in flight are answered (its bytes are held)
UVICORN = 3  # uvicorn's HttpToolsProtocol (``inner``) gets every byte, as it arrives
CLOSED = 4  # nothing more is read: closed after a reply, or a pipelined request refused


class Abort(Exception):
    """Raised in a parser callback to stop parsing this connection's bytes."""
