"""The OpenAPI file as a test oracle: which response a (path, method, status) documents, and whether a real
answer fits it (JSON bodies against their schema, with ``$ref``s resolved inside the file)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi" / "merge-bot.yaml"
BASE = "urn:merge-bot-openapi"


@functools.cache
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return loaded


@functools.cache
def _registry() -> Registry:  # type: ignore[type-arg]
    resource = Resource.from_contents(spec(), default_specification=DRAFT202012)
    return Registry().with_resource(BASE, resource)  # type: ignore[no-any-return]


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _follow(pointer: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The object at ``pointer``, following a ``$ref`` to another place in the file."""
    node: Any = spec()
    for part in pointer:
        node = node[part]
    if isinstance(node, dict) and "$ref" in node:
        target = node["$ref"].removeprefix("#/").split("/")
        return _follow(target)
    return pointer, node


@dataclass(frozen=True)
class Documented:
    pointer: list[str]
    response: dict[str, Any]


def documented(path: str, method: str, status: int) -> Documented:
    operation = spec()["paths"][path][method.lower()]
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, which the OpenAPI file does not document"
    pointer, response = _follow(["paths", path, method.lower(), "responses", str(status)])
    return Documented(pointer, response)


def check(path: str, method: str, status: int, content_type: str, body: bytes) -> Any:
    """Assert that a real answer is documented and fits its schema; return the decoded JSON (or None)."""
    found = documented(path, method, status)
    content = found.response.get("content")
    if not content:
        assert not body, f"{method} {path} {status}: a body where the file documents none"
        return None
    assert content_type in content, f"{method} {path} {status}: {content_type} is not documented ({list(content)})"
    if content_type != "application/json":
        return None
    decoded = json.loads(body)
    pointer = "/".join(_escape(part) for part in [*found.pointer, "content", content_type, "schema"])
    validator = Draft202012Validator(
        {"$ref": f"{BASE}#/{pointer}"}, registry=_registry(), format_checker=FormatChecker()
    )
    errors = sorted(validator.iter_errors(decoded), key=lambda error: list(error.absolute_path))
    assert not errors, f"{method} {path} {status}: " + "; ".join(
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in errors[:5]
    )
    return decoded
