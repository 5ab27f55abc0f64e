"""The CLI's errors: every bad input is one ``pushgate: …`` line naming what is wrong and
exit code 2 (docs/configuration.md), never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from pushgate.cli import app


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("PUSHGATE_"):
            monkeypatch.delenv(key)


def fails(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pushgate: "), result.output
    return lines[0]


def test_token_and_api_key_with_an_unreadable_secrets_file(tmp_path: Path) -> None:
    (tmp_path / "secrets.json").write_text("{bad")
    for command in (["token", "--user", "a"], ["api-key"]):
        line = fails(*command, "--data-dir", str(tmp_path))
        assert line.startswith("pushgate: data_dir: cannot read ") and "secrets.json" in line


def test_a_data_dir_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    line = fails("api-key", "--data-dir", str(tmp_path / "a-file" / "sub"))
    assert line.startswith("pushgate: data_dir: ") and "Not a directory" in line


@pytest.mark.parametrize("command", [["api-key"], ["token", "--user", "a"],
                                     ["serve", "--port", "0"]])
def test_a_secrets_file_without_a_key_names_it(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "secrets.json").write_text('{"jwt_secret": "x"}')
    line = fails(*command, "--data-dir", str(tmp_path))
    assert "has no 'api_key' string" in line and "delete the file" in line


def test_migrate_with_an_unsupported_or_unreachable_url_masks_the_password() -> None:
    assert "unsupported store URL" in fails("migrate", "--url", "foo://x")
    line = fails("migrate", "--url", "mysql+asyncmy://root:hunter2@127.0.0.1:1/x")
    assert "hunter2" not in line and "***" in line and "Can't connect" in line


@pytest.mark.parametrize(("args", "named"), [
    (["token", "--user", ""], "--user"),
    (["token", "--user", "a", "--ttl", "0"], "--ttl"),
    (["token", "--user", "a", "--ttl", "-5"], "--ttl"),
    (["send", "--user", "a", "--url", "not-a-url", "1"], "--url"),
])
def test_bad_client_command_arguments_exit_2_naming_the_option(
        tmp_path: Path, args: list[str], named: str) -> None:
    """An empty user or a lifetime ≤ 0 made a token the gateway refuses; a URL without
    a scheme was exit 1 ("cannot reach") for send but 2 for listen (clients.md: bad
    arguments exit 2)."""
    result = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert named in result.output and "Traceback" not in result.output
