"""Settings: TOML plus environment, frozen, secrets masked, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.config import ConfigError, load_settings, masked
from tests.conftest import ROOT

EXAMPLE = ROOT / "config" / "merge-bot.example.toml"


def test_environment_names() -> None:
    settings = load_settings(
        {
            "MERGE_BOT_GITEA_URL": "https://git.example.org",
            "MERGE_BOT_GITEA_TOKEN": "t0ken-value",
            "MERGE_BOT_WEBHOOK_SECRET": "s3cret-value",
            "MERGE_BOT_EXTERNAL_URL": "https://bot.example.org",
            "MERGE_BOT_LISTEN": "0.0.0.0:9000",
            "MERGE_BOT_REPOS": "acme/app, acme/lib",
            "MERGE_BOT_DATABASE_URL": "postgresql://bot:pw@db/bot",
            "MERGE_BOT_DATA_DIR": "/var/lib/merge-bot",
        }
    )
    assert str(settings.gitea_url) == "https://git.example.org/"
    assert settings.gitea_token is not None and settings.gitea_token.get_secret_value() == "t0ken-value"
    assert settings.webhook_secret.get_secret_value() == "s3cret-value"
    assert settings.webhook_url == "https://bot.example.org/webhook"
    assert (settings.listen.host, settings.listen.port) == ("0.0.0.0", 9000)
    assert settings.repos == ("acme/app", "acme/lib")
    assert settings.data_dir == Path("/var/lib/merge-bot")
    assert set(settings.secrets()) == {"t0ken-value", "s3cret-value", "pw"}


def test_defaults() -> None:
    settings = load_settings({"MERGE_BOT_WEBHOOK_SECRET": "x" * 8})
    assert str(settings.listen) == "127.0.0.1:8080"
    assert settings.webhook_url == "http://127.0.0.1:8080/webhook"
    assert settings.database_url is None
    assert settings.repos == ()
    assert settings.data_dir.name == "merge-bot"


def test_settings_are_frozen() -> None:
    settings = load_settings({"MERGE_BOT_WEBHOOK_SECRET": "x" * 8})
    with pytest.raises(ValidationError):
        settings.log_level = "debug"  # type: ignore[misc]


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bot.toml"
    path.write_text('webhook_secret = "from-file"\nrepos = ["a/b"]\nlisten = "127.0.0.1:7000"\n')
    from_file = load_settings({"MERGE_BOT_CONFIG": str(path)})
    assert from_file.webhook_secret.get_secret_value() == "from-file"
    assert from_file.repos == ("a/b",)
    both = load_settings({"MERGE_BOT_CONFIG": str(path), "MERGE_BOT_REPOS": "c/d", "MERGE_BOT_LISTEN": ":7001"})
    assert both.repos == ("c/d",)
    assert str(both.listen) == "127.0.0.1:7001"
    assert both.webhook_secret.get_secret_value() == "from-file"


def test_example_file_is_complete_and_valid() -> None:
    settings = load_settings({"MERGE_BOT_CONFIG": str(EXAMPLE)})
    text = EXAMPLE.read_text()
    for name in type(settings).model_fields:
        assert name in text, f"{name} is not documented in {EXAMPLE.name}"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "webhook_secret (MERGE_BOT_WEBHOOK_SECRET) is required"),
        ({"MERGE_BOT_WEBHOOK_SECRET": "  "}, "webhook_secret (MERGE_BOT_WEBHOOK_SECRET) must not be empty"),
        ({"MERGE_BOT_LISTEN": "localhost"}, "listen (MERGE_BOT_LISTEN) expected host:port"),
        ({"MERGE_BOT_LISTEN": "127.0.0.1:70000"}, "port 70000 is out of range"),
        ({"MERGE_BOT_REPOS": "justaname"}, "repos (MERGE_BOT_REPOS) expected owner/name"),
        ({"MERGE_BOT_GITEA_URL": "gitea.local"}, "gitea_url (MERGE_BOT_GITEA_URL)"),
        ({"MERGE_BOT_DATABASE_URL": "mysql://x"}, "expected a postgresql:// URL"),
        ({"MERGE_BOT_WEBHOOK_MAX_BODY_BYTES": "lots"}, "webhook_max_body_bytes"),
        ({"MERGE_BOT_CONFIG": "/nonexistent/merge-bot.toml"}, "does not exist"),
        ({"MERGE_BOT_CRASH_AT": "base_pushd"}, "unknown crash step 'base_pushd'"),
        ({"MERGE_BOT_CRASH_AT": "base_pushed@0"}, "expected <step>@<n> with n a whole number from 1"),
        ({"MERGE_BOT_CRASH_AT": "base_pushed@two"}, "expected <step>@<n> with n a whole number from 1"),
    ],
)
def test_bad_settings_are_one_line_errors(env: dict[str, str], message: str) -> None:
    env = {"MERGE_BOT_WEBHOOK_SECRET": "a-secret", **env} if "MERGE_BOT_WEBHOOK_SECRET" not in env and env else env
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bot.toml"
    path.write_text('webhook_secret = "x"\nwebhok_url = "typo"\n')
    with pytest.raises(ConfigError, match="unknown setting 'webhok_url'"):
        load_settings({"MERGE_BOT_CONFIG": str(path)})


def test_broken_toml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bot.toml"
    path.write_text("webhook_secret = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({"MERGE_BOT_CONFIG": str(path)})


def test_masked_hides_every_secret() -> None:
    settings = load_settings(
        {
            "MERGE_BOT_WEBHOOK_SECRET": "s3cret-value",
            "MERGE_BOT_GITEA_TOKEN": "t0ken-value",
            "MERGE_BOT_DATABASE_URL": "postgresql://bot:pw-value@db/bot",
        }
    )
    shown = repr(masked(settings)) + repr(settings) + str(settings)
    for secret in ("s3cret-value", "t0ken-value", "pw-value"):
        assert secret not in shown


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("MERGE_BOT_")}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_check_config_prints_masked_settings() -> None:
    result = _cli(
        "check-config",
        env={"MERGE_BOT_WEBHOOK_SECRET": "s3cret-value", "MERGE_BOT_GITEA_TOKEN": "t0ken-value"},
    )
    assert result.returncode == 0, result.stderr
    assert "webhook_secret = **********" in result.stdout
    assert "s3cret-value" not in result.stdout + result.stderr
    assert "t0ken-value" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "env",
    [{}, {"MERGE_BOT_WEBHOOK_SECRET": "x", "MERGE_BOT_LISTEN": "nope"}],
)
def test_check_config_errors_are_one_line_without_traceback(env: dict[str, str]) -> None:
    result = _cli("check-config", env=env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("merge-bot: invalid settings:")
    assert "Traceback" not in result.stderr


def test_serve_refuses_to_start_without_a_webhook_secret() -> None:
    result = _cli("serve", env={})
    assert result.returncode == 2
    assert "MERGE_BOT_WEBHOOK_SECRET" in result.stderr
    assert "Traceback" not in result.stderr
