"""Embedding search on faiss: :class:`EmbeddingIndex` (exact flat, IVF or HNSW, keyed by our own ids),
brute-force :func:`exact_search` and :func:`measure_recall`.

faiss is imported lazily inside functions, so ``import ml.index`` stays cheap for the web process.
Everything works on float32 arrays. Clustering (k-means, k-center, k-medoids) is in :mod:`ml.cluster`.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

from ml.cluster import _as_matrix, _faiss, kmeans
from ml.errors import CorruptData, InvalidInput

__all__ = ["EmbeddingIndex", "measure_recall", "exact_search"]

METRICS = ("l2", "cosine")
KINDS = ("auto", "flat", "ivf", "hnsw")
_FORMAT = "looplab.embedding_index.v1"


class EmbeddingIndex:
    """Nearest-neighbour search over embeddings keyed by our own int64 ids (e.g. sample primary keys).

    kind="auto" keeps an exact flat index while it holds fewer than ``exact_threshold`` vectors and
    switches (once) to an IVF index when an ``add`` crosses it; ``nprobe`` is then tuned on a sample
    of the stored vectors so that recall@10 against exact search reaches ``target_recall``.
    kind="flat" / "ivf" / "hnsw" force one structure. HNSW cannot delete, so ``remove`` keeps
    tombstones for it and filters them out of results.

    metric="l2": distances are Euclidean; metric="cosine": vectors are L2-normalised and distances
    are 1 - cosine similarity. ``add`` with an id already present replaces that vector (upsert).
    ``search`` returns ``(ids (Q, k) int64, distances (Q, k) float32)``, nearest first, padded with
    id -1 and distance inf when fewer than k vectors are stored.
    """

    def __init__(
        self,
        dim: int,
        *,
        metric: str = "l2",
        exact_threshold: int = 50_000,
        kind: str = "auto",
        random_state: int = 0,
        nlist: int | None = None,
        nprobe: int | None = None,
        hnsw_m: int = 32,
        ef_search: int | None = None,
        target_recall: float = 0.95,
    ):
        if int(dim) < 1:
            raise InvalidInput("dim must be >= 1", details={"dim": dim})
        if metric not in METRICS:
            raise InvalidInput(f"metric must be one of {METRICS}", details={"metric": metric})
        if kind not in KINDS:
            raise InvalidInput(f"kind must be one of {KINDS}", details={"kind": kind})
        self.dim = int(dim)
        self.metric = metric
        self.exact_threshold = int(exact_threshold)
        self.kind = kind
        self.random_state = int(random_state)
        self.nlist = nlist
        self.nprobe = nprobe
        self.hnsw_m = int(hnsw_m)
        self.ef_search = ef_search
        self.target_recall = float(target_recall)
        self._index = None  # the faiss index, built lazily
        self.structure_ = None  # "flat" | "ivf" | "hnsw" once built
        self.nprobe_ = None
        self.ef_search_ = None
        self.tuned_recall_ = None
        self.built_n_ = 0  # vectors held when the current structure was built
        self._tombstones: set[int] = set()

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        if self._index is None:
            return 0
        return int(self._index.ntotal) - len(self._tombstones)

    def __repr__(self) -> str:
        return (f"EmbeddingIndex(dim={self.dim}, metric={self.metric!r}, kind={self.kind!r}, "
                f"structure={self.structure_!r}, n={len(self)})")

    @property
    def _faiss_metric(self):
        faiss = _faiss()
        return faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT

    def _prep(self, vectors, name="vectors") -> np.ndarray:
        V = np.asarray(vectors)
        if V.ndim == 1:
            V = V[None, :]
        if V.ndim != 2 or V.shape[1] != self.dim:
            raise InvalidInput(
                f"{name} must have shape (N, {self.dim})", details={"shape": list(V.shape), "dim": self.dim}
            )
        V = np.array(V, dtype=np.float32, order="C", copy=True)
        if not np.isfinite(V).all():
            raise InvalidInput(f"{name} contain NaN or infinite values", code="empty_data")
        if self.metric == "cosine":
            norms = np.linalg.norm(V, axis=1, keepdims=True)
            V /= np.where(norms > 0, norms, 1.0)
        return V

    @staticmethod
    def _prep_ids(ids, n=None) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 1 or (n is not None and len(ids) != n):
            raise InvalidInput("ids must be a 1-D array with one id per vector", details={"shape": list(ids.shape)})
        if len(ids) and not np.issubdtype(ids.dtype, np.integer):
            raise InvalidInput("ids must be integers", details={"dtype": str(ids.dtype)})
        ids = ids.astype(np.int64)
        if len(ids) and ids.min() < 0:
            raise InvalidInput("ids must be >= 0 (-1 marks a missing neighbour)")
        return ids

    # ------------------------------------------------------------------ structures
    def _make_flat(self):
        faiss = _faiss()
        base = faiss.IndexFlatL2(self.dim) if self.metric == "l2" else faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(base)

    def _make_hnsw(self):
        faiss = _faiss()
        base = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, self._faiss_metric)
        base.hnsw.efConstruction = max(40, 2 * self.hnsw_m)
        return faiss.IndexIDMap2(base)

    def _make_ivf(self, train: np.ndarray):
        """IVF-Flat with ``nlist`` (default 2 * sqrt(N)) lists; coarse centroids from :func:`kmeans` on at
        most 32 points per list (10 Lloyd iterations)."""
        faiss = _faiss()
        n = len(train)
        nlist = int(self.nlist) if self.nlist else max(1, min(int(2 * math.sqrt(n)), n // 32, 65536))
        nlist = max(1, min(nlist, n))
        centroids, _, _ = kmeans(train, nlist, random_state=self.random_state, n_iter=10, max_train=32 * nlist,
                                 assign=False)
        nlist = len(centroids)
        quantizer = faiss.IndexFlatL2(self.dim) if self.metric == "l2" else faiss.IndexFlatIP(self.dim)
        if self.metric == "cosine":
            centroids = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, self._faiss_metric)
        ivf.is_trained = True
        ivf.nprobe = int(self.nprobe) if self.nprobe else min(8, nlist)
        return ivf

    def _all(self) -> tuple[np.ndarray, np.ndarray]:
        """Every stored (id, vector), tombstones included: ``(ids (N,), vectors (N, D))``."""
        faiss = _faiss()
        idx = self._index
        if idx is None or idx.ntotal == 0:
            return np.empty(0, np.int64), np.empty((0, self.dim), np.float32)
        if self.structure_ in ("flat", "hnsw"):
            ids = faiss.vector_to_array(idx.id_map).astype(np.int64)
            inner = faiss.downcast_index(idx.index)
            store = inner if self.structure_ == "flat" else faiss.downcast_index(inner.storage)
            vecs = faiss.vector_to_array(store.codes).view(np.float32).reshape(-1, self.dim)
            return ids, vecs
        ivf = idx
        invl = ivf.invlists
        id_parts, vec_parts = [], []
        for lst in range(ivf.nlist):
            size = invl.list_size(lst)
            if size == 0:
                continue
            id_parts.append(faiss.rev_swig_ptr(invl.get_ids(lst), size).copy())
            codes = faiss.rev_swig_ptr(invl.get_codes(lst), size * ivf.code_size).copy()
            vec_parts.append(codes.view(np.float32).reshape(size, self.dim))
        return np.concatenate(id_parts).astype(np.int64), np.concatenate(vec_parts)

    def _ensure(self, n_new: int, V: np.ndarray) -> None:
        target = self.kind
        current = self.structure_
        if target == "auto":
            total = (0 if self._index is None else int(self._index.ntotal)) + n_new
            target = "ivf" if total >= self.exact_threshold else "flat"
            if current == "ivf":
                target = "ivf"  # never switch back
        if current == target:
            return
        if target == "flat":
            self._index = self._make_flat()
        elif target == "hnsw":
            self._index = self._make_hnsw()
            if self.ef_search:
                faiss = _faiss()
                faiss.downcast_index(self._index.index).hnsw.efSearch = int(self.ef_search)
        else:  # ivf: train on what is stored plus what comes in
            old_ids, old_vecs = self._all() if self._index is not None else (np.empty(0, np.int64), None)
            train = V if old_vecs is None or len(old_vecs) == 0 else np.concatenate([old_vecs, V])
            ivf = self._make_ivf(train)
            if len(old_ids):
                ivf.add_with_ids(np.ascontiguousarray(old_vecs), old_ids)
            self._index = ivf
            self.built_n_ = len(train)
        self.structure_ = target

    # ------------------------------------------------------------------ public API
    def add(self, ids, vectors) -> "EmbeddingIndex":
        """Add (or replace) vectors under ``ids``. Returns self."""
        V = self._prep(vectors)
        ids = self._prep_ids(ids, len(V))
        if len(ids) == 0:
            return self
        if len(np.unique(ids)) != len(ids):
            raise InvalidInput("ids passed to add() must be unique")
        if self.structure_ == "hnsw" and self._index.ntotal and np.isin(ids, self._all()[0]).any():
            raise InvalidInput(
                "an HNSW index cannot replace or re-add a vector under an id it already holds; rebuild it",
                code="duplicate_id",
            )
        if self._index is not None and self._index.ntotal:
            self._remove_raw(ids)
            if self._tombstones:
                self._tombstones.difference_update(int(i) for i in ids)
        was = self.structure_
        self._ensure(len(ids), V)
        self._index.add_with_ids(V, ids)
        if was != self.structure_ and (
            (self.structure_ == "ivf" and not self.nprobe) or (self.structure_ == "hnsw" and not self.ef_search)
        ):
            self.tune()
        return self

    @property
    def needs_rebuild(self) -> bool:
        """True once an IVF index holds 4x the vectors its lists were trained on (searches slow down as
        lists grow); call :meth:`rebuild` then (e.g. from a periodic job)."""
        return self.structure_ == "ivf" and len(self) > 4 * max(1, self.built_n_)

    def rebuild(self) -> "EmbeddingIndex":
        """Rebuild the structure from the stored vectors (IVF: new lists for the current size, re-tuned)."""
        ids, vecs = self._all()
        if self._tombstones:
            keep = ~np.isin(ids, np.fromiter(self._tombstones, np.int64))
            ids, vecs = ids[keep], vecs[keep]
        ids, vecs = ids.copy(), vecs.copy()
        self._index, self.structure_, self._tombstones = None, None, set()
        self.nprobe_ = self.ef_search_ = self.tuned_recall_ = None
        if len(ids):
            self.add(ids, vecs)
        return self

    def _remove_raw(self, ids: np.ndarray) -> int:
        if self._index is None:
            return 0
        if self.structure_ == "hnsw":
            return 0
        return int(self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))

    def remove(self, ids) -> int:
        """Remove the vectors stored under ``ids`` (unknown ids are ignored). Returns how many were removed."""
        ids = self._prep_ids(ids)
        if self._index is None or len(ids) == 0:
            return 0
        if self.structure_ == "hnsw":
            present = set(self._all()[0].tolist())
            new = {int(i) for i in ids if int(i) in present and int(i) not in self._tombstones}
            self._tombstones |= new
            return len(new)
        return self._remove_raw(ids)

    def contains(self, ids) -> np.ndarray:
        ids = self._prep_ids(ids)
        stored = self._all()[0]
        ok = np.isin(ids, stored)
        if self._tombstones:
            ok &= ~np.isin(ids, np.fromiter(self._tombstones, np.int64))
        return ok

    def search(self, queries, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest stored vectors of each query: ``(ids (Q, k) int64, distances (Q, k) float32)``."""
        Q = self._prep(queries, "queries")
        k = int(k)
        if k < 1:
            raise InvalidInput("k must be >= 1", details={"k": k})
        nq = len(Q)
        ids_out = np.full((nq, k), -1, np.int64)
        dist_out = np.full((nq, k), np.inf, np.float32)
        if self._index is None or len(self) == 0 or nq == 0:
            return ids_out, dist_out
        extra = len(self._tombstones)
        kk = min(k + extra, int(self._index.ntotal))
        D, I = self._index.search(Q, kk)
        if extra:
            dead = np.isin(I, np.fromiter(self._tombstones, np.int64))
            I = np.where(dead, -1, I)
            # push tombstoned/missing hits to the end of each row, keeping order otherwise
            order = np.argsort(I < 0, axis=1, kind="stable")
            I = np.take_along_axis(I, order, axis=1)
            D = np.take_along_axis(D, order, axis=1)
        m = min(k, I.shape[1])
        I, D = I[:, :m], D[:, :m].astype(np.float32)
        valid = I >= 0
        if self.metric == "l2":
            D = np.sqrt(np.maximum(D, 0.0))
        else:
            D = 1.0 - D
        ids_out[:, :m] = I
        dist_out[:, :m] = np.where(valid, D, np.inf)
        return ids_out, dist_out

    def tune(
        self,
        *,
        target_recall: float | None = None,
        queries: np.ndarray | None = None,
        n_queries: int = 200,
        k: int = 10,
    ) -> float:
        """Pick the smallest nprobe (IVF) or efSearch (HNSW) reaching ``target_recall`` at ``k``.

        With ``queries`` (fresh vectors, e.g. a sample of what users will search with), recall is
        measured against exact search over the stored vectors. Without, ``n_queries`` stored vectors are
        drawn (seeded) and each one's own hit is dropped from both answers (leave-one-out), which
        matches "find samples similar to this sample". Returns the recall reached (also in
        ``tuned_recall_``). A no-op (1.0) for flat.
        """
        target = self.target_recall if target_recall is None else float(target_recall)
        if self.structure_ not in ("ivf", "hnsw") or len(self) == 0:
            self.tuned_recall_ = 1.0
            return 1.0
        faiss = _faiss()
        ids, vecs = self._all()
        if self._tombstones:
            keep = ~np.isin(ids, np.fromiter(self._tombstones, np.int64))
            ids, vecs = ids[keep], vecs[keep]
        if queries is not None:
            q_in = self._prep(queries, "queries")
            truth = _exact_ids(vecs, ids, q_in, k, self.metric)

            def recall_now() -> float:
                return _recall(self.search(q_in, k)[0], truth)
        else:
            rng = np.random.default_rng(self.random_state)
            pick = np.sort(rng.choice(len(vecs), size=min(n_queries, len(vecs)), replace=False))
            q_in, q_ids = vecs[pick], ids[pick]
            truth = _drop_self(_exact_ids(vecs, ids, q_in, k + 1, self.metric), q_ids, k)

            def recall_now() -> float:
                return _recall(_drop_self(self.search(q_in, k + 1)[0], q_ids, k), truth)

        rec = 0.0
        if self.structure_ == "ivf":
            nlist = self._index.nlist
            steps = [1, 2, 3, 4, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 384, 512, 768, 1024]
            for p in sorted({p for p in steps if p < nlist} | {nlist}):
                self._index.nprobe = int(p)
                rec = recall_now()
                if rec >= target:
                    break
            self.nprobe_ = int(self._index.nprobe)
        else:
            h = faiss.downcast_index(self._index.index).hnsw
            for ef in [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]:
                h.efSearch = max(ef, k + 1)
                rec = recall_now()
                if rec >= target:
                    break
            self.ef_search_ = int(h.efSearch)
        self.tuned_recall_ = float(rec)
        return float(rec)

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the index to one file (an .npz with the serialised faiss index and our settings)."""
        faiss = _faiss()
        meta = {
            "format": _FORMAT,
            "dim": self.dim,
            "metric": self.metric,
            "exact_threshold": self.exact_threshold,
            "kind": self.kind,
            "random_state": self.random_state,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "hnsw_m": self.hnsw_m,
            "ef_search": self.ef_search,
            "target_recall": self.target_recall,
            "structure_": self.structure_,
            "nprobe_": self.nprobe_,
            "ef_search_": self.ef_search_,
            "tuned_recall_": self.tuned_recall_,
            "built_n_": self.built_n_,
        }
        blob = faiss.serialize_index(self._index) if self._index is not None else np.empty(0, np.uint8)
        buf = io.BytesIO()
        np.savez(
            buf,
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            index=blob,
            tombstones=np.array(sorted(self._tombstones), dtype=np.int64),
        )
        Path(path).write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path) -> "EmbeddingIndex":
        faiss = _faiss()
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                blob = z["index"].copy()
                tomb = z["tombstones"].copy()
        except (OSError, ValueError, KeyError) as exc:
            raise CorruptData("not a readable embedding index file", details={"path": str(path)}) from exc
        if meta.get("format") != _FORMAT:
            raise CorruptData("unknown embedding index format", details={"format": meta.get("format")})
        obj = cls(
            meta["dim"],
            metric=meta["metric"],
            exact_threshold=meta["exact_threshold"],
            kind=meta["kind"],
            random_state=meta["random_state"],
            nlist=meta["nlist"],
            nprobe=meta["nprobe"],
            hnsw_m=meta["hnsw_m"],
            ef_search=meta["ef_search"],
            target_recall=meta["target_recall"],
        )
        obj.structure_ = meta["structure_"]
        obj.nprobe_ = meta["nprobe_"]
        obj.ef_search_ = meta["ef_search_"]
        obj.tuned_recall_ = meta["tuned_recall_"]
        obj.built_n_ = int(meta.get("built_n_", 0))
        if len(blob):
            obj._index = faiss.deserialize_index(blob)
        obj._tombstones = set(int(t) for t in tomb)
        return obj


def _exact_ids(vecs, ids, queries, k, metric, tombstones=()) -> np.ndarray:
    if tombstones:
        keep = ~np.isin(ids, np.fromiter(tombstones, np.int64))
        vecs, ids = vecs[keep], ids[keep]
    pos, _ = exact_search(vecs, queries, k, metric=metric)
    return np.where(pos >= 0, ids[np.maximum(pos, 0)], -1)


def _drop_self(found: np.ndarray, self_ids: np.ndarray, k: int) -> np.ndarray:
    """Remove each row's own id and keep the first k of the rest."""
    out = np.full((len(found), k), -1, np.int64)
    for r, (row, me) in enumerate(zip(found, self_ids)):
        rest = row[row != me][:k]
        out[r, : len(rest)] = rest
    return out


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = 0
    total = 0
    for f, t in zip(found, truth):
        t = t[t >= 0]
        total += len(t)
        hits += len(np.intersect1d(f[f >= 0], t))
    return hits / total if total else 1.0


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int, *, metric: str = "l2") -> tuple[np.ndarray, np.ndarray]:
    """Brute-force kNN over ``vectors`` (row positions, not ids): ``(positions (Q, k), distances (Q, k))``.

    Distances as in :class:`EmbeddingIndex` (Euclidean, or 1 - cosine). Uses a temporary faiss flat index.
    """
    faiss = _faiss()
    V = _as_matrix(vectors, "vectors")
    Q = _as_matrix(queries, "queries")
    if metric == "cosine":
        V = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
        Q = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12)
        index = faiss.IndexFlatIP(V.shape[1])
    else:
        index = faiss.IndexFlatL2(V.shape[1])
    index.add(np.ascontiguousarray(V, dtype=np.float32))
    kk = min(int(k), len(V))
    D, I = index.search(np.ascontiguousarray(Q, dtype=np.float32), kk)
    if metric == "cosine":
        D = 1.0 - D
    else:
        D = np.sqrt(np.maximum(D, 0.0))
    if kk < k:
        I = np.pad(I, ((0, 0), (0, k - kk)), constant_values=-1)
        D = np.pad(D, ((0, 0), (0, k - kk)), constant_values=np.inf)
    return I.astype(np.int64), D.astype(np.float32)


def measure_recall(index: EmbeddingIndex, queries: np.ndarray, k: int = 10) -> float:
    """recall@k of ``index.search(queries, k)`` against exact search over the same stored vectors."""
    ids, vecs = index._all()
    if len(ids) == 0:
        return 1.0
    if index.metric == "cosine":
        Q = np.asarray(queries, dtype=np.float32)
        Q = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12)
    else:
        Q = queries
    truth = _exact_ids(vecs, ids, Q, k, index.metric, index._tombstones)
    found, _ = index.search(queries, k)
    return _recall(found, truth)
