from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    ANNOTATOR = "annotator"
    LEAD = "lead"
    ADMIN = "admin"


ROLE_RANK = {Role.ANNOTATOR: 0, Role.LEAD: 1, Role.ADMIN: 2}


class Profile(models.Model):
    """Account-level role: leads and admins may create projects; admins see every project."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)


class ApiToken(models.Model):
    """An API key for ``Authorization: Token <key>``, stored as its SHA-256 only.

    The key is 160 random bits (40 hex characters, the format clients already hold), so an unsalted
    SHA-256 is enough to make a leaked table useless and still lets a request find its row by one
    indexed lookup. ``prefix`` (the key's first 8 characters) is kept in the clear so people and the
    admin can tell tokens apart; it is not enough to use one.
    """

    PREFIX_LENGTH = 8

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    prefix = models.CharField(max_length=PREFIX_LENGTH)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="empty: never expires")
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    def is_expired(self, now) -> bool:
        return self.expires_at is not None and self.expires_at <= now
