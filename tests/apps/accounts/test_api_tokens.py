"""API tokens: only a SHA-256 is stored, they may expire, their last use is recorded (at most once a
minute), and wrong tokens from one address are throttled."""
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.accounts.models import ApiToken
from apps.accounts.services import token_create, token_hash


def _get(client, key, **extra):
    return client.get("/api/v1/projects/", HTTP_AUTHORIZATION=f"Token {key}", **extra)


def test_only_a_hash_is_stored(client, lead):
    key = token_create(user=lead)
    row = ApiToken.objects.get(user=lead)
    assert row.key_hash == token_hash(key) and len(row.key_hash) == 64
    assert row.prefix == key[:8] and row.expires_at is None
    # The key appears nowhere in the table.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiToken._meta.db_table}")
        assert not any(key in str(value) for row in cursor.fetchall() for value in row)
    assert _get(client, key).status_code == 200


def test_wrong_token_is_401_in_the_error_shape(client, lead):
    token_create(user=lead)
    r = _get(client, "0" * 40)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "authentication_failed"
    assert r["WWW-Authenticate"] == "Token"
    for header in ("Token", "Token a b"):
        r = client.get("/api/v1/projects/", HTTP_AUTHORIZATION=header)
        assert r.status_code == 401 and r.json()["error"]["code"] == "authentication_failed"


def test_inactive_user_token_is_refused(client, lead):
    key = token_create(user=lead)
    lead.is_active = False
    lead.save(update_fields=["is_active"])
    assert _get(client, key).status_code == 401


def test_expired_token_is_401_token_expired(client, lead):
    key = token_create(user=lead, expires_at=timezone.now() + timedelta(hours=1))
    assert _get(client, key).status_code == 200
    ApiToken.objects.filter(user=lead).update(expires_at=timezone.now() - timedelta(seconds=1))  # time passes
    r = _get(client, key)
    assert r.status_code == 401
    error = r.json()["error"]
    assert error["code"] == "token_expired"
    assert "expired" in error["message"] and key[:8] in error["message"] and key not in error["message"]


def test_expiry_must_be_in_the_future(lead):
    from apps.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        token_create(user=lead, expires_at=timezone.now() - timedelta(days=1))


def test_last_used_at_is_written_at_most_once_a_minute(client, lead):
    key = token_create(user=lead)
    assert ApiToken.objects.get(user=lead).last_used_at is None
    before = timezone.now()
    assert _get(client, key).status_code == 200
    first = ApiToken.objects.get(user=lead).last_used_at
    assert first is not None and first >= before
    # Within the minute: no new write.
    assert _get(client, key).status_code == 200
    assert ApiToken.objects.get(user=lead).last_used_at == first
    # A minute later: written again.
    ApiToken.objects.filter(user=lead).update(last_used_at=first - timedelta(seconds=61))
    assert _get(client, key).status_code == 200
    assert ApiToken.objects.get(user=lead).last_used_at >= before


def test_session_auth_still_works(client, lead):
    client.force_login(lead)
    assert client.get("/api/v1/projects/").status_code == 200


def _rates(settings, **rates):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates}}


def test_wrong_tokens_from_one_address_are_throttled(client, lead, settings):
    _rates(settings, token_failure="3/minute")
    good = token_create(user=lead)
    for _ in range(3):
        assert _get(client, "f" * 40).status_code == 401
    r = _get(client, "f" * 40)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "throttled"
    assert 1 <= int(r["Retry-After"]) <= 60
    # An expired token counts as wrong too.
    expired = token_create(user=lead, expires_at=timezone.now() + timedelta(hours=1))
    ApiToken.objects.filter(prefix=expired[:8]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _get(client, expired).status_code == 429
    # A forged X-Forwarded-For does not get around it (no proxy is trusted by default) ...
    assert _get(client, "f" * 40, HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 429
    # ... another address is not affected ...
    assert _get(client, "f" * 40, REMOTE_ADDR="10.1.2.3").status_code == 401
    # ... and a right token still works from the blocked address (clients sharing a NAT are not locked out).
    assert _get(client, good).status_code == 200


def test_user_rate_answers_429_in_the_error_shape(client, lead, settings):
    _rates(settings, user="5/minute")
    key = token_create(user=lead)
    statuses = [_get(client, key).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    r = _get(client, key)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "throttled" and "throttled" in r.json()["error"]["message"]
    assert int(r["Retry-After"]) >= 1


def test_default_rates_leave_room_for_scripts(settings):
    """The defaults never stop normal use: thousands of calls a minute per user."""
    from apps.accounts.throttles import UserRateThrottle

    throttle = UserRateThrottle()
    assert throttle.num_requests / throttle.duration * 60 >= 1000
