from django.conf import settings
from django.db import models

from apps.projects.models import Project


class Deployment(models.Model):
    """The latest deployment of a project is the one serving."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="deployments")
    model_version = models.ForeignKey("training.ModelVersion", on_delete=models.PROTECT, related_name="deployments")
    deployed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=16, default="manual")  # manual | gate
    label_to_serving_s = models.FloatField(null=True, blank=True,
                                           help_text="seconds from the newest label in the model's dataset to serving")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class PredictionLog(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey("training.ModelVersion", on_delete=models.CASCADE, related_name="+")
    sample = models.ForeignKey("samples.Sample", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    label = models.CharField(max_length=100)
    confidence = models.FloatField()
    latency_ms = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "created_at"])]

