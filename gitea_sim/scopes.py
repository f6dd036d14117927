"""Access-token scopes, as models/auth/access_token_scope.go defines them and routers/api/v1/api.go
(tokenRequiresScopes) checks them in Gitea 1.25.

Each route group names scope categories; a GET (or HEAD, OPTIONS) needs `read:<category>`, anything else
`write:<category>`, for every category the route names. `write:x` includes `read:x`; `all` includes every
scope. A refused call answers 403 with the required scopes and the token's own, which is the only way a
token's scopes show through the API (GET /users/{u}/tokens takes a password, not a token).
`public-only` (limits a token to public resources) is not simulated.
"""

from __future__ import annotations

CATEGORIES = ("activitypub", "admin", "misc", "notification", "organization", "package", "issue", "repository",
              "user")
ALL = "all"
PUBLIC_ONLY = "public-only"
KNOWN = frozenset({ALL, PUBLIC_ONLY} | {f"{level}:{c}" for level in ("read", "write") for c in CATEGORIES})
ISSUE_PARTS = ("issues", "labels", "milestones")


def categories(path: str) -> tuple[str, ...]:
    """The scope categories the API route at `path` (after /api/v1) requires; () for none."""
    parts = path.strip("/").split("/")
    head = parts[0] if parts else ""
    if head == "repos":
        if len(parts) >= 2 and parts[1] == "issues":  # /repos/issues/search
            return ("issue",)
        if len(parts) >= 4 and parts[3] in ISSUE_PARTS:
            return ("issue",)
        return ("repository",)
    if head in ("user", "users"):
        repos = (head == "user" and parts[1:2] == ["repos"]) or (head == "users" and parts[2:3] == ["repos"])
        orgs = (head == "user" and parts[1:2] == ["orgs"]) or (head == "users" and parts[2:3] == ["orgs"])
        return ("user", "repository") if repos else ("user", "organization") if orgs else ("user",)
    if head in ("orgs", "teams"):
        return ("organization",)
    if head == "admin":
        return ("admin",)
    if head == "notifications":
        return ("notification",)
    if head == "topics":
        return ("repository",)
    if head == "packages":
        return ("package",)
    return ()


def required(method: str, path: str) -> list[str]:
    level = "read" if method.upper() in ("GET", "HEAD", "OPTIONS") else "write"
    return [f"{level}:{category}" for category in categories(path)]


def has(scopes: list[str], needed: str) -> bool:
    if ALL in scopes or needed in scopes:
        return True
    level, _, category = needed.partition(":")
    return level == "read" and f"write:{category}" in scopes


def refusal(scopes: list[str], needed: list[str]) -> str | None:
    """The 403 message when the token lacks one of `needed`, else None."""
    if all(has(scopes, scope) for scope in needed):
        return None
    return (f"token does not have at least one of required scope(s), required=[{' '.join(needed)}], "
            f"token scope={','.join(scopes)}")
