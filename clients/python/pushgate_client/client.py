"""The asyncio client: one websocket to a pushgate gateway, kept alive for the application.

What it does for the application (docs/protocol.md, "How a client should behave"):

- connects with a token, or a token provider that is asked again shortly before the
  token expires and whenever the server closes with 4101 (token expired);
- reconnects after anything that is not a "do not reconnect" close, waiting
  ``uniform(0, min(cap, base * 2**attempt))`` (exponential backoff, full jitter);
  the attempt count resets once a connection stayed up ``stable_after`` seconds;
- stops on 4100 (after one retry with a fresh token), 4102 (kicked), 4103, 4104,
  other 41xx-49xx codes and 1009, and raises a :class:`~pushgate_client.errors.StoppedError`
  from ``async for`` / :meth:`Client.wait_closed`;
- resumes every connection with ``after=<last seq>`` and fetches any gap, so that the
  application gets every stored event exactly once, in seq order (see
  :mod:`pushgate_client.inbox`); transient events (``seq`` None) pass straight through;
- acks every stored event it receives (``auto_ack``);
- sends a ``ping`` frame every ``idle_timeout_s / 3`` and treats a link that brought no
  frame for ``watchdog_pings`` ping intervals as dead (reconnects).

One task reads the socket; it never waits for the application except when the event
buffer (``buffer_size`` events) is full, which then slows the server down (the server
closes a session that falls too far behind, the client resumes from the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from pushgate_client.backoff import Backoff
from pushgate_client.errors import (
    ClientClosed,
    ConnectionLost,
    PushgateClientError,
    RequestError,
    RequestTimeout,
    StoppedError,
    stopped_error,
)
from pushgate_client.inbox import Inbox
from pushgate_client.token import refresh_at, refresh_window, token_expiry
from pushgate_client.types import (
    CloseInfo,
    Event,
    FetchResult,
    Hello,
    ReadResult,
    ReadState,
    SendResult,
    State,
)

log = logging.getLogger("pushgate_client")
#: how often a token refresh asks again when the provider returns the token in use
SAME_TOKEN_TRIES = 4

TokenProvider = Callable[[], Awaitable[str] | str]
StateListener = Callable[[State], None]

_SYNC = "_sync"  # rid of the ping whose pong marks the end of the backlog


def ws_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` or ``ws(s)://...`` → the ``/v1/ws`` endpoint URL."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"url must start with http://, https://, ws:// or wss://: {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1/ws"):
        path += "/v1/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


async def _send_quietly(ws: ClientConnection, data: str) -> None:
    """Send an ack or a fetch while handling a received frame. Once the server's close
    has arrived, ``websockets`` refuses to send while frames sent before the close are
    still to be read: the refusal ended the connection's loop there, and those frames
    (transient events, the ``kicked`` before a 4102) were lost. The close ends the loop
    once they are read."""
    with contextlib.suppress(ConnectionClosed):
        await ws.send(data)


def should_reconnect(code: int) -> bool:
    """The close-code rule of docs/protocol.md (4101 is handled before this)."""
    if 4000 <= code <= 4099:
        return True
    if code >= 4000 or code == 1009:
        return False
    return True


class _Item:
    __slots__ = ("event", "position")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.position = event.seq  # the application's resume point once it took this


class _Buffer:
    """Events for the application: bounded, ends with the client (with its error).

    It also keeps the application's resume point, :attr:`position`: each item carries the
    seq the position moves to once the application has taken it (its own seq; the last
    item also any later advance of the reader's cursor over expired seqs), so that it
    never counts an event that still waits here."""

    def __init__(self, size: int, position: int | None = None) -> None:
        self._items: deque[_Item] = deque()
        self._size = size
        self.position = position
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.ended = False
        self.error: BaseException | None = None
        #: requests of the application waiting for their answers: while there are any,
        #: the reader reads on past the bound (the answer comes after the events the
        #: server sent before it; the server's own send queue bounds them), or a request
        #: made inside ``async for`` waited for a buffer only the application empties
        self.requests = 0

    async def put(self, e: Event) -> None:
        while self._size and len(self._items) >= self._size and not self.ended \
                and not self.requests:
            self._writable.clear()
            await self._writable.wait()
        self._items.append(_Item(e))
        self._readable.set()

    def request_started(self) -> None:
        self.requests += 1
        self._writable.set()

    def request_ended(self) -> None:
        self.requests -= 1

    def advance(self, position: int) -> None:
        """The reader's cursor is at ``position``: every stored event up to it was put
        here (or has expired). The application's position follows once it has taken
        what is buffered."""
        if self._items:
            tail = self._items[-1]
            tail.position = position if tail.position is None else max(tail.position, position)
        elif self.position is None or position > self.position:
            self.position = position

    async def get(self) -> Event:
        while not self._items:
            if self.ended:
                if self.error is not None:
                    raise self.error
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        if item.position is not None and (self.position is None or item.position > self.position):
            self.position = item.position
        self._writable.set()
        return item.event

    def restart(self) -> None:
        """The server's store was reset: seqs start again from 1. What is buffered still
        goes to the application, but no longer moves the position, which is 0 now."""
        for item in self._items:
            item.position = None
        self.position = 0

    def end(self, error: BaseException | None) -> None:
        self.ended = True
        self.error = error
        self._readable.set()
        self._writable.set()


class Client:
    """A pushgate connection that does not lose events. See the module docstring.

    ::

        async with Client("http://127.0.0.1:8080", token_provider=get_token, after=0) as c:
            async for event in c:
                print(event.seq, event.body)

    ``after``: the seq to resume from (every stored event above it is delivered); ``None``
    (default) starts at the user's current head (no history). Persist
    :attr:`last_seq` and pass it back as ``after`` to resume across restarts.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        after: int | None = None,
        auto_ack: bool = True,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        stable_after: float = 10.0,
        connect_timeout: float = 10.0,
        request_timeout: float = 10.0,
        refresh_margin: float | None = 30.0,
        ping_interval: float | None = None,
        watchdog_pings: float = 3.0,
        fetch_limit: int = 500,
        buffer_size: int = 10_000,
        on_state: StateListener | None = None,
        rng: random.Random | None = None,
        connect_options: dict[str, Any] | None = None,
    ) -> None:
        if token is None and token_provider is None:
            raise ValueError("give token= or token_provider=")
        self.url = ws_url(url)
        self.auto_ack = auto_ack
        self.stable_after = stable_after
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.refresh_margin = refresh_margin
        self.ping_interval = ping_interval
        self.watchdog_pings = watchdog_pings
        self.fetch_limit = fetch_limit
        self._rng = rng or random.Random()
        self.backoff = Backoff(backoff_base, backoff_cap, self._rng)
        self.connect_options = {
            "compression": None, "max_size": 64 * 1024 * 1024, "close_timeout": 2.0,
            **(connect_options or {})}

        self._token = token
        self._token_obtained = time.time()
        self._provider = token_provider
        self._inbox: Inbox | None = Inbox(after) if after is not None else None

        self.state = State.DISCONNECTED
        self.hello: Hello | None = None  # of the current (or last) connection
        self.last_close: CloseInfo | None = None
        self.connects = 0  # connections that reached CONNECTED
        self.fetches = 0  # fetches sent to fill gaps (diagnostics)
        self.attempted_at = 0.0  # time.monotonic() of the latest connection attempt
        self.error: StoppedError | None = None  # why the client stopped, if it did
        # why the latest connection attempt got no connection (refused, handshake
        # refused, timed out, token provider failed); None once a socket was open
        self.connect_error: Exception | None = None
        self._listeners: list[StateListener] = [on_state] if on_state else []
        self._state_changed = asyncio.Event()

        self._buffer = _Buffer(buffer_size, after)
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._rids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._last_rx = time.monotonic()
        self._waiting_app = False
        self._cause: str | None = None  # why this client closed the current socket
        self._kicked: dict[str, Any] | None = None
        self._conn_tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        """Start connecting in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pushgate-client")

    async def close(self) -> None:
        """Close the connection and stop. ``async for`` ends after the events already
        buffered."""
        self._closing = True
        if self._ws is not None:
            self._cause = "close"
            with contextlib.suppress(Exception):
                await self._ws.close(1000, "client closed")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, PushgateClientError):
                await self._task
        self._finish(None)

    async def wait_closed(self) -> None:
        """Wait until the client stops; raises the :class:`StoppedError` that stopped it."""
        if not self.closed:
            self.start()
        task = self._task
        if task is not None and not task.done():
            # not `shield`: the caller's own cancellation (a timeout) must propagate, and
            # it must not cancel the client
            await asyncio.wait([task])
        if self.error is not None:
            raise self.error

    @property
    def closed(self) -> bool:
        return self._buffer.ended

    @property
    def last_seq(self) -> int | None:
        """Every stored event up to this seq was handed to the application (taken from
        ``async for``; events still buffered do not count), or has expired. Persist it and
        pass it back as ``after``. None before the first ``hello`` when started without
        ``after``."""
        return self._buffer.position

    @property
    def session(self) -> str | None:
        return self.hello.session if self.hello is not None and self.state is State.CONNECTED else None

    def add_state_listener(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    async def wait_state(self, state: State, timeout: float | None = None) -> None:
        """Wait until the client is in ``state``; raises if the client stopped first."""
        async with asyncio.timeout(timeout):
            while self.state is not state:
                if self.closed:
                    raise self.error or ClientClosed("client is closed")
                self._state_changed.clear()
                await self._state_changed.wait()

    async def wait_connected(self, timeout: float | None = None) -> None:
        self.start()
        await self.wait_state(State.CONNECTED, timeout)

    # -- events ----------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        self.start()
        return await self._buffer.get()

    async def events(self) -> AsyncIterator[Event]:
        """The same stream as ``async for event in client``."""
        async for e in self:
            yield e

    # -- requests --------------------------------------------------------------------------

    async def ack(self, seq: int) -> None:
        """Ack a stored event (only needed with ``auto_ack=False``). Dropped when not
        connected: acks only matter to the session that received the event."""
        ws = self._ws
        if ws is not None and self.state is State.CONNECTED:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"type": "ack", "seq": seq}))

    async def fetch(self, after: int = 0, limit: int = 100, *,
                    timeout: float | None = None) -> FetchResult:
        """Stored events with ``seq > after`` (not part of the ``async for`` stream)."""
        r = await self.request({"type": "fetch", "after": after, "limit": limit}, timeout)
        return FetchResult([Event.from_dict(e) for e in r.get("events", [])],
                           int(r.get("head") or 0), bool(r.get("more")))

    async def read(self, seqs: Iterable[int] = (), ranges: Iterable[Sequence[int]] = (), *,
                   timeout: float | None = None) -> ReadResult:
        """Mark seqs read for the user (all sessions and devices)."""
        frame = {"type": "read", "seqs": list(seqs), "ranges": [list(r) for r in ranges]}
        r = await self.request(frame, timeout)
        return ReadResult(int(r["head"]), int(r["unread"]), int(r["live"]))

    async def read_state(self, *, timeout: float | None = None) -> ReadState:
        r = await self.request({"type": "read_state"}, timeout)
        return ReadState(int(r["head"]), int(r["unread"]), int(r["live"]),
                         [(int(a), int(b)) for a, b in r.get("read", [])])

    async def send(self, body: Any, *, users: Sequence[str] | None = None,
                   filter: dict[str, Any] | None = None, timeout: float | None = None,
                   **fields: Any) -> SendResult:
        """Send through the gateway (same rules as ``POST /v1/notifications``; recipients
        get ``{"from": {...}, "body": body}``). Extra fields: ``ttl``, ``id``, ``ack``, ..."""
        frame: dict[str, Any] = {"type": "send", "body": body, **fields}
        if users is not None:
            frame["users"] = list(users)
        if filter is not None:
            frame["filter"] = filter
        r = await self.request(frame, timeout)
        return SendResult(list(r.get("results", [])), int(r.get("sessions") or 0),
                          r.get("report"))

    async def ping(self, *, timeout: float | None = None) -> float:
        """Round trip to the gateway in seconds."""
        t0 = time.monotonic()
        await self.request({"type": "ping"}, timeout)
        return time.monotonic() - t0

    async def request(self, frame: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send ``frame`` with a fresh ``rid`` once connected and wait for its answer
        (``reply`` / ``pong``). Raises :class:`RequestError`, :class:`RequestTimeout`,
        :class:`ConnectionLost` or the client's :class:`StoppedError`."""
        self.start()
        timeout = self.request_timeout if timeout is None else timeout
        rid = f"r{next(self._rids)}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                await self.wait_state(State.CONNECTED)
                ws = self._ws
                assert ws is not None
                data = json.dumps({**frame, "rid": rid})
                limit = self.hello.limits.max_frame_bytes if self.hello is not None else 0
                size = len(data.encode())
                if limit and size > limit:
                    # the server would close the connection with 1009, which stops the client
                    raise RequestError(
                        "payload_too_large",
                        f"the {frame.get('type')} frame has {size} bytes, over the server's "
                        f"max_frame_bytes ({limit})", field="body", rid=rid)
                fut: asyncio.Future[dict[str, Any]] = loop.create_future()
                self._pending[rid] = fut
                buffer = self._buffer
                buffer.request_started()
                try:
                    await ws.send(data)
                    return await fut
                finally:
                    buffer.request_ended()
                    self._pending.pop(rid, None)
        except TimeoutError:
            raise RequestTimeout(f"no answer to {frame.get('type')} within {timeout:g} s") from None
        except ConnectionClosed:
            raise ConnectionLost("connection closed before the request was sent") from None

    # -- the connection loop ---------------------------------------------------------------

    def _set_state(self, state: State) -> None:
        if state is self.state:
            return
        self.state = state
        self._state_changed.set()
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                log.exception("state listener failed")

    def _finish(self, error: StoppedError | None) -> None:
        if self._buffer.ended:
            return
        self.error = error
        self._closing = True
        self._set_state(State.DISCONNECTED)
        self._fail_pending(error or ClientClosed("client closed"))
        self._buffer.end(error)
        self._state_changed.set()

    def _fail_pending(self, exc: BaseException) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()

    async def _token_for_connect(self, force: bool) -> tuple[str, bool]:
        """The token to connect with, and whether the provider was just asked for it."""
        if self._provider is None:
            assert self._token is not None
            return self._token, False
        exp = token_expiry(self._token) if self._token else None
        now = time.time()
        stale = exp is not None and (exp <= now or (
            self.refresh_margin is not None
            and now >= refresh_at(self._token_obtained, exp, self.refresh_margin)))
        if force or self._token is None or stale:
            await self._refresh_token()
            assert self._token is not None
            return self._token, True
        return self._token, False

    async def _refresh_token(self) -> None:
        assert self._provider is not None
        value = self._provider()
        token = await value if inspect.isawaitable(value) else value
        if not isinstance(token, str) or not token:
            raise TypeError("the token provider must return a non-empty string")
        if token != self._token:  # (a provider's cache may hand the same one out again)
            self._token = token
            self._token_obtained = time.time()

    def _connect_url(self, token: str) -> str:
        url = f"{self.url}?token={quote(token, safe='')}"
        if self._inbox is not None:
            url += f"&after={self._inbox.last_seq}"
        return url

    async def _run(self) -> None:
        force_token = False  # ask the provider even if the token looks valid
        delay = 0.0
        try:
            while not self._closing:
                if delay > 0:
                    self._set_state(State.DISCONNECTED)
                    await asyncio.sleep(delay)
                self.connect_error = None
                self._set_state(State.CONNECTING)
                try:
                    token, fresh = await self._token_for_connect(force_token)
                    force_token = False
                except Exception as e:  # the application's backend may be down: retry
                    log.warning("token provider failed: %r", e)
                    self.connect_error = e
                    delay = self.backoff.next()
                    continue
                self.attempted_at = time.monotonic()
                try:
                    ws = await connect(self._connect_url(token), open_timeout=self.connect_timeout,
                                       **self.connect_options)
                except (OSError, TimeoutError, InvalidHandshake) as e:
                    log.info("connect to %s failed: %r", self.url, e)
                    self.connect_error = e
                    delay = self.backoff.next()
                    continue
                started = time.monotonic()
                info = await self._serve(ws)  # sets last_close before the state changes
                if self._closing:
                    break
                if time.monotonic() - started >= self.stable_after:
                    self.backoff.reset()
                log.info("disconnected: %s %s", info.code, info.reason)
                if self._cause == "refresh":
                    delay = 0.0  # a new token is ready: resume at once
                    continue
                if self._kicked is not None:
                    self._finish(stopped_error(4102, info.reason, self._kicked))
                    return
                if info.code == 4101 and self._provider is not None:
                    # expired: refresh, then reconnect — at once (within the first window)
                    # after a stable session; a new token refused again (a stale cache, a
                    # skewed clock) backs off like any failed connect instead of looping
                    force_token = True
                    delay = self.backoff.next()
                    continue
                if info.code == 4100 and self._provider is not None and not fresh:
                    force_token = True  # revoked or rotated? one more try with a new token
                    delay = self.backoff.jitter()
                    continue
                if not should_reconnect(info.code) or info.code in (4100, 4101):
                    self._finish(stopped_error(info.code, info.reason))
                    return
                delay = self.backoff.next()
        finally:
            self._ws = None
            if not self._buffer.ended:
                self._finish(None)

    async def _serve(self, ws: ClientConnection) -> CloseInfo:
        """Run one connection until it ends; return why it ended."""
        self._ws = ws
        self._cause = None
        self._kicked = None
        try:
            hello = await self._hello(ws)
            if hello is None:  # none within connect_timeout
                self._cause = "timeout"
                ws.transport.abort()
                await ws.wait_closed()
                return self._close_info(ws)
            self._on_hello(Hello.from_dict(hello))
            await _send_quietly(ws, json.dumps({"type": "ping", "rid": _SYNC}))
            self._last_rx = time.monotonic()
            self._spawn(self._keepalive(ws))
            if self._provider is not None and self.refresh_margin is not None:
                self._spawn(self._refresh_timer(ws))
            async for raw in ws:
                self._last_rx = time.monotonic()
                try:
                    frame = json.loads(raw)
                except ValueError:
                    log.warning("ignoring a frame that is not JSON")
                    continue
                if not isinstance(frame, dict):
                    continue
                try:
                    await self._on_frame(ws, frame)
                except (KeyError, ValueError, TypeError, AttributeError) as e:
                    log.warning("ignoring a malformed %r frame: %r", frame.get("type"), e)
                if self._inbox is not None:
                    self._buffer.advance(self._inbox.last_seq)
        except ConnectionClosed:
            pass
        finally:
            for t in list(self._conn_tasks):
                t.cancel()
            self._conn_tasks.clear()
            self._ws = None
            if self._inbox is not None:
                self._inbox.on_disconnect()
            self._fail_pending(ConnectionLost("connection closed"))
            # before the state listeners run: they report why the connection ended
            self.last_close = info = self._close_info(ws)
            self._set_state(State.DISCONNECTED)
        return info

    async def _hello(self, ws: ClientConnection) -> dict[str, Any] | None:
        """The ``hello`` frame, or None when none came within ``connect_timeout``. Frames
        before it are skipped, as the JS SDK does (a proxy's HTML page as the first frame
        raised out of the connection and stopped the client without a word)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return None
            try:
                frame = json.loads(raw)
            except ValueError:
                frame = None
            if isinstance(frame, dict) and frame.get("type") == "hello":
                return frame
            log.warning("ignoring a frame before hello")

    def _close_info(self, ws: ClientConnection) -> CloseInfo:
        code = ws.close_code if ws.close_code is not None else 1006
        if self._cause in ("watchdog", "timeout"):
            code = 1006
        return CloseInfo(code, ws.close_reason or self._cause or "", self._cause is not None)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._conn_tasks.add(t)
        t.add_done_callback(self._conn_tasks.discard)

    def _on_hello(self, hello: Hello) -> None:
        self.hello = hello
        if self._inbox is None:
            self._inbox = Inbox(hello.head)  # no `after`: start at the current head
            self._buffer.advance(hello.head)
        elif hello.head < self._inbox.last_seq:
            # seqs never go down: the server's store was reset (or restored from an older
            # backup) and numbers its events from 1 again. Resuming above its head would
            # pass over every new event up to the old seq: start over from 0 instead
            log.warning("server head %d is below the last seq %d: its store was reset; "
                        "starting over from seq 0", hello.head, self._inbox.last_seq)
            self._inbox = Inbox(0)
            self._buffer.restart()
        self.connects += 1
        self._set_state(State.CONNECTED)

    async def _keepalive(self, ws: ClientConnection) -> None:
        """Ping frames (the server's idle timeout counts client frames) and the watchdog."""
        assert self.hello is not None
        interval = self.ping_interval or self.hello.limits.idle_timeout_s / 3
        limit = self.watchdog_pings * interval
        next_ping = time.monotonic() + interval
        while True:
            # wake at the next ping, or when the silence reaches the limit: checked at the
            # ping ticks only, the silence at the third tick after the last frame (usually
            # a tick's pong) was a round trip short of it, and the link went a tick late
            wake = next_ping if self._waiting_app else min(next_ping, self._last_rx + limit)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))
            now = time.monotonic()
            silent = now - self._last_rx
            if silent >= limit and not self._waiting_app:
                log.warning("no frame from the server for %.1f s: reconnecting", silent)
                self._cause = "watchdog"
                ws.transport.abort()
                return
            if now >= next_ping:
                next_ping = now + interval
                try:
                    await ws.send('{"type":"ping"}')
                except ConnectionClosed:
                    return

    async def _refresh_timer(self, ws: ClientConnection) -> None:
        """Replace the token shortly before it expires: get a new one, then reconnect with
        it (resuming from the last seq), instead of being closed with 4101."""
        assert self._token is not None and self.refresh_margin is not None
        exp = token_expiry(self._token)
        if exp is None:
            return
        lo, hi = refresh_window(self._token_obtained, exp, self.refresh_margin)
        if hi - self._token_obtained < 1.0:
            return  # too short-lived to replace early: the 4101 path handles it
        # a random moment in the window spreads the refreshes of clients whose tokens
        # were minted together; never before half the token's life
        at = self._rng.uniform(lo, hi)
        await asyncio.sleep(max(0.0, at - time.time()))
        if (left := at - time.time()) > 0:  # the loop's clock is not time.time()
            await asyncio.sleep(left)
        old = self._token
        for _ in range(SAME_TOKEN_TRIES):
            try:
                await self._refresh_token()
            except Exception as e:
                log.warning("token refresh failed (will retry on expiry): %r", e)
                return
            if self._token != old:
                self._cause = "refresh"
                await ws.close(1000, "token refresh")
                return
            # the provider's cache handed out the token in use: keep the session and ask
            # again half-way to its expiry (a reconnect would change nothing)
            wait = (exp - time.time()) / 2
            if wait < 0.25:
                break
            await asyncio.sleep(wait)
        # no new token before expiry: the server's 4101 leads to the provider again

    async def _emit(self, event: Event) -> None:
        self._waiting_app = True
        try:
            await self._buffer.put(event)
        finally:
            self._waiting_app = False
            self._last_rx = time.monotonic()

    async def _on_frame(self, ws: ClientConnection, f: dict[str, Any]) -> None:
        kind = f.get("type")
        inbox = self._inbox
        assert inbox is not None
        if kind == "event":
            event = Event.from_dict(f)
            if event.seq is None:
                await self._emit(event)
                return
            if self.auto_ack:
                await _send_quietly(ws, json.dumps({"type": "ack", "seq": event.seq}))
            for e in inbox.add(event):
                await self._emit(e)
            await self._maybe_fetch(ws)
        elif kind == "head":
            head = int(f.get("head") or 0)
            if self.auto_ack and 0 < head and not inbox.is_new(head):
                # a large event this client already has, announced again: the retry of a
                # send-with-ack (its sender waits for the ack of that seq); a duplicate is
                # acked like an inline one, there is nothing to fetch
                await _send_quietly(ws, json.dumps({"type": "ack", "seq": head}))
            inbox.on_head(head)
            await self._maybe_fetch(ws)
        elif kind == "pong" and f.get("rid") == _SYNC:
            assert self.hello is not None
            inbox.on_head(self.hello.head)  # the backlog is in; fetch what it did not hold
            await self._maybe_fetch(ws)
        elif kind == "reply" and inbox.fetching is not None and f.get("rid") == self._fetch_rid:
            events = [Event.from_dict(e) for e in f.get("events", [])]
            if self.auto_ack:
                for e in events:
                    if e.seq is not None and inbox.is_new(e.seq):
                        await _send_quietly(ws, json.dumps({"type": "ack", "seq": e.seq}))
            for e in inbox.on_fetch_reply(events, int(f.get("head") or 0), bool(f.get("more"))):
                await self._emit(e)
            await self._maybe_fetch(ws)
        elif kind == "error" and inbox.fetching is not None and f.get("rid") == self._fetch_rid:
            log.warning("fetch failed: %s", f.get("message"))
            inbox.on_fetch_failed()
            await self._maybe_fetch(ws)
        elif kind in ("reply", "pong", "error"):
            fut = self._pending.get(str(f.get("rid")))
            if fut is not None and not fut.done():
                if kind == "error":
                    fut.set_exception(RequestError(
                        str(f.get("code")), str(f.get("message")), field=f.get("field"),
                        retryable=bool(f.get("retryable")), rid=f.get("rid")))
                else:
                    fut.set_result(f)
        elif kind == "kicked":
            self._kicked = f
        # unknown frame types are ignored (newer servers)

    _fetch_rid = "_fetch"

    async def _maybe_fetch(self, ws: ClientConnection) -> None:
        inbox = self._inbox
        assert inbox is not None
        if inbox.fetching is not None:
            return
        if inbox.stalls >= 5:
            # the store keeps answering without the missing seqs: start over
            log.warning("could not fill a gap after %d fetches: reconnecting", inbox.stalls)
            self._cause = "stall"
            await ws.close(1000, "fetch stalled")
            return
        req = inbox.next_fetch()
        if req is None:
            return
        limit = self.fetch_limit
        if self.hello is not None:
            limit = min(limit, self.hello.limits.fetch_max_limit)
        frame = json.dumps({"type": "fetch", "after": req.after, "limit": limit,
                            "rid": self._fetch_rid})
        self.fetches += 1
        if inbox.stalls:
            self._spawn(self._send_later(ws, frame, min(2.0, 0.1 * 2 ** inbox.stalls)))
        else:
            await _send_quietly(ws, frame)

    async def _send_later(self, ws: ClientConnection, frame: str, delay: float) -> None:
        await asyncio.sleep(delay)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(frame)
