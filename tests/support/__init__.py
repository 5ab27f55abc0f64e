"""Shared test helpers: waiting on conditions, websocket and HTTP/2 helpers."""
