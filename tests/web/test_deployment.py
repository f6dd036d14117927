"""The deployment files hold together: docker-compose.yml's services, healthchecks and secrets, the settings
its environment names (each one a field the bot reads), and the image's entrypoint that turns secret files
into settings. (No Docker engine runs here: the files are checked, not built.)"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from bot.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


SECRET_FIELDS = {name for name, field in Settings.model_fields.items() if _is_secret(field.annotation)}


def bot_environment() -> dict[str, str]:
    return {str(key): str(value) for key, value in COMPOSE["services"]["merge-bot"]["environment"].items()}


def setting_of(variable: str) -> tuple[str, bool]:
    """``MERGE_BOT_GITEA_TOKEN_FILE`` → ("gitea_token", True)."""
    name = variable.removeprefix(ENV_PREFIX).lower()
    if name.endswith("_file") and name.removesuffix("_file") in Settings.model_fields:
        return name.removesuffix("_file"), True
    return name, False


def test_three_services_each_with_a_healthcheck_and_a_restart_policy() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "gitea", "merge-bot"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name
    assert services["merge-bot"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "gitea": {"condition": "service_healthy"},
    }
    assert "/healthz" in " ".join(services["merge-bot"]["healthcheck"]["test"])
    assert "act_runner" in (ROOT / "docker-compose.yml").read_text()  # the note on adding a CI runner


def test_every_bot_variable_is_a_setting_the_bot_reads() -> None:
    for variable in bot_environment():
        assert variable.startswith(ENV_PREFIX), variable
        name, from_file = setting_of(variable)
        assert name in Settings.model_fields, f"{variable} names no setting (bot.config.Settings)"
        if from_file:
            assert name in SECRET_FIELDS, f"{variable}: only secrets come from files"
    named = {setting_of(variable)[0] for variable in bot_environment()}
    required = {name for name, field in Settings.model_fields.items() if field.is_required()}
    assert required <= named, f"required settings missing: {required - named}"
    assert {"gitea_url", "gitea_token", "database_url", "repos", "external_url", "listen"} <= named
    assert bot_environment()["MERGE_BOT_LISTEN"].startswith("0.0.0.0:")  # reachable from the other containers


def test_secrets_come_from_files_the_service_is_given() -> None:
    declared = set(COMPOSE["secrets"])
    for name, service in COMPOSE["services"].items():
        given = set(service.get("secrets", []))
        assert given <= declared, name
        for variable, value in service.get("environment", {}).items():
            if str(variable).endswith("_FILE"):
                assert str(value).removeprefix("/run/secrets/") in given, f"{name}: {variable} names no secret"
    for secret in COMPOSE["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    assert "secrets" in (ROOT / ".dockerignore").read_text().split()


def test_gitea_may_deliver_webhooks_to_the_bot() -> None:
    gitea = COMPOSE["services"]["gitea"]["environment"]
    external = bot_environment()["MERGE_BOT_EXTERNAL_URL"]
    host = re.search(r"https?://([^:/]+)", external.split(":-", 1)[-1])
    assert host is not None
    assert host.group(1) in gitea["GITEA__webhook__ALLOWED_HOST_LIST"].split(",")
    assert bot_environment()["MERGE_BOT_GITEA_URL"] == "http://gitea:3000"


def test_the_image_serves_on_the_port_it_exposes_and_checks_its_health() -> None:
    port = re.search(r"MERGE_BOT_LISTEN=0\.0\.0\.0:(\d+)", DOCKERFILE)
    assert port is not None
    assert f"EXPOSE {port.group(1)}" in DOCKERFILE
    assert f"127.0.0.1:{port.group(1)}/healthz" in DOCKERFILE
    assert re.search(r"^HEALTHCHECK ", DOCKERFILE, re.M) and re.search(r"^USER merge-bot$", DOCKERFILE, re.M)
    assert f"{port.group(1)}:{port.group(1)}" in COMPOSE["services"]["merge-bot"]["ports"]


def entrypoint_script() -> str:
    match = re.search(r"<<'EOF' /usr/local/bin/merge-bot-entrypoint\n(.*?)\nEOF\n", DOCKERFILE, re.S)
    assert match, "the entrypoint script is not in the Dockerfile"
    return match.group(1) + "\n"


def test_the_entrypoint_turns_secret_files_into_settings(tmp_path: Path) -> None:
    script = tmp_path / "entrypoint"
    script.write_text(entrypoint_script())
    fake = tmp_path / "bin" / "merge-bot"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "args: $*"\nenv | grep "^MERGE_BOT_" | sort\n')
    fake.chmod(0o755)
    secret = tmp_path / "webhook_secret"
    secret.write_text("s3cret value with spaces\n")
    env = {
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "MERGE_BOT_WEBHOOK_SECRET_FILE": str(secret),
        "MERGE_BOT_REPOS": "acme/app",
    }
    done = subprocess.run(["sh", str(script), "serve"], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "args: serve",
        "MERGE_BOT_REPOS=acme/app",
        "MERGE_BOT_WEBHOOK_SECRET=s3cret value with spaces",
    ]
    env["MERGE_BOT_GITEA_TOKEN_FILE"] = str(tmp_path / "missing")
    refused = subprocess.run(["sh", str(script), "serve"], env=env, capture_output=True, text=True, check=False)
    assert refused.returncode == 2
    assert "MERGE_BOT_GITEA_TOKEN_FILE names" in refused.stderr
