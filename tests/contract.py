"""Requests and responses checked against Back Market's published OpenAPI 3.0 spec.

The spec is read once from ``$BACKMARKET_OPENAPI`` (a path, relative ones from the repository
root), by default ``../shared/reference/backmarket-openapi.yml`` beside the repository.
Schemas are validated with ``OAS30Validator`` (``nullable``, formats such as ``uuid``), every
``$ref`` resolved against the whole spec document.

Besides each operation's own responses, the spec's "Technical requirements" section documents
answers any endpoint may give, and they are accepted for every operation:
- 403 from the WAF (an HTML page) or from bot management (a JSON ``errors`` list, the
  ``ErrorResponseV2`` shape with code ``bot-need-challenge``);
- 429 when rate limited, and 5xx: checked against the operation's schema when it documents
  one (``RateLimited``), accepted as they come otherwise.
Any other status an operation does not document fails the check.

``nullable: true`` is read as the spec's authors use it: null is accepted wherever a schema
says so, also beside ``enum`` (the nullable ``Shipper``) or ``anyOf`` (the nullable shipping
price), as OpenAPI 3.0.0-3.0.2 tools did. OpenAPI 3.0.3 narrowed ``nullable`` to schemas with
a ``type``, which would leave the spec's "nullable" shipper and shipping price unable to be
null, the only way the single-listing update has to remove a shipping option.

Where Back Market's real answers differ from the spec (``reference/BACKMARKET.md``, "Observed
in production integrations"), the real shape is the contract: a listing's ``max_price`` is
a number or a string.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry
from referencing.jsonschema import DRAFT4

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = "../shared/reference/backmarket-openapi.yml"
SPEC_URI = "urn:backmarket-openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def spec_path() -> Path:
    path = Path(os.environ.get("BACKMARKET_OPENAPI") or DEFAULT_SPEC)
    return path if path.is_absolute() else (ROOT / path).resolve()


@functools.cache
def spec() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    path = spec_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"Back Market's OpenAPI spec is not at {path}: the contract tests need it; put the "
            "repository beside shared/reference/ or set BACKMARKET_OPENAPI to its path")
    with path.open(encoding="utf-8") as stream:
        document: dict[str, Any] = yaml.load(stream, Loader=loader)
    _honour_nullable(document)
    _observed_in_production(document)
    return document


def _observed_in_production(node: Any) -> None:
    """Where the real API differs from the spec (``reference/BACKMARKET.md``, "Observed in
    production integrations"), the real shape is the contract: a listing's ``max_price`` is
    a number (199, 199.9), not the string the spec names."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict) and properties.get("max_price", {}).get("type") \
                == "string" and "listing_id" in properties:
            described = properties["max_price"].get("description", "")
            properties["max_price"] = {"description": described,
                                       "anyOf": [{"type": "string"}, {"type": "number"}]}
        for value in node.values():
            _observed_in_production(value)
    elif isinstance(node, list):
        for item in node:
            _observed_in_production(item)


def _honour_nullable(node: Any) -> None:
    """Let null through schemas marked nullable whose enum or anyOf would refuse it."""
    if isinstance(node, dict):
        if node.get("nullable") is True:
            if isinstance(node.get("enum"), list) and None not in node["enum"]:
                node["enum"] = [*node["enum"], None]
            for keyword in ("anyOf", "oneOf"):
                if isinstance(node.get(keyword), list) and "type" not in node:
                    node[keyword] = [*node[keyword],
                                     {"type": "string", "nullable": True, "enum": [None]}]
        for value in node.values():
            _honour_nullable(value)
    elif isinstance(node, list):
        for item in node:
            _honour_nullable(item)


@functools.cache
def _registry() -> Registry[Any]:
    # OpenAPI 3.0 schemas are JSON Schema draft 4 with extensions: $ref siblings are ignored.
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, DRAFT4.create_resource(spec()))
    return registry


@functools.cache
def _validator(pointer: str) -> OAS30Validator:
    return OAS30Validator(
        {"$ref": f"{SPEC_URI}#{pointer}"},
        registry=_registry(),
        format_checker=oas30_format_checker,
    )


@functools.cache
def _templates() -> list[tuple[str, re.Pattern[str]]]:
    """Path templates, literal ones first (/ws/listings/detail before /ws/listings/{id})."""
    templates = sorted(spec()["paths"], key=lambda t: (t.count("{"), -len(t)))
    return [
        (t, re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(t)))) for t in templates
    ]


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def _pointer(*segments: str) -> str:
    return "".join("/" + _escape(s) for s in segments)


def _resolve(node: dict[str, Any], pointer: str) -> tuple[dict[str, Any], str]:
    """Follow local ``$ref``s of a response or request body object; returns it and its pointer."""
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise AssertionError(f"unsupported $ref {ref!r} at {pointer}")
        pointer = ref[1:]
        node = spec()
        for segment in ref[2:].split("/"):
            node = node[segment.replace("~1", "/").replace("~0", "~")]
    return node, pointer


def _problems(pointer: str, instance: object) -> list[str]:
    errors = sorted(_validator(pointer).iter_errors(instance), key=lambda e: list(e.path))
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in errors
    ]


def _assert_valid(pointer: str, instance: object, what: str) -> None:
    problems = _problems(pointer, instance)
    if problems:
        shown = "\n  - ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise AssertionError(f"{what} does not match the spec:\n  - {shown}{more}")


def operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The path template a concrete path (query allowed) matches, and its operation object."""
    concrete = urlsplit(path).path
    concrete = concrete.rstrip("/") or "/"
    verb = method.lower()
    matched = []
    for template, pattern in _templates():
        if pattern.fullmatch(concrete):
            matched.append(template)
            item = spec()["paths"][template]
            if verb in item:
                return template, item[verb]
    if matched:
        raise AssertionError(f"{method.upper()} {concrete}: {matched[0]} has no {method} operation")
    raise AssertionError(f"{method.upper()} {concrete}: no such path in the spec")


def check_request(method: str, path: str, body: object | None) -> None:
    """The JSON body of a request against the operation's requestBody schema."""
    template, op = operation(method, path)
    where = f"{method.upper()} {template}"
    verb = method.lower()
    if "requestBody" not in op:
        if body is not None:
            raise AssertionError(f"{where} takes no request body, got {body!r:.200}")
        return
    request_body, pointer = _resolve(
        op["requestBody"], _pointer("paths", template, verb, "requestBody")
    )
    if body is None:
        if request_body.get("required"):
            raise AssertionError(f"{where} requires a request body")
        return
    content = request_body.get("content", {})
    if "multipart/form-data" in content and isinstance(body, str):
        # A form upload (the invoice), logged as text: each part must be a named property.
        schema = content["multipart/form-data"].get("schema", {})
        names = re.findall(r'(?im)^content-disposition:\s*form-data;\s*name="([^"]*)"', body)
        unknown = sorted(set(names) - set(schema.get("properties", {})))
        if not names or unknown:
            raise AssertionError(f"{where}: form parts {names} do not match the spec's "
                                 f"{sorted(schema.get('properties', {}))}")
        return
    if "application/json" not in content:
        raise AssertionError(f"{where} does not take a JSON request body")
    schema = pointer + _pointer("content", "application/json", "schema")
    _assert_valid(schema, body, f"request body of {where}")


def _is_json(body: object, content_type: str | None) -> bool:
    if content_type is not None:
        return "json" in content_type.lower()
    return not (isinstance(body, str) and body.lstrip().startswith("<"))


def _global_403(body: object, is_json: bool) -> bool:
    """A 403 the spec documents for every endpoint: WAF page or bot-management challenge."""
    if not is_json:
        return isinstance(body, str)  # the WAF's HTML page
    if _problems(_pointer("components", "schemas", "ErrorResponseV2"), body):
        return False
    assert isinstance(body, dict)
    return any(error.get("code") == "bot-need-challenge" for error in body["errors"])


def check_response(
    method: str, path: str, status: int, body: object, *, content_type: str | None = None
) -> None:
    """A response body against the schema of that status (``content_type`` when known)."""
    template, op = operation(method, path)
    where = f"{method.upper()} {template} -> {status}"
    responses: dict[str, Any] = op.get("responses", {})
    key = next(
        (k for k in (str(status), f"{status // 100}XX", "default") if k in responses), None
    )
    is_json = _is_json(body, content_type)
    if status == 403 and _global_403(body, is_json):
        return
    if key is None:
        if status == 429 or 500 <= status < 600:
            return
        raise AssertionError(
            f"{where}: status not documented for this operation"
            f" (documented: {', '.join(responses)}); body {body!r:.300}"
        )
    verb = method.lower()
    response, pointer = _resolve(
        responses[key], _pointer("paths", template, verb, "responses", key)
    )
    content = response.get("content")
    if not content:
        return  # documented without a body schema
    if "application/json" not in content:
        raise AssertionError(f"{where}: the spec documents {', '.join(content)}, not JSON")
    if not is_json:
        raise AssertionError(f"{where}: expected a JSON body, got {content_type}: {body!r:.300}")
    if "schema" not in content["application/json"]:
        return
    schema = pointer + _pointer("content", "application/json", "schema")
    _assert_valid(schema, body, f"response {where}")


def check_exchange(exchange: Any) -> None:
    """An ``Exchange`` logged by the emulator: its request, and its response when one was sent.
    A request field the endpoint ignored (one the spec's request body lacks, which the
    schemas let through: they do not forbid other properties) fails the check too."""
    check_request(exchange.method, exchange.path, exchange.request)
    if getattr(exchange, "ignored", ()):
        raise AssertionError(
            f"{exchange.method} {exchange.path}: the request sent field(s) the spec's request"
            f" body lacks, ignored by the endpoint: {', '.join(exchange.ignored)}")
    if exchange.status is not None:
        content_type = exchange.response_headers.get("Content-Type")
        check_response(
            exchange.method, exchange.path, exchange.status, exchange.response,
            content_type=content_type,
        )
