import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone


def _run(*args) -> list[str]:
    out = io.StringIO()
    call_command("create_api_token", *args, stdout=out)
    return out.getvalue().strip().splitlines()


def _projects(client, token):
    return client.get("/api/v1/projects/", HTTP_AUTHORIZATION=f"Token {token}")


def test_create_user_with_role_and_use_the_token(db, client):
    lines = _run("svc", "--create", "--role", "lead")
    token = lines[-1]
    assert len(token) == 40
    # The token works on the API and lets a lead create a project.
    r = client.post("/api/v1/projects/", {"name": "p", "modality": "image", "labels": ["a", "b"]},
                    content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}")
    assert r.status_code == 201, r.content
    # Only a hash is kept, so asking again issues a new token; the first one keeps working.
    second = _run("svc")[-1]
    assert second != token and len(second) == 40
    assert _projects(client, token).status_code == 200
    assert _projects(client, second).status_code == 200
    # Rotation: --revoke-others leaves only the new one.
    lines = _run("svc", "--revoke-others")
    assert "2 earlier token(s) revoked" in lines[-2]
    assert _projects(client, token).status_code == 401
    assert _projects(client, second).status_code == 401
    assert _projects(client, lines[-1]).status_code == 200


def test_expires_in_days(db, client):
    from apps.accounts.models import ApiToken

    token = _run("svc", "--create", "--expires-in-days", "7")[-1]
    row = ApiToken.objects.get(user__username="svc")
    assert abs(row.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    assert row.prefix == token[:8]
    assert _projects(client, token).status_code == 200
    with pytest.raises(CommandError, match="must be positive"):
        _run("svc", "--expires-in-days", "0")


def test_project_membership_and_missing_user(db, lead, project):
    token = _run("ann2", "--create", "--role", "annotator", "--project", str(project.id))[-1]
    from apps.projects.selectors import project_role
    from django.contrib.auth import get_user_model

    assert project_role(project=project, user=get_user_model().objects.get(username="ann2")) == "annotator"
    assert token
    with pytest.raises(CommandError, match="pass --create"):
        _run("nobody")
