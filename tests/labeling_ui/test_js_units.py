"""The front end under Node: the pure modules' unit tests (labeling_ui/tests/*.test.mjs, Node's own test runner)
and ESLint over every module (labeling_ui/eslint.config.js; eslint from package.json's devDependencies)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UI = Path(__file__).resolve().parents[2] / "labeling_ui"


def test_node_unit_tests_pass():
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("no Node.js (apt-get install nodejs)")
    files = sorted(str(p) for p in (UI / "tests").glob("*.test.mjs"))
    assert files, "no JS unit tests found"
    done = subprocess.run([node, "--test", *files], cwd=UI, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout and "# pass 0" not in done.stdout, done.stdout[-2000:]


def test_eslint_reports_no_problems():
    """ESLint (labeling_ui/eslint.config.js: recommended rules, browser globals) over every module and test."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("no Node.js (apt-get install nodejs)")
    eslint = UI / "node_modules" / "eslint" / "bin" / "eslint.js"
    assert eslint.exists(), "ESLint is not installed: run `make npm` (npm ci in labeling_ui)"
    done = subprocess.run([node, str(eslint), "--max-warnings", "0", "."], cwd=UI, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
