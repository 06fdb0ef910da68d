"""Shared fixtures. State is built through services (never raw ORM), as users would build it."""
from __future__ import annotations

import base64

import pytest


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    """Each test starts with an empty per-process cache of loaded models: ids are reused after a migration test
    recreates the tables, and a model cached under an id by an earlier test must not answer for another's."""
    import sys

    runtime = sys.modules.get("apps.registry.runtime")
    if runtime is not None:
        runtime._CACHE.clear()
    yield


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits rendered to PNG: [(png bytes, label int)], deterministic."""
    from fixtures.digits import digits_pngs

    return digits_pngs()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def make_user(db):
    from apps.accounts.services import user_create

    def make(username: str, role: str = "annotator"):
        return user_create(username=username, password="pw-" + username, role=role)

    return make


@pytest.fixture
def api(db):
    """api(user) -> an APIClient authenticated with the user's token, as a production service would be."""
    from rest_framework.test import APIClient

    from apps.accounts.services import token_get_or_create

    def client(user=None):
        c = APIClient()
        if user is not None:
            c.credentials(HTTP_AUTHORIZATION=f"Token {token_get_or_create(user=user)}")
        return c

    return client


@pytest.fixture
def lead(make_user):
    return make_user("lead", "lead")


@pytest.fixture
def annotator(make_user):
    return make_user("annotator", "annotator")


@pytest.fixture
def outsider(make_user):
    return make_user("outsider", "lead")


@pytest.fixture
def project(lead, annotator):
    from apps.projects.services import membership_set, project_create

    p = project_create(user=lead, name="digits", modality="image", labels=[str(i) for i in range(10)],
                       label_budget=500, confidence_threshold=0.7)
    membership_set(project=p, user=annotator, role="annotator")
    return p
