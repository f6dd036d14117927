"""HTTP plumbing shared by the API modules: errors in Gitea's shapes, auth, body parsing, pagination."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web

from .model import Access, Repo, Token, User

if TYPE_CHECKING:
    from .core import Sim

SIM: web.AppKey[Sim] = web.AppKey("sim")
DOER: web.RequestKey[User | None] = web.RequestKey("doer")
T = TypeVar("T")
DEFAULT_PAGE_SIZE = 30
MAX_PAGE_SIZE = 50


class ApiError(Exception):
    """An error answer in Gitea's shape; raised inside handlers, turned into JSON by one middleware."""

    def __init__(self, status: int, message: str = "", *, not_found: bool = False, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.not_found = not_found
        self.body = body


def not_found(message: str = "") -> ApiError:
    return ApiError(404, message, not_found=True)


def forbidden(message: str) -> ApiError:
    return ApiError(403, message)


def error_body(sim: Sim, err: ApiError) -> Any:
    if err.body is not None:
        return err.body
    swagger = f"{sim.base_url}/api/swagger"
    if err.not_found:
        return {"errors": [err.message] if err.message else [], "message": "The target couldn't be found.",
                "url": swagger}
    return {"message": err.message, "url": swagger}


def sim_of(request: web.Request) -> Sim:
    return request.app[SIM]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json",
                        headers=headers)


def empty(status: int) -> web.Response:
    return web.Response(status=status)


class FormBody(dict[str, Any]):
    """A form-encoded body: every value arrives as a string (a repeated key as a list of strings)."""


FORM_TRUE = ("true", "on", "1")
FORM_BOOL = (*FORM_TRUE, "false", "off", "0", "")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a dict: JSON, or application/x-www-form-urlencoded (Gitea's binding takes both)."""
    if not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    if request.content_type == "application/x-www-form-urlencoded":
        form = FormBody()
        for key, value in parse_qsl(raw.decode(errors="replace"), keep_blank_values=True):
            key = key.removesuffix("[]")
            if key in form:
                prev = form[key]
                form[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
            else:
                form[key] = value
        return form
    try:
        data = json.loads(raw)
    except ValueError:
        raise ApiError(422, "invalid JSON body") from None
    if not isinstance(data, dict):
        raise ApiError(422, "body must be a JSON object")
    return data


def int_field(body: dict[str, Any], key: str) -> int | None:
    """An integer field; a form body's digits count."""
    value = body.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(body, FormBody) and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def str_field(body: dict[str, Any], key: str, default: str = "") -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ApiError(422, f"{key}: must be a string")
    return value


def bool_field(body: dict[str, Any], key: str, default: bool = False) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(body, FormBody) and isinstance(value, str) and value.lower() in FORM_BOOL:
        return value.lower() in FORM_TRUE
    if not isinstance(value, bool):
        raise ApiError(422, f"{key}: must be a boolean")
    return value


def list_field(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key) or []
    if isinstance(body, FormBody) and isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ApiError(422, f"{key}: must be an array")
    return value


# --- auth ---
def credentials(request: web.Request) -> tuple[str | None, str | None, str | None]:
    """(token, basic_user, basic_password) from the request, as Gitea accepts them."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme in ("token", "bearer") and value.strip():
        return value.strip(), None, None
    if scheme == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, "", ""
        user, _, password = decoded.partition(":")
        return None, user, password
    for q in ("token", "access_token"):
        if request.query.get(q):
            return request.query[q], None, None
    return None, None, None


class AuthError(Exception):
    pass


def authenticate(sim: Sim, request: web.Request, allow_password: bool = True) -> User | None:
    """The doer, None when anonymous; AuthError when credentials are given but wrong."""
    token, user, password = credentials(request)
    state = sim.state
    if token is not None:
        t = state.tokens.get(token)
        if t is None:
            raise AuthError("user does not exist")
        return state.users[t.user_id]
    if user is None:
        return None
    assert password is not None
    # A token as the basic-auth username (password empty or "x-oauth-basic"), or as the password: then the user
    # name is not compared (services/auth/basic.go, Basic.Verify: GetAccessTokenBySHA(passwd) decides).
    if user in state.tokens and password in ("", "x-oauth-basic"):
        return state.users[state.tokens[user].user_id]
    if password in state.tokens:
        return state.users[state.tokens[password].user_id]
    u = state.user_by_name(user)
    if u is None or u.is_org:
        raise AuthError("user does not exist")
    if allow_password and u.password and password == u.password:
        return u
    raise AuthError("invalid username, password or token")


def token_of(sim: Sim, request: web.Request) -> Token | None:
    """The access token the request authenticates with (header, query, or basic auth), if any."""
    token, user, password = credentials(request)
    tokens = sim.state.tokens
    if token is not None:
        return tokens.get(token)
    if user is not None and user in tokens and password in ("", "x-oauth-basic"):
        return tokens[user]
    if password is not None and password in tokens:
        return tokens[password]
    return None


def doer_of(request: web.Request) -> User | None:
    return request.get(DOER)


def require_doer(request: web.Request) -> User:
    u = doer_of(request)
    if u is None:
        raise ApiError(401, "token is required")
    return u


# --- repository context ---
def repo_ctx(request: web.Request) -> tuple[Repo, Access]:
    """The repository named in the path and the doer's access; 404 when it is invisible to the doer."""
    sim = sim_of(request)
    repo = sim.state.repo_by_name(request.match_info["owner"], request.match_info["repo"])
    if repo is None:
        raise not_found()
    access = sim.perms.access(repo, doer_of(request))
    if access < Access.READ:
        raise not_found()
    return repo, access


def require_access(access: Access, needed: Access, message: str | None = None) -> None:
    if access >= needed:
        return
    if message is None:
        message = ("user should be an owner or a collaborator with admin write of a repository"
                   if needed >= Access.ADMIN else "user should have a permission to write to a repo")
    raise forbidden(message)


def int_param(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise not_found() from None


# --- pagination ---
def page_params(request: web.Request) -> tuple[int, int]:
    def num(key: str, default: int) -> int:
        try:
            return int(request.query.get(key, default))
        except ValueError:
            return default

    page = max(num("page", 1), 1)
    limit = num("limit", num("per_page", DEFAULT_PAGE_SIZE))
    if limit <= 0:
        limit = DEFAULT_PAGE_SIZE
    return page, min(limit, MAX_PAGE_SIZE)


def paginate(request: web.Request, items: Sequence[T]) -> tuple[list[T], dict[str, str]]:
    page, limit = page_params(request)
    start = (page - 1) * limit
    chunk = list(items[start:start + limit])
    total = len(items)
    headers = {"X-Total-Count": str(total), "Access-Control-Expose-Headers": "X-Total-Count, Link"}
    last = max((total + limit - 1) // limit, 1)
    links = []
    url = request.url
    if page < last:
        links.append(f'<{url.update_query(page=page + 1, limit=limit)}>; rel="next"')
        links.append(f'<{url.update_query(page=last, limit=limit)}>; rel="last"')
    if page > 1:
        links.append(f'<{url.update_query(page=1, limit=limit)}>; rel="first"')
        links.append(f'<{url.update_query(page=page - 1, limit=limit)}>; rel="prev"')
    if links:
        headers["Link"] = ", ".join(links)
    return chunk, headers
