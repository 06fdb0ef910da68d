from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import ApiToken, Profile, Role
from apps.core.errors import ErrorCode, ValidationFailed


def user_create(*, username: str, password: str | None = None, role: str = Role.ANNOTATOR, email: str = ""):
    if role not in Role.values:
        raise ValidationFailed(f"Unknown role {role!r}.", code=ErrorCode.INVALID_ROLE, details={"roles": Role.values})
    User = get_user_model()
    with transaction.atomic():
        user = User(username=username, email=email, is_staff=(role == Role.ADMIN), is_superuser=(role == Role.ADMIN))
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
        Profile.objects.create(user=user, role=role)
    return user


def user_set_role(*, user, role: str) -> None:
    if role not in Role.values:
        raise ValidationFailed(f"Unknown role {role!r}.", code=ErrorCode.INVALID_ROLE, details={"roles": Role.values})
    Profile.objects.update_or_create(user=user, defaults={"role": role})
    user.is_staff = user.is_superuser = role == Role.ADMIN
    user.save(update_fields=["is_staff", "is_superuser"])


def account_role(user) -> str:
    if user.is_superuser:
        return Role.ADMIN
    profile = Profile.objects.filter(user=user).first()
    return profile.role if profile else Role.ANNOTATOR


# A token's last use is written at most this often, so authenticated traffic is not a write per request.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


def token_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_create(*, user, expires_at: datetime | None = None, key: str | None = None) -> str:
    """Create an API token for ``user`` and return its key: the only time the key exists in the clear.

    ``key`` is for the data migration of tokens issued before keys were hashed; new tokens get 160
    random bits as 40 hex characters (the format of those earlier tokens).
    """
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed("A token's expiry must lie in the future.", code=ErrorCode.INVALID_EXPIRY)
    key = key or secrets.token_hex(20)
    ApiToken.objects.create(user=user, prefix=key[: ApiToken.PREFIX_LENGTH], key_hash=token_hash(key),
                            expires_at=expires_at)
    return key


def token_get_or_create(*, user) -> str:
    """A working API key for ``user``: always a new token, since a stored token's key cannot be read back.

    (The name is kept from when keys were stored in the clear and one token per user was handed out
    again; earlier tokens of the user keep working until they expire or are revoked.)
    """
    return token_create(user=user)


def token_revoke(*, user, prefix: str | None = None) -> int:
    """Delete ``user``'s tokens (those whose key starts with ``prefix``, if given); returns how many."""
    tokens = ApiToken.objects.filter(user=user)
    if prefix:
        tokens = tokens.filter(prefix=prefix[: ApiToken.PREFIX_LENGTH])
    deleted, _ = tokens.delete()
    return deleted


def token_mark_used(*, token: ApiToken, now: datetime) -> None:
    """Record a use of ``token``, at most once per TOKEN_TOUCH_INTERVAL (a conditional UPDATE, race-free)."""
    if token.last_used_at is not None and now - token.last_used_at < TOKEN_TOUCH_INTERVAL:
        return
    ApiToken.objects.filter(pk=token.pk).exclude(last_used_at__gt=now - TOKEN_TOUCH_INTERVAL).update(last_used_at=now)
    token.last_used_at = now
