from django.conf import settings
from django.db import models

from apps.core.models import JobFields
from apps.projects.models import Project

# The longest production window a check looks at, and so the longest schedule interval: 90 days.
MAX_WINDOW_HOURS = 24 * 90


class DriftMonitor(models.Model):
    """How a project's production is watched for drift: the schedule of checks, whether a drifted check sends
    its witnesses back to labeling by itself, and where its alert goes, signed with which secret.

    One per project, made by the first change of a drift setting (:func:`apps.monitoring.services
    .drift_monitor_update`); a project without one has the defaults (no schedule, no auto-flag, no alerts):
    read it with :func:`apps.monitoring.selectors.drift_monitor_get`. The field names are the project API's.
    """

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="drift_monitor")
    drift_check_hours = models.PositiveIntegerField(
        null=True, blank=True, help_text="check production for drift every N hours (null: only when a lead asks)")
    drift_auto_flag = models.BooleanField(
        default=False, help_text="when a check finds drift, send its witnesses back to labeling without asking")
    drift_webhook_url = models.URLField(
        max_length=500, blank=True, default="", help_text="POST a JSON alert here when a check finds drift")
    drift_webhook_secret = models.CharField(
        max_length=64, blank=True, default="", help_text="signs the alerts (HMAC-SHA256); made when a URL is set")
    drift_webhook_secret_previous = models.CharField(
        max_length=64, blank=True, default="",
        help_text="the secret before the last rotation: alerts are signed with it too for a day after")
    drift_webhook_secret_rotated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"drift monitor of project {self.project_id}"


class DriftCheck(JobFields):
    """Production window vs the serving model's training data, run as a Celery job (looplab.drift.check).

    ``report`` is ml.drift's DriftReport (MMD permutation test on the model's embeddings, PSI of its
    confidence and predicted classes, per metadata slice); ``witnesses`` are the production samples most
    unlike the reference, ``[{"sample", "score"}]``, which a lead can send back to labeling (``flagged_at``),
    or which go back by themselves when the project's monitor has ``drift_auto_flag``. Scheduled checks
    (``trigger="schedule"``, see apps.monitoring.drift.drift_checks_schedule) cover consecutive windows.

    The table is the one serving created (``serving_driftcheck``): the model moved here without moving rows.
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
    # the webhook alert of a drifted check (the monitor's drift_webhook_url): "", "sending", "sent" or "failed"
    alert_status = models.CharField(max_length=16, blank=True, default="")
    alert_attempts = models.PositiveSmallIntegerField(default=0)
    alert_error = models.TextField(blank=True, default="")
    alert_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "serving_driftcheck"
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "trigger", "window_end"], name="serving_dri_project_4c4fc3_idx")]
