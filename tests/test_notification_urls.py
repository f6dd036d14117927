"""Notification URLs (``bot/notifications/urls.py``, the ``notify_urls`` setting): split from one setting, shown
without their secrets, and every secret piece handed to the log redaction. Hypothesis builds the URLs in
the shapes apprise's services use (the token as password, as "host", as path segment, as query value)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import ConfigError, load_settings, masked
from bot.notifications import urls

TOKEN = st.text(string.ascii_letters + string.digits + "-_", min_size=urls.MIN_PIECE, max_size=40).filter(
    lambda token: not token.isdigit()
)
HOSTNAME = st.sampled_from(["127.0.0.1", "chat.example.org", "localhost", "[::1]", "ntfy.sh"])
SCHEME = st.sampled_from(["json", "jsons", "ntfys", "mailtos", "matrixs", "tgram", "discord", "slack"])


@st.composite
def secret_url(draw: st.DrawFn) -> tuple[str, list[str], str | None]:
    """(url, its secrets, the host shown when the URL is redacted or None when the host is itself a token)."""
    scheme = draw(SCHEME)
    secrets: list[str] = []
    shape = draw(st.sampled_from(["password", "host", "path", "query"]))
    host = draw(HOSTNAME)
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    authority = f"{host}:{port}" if port else host
    shown: str | None = authority
    path = "/" + "/".join(draw(st.lists(st.sampled_from(["hook", "x", "room"]), max_size=2)))
    query = ""
    if shape == "password":
        secret = draw(TOKEN)
        authority = f"bot:{secret}@{authority}"
    elif shape == "host":
        secret = f"{draw(st.integers(1, 10**9))}:{draw(TOKEN)}"
        authority, shown = secret, None
    elif shape == "path":
        secret = draw(TOKEN)
        path = f"{path.rstrip('/')}/{secret}"
    else:
        secret = draw(TOKEN)
        query = f"?token={secret}"
    secrets.append(secret)
    return f"{scheme}://{authority}{path}{query}", secrets, shown


@given(secret_url())
def test_a_redacted_url_keeps_no_secret_and_every_secret_is_handed_to_the_redaction(
    case: tuple[str, list[str], str | None],
) -> None:
    url, secrets, shown = case
    redacted = urls.redact(url)
    for secret in secrets:
        assert secret not in redacted
        assert secret in urls.secret_pieces(url)
        assert secret not in urls.scrub(f"failed to post to {url}: {secret} refused", [url])
    assert redacted.startswith(url.split("://")[0] + "://")
    assert (shown in redacted) if shown is not None else redacted.endswith("://" + urls.MASK)


@given(st.lists(secret_url(), min_size=1, max_size=4), st.sampled_from([",", ", ", " ", "\n", " ,\n"]))
def test_one_setting_holds_several_urls(cases: list[tuple[str, list[str], str | None]], separator: str) -> None:
    listed = [url for url, _secrets, _shown in cases]
    assert urls.split_urls(separator.join(listed)) == listed


def test_a_comma_inside_a_url_does_not_split_it() -> None:
    mail = "mailtos://bot:pw-123456@mail.example.org?to=a@example.org,b@example.org"
    assert urls.split_urls(f"{mail},json://127.0.0.1:9/hook") == [mail, "json://127.0.0.1:9/hook"]


def test_notify_urls_are_secrets_of_the_settings() -> None:
    settings = load_settings(
        {
            "MERGE_BOT_WEBHOOK_SECRET": "s3cret-value",
            "MERGE_BOT_NOTIFY_URLS": "json://bot:pw-Secret1@127.0.0.1:8123/hook/tok-ABCDEF, tgram://123456:AAH-bot-token/42",
        }
    )
    shown = repr(masked(settings)) + repr(settings) + str(settings)
    for secret in ("pw-Secret1", "tok-ABCDEF", "AAH-bot-token"):
        assert secret not in shown
        assert secret in settings.secrets()
    assert masked(settings)["notify_urls"] == ["json://127.0.0.1:8123/...", "tgram://..."]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not-a-url-tok-SECRET99", "notify_urls (MERGE_BOT_NOTIFY_URLS) entry 1 is not a URL of the form scheme://..."),
        (
            "json://127.0.0.1/hook, nosuchservice://tok-SECRET99@host",
            "notify_urls (MERGE_BOT_NOTIFY_URLS) entry 2 (nosuchservice://...) is not a URL apprise can send to",
        ),
    ],
)
def test_a_bad_notify_url_is_a_one_line_error_without_its_secret(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"MERGE_BOT_WEBHOOK_SECRET": "s3cret-value", "MERGE_BOT_NOTIFY_URLS": value})
    assert message in str(info.value)
    assert "SECRET99" not in str(info.value)
    assert "\n" not in str(info.value)
