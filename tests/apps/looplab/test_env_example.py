"""deploy/env.example lists every environment variable the app reads, and nothing else.

The variables read are found in the source, not at run time (settings read some only in production or with
S3 storage): the first argument of every ``env("NAME", ...)`` call of apps.looplab.env, and every direct read
(``os.environ.get``/``os.environ[...]``/``os.getenv``) in apps/. The example may also hold the variables
deploy/compose.yaml interpolates (``${NAME}``), since compose reads the same .env file.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "deploy" / "env.example"
COMPOSE = REPO / "deploy" / "compose.yaml"
# Django's pointer to the settings module, set by manage.py, wsgi.py and celery.py: not a setting.
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE"}


def _literal(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_os_environ(node) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name) \
        and node.value.id == "os"


def names_read(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if isinstance(func, ast.Name) and func.id == "env":
                name = _literal(node.args[0])
            elif isinstance(func, ast.Attribute) and func.attr == "get" and _is_os_environ(func.value):
                name = _literal(node.args[0])
            elif isinstance(func, ast.Attribute) and func.attr == "getenv" and isinstance(func.value, ast.Name) \
                    and func.value.id == "os":
                name = _literal(node.args[0])
        elif isinstance(node, ast.Subscript) and _is_os_environ(node.value) and isinstance(node.ctx, ast.Load):
            name = _literal(node.slice)
        if name:
            names.add(name)
    return names


def app_variables() -> set[str]:
    found = set()
    for path in (REPO / "apps").rglob("*.py"):
        if "migrations" in path.parts or "tests" in path.parts:
            continue
        found |= names_read(ast.parse(path.read_text(), filename=str(path)))
    return found - NOT_SETTINGS


def example_variables() -> set[str]:
    pattern = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=")
    return {m.group(1) for line in EXAMPLE.read_text().splitlines() if (m := pattern.match(line.strip()))}


def compose_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text())) if COMPOSE.exists() else set()


def test_the_scan_finds_the_settings_reads():
    read = app_variables()
    assert {"LOOPLAB_ENV", "SECRET_KEY", "DATABASE_URL", "S3_BUCKET", "LOOPLAB_MAX_BATCH"} <= read
    tree = ast.parse('import os\nA = env("X_ONE", 1, cast=int)\nB = os.environ.get("X_TWO")\n'
                     'C = os.environ["X_THREE"]\nD = os.getenv("X_FOUR")\nos.environ["X_FIVE"] = "1"\n')
    assert names_read(tree) == {"X_ONE", "X_TWO", "X_THREE", "X_FOUR"}


def test_env_example_lists_every_variable_read_and_no_other():
    read, listed = app_variables(), example_variables()
    missing = sorted(read - listed)
    unknown = sorted(listed - read - compose_variables())
    assert not missing and not unknown, (
        f"read by apps/ but not in deploy/env.example: {missing}; "
        f"in deploy/env.example but read by neither apps/ nor deploy/compose.yaml: {unknown}")
