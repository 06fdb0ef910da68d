"""The regression gate's paired comparison of two evaluations of the same samples, for any task type.

:func:`compare_reports` takes the deployed model's report (``old``) and the candidate's (``new``), both
:class:`ml.learners.base.EvalReport` of the same task type over the same samples in the same order, and tests the
per-sample scores (``EvalReport.per_sample``) pairwise:

- **McNemar** (:func:`ml.evaluation.mcnemar`: exact binomial below 25 discordant pairs, else chi-square with
  continuity correction) when every per-sample score of both reports is 0 or 1 (classification: correct or not);
- otherwise a **sign-flip permutation test** on the differences ``d = new - old`` (two-sided, on the mean; exact
  over all 2^m sign patterns when at most 16 differences are non-zero, else ``n_resamples`` random flips, with
  the +1 correction), and the **paired bootstrap** confidence interval of ``mean(d)`` (percentile, level
  ``1 - alpha``) in every case.

The same test runs on each group of samples the caller names: ``slices`` (name → boolean mask, as in
:class:`ml.learners.base.Dataset`) and ``classes`` (label → mask of the samples of that class, e.g.
:func:`ml.metrics.classification.class_masks`); an ``EvalReport`` holds figures per slice and class but not
which samples they cover. Per-class and per-slice *figures* present in both reports are compared as deltas
whatever the masks.

The verdict (``regressed``), the rule:

- overall (the same rule as the built-in classifiers' gate, :func:`ml.evaluation.compare_models`): the primary
  metric fell by more than ``tolerance``, or the paired test is significant (``p < alpha``) in the worse
  direction (``mean(d) < 0``). A drop beyond the tolerance blocks even when a small test set cannot make it
  significant: the gate deploys a model with evidence that it does not regress, and a lower figure is not that;
- a slice or class: it has at least ``min_samples`` samples, its test is significant in the worse direction
  after a Holm correction over the groups of its kind (slices, classes) that have enough samples (``correction="holm"``; ``None`` for none), and its mean
  per-sample score fell by more than ``tolerance``.

Small groups are reported (with their p-value) but never block; ``reasons`` says in words what did.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ml.errors import InvalidInput
from ml.jsonable import jsonable
from ml.learners.base import EvalReport

__all__ = ["PairedTest", "GroupComparison", "ReportComparison", "compare_reports", "paired_test",
           "sign_flip_test", "paired_bootstrap_ci"]

METHODS = ("auto", "mcnemar", "permutation")
EXACT_MAX_NONZERO = 16


@dataclass(frozen=True)
class PairedTest:
    """One paired test of ``new - old`` per-sample scores: ``method`` ``"mcnemar"`` or ``"permutation"``;
    ``mean_delta`` the mean difference, ``ci`` its bootstrap interval; ``b``/``c`` (McNemar) the samples only the
    old / only the new model got right; ``n_changed`` the samples whose score changed."""

    method: str
    n: int
    mean_delta: float
    p_value: float
    ci_low: float
    ci_high: float
    n_changed: int
    b: int | None = None
    c: int | None = None
    statistic: float | None = None
    exact: bool = False

    def to_dict(self) -> dict:
        return jsonable(self.__dict__)


@dataclass(frozen=True)
class GroupComparison:
    """A slice or class: its figures' deltas (keys present in both reports) and, with a mask, the paired test."""

    name: str
    n: int | None
    deltas: Mapping[str, float]
    old: Mapping[str, Any]
    new: Mapping[str, Any]
    test: PairedTest | None = None
    p_adjusted: float | None = None
    regressed: bool = False

    def to_dict(self) -> dict:
        return jsonable({"name": self.name, "n": self.n, "deltas": dict(self.deltas), "old": dict(self.old),
                         "new": dict(self.new), "test": self.test.to_dict() if self.test else None,
                         "p_adjusted": self.p_adjusted, "regressed": self.regressed})


@dataclass(frozen=True)
class ReportComparison:
    task_type: str
    primary: str
    n: int
    primary_old: float
    primary_new: float
    primary_delta: float
    mean_score_old: float
    mean_score_new: float
    mean_score_delta: float
    test: PairedTest
    metric_deltas: Mapping[str, float]
    per_class: Mapping[str, GroupComparison]
    per_slice: Mapping[str, GroupComparison]
    regressed: bool
    reasons: list[str] = field(default_factory=list)
    alpha: float = 0.05
    tolerance: float = 0.01
    min_samples: int = 10
    correction: str | None = "holm"

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("task_type", "primary", "n", "primary_old", "primary_new",
                                            "primary_delta", "mean_score_old", "mean_score_new", "mean_score_delta",
                                            "regressed", "alpha", "tolerance", "min_samples", "correction")}
        d.update(test=self.test.to_dict(), metric_deltas=dict(self.metric_deltas), reasons=list(self.reasons),
                 per_class={k: v.to_dict() for k, v in self.per_class.items()},
                 per_slice={k: v.to_dict() for k, v in self.per_slice.items()})
        return jsonable(d)


# --------------------------------------------------------------------------- the tests


def paired_bootstrap_ci(d: np.ndarray, *, n_resamples: int, alpha: float, rng: np.random.Generator,
                        chunk: int = 256) -> tuple[float, float]:
    """Percentile bootstrap interval (level ``1 - alpha``) of the mean of paired differences ``d``."""
    d = np.asarray(d, dtype=np.float64)
    n = len(d)
    if n == 0:
        return 0.0, 0.0
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - start)
        means[start:start + k] = d[rng.integers(0, n, size=(k, n))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def sign_flip_test(d: np.ndarray, *, n_resamples: int, rng: np.random.Generator,
                   chunk: int = 256) -> tuple[float, bool]:
    """Two-sided sign-flip permutation test of ``mean(d) == 0`` → ``(p_value, exact)``.

    Under the null the sign of each paired difference is equally likely either way; zeros carry no information.
    Exact over all ``2^m`` patterns of the ``m`` non-zero differences when ``m <= 16``; else Monte Carlo with
    ``(1 + hits) / (1 + n_resamples)``."""
    nz = np.asarray(d, dtype=np.float64)
    nz = nz[nz != 0]
    m = len(nz)
    if m == 0:
        return 1.0, True
    observed = abs(nz.sum())
    eps = 1e-12 * max(1.0, float(np.abs(nz).sum()))
    if m <= EXACT_MAX_NONZERO:
        patterns = ((np.arange(2 ** m)[:, None] >> np.arange(m)) & 1) * 2 - 1
        sums = np.abs(patterns @ nz)
        return float(np.mean(sums >= observed - eps)), True
    hits = 0
    for start in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - start)
        signs = rng.integers(0, 2, size=(k, m)) * 2 - 1
        hits += int(np.sum(np.abs(signs @ nz) >= observed - eps))
    return float((1 + hits) / (1 + n_resamples)), False


def _binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def paired_test(old: np.ndarray, new: np.ndarray, *, method: str = "auto", n_resamples: int = 2000,
                alpha: float = 0.05, rng: np.random.Generator) -> PairedTest:
    """The paired test of the module docstring on two per-sample score vectors of the same samples."""
    from ml.evaluation import mcnemar

    old = np.asarray(old, dtype=np.float64)
    new = np.asarray(new, dtype=np.float64)
    d = new - old
    n = int(len(d))
    ci = paired_bootstrap_ci(d, n_resamples=n_resamples, alpha=alpha, rng=rng)
    mean = float(d.mean()) if n else 0.0
    changed = int(np.sum(d != 0))
    use = method
    if method == "auto":
        use = "mcnemar" if _binary(old) and _binary(new) else "permutation"
    if use == "mcnemar":
        if not (_binary(old) and _binary(new)):
            raise InvalidInput("McNemar's test needs per-sample scores of 0 or 1", code="invalid_input")
        t = mcnemar(new.astype(bool), old.astype(bool))
        return PairedTest(method="mcnemar", n=n, mean_delta=mean, p_value=float(t["p_value"]), ci_low=ci[0],
                          ci_high=ci[1], n_changed=changed, b=int(t["b"]), c=int(t["c"]),
                          statistic=float(t["statistic"]), exact=t["method"] == "exact")
    p, exact = sign_flip_test(d, n_resamples=n_resamples, rng=rng)
    return PairedTest(method="permutation", n=n, mean_delta=mean, p_value=p, ci_low=ci[0], ci_high=ci[1],
                      n_changed=changed, statistic=float(d.sum()), exact=exact)


def _holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (monotone, capped at 1)."""
    order = sorted(p_values, key=lambda k: p_values[k])
    m = len(order)
    out: dict[str, float] = {}
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[k]))
        out[k] = running
    return out


def _numeric(figures: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in figures.items()
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and v is not None}


def _deltas(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, float]:
    a, b = _numeric(old), _numeric(new)
    return {k: b[k] - a[k] for k in a if k in b and k not in ("n", "support")}


def _check_masks(groups: Mapping[str, np.ndarray] | None, n: int, kind: str) -> dict[str, np.ndarray]:
    out = {}
    for name, mask in (groups or {}).items():
        m = np.asarray(mask)
        if m.shape != (n,):
            raise InvalidInput(f"{kind} {name!r} must be a boolean mask of length {n}", code="invalid_input",
                               details={kind: str(name), "shape": list(m.shape), "n": n})
        out[str(name)] = m.astype(bool)
    return out


def compare_reports(old: EvalReport, new: EvalReport, *, slices: Mapping[str, np.ndarray] | None = None,
                    classes: Mapping[str, np.ndarray] | None = None, method: str = "auto",
                    n_resamples: int = 2000, alpha: float = 0.05, tolerance: float = 0.01, min_samples: int = 10,
                    correction: str | None = "holm", random_state: int = 0) -> ReportComparison:
    """Compare the candidate ``new`` with the deployed ``old`` on the same samples (see the module docstring)."""
    if method not in METHODS:
        raise InvalidInput(f"unknown method {method!r}", code="invalid_input", details={"allowed": list(METHODS)})
    if correction not in (None, "holm"):
        raise InvalidInput(f"unknown correction {correction!r}", code="invalid_input")
    if n_resamples < 100 or not (0 < alpha < 1):
        raise InvalidInput("n_resamples must be >= 100 and alpha in (0, 1)", code="invalid_input",
                           details={"n_resamples": n_resamples, "alpha": alpha})
    if old.task_type != new.task_type or old.primary != new.primary:
        raise InvalidInput("reports of different task types or primary metrics", code="invalid_input",
                           details={"old": [old.task_type, old.primary], "new": [new.task_type, new.primary]})
    s_old = np.asarray(old.per_sample, dtype=np.float64)
    s_new = np.asarray(new.per_sample, dtype=np.float64)
    if s_old.shape != s_new.shape or s_old.ndim != 1 or len(s_old) == 0:
        raise InvalidInput("the reports must score the same, non-empty list of samples", code="invalid_input",
                           details={"old": list(s_old.shape), "new": list(s_new.shape)})
    if not (np.all(np.isfinite(s_old)) and np.all(np.isfinite(s_new))):
        raise InvalidInput("per-sample scores must be finite", code="invalid_input")
    n = len(s_old)
    rng = np.random.default_rng(random_state)
    test = paired_test(s_old, s_new, method=method, n_resamples=n_resamples, alpha=alpha, rng=rng)
    p_old, p_new = float(old.metrics[old.primary]), float(new.metrics[new.primary])
    reasons: list[str] = []
    worse = test.p_value < alpha and test.mean_delta < 0
    dropped = (p_new - p_old) < -tolerance - 1e-12  # exactly at the tolerance is within it
    overall = worse or dropped
    if dropped:
        reasons.append(f"{old.primary} dropped from {p_old:.3f} to {p_new:.3f} ({p_new - p_old:+.3f}, tolerance "
                       f"{tolerance:.3f}; {test.method} p={test.p_value:.3g})")
    elif worse:
        reasons.append(f"the paired {test.method} test finds the new model worse: mean per-sample score "
                       f"{test.mean_delta:+.3f} (p={test.p_value:.3g})")

    def groups(kind: str, figures_old, figures_new, masks) -> dict[str, GroupComparison]:
        names = list(dict.fromkeys([*figures_old, *figures_new, *masks]))
        tests: dict[str, PairedTest] = {}
        for name in names:
            m = masks.get(name)
            if m is not None and m.any():
                tests[name] = paired_test(s_old[m], s_new[m], method=method, n_resamples=n_resamples, alpha=alpha,
                                          rng=rng)
        eligible = {k: t.p_value for k, t in tests.items() if t.n >= min_samples}
        adjusted = _holm(eligible) if correction == "holm" else dict(eligible)
        out = {}
        for name in names:
            fo, fn = dict(figures_old.get(name, {})), dict(figures_new.get(name, {}))
            t = tests.get(name)
            p_adj = adjusted.get(name)
            bad = bool(t is not None and p_adj is not None and p_adj < alpha and t.mean_delta < -tolerance)
            if bad:
                reasons.append(f"{kind} {name!r}: mean per-sample score {t.mean_delta:+.3f} on {t.n} samples "
                               f"({t.method}, p={t.p_value:.3g}, adjusted {p_adj:.3g})")
            n_group = t.n if t is not None else (int(fo["n"]) if "n" in fo else None)
            out[name] = GroupComparison(name=name, n=n_group, deltas=_deltas(fo, fn), old=fo, new=fn, test=t,
                                        p_adjusted=p_adj, regressed=bad)
        return out

    per_class = groups("class", old.per_class, new.per_class, _check_masks(classes, n, "class"))
    per_slice = groups("slice", old.per_slice, new.per_slice, _check_masks(slices, n, "slice"))
    regressed = overall or any(g.regressed for g in per_class.values()) or any(g.regressed for g in per_slice.values())
    return ReportComparison(
        task_type=old.task_type, primary=old.primary, n=n, primary_old=p_old, primary_new=p_new,
        primary_delta=p_new - p_old, mean_score_old=float(s_old.mean()), mean_score_new=float(s_new.mean()),
        mean_score_delta=float(s_new.mean() - s_old.mean()), test=test,
        metric_deltas=_deltas(old.metrics, new.metrics), per_class=per_class, per_slice=per_slice,
        regressed=bool(regressed), reasons=reasons, alpha=float(alpha), tolerance=float(tolerance),
        min_samples=int(min_samples), correction=correction)
