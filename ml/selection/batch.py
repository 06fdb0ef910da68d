"""Batch constraints of one :func:`ml.selection.select` call: class and slice quotas and caps, the total
cost, and the exclusion of near-duplicates of labeled samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput
from ml.selection.pool import Pool, Result

__all__ = ["Constraint", "Batch", "build_constraints", "near_duplicates", "BATCH_OPTIONS"]

# options of select() that constrain the batch (on top of any strategy)
BATCH_OPTIONS: tuple[str, ...] = ("class_quotas", "class_caps", "slices", "slice_quotas", "slice_caps",
                                  "cost", "max_total_cost", "labeled_embeddings", "dedup_threshold")


@dataclass
class Constraint:
    name: str
    mask: np.ndarray  # (N,) bool
    minimum: int  # quota: take at least this many (if available) before the free fill
    maximum: int | None  # cap: never more than this many in the batch
    count: int = 0


def _counts_from(spec, keys: Sequence, what: str) -> dict:
    """Normalise a quota/cap spec (dict key -> int, or a sequence aligned with ``keys``) to a dict."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        out = {}
        for key, v in spec.items():
            if key not in keys:
                raise InvalidInput(f"{what}: unknown key {key!r}", details={"key": str(key), "known": [str(k) for k in keys]})
            out[key] = int(v)
    else:
        arr = np.asarray(spec).ravel()
        if len(arr) != len(keys):
            raise InvalidInput(f"{what} must have one entry per class", details={"len": len(arr), "expected": len(keys)})
        out = {key: int(v) for key, v in zip(keys, arr)}
    if any(v < 0 for v in out.values()):
        raise InvalidInput(f"{what} must be >= 0")
    return out


def build_constraints(pool: Pool) -> list[Constraint]:
    opts = pool.options
    out: list[Constraint] = []
    if opts.get("class_quotas") is not None or opts.get("class_caps") is not None:
        if pool.probs is None:
            raise InvalidInput(
                "class quotas/caps are by predicted class and need model probabilities",
                code="model_required",
                details={"option": "class_quotas" if opts.get("class_quotas") is not None else "class_caps"},
            )
        C = pool.probs.shape[1]
        keys = list(range(C))
        quotas = _counts_from(opts.get("class_quotas"), keys, "class_quotas")
        caps = _counts_from(opts.get("class_caps"), keys, "class_caps")
        pred = pool.probs.argmax(axis=1)
        for c in keys:
            if c in quotas or c in caps:
                out.append(Constraint(f"class:{c}", pred == c, quotas.get(c, 0), caps.get(c)))
    slices = opts.get("slices") or {}
    if (opts.get("slice_quotas") or opts.get("slice_caps")) and not slices:
        raise InvalidInput("slice_quotas/slice_caps need option slices={name: bool mask (N,)}")
    names = list(slices)
    quotas = _counts_from(opts.get("slice_quotas"), names, "slice_quotas")
    caps = _counts_from(opts.get("slice_caps"), names, "slice_caps")
    for name in names:
        mask = np.asarray(slices[name])
        if mask.shape != (pool.n,):
            raise InvalidInput(f"slice {name!r} must be a boolean mask of shape (N,)", details={"shape": list(mask.shape)})
        if name in quotas or name in caps:
            out.append(Constraint(f"slice:{name}", mask.astype(bool), quotas.get(name, 0), caps.get(name)))
    return out


def near_duplicates(pool: Pool, threshold: float) -> np.ndarray:
    """Pool samples whose cosine similarity to some labeled embedding is >= threshold."""
    from ml.index import EmbeddingIndex  # noqa: PLC0415

    lab = pool.labeled_embeddings
    if lab is None or len(lab) == 0 or pool.n == 0:
        return np.zeros(pool.n, bool)
    index = EmbeddingIndex(lab.shape[1], metric="cosine", random_state=pool.random_state)
    index.add(np.arange(len(lab), dtype=np.int64), lab)
    dup = np.zeros(pool.n, bool)
    step = 65_536
    for s in range(0, pool.n, step):
        _, dist = index.search(pool.embeddings[s: s + step], 1)
        dup[s: s + step] = (1.0 - dist[:, 0]) >= threshold
    return dup


class Batch:
    """Accumulates picks for one select() call, enforcing caps and the total cost."""

    def __init__(self, pool: Pool, budget: int, constraints: list[Constraint], max_total_cost: float | None):
        self.pool = pool
        self.left = budget
        self.constraints = constraints
        self.max_total_cost = max_total_cost
        self.spent = 0.0
        self.taken = np.zeros(pool.n, bool)
        pool._cache["taken"] = self.taken  # coverage strategies treat earlier picks as covered
        self.idx: list[int] = []
        self.sc: list[float] = []
        self.names: list[str] = []

    def blocked(self) -> np.ndarray:
        """Samples that can no longer be taken (already taken, or in a full capped group)."""
        b = self.taken.copy()
        for c in self.constraints:
            if c.maximum is not None and c.count >= c.maximum:
                b |= c.mask
        if self.max_total_cost is not None and self.pool.cost is not None:
            b |= self.pool.cost > (self.max_total_cost - self.spent) + 1e-12
        return b

    def accept(self, result: Result) -> int:
        idx, sc, name = result
        if len(idx):
            self.names.append(name)
        n_ok = 0
        for i, s in zip(idx.tolist(), sc.tolist()):
            if self.left <= 0:
                break
            if self.taken[i]:
                continue
            if any(c.maximum is not None and c.count >= c.maximum and c.mask[i] for c in self.constraints):
                continue
            if self.max_total_cost is not None and self.pool.cost is not None:
                ci = float(self.pool.cost[i])
                if self.spent + ci > self.max_total_cost + 1e-12:
                    continue
                self.spent += ci
            self.taken[i] = True
            self.idx.append(i)
            self.sc.append(s)
            self.left -= 1
            for c in self.constraints:
                if c.mask[i]:
                    c.count += 1
            n_ok += 1
        return n_ok

    def _in(self, group: np.ndarray) -> np.ndarray:
        in_group = np.zeros(self.pool.n, bool)
        in_group[group] = True
        return in_group

    def fill_quotas(self, fn, group: np.ndarray) -> None:
        """Each unmet quota from this group's samples, ranked by the strategy inside the quota's group."""
        in_group = self._in(group)
        over = 4 if self.max_total_cost is not None else 1  # ask for more when picks may be skipped for cost
        for c in self.constraints:
            need = min(c.minimum - c.count, self.left)
            if c.maximum is not None:
                need = min(need, c.maximum - c.count)
            if need <= 0:
                continue
            sub = np.flatnonzero(in_group & c.mask & ~self.blocked())
            if len(sub):
                self.accept(fn(self.pool, sub, need * over))

    def fill_free(self, fn, group: np.ndarray) -> None:
        """The rest of the budget from this group, by the strategy (caps and cost still apply)."""
        in_group = self._in(group)
        over = 4 if self.max_total_cost is not None else 1
        for _ in range(len(self.constraints) + 4):
            if self.left <= 0:
                break
            avail = np.flatnonzero(in_group & ~self.blocked())
            if len(avail) == 0:
                break
            if self.accept(fn(self.pool, avail, self.left * over)) == 0:
                break

