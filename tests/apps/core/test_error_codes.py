"""Error codes are one enumeration (apps.core.errors.ErrorCode), described in the OpenAPI schema, with no dead
members; statuses are fixed by the error class and ml's errors map to HTTP by type.

"Every code the app can raise" is found by reading the source of apps/ and ml/ (ml keeps string codes: it cannot
import apps), not by importing it:
- a call's ``code=`` argument (``ValidationFailed(..., code="x")``, ``InvalidInput(..., code="x")``,
  DRF's ``AuthenticationFailed(..., code="token_expired")``, helpers such as ``_fail(..., code=...)``);
- the default of a parameter named ``code``;
- a class-level ``code = ...`` (the default code of an error class);
- a ``{"code": ...}`` entry of a dict literal (per-item codes inside ``details``);
- the first argument of ``error_body(...)`` (the handler's own answers);
plus the handler's table of DRF exceptions. A code is a string literal or an ``ErrorCode.X`` member; any other
expression passed as ``code=`` must be listed in PASSED_THROUGH with the reason it needs no check of its own.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from apps.core.errors import BadRequest, Conflict, DomainError, ErrorCode, NotApplicable, ValidationFailed

ROOT = Path(__file__).resolve().parents[3]

# code= arguments that are not a literal or a member, and why each is covered anyway.
PASSED_THROUGH = {
    ("apps/labeling/results.py", "code"): "_fail passes on its parameter; its default and its callers' code= "
                                          "arguments are collected",
    ("apps/samples/peaks_api.py", "code"): "_int_param passes on its keyword-only parameter; its callers' code= "
                                           "arguments are collected",
    ("apps/samples/peaks.py", "ErrorCode(exc.code)"): "an ml error's own code, passed on (ml's codes are collected "
                                                      "from ml/)",
}


@dataclass
class Found:
    codes: dict[str, list[str]] = field(default_factory=dict)  # code -> where ("path:line")
    members: dict[str, list[str]] = field(default_factory=dict)  # ErrorCode member name -> where it is referenced
    dynamic: list[tuple[str, str, int]] = field(default_factory=list)  # (path, expression, line) of other code=


def _collect(source: str, path: str, found: Found) -> None:
    tree = ast.parse(source)

    def add_code(node, *, dynamic_ok: bool = False) -> None:
        where = f"{path}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.codes.setdefault(node.value, []).append(where)
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "ErrorCode"):
            pass  # counted below with every member reference
        elif not dynamic_ok:
            found.dynamic.append((path, ast.unparse(node), node.lineno))

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ErrorCode":
            found.members.setdefault(node.attr, []).append(f"{path}:{node.lineno}")
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "code":
                    add_code(kw.value)
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name == "error_body" and node.args:
                add_code(node.args[0], dynamic_ok=True)  # the handler writes a handled error's own code
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            positional = args.posonlyargs + args.args
            defaults = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            defaults += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            for arg, default in defaults:
                if arg.arg == "code":
                    add_code(default, dynamic_ok=True)
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                target = (stmt.targets if isinstance(stmt, ast.Assign) else
                          [stmt.target] if isinstance(stmt, ast.AnnAssign) and stmt.value is not None else [])
                if [getattr(t, "id", None) for t in target] == ["code"]:
                    add_code(stmt.value, dynamic_ok=True)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "code":
                    add_code(value, dynamic_ok=True)  # e.g. {"code": exc.code}: an error's own code, passed on


def _source_files():
    for top in ("apps", "ml"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


@pytest.fixture(scope="module")
def found() -> Found:
    found = Found()
    for path in _source_files():
        _collect(path.read_text(), path.relative_to(ROOT).as_posix(), found)
    return found


def _handler_codes() -> set[str]:
    from apps.core.exceptions import DRF_CODES, DRF_FALLBACK_CODE

    return {*DRF_CODES.values(), DRF_FALLBACK_CODE}


def _unknown(found: Found) -> list[str]:
    values = {member.value for member in ErrorCode}
    unknown = [f"{code!r} at {', '.join(where)}" for code, where in found.codes.items() if code not in values]
    unknown += [f"ErrorCode.{name} at {', '.join(where)}" for name, where in found.members.items()
                if name not in ErrorCode.__members__]
    return unknown


def test_every_code_raised_is_an_error_code(found):
    assert len(found.codes) + len(found.members) > 80, "the source walk found too little; is ROOT right?"
    assert not _unknown(found), "codes raised but not in apps.core.errors.ErrorCode: " + "; ".join(_unknown(found))
    assert _handler_codes() <= set(ErrorCode)


def test_codes_not_literal_or_member_are_known_pass_throughs(found):
    dynamic = {(path, expr) for path, expr, _ in found.dynamic}
    unexplained = [f"{path}:{line} code={expr}" for path, expr, line in found.dynamic
                   if (path, expr) not in PASSED_THROUGH]
    assert not unexplained, ("a code= argument that is neither a string nor an ErrorCode member: use a member, or "
                             "list it in PASSED_THROUGH with the reason: " + "; ".join(unexplained))
    assert set(PASSED_THROUGH) <= dynamic, f"stale PASSED_THROUGH entries: {set(PASSED_THROUGH) - dynamic}"


def test_no_dead_codes(found):
    used = set(found.codes) | {ErrorCode[name].value for name in found.members if name in ErrorCode.__members__}
    used |= _handler_codes()
    dead = [member.name for member in ErrorCode if member.value not in used]
    assert not dead, f"ErrorCode members that nothing raises (remove them, or raise them): {dead}"


def test_a_made_up_code_is_caught():
    """The walk itself: a code that is not a member is reported, whichever way it is written."""
    found = Found()
    _collect('raise ValidationFailed("x", code="made_up_code")\n'
             'raise InvalidInput("y", code=ErrorCode.MADE_UP_MEMBER)\n'
             'class Odd(Conflict):\n    code = "odd_code"\n'
             'def f(code="default_code"): pass\n'
             'errors.append({"code": "item_code"})\n'
             'error_body("body_code", "m")\n'
             'raise ValidationFailed("z", code=f"invalid_{name}")\n', "made_up.py", found)
    unknown = " ".join(_unknown(found))
    for code in ("made_up_code", "MADE_UP_MEMBER", "odd_code", "default_code", "item_code", "body_code"):
        assert code in unknown
    assert [expr for _, expr, _ in found.dynamic] == ["f'invalid_{name}'"]
    with pytest.raises(ValueError):
        ValidationFailed("x", code="made_up_code")
    with pytest.raises(ValueError):
        type("Odd", (Conflict,), {"code": "odd_code"})


def test_error_code_members_equal_their_strings():
    assert ErrorCode.NOT_FOUND == "not_found" and ErrorCode("not_found") is ErrorCode.NOT_FOUND
    assert f"{ErrorCode.TOO_LARGE}" == "too_large"
    assert all(member.description and "\n" not in member.description for member in ErrorCode)
    assert len({member.value for member in ErrorCode}) == len(ErrorCode)


def test_status_is_fixed_by_the_class():
    assert BadRequest.status_code == 400 and BadRequest("m").code == "bad_request"
    assert ValidationFailed.status_code == 422
    assert NotApplicable.status_code == Conflict.status_code == 409
    with pytest.raises(TypeError):
        DomainError("m", code=ErrorCode.CONFLICT, status_code=409)


@pytest.mark.parametrize("error, status", [
    ("TooLarge", 413), ("MissingDependency", 501), ("InvalidInput", 422), ("CorruptData", 422),
    ("EmptyData", 422), ("UnsupportedFormat", 422), ("MLError", 422)])
def test_ml_errors_map_to_http_by_type(error, status):
    import ml.errors
    from apps.core.exceptions import exception_handler

    exc = getattr(ml.errors, error)("refused", code="model_required")  # the code plays no part in the status
    response = exception_handler(exc, {})
    assert response.status_code == status
    assert response.data["error"]["code"] == "model_required"


@pytest.fixture(scope="module")
def schema():
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def test_every_error_code_is_in_the_schemas_error_component(schema, found):
    components = schema["components"]["schemas"]
    assert components["Error"]["properties"]["error"]["properties"]["code"] == {
        "$ref": "#/components/schemas/ErrorCode"}
    code = components["ErrorCode"]
    raised = set(found.codes) | {ErrorCode[name].value for name in found.members if name in ErrorCode.__members__}
    raised |= _handler_codes()
    assert raised <= set(code["enum"]), f"raised but not in the schema: {raised - set(code['enum'])}"
    assert code["enum"] == [member.value for member in ErrorCode]
    for member in ErrorCode:
        assert f"| `{member.value}` | {member.description} |" in code["description"]


def test_every_operation_answers_errors_in_the_error_shape(schema):
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    operations = [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]
    assert len(operations) >= 30
    for path, method, op in operations:
        fours = {status: response for status, response in op["responses"].items() if str(status).startswith("4")}
        assert "4XX" in fours, (method, path)
        for status, response in fours.items():
            assert response["content"] == ref, (method, path, status)
