"""A project always keeps an admin: its last admin cannot demote themselves, leave or be removed."""
import threading

import pytest


def _members(api, user, project):
    return {m["username"]: m["role"] for m in api(user).get(f"/api/v1/projects/{project.id}/members/").json()}


def _last_admin(r):
    assert r.status_code == 409, (r.status_code, r.content)
    error = r.json()["error"]
    assert error["code"] == "last_admin" and error["details"] == {"username": "lead"}, error
    assert "last admin" in error["message"]


@pytest.mark.parametrize("role", ["lead", "annotator"])
def test_the_last_admin_cannot_demote_themselves(api, lead, project, role):
    r = api(lead).post(f"/api/v1/projects/{project.id}/members/", {"username": "lead", "role": role}, format="json")
    _last_admin(r)
    assert _members(api, lead, project)["lead"] == "admin"


def test_the_last_admin_cannot_leave(api, lead, project):
    _last_admin(api(lead).delete(f"/api/v1/projects/{project.id}/members/lead/"))
    assert _members(api, lead, project)["lead"] == "admin"


def test_with_a_second_admin_either_may_step_down_but_not_both(api, lead, annotator, make_user, project):
    c = api(lead)
    url = f"/api/v1/projects/{project.id}/members/"
    second = make_user("second", "lead")
    assert c.post(url, {"username": "second", "role": "admin"}, format="json").status_code == 201
    assert c.post(url, {"username": "lead", "role": "lead"}, format="json").status_code == 201  # lead steps down
    s = api(second)
    _last = s.post(url, {"username": "second", "role": "annotator"}, format="json")
    assert _last.status_code == 409 and _last.json()["error"]["code"] == "last_admin"
    # the admin removes the former admin, then cannot remove themselves
    assert s.delete(f"{url}lead/").status_code == 204
    r = s.delete(f"{url}second/")
    assert r.status_code == 409 and r.json()["error"]["details"] == {"username": "second"}
    assert _members(api, second, project) == {"second": "admin", "annotator": "annotator"}
    # a deactivated admin does not count: it could not manage anything
    from apps.projects.services import membership_set

    membership_set(project=project, user=lead, role="admin")
    lead.is_active = False
    lead.save(update_fields=["is_active"])
    r = s.post(url, {"username": "second", "role": "lead"}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "last_admin"


def test_members_may_leave_and_only_admins_remove_others(api, lead, annotator, make_user, project):
    from apps.projects.services import membership_set

    url = f"/api/v1/projects/{project.id}/members/"
    other = make_user("other")
    membership_set(project=project, user=other, role="annotator")
    r = api(annotator).delete(f"{url}other/")
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    assert api(annotator).delete(f"{url}annotator/").status_code == 204  # leaving
    assert api(annotator).get(f"/api/v1/projects/{project.id}/").status_code == 404
    r = api(lead).delete(f"{url}annotator/")
    assert r.status_code == 404 and r.json()["error"]["code"] == "member_not_found"
    r = api(lead).delete(f"{url}nobody-of-that-name/")
    assert r.status_code == 404 and r.json()["error"]["code"] == "user_not_found"
    assert api(lead).delete(f"{url}other/").status_code == 204
    assert _members(api, lead, project) == {"lead": "admin"}


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin(make_user, monkeypatch):
    # two requests at the same moment, each seeing another admin: the lock lets only one of them through
    import time

    from django.db import connection

    from apps.core.errors import Conflict
    from apps.projects import services
    from apps.projects.models import Membership
    from apps.projects.services import membership_set, project_create

    check = services._refuse_last_admin

    def slow_check(**kwargs):  # widen the window between the check and the write (without the lock: 0 admins)
        check(**kwargs)
        time.sleep(0.2)

    monkeypatch.setattr(services, "_refuse_last_admin", slow_check)

    a, b = make_user("admin_a", "lead"), make_user("admin_b", "lead")
    project = project_create(user=a, name="race", modality="image", labels=["x", "y"])
    membership_set(project=project, user=b, role="admin")
    barrier, outcomes = threading.Barrier(2), []

    def demote(user):
        try:
            barrier.wait()
            membership_set(project=project, user=user, role="lead")
            outcomes.append("demoted")
        except Conflict as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=demote, args=(user,)) for user in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["demoted", "last_admin"]
    assert Membership.objects.filter(project=project, role="admin").count() == 1
