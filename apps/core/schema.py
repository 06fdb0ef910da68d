"""The error shape in the OpenAPI schema, described once (a drf-spectacular postprocessing hook).

Adds two components: ``ErrorCode`` (a string enum of every :class:`apps.core.errors.ErrorCode` value, its
description a table of code and meaning) and ``Error`` (``{"error": {"code", "message", "details"}}``). Every
operation gets a ``4XX`` response with the ``Error`` body, and the 4xx responses an operation declares itself
(e.g. ``409: last_admin``) get that body too; nothing else in the schema changes.
"""
from __future__ import annotations

from apps.core.errors import ErrorCode

ERROR_COMPONENT = "Error"
CODE_COMPONENT = "ErrorCode"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def error_code_schema() -> dict:
    rows = "\n".join(f"| `{code.value}` | {code.description} |" for code in ErrorCode)
    return {
        "type": "string",
        "enum": [code.value for code in ErrorCode],
        "description": "Why the request was refused: a stable, machine-readable code. The HTTP status gives the "
                       "class of the problem; the same code can come with more than one status.\n\n"
                       "| code | meaning |\n|---|---|\n" + rows,
    }


def error_schema() -> dict:
    return {
        "type": "object",
        "description": "The body of every error answer (4xx, and 5xx where the server answers at all).",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"$ref": f"#/components/schemas/{CODE_COMPONENT}"},
                    "message": {"type": "string", "description": "What went wrong, for a person."},
                    "details": {"type": "object", "additionalProperties": {},
                                "description": "More about it, by code (e.g. the field or path that failed)."},
                },
                "required": ["code", "message", "details"],
            },
        },
        "required": ["error"],
    }


def _error_content() -> dict:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}}}


def add_error_responses(result, generator, request, public):
    """POSTPROCESSING_HOOKS entry (after drf-spectacular's own enum hook)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name in (ERROR_COMPONENT, CODE_COMPONENT):
        if name in schemas:
            raise ValueError(f"the schema already has a component named {name}")
    schemas[CODE_COMPONENT] = error_code_schema()
    schemas[ERROR_COMPONENT] = error_schema()
    result["components"]["schemas"] = dict(sorted(schemas.items()))  # in name order, as drf-spectacular's
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if str(status).startswith("4") and "content" not in response:
                    response["content"] = _error_content()
            responses.setdefault("4XX", {
                "content": _error_content(),
                "description": "Refused; the body's error.code says why (see the ErrorCode table).",
            })
    return result
