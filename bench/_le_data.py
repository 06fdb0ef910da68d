"""Datasets for the label-efficiency benchmark: real fixtures -> the app's loaders -> label-free embeddings.

Every dataset goes through exactly the path the app uses at ingest: fixture bytes (PNG / WAV / PLY) ->
the modality's batch loader -> :func:`ml.features.label_free_embeddings`. The embeddings are cached
under ``bench/out/cache/`` keyed by the dataset parameters and a hash of the source files involved
(fixture script, loader, features), so a changed loader or feature extractor is never served stale.
"""
from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# name -> (modality, fixture size, source files whose content keys the cache)
_SPECS = {
    "digits": ("image", None, ("fixtures/digits.py", "ml/modalities/image.py", "ml/features.py")),
    "audio": ("audio", "n_per_class", ("fixtures/speech.py", "ml/modalities/audio.py", "ml/features.py")),
    "3d": ("pointcloud", "n_per_class", ("fixtures/shapes.py", "ml/modalities/pointcloud.py", "ml/features.py")),
    # opt-in (not in the default runs): digits under strong nuisances, the first-model stress set (#13 item 9)
    "stress": ("image", "n_per_class", ("fixtures/stress.py", "ml/modalities/image.py", "ml/features.py")),
}
DATASETS = tuple(_SPECS)


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    modality: str
    embeddings: np.ndarray  # (N, D) float32, label-free, unit norm
    y: np.ndarray  # (N,) int64
    class_names: tuple[str, ...]
    source: str  # what was loaded, for the report

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def _source_hash(files) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.encode())
        h.update((REPO / f).read_bytes())
    return h.hexdigest()[:16]


# name -> (fixture module, its items function, its class names, what the items are)
_FIXTURES = {
    "digits": ("fixtures.digits", "digits_pngs", "DIGIT_LABELS", "PNGs (scikit-learn digits, 32x32)"),
    "audio": ("fixtures.speech", "spoken_digits", "SPOKEN_LABELS", "espeak-ng WAVs"),
    "3d": ("fixtures.shapes", "shapes", "SHAPE_LABELS", "PLY point clouds (open3d primitives)"),
    "stress": ("fixtures.stress", "stress_pngs", "STRESS_LABELS", "RGB PNGs (digits: rotation, dark quarter, blur)"),
}


def _build(name: str, n_per_class: int | None, limit: int | None = None,
           fixture_seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    from ml import modalities
    from ml.features import label_free_embeddings

    if name not in _FIXTURES:
        raise ValueError(f"unknown dataset {name!r}")
    modality, size_key, _ = _SPECS[name]
    module_name, items_fn, labels, what = _FIXTURES[name]
    module = importlib.import_module(module_name)
    args = () if size_key is None else (n_per_class, fixture_seed)
    items = getattr(module, items_fn)(*args)[:limit]
    X = modalities.get(modality).load_batch([b for b, _ in items])
    call = "" if size_key is None else f"{n_per_class}, seed={fixture_seed}"
    src = f"{module_name}.{items_fn}({call}): {len(items)} {what}"
    y = np.asarray([c for _, c in items], dtype=np.int64)
    E = label_free_embeddings(modality, X)
    return np.asarray(E, np.float32), y, tuple(getattr(module, labels)), src


def load_dataset(name: str, *, n_per_class: int | None = None, cache_dir: Path | None = None,
                 limit: int | None = None, fixture_seed: int = 0) -> Dataset:
    """Embeddings + labels of one benchmark dataset (cached in ``cache_dir`` when given).

    ``limit`` builds only the first ``limit`` samples of the fixture, uncached (tests).
    ``fixture_seed`` draws another version of the generated fixtures (audio, 3D; digits is
    scikit-learn's fixed set and ignores it): a held-out check that a change tuned on the default
    draw (seed 0) is not fitted to it."""
    if name not in _SPECS:
        raise ValueError(f"unknown dataset {name!r}; choose from {DATASETS}")
    modality, size_key, files = _SPECS[name]
    if size_key is None:
        n_per_class = None
    cached = None
    if limit is not None:  # a prefix of the fixture, never cached
        E, y, names, src = _build(name, n_per_class, limit, fixture_seed)
        return Dataset(name, modality, E, y, names, src + f" (first {limit})")
    if cache_dir is not None:
        draw = f"-draw{fixture_seed}" if fixture_seed and name != "digits" else ""
        key = f"{name}-{n_per_class or 'all'}{draw}-{_source_hash(files)}.npz"
        cached = Path(cache_dir) / key
        if cached.exists():
            z = np.load(cached, allow_pickle=False)
            E, y = z["E"], z["y"]
            names, src = tuple(str(s) for s in z["names"]), str(z["src"])
            return Dataset(name, modality, E, y, names, src)
    E, y, names, src = _build(name, n_per_class, None, fixture_seed)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npz")
        np.savez(tmp, E=E, y=y, names=np.asarray(names), src=np.asarray(src))
        tmp.replace(cached)
    return Dataset(name, modality, E, y, names, src)
