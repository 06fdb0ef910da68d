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
