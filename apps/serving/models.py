from django.conf import settings
from django.db import models

from apps.core.models import JobFields
from apps.projects.models import Project


class PredictionLog(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey("registry.ModelVersion", on_delete=models.CASCADE, related_name="+")
    sample = models.ForeignKey("samples.Sample", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    label = models.CharField(max_length=100)
    confidence = models.FloatField()
    latency_ms = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "created_at"])]


class DriftCheck(JobFields):
    """Production window vs the serving model's training data, run as a Celery job (looplab.drift.check).

    ``report`` is ml.drift's DriftReport (MMD permutation test on the model's embeddings, PSI of its
    confidence and predicted classes, per metadata slice); ``witnesses`` are the production samples most
    unlike the reference, ``[{"sample", "score"}]``, which a lead can send back to labeling (``flagged_at``),
    or which go back by themselves when the project has ``drift_auto_flag``. Scheduled checks
    (``trigger="schedule"``, see apps.serving.drift.drift_checks_schedule) cover consecutive windows.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="drift_checks")
    model_version = models.ForeignKey("registry.ModelVersion", on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    trigger = models.CharField(max_length=16, default="manual")  # manual (a lead) | schedule (celery beat)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    report = models.JSONField(null=True, blank=True)
    witnesses = models.JSONField(default=list, blank=True)
    flagged_at = models.DateTimeField(null=True, blank=True)
    flagged = models.PositiveIntegerField(default=0)
    # the webhook alert of a drifted check (project's drift_webhook_url): "", "sending", "sent" or "failed"
    alert_status = models.CharField(max_length=16, blank=True, default="")
    alert_attempts = models.PositiveSmallIntegerField(default=0)
    alert_error = models.TextField(blank=True, default="")
    alert_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "trigger", "window_end"])]
