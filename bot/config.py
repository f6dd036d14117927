"""Settings: a TOML file plus ``MERGE_BOT_*`` environment overrides, parsed once into a frozen object.

The environment wins over the file. ``MERGE_BOT_CONFIG`` names the TOML file; without it no file is read.
Secrets are ``SecretStr`` so that printing the settings never shows them.
"""

from __future__ import annotations

import os
import re
import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

import platformdirs
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bot import crashpoints
from bot.notifications import urls as target_urls
from bot.queue.windows import parse_window
from bot.repos import patterns as repo_patterns

ENV_PREFIX = "MERGE_BOT_"
REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
LISTEN_RE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.:-]*?):(?P<port>\d{1,5})$")


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line meant for the operator."""


class Listen(BaseModel):
    model_config = ConfigDict(frozen=True)
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(value: str) -> Listen:
    match = LISTEN_RE.match(value.strip())
    if not match:
        raise ValueError(f"expected host:port, got {value!r}")
    host = match.group("host").strip("[]") or "127.0.0.1"
    port = int(match.group("port"))
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return Listen(host=host, port=port)


def _split_list(value: Any, separator: str = ",") -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(separator) if part.strip()]
    return value


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("merge-bot", appauthor=False))


MergeMethodName = Literal["rebase", "merge", "squash"]
MERGE_METHODS: tuple[MergeMethodName, ...] = ("rebase", "merge", "squash")
# What a commit message template may name (``{title}``); see bot/gate/build.py for how each is filled in.
TEMPLATE_FIELDS = ("title", "number", "body", "author", "approved_by", "co_authors")
DEFAULT_MERGE_MESSAGE = "Merge pull request #{number}: {title}\n\nMerged by merge-bot."
DEFAULT_SQUASH_MESSAGE = "{title} (#{number})\n\n{body}"


def check_template(text: str) -> str:
    """A commit message template: ``str.format`` fields, each one of :data:`TEMPLATE_FIELDS`, nothing else."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"is not a valid template ({exc}); write {{{{ and }}}} for literal braces") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conversion:
            known = ", ".join(f"{{{field}}}" for field in TEMPLATE_FIELDS)
            raise ValueError(f"has an unknown placeholder {{{name}}}; a template may use {known}")
    if not text.strip():
        raise ValueError("must not be empty")
    return text


class RepoSettings(BaseModel):
    """The settings a repository may set for itself in its own file (``.gitea/merge-bot.toml``), by the same
    names, types and defaults as the global settings: :class:`Settings` inherits every one of them, so each
    key is defined once, here. Validated as a whole (``window`` against ``max_parallel``, ``merge_method``
    against ``allowed_methods``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: Literal["staging", "pr-branch"] = Field(
        default="staging", description="How a tested commit lands: staging (a staging branch) or pr-branch"
    )
    ci_timeout_seconds: int = Field(default=3600, ge=1, description="CI deadline per candidate, in seconds")
    required_contexts: tuple[str, ...] = Field(
        default=(), description="Contexts (globs) that must be green when branch protection names none"
    )
    delete_branch_after_merge: bool = Field(default=False, description="Delete a PR's branch once it merged")
    queue_label: str = Field(
        default="merge-queue", min_length=1, max_length=64, description="The label that queues a PR"
    )
    priority_ceiling: int = Field(default=10, ge=0, description="Highest priority a non-admin may ask for")
    urgent_priority: int = Field(
        default=100, ge=1, description="From this priority an entry aborts a running test to go first"
    )
    batch_max: int = Field(default=4, ge=1, le=64, description="Most PRs tested together in one candidate")
    batch_wait_seconds: float = Field(
        default=0.0, ge=0, le=3600, description="How long a short batch waits for more PRs after the first"
    )
    bisect: bool = Field(default=True, description="Split a red batch to find the PR that broke it")
    max_parallel: int = Field(
        default=4, ge=1, le=64, description="Most candidates under CI at once (the CI budget; 1: one at a time)"
    )
    window: int | None = Field(
        default=None, ge=1, le=64, description="How deep the chain starts speculating; default max_parallel"
    )
    window_floor: int = Field(default=1, ge=1, le=64, description="The window never shrinks below this")
    optimistic: bool = Field(
        default=False, description="A green candidate also lands the pending or red attempts before it"
    )
    flaky_retries: int = Field(
        default=1, ge=0, le=5, description="Times a PR red alone is re-tested on the same SHA before it is rejected"
    )
    adaptive: bool = Field(
        default=False, description="Choose batch size and window from the train's measured failure rate"
    )
    allowed_users: tuple[str, ...] = Field(
        default=(), description="Only these users may queue PRs (besides write access); empty: anyone with write"
    )
    allowed_teams: tuple[str, ...] = Field(default=(), description="Members of these org/team may queue PRs too")
    wait_for_approvals: bool = Field(
        default=False, description="A PR lacking required approvals waits for them instead of being refused"
    )
    merge_method: MergeMethodName = Field(
        default="rebase", description="The method of a /merge that names none: rebase, merge or squash"
    )
    allowed_methods: tuple[MergeMethodName, ...] = Field(
        default=MERGE_METHODS, min_length=1, description="The methods /merge method=... may ask for"
    )
    merge_message: str = Field(
        default=DEFAULT_MERGE_MESSAGE, max_length=4096, description="Commit message template of a merge commit"
    )
    squash_message: str = Field(
        default=DEFAULT_SQUASH_MESSAGE, max_length=4096, description="Commit message template of a squash commit"
    )
    windows: tuple[str, ...] = Field(
        default=(),
        description="When PRs may land, e.g. 'Mon-Fri 09:00-17:00 Europe/Berlin'; outside every window: frozen",
    )
    notify_urls: tuple[SecretStr, ...] = Field(
        default=(), description="Where events are sent (chat, mail, webhooks), as apprise URLs; secrets"
    )

    @field_validator("required_contexts", "allowed_users", "allowed_teams", "allowed_methods", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("windows", mode="before")
    @classmethod
    def _windows_list(cls, value: Any) -> Any:
        return _split_list(value, ";")  # a window's days may hold commas ("Sat,Sun 10:00-12:00 UTC")

    @field_validator("notify_urls", mode="before")
    @classmethod
    def _split_notify_urls(cls, value: Any) -> Any:
        value = value.get_secret_value() if isinstance(value, SecretStr) else value
        return target_urls.split_urls(value) if isinstance(value, str) else value

    @field_validator("allowed_teams")
    @classmethod
    def _teams(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for team in value:
            if not REPO_RE.match(team):
                raise ValueError(f"expected org/team, got {team!r}")
        return value

    @field_validator("merge_message", "squash_message")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value)

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            parse_window(text)  # a WindowError is a ValueError: its message names what is wrong
        return value

    @field_validator("notify_urls")
    @classmethod
    def _notify_urls(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        from bot.notifications.transport import understood  # apprise is loaded only when URLs are set

        for number, url in enumerate(value, start=1):
            shown = target_urls.redact(url.get_secret_value())  # never the URL itself: it holds secrets
            if target_urls.scheme(url.get_secret_value()) is None:
                raise ValueError(f"entry {number} is not a URL of the form scheme://...")
            if not understood(url.get_secret_value()):
                raise ValueError(f"entry {number} ({shown}) is not a URL apprise can send to")
        return value

    @model_validator(mode="after")
    def _window_fits(self) -> Self:
        if self.window is not None and self.window > self.max_parallel:
            raise ValueError(f"window ({self.window}) must not exceed max_parallel ({self.max_parallel})")
        if self.window_floor > self.max_parallel:
            raise ValueError(f"window_floor ({self.window_floor}) must not exceed max_parallel ({self.max_parallel})")
        return self

    @model_validator(mode="after")
    def _method_allowed(self) -> Self:
        if self.merge_method not in self.allowed_methods:
            allowed = ", ".join(self.allowed_methods)
            raise ValueError(f"merge_method ({self.merge_method}) must be one of allowed_methods ({allowed})")
        return self

    def repo_values(self) -> dict[str, Any]:
        """The per-repository keys and their values here (for a file's keys to be validated on top of)."""
        return {name: getattr(self, name) for name in RepoSettings.model_fields}


class Settings(RepoSettings, BaseSettings):
    """Every setting merge-bot reads. Built once by :func:`load_settings` and passed down.

    The per-repository keys come from :class:`RepoSettings`; a repository's own file overrides them
    (:mod:`bot.repoconfig`). The keys below are the process's alone."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        case_sensitive=False,
    )

    gitea_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("http://127.0.0.1:3000"), description="Base URL of the Gitea/Forgejo server"
    )
    gitea_token: SecretStr | None = Field(default=None, description="API token of the bot's forge user")
    webhook_secret: SecretStr = Field(description="Secret shared with the forge's webhooks (required)")
    external_url: AnyHttpUrl | None = Field(
        default=None, description="URL the forge reaches the bot at; default http://<listen>"
    )
    listen: Listen = Field(default=Listen(host="127.0.0.1", port=8080), description="host:port to bind")
    repos: tuple[str, ...] = Field(
        default=(), description="Managed repositories: owner/name, owner/* (all the bot administers) or topic:NAME"
    )
    discovery_seconds: float = Field(
        default=300.0, gt=0, description="How often owner/* and topic: patterns are listed again in full"
    )
    database_url: SecretStr | None = Field(
        default=None, description="PostgreSQL URL; without it an embedded server runs in data_dir"
    )
    data_dir: Path = Field(default_factory=_default_data_dir, description="Embedded database, git mirrors")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    webhook_max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    read_token: SecretStr | None = Field(
        default=None, description="When set, the queue page, JSON API and /metrics ask for it (private instances)"
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token for the API's write endpoints (freeze, pause); unset: they are off"
    )
    status_context: str = Field(default="merge-bot", min_length=1, max_length=64)
    gate_poll_seconds: float = Field(default=5.0, gt=0, le=600)
    lease_seconds: int = Field(default=60, ge=5)
    crash_at: str | None = Field(
        default=None,
        description="Test harness only: SIGKILL this process at the named gate step, or its n-th time with"
        " <step>@<n> (crashpoints.py)",
    )
    reconcile_seconds: float = Field(default=60.0, gt=0)
    reap_seconds: float = Field(default=30.0, gt=0)
    delivery_retention_days: int = Field(default=7, ge=1)
    stuck_minutes: int = Field(
        default=60, ge=0, le=7 * 24 * 60, description="A train with work but no progress this long is reported"
    )

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, value: Any) -> Any:
        return parse_listen(value) if isinstance(value, str) else value

    @field_validator("repos", mode="before")
    @classmethod
    def _repos(cls, value: Any) -> Any:
        repos = _split_list(value)
        if repos is None:
            return repos
        if not all(isinstance(repo, str) for repo in repos):
            raise ValueError("expected a list of owner/name, owner/* or topic:NAME")
        return tuple(str(pattern) for pattern in repo_patterns.parse_all(repos))  # PatternError is a ValueError

    @field_validator("crash_at")
    @classmethod
    def _crash_at(cls, value: str | None) -> str | None:
        if value is not None:
            crashpoints.parse(value)
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("read_token", "admin_token")
    @classmethod
    def _read_token(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        url = value.get_secret_value()
        if not re.match(r"^postgres(ql)?(\+asyncpg)?://", url):
            raise ValueError("expected a postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _external_default(self) -> Settings:
        if self.external_url is None:
            object.__setattr__(self, "external_url", AnyHttpUrl(f"http://{self.listen}"))
        return self

    @property
    def patterns(self) -> tuple[repo_patterns.Pattern, ...]:
        return repo_patterns.parse_all(self.repos)

    @property
    def explicit_repos(self) -> tuple[str, ...]:
        """The repositories named one by one (``owner/name``): managed whatever the forge says."""
        return repo_patterns.exact_names(self.patterns)

    @property
    def webhook_url(self) -> str:
        return str(self.external_url).rstrip("/") + "/webhook"

    def secrets(self) -> list[str]:
        """Every secret value in these settings, for the log redaction filter."""
        found = [self.webhook_secret.get_secret_value()]
        if self.gitea_token is not None:
            found.append(self.gitea_token.get_secret_value())
        if self.read_token is not None:
            found.append(self.read_token.get_secret_value())
        if self.admin_token is not None:
            found.append(self.admin_token.get_secret_value())
        if self.database_url is not None:
            password = _url_password(self.database_url.get_secret_value())
            if password:
                found.append(password)
        found += target_urls.secrets_of(url.get_secret_value() for url in self.notify_urls)
        return [value for value in found if value]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings merges the TOML file and the environment itself (so the environment is injectable
        # and read exactly once); the settings object only validates what it is given.
        return (init_settings,)


def _url_password(url: str) -> str | None:
    match = re.match(r"^[a-z0-9+]+://[^:/@]*:(?P<pw>[^@]*)@", url)
    return match.group("pw") if match else None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file named by MERGE_BOT_CONFIG (if any), then the environment over it, once."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_path = env.get(ENV_PREFIX + "CONFIG")
    if config_path:
        values.update(read_toml(Path(config_path)))
    for name in Settings.model_fields:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = raw
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc)) from None


def describe_error(exc: ValidationError) -> str:
    """One line naming the first bad setting, its environment variable and what is wrong."""
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "settings"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required"
        elif error["type"] == "extra_forbidden":
            problems.append(f"unknown setting {field!r} in the config file")
            continue
        problems.append(f"{field} ({ENV_PREFIX}{field.upper()}) {message}")
    return "invalid settings: " + "; ".join(problems)


def masked(settings: RepoSettings) -> dict[str, Any]:
    """The effective settings as plain values, secrets shown as '**********' (or unset)."""
    shown: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            shown[name] = "**********"
        elif name == "notify_urls":
            shown[name] = [target_urls.redact(url.get_secret_value()) for url in value]
        elif isinstance(value, (Listen, AnyHttpUrl, Path)):
            shown[name] = str(value)
        elif isinstance(value, tuple):
            shown[name] = ["**********" if isinstance(item, SecretStr) else item for item in value]
        else:
            shown[name] = value
    return shown
