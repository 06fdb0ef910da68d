"""Sign-in lockout (django-axes) on the sign-in page and the admin: after the failure limit the pair
(username, address) is refused, even with the right password, until the cool-off passes or an admin resets it."""
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command

LIMIT = settings.AXES_FAILURE_LIMIT


def _login(client, password, *, path="/login/", username="annotator", **extra):
    return client.post(path, {"username": username, "password": password}, **extra)


def _fail_until_locked(client, **kw):
    responses = [_login(client, "wrong", **kw) for _ in range(LIMIT)]
    assert all(r.status_code == 200 for r in responses[:-1]), [r.status_code for r in responses]
    return responses[-1]


def _signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_defaults_are_sensible():
    assert 3 <= LIMIT <= 10
    assert settings.AXES_COOLOFF_TIME >= timedelta(minutes=5)
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


def test_login_form_locks_out_and_says_so(client, annotator):
    r = _fail_until_locked(client)
    assert r.status_code == 429
    page = r.content.decode()
    minutes = round(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    assert "Too many failed sign-ins" in page and f"Try again in {minutes} minutes" in page
    assert 'value="annotator"' in page  # the form is still there, username kept
    assert int(r["Retry-After"]) == minutes * 60
    # The right password is refused while locked.
    r = _login(client, "pw-annotator")
    assert r.status_code == 429 and not _signed_in(client)


def test_lockout_is_per_username_and_address(client, annotator, lead):
    _fail_until_locked(client)
    # Another account from the same address, and the same account from elsewhere, still sign in.
    assert _login(client, "pw-lead", username="lead").status_code == 302
    client.logout()
    assert _login(client, "pw-annotator", REMOTE_ADDR="10.20.30.40").status_code == 302


def test_cool_off_passes(client, annotator):
    from axes.models import AccessAttempt

    _fail_until_locked(client)
    assert _login(client, "pw-annotator").status_code == 429
    # A cool-off and a minute later (the attempts' clock moved back, as time would move on) ...
    for attempt in AccessAttempt.objects.all():
        attempt.attempt_time -= settings.AXES_COOLOFF_TIME + timedelta(minutes=1)
        attempt.save(update_fields=["attempt_time"])
    r = _login(client, "pw-annotator")
    assert r.status_code == 302 and _signed_in(client)


def test_admin_reset_unlocks(client, annotator):
    _fail_until_locked(client)
    call_command("axes_reset_username", "annotator")
    assert _login(client, "pw-annotator").status_code == 302 and _signed_in(client)


def test_a_success_resets_the_count(client, annotator):
    for _ in range(LIMIT - 1):
        _login(client, "wrong")
    assert _login(client, "pw-annotator").status_code == 302
    client.logout()
    for _ in range(LIMIT - 1):
        assert _login(client, "wrong").status_code == 200
    assert _login(client, "pw-annotator").status_code == 302


def test_admin_login_locks_out(client, make_user):
    make_user("root", "admin")
    r = _fail_until_locked(client, path="/admin/login/", username="root")
    assert r.status_code == 429 and b"Too many failed sign-ins" in r.content
    r = _login(client, "pw-root", path="/admin/login/", username="root")
    assert r.status_code == 429 and not _signed_in(client)
    # Locked on the admin means locked on the sign-in page too (one account, one address).
    assert _login(client, "pw-root", username="root").status_code == 429


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_thirty_wrong_passwords_then_the_right_one_is_refused(client, make_user, path):
    """The finding as reported: 30 wrong passwords, then the right one worked."""
    make_user("root", "admin")
    for _ in range(30):
        _login(client, "wrong", path=path, username="root")
    assert _login(client, "pw-root", path=path, username="root").status_code == 429
    assert not _signed_in(client)
