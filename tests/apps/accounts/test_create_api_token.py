import io

import pytest
from django.core.management import CommandError, call_command


def _run(*args) -> list[str]:
    out = io.StringIO()
    call_command("create_api_token", *args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_create_user_with_role_and_use_the_token(db, client):
    lines = _run("svc", "--create", "--role", "lead")
    token = lines[-1]
    assert len(token) == 40
    # The token works on the API and lets a lead create a project.
    r = client.post("/api/v1/projects/", {"name": "p", "modality": "image", "labels": ["a", "b"]},
                    content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}")
    assert r.status_code == 201, r.content
    # Asking again prints the same token.
    assert _run("svc")[-1] == token


def test_project_membership_and_missing_user(db, lead, project):
    token = _run("ann2", "--create", "--role", "annotator", "--project", str(project.id))[-1]
    from apps.projects.selectors import project_role
    from django.contrib.auth import get_user_model

    assert project_role(project=project, user=get_user_model().objects.get(username="ann2")) == "annotator"
    assert token
    with pytest.raises(CommandError, match="pass --create"):
        _run("nobody")
