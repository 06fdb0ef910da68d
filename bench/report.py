"""Reporting for every benchmark in bench/: percentiles, text tables and one JSON envelope.

Every result file a benchmark writes has the same envelope around its own content::

    {"benchmark": "<name>", "git": "<short commit>[+dirty]", "finished_at": "<local time with offset>",
     "machine": {"cpu_model", "cpus", "mem_gib", "platform", "python", ...facts the benchmark adds},
     "load": {"at_start": [1, 5, 15 min load average], "at_end": [...]},
     ...the benchmark's own keys}

``load.at_start`` is the load average when this module was first imported (the benchmark's start).
Pure standard library, so that any benchmark (including the GPU-only timing mode) can import it.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "bench" / "out"
ENVELOPE_KEYS = ("benchmark", "git", "finished_at", "machine", "load")


# -- statistics ------------------------------------------------------------------------------------

def percentile(values, q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence; None when empty."""
    xs = sorted(values)
    if not xs:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in 0..100, not {q}")
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def median(values) -> float | None:
    return percentile(values, 50)


def latency_summary(seconds) -> dict:
    """n, p50/p95/p99, max and mean in milliseconds of durations given in seconds."""
    ms = [s * 1000.0 for s in seconds]
    return {"n": len(ms), "p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95),
            "p99_ms": percentile(ms, 99), "max_ms": max(ms) if ms else None,
            "mean_ms": (sum(ms) / len(ms)) if ms else None}


def spread(values) -> dict:
    """min, max and (max - min) / min in percent of repeated runs' figures (None entries skipped)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"min": None, "max": None, "spread_pct": None}
    lo, hi = min(vals), max(vals)
    return {"min": lo, "max": hi, "spread_pct": (100.0 * (hi - lo) / lo) if lo else None}


# -- tables ----------------------------------------------------------------------------------------

def fmt(value, digits: int = 1) -> str:
    """A number for a table: thousands separators, ``digits`` decimals for floats, "-" for None."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(headers: list[str], rows: list[list], title: str | None = None, align: str | None = None) -> str:
    """A plain-text table; non-strings go through fmt(). ``align`` has one letter per column, "l" or "r"
    (default: the first column left, the others right); headers are always left-aligned."""
    align = align or "l" + "r" * (len(headers) - 1)
    if len(align) != len(headers) or set(align) - {"l", "r"}:
        raise ValueError(f"align needs one of l/r per column, not {align!r}")
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [f"\n{title}"] if title else []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if n and a == "r" else c.ljust(w)
                               for c, w, a in zip(row, widths, align)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_table(headers: list[str], rows: list[list], title: str | None = None, align: str | None = None) -> None:
    print(format_table(headers, rows, title, align))


# -- the envelope: commit, machine, load -----------------------------------------------------------

def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


START_LOAD = loadavg()


def machine_info() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if not model:
        model = platform.processor()
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"cpu_model": model, "cpus": cpus, "mem_gib": mem_gib, "platform": platform.platform(),
            "python": platform.python_version()}


def git_revision() -> str:
    """Short commit of the checkout, "+dirty" when tracked files differ; BENCH_GIT_REV overrides it
    (e.g. when run from an exported snapshot of a commit, which has no .git)."""
    if os.environ.get("BENCH_GIT_REV"):
        return os.environ["BENCH_GIT_REV"]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if rev and dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def envelope(benchmark: str, *, machine: dict | None = None) -> dict:
    """The fields every result file starts with; ``machine`` adds benchmark-specific facts
    (threads, devices, library versions) to the machine description."""
    return {"benchmark": benchmark, "git": git_revision(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {**machine_info(), **(machine or {})},
            "load": {"at_start": START_LOAD, "at_end": loadavg()}}


def _jsonable(value):
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return str(value)


def to_json(doc: dict) -> str:
    return json.dumps(doc, indent=2, default=_jsonable) + "\n"


def write_report(benchmark: str, payload: dict, *, path: str | Path | None = None,
                 machine: dict | None = None) -> Path:
    """Write ``payload`` inside the envelope; to ``path``, or to bench/out/<benchmark>-<timestamp>.json."""
    clash = sorted(set(payload) & set(ENVELOPE_KEYS))
    if clash:
        raise ValueError(f"the payload of {benchmark} must not set the envelope's keys {clash}")
    doc = {**envelope(benchmark, machine=machine), **payload}
    if path is None:
        path = OUT_DIR / f"{benchmark}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(doc))
    return path
