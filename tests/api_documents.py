"""The API documents (docs/openapi.json, docs/asyncapi.yaml) as test tools: check an HTTP answer
against the OpenAPI operation it came from, and a WebSocket frame against its AsyncAPI message."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOCS = Path(__file__).resolve().parent.parent / "docs"
OPENAPI_PATH, ASYNCAPI_PATH = DOCS / "openapi.json", DOCS / "asyncapi.yaml"


@cache
def openapi() -> dict[str, Any]:
    return json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))


@cache
def asyncapi() -> dict[str, Any]:
    return yaml.safe_load(ASYNCAPI_PATH.read_text(encoding="utf-8"))


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


@cache
def _registry(which: str) -> Registry:
    doc = openapi() if which == "openapi" else asyncapi()
    return Registry().with_resource(f"urn:{which}", Resource.from_contents(doc, default_specification=DRAFT202012))


def _validate(which: str, instance: Any, *pointer: str) -> None:
    schema = {"$ref": f"urn:{which}#/{_pointer(*pointer)}"}
    jsonschema.Draft202012Validator(schema, registry=_registry(which)).validate(instance)


def check_response(method: str, route: str, status: int, content_type: str, body: bytes | None) -> None:
    """Raise AssertionError unless the document lists this answer of ``method route`` (a route
    template, e.g. ``/conversations/{id}``) and its body matches the listed schema."""
    operation = openapi()["paths"].get(route, {}).get(method.lower())
    assert operation is not None, f"{method} {route} is not in docs/openapi.json"
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {route} answered {status}, which docs/openapi.json does not list"
    ref = response.get("$ref")
    pointer = ref.removeprefix("#/").split("/") if ref else ["paths", route, method.lower(), "responses", str(status)]
    if ref:
        response = openapi()["components"]["responses"][pointer[-1]]
    if status == 101:  # a WebSocket upgrade: no body
        return
    media = content_type.split(";")[0].strip()
    assert media in response.get("content", {}) or "*/*" in response.get("content", {}), \
        f"{method} {route} {status}: {media} is not documented"
    if media == "application/json" and body is not None:
        _validate("openapi", json.loads(body), *pointer, "content", "application/json", "schema")


def check_frame(frame: dict[str, Any]) -> None:
    """A frame the server sent must be one of the AsyncAPI document's messages, shaped as it says."""
    name = frame.get("event")
    assert name in asyncapi()["components"]["messages"], f"{name} is not in docs/asyncapi.yaml"
    _validate("asyncapi", frame, "components", "messages", name, "payload")


class ResponseChecker:
    """An ``on_response_prepare`` hook: every JSON or text answer of the app is checked against
    docs/openapi.json; what did not match is collected in ``mismatches``."""

    def __init__(self) -> None:
        self.mismatches: list[str] = []
        self.checked: set[tuple[str, str, int]] = set()

    async def on_response_prepare(self, request: Any, response: Any) -> None:
        body = getattr(response, "body", None)  # None for a file: its status and type are still checked
        body = bytes(body) if isinstance(body, bytes | bytearray) else None
        resource = request.match_info.route.resource
        if resource is None:  # no route: the envelope's 404/405, documented in info.description
            return
        try:
            check_response(request.method, resource.canonical, response.status, response.content_type, body)
            self.checked.add((request.method, resource.canonical, response.status))
        except (AssertionError, jsonschema.ValidationError) as exc:
            self.mismatches.append(f"{request.method} {request.path} {response.status}: {str(exc)[:400]}")
