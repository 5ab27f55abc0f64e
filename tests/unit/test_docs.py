"""Generated documentation stays in sync with the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_doc_lists_every_setting() -> None:
    out = subprocess.run([sys.executable, "scripts/gen_config_doc.py", "--check"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_openapi_document_is_valid_and_covers_every_route() -> None:
    from openapi_spec_validator import validate
    from starlette.routing import Route

    from pushgate.hub.app import create_app
    from pushgate.hub.openapi import SPEC
    from pushgate.settings import Settings

    validate(SPEC)  # type: ignore[arg-type]
    app = create_app(Settings(jwt_secret="s" * 32, api_keys=["k"]))
    # (ids in paths may hold "/" as %2F: the routes match them with Starlette's path
    # converter, the document names them as plain parameters)
    paths = {r.path.replace(":path}", "}") for r in app.routes if isinstance(r, Route)}
    paths |= {"/v1/ws"}
    documented = set(SPEC["paths"])
    assert paths <= documented, paths - documented
