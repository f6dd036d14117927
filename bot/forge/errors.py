"""Typed errors for forge answers, so callers branch on a class, not on a number."""

from __future__ import annotations


class ForgeError(Exception):
    """An HTTP answer the caller did not expect, or no answer at all."""

    def __init__(self, method: str, path: str, status: int | None, message: str) -> None:
        super().__init__(f"{method} {path}: {status if status is not None else 'no answer'} {message}".strip())
        self.method = method
        self.path = path
        self.status = status
        self.message = message


class Unauthorized(ForgeError):
    """401: the token is wrong or lacks a scope."""


class Forbidden(ForgeError):
    """403: the bot's user may not do this."""


class NotFound(ForgeError):
    """404."""


class NotAllowed(ForgeError):
    """405: not mergeable, already merged, or "try again later" (mergeability still being checked)."""

    @property
    def try_again_later(self) -> bool:
        return "try again later" in self.message.lower()

    @property
    def already_merged(self) -> bool:
        return "already been merged" in self.message.lower() or "already merged" in self.message.lower()


class Conflict(ForgeError):
    """409: merge conflict, head out of date, push rejected."""


class Unprocessable(ForgeError):
    """422: e.g. updating a PR that is closed or merged."""


class RateLimited(ForgeError):
    """429."""


class ServerError(ForgeError):
    """5xx."""


class Unavailable(ForgeError):
    """The forge did not answer: connection refused, reset, or timed out."""


BY_STATUS: dict[int, type[ForgeError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: NotAllowed,
    409: Conflict,
    422: Unprocessable,
    429: RateLimited,
}


def error_for(method: str, path: str, status: int, message: str) -> ForgeError:
    if status >= 500:
        return ServerError(method, path, status, message)
    return BY_STATUS.get(status, ForgeError)(method, path, status, message)
