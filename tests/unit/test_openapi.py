"""The served /openapi.json describes the request bodies exactly as the models that
validate them (pushgate.models): a model changed without the document fails here."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from pushgate import models
from pushgate.hub.app import create_app
from pushgate.settings import Settings

REF = "#/components/schemas/{model}"
ROOT = Path(__file__).resolve().parents[2]


async def fetch_openapi() -> httpx.Response:
    app = create_app(Settings(jwt_secret="s" * 32, api_keys=["k"]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gw") as client:
        return await client.get("/openapi.json")


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    """The document as a real app serves it."""
    r = asyncio.run(fetch_openapi())
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def model_schemas() -> dict[str, Any]:
    """Every request model's schema and the schemas it uses, straight from pydantic."""
    out: dict[str, Any] = {}
    for model in models.REQUEST_MODELS:
        schema = model.model_json_schema(ref_template=REF, schema_generator=models.SchemaGenerator)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def test_served_document_is_valid_openapi_3_1(served: dict[str, Any]) -> None:
    from openapi_spec_validator import validate

    assert served["openapi"].startswith("3.1")
    validate(served)


def test_served_request_schemas_are_the_models(served: dict[str, Any]) -> None:
    components = served["components"]["schemas"]
    for name, schema in model_schemas().items():
        assert components.get(name) == schema, f"/openapi.json's {name} is not the model's"


def test_every_request_body_is_a_model(served: dict[str, Any]) -> None:
    from_models = model_schemas()
    bodies = {f"{method.upper()} {path}": op["requestBody"]
              for path, item in served["paths"].items() for method, op in item.items()
              if "requestBody" in op}
    assert len(bodies) == 10, sorted(bodies)
    for where, body in bodies.items():
        ref = body["content"]["application/json"]["schema"]["$ref"]
        name = ref.removeprefix("#/components/schemas/")
        assert name in {m.__name__ for m in models.REQUEST_MODELS}, where
        assert served["components"]["schemas"][name] == from_models[name], where


def test_every_ref_resolves(served: dict[str, Any]) -> None:
    refs = set(re.findall(r'"\$ref": "#/components/(\w+)/(\w+)"', str(served).replace("'", '"')))
    assert refs
    for kind, name in refs:
        assert name in served["components"][kind], f"{kind}/{name}"


def test_http_api_doc_states_the_models_ack_timeout_bound() -> None:
    doc = (ROOT / "docs" / "http-api.md").read_text()
    bound = f"{models.MAX_ACK_TIMEOUT_MS:,}".replace(",", " ")
    assert f"| `ack_timeout_ms` | int 1..{bound} |" in doc


def test_every_route_a_backend_serves_documents_its_503(served: dict[str, Any]) -> None:
    """The events, read, read-state, sessions, devices and report routes answer 503
    (``store_unavailable``, ``router_unavailable``, ``directory_unavailable``) when a
    backend does not; /openapi.json listed it for the sends only."""
    without = {"/v1/open-connection", "/open-connection", "/v1/ws", "/healthz", "/metrics",
               "/openapi.json"}
    for path, item in served["paths"].items():
        if path == "/readyz":  # (its own 503: starting or stopping)
            continue
        for method, op in item.items():
            has = "503" in op["responses"]
            assert has == (path not in without and not path.startswith("/admin")), \
                f"{method.upper()} {path}: {sorted(op['responses'])}"
