"""Notification target URLs (apprise's ``scheme://…`` form) as the bot handles them: split from one setting,
shown without their secrets, and taken apart into the pieces the log redaction must hide.

A notification URL is a secret as a whole: depending on the service, the token sits in the password
(``mailtos://user:pass@host``), the "host" (``tgram://bot-token/chat``), the path (``discord://id/token``,
``json://host/hooks/token``) or the query (``ntfys://host/topic?token=…``). Nothing here imports apprise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote

from bot.logs import REDACTED

SCHEME_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.DOTALL)
# One setting holds several URLs: split on whitespace, and on a comma only where the next URL starts (a
# comma inside a URL, like ``mailto://…?to=a@x,b@y``, stays).
_SEPARATOR = re.compile(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")
_HOSTNAME = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$")
MASK = "..."
MIN_PIECE = 6  # shorter path segments and query values are taken for names (``/hook``, ``?mode=x``), not tokens


def split_urls(value: str) -> list[str]:
    return [part.strip(", ") for part in _SEPARATOR.split(value) if part.strip(", ")]


def scheme(url: str) -> str | None:
    match = SCHEME_RE.match(url.strip())
    return match.group("scheme").lower() if match else None


def _authority(rest: str) -> tuple[str, str, str]:
    """(userinfo, host[:port], path?query) of what follows ``scheme://``; the fragment is dropped."""
    rest = rest.split("#", 1)[0]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    userinfo, _, host = authority.rpartition("@")
    return userinfo, host, tail


def _host_and_port(host: str) -> tuple[str, str]:
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1], host[end + 1 :].removeprefix(":")
    name, _, port = host.partition(":")
    return name, port


def redact(url: str) -> str:
    """The URL with everything that may be secret left out: ``json://127.0.0.1:8123/...``, ``tgram://...``.

    The host is kept only when it looks like a host name or an address (a token in the host's place, as in
    ``tgram://123:abc``, has neither dots nor brackets)."""
    match = SCHEME_RE.match(url.strip())
    if not match:
        return MASK
    _userinfo, host, _tail = _authority(match.group("rest"))
    name, port = _host_and_port(host)
    if not _HOSTNAME.match(name) or (port and not port.isdigit()):
        return f"{match.group('scheme').lower()}://{MASK}"
    return f"{match.group('scheme').lower()}://{name}{':' + port if port else ''}/{MASK}"


def secret_pieces(url: str) -> list[str]:
    """What the log redaction hides of one URL: the URL itself, its password (or a user without one), a host
    that is not a host name, and every path segment and query value long enough to be a token; also their
    %-decoded forms."""
    url = url.strip()
    found = [url]
    match = SCHEME_RE.match(url)
    if match:
        userinfo, host, tail = _authority(match.group("rest"))
        user, _, password = userinfo.partition(":")
        found.append(password)
        if not password and len(user) >= MIN_PIECE:  # ``pover://user-key@token``: a user with no password is a key
            found.append(user)
        name, port = _host_and_port(host)
        if not _HOSTNAME.match(name) or (port and not port.isdigit()):
            found += [host, *host.split(":")]
        path, _, query = tail.partition("?")
        pieces = [segment for segment in path.split("/") if len(segment) >= MIN_PIECE]
        pieces += [value for _key, value in parse_qsl(query, keep_blank_values=True) if len(value) >= MIN_PIECE]
        found += pieces
    decoded = [unquote(piece) for piece in found]
    return _unique(piece for piece in [*found, *decoded] if piece)


def secrets_of(urls: Iterable[str]) -> list[str]:
    return _unique(piece for url in urls for piece in secret_pieces(url))


def scrub(text: str, urls: Iterable[str]) -> str:
    """``text`` with every secret piece of ``urls`` replaced, longest first (for stored error messages)."""
    for piece in sorted(secrets_of(urls), key=len, reverse=True):
        text = text.replace(piece, REDACTED)
    return text


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
