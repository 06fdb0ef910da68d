"""Similar samples through the faiss-backed per-process index: same answers as brute force, kept current."""
import numpy as np
import pytest

from tests.apps.helpers import push_digits


@pytest.fixture(autouse=True)
def _fresh_cache():
    from apps.samples.similar import similar_cache_clear

    similar_cache_clear()
    yield
    similar_cache_clear()


def _embedded(project, digits, n, django_capture_on_commit_callbacks, start=0):
    with django_capture_on_commit_callbacks(execute=True):  # the embed job runs on commit
        push_digits(project, digits, n, start=start)


def _brute(project, sample, k):
    from apps.samples.models import Sample

    rows = list(Sample.objects.filter(project=project, embedding_space=sample.embedding_space)
                .exclude(pk=sample.pk).values_list("id", "embedding"))
    ids = np.array([r[0] for r in rows])
    M = np.stack([np.frombuffer(r[1], np.float32) for r in rows])
    d = np.linalg.norm(M - np.frombuffer(sample.embedding, np.float32), axis=1)
    order = np.argsort(d, kind="stable")[:k]
    return ids[order].tolist(), d[order]


def test_similar_matches_brute_force_and_stays_current(api, lead, project, digits, django_capture_on_commit_callbacks):
    from apps.samples.models import Sample
    from apps.samples.similar import samples_similar

    _embedded(project, digits, 120, django_capture_on_commit_callbacks)
    sample = Sample.objects.filter(project=project).order_by("id")[5]
    r = api(lead).get(f"/api/v1/samples/{sample.pk}/similar/?k=8")
    assert r.status_code == 200, r.content
    body = r.json()
    want_ids, want_d = _brute(project, sample, 8)
    assert [x["sample"]["id"] for x in body["results"]] == want_ids
    assert np.allclose([x["distance"] for x in body["results"]], want_d, atol=1e-4)
    assert body["space"] == sample.embedding_space and sample.pk not in want_ids

    # the second request is served by the cached index
    assert samples_similar(sample=sample, k=8)[1] == "cached"
    # newer samples join the space: the index is extended with just those, and they can be found
    _embedded(project, digits, 60, django_capture_on_commit_callbacks, start=120)
    found, how = samples_similar(sample=sample, k=8)
    assert how == "extended"
    want_ids, _ = _brute(project, sample, 8)
    assert [s.pk for s, _ in found] == want_ids
    # a sample leaves the space (re-embedded by a deployed model): it is never returned again
    gone = found[0][0]
    Sample.objects.filter(pk=gone.pk).update(embedding_space="model:999")
    found, how = samples_similar(sample=sample, k=8)
    assert how == "built" and gone.pk not in [s.pk for s, _ in found]
    assert [s.pk for s, _ in found] == _brute(project, sample, 8)[0]


def test_similar_is_per_project_and_space(api, lead, project, digits, django_capture_on_commit_callbacks):
    from apps.projects.services import project_create
    from apps.samples.models import Sample
    from apps.samples.similar import samples_similar

    other = project_create(user=lead, name="other digits", modality="image", labels=[str(i) for i in range(10)])
    _embedded(project, digits, 40, django_capture_on_commit_callbacks)
    _embedded(other, digits, 40, django_capture_on_commit_callbacks)  # the same images, another project
    sample = Sample.objects.filter(project=project).first()
    found, _ = samples_similar(sample=sample, k=50)
    assert len(found) == 39 and {s.project_id for s, _ in found} == {project.pk}


def test_large_spaces_are_searched_without_keeping_an_index(lead, project, digits, settings,
                                                            django_capture_on_commit_callbacks):
    from apps.samples.models import Sample
    from apps.samples.similar import _CACHE, samples_similar

    settings.LOOPLAB = {**settings.LOOPLAB, "SIMILAR_CACHE_VECTORS": 30}
    _embedded(project, digits, 50, django_capture_on_commit_callbacks)
    sample = Sample.objects.filter(project=project).first()
    found, how = samples_similar(sample=sample, k=5)
    assert how == "uncached" and not _CACHE
    assert [s.pk for s, _ in found] == _brute(project, sample, 5)[0]


def test_similar_errors(api, lead, annotator, outsider, project, digits):
    from apps.samples.models import Sample

    push_digits(project, digits, 3)  # no embed job ran: no embeddings yet
    sample = Sample.objects.filter(project=project).first()
    r = api(lead).get(f"/api/v1/samples/{sample.pk}/similar/")
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_embedded"
    assert api(lead).get(f"/api/v1/samples/{sample.pk}/similar/?k=x").status_code == 422
    assert api(outsider).get(f"/api/v1/samples/{sample.pk}/similar/").status_code == 404
    assert api(lead).get("/api/v1/samples/99999999/similar/").status_code == 404
