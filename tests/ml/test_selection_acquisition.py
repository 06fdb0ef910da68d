"""ml.selection.uncertain_diverse: the task-type-agnostic acquisition (uncertainty + diversity in the
model's embedding space)."""
import numpy as np
import pytest

from ml.errors import InvalidInput
from ml.selection import uncertain_diverse


def _blobs(n_per: int = 30, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.eye(k, 8, dtype=np.float32) * 20
    E = np.concatenate([c + rng.normal(0, 0.5, (n_per, 8)) for c in centres]).astype(np.float32)
    blob = np.repeat(np.arange(k), n_per)
    return E, blob, rng


def test_deterministic_budget_and_no_duplicates():
    E, _, rng = _blobs()
    u = rng.random(len(E)).astype(np.float32)
    a = uncertain_diverse(u, E, 10, random_state=3)
    b = uncertain_diverse(u, E, 10, random_state=3)
    assert a.dtype == np.int64 and len(a) == 10 and len(set(a.tolist())) == 10
    assert np.array_equal(a, b)
    # ranked by uncertainty, highest first
    assert np.all(np.diff(u[a]) <= 0)
    # a budget above the candidates returns every candidate once
    assert sorted(uncertain_diverse(u, E, 50, candidates=[5, 3, 3, 9]).tolist()) == [3, 5, 9]
    assert len(uncertain_diverse(u, E, 5, candidates=[])) == 0


def test_prefers_uncertain():
    E, _, rng = _blobs()
    u = rng.random(len(E)).astype(np.float32)
    picked = uncertain_diverse(u, E, 8, diversity_factor=3, random_state=0)
    # every pick is among the 3 * budget most uncertain samples
    top = set(np.argsort(-u, kind="stable")[:24].tolist())
    assert set(picked.tolist()) <= top
    assert u[picked].mean() > np.quantile(u, 0.75), (u[picked].mean(), np.quantile(u, 0.75))
    # factor 1 is plain top-k uncertainty
    assert set(uncertain_diverse(u, E, 8, diversity_factor=1).tolist()) == set(np.argsort(-u)[:8].tolist())


def test_spreads_over_clusters():
    """The most uncertain samples all sit in blob 0; plain top-k would take 4 from blob 0, the acquisition
    spreads its 4 picks over the 4 blobs of the embedding space."""
    E, blob, rng = _blobs()
    u = rng.random(len(E)).astype(np.float32) * 0.5
    u[blob == 0] += 0.5
    top4 = np.argsort(-u)[:4]
    assert set(blob[top4].tolist()) == {0}
    picked = uncertain_diverse(u, E, 4, diversity_factor=30, random_state=0)
    assert sorted(blob[picked].tolist()) == [0, 1, 2, 3]
    # within each blob it takes that blob's most uncertain sample
    for p in picked:
        assert u[p] == u[blob == blob[p]].max()


def test_candidates_restrict_the_pick():
    E, _, rng = _blobs()
    u = rng.random(len(E)).astype(np.float32)
    cand = np.arange(0, len(E), 2)
    picked = uncertain_diverse(u, E, 6, candidates=cand, random_state=1)
    assert len(picked) == 6 and set(picked.tolist()) <= set(cand.tolist())


@pytest.mark.parametrize("kwargs", [
    {"uncertainty": np.zeros((3, 1)), "embeddings": np.zeros((3, 2)), "budget": 1},
    {"uncertainty": np.zeros(3), "embeddings": np.zeros((4, 2)), "budget": 1},
    {"uncertainty": np.array([0.0, np.nan, 1.0]), "embeddings": np.zeros((3, 2)), "budget": 1},
    {"uncertainty": np.zeros(3), "embeddings": np.zeros((3, 2)), "budget": 0},
    {"uncertainty": np.zeros(3), "embeddings": np.zeros((3, 2)), "budget": 1, "candidates": [3]},
    {"uncertainty": np.zeros(3), "embeddings": np.zeros((3, 2)), "budget": 1, "diversity_factor": 0.5},
])
def test_invalid_input(kwargs):
    with pytest.raises(InvalidInput):
        uncertain_diverse(**kwargs)
