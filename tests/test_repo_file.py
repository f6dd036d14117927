"""A repository's merge-bot file (bot.repoconfig.file) and the one model its keys share with the global
settings (bot.config.RepoSettings): good files, TOML errors, unknown keys, wrong types, branch tables,
the effective settings of a branch, the docs checked against the model, and ``check-config --repo-file``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import RepoSettings, Settings, load_settings
from bot.db.models import Entry, PullRequest
from bot.gate.build import piece, render
from bot.queue.model import MergeMethod
from bot.repoconfig.file import KEYS, Problem, RepoFile, effective_settings, parse
from tests.conftest import ROOT

PATH = ".gitea/merge-bot.toml"
EXAMPLE = ROOT / "config" / "merge-bot.repo.example.toml"
README = ROOT / "README.md"
DEFAULTS = RepoSettings()


def settings(**env: str) -> Settings:
    return load_settings(
        {"MERGE_BOT_WEBHOOK_SECRET": "s3cret", **{f"MERGE_BOT_{k.upper()}": v for k, v in env.items()}}
    )


def good(text: str, base: RepoSettings = DEFAULTS) -> RepoFile:
    parsed = parse(text, PATH, base)
    assert isinstance(parsed, RepoFile), parsed
    return parsed


def problems(text: str | bytes, base: RepoSettings = DEFAULTS) -> list[tuple[int | None, str]]:
    parsed = parse(text, PATH, base)
    assert isinstance(parsed, tuple), parsed
    return [(problem.line, problem.message) for problem in parsed]


# -- one model ---------------------------------------------------------------------------------------


def test_settings_inherit_every_repository_key_with_its_definition() -> None:
    for name, field in RepoSettings.model_fields.items():
        mine = Settings.model_fields[name]
        assert (mine.annotation, mine.default, mine.description) == (field.annotation, field.default, field.description)
        assert field.description, f"{name} has no documentation"
    assert issubclass(Settings, RepoSettings)


def test_the_global_settings_validate_the_shared_keys_the_same_way() -> None:
    assert settings(allowed_methods="merge,squash", merge_method="squash").allowed_methods == ("merge", "squash")
    assert settings(windows="Sat,Sun 10:00-12:00 UTC; Mon-Fri 09:00-17:00 Europe/Berlin").windows == (
        "Sat,Sun 10:00-12:00 UTC",
        "Mon-Fri 09:00-17:00 Europe/Berlin",
    )
    hook = settings(notify_urls="json://hooks.example/T0KEN-SECRET")
    assert "T0KEN-SECRET" in hook.secrets()  # redacted from the logs
    assert "T0KEN" not in repr(hook)
    from bot.config import ConfigError

    with pytest.raises(ConfigError, match=r"merge_method \(squash\) must be one of allowed_methods"):
        settings(allowed_methods="rebase", merge_method="squash")
    with pytest.raises(ConfigError, match="unknown placeholder"):
        settings(squash_message="{title} {sha}")


# -- good files ----------------------------------------------------------------------------------------


def test_a_good_file_overrides_the_keys_it_names() -> None:
    found = good('merge_method = "squash"\nbatch_max = 2\nrequired_contexts = ["ci/*"]\nbisect = false\n')
    assert found.values == {"merge_method": "squash", "batch_max": 2, "required_contexts": ("ci/*",), "bisect": False}
    base = settings(batch_max="4", queue_label="ship-it")
    effective = effective_settings(base, found, "main")
    assert (effective.merge_method, effective.batch_max, effective.bisect) == ("squash", 2, False)
    assert effective.queue_label == "ship-it"  # not in the file: the bot's own
    assert effective.webhook_secret == base.webhook_secret
    assert effective_settings(base, None, "main") is base


def test_an_empty_file_changes_nothing() -> None:
    assert good("# nothing yet\n").overrides("main") == {}


def test_the_example_file_is_valid_and_names_every_key() -> None:
    text = EXAMPLE.read_text()
    found = good(text)
    assert found.overrides("release/2.0")["merge_method"] == "merge"
    for key in KEYS:
        assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), f"{key} is not shown in {EXAMPLE.name}"


def test_the_readme_table_is_the_model() -> None:
    """Every per-repository key in the README's table, with the model's own description and default."""
    text = README.read_text()
    section = text[text.index("### A repository's own file") :]
    table = section[section.index("| key | meaning | default |") :].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (.*?) \| `(.*)` \|$", table, re.MULTILINE)
    assert [key for key, _, _ in rows] == list(KEYS)
    for key, meaning, default in rows:
        field = RepoSettings.model_fields[key]
        value = list(field.default) if isinstance(field.default, tuple) else field.default
        assert meaning == field.description, key
        assert json.loads(default) == value, key
    for name in Settings.model_fields:
        assert f"MERGE_BOT_{name.upper()}" in text, f"MERGE_BOT_{name.upper()} is not in the README"


# -- branch tables -------------------------------------------------------------------------------------


BRANCHES = """
batch_max = 3
merge_method = "squash"

[branch."release/*"]
batch_max = 1

[branch."release/2.*"]
batch_max = 2

[branch."release/1.0"]
allowed_methods = ["merge"]
merge_method = "merge"
"""


@pytest.mark.parametrize(
    ("branch", "table", "batch_max", "method"),
    [
        ("main", None, 3, "squash"),
        ("release/2.1", "release/*", 1, "squash"),  # the first matching pattern, not the closest
        ("release/1.0", "release/1.0", 3, "merge"),  # an exact name wins over any pattern
        ("release/1.0/hotfix", "release/*", 1, "squash"),  # * matches / too
        ("Release/3", None, 3, "squash"),  # case-sensitive, as branch names are
    ],
)
def test_one_table_applies_to_a_branch(branch: str, table: str | None, batch_max: int, method: str) -> None:
    found = good(BRANCHES)
    assert found.table_for(branch) == table
    effective = effective_settings(settings(), found, branch)
    assert (effective.batch_max, effective.merge_method) == (batch_max, method)


def test_a_table_is_validated_with_the_top_level_under_it() -> None:
    text = 'allowed_methods = ["rebase", "merge"]\n\n[branch.main]\nmerge_method = "squash"\n'
    assert problems(text) == [(4, "merge_method (squash) must be one of allowed_methods (rebase, merge)")]


def test_a_file_is_validated_on_the_bots_own_settings() -> None:
    assert problems("window = 6\n") == [(1, "window (6) must not exceed max_parallel (4)")]
    assert good("window = 6\n", settings(max_parallel="8")).values == {"window": 6}


# -- bad files ---------------------------------------------------------------------------------------------


def test_toml_syntax_errors_name_their_line() -> None:
    assert problems('batch_max = 2\nmerge_method = "squash\n') == [
        (2, "not valid TOML: Illegal character '\\n'"),
    ]
    [(line, message)] = problems("batch_max = 2\n[branch.main\nbatch_max = 1\n")
    assert line == 2 and message.startswith("not valid TOML")


def test_a_file_that_is_not_utf8() -> None:
    assert problems(b"batch_max = 2\nqueue_label = '\xff'\n") == [(2, "the file is not UTF-8 text")]


def test_unknown_keys_name_their_line_and_what_was_meant() -> None:
    text = 'batch_max = 2\nbatch_maxx = 3\ngitea_url = "http://x"\n\n[branch."r/*"]\nbisekt = true\nbranch = {}\n'
    assert problems(text) == [
        (2, "unknown key 'batch_maxx' (did you mean batch_max?)"),
        (3, "unknown key 'gitea_url' (gitea_url is one of the bot's own settings, not a repository's)"),
        (6, "unknown key 'bisekt' (did you mean bisect?)"),
        (7, "unknown key 'branch' (branch tables do not nest)"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('batch_max = "lots"', 1, "batch_max: Input should be a valid integer"),
        ("batch_max = 0", 1, "batch_max: Input should be greater than or equal to 1"),
        ('bisect = "maybe"', 1, "bisect: Input should be a valid boolean"),
        ("queue_label = 5", 1, "queue_label: Input should be a valid string"),
        ('strategy = "yolo"', 1, "strategy: Input should be 'staging' or 'pr-branch'"),
        ('allowed_methods = [\n  "merge",\n  "fast-forward",\n]', 1, "allowed_methods[1]: Input should be"),
        ("allowed_methods = []", 1, "allowed_methods: Tuple should have at least 1 item"),
        ('allowed_teams = ["justateam"]', 1, "allowed_teams: Value error, expected org/team"),
        ('squash_message = "{title} {sha}"', 1, "squash_message: has an unknown placeholder {sha}"),
        ('merge_message = "{title"', 1, "merge_message: is not a valid template"),
        ('windows = ["Mon-Fri 9-5"]', 1, "windows: expected 'DAYS HH:MM-HH:MM ZONE'"),
        ('windows = ["Mon-Fri 09:00-17:00 Mars/Base"]', 1, "windows: unknown time zone 'Mars/Base'"),
        ("branch = 5", 1, 'branch holds tables, e.g. [branch."release/*"]'),
        ("[branch]\nmain = 1", 1, "branch holds tables"),
        (
            'batch_max = 2\n\n[branch."hotfix/*"]\nflaky_retries = 9',
            4,
            "flaky_retries: Input should be less than or equal",
        ),
        ('branch.main.batch_max = "x"', 1, "batch_max: Input should be a valid integer"),
    ],
)
def test_wrong_types_and_values_name_the_keys_line(text: str, line: int, message: str) -> None:
    [(found_line, found)] = problems(text + "\n")
    assert found_line == line
    assert found.startswith(message.replace("Value error, ", "")), found


def test_a_secret_is_never_part_of_a_problem() -> None:
    [(line, message)] = problems('notify_urls = ["json://ok.example/a", "nothing-T0KEN@hooks.example"]\n')
    assert (line, message) == (1, "notify_urls: entry 2 is not a URL of the form scheme://...")
    assert "T0KEN" not in str(parse('notify_urls = "T0KEN"\n', PATH, DEFAULTS))


def test_problems_come_in_the_order_of_their_lines() -> None:
    text = 'queue_label = 1\nbatch_max = "x"\nbisect = "x"\n'
    assert [line for line, _ in problems(text)] == [1, 2, 3]
    assert str(Problem(PATH, 2, "batch_max: no")) == ".gitea/merge-bot.toml:2: batch_max: no"


# -- commit messages -----------------------------------------------------------------------------------


def _entry(method: str) -> tuple[Entry, PullRequest]:
    entry = Entry(id=7, approved_sha="a" * 40, approved_by="maint", merge_method=method)
    pull = PullRequest(number=12, title="Add the thing", body="It adds the thing.", author="alice")
    return entry, pull


def test_the_default_messages_are_the_ones_before_templates() -> None:
    entry, pull = _entry("squash")
    assert piece(entry, pull).message == "Add the thing (#12)\n\nIt adds the thing."
    entry, pull = _entry("merge")
    assert piece(entry, pull).message == "Merge pull request #12: Add the thing\n\nMerged by merge-bot."
    entry, pull = _entry("rebase")
    assert piece(entry, pull).message == ""
    assert piece(entry, pull).method is MergeMethod.REBASE


def test_a_template_fills_in_the_pr_and_its_co_authors() -> None:
    entry, pull = _entry("squash")
    templates = good(
        'squash_message = "{title} (#{number})\\n\\n{body}\\n\\nApproved-by: {approved_by}\\n{co_authors}\\n"\n'
    )
    applied = effective_settings(settings(), templates, "main")
    message = piece(entry, pull, applied, ["Bob Builder <bob@example.com>"]).message
    assert message == (
        "Add the thing (#12)\n\nIt adds the thing.\n\nApproved-by: maint\nCo-authored-by: Bob Builder <bob@example.com>"
    )
    assert render("{{literal}} by {author}", entry, pull) == "{literal} by alice"


# -- check-config --repo-file ---------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bot", *args], env=env, capture_output=True, text=True, timeout=60)


def test_check_config_accepts_a_good_file_offline_and_masks_secrets(tmp_path: Path) -> None:
    path = tmp_path / "merge-bot.toml"
    path.write_text(
        'merge_method = "squash"\nnotify_urls = ["json://hooks.example/T0KEN-SECRET"]\n[branch."r/*"]\nbatch_max = 1\n'
    )
    result = _cli("check-config", "--repo-file", str(path))
    assert result.returncode == 0, result.stderr
    assert "valid (checked against the defaults)" in result.stdout
    assert "merge_method = squash" in result.stdout
    assert 'branch."r/*" = ' in result.stdout
    assert "T0KEN" not in result.stdout + result.stderr


def test_check_config_rejects_a_bad_file_with_its_lines(tmp_path: Path) -> None:
    """Unknown keys are reported first (nothing else is checked in a file that has one), then bad values."""
    path = tmp_path / "merge-bot.toml"
    path.write_text('batch_max = 2\nbisect = "T0KEN"\nnotify_urls = ["ftp://T0KEN"]\nbatch_mux = 1\n')
    result = _cli("check-config", "--repo-file", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"merge-bot: {path}:4: unknown key 'batch_mux' (did you mean batch_max?)"]
    path.write_text('batch_max = 2\nbisect = "T0KEN"\nnotify_urls = ["ftp://T0KEN"]\n')
    result = _cli("check-config", "--repo-file", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"merge-bot: {path}:2: bisect: Input should be a valid boolean, unable to interpret input",
        f"merge-bot: {path}:3: notify_urls: entry 1 (ftp://...) is not a URL apprise can send to",
    ]
    assert "T0KEN" not in result.stdout + result.stderr
    missing = _cli("check-config", "--repo-file", str(tmp_path / "nope.toml"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
