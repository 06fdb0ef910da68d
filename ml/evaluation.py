"""Evaluation reports, per-slice metrics, calibration and model comparison.

``evaluate`` turns true labels and predicted probabilities into an :class:`EvalReport` (accuracy,
macro-F1, expected calibration error, per-class precision/recall/F1, confusion matrix, slices).
``compare_models`` compares a candidate with the current model on the same samples (paired McNemar
test, per-class and per-slice deltas) and says whether the candidate regressed.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput
from ml.jsonable import jsonable

__all__ = [
    "EvalReport",
    "Comparison",
    "evaluate",
    "expected_calibration_error",
    "mcnemar",
    "confusion_png",
    "compare_models",
    "slices_from_metadata",
    "apply_rules",
    "RulesEvaluation",
    "evaluate_with_rules",
]

DEFAULT_ECE_BINS = 15


@dataclass(frozen=True)
class EvalReport:
    n: int
    accuracy: float
    macro_f1: float
    ece: float
    labels: list[str]
    per_class: dict[str, dict]  # {label: {"precision","recall","f1","support"}}
    confusion: list[list[int]]  # rows = true, cols = predicted
    slices: dict[str, dict]  # {slice_name: {"n","accuracy","macro_f1", ...}}

    def to_dict(self) -> dict:
        return jsonable(asdict(self))


# --------------------------------------------------------------------------- validation


def _check(y_true, probs, labels) -> tuple[np.ndarray, np.ndarray, list[str]]:
    labels = [str(label) for label in labels]
    y = np.asarray(y_true)
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 2:
        raise InvalidInput("probs must be a 2-D array (N, C)", details={"shape": list(P.shape)})
    if y.ndim != 1 or len(y) != len(P):
        raise InvalidInput(
            "y_true must be a 1-D array with one label per row of probs",
            details={"y_shape": list(y.shape), "probs_shape": list(P.shape)},
        )
    if P.shape[1] != len(labels):
        raise InvalidInput(
            "probs has a different number of columns than labels",
            details={"probs_classes": P.shape[1], "labels": len(labels)},
        )
    if len(set(labels)) != len(labels):
        raise InvalidInput("labels must be unique", details={"labels": labels})
    if len(y) == 0:
        raise InvalidInput("cannot evaluate on zero samples", code="empty_data")
    if not np.isfinite(P).all():
        raise InvalidInput("probs contain NaN or infinite values", code="empty_data")
    if P.min() < -1e-6 or np.abs(P.sum(axis=1) - 1.0).max() > 1e-3:
        raise InvalidInput("probs must be probabilities: non-negative rows that sum to 1 (apply softmax to logits)",
                           code="invalid_probs")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise InvalidInput("y_true must hold integer class indices", details={"dtype": str(y.dtype)})
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= len(labels):
        raise InvalidInput(
            "y_true has class indices outside [0, n_classes)",
            details={"min": int(y.min()), "max": int(y.max()), "n_classes": len(labels)},
        )
    return y, P, labels


def _check_slices(slices: Mapping[str, np.ndarray] | None, n: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, mask in (slices or {}).items():
        m = np.asarray(mask)
        if m.shape != (n,) or not (m.dtype == bool or np.issubdtype(m.dtype, np.integer)):
            raise InvalidInput(
                f"slice {name!r} must be a boolean mask with one entry per sample",
                details={"slice": str(name), "shape": list(m.shape), "n": n},
            )
        out[str(name)] = m.astype(bool)
    return out


# --------------------------------------------------------------------------- metrics


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, *, n_bins: int = DEFAULT_ECE_BINS) -> float:
    """Expected calibration error of the top-1 confidence with ``n_bins`` equal-width bins.

    ECE = sum_b |B_b| / N * |accuracy(B_b) - mean confidence(B_b)|, bins (0, 1/n], (1/n, 2/n], ...
    (a confidence of exactly 0 goes to the first bin).
    """
    y = np.asarray(y_true)
    P = np.asarray(probs, dtype=np.float64)
    if len(y) == 0:
        return 0.0
    conf = P.max(axis=1)
    correct = (P.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins).astype(np.float64)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    nz = counts > 0
    gap = np.abs(acc_sum[nz] - conf_sum[nz])  # = counts * |acc - conf|
    return float(gap.sum() / len(y))


def _subset_metrics(y: np.ndarray, pred: np.ndarray, n_classes: int) -> dict:
    from sklearn.metrics import f1_score  # noqa: PLC0415

    n = int(len(y))
    if n == 0:
        return {"n": 0, "accuracy": None, "macro_f1": None, "per_class_recall": {}}
    return {
        "n": n,
        "accuracy": float(np.mean(y == pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
    }


def evaluate(
    y_true: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    *,
    slices: Mapping[str, np.ndarray] | None = None,
    n_bins: int = DEFAULT_ECE_BINS,
) -> EvalReport:
    """Metrics of the top-1 predictions ``argmax(probs)`` against ``y_true`` (class indices).

    macro_f1 averages over the classes present in ``y_true`` or predicted (scikit-learn's default);
    ``per_class`` lists every label, with support 0 where absent. ``slices`` maps a slice name to a
    boolean mask over the samples; each slice gets {"n", "accuracy", "macro_f1", "ece",
    "per_class_recall" (classes present in the slice)}.
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support  # noqa: PLC0415

    y, P, labels = _check(y_true, probs, labels)
    masks = _check_slices(slices, len(y))
    C = len(labels)
    pred = P.argmax(axis=1)
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=np.arange(C), zero_division=0)
    per_class = {
        labels[c]: {"precision": float(prec[c]), "recall": float(rec[c]), "f1": float(f1[c]), "support": int(sup[c])}
        for c in range(C)
    }
    conf = confusion_matrix(y, pred, labels=np.arange(C))
    slice_out: dict[str, dict] = {}
    for name, m in masks.items():
        d = _subset_metrics(y[m], pred[m], C)
        d["ece"] = expected_calibration_error(y[m], P[m], n_bins=n_bins) if d["n"] else None
        ys, ps = y[m], pred[m]
        d["per_class_recall"] = {
            labels[c]: float(np.mean(ps[ys == c] == c)) for c in range(C) if np.any(ys == c)
        }
        slice_out[name] = d
    return EvalReport(
        n=int(len(y)),
        accuracy=float(np.mean(pred == y)),
        macro_f1=float(f1_score(y, pred, average="macro", zero_division=0)),
        ece=expected_calibration_error(y, P, n_bins=n_bins),
        labels=list(labels),
        per_class=per_class,
        confusion=[[int(v) for v in row] for row in conf],
        slices=slice_out,
    )


# --------------------------------------------------------------------------- plot


def confusion_png(report: EvalReport, *, title: str = "", normalize: bool = False, dpi: int = 100) -> bytes:
    """Confusion matrix of ``report`` as PNG bytes (matplotlib's Agg canvas; no pyplot global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    cm = np.asarray(report.confusion, dtype=np.float64)
    C = len(report.labels)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    side = max(3.5, 0.55 * C + 2.0)
    fig = Figure(figsize=(side + 0.8, side), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(C))
    ax.set_yticks(range(C))
    ax.set_xticklabels(report.labels, rotation=45, ha="right")
    ax.set_yticklabels(report.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"n={report.n}  accuracy={report.accuracy:.3f}  macro-F1={report.macro_f1:.3f}")
    if C <= 30:
        hi = shown.max() if shown.size else 0
        for i in range(C):
            for j in range(C):
                txt = f"{shown[i, j]:.2f}" if normalize else str(int(cm[i, j]))
                ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                        color="white" if hi and shown[i, j] > hi / 2 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# --------------------------------------------------------------------------- comparison


def mcnemar(correct_new: np.ndarray, correct_old: np.ndarray, *, exact_below: int = 25) -> dict:
    """Paired McNemar test on per-sample correctness of two models.

    b = old right & new wrong, c = old wrong & new right. With b + c < ``exact_below`` the two-sided
    exact binomial test (p = min(1, 2 * P[X <= min(b, c)]), X ~ Bin(b + c, 1/2)); otherwise the
    chi-square statistic with continuity correction (|b - c| - 1)^2 / (b + c), 1 degree of freedom.
    """
    from scipy import stats  # noqa: PLC0415

    a_new = np.asarray(correct_new, bool)
    a_old = np.asarray(correct_old, bool)
    b = int(np.sum(a_old & ~a_new))
    c = int(np.sum(~a_old & a_new))
    nd = b + c
    if nd == 0:
        return {"b": 0, "c": 0, "statistic": 0.0, "p_value": 1.0, "method": "exact"}
    if nd < exact_below:
        p = min(1.0, 2.0 * float(stats.binom.cdf(min(b, c), nd, 0.5)))
        return {"b": b, "c": c, "statistic": float(min(b, c)), "p_value": p, "method": "exact"}
    stat = (abs(b - c) - 1.0) ** 2 / nd
    return {"b": b, "c": c, "statistic": float(stat), "p_value": float(stats.chi2.sf(stat, 1)), "method": "chi2_cc"}


@dataclass(frozen=True)
class Comparison:
    new: EvalReport
    old: EvalReport
    accuracy_delta: float
    macro_f1_delta: float
    mcnemar: dict  # {"b","c","statistic","p_value","method"}
    per_class: dict[str, dict]  # {label: {"recall_old","recall_new","recall_delta","f1_delta","support","p_value"}}
    slices: dict[str, dict]  # {name: {"n","accuracy_old","accuracy_new","accuracy_delta","p_value"}}
    regressions: list[str] = field(default_factory=list)  # human-readable reasons
    regressed: bool = False
    tolerance: float = 0.01
    alpha: float = 0.05

    def to_dict(self) -> dict:
        d = {
            "new": self.new.to_dict(),
            "old": self.old.to_dict(),
            "accuracy_delta": self.accuracy_delta,
            "macro_f1_delta": self.macro_f1_delta,
            "mcnemar": dict(self.mcnemar),
            "per_class": self.per_class,
            "slices": self.slices,
            "regressions": list(self.regressions),
            "regressed": self.regressed,
            "tolerance": self.tolerance,
            "alpha": self.alpha,
        }
        return jsonable(d)


def compare_models(
    y_true: np.ndarray,
    probs_new: np.ndarray,
    probs_old: np.ndarray,
    labels: Sequence[str],
    *,
    slices: Mapping[str, np.ndarray] | None = None,
    tolerance: float = 0.01,
    alpha: float = 0.05,
) -> Comparison:
    """Compare a candidate model (``probs_new``) with the current one (``probs_old``) on the same samples.

    ``regressed`` is True when any of these holds:
    - overall accuracy dropped by more than ``tolerance``;
    - McNemar's test is significant (p < ``alpha``) with the new model wrong more often (b > c);
    - for a class (its true samples: recall) or a slice, accuracy dropped by more than ``tolerance``
      AND the paired McNemar test on that subset is significant in the worse direction (so a
      handful of noisy samples in a tiny slice does not block a deploy).
    ``regressions`` lists the reasons in words.
    """
    y, Pn, labels = _check(y_true, probs_new, labels)
    _, Po, _ = _check(y_true, probs_old, labels)
    masks = _check_slices(slices, len(y))
    rep_new = evaluate(y, Pn, labels, slices=masks)
    rep_old = evaluate(y, Po, labels, slices=masks)
    ok_new = Pn.argmax(axis=1) == y
    ok_old = Po.argmax(axis=1) == y
    test = mcnemar(ok_new, ok_old)
    reasons: list[str] = []
    acc_delta = rep_new.accuracy - rep_old.accuracy
    if acc_delta < -tolerance:
        reasons.append(
            f"accuracy dropped from {rep_old.accuracy:.3f} to {rep_new.accuracy:.3f} "
            f"({acc_delta:+.3f}, tolerance {tolerance:.3f})"
        )
    if test["p_value"] < alpha and test["b"] > test["c"]:
        reasons.append(
            f"McNemar: new model wrong on {test['b']} samples the old one got right vs {test['c']} the other way "
            f"(p={test['p_value']:.3g})"
        )

    def paired(mask: np.ndarray) -> tuple[float | None, float | None, float | None, dict]:
        """Old and new accuracy on ``mask``'s samples, their difference and McNemar's test (None: no samples)."""
        if not mask.any():
            return None, None, None, {"b": 0, "c": 0, "p_value": 1.0, "method": "exact", "statistic": 0.0}
        old, new = float(ok_old[mask].mean()), float(ok_new[mask].mean())
        return old, new, new - old, mcnemar(ok_new[mask], ok_old[mask])

    def worse(delta: float | None, t: dict) -> bool:
        return delta is not None and delta < -tolerance and t["p_value"] < alpha and t["b"] > t["c"]

    per_class: dict[str, dict] = {}
    for ci, name in enumerate(labels):
        m = y == ci
        r_old, r_new, delta, t = paired(m)
        f1_old, f1_new = rep_old.per_class[name]["f1"], rep_new.per_class[name]["f1"]
        per_class[name] = {"support": int(m.sum()), "recall_old": r_old, "recall_new": r_new, "recall_delta": delta,
                           "f1_old": f1_old, "f1_new": f1_new, "f1_delta": f1_new - f1_old, "p_value": t["p_value"]}
        if worse(delta, t):
            reasons.append(f"class {name!r}: recall dropped from {r_old:.3f} to {r_new:.3f} (p={t['p_value']:.3g})")
    slice_out: dict[str, dict] = {}
    for name, m in masks.items():
        a_old, a_new, delta, t = paired(m)
        slice_out[name] = {"n": int(m.sum()), "accuracy_old": a_old, "accuracy_new": a_new, "accuracy_delta": delta,
                           "p_value": t["p_value"]}
        if worse(delta, t):
            reasons.append(f"slice {name!r}: accuracy dropped from {a_old:.3f} to {a_new:.3f} (p={t['p_value']:.3g})")
    return Comparison(
        new=rep_new,
        old=rep_old,
        accuracy_delta=float(acc_delta),
        macro_f1_delta=float(rep_new.macro_f1 - rep_old.macro_f1),
        mcnemar=test,
        per_class=per_class,
        slices=slice_out,
        regressions=reasons,
        regressed=bool(reasons),
        tolerance=float(tolerance),
        alpha=float(alpha),
    )


# --------------------------------------------------------------------------- slices from metadata


def slices_from_metadata(metadata: Sequence[Mapping], predicates: Mapping[str, Mapping]) -> dict[str, np.ndarray]:
    """``{name: bool mask}`` from ``{name: predicate}``; predicates as in :func:`ml.slices.slice_mask`
    (equality, one-of lists, operator dicts such as ``{"speed": {"gte": 50}}``)."""
    from ml.slices import slice_mask  # noqa: PLC0415

    return {str(name): slice_mask(metadata, pred) for name, pred in predicates.items()}


# --------------------------------------------------------------------------- model + user rules

Rule = Callable[[dict, str], "str | None"]


def apply_rules(probs: np.ndarray, labels: Sequence[str], metadata: Sequence[Mapping], rule: Rule) -> tuple[np.ndarray, np.ndarray]:
    """Run ``rule(metadata_i, predicted_label_i)`` on every sample; a returned label overrides the model.

    Returns ``(probs_with_rules, overridden mask)``: overridden rows become one-hot on the rule's label
    (a rule is treated as certain). ``None`` (or the same label) keeps the model's prediction.
    Raises ``InvalidInput(code="rule_error")`` if the rule raises, ``code="invalid_rule_output"`` if it
    returns something that is not one of ``labels``.
    """
    labels = [str(label) for label in labels]
    P = np.asarray(probs, dtype=np.float64)
    if len(metadata) != len(P):
        raise InvalidInput("metadata must have one entry per sample", details={"metadata": len(metadata), "n": len(P)})
    lookup = {label: i for i, label in enumerate(labels)}
    pred = P.argmax(axis=1)
    out = P.copy()
    overridden = np.zeros(len(P), bool)
    for i, (row, p) in enumerate(zip(metadata, pred)):
        try:
            new = rule(dict(row or {}), labels[p])
        except Exception as exc:  # a user rule: report which sample broke it
            raise InvalidInput(
                f"the rule raised {type(exc).__name__}: {exc}",
                code="rule_error",
                details={"index": i, "metadata": jsonable(dict(row or {}))},
            ) from exc
        if new is None or new == labels[p]:
            continue
        if new not in lookup:
            raise InvalidInput(
                f"the rule returned {new!r}, which is not one of the project's labels",
                code="invalid_rule_output",
                details={"index": i, "returned": str(new), "labels": labels},
            )
        out[i] = 0.0
        out[i, lookup[new]] = 1.0
        overridden[i] = True
    return out, overridden


@dataclass(frozen=True)
class RulesEvaluation:
    model: EvalReport  # the model alone
    with_rules: EvalReport  # the model with the rules applied
    n_overridden: int
    overrides_fixed: int  # the model was wrong and the rule made it right
    overrides_broke: int  # the model was right and the rule made it wrong
    old_model: EvalReport | None = None
    old_with_rules: EvalReport | None = None
    rules_hurt: bool = False  # with rules is worse than the model alone
    rules_hurt_improvement: bool = False  # the model improved on the old one, but model + rules got worse
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return jsonable({
            "model": self.model.to_dict(),
            "with_rules": self.with_rules.to_dict(),
            "n_overridden": self.n_overridden,
            "overrides_fixed": self.overrides_fixed,
            "overrides_broke": self.overrides_broke,
            "old_model": self.old_model.to_dict() if self.old_model else None,
            "old_with_rules": self.old_with_rules.to_dict() if self.old_with_rules else None,
            "rules_hurt": self.rules_hurt,
            "rules_hurt_improvement": self.rules_hurt_improvement,
            "flags": list(self.flags),
        })


def evaluate_with_rules(
    y_true: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    metadata: Sequence[Mapping],
    rule: Rule,
    *,
    probs_old: np.ndarray | None = None,
    slices: Mapping[str, np.ndarray] | None = None,
    tolerance: float = 0.0,
) -> RulesEvaluation:
    """Evaluate the model alone and the model with the user's ``rule`` (see :func:`apply_rules`).

    With ``probs_old`` (the currently deployed model on the same samples) it also evaluates old model
    and old model + rules, and sets ``rules_hurt_improvement`` when the new model beats the old one
    alone (accuracy) while new + rules does worse than old + rules by more than ``tolerance``: the rules
    were written around the old model's mistakes and now fight the new one.
    """
    y, P, labels = _check(y_true, probs, labels)
    masks = _check_slices(slices, len(y))
    P_rules, over = apply_rules(P, labels, metadata, rule)
    model = evaluate(y, P, labels, slices=masks)
    with_rules = evaluate(y, P_rules, labels, slices=masks)
    ok_model = P.argmax(1) == y
    ok_rules = P_rules.argmax(1) == y
    fixed = int(np.sum(over & ~ok_model & ok_rules))
    broke = int(np.sum(over & ok_model & ~ok_rules))
    flags: list[str] = []
    rules_hurt = with_rules.accuracy < model.accuracy - tolerance
    if rules_hurt:
        flags.append(
            f"the rules lower accuracy from {model.accuracy:.3f} to {with_rules.accuracy:.3f}: "
            f"they broke {broke} correct predictions and fixed {fixed}"
        )
    for name, m in masks.items():
        a, b = model.slices[name]["accuracy"], with_rules.slices[name]["accuracy"]
        if a is not None and b < a - tolerance:
            flags.append(f"slice {name!r}: the rules lower accuracy from {a:.3f} to {b:.3f}")
    old = old_rules = None
    hurt_improvement = False
    if probs_old is not None:
        _, Po, _ = _check(y, probs_old, labels)
        Po_rules, _ = apply_rules(Po, labels, metadata, rule)
        old = evaluate(y, Po, labels, slices=masks)
        old_rules = evaluate(y, Po_rules, labels, slices=masks)
        if model.accuracy > old.accuracy and with_rules.accuracy < old_rules.accuracy - tolerance:
            hurt_improvement = True
            flags.append(
                f"the model improved ({old.accuracy:.3f} -> {model.accuracy:.3f}) but model + rules got worse "
                f"({old_rules.accuracy:.3f} -> {with_rules.accuracy:.3f}): review the rules before deploying"
            )
    return RulesEvaluation(
        model=model,
        with_rules=with_rules,
        n_overridden=int(over.sum()),
        overrides_fixed=fixed,
        overrides_broke=broke,
        old_model=old,
        old_with_rules=old_rules,
        rules_hurt=bool(rules_hurt),
        rules_hurt_improvement=bool(hurt_improvement),
        flags=flags,
    )
