"""Lambda Cloud's published OpenAPI 1.8.3 document, as JSON Schema validators.

The loopback server and the spec tests both check bodies against the spec's
own component schemas, so a field the spec does not name cannot creep into a
fixture or a response unnoticed. The repo keeps its own copy of the spec so a
clean clone can run these tests where the shared specs folder is absent.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_NAME = "lambda-cloud-openapi-1.8.3.json"
REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO_ROOT / "tests" / "data" / SPEC_NAME
# Where the project keeps the authoritative copy, beside the repo.
SHARED_SPEC_PATH = REPO_ROOT.parent / "shared" / "specs" / SPEC_NAME
FIXTURES = REPO_ROOT / "tests" / "data" / "lambda"
SPEC_URI = "urn:lambda-cloud-openapi-1.8.3"

_FORMATS = FormatChecker()


@_FORMATS.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    # jsonschema ignores date-time unless an optional package is present;
    # checking it here keeps fixtures honest without that extra dependency.
    if not isinstance(value, str):
        return True
    # Python 3.10's fromisoformat takes neither "Z" nor more than 6 fraction digits.
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    parsed = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text))
    return parsed.tzinfo is not None


@lru_cache(maxsize=1)
def load_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return spec


@lru_cache(maxsize=1)
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(
        load_spec(), default_specification=DRAFT202012
    )
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return registry


def _pointer_escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def validator(pointer: str) -> Draft202012Validator:
    """A validator for the spec node at a JSON pointer such as
    ``/components/schemas/Image``; its ``$ref``s resolve inside the spec."""
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}#{pointer}"},
        registry=_registry(),
        format_checker=_FORMATS,
    )


def schema_validator(name: str) -> Draft202012Validator:
    return validator(f"/components/schemas/{name}")


def response_validator(path: str, method: str, status: int) -> Draft202012Validator:
    """The validator for one documented response; KeyError if the spec does
    not document that status for that operation."""
    spec = load_spec()
    responses = spec["paths"][path][method.lower()]["responses"]
    if str(status) not in responses:
        raise KeyError(f"{method.upper()} {path} documents no {status} response")
    pointer = "/".join(
        [
            "/paths",
            _pointer_escape(path),
            method.lower(),
            "responses",
            str(status),
            "content",
            "application~1json",
            "schema",
        ]
    )
    return validator(pointer)


def request_validator(path: str, method: str) -> Draft202012Validator:
    pointer = "/".join(
        [
            "/paths",
            _pointer_escape(path),
            method.lower(),
            "requestBody",
            "content",
            "application~1json",
            "schema",
        ]
    )
    return validator(pointer)


def documented_statuses(path: str, method: str) -> list[int]:
    responses = load_spec()["paths"][path][method.lower()]["responses"]
    return sorted(int(status) for status in responses)


def image_properties() -> frozenset[str]:
    return frozenset(load_spec()["components"]["schemas"]["Image"]["properties"])


def error_schemas() -> dict[str, str]:
    """Each ApiError* schema name mapped to the ``code`` constant it defines
    (several schemas share ``global/object-does-not-exist``)."""
    schemas: dict[str, str] = {}
    for name, schema in load_spec()["components"]["schemas"].items():
        code = schema.get("properties", {}).get("code", {})
        if name.startswith("ApiError") and "const" in code:
            schemas[name] = code["const"]
    return schemas


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))
