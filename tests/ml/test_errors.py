import json

import pytest

from ml import errors


@pytest.mark.parametrize(
    "cls, code, parent",
    [
        (errors.MLError, "ml_error", Exception),
        (errors.InvalidInput, "invalid_input", errors.MLError),
        (errors.UnsupportedFormat, "unsupported_format", errors.InvalidInput),
        (errors.CorruptData, "corrupt_data", errors.InvalidInput),
        (errors.TooLarge, "too_large", errors.InvalidInput),
        (errors.EmptyData, "empty_data", errors.InvalidInput),
        (errors.MissingDependency, "missing_dependency", errors.MLError),
    ],
)
def test_codes_and_hierarchy(cls, code, parent):
    assert cls.code == code
    assert issubclass(cls, parent)
    e = cls("something went wrong", details={"k": 1})
    assert e.code == code
    assert e.message == "something went wrong"
    assert str(e) == "something went wrong"
    assert e.details == {"k": 1}
    json.dumps(e.to_dict())


def test_code_override_is_per_instance():
    e = errors.InvalidInput("needs a model", code="model_required")
    assert e.code == "model_required"
    assert errors.InvalidInput.code == "invalid_input"
    assert errors.InvalidInput("x").code == "invalid_input"


def test_details_default_and_copy():
    d = {"a": 1}
    e = errors.MLError("m", details=d)
    d["a"] = 2
    assert e.details == {"a": 1}
    assert errors.MLError("m").details == {}
    with pytest.raises(errors.InvalidInput):
        raise errors.TooLarge("big")


def test_require_imports_or_says_how_to_install(monkeypatch):
    import sys

    assert errors.require("json", "json is needed", install="nothing") is json
    monkeypatch.setitem(sys.modules, "not_installed_pkg", None)
    with pytest.raises(errors.MissingDependency) as exc:
        errors.require("not_installed_pkg.sub", "needs it", install="pip install x", package="x-dist")
    assert exc.value.code == "missing_dependency" and exc.value.message == "needs it"
    assert exc.value.details["package"] == "x-dist" and exc.value.details["install"] == "pip install x"
    assert exc.value.details["reason"]
