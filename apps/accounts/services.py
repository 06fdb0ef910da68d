from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.authtoken.models import Token

from apps.accounts.models import Profile, Role
from apps.core.errors import ValidationFailed


def user_create(*, username: str, password: str | None = None, role: str = Role.ANNOTATOR, email: str = ""):
    if role not in Role.values:
        raise ValidationFailed(f"Unknown role {role!r}.", code="invalid_role", details={"roles": Role.values})
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
        raise ValidationFailed(f"Unknown role {role!r}.", code="invalid_role", details={"roles": Role.values})
    Profile.objects.update_or_create(user=user, defaults={"role": role})
    user.is_staff = user.is_superuser = role == Role.ADMIN
    user.save(update_fields=["is_staff", "is_superuser"])


def account_role(user) -> str:
    if user.is_superuser:
        return Role.ADMIN
    profile = Profile.objects.filter(user=user).first()
    return profile.role if profile else Role.ANNOTATOR


def token_get_or_create(*, user) -> str:
    token, _ = Token.objects.get_or_create(user=user)
    return token.key
