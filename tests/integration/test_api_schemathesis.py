"""A bounded schemathesis run against the served ``/openapi.json`` of a real
``pushgate serve`` (issue #15): every HTTP operation (the websocket route excluded), with
requests generated from the document — valid ones (positive mode) and ones that break it
(negative mode: wrong types, missing fields, out-of-range numbers, bad path values) —
sent with an API key (``POST``/``DELETE /v1/devices``: a client token).

Held for every response: no 5xx, every non-2xx body is the documented error
``{"error": {"code", "message", "retryable", ["field"]}}`` (docs/http-api.md), and the
server's log has no traceback. About 40 examples per operation and mode (~25 s);
``PUSHGATE_FUZZ_EXAMPLES=N`` for a longer, randomized run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from pushgate.hub.openapi import SPEC
from tests.support.server import ServerProcess, running_server

TRACEBACKS = ("Traceback", "Exception in ASGI application")
ACK_TIMEOUT_MS = 50  # the server's default wait, and the most a generated send waits
_MORE = int(os.environ.get("PUSHGATE_FUZZ_EXAMPLES", "0"))
EXAMPLES = _MORE or 30

OPERATIONS = [f"{method.upper()} {path}" for path, item in SPEC["paths"].items()
              for method in item if path != "/v1/ws"]
CLIENT_TOKEN_PATHS = {"/v1/devices"}  # authenticated with the client's JWT, not an API key
INBOX = "fuzz-inbox"  # a user with stored events (random user ids have no inbox)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    path: Path = tmp_path_factory.mktemp("schemathesis")
    # no open-connection rate limit: its 429s would hide the bodies' validation
    with running_server(path, PUSHGATE_ACK_TIMEOUT_MS=str(ACK_TIMEOUT_MS),
                        PUSHGATE_OPEN_CONNECTION_RATE_PER_IP="0") as s:
        with httpx.Client(base_url=s.base_url, timeout=10,
                          headers={"Authorization": f"Bearer {s.api_key}"}) as http:
            for i in range(3):  # an inbox, so that fetches and read marks reach the store
                r = http.post("/v1/notifications", json={"users": [INBOX], "body": {"i": i}})
                assert r.status_code == 200, r.text
        yield s
        log = s.log_text()
    for word in TRACEBACKS:
        assert word not in log, log[-4000:]


@pytest.fixture(scope="module")
def schema(srv: ServerProcess) -> Any:
    return schemathesis.openapi.from_url(f"{srv.base_url}/openapi.json", timeout=10)


def test_every_http_operation_is_fuzzed() -> None:
    assert len(OPERATIONS) == 21, OPERATIONS  # 22 paths and methods less the websocket


def check_response(label: str, response: requests.Response) -> None:
    where = f"{label} -> {response.status_code}: {response.text[:300]}"
    assert response.status_code < 500 or (
        response.status_code == 503 and label.endswith("/readyz")), where
    if response.status_code < 300 or label.endswith(("/readyz", "/metrics")):
        return
    body = response.json()
    assert set(body) >= {"error"}, where
    error = body["error"]
    assert {"code", "message", "retryable"} <= set(error) <= {"code", "message", "retryable",
                                                             "field"}, where
    assert isinstance(error["code"], str) and error["code"], where
    assert isinstance(error["message"], str) and isinstance(error["retryable"], bool), where
    assert isinstance(error.get("field", ""), str), where


def bounded_wait(case: Any) -> None:
    """A generated send-with-ack waits at most ``ACK_TIMEOUT_MS`` (nobody acks here);
    out-of-range values are kept for the server to refuse."""
    body = case.body
    if isinstance(body, dict):
        wait = body.get("ack_timeout_ms")
        if type(wait) is int and ACK_TIMEOUT_MS < wait <= 60_000:
            body["ack_timeout_ms"] = ACK_TIMEOUT_MS


@pytest.mark.timeout(300)
@pytest.mark.parametrize("label", OPERATIONS)
def test_operation(srv: ServerProcess, schema: Any, label: str) -> None:
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    key = srv.token("fuzz-client") if path in CLIENT_TOKEN_PATHS else srv.api_key
    headers = {"Authorization": f"Bearer {key}"}
    # generated user ids, and (paths with a user) the user who has an inbox
    passes: list[tuple[GenerationMode, dict[str, Any] | None]] = [
        (GenerationMode.POSITIVE, None), (GenerationMode.NEGATIVE, None)]
    if "{user}" in path:
        passes += [(GenerationMode.POSITIVE, {"user": INBOX}),
                   (GenerationMode.NEGATIVE, {"user": INBOX})]
    with requests.Session() as session:
        for mode, path_parameters in passes:

            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      derandomize=not _MORE, phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode,
                                              path_parameters=path_parameters))
            def run(case: Any) -> None:
                bounded_wait(case)
                response = case.call(base_url=srv.base_url, session=session,
                                     headers=headers, timeout=15)
                check_response(label, response)

            try:
                run()
            except Unsatisfiable:
                # nothing to make invalid (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, label
    log = srv.log_text()
    for word in TRACEBACKS:
        assert word not in log, log[-4000:]
