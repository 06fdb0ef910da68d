"""The import rules import-linter cannot express (issue #12): no module of ``apps/`` imports a module of
``apps`` inside a function, except the two deliberate places below. The layer order itself is the
``app-layers`` contract in pyproject.toml (``lint-imports``, run by ``make test``)."""
from __future__ import annotations

import ast
from pathlib import Path

APPS = Path(__file__).resolve().parents[3] / "apps"

# A Celery task module imports its own app's services inside the task (the services, and service modules such as
# labeling/quality.py or monitoring/drift.py, enqueue the tasks at module level, so the other direction would be a
# cycle); AppConfig.ready() is Django's hook for registering extensions.
ALLOWED = "tasks.py -> its own app's service modules; apps.py ready() -> its own app"


def _function_local_app_imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    yield node.lineno, func.name, "." * node.level + (node.module or "")
                elif node.module and node.module.split(".")[0] == "apps":
                    yield node.lineno, func.name, node.module
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "apps":
                        yield node.lineno, func.name, alias.name


def _allowed(path: Path, func: str, module: str) -> bool:
    app = path.relative_to(APPS).parts[0]
    if path.name == "tasks.py":
        return module.startswith(f"apps.{app}.")
    if path.name == "apps.py" and func == "ready":
        return module == f"apps.{app}" or module.startswith(f"apps.{app}.")
    return False


def test_only_tasks_import_their_services_inside_a_function():
    found = []
    for path in sorted(APPS.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for line, func, module in _function_local_app_imports(path):
            if not _allowed(path, func, module):
                found.append(f"{path.relative_to(APPS.parent)}:{line} {func}() imports {module}")
    assert not found, f"imports inside functions ({ALLOWED} only):\n" + "\n".join(found)


def test_the_rule_sees_a_function_local_import(tmp_path):
    """The scanner is not blind: a lazy import in a services module is found, one in tasks.py of its services is not."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from apps.serving.selectors import current_deployment\n")
    assert [m for _, _, m in _function_local_app_imports(bad)] == ["apps.serving.selectors"]
    assert _allowed(APPS / "training" / "tasks.py", "run", "apps.training.services")
    assert _allowed(APPS / "monitoring" / "tasks.py", "run", "apps.monitoring.drift")
    assert not _allowed(APPS / "training" / "tasks.py", "run", "apps.serving.services")
    assert not _allowed(APPS / "training" / "services.py", "run", "apps.training.tasks")
