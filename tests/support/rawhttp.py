"""Raw HTTP/1.1 over asyncio streams, for black-box tests where the bytes matter."""

from __future__ import annotations

import asyncio


async def read_reply(reader: asyncio.StreamReader, timeout: float = 10.0
                     ) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names), body (by Content-Length)."""
    async with asyncio.timeout(timeout):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


async def at_eof(reader: asyncio.StreamReader, timeout: float = 10.0) -> bool:
    """True when the server closes the connection within ``timeout`` (nothing more
    came), False when it is still open then."""
    try:
        async with asyncio.timeout(timeout):
            return await reader.read(65536) == b""
    except TimeoutError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True
