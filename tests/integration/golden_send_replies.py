"""What ``pushgate serve`` answered on POST /v1/notifications before #20's send connections:
uvicorn + ``FastSend`` at commit aee5417, captured with
``python -m tests.integration.test_send_connections <port>`` against a fresh server with
:func:`tests.integration.test_send_connections.golden_env` (the ``date`` headers taken
out). Per case of ``CASES``: (the bytes received, whether the server closed the
connection within the quiet time).

Updated deliberately for issue 16 (delivery reports): every send reply ends with
``"report"`` (the send's ``id``, else a generated 32-character id, compared as
``r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx``); recaptured the same way, nothing else changed. And on 2026-12-07: the 405 of another
method on ``/v1/notifications`` lists every method of the path (``allow: GET, HEAD,
POST``; it said ``POST`` although ``GET`` lists the reports)."""

from __future__ import annotations

# fmt: off

GOLDEN: dict[str, tuple[bytes, bool]] = {
    'ok': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 107\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-ok","seq":1,"sessions":0}],"sessions":0,"report'
        b'":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'ok-id-then-duplicate': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 78\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-dup","seq":1,"sessions":0}],"sessions":0,"repor'
        b't":"m1"}HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 95\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-dup","seq":1,"sessions":0,"duplicate":true}],"s'
        b'essions":0,"report":"m1"}'
        , False),
    'ok-query-string': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 110\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-query","seq":1,"sessions":0}],"sessions":0,"rep'
        b'ort":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'ok-percent-encoded-path': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 108\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-pct","seq":1,"sessions":0}],"sessions":0,"repor'
        b't":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'ok-filter': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 71\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[],"sessions":0,"report":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'ok-trailing-spaces-in-key': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 108\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-ows","seq":1,"sessions":0}],"sessions":0,"repor'
        b't":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'ok-second-key-header-ignored': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 113\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-two-keys","seq":1,"sessions":0}],"sessions":0,"'
        b'report":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'no-api-key': (
        b'HTTP/1.1 401 Unauthorized\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 139\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"unauthorized","message":"API key missing: send \'Auth'
        b'orization: Bearer <key>\'","retryable":false,"field":"Authorization"}}'
        , False),
    'wrong-api-key': (
        b'HTTP/1.1 401 Unauthorized\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 108\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"unauthorized","message":"API key is not valid","retr'
        b'yable":false,"field":"Authorization"}}'
        , False),
    'basic-auth': (
        b'HTTP/1.1 401 Unauthorized\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 124\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"unauthorized","message":"Authorization must be \'Bear'
        b'er <key>\'","retryable":false,"field":"Authorization"}}'
        , False),
    'empty-body': (
        b'HTTP/1.1 400 Bad Request\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 123\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"invalid_request","message":"request body is empty; s'
        b'end a JSON object","retryable":false,"field":"body"}}'
        , False),
    'no-length-no-body': (
        b'HTTP/1.1 400 Bad Request\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 123\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"invalid_request","message":"request body is empty; s'
        b'end a JSON object","retryable":false,"field":"body"}}'
        , False),
    'invalid-json': (
        b'HTTP/1.1 400 Bad Request\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 183\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"invalid_request","message":"request body is not vali'
        b'd JSON: unexpected character, expected a string key: line 1 column 2 ('
        b'char 1)","retryable":false,"field":"body"}}'
        , False),
    'invalid-utf8-json': (
        b'HTTP/1.1 400 Bad Request\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 186\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"invalid_request","message":"request body is not vali'
        b'd JSON: str is not valid UTF-8: surrogates not allowed: line 1 column '
        b'1 (char 0)","retryable":false,"field":"body"}}'
        , False),
    'json-array': (
        b'HTTP/1.1 400 Bad Request\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 116\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"invalid_request","message":"request body must be a J'
        b'SON object","retryable":false,"field":"body"}}'
        , False),
    'users-not-a-list': (
        b'HTTP/1.1 400 Bad Request\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 127\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"invalid_request","message":"\'users\' must be a non-em'
        b'pty list of user ids","retryable":false,"field":"users"}}'
        , False),
    'no-body-field': (
        b'HTTP/1.1 400 Bad Request\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 100\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"invalid_request","message":"\'body\' is required","ret'
        b'ryable":false,"field":"body"}}'
        , False),
    'unknown-field': (
        b'HTTP/1.1 400 Bad Request\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 109\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"invalid_request","message":"unknown field(s) [\'bogus'
        b'\']","retryable":false,"field":"bogus"}}'
        , False),
    'too-many-users': (
        b'HTTP/1.1 400 Bad Request\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 120\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"invalid_request","message":"\'users\' has 4 entries; t'
        b'he limit is 3","retryable":false,"field":"users"}}'
        , False),
    'content-length-over-limit': (
        b'HTTP/1.1 413 Request Entity Too Large\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 129\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"payload_too_large","message":"request body is 4126 b'
        b'ytes; the limit is 4096","retryable":false,"field":"body"}}HTTP/1.1 20'
        b'0 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 114\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-after-413","seq":1,"sessions":0}],"sessions":0,'
        b'"report":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'content-length-over-limit-in-one-write': (
        b'HTTP/1.1 413 Request Entity Too Large\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 129\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"payload_too_large","message":"request body is 4126 b'
        b'ytes; the limit is 4096","retryable":false,"field":"body"}}'
        , False),
    'chunked-ok': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 112\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-chunked","seq":1,"sessions":0}],"sessions":0,"r'
        b'eport":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'chunked-over-limit': (
        b'HTTP/1.1 413 Request Entity Too Large\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 128\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"payload_too_large","message":"request body is over t'
        b'he limit of 4096 bytes","retryable":false,"field":"body"}}HTTP/1.1 200'
        b' OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 122\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-after-chunked-413","seq":1,"sessions":0}],"sess'
        b'ions":0,"report":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'chunked-over-limit-then-stalls': (
        b'HTTP/1.1 413 Request Entity Too Large\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 128\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"payload_too_large","message":"request body is over t'
        b'he limit of 4096 bytes","retryable":false,"field":"body"}}'
        , False),
    'expect-100-continue': (
        b'HTTP/1.1 100 Continue\r\n'
        b'\r\n'
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 111\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-expect","seq":1,"sessions":0}],"sessions":0,"re'
        b'port":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'expect-100-continue-wrong-key': (
        b'HTTP/1.1 401 Unauthorized\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 108\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"unauthorized","message":"API key is not valid","retr'
        b'yable":false,"field":"Authorization"}}HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 121\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-after-expect-401","seq":1,"sessions":0}],"sessi'
        b'ons":0,"report":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'expect-100-continue-over-limit': (
        b'HTTP/1.1 413 Request Entity Too Large\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 129\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"payload_too_large","message":"request body is 4097 b'
        b'ytes; the limit is 4096","retryable":false,"field":"body"}}'
        , False),
    'connection-close': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 110\r\n'
        b'content-type: application/json\r\n'
        b'connection: close\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-close","seq":1,"sessions":0}],"sessions":0,"rep'
        b'ort":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , True),
    'http-1.0': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 111\r\n'
        b'content-type: application/json\r\n'
        b'connection: close\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-http10","seq":1,"sessions":0}],"sessions":0,"re'
        b'port":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , True),
    'http-1.0-keep-alive': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 113\r\n'
        b'content-type: application/json\r\n'
        b'connection: close\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-http10ka","seq":1,"sessions":0}],"sessions":0,"'
        b'report":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , True),
    'error-with-connection-close': (
        b'HTTP/1.1 400 Bad Request\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 116\r\n'
        b'content-type: application/json\r\n'
        b'connection: close\r\n'
        b'\r\n'
        b'{"error":{"code":"invalid_request","message":"request body must be a J'
        b'SON object","retryable":false,"field":"body"}}'
        , True),
    'keep-alive-three': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 108\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-ka1","seq":1,"sessions":0}],"sessions":0,"repor'
        b't":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 108\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-ka2","seq":1,"sessions":0}],"sessions":0,"repor'
        b't":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 108\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-ka3","seq":1,"sessions":0}],"sessions":0,"repor'
        b't":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'pipelined-three': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 110\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-pipe1","seq":1,"sessions":0}],"sessions":0,"rep'
        b'ort":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 110\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-pipe2","seq":1,"sessions":0}],"sessions":0,"rep'
        b'ort":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 110\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-pipe3","seq":1,"sessions":0}],"sessions":0,"rep'
        b'ort":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'pipelined-mixed': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 109\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-mix1","seq":1,"sessions":0}],"sessions":0,"repo'
        b'rt":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}HTTP/1.1 401 Unauthorized\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 108\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"unauthorized","message":"API key is not valid","retr'
        b'yable":false,"field":"Authorization"}}HTTP/1.1 400 Bad Request\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 183\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"invalid_request","message":"request body is not vali'
        b'd JSON: unexpected character, expected a string key: line 1 column 2 ('
        b'char 1)","retryable":false,"field":"body"}}HTTP/1.1 413 Request Entity'
        b' Too Large\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 129\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"payload_too_large","message":"request body is 4097 b'
        b'ytes; the limit is 4096","retryable":false,"field":"body"}}HTTP/1.1 20'
        b'0 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 109\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-mix3","seq":1,"sessions":0}],"sessions":0,"repo'
        b'rt":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'split-head-and-body': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 110\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-split","seq":1,"sessions":0}],"sessions":0,"rep'
        b'ort":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'then-another-route-in-a-new-read': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 113\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-then-get","seq":1,"sessions":0}],"sessions":0,"'
        b'report":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}HTTP/1.1 405 Method Not All'
        b'owed\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 88\r\n'
        b'content-type: application/json\r\n'
        b'allow: GET, HEAD, POST\r\n'
        b'\r\n'
        b'{"error":{"code":"method_not_allowed","message":"Method Not Allowed","'
        b'retryable":false}}'
        , False),
    'another-route-first-then-a-send': (
        b'HTTP/1.1 405 Method Not Allowed\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 88\r\n'
        b'content-type: application/json\r\n'
        b'allow: GET, HEAD, POST\r\n'
        b'\r\n'
        b'{"error":{"code":"method_not_allowed","message":"Method Not Allowed","'
        b'retryable":false}}HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 113\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-get-then","seq":1,"sessions":0}],"sessions":0,"'
        b'report":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'upgrade-header-on-the-send-route': (
        b'HTTP/1.1 404 Not Found\r\n'
        b'Content-Type: application/json\r\n'
        b'Content-Length: 115\r\n'
        b'Connection: close\r\n'
        b'\r\n'
        b'{"error":{"code":"not_found","message":"no websocket endpoint at /v1/n'
        b'otifications; use /v1/ws","retryable":false}}'
        , True),
    'expect-100-continue-body-in-the-same-write': (
        b'HTTP/1.1 100 Continue\r\n'
        b'\r\n'
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 116\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-expect-same","seq":1,"sessions":0}],"sessions":'
        b'0,"report":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'pipelined-expect-100-continue': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 117\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-pipe-expect1","seq":1,"sessions":0}],"sessions"'
        b':0,"report":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}HTTP/1.1 100 Continue\r\n'
        b'\r\n'
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 117\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-pipe-expect2","seq":1,"sessions":0}],"sessions"'
        b':0,"report":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'wrong-api-key-with-connection-close': (
        b'HTTP/1.1 401 Unauthorized\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 108\r\n'
        b'content-type: application/json\r\n'
        b'connection: close\r\n'
        b'\r\n'
        b'{"error":{"code":"unauthorized","message":"API key is not valid","retr'
        b'yable":false,"field":"Authorization"}}'
        , True),
    'content-length-over-limit-with-connection-close': (
        b'HTTP/1.1 413 Request Entity Too Large\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 129\r\n'
        b'content-type: application/json\r\n'
        b'connection: close\r\n'
        b'\r\n'
        b'{"error":{"code":"payload_too_large","message":"request body is 4097 b'
        b'ytes; the limit is 4096","retryable":false,"field":"body"}}'
        , True),
    'pipelined-connection-close-in-the-middle': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 108\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-pc1","seq":1,"sessions":0}],"sessions":0,"repor'
        b't":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 108\r\n'
        b'content-type: application/json\r\n'
        b'connection: close\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-pc2","seq":1,"sessions":0}],"sessions":0,"repor'
        b't":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , True),
    'http-1.0-error': (
        b'HTTP/1.1 400 Bad Request\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 183\r\n'
        b'content-type: application/json\r\n'
        b'connection: close\r\n'
        b'\r\n'
        b'{"error":{"code":"invalid_request","message":"request body is not vali'
        b'd JSON: unexpected character, expected a string key: line 1 column 2 ('
        b'char 1)","retryable":false,"field":"body"}}'
        , True),
    'expect-100-continue-chunked': (
        b'HTTP/1.1 100 Continue\r\n'
        b'\r\n'
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 119\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-expect-chunked","seq":1,"sessions":0}],"session'
        b's":0,"report":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'expect-100-continue-chunked-over-limit': (
        b'HTTP/1.1 100 Continue\r\n'
        b'\r\n'
        b'HTTP/1.1 413 Request Entity Too Large\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 128\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"error":{"code":"payload_too_large","message":"request body is over t'
        b'he limit of 4096 bytes","retryable":false,"field":"body"}}HTTP/1.1 200'
        b' OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 129\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-after-expect-chunked-413","seq":1,"sessions":0}'
        b'],"sessions":0,"report":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'content-length-with-leading-zeros': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 110\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-zeros","seq":1,"sessions":0}],"sessions":0,"rep'
        b'ort":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'header-spacing-and-case': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 109\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-case","seq":1,"sessions":0}],"sessions":0,"repo'
        b'rt":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'head-in-tiny-writes': (
        b'HTTP/1.1 200 OK\r\n'
        b'server: uvicorn\r\n'
        b'content-length: 109\r\n'
        b'content-type: application/json\r\n'
        b'\r\n'
        b'{"results":[{"user":"g-tiny","seq":1,"sessions":0}],"sessions":0,"repo'
        b'rt":"r-xxxxxxxxxxxx-xxxxxxxx-xxxxxxxx"}'
        , False),
    'websocket-upgrade-elsewhere': (
        b'HTTP/1.1 404 Not Found\r\n'
        b'Content-Type: application/json\r\n'
        b'Content-Length: 108\r\n'
        b'Connection: close\r\n'
        b'\r\n'
        b'{"error":{"code":"not_found","message":"no websocket endpoint at /else'
        b'where; use /v1/ws","retryable":false}}'
        , True),
    'websocket-upgrade-without-key': (
        b'HTTP/1.1 400 Bad Request\r\n'
        b'Content-Type: application/json\r\n'
        b'Content-Length: 124\r\n'
        b'Connection: close\r\n'
        b'\r\n'
        b'{"error":{"code":"invalid_request","message":"not a websocket upgrade:'
        b' missing Sec-WebSocket-Key header","retryable":false}}'
        , True),
}
